"""The wheel ships the docs pages' files: installed outside a clone, /docs and /redoc render.

The wheel is built once for the module, as ``install.sh`` builds it, from a read-only view
of the sources; ``npm pack`` fetches the pinned tarballs from a stand-in registry on
127.0.0.1 (tests/npm_registry.py), and pip uses this virtualenv's pinned hatchling, so no
package index is asked either.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from cc2api.console_routes import ASSETS, ASSETS_DIR, PAGE
from cc2api.docs_assets import PACKAGES

from .browser import OPERATIONS, render
from .helpers import AUTH, FAKE_CLAUDE, REPO, running_server, server_environment
from .npm_registry import altered, npm_registry, pinned_tarballs

pytestmark = pytest.mark.timeout(240)

# Mount the sources read-only in a mount namespace of its own, then build from there.
READ_ONLY_BUILD = (
    'mount --bind -o ro "$1" "$2" && cd / && exec "$3" -m pip wheel --quiet --no-deps '
    '--no-build-isolation --no-index --disable-pip-version-check --wheel-dir "$4" "$2"'
)


def build_wheel(out: Path, npm_env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    """Build cc2api's wheel into ``out`` from a read-only bind mount of the sources."""
    view = out.parent / "read-only-source"
    view.mkdir()
    return subprocess.run(
        [
            *("unshare", "--mount", "sh", "-c", READ_ONLY_BUILD, "sh"),
            *(str(REPO), str(view), sys.executable, str(out)),
        ],
        env={**os.environ, **npm_env},
        capture_output=True,
        text=True,
        timeout=200,
        check=False,
        stdin=subprocess.DEVNULL,
    )


@dataclass
class Built:
    """The wheel, and what the registry was asked while it was built."""

    wheel: Path
    requests: list[str]


@pytest.fixture(scope="module", name="built")
def _built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    """cc2api's wheel, built once for the module."""
    root = tmp_path_factory.mktemp("wheel")
    with npm_registry(pinned_tarballs()) as registry:
        done = build_wheel(root / "dist", registry.env(root / "npm-cache"))
    assert done.returncode == 0, done.stdout + done.stderr
    (wheel,) = (root / "dist").glob("cc2api-*.whl")
    return Built(wheel, registry.requests)


def tarball_member(tarball: bytes, path: str) -> bytes:
    with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as archive:
        member = archive.extractfile(f"package/{path}")
        assert member is not None
        return member.read()


def test_wheel_holds_the_pinned_files(built: Built) -> None:
    """The wheel holds each served file and licence notice, byte for byte from its tarball."""
    tarballs = pinned_tarballs()
    with zipfile.ZipFile(built.wheel) as wheel:
        shipped = {
            name: wheel.read(name) for name in wheel.namelist() if name.startswith("cc2api/static/")
        }
    expected = {
        f"cc2api/static/{package.name}/{path}": tarball_member(tarballs[package.name], path)
        for package in PACKAGES
        for path in package.files
    }
    assert set(shipped) == set(expected)
    assert {"swagger-ui.css", "swagger-ui-bundle.js", "redoc.standalone.js"} <= {
        Path(name).name for name in shipped
    }
    assert all(shipped[name] == expected[name] for name in expected)
    # It came from the registry npm was pointed at.
    assert {f"/{package.name}/-/{package.tarball_name}" for package in PACKAGES} <= set(
        built.requests
    )


def test_wheel_holds_the_console(built: Built) -> None:
    """The wheel ships the web console's page and every file it serves, byte for byte."""
    with zipfile.ZipFile(built.wheel) as wheel:
        shipped = {
            name: wheel.read(name)
            for name in wheel.namelist()
            if name.startswith("cc2api/console/")
        }
    expected = {
        f"cc2api/console/{name}": (ASSETS_DIR / name).read_bytes() for name in (PAGE, *ASSETS)
    }
    assert shipped == expected


