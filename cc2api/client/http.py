"""One request to the gateway, and the exception its refusals become."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import httpx

from .errors import ApiError, ConnectionLost

# Answers worth waiting out when reattaching: a gateway restarting, or a proxy before it.
TRANSIENT = frozenset({502, 503, 504})


def api_error(response: httpx.Response) -> ApiError:
    """Return the error a non-2xx answer (already read) stands for."""
    code, detail = f"http_{response.status_code}", response.reason_phrase or "error"
    try:
        body = json.loads(response.content)
    except ValueError:
        body = None
    if isinstance(body, dict):
        code = str(body.get("code") or code)
        detail = str(body.get("detail") or detail)
    return ApiError(response.status_code, code, detail)


def query(filters: Mapping[str, Any]) -> dict[str, str]:
    """Return query parameters: None left out, lists joined with commas, bools lower case."""
    params: dict[str, str] = {}
    for name, value in filters.items():
        if value is None:
            continue
        if isinstance(value, bool):
            params[name] = "true" if value else "false"
        elif isinstance(value, list | tuple | set | frozenset):
            params[name] = ",".join(str(item) for item in value)
        else:
            params[name] = str(value)
    return params


async def call(
    http: httpx.AsyncClient,
    method: str,
    path: str,
    *,
    body: Any = None,
    params: Mapping[str, Any] | None = None,
) -> Any:
    """Send one request and return its parsed JSON answer.

    Raises :class:`ApiError` for an answer that is not 2xx and
    :class:`ConnectionLost` when the server cannot be reached. Cancellation
    abandons the request (the server sees a hang-up).
    """
    try:
        response = await http.request(method, path, json=body, params=query(params or {}) or None)
    except httpx.TransportError as error:
        raise ConnectionLost(f"{method} {path}: {error!r}") from error
    if not response.is_success:
        raise api_error(response)
    return response.json() if response.content else None
