"""The web console at /console: a public page and its files, served from the package.

The page holds no data: everything it shows it asks of the API with the credential the
person signs in with, so the page and its files need no login, as the API docs do not.
Each answer carries a strict Content-Security-Policy (scripts and connections from this
origin only, no inline script, no framing), so that even a rendering mistake could not
run a script a run's output carried.
"""

from __future__ import annotations

from pathlib import Path

import trio
from quart import Blueprint, Response

from .errors import NotFound

__all__ = ["CONSOLE_PATH", "SECURITY_HEADERS", "console_routes", "is_console_path"]

CONSOLE_PATH = "/console"
# Where the page and its files are: beside this module, in the wheel as in a clone.
ASSETS_DIR = Path(__file__).resolve().parent / "console"
PAGE = "index.html"
# Only these are served: a name maps to its file and its type.
ASSETS = {
    "console.css": "text/css",
    "console.js": "text/javascript",
    "api.js": "text/javascript",
    "dom.js": "text/javascript",
    "events.js": "text/javascript",
    "render.js": "text/javascript",
    "views.js": "text/javascript",
    "live.js": "text/javascript",
}
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    # A new release's files are fetched again; the server is on the same host anyway.
    "Cache-Control": "no-cache",
}

console_routes = Blueprint("console", __name__)


def is_console_path(path: str) -> bool:
    """Return whether ``path`` is the console's page or one of its files (public)."""
    return path == CONSOLE_PATH or path.startswith(CONSOLE_PATH + "/")


async def _file(name: str, mimetype: str) -> Response:
    body = await trio.Path(ASSETS_DIR / name).read_bytes()
    return Response(body, mimetype=mimetype)


@console_routes.get(CONSOLE_PATH)
@console_routes.get(CONSOLE_PATH + "/")
async def page() -> Response:
    """The console's page; its scripts sign in and ask the API for everything shown."""
    return await _file(PAGE, "text/html")


@console_routes.get(CONSOLE_PATH + "/<name>")
async def asset(name: str) -> Response:
    """One of the console's files, by name; any other name is 404."""
    if name not in ASSETS:
        raise NotFound(f"no console file {name!r}")
    return await _file(name, ASSETS[name])


@console_routes.after_request
async def secure(response: Response) -> Response:
    """Put the console's security headers on each of its answers, refusals included."""
    response.headers.update(SECURITY_HEADERS)
    return response
