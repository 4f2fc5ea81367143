"""API documentation pages that work offline: Swagger UI at /docs, ReDoc at /redoc.

Their scripts come from the pinned npm packages swagger-ui-dist and redoc
(cc2api/docs_assets.py), never from a CDN. They are looked up in this order:
DOCS_ASSETS_DIR when set; else the copy an installed wheel ships (``cc2api/static``);
else a clone's ``.web/node_modules``, which editable installs use.
"""

from __future__ import annotations

import json
from pathlib import Path

from quart import Response, send_file
from quart_trio import QuartTrio

from .docs_assets import SERVED, SPECS
from .errors import NotFound, Unavailable
from .openapi import openapi_document
from .wire import ErrorCode

PUBLIC_PREFIXES = ("/docs", "/redoc", "/openapi.json")
# Only these files are served, each from its package.
ASSETS = SERVED
# Where the wheel's build hook (hatch_build.py) puts them.
PACKAGED_ASSETS = Path(__file__).resolve().parent / "static"
# A clone's .web/node_modules, where scripts/serve and scripts/test put them.
CLONE_ASSETS = Path(__file__).resolve().parent.parent / ".web" / "node_modules"

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
    """Add /openapi.json, /docs and /redoc (public: they describe the API, nothing more).

    ``assets`` is DOCS_ASSETS_DIR: when set, it alone is used.
    """
    spec = json.dumps(openapi_document())

    @app.get("/openapi.json")
    async def openapi() -> Response:
        return Response(spec, mimetype="application/json")

    @app.get("/docs")
    async def swagger() -> Response:
        require_assets(assets)
        return Response(SWAGGER_PAGE, mimetype="text/html")

    @app.get("/redoc")
    async def redoc() -> Response:
        require_assets(assets)
        return Response(REDOC_PAGE, mimetype="text/html")

    @app.get("/docs/assets/<name>")
    @app.get("/redoc/assets/<name>")
    async def asset(name: str) -> Response:
        if name not in ASSETS:
            raise NotFound(f"no documentation asset {name!r}")
        return await send_file(require_assets(assets) / ASSETS[name])


def has_assets(folder: Path) -> bool:
    """Return whether ``folder`` holds every file the pages load."""
    return all((folder / path).is_file() for path in ASSETS.values())


def find_assets(
    configured: Path | None, candidates: tuple[Path, ...] = (PACKAGED_ASSETS, CLONE_ASSETS)
) -> Path | None:
    """Return the folder to serve the pages' files from, or None when none has them all.

    Looked up at each request, so files put in place while the server runs are found.
    """
    if configured is not None:
        return configured if has_assets(configured) else None
    return next((folder for folder in candidates if has_assets(folder)), None)


def require_assets(configured: Path | None) -> Path:
    """Return the assets folder, or raise a 503 that says how to get one."""
    folder = find_assets(configured)
    if folder is not None:
        return folder
    if configured is not None:
        where = f"DOCS_ASSETS_DIR ({configured}) does not hold them"
    else:
        where = (
            f"this install has none: not in {PACKAGED_ASSETS} (a wheel built from cc2api's "
            f"sources ships them) nor in {CLONE_ASSETS} (./scripts/serve puts them there)"
        )
    raise Unavailable(
        f"the API docs need the npm packages {SPECS} ({', '.join(ASSETS.values())}); "
        f"{where}. Reinstall cc2api from its sources with npm available, or set "
        "DOCS_ASSETS_DIR to a node_modules folder that holds them "
        "(python -m cc2api.docs_assets DIR fills one)",
        code=ErrorCode.DOCS_UNAVAILABLE,
    )