def install(wheel: Path, venv: Path) -> Path:
    """Install ``wheel`` into a new virtualenv at ``venv``; return its site-packages.

    Its dependencies are this virtualenv's (the same pins), added after its own
    site-packages by a .pth line, since the tests reach no package index; cc2api itself
    comes only from the wheel, and nothing puts the clone on its path.
    """
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run(
        [
            *(sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet"),
            *("--no-deps", "--no-index", "--disable-pip-version-check", str(wheel)),
        ],
        check=True,
        capture_output=True,
    )
    paths = "import sys, sysconfig; print(sysconfig.get_paths()['purelib'])"
    site = Path(subprocess.check_output([python, "-c", paths], text=True).strip())
    borrowed = subprocess.check_output(
        [sys.executable, "-c", paths], text=True, env={"PATH": os.environ["PATH"]}
    )
    (site / "zz-test-dependencies.pth").write_text(borrowed)
    # -I: as the console script, with neither the current folder nor PYTHON* on the path.
    where = subprocess.check_output(
        [
            python,
            "-I",
            "-c",
            "import json, sys, cc2api; print(json.dumps([cc2api.__file__, sys.path]))",
        ],
        text=True,
    )
    module, path = json.loads(where)
    assert Path(module).is_relative_to(site / "cc2api"), where
    assert str(REPO) not in path
    return site


@asynccontextmanager
async def wheel_server(venv: Path, folder: Path) -> AsyncIterator[str]:
    """Run the installed ``cc2api serve`` in ``folder`` (no .env, no .web); yield its URL."""
    home = folder / "home"
    home.mkdir()
    env = server_environment(home, FAKE_CLAUDE)
    async with running_server([str(venv / "bin" / "cc2api"), "serve"], folder, env) as (_, url):
        yield url


async def test_installed_wheel_renders_both_pages_offline(built: Built, tmp_path: Path) -> None:
    """Installed outside the clone, served from a folder with no .web and no DOCS_ASSETS_DIR,
    /docs and /redoc render every operation in Chromium with the network off."""
    install(built.wheel, tmp_path / "venv")
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    async with wheel_server(tmp_path / "venv", folder) as url:
        doms = {page: await render(url + page, tmp_path) for page in ("/docs", "/redoc")}
    assert not (folder / ".web").exists()
    for page, dom in doms.items():
        missing = {summary for summary in OPERATIONS if summary not in dom}
        assert missing == set(), (page, dom[:2000])
    # Each page's own markup, so neither passes on the other's text.
    assert 'class="swagger-ui' in doms["/docs"]
    assert "redoc-wrap" in doms["/redoc"]


async def test_installed_wheel_without_its_files_is_a_clear_503(
    built: Built, tmp_path: Path
) -> None:
    """An install whose shipped files are gone answers 503 naming the packages and the fix."""
    site = install(built.wheel, tmp_path / "venv")
    for path in sorted((site / "cc2api" / "static").rglob("*"), reverse=True):
        path.rmdir() if path.is_dir() else path.unlink()
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    async with wheel_server(tmp_path / "venv", folder) as url:
        async with httpx.AsyncClient(base_url=url, auth=AUTH) as client:
            response = await client.get("/redoc")
    assert response.status_code == 503
    assert response.json()["code"] == "docs_unavailable"
    detail = response.json()["detail"]
    assert "swagger-ui-dist@5.35.0 and redoc@2.5.4" in detail
    assert str(site / "cc2api" / "static") in detail
    assert "DOCS_ASSETS_DIR" in detail


def test_build_fails_with_advice_when_npm_cannot_fetch(tmp_path: Path) -> None:
    """A registry without the packages fails the build with a message saying what to do."""
    with npm_registry({}) as registry:
        done = build_wheel(tmp_path / "dist", registry.env(tmp_path / "npm-cache"))
    assert done.returncode != 0
    assert "`npm pack swagger-ui-dist@5.35.0` failed" in done.stderr, done.stderr
    assert f"from the registry npm is configured with ({registry.url})" in done.stderr
    assert "Install Node.js and npm" in done.stderr
    assert not list((tmp_path / "dist").glob("*.whl"))


def fetch_assets(
    dest: Path, env: Mapping[str, str], *extra: str
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m cc2api.docs_assets DEST`` as scripts/_setup.sh does."""
    return subprocess.run(
        [sys.executable, "-m", "cc2api.docs_assets", str(dest), *extra],
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_tarball_other_than_the_pinned_one_is_refused(tmp_path: Path) -> None:
    """A registry serving other bytes under the pinned version gets nothing used."""
    tarballs = pinned_tarballs()
    swagger = PACKAGES[0]
    tarballs[swagger.name] = altered(swagger, tarballs[swagger.name])
    with npm_registry(tarballs) as registry:
        done = fetch_assets(tmp_path / "assets", {**os.environ, **registry.env(tmp_path / "c")})
    assert done.returncode == 1
    assert f"is not the pinned {swagger.spec}" in done.stderr, done.stderr
    assert swagger.integrity in done.stderr
    assert not (tmp_path / "assets").exists()


def test_fetching_without_npm_says_to_install_it(tmp_path: Path) -> None:
    """With no npm on PATH, fetching fails and says to install npm."""
    done = fetch_assets(tmp_path / "assets", {"PATH": str(tmp_path), "HOME": str(tmp_path)})
    assert done.returncode == 1
    assert "npm is not on PATH" in done.stderr
    assert "apt-get install npm" in done.stderr


def test_kept_tarballs_need_no_registry(tmp_path: Path) -> None:
    """Verified tarballs kept from before are laid out again without asking any registry."""
    kept = tmp_path / "tarballs"
    kept.mkdir()
    for package in PACKAGES:
        (kept / package.tarball_name).write_bytes(pinned_tarballs()[package.name])
    with npm_registry({}) as registry:
        env = {**os.environ, **registry.env(tmp_path / "npm-cache")}
        done = fetch_assets(tmp_path / "assets", env, "--tarballs", str(kept))
    assert done.returncode == 0, done.stderr
    assert registry.requests == []
    for package in PACKAGES:
        for path in package.files:
            assert (tmp_path / "assets" / package.name / path).is_file()
