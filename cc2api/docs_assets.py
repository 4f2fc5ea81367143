"""The pinned npm packages behind /docs and /redoc, and fetching them verified.

The wheel's build hook (``hatch_build.py``) and ``scripts/_setup.sh`` both fetch the
tarballs with ``npm pack``, so npm's own configuration (registry, proxy, certificates,
credentials, cache) applies, then check each against the sha512 integrity pinned here:
whatever registry or mirror served it, only these exact bytes are used. Only the files
listed here are taken out of a tarball, laid out as in ``node_modules``
(``swagger-ui-dist/swagger-ui.css``), which is also what ``DOCS_ASSETS_DIR`` holds.

Standard library only: the build hook loads this file by its path, with neither cc2api's
dependencies nor cc2api itself importable.

    python -m cc2api.docs_assets DEST [--tarballs DIR]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class NpmPackage:
    """One pinned npm package and the files of it that cc2api serves or must ship."""

    name: str
    version: str
    integrity: str  # npm's dist.integrity of the tarball
    served: tuple[str, ...]  # paths inside the package that the pages load
    notices: tuple[str, ...]  # licence files that travel with them

    @property
    def spec(self) -> str:
        """Return ``name@version``, as npm takes it."""
        return f"{self.name}@{self.version}"

    @property
    def tarball_name(self) -> str:
        """Return the file name ``npm pack`` gives the tarball."""
        return f"{self.name}-{self.version}.tgz"

    @property
    def files(self) -> tuple[str, ...]:
        """Return every path taken out of the tarball."""
        return self.served + self.notices


PACKAGES = (
    NpmPackage(
        name="swagger-ui-dist",
        version="5.35.0",
        integrity="sha512-U06rpMtW9V3XPGOBeamTUSr0Z09jMX4IJuANpE/EZbAhw0G8CgwrzU4YmXkn/h0wCDNsXdGarTNNHC3sU8yVUQ==",
        served=("swagger-ui.css", "swagger-ui-bundle.js"),
        notices=("LICENSE", "NOTICE", "swagger-ui-bundle.js.LICENSE.txt"),
    ),
    NpmPackage(
        name="redoc",
        version="2.5.4",
        integrity="sha512-M6jWhG1qoBnH6TFmzJnstyCZ87HmOY/UzDm78mHiYihEdlV/YcS9ogOo1NlElnJMeLsyxHFe2yFc4sNjHTrABQ==",
        served=("bundles/redoc.standalone.js",),
        notices=("LICENSE", "bundles/redoc.standalone.js.LICENSE.txt"),
    ),
)
# Each name the pages ask for, and its path in a node_modules-like folder.
SERVED = {
    Path(path).name: f"{package.name}/{path}" for package in PACKAGES for path in package.served
}
SPECS = " and ".join(package.spec for package in PACKAGES)
NPM_TIMEOUT_SECONDS = 600


class FetchError(Exception):
    """Raised when a pinned tarball cannot be fetched, or is not the pinned one."""


def integrity(content: bytes) -> str:
    """Return the npm-style sha512 integrity (``sha512-<base64>``) of ``content``."""
    return "sha512-" + base64.b64encode(hashlib.sha512(content).digest()).decode()


def integrity_of(path: Path) -> str:
    """Return the npm-style sha512 integrity of a file."""
    return integrity(path.read_bytes())


def registry(env: Mapping[str, str] | None = None) -> str:
    """Return the registry npm is configured with, for messages; '?' if npm cannot say."""
    npm = shutil.which("npm", path=(env or os.environ).get("PATH"))
    if npm is None:
        return "?"
    try:
        done = subprocess.run(
            [npm, "config", "get", "registry"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    return done.stdout.strip() or "?"


def _advice(env: Mapping[str, str] | None) -> str:
    return (
        f"cc2api's API docs pages need the npm packages {SPECS}, fetched with `npm pack` "
        f"from the registry npm is configured with ({registry(env)}) when cc2api's wheel "
        "is built. Install Node.js and npm (Debian: apt-get install npm), make "
        "that registry reachable (or point npm at a mirror: npm config set registry URL, "
        "or npm_config_registry=URL), then build again"
    )


def _npm_pack(package: NpmPackage, dest: Path, env: Mapping[str, str] | None) -> Path:
    npm = shutil.which("npm", path=(env or os.environ).get("PATH"))
    if npm is None:
        raise FetchError(f"npm is not on PATH. {_advice(env)}.")
    argv = [
        npm,
        "pack",
        package.spec,
        "--pack-destination",
        str(dest),
        "--ignore-scripts",
        "--no-update-notifier",
        "--no-fund",
        "--no-audit",
        "--loglevel=error",
    ]
    try:
        # cwd: the empty destination, so no project's package.json or .npmrc is read.
        done = subprocess.run(
            argv,
            cwd=dest,
            env=env,
            capture_output=True,
            text=True,
            timeout=NPM_TIMEOUT_SECONDS,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        raise FetchError(
            f"`npm pack {package.spec}` took over {NPM_TIMEOUT_SECONDS} s. {_advice(env)}."
        ) from None
    tarball = dest / package.tarball_name
    if done.returncode != 0 or not tarball.is_file():
        said = done.stderr.strip()[-2000:] or done.stdout.strip()[-2000:]
        raise FetchError(
            f"`npm pack {package.spec}` failed (exit {done.returncode}): {said}\n{_advice(env)}."
        )
    return tarball


def verify(package: NpmPackage, tarball: Path) -> None:
    """Raise FetchError unless ``tarball`` has exactly the pinned integrity."""
    found = integrity_of(tarball)
    if found != package.integrity:
        raise FetchError(
            f"{tarball.name} is not the pinned {package.spec}: its integrity is {found}, "
            f"the pinned one {package.integrity}. A registry, mirror or proxy served "
            "other bytes under that version; nothing was taken from it. Fetch it from a "
            "registry that serves the published tarball."
        )


def fetch(dest: Path, env: Mapping[str, str] | None = None) -> dict[str, Path]:
    """Fetch each pinned tarball into ``dest`` (kept when already there and intact).

    Returns each package's name with its verified tarball. ``env`` is npm's environment
    (default: this process's).
    """
    dest = dest.resolve()
    dest.mkdir(parents=True, exist_ok=True)
    tarballs: dict[str, Path] = {}
    for package in PACKAGES:
        tarball = dest / package.tarball_name
        if not (tarball.is_file() and integrity_of(tarball) == package.integrity):
            print(f"fetching {package.spec} with npm pack", file=sys.stderr)
            with tempfile.TemporaryDirectory(dir=dest, prefix=".npm-pack-") as scratch:
                fetched = _npm_pack(package, Path(scratch), env)
                verify(package, fetched)
                fetched.replace(tarball)
        tarballs[package.name] = tarball
    return tarballs


def extract(tarballs: Mapping[str, Path], dest: Path) -> list[Path]:
    """Write the listed files of each verified tarball under ``dest/<package>/``.

    Only the listed members are read, by name, so no path in a tarball decides where
    anything is written. Each file is replaced whole, so a server reading the folder
    never sees half of one. Returns the files written.
    """
    written: list[Path] = []
    for package in PACKAGES:
        tarball = tarballs[package.name]
        verify(package, tarball)
        with tarfile.open(tarball, "r:gz") as archive:
            for path in package.files:
                member = archive.extractfile(f"package/{path}")
                if member is None:
                    raise FetchError(f"{tarball.name} has no regular file package/{path}")
                target = dest / package.name / path
                target.parent.mkdir(parents=True, exist_ok=True)
                partial = target.with_name(target.name + ".partial")
                partial.write_bytes(member.read())
                partial.replace(target)
                written.append(target)
    return written


def main(argv: list[str] | None = None) -> int:
    """Fetch, verify and lay out the docs assets; exit 1 with advice when that fails."""
    parser = argparse.ArgumentParser(
        prog="python -m cc2api.docs_assets",
        description=f"Put the API docs pages' files ({SPECS}) in DEST, verified.",
    )
    parser.add_argument("dest", type=Path, help="folder to lay them out in, as node_modules")
    parser.add_argument(
        "--tarballs", type=Path, help="keep the tarballs here, and reuse those already there"
    )
    args = parser.parse_args(argv)
    try:
        if args.tarballs is not None:
            extract(fetch(args.tarballs), args.dest)
        else:
            with tempfile.TemporaryDirectory() as scratch:
                extract(fetch(Path(scratch)), args.dest)
    except FetchError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
