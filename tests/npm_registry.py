"""A stand-in npm registry on 127.0.0.1, so that tests build cc2api's wheel offline.

It serves the pinned docs tarballs that ``./scripts/test`` keeps in ``.web/tarballs``
(verified there), or altered ones, in the form ``npm pack`` asks for: a package
document at ``/<name>`` naming each version's tarball and integrity, and the tarball
at ``/<name>/-/<name>-<version>.tgz``. Every path asked for is kept in ``requests``.
"""

from __future__ import annotations

import gzip
import io
import json
import tarfile
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from cc2api.docs_assets import PACKAGES, NpmPackage, integrity, integrity_of

from .helpers import REPO

TARBALLS = REPO / ".web" / "tarballs"


def pinned_tarballs() -> dict[str, bytes]:
    """Return each pinned package's name with its tarball; fails loudly without them."""
    found: dict[str, bytes] = {}
    for package in PACKAGES:
        path = TARBALLS / package.tarball_name
        if not path.is_file() or integrity_of(path) != package.integrity:
            pytest.fail(f"no verified {path}: run ./scripts/test, which fetches it", pytrace=False)
        found[package.name] = path.read_bytes()
    return found


def altered(package: NpmPackage, tarball: bytes) -> bytes:
    """Return ``tarball`` as a valid tarball with one byte of its first served file changed."""
    target = f"package/{package.served[0]}"
    out = io.BytesIO()
    with (
        tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as source,
        gzip.GzipFile(fileobj=out, mode="wb", mtime=0) as zipped,
        tarfile.open(fileobj=zipped, mode="w") as copy,
    ):
        for member in source.getmembers():
            data = source.extractfile(member)
            content = data.read() if data is not None else b""
            if member.name == target:
                content = b"/* altered */" + content[13:]
            member.size = len(content)
            copy.addfile(member, io.BytesIO(content))
    return out.getvalue()


class NpmRegistry:
    """The stand-in registry; ``url`` is what ``npm_config_registry`` takes."""

    def __init__(self, tarballs: Mapping[str, bytes]) -> None:
        self.tarballs = dict(tarballs)
        self.requests: list[str] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/"

    def _document(self, package: NpmPackage) -> bytes:
        content = self.tarballs[package.name]
        version = {
            "name": package.name,
            "version": package.version,
            "dist": {
                "tarball": f"{self.url}{package.name}/-/{package.tarball_name}",
                # What it serves, altered or not: npm checks this; cc2api checks its pin.
                "integrity": integrity(content),
            },
        }
        return json.dumps(
            {
                "name": package.name,
                "dist-tags": {"latest": package.version},
                "versions": {package.version: version},
            }
        ).encode()

    def _answer(self, path: str) -> tuple[bytes, str] | None:
        for package in PACKAGES:
            if package.name not in self.tarballs:
                continue
            if path == f"/{package.name}":
                return self._document(package), "application/json"
            if path == f"/{package.name}/-/{package.tarball_name}":
                return self.tarballs[package.name], "application/octet-stream"
        return None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        registry = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                registry.requests.append(self.path)
                answer = registry._answer(self.path)
                body, kind = answer if answer is not None else (b'{"error":"not found"}', "")
                self.send_response(200 if answer is not None else 404)
                self.send_header("Content-Type", kind or "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                """Keep the test output quiet."""

        return Handler

    def env(self, cache: Path) -> dict[str, str]:
        """Return npm settings that point it here, with an empty cache of its own."""
        return {
            "npm_config_registry": self.url,
            "npm_config_cache": str(cache),
            # Nothing is retried against loopback: a refusal is final.
            "npm_config_fetch_retries": "0",
        }


@contextmanager
def npm_registry(tarballs: Mapping[str, bytes]) -> Iterator[NpmRegistry]:
    """Serve ``tarballs`` (package name to bytes) on 127.0.0.1 for the block."""
    registry = NpmRegistry(tarballs)
    thread = threading.Thread(target=registry._server.serve_forever, daemon=True)
    thread.start()
    try:
        yield registry
    finally:
        registry._server.shutdown()
        registry._server.server_close()
        thread.join()
