"""``GET /metrics``: the Prometheus text format, for the admin or the metrics token."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import SecretStr
from quart import Blueprint, Response

from .errors import Forbidden
from .gateway import current_gateway
from .metrics import bearer_matches
from .principal import current_principal

__all__ = ["METRICS_PATH", "metrics_routes", "metrics_token_passes"]

METRICS_PATH = "/metrics"
metrics_routes = Blueprint("metrics", __name__)


def metrics_token_passes(path: str, header: str | None, token: SecretStr | None) -> bool:
    """Return whether a request for ``path`` carries the metrics token (for /metrics only)."""
    if path != METRICS_PATH or token is None:
        return False
    return bearer_matches(header, token.get_secret_value())


@metrics_routes.get(METRICS_PATH)
async def metrics() -> Response:
    """Answer every metric in the Prometheus text format."""
    if not current_principal().is_admin:
        raise Forbidden("metrics are the admin's: use the admin's credential or METRICS_TOKEN")
    body = current_gateway().metrics.exposition()
    return Response(body, status=200, headers={"Content-Type": CONTENT_TYPE_LATEST})
