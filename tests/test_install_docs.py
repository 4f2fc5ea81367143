"""install.sh over an earlier install: the docs come from the wheel, the old npm folder goes.

Earlier install.sh versions put swagger-ui-dist and redoc in ``$PREFIX/web`` with npm and
wrote ``DOCS_ASSETS_DIR=$PREFIX/web/node_modules`` into ``.env``. npm fetches the pinned
tarballs for the wheel from a stand-in registry on 127.0.0.1 (pip still installs the
dependencies from the package index, as every install.sh test does).
"""

from __future__ import annotations

import io
import os
import pwd
import subprocess
import tarfile
from pathlib import Path

import httpx
import pytest
import trio

from cc2api.docs_assets import PACKAGES

from .helpers import FAKE_CLAUDE, REPO, start_server_process
from .npm_registry import npm_registry, pinned_tarballs

pytestmark = pytest.mark.timeout(300)

PASSWORD = "install-docs-test-password"


def earlier_install(prefix: Path) -> list[str]:
    """Lay out what an earlier install.sh left (no venv); return its .env's lines."""
    (prefix / "web" / "node_modules" / "redoc").mkdir(parents=True)
    (prefix / "web" / "node_modules" / "redoc" / "package.json").write_text("{}")
    (prefix / ".cc2api-install").touch()
    lines = [
        "AUTH_USER=admin",
        f"AUTH_PASSWORD={PASSWORD}",
        f"CLAUDE_PATH={FAKE_CLAUDE}",
        f"DOCS_ASSETS_DIR={prefix}/web/node_modules",
        "HOST=127.0.0.1",
    ]
    env_file = prefix / ".env"
    env_file.write_text("\n".join(lines) + "\n")
    env_file.chmod(0o600)
    return lines


def swagger_bundle() -> bytes:
    """Return swagger-ui-bundle.js from the pinned tarball."""
    swagger = PACKAGES[0]
    tarball = io.BytesIO(pinned_tarballs()[swagger.name])
    with tarfile.open(fileobj=tarball, mode="r:gz") as archive:
        member = archive.extractfile("package/swagger-ui-bundle.js")
        assert member is not None
        return member.read()


async def test_update_drops_the_npm_folder_and_its_env_line(tmp_path: Path) -> None:
    """An update removes $PREFIX/web and exactly its DOCS_ASSETS_DIR line from .env (kept
    mode 600), and the updated gateway serves the docs from the files its wheel ships."""
    prefix = tmp_path / "cc2api"
    prefix.mkdir()
    lines = earlier_install(prefix)
    me = pwd.getpwuid(os.geteuid()).pw_name
    with npm_registry(pinned_tarballs()) as registry:
        done = await trio.to_thread.run_sync(
            lambda: subprocess.run(
                [
                    *("bash", str(REPO / "install.sh"), "--no-service", "--prefix", str(prefix)),
                    *("--user", me, "--claude-path", str(FAKE_CLAUDE)),
                ],
                env={**os.environ, **registry.env(tmp_path / "npm-cache")},
                capture_output=True,
                text=True,
                timeout=280,
                check=False,
                stdin=subprocess.DEVNULL,
            )
        )
    assert done.returncode == 0, done.stdout + done.stderr
    assert PASSWORD not in done.stdout + done.stderr
    env_file = prefix / ".env"
    assert env_file.read_text().splitlines() == [
        line for line in lines if not line.startswith("DOCS_ASSETS_DIR=")
    ]
    assert env_file.stat().st_mode & 0o777 == 0o600
    assert not (prefix / "web").exists()
    assert sorted(p.name for p in prefix.iterdir() if p.name.startswith(".env")) == [".env"]

    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(prefix), "PORT": "0"}
    proc, url = await start_server_process(
        [str(prefix / "venv" / "bin" / "cc2api"), "serve"], prefix, env
    )
    try:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            page = await client.get("/docs")
            bundle = await client.get("/docs/assets/swagger-ui-bundle.js")
    finally:
        proc.terminate()
        with trio.fail_after(30):
            await proc.wait()
    assert page.status_code == 200
    assert bundle.status_code == 200
    assert bundle.content == swagger_bundle()
