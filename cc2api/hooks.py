"""What every request passes through: authentication, CORS, and errors as JSON."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from quart import Response, g, request
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException

from .access_log import KEY_SCOPE_KEY, ROUTE_SCOPE_KEY, RUN_SCOPE_KEY, STATUS_SCOPE_KEY
from .console_routes import is_console_path
from .docs import PUBLIC_PREFIXES
from .errors import ApiError, Unauthorized
from .gateway import current_gateway
from .metrics_routes import metrics_token_passes
from .principal import ADMIN, Principal
from .wire import Error, ErrorCode

log = logging.getLogger(__name__)

_PUBLIC_PATHS = frozenset({"/health"})


def json_response(
    body: Mapping[str, Any], status: int = 200, *, headers: Mapping[str, str] | None = None
) -> Response:
    """Return a JSON answer."""
    return Response(
        json.dumps(body), status=status, headers=dict(headers or {}), mimetype="application/json"
    )


async def authenticate() -> None:
    """Let through a request with the right credentials, a public path or a CORS preflight.

    Who it acts for (the admin, or a key) is left in ``g.principal``
    (:func:`cc2api.principal.current_principal`).

    Raises:
        Unauthorized: the credentials are missing or wrong.
        TooManyFailedLogins: this address (or everyone) failed too often lately.
    """
    gateway = current_gateway()
    if request.path in _PUBLIC_PATHS or request.path.startswith(PUBLIC_PREFIXES):
        return
    if is_console_path(request.path):  # the page only; its data needs credentials
        return
    if request.method == "OPTIONS" and request.headers.get("Origin") in gateway.origins:
        return
    address = request.remote_addr or "unknown"
    gateway.throttle.check(address)
    header = request.headers.get("Authorization")
    try:
        if metrics_token_passes(request.path, header, gateway.settings.metrics_token):
            g.principal = ADMIN
        else:
            g.principal = gateway.credentials.principal(header)
    except Unauthorized:
        if header:  # a request without credentials guesses nothing
            gateway.throttle.failed(address)
            log.warning("failed login from %s", address)
        raise
    gateway.throttle.succeeded(address, clears=g.principal.is_admin)


async def close_unread(response: Response) -> Response:
    """Close the connection after a refusal sent before the request's body was read.

    That body is left in the connection, and quart-trio stops reading it: the next
    request on the connection would hang. Closing it is the only safe end.
    """
    has_body = "Content-Length" in request.headers or "Transfer-Encoding" in request.headers
    if has_body and (response.status_code >= 400 or request.method != "POST"):
        response.headers["Connection"] = "close"
    return response


async def note_route(response: Response) -> Response:
    """Leave the route the request matched where the access log finds it, and count it.

    Counted here, once the status is known and before a stream's body is sent: a client
    that hangs up mid-stream is counted once, by the app, whatever the access log does.
    """
    rule = request.url_rule
    scope: dict[str, Any] = request.scope  # type: ignore[assignment]
    scope[ROUTE_SCOPE_KEY] = "unmatched" if rule is None else rule.rule
    scope[STATUS_SCOPE_KEY] = response.status_code
    scope[RUN_SCOPE_KEY] = response.headers.get("X-Process-ID")
    principal = g.get("principal")
    if isinstance(principal, Principal):
        scope[KEY_SCOPE_KEY] = principal.name
    current_gateway().metrics.request(scope[ROUTE_SCOPE_KEY], response.status_code)
    return response


async def cors(response: Response) -> Response:
    """Allow the operator's origins, and only them (never a wildcard)."""
    origins = current_gateway().origins
    origin = request.headers.get("Origin")
    if origins:
        response.vary.add("Origin")
    if origin is not None and origin in origins:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Allow-Credentials"] = "true"
        response.headers["Access-Control-Allow-Headers"] = "Authorization, Content-Type"
        response.headers["Access-Control-Allow-Methods"] = "GET, POST, PATCH, DELETE, OPTIONS"
        response.headers["Access-Control-Expose-Headers"] = "X-Process-ID"
    return response


async def api_error(error: ApiError) -> Response:
    """Answer one of our errors with its status, code and headers."""
    return json_response(error.body(), error.status, headers=error.headers())


async def http_error(error: HTTPException) -> Response:
    """Answer Quart's own refusals (no route, wrong method, body too large) as JSON."""
    status = error.code or 500
    code = (error.name or "error").lower().replace(" ", "_")
    detail = error.description or error.name
    if status == 404:
        detail = f"no route for {request.method} {request.path}"
    elif status == 405:
        detail = f"{request.method} is not allowed on {request.path}"
    elif status == 413:
        limit = current_gateway().settings.max_body_bytes
        detail = f"the request body is larger than {limit} bytes"
    return json_response(Error(detail=detail, code=code).wire(), status)


async def unexpected(error: Exception) -> Response:
    """Answer a bug with a 500 that tells nothing, and log it."""
    log.exception("unhandled error on %s %s", request.method, request.path)
    body = Error(detail="internal error; see the server log", code=ErrorCode.INTERNAL_ERROR)
    return json_response(body.wire(), 500)


def install_hooks(app: QuartTrio) -> None:
    """Put every hook and error handler on ``app``."""
    app.before_request(authenticate)
    app.after_request(close_unread)
    app.after_request(cors)
    app.after_request(note_route)
    app.register_error_handler(ApiError, api_error)
    app.register_error_handler(HTTPException, http_error)
    app.register_error_handler(Exception, unexpected)
