"""/docs and /redoc: a valid OpenAPI document, rendered offline in headless Chromium."""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import pytest
import trio
from openapi_spec_validator import validate

from cc2api.models import ChatRequest
from cc2api.openapi import openapi_document

from .helpers import make_settings, served

pytestmark = pytest.mark.timeout(120)

OPERATIONS = {
    "Health, CLI version and number of active runs (no auth)",
    "Start a run of the Claude Code CLI and stream it",
    "Cancel a run; answers once its processes are gone",
    "The live runs",
}


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
    async def test_docs_pages_and_assets_need_no_login(self, fake_environ: dict[str, str]) -> None:
        """/openapi.json, /docs, /redoc and their scripts are served without credentials."""
        async with served(make_settings(), fake_environ) as gw:
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
        """Without the npm packages the pages answer 503 JSON saying what to install."""
        async with served(make_settings(docs_assets_dir=tmp_path), fake_environ) as gw:
            response = await gw.client.get("/docs")
        assert response.status_code == 503
        assert response.json()["code"] == "docs_unavailable"
        assert "swagger-ui-dist" in response.json()["detail"]


async def render(url: str, tmp_path: Path) -> str:
    """Return the DOM of ``url`` after headless Chromium ran its scripts, offline."""
    chromium = shutil.which("chromium")
    assert chromium, "the docs tests need Debian's chromium (./scripts/test installs it)"
    done = await trio.run_process(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}",
            # The network is off: everything but loopback goes to a closed port.
            "--proxy-server=http://127.0.0.1:9",
            "--virtual-time-budget=20000",
            "--dump-dom",
            url,
        ],
        capture_stdout=True,
        capture_stderr=True,
        check=True,
    )
    return done.stdout.decode()


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_page_lists_every_operation_offline(
    page: str, fake_environ: dict[str, str], tmp_path: Path
) -> None:
    """Headless Chromium with the network off renders the page with every operation listed."""
    async with served(make_settings(), fake_environ) as gw:
        dom = await render(gw.url + page, tmp_path)
    missing = {summary for summary in OPERATIONS if summary not in dom}
    assert missing == set(), dom[:2000]
