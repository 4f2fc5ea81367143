"""The store's faults as clients and operators see them: a full disk, a read-only database.

The store's folder is a real tmpfs of a few MiB (the tests run as root, as CI does),
filled up or remounted read-only while a gateway serves.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import trio

from cc2api.app import gateway_of

from .helpers import chat_body, collect, make_settings, post_chat, served


@pytest.fixture(name="small_disk")
def _small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs to keep a gateway's store on; unmounted after the test."""
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(folder: Path) -> Path:
    """Fill the file system of ``folder`` to the last byte; return the file that does it."""
    filler = folder / "filler"
    descriptor = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for size in (65536, 4096, 512, 1):  # smaller writes take what bigger ones could not
            with contextlib.suppress(OSError):
                while True:
                    os.write(descriptor, b"\0" * size)
    finally:
        os.close(descriptor)
    with pytest.raises(OSError, match="No space left") as full:
        (folder / "probe").write_bytes(b"x" * 4096)
    assert full.value.errno == errno.ENOSPC
    return filler


async def health(client: httpx.AsyncClient) -> dict[str, str]:
    """Return /health's answer."""
    answer: dict[str, str] = (await client.get("/health")).json()
    return answer


async def wait_for_health(client: httpx.AsyncClient, status: str) -> dict[str, str]:
    """Wait until /health says ``status``; return its answer."""
    with trio.fail_after(20):
        while (answer := await health(client))["status"] != status:
            await trio.sleep(0.05)
    return answer


class TestFullDisk:
    async def test_runs_stream_while_the_disk_is_full_and_writes_resume(
        self, small_disk: Path, fake_environ: dict[str, str], workdir: Path
    ) -> None:
        """On a full disk a run streams whole, /health is degraded; its record lands later."""
        data = small_disk / "data"
        async with served(make_settings(data_dir=data), fake_environ) as gw:
            assert (await health(gw.client))["status"] == "ok"
            filler = await trio.to_thread.run_sync(fill, small_disk)
            response, streamed = await post_chat(gw.client, chat_body("lines 500 2000", workdir))
            assert streamed[-1].json()["status"] == "completed"
            assert len(streamed) == 504  # process, init, 500 lines, result, done
            degraded = await wait_for_health(gw.client, "degraded")
            assert "full" in degraded["reason"]
            assert str(data) in degraded["reason"]
            filler.unlink()
            await wait_for_health(gw.client, "ok")
            run_id = response.headers["X-Process-ID"]
            record = (await gw.client.get(f"/runs/{run_id}")).json()
            async with gw.client.stream("GET", f"/chat/{run_id}/events") as replay:
                replayed = await collect(replay)
        assert record["status"] == "completed"
        assert [(e.id, e.data) for e in replayed] == [(e.id, e.data) for e in streamed]

    async def test_a_full_disk_is_logged_once_with_its_cause(
        self,
        small_disk: Path,
        fake_environ: dict[str, str],
        workdir: Path,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """A full disk makes one ERROR line saying what failed, and one says when writes resume."""
        async with served(make_settings(data_dir=small_disk / "data"), fake_environ) as gw:
            filler = await trio.to_thread.run_sync(fill, small_disk)
            for _ in range(3):
                await post_chat(gw.client, chat_body("lines 200 2000", workdir))
            await wait_for_health(gw.client, "degraded")
            await trio.sleep(1.5)  # some retries
            filler.unlink()
            await wait_for_health(gw.client, "ok")
        errors = [r for r in caplog.records if r.levelname == "ERROR" and "store" in r.getMessage()]
        assert len(errors) == 1
        assert "full" in errors[0].getMessage()
        assert any("again" in r.getMessage() for r in caplog.records if r.levelname != "ERROR")


async def immutable(paths: list[Path], *, on: bool) -> None:
    """Make files immutable (``chattr +i``: even root's writes through open descriptors fail)."""
    await trio.run_process(["chattr", "+i" if on else "-i", *map(str, paths)])


class TestReadOnly:
    async def test_a_database_that_cannot_be_written_degrades_and_recovers(
        self, tmp_path: Path, fake_environ: dict[str, str], workdir: Path
    ) -> None:
        """A store whose files refuse writes leaves runs streaming; writes resume after."""
        data = tmp_path / "data"
        async with served(make_settings(data_dir=data), fake_environ) as gw:
            await post_chat(gw.client, chat_body("echo first", workdir))
            await gateway_of(gw.app).registry.store.flush()
            # Not the -shm: SQLite maps it, and a refused write to a mapping is SIGBUS.
            files = [data / "cc2api.db", data / "cc2api.db-wal"]
            await immutable(files, on=True)
            try:
                response, streamed = await post_chat(gw.client, chat_body("lines 50", workdir))
                assert streamed[-1].json()["status"] == "completed"
                degraded = await wait_for_health(gw.client, "degraded")
                assert str(data) in degraded["reason"]
            finally:
                await immutable(files, on=False)
            await wait_for_health(gw.client, "ok")
            run_id = response.headers["X-Process-ID"]
        with sqlite3.connect(data / "cc2api.db") as db:
            stored = db.execute("SELECT status FROM runs WHERE run_id = ?", (run_id,)).fetchall()
        assert stored == [("completed",)]
