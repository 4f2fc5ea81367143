"""Config files a caller names: one answer for every unusable file, refused first outside roots."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import httpx
import pytest

from cc2api.models import MAX_JSON_BYTES

from .helpers import Shared, chat_body, make_settings, served

pytestmark = pytest.mark.timeout(60)

# What each field is given: a file that works, and files that each fail differently.
GOOD = {"settings": {"model": "sonnet"}, "mcp_config": {"mcpServers": {}}}
BREAKS_THE_RULES = {"settings": {"env": {"X": "1"}}, "mcp_config": {"servers": {}}}


def unusable_files(folder: Path, field: str) -> list[Path]:
    """Paths in ``folder`` that fail each in their own way; names of the same length."""
    folder.mkdir()
    missing = folder / "missing"
    directory = folder / "directo"
    directory.mkdir()
    fifo = folder / "fifo---"
    os.mkfifo(fifo)  # no writer: a blocking open would hang
    not_json = folder / "notjson"
    not_json.write_text("model = sonnet\n")
    forbidden = folder / "forbids"
    forbidden.write_text(json.dumps(BREAKS_THE_RULES[field]))
    too_long = folder / "toolong"
    too_long.write_text(json.dumps({"model": "x" * MAX_JSON_BYTES}))
    array = folder / "array--"
    array.write_text("[]")
    return [missing, directory, fifo, not_json, forbidden, too_long, array]


def body_naming(field: str, path: Path, workdir: Path) -> dict[str, Any]:
    value: str | list[str] = str(path) if field == "settings" else [str(path)]
    return chat_body("echo hi", workdir, **{field: value})


async def answers(
    client: httpx.AsyncClient, field: str, paths: list[Path], workdir: Path
) -> set[tuple[int, bytes]]:
    """Return each answer's status and body, the path in it replaced by a placeholder."""
    seen = set()
    for path in paths:
        response = await client.post("/chat", json=body_naming(field, path, workdir))
        seen.add((response.status_code, response.content.replace(str(path).encode(), b"PATH")))
    return seen


@pytest.mark.parametrize("field", ["settings", "mcp_config"])
class TestUnusableFiles:
    async def test_every_unusable_file_gets_the_same_answer(
        self, gw: Shared, workdir: Path, tmp_path: Path, field: str
    ) -> None:
        """Missing, folder, FIFO, not JSON, breaking the rules: byte for byte one answer."""
        paths = unusable_files(tmp_path / "files", field)
        seen = await answers(gw.client, field, paths, workdir)
        assert len(seen) == 1, seen
        ((status, body),) = seen
        assert status == 422
        detail = json.loads(body)["detail"]
        index = ".0" if field == "mcp_config" else ""
        assert detail.startswith(f"{field}{index}: cannot use the file 'PATH': it must be")

    async def test_a_usable_file_is_taken(
        self, gw: Shared, workdir: Path, tmp_path: Path, field: str
    ) -> None:
        """A regular file holding what the field takes starts the run."""
        path = tmp_path / "good.json"
        path.write_text(json.dumps(GOOD[field]))
        response = await gw.client.post("/chat", json=body_naming(field, path, workdir))
        await response.aread()
        assert response.status_code == 200

    async def test_outside_the_roots_nothing_is_read(
        self, fake_environ: dict[str, str], workdir: Path, tmp_path: Path, field: str
    ) -> None:
        """Outside ALLOWED_CWD_ROOTS a usable file and every unusable one get the same 403."""
        good = tmp_path / "outside" / "goodone"
        paths = unusable_files(good.parent, field)
        good.write_text(json.dumps(GOOD[field]))
        settings = make_settings(allowed_cwd_roots=str(workdir))
        async with served(settings, fake_environ) as gw:
            seen = await answers(gw.client, field, [good, *paths], workdir)
        assert len(seen) == 1, seen
        ((status, body),) = seen
        assert status == 403
        assert json.loads(body)["code"] == "cwd_forbidden"
