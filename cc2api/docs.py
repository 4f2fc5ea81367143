"""API documentation pages that work offline: Swagger UI at /docs, ReDoc at /redoc.

Their scripts come from the npm packages swagger-ui-dist and redoc (``.web/node_modules``
in a clone, ``<prefix>/web/node_modules`` from install.sh, or DOCS_ASSETS_DIR), never
from a CDN.
"""

from __future__ import annotations

import json
from pathlib import Path

from quart import Response, send_file
from quart_trio import QuartTrio

from .errors import NotFound, Unavailable
from .openapi import openapi_document

PUBLIC_PREFIXES = ("/docs", "/redoc", "/openapi.json")
# Only these files are served, each from its package.
ASSETS = {
    "swagger-ui.css": "swagger-ui-dist/swagger-ui.css",
    "swagger-ui-bundle.js": "swagger-ui-dist/swagger-ui-bundle.js",
    "redoc.standalone.js": "redoc/bundles/redoc.standalone.js",
}
# A clone's .web/node_modules, where scripts/serve and scripts/test install them.
DEFAULT_ASSETS = Path(__file__).resolve().parent.parent / ".web" / "node_modules"

SWAGGER_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>cc2api API</title>
<link rel="stylesheet" href="/docs/assets/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="/docs/assets/swagger-ui-bundle.js"></script>
<script>window.ui = SwaggerUIBundle({url: "/openapi.json", dom_id: "#swagger-ui"});</script>
</body></html>
"""

REDOC_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>cc2api API reference</title></head>
<body><redoc spec-url="/openapi.json"></redoc>
<script src="/redoc/assets/redoc.standalone.js"></script>
</body></html>
"""


def add_docs(app: QuartTrio, assets: Path | None) -> None:
    """Add /openapi.json, /docs and /redoc (public: they describe the API, nothing more)."""
    folder = assets or DEFAULT_ASSETS
    spec = json.dumps(openapi_document())

    @app.get("/openapi.json")
    async def openapi() -> Response:
        return Response(spec, mimetype="application/json")

    @app.get("/docs")
    async def swagger() -> Response:
        _require_assets(folder)
        return Response(SWAGGER_PAGE, mimetype="text/html")

    @app.get("/redoc")
    async def redoc() -> Response:
        _require_assets(folder)
        return Response(REDOC_PAGE, mimetype="text/html")

    @app.get("/docs/assets/<name>")
    @app.get("/redoc/assets/<name>")
    async def asset(name: str) -> Response:
        if name not in ASSETS:
            raise NotFound(f"no documentation asset {name!r}")
        _require_assets(folder)
        return await send_file(folder / ASSETS[name])


def _require_assets(folder: Path) -> None:
    missing = [path for path in ASSETS.values() if not (folder / path).is_file()]
    if missing:
        raise Unavailable(
            f"the API docs need the npm packages swagger-ui-dist and redoc in {folder} "
            "(./scripts/serve and install.sh install them; or set DOCS_ASSETS_DIR)",
            code="docs_unavailable",
        )
