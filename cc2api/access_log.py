"""One access log line per request, written once its response is over (a stream's too).

Hypercorn's own access log formats "atoms" that hold every request header and the
server's whole environment: an Authorization header or AUTH_PASSWORD could reach a
log through a format string. This logger builds its line from a few named parts
only: the client's address, the method, the path (no query), the status, the
duration, the route the app matched and the run a response names (X-Process-ID).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from hypercorn.logging import Logger

from .logs import run_extra

if TYPE_CHECKING:
    from hypercorn.typing import ResponseSummary, WWWScope

__all__ = [
    "KEY_SCOPE_KEY",
    "ROUTE_SCOPE_KEY",
    "RUN_SCOPE_KEY",
    "STATUS_SCOPE_KEY",
    "AccessLogger",
    "access_fields",
]

# Where the app leaves, for the access line, the route it matched, the status it answered
# and the run its answer names (X-Process-ID): the ASGI scope, which the server and the
# app share. The status is for a client that hangs up before the response is over (a
# stream's reader, often): its line comes without Hypercorn's summary of the response.
ROUTE_SCOPE_KEY = "cc2api.route"
STATUS_SCOPE_KEY = "cc2api.status"
RUN_SCOPE_KEY = "cc2api.run_id"
KEY_SCOPE_KEY = "cc2api.key"
ACCESS_LOGGER = "cc2api.access"


def access_fields(
    scope: WWWScope, response: ResponseSummary | None, request_time: float
) -> dict[str, Any]:
    """Return what an access line says of a request: never a header's value."""
    client = scope.get("client")
    method = scope["method"] if scope["type"] == "http" else "GET"
    fields: dict[str, Any] = {
        "address": None if not client else str(client[0]),
        "method": method,
        "path": scope["path"],
        "route": scope.get(ROUTE_SCOPE_KEY),
        "status": scope.get(STATUS_SCOPE_KEY) if response is None else response["status"],
        "duration_ms": round(request_time * 1000, 3),
    }
    run_id = scope.get(RUN_SCOPE_KEY)
    if run_id:
        fields.update(run_extra(str(run_id)))
    key = scope.get(KEY_SCOPE_KEY)
    if key:
        fields["key"] = str(key)
    return fields


class AccessLogger(Logger):
    """Hypercorn's logger with a safe access line, on the ``cc2api.access`` logger."""

    async def access(
        self, request: WWWScope, response: ResponseSummary | None, request_time: float
    ) -> None:
        """Log one line for a finished request, at INFO, on ``config.accesslog``."""
        logger = self.access_logger
        if logger is None or not logger.isEnabledFor(logging.INFO):
            return
        fields = access_fields(request, response, request_time)
        status = "-" if fields["status"] is None else fields["status"]
        logger.info(
            "%s %s %s %s %.1f ms",
            fields["address"] or "-",
            fields["method"],
            fields["path"],
            status,
            fields["duration_ms"],
            extra=fields,
        )
