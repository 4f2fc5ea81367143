"""/docs and /redoc: a valid OpenAPI document, rendered offline in headless Chromium."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from openapi_spec_validator import validate

from cc2api.docs import ASSETS, CLONE_ASSETS, PACKAGED_ASSETS, find_assets, has_assets
from cc2api.models import ChatRequest
from cc2api.openapi import openapi_document

from .browser import OPERATIONS, render
from .helpers import Shared, make_settings, served

pytestmark = pytest.mark.timeout(120)


class TestOpenApi:
    def test_document_is_valid_openapi(self) -> None:
        """The document passes the OpenAPI 3.1 validator."""
        validate(openapi_document())

    def test_every_request_field_is_described(self) -> None:
        """Every ChatRequest field is in the document, with its description."""
        properties = openapi_document()["components"]["schemas"]["ChatRequest"]["properties"]
        assert set(properties) == set(ChatRequest.model_fields)
        assert all(field.get("description") for field in properties.values())

    def test_events_and_errors_are_described(self) -> None:
        """The SSE events and every error status of POST /chat are in the document."""
        document = openapi_document()
        chat = document["paths"]["/chat"]["post"]["responses"]
        assert {"200", "400", "401", "403", "409", "413", "422", "503"} <= set(chat)
        for event in ("process", "message", "error", "done"):
            assert f"`{event}`" in chat["200"]["description"]
        assert {"ProcessEvent", "ErrorEvent", "DoneEvent", "Error"} <= set(
            document["components"]["schemas"]
        )


class TestPages:
    async def test_docs_pages_and_assets_need_no_login(self, gw: Shared) -> None:
        """/openapi.json, /docs, /redoc and their scripts are served without credentials."""
        async with httpx.AsyncClient(base_url=gw.url) as anonymous:
            answers = {
                path: await anonymous.get(path)
                for path in (
                    "/openapi.json",
                    "/docs",
                    "/redoc",
                    "/docs/assets/swagger-ui-bundle.js",
                    "/docs/assets/swagger-ui.css",
                    "/redoc/assets/redoc.standalone.js",
                )
            }
            other = await anonymous.get("/docs/assets/package.json")
        assert {path: r.status_code for path, r in answers.items()} == dict.fromkeys(answers, 200)
        assert "swagger-ui-bundle.js" in answers["/docs"].text
        assert "cdn" not in answers["/docs"].text.lower() + answers["/redoc"].text.lower()
        assert other.status_code == 404

    async def test_missing_assets_are_a_clear_503(
        self, fake_environ: dict[str, str], tmp_path: Path
    ) -> None:
        """A DOCS_ASSETS_DIR without the npm packages makes the pages answer 503 saying so."""
        async with served(make_settings(docs_assets_dir=tmp_path), fake_environ) as gw:
            response = await gw.client.get("/docs")
        assert response.status_code == 503
        assert response.json()["code"] == "docs_unavailable"
        detail = response.json()["detail"]
        assert "swagger-ui-dist@5.35.0 and redoc@2.5.4" in detail
        assert f"DOCS_ASSETS_DIR ({tmp_path}) does not hold them" in detail

    async def test_editable_install_serves_the_clone_copy(self, gw: Shared) -> None:
        """From a clone (no copy in the package), the files come from .web/node_modules."""
        assert not PACKAGED_ASSETS.exists()
        served_css = await gw.client.get("/docs/assets/swagger-ui.css")
        assert served_css.content == (CLONE_ASSETS / ASSETS["swagger-ui.css"]).read_bytes()


def fill(folder: Path, *, leave_out: str | None = None) -> Path:
    """Put a stand-in for each served file in ``folder`` (but ``leave_out``); return it."""
    for path in ASSETS.values():
        if path != leave_out:
            (folder / path).parent.mkdir(parents=True, exist_ok=True)
            (folder / path).write_text(path)
    return folder


class TestLookupOrder:
    def test_configured_folder_wins(self, tmp_path: Path) -> None:
        """DOCS_ASSETS_DIR, when set and complete, is used before a packaged copy."""
        configured, packaged = fill(tmp_path / "configured"), fill(tmp_path / "packaged")
        assert find_assets(configured, (packaged,)) == configured

    def test_configured_folder_has_no_fallback(self, tmp_path: Path) -> None:
        """An incomplete DOCS_ASSETS_DIR finds nothing, rather than other files."""
        configured = fill(tmp_path / "configured", leave_out=ASSETS["redoc.standalone.js"])
        assert find_assets(configured, (fill(tmp_path / "packaged"),)) is None

    def test_packaged_copy_before_the_clone(self, tmp_path: Path) -> None:
        """Unset, the packaged copy is used before a clone's, and an incomplete one is skipped."""
        packaged, clone = fill(tmp_path / "packaged"), fill(tmp_path / "clone")
        assert find_assets(None, (packaged, clone)) == packaged
        (packaged / ASSETS["swagger-ui.css"]).unlink()
        assert not has_assets(packaged)
        assert find_assets(None, (packaged, clone)) == clone
        assert find_assets(None, (packaged,)) is None


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_page_lists_every_operation_offline(page: str, gw: Shared, tmp_path: Path) -> None:
    """Headless Chromium with the network off renders the page with every operation listed."""
    dom = await render(gw.url + page, tmp_path)
    missing = {summary for summary in OPERATIONS if summary not in dom}
    assert missing == set(), dom[:2000]
