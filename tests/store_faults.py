"""A small tmpfs for the store's fault tests: filled to the last byte, or made read-only.

Mounting needs root; the tests that use it are skipped without (they run as root
here and in CI).
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

__all__ = ["Tmpfs", "tmpfs"]


class Tmpfs:
    """A mounted tmpfs: fill it, free it, make it read-only."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.filler = path / "filler"

    def fill(self) -> int:
        """Write a file until the file system is full; return its size."""
        chunk = b"\0" * 65536
        written = 0
        with self.filler.open("ab", buffering=0) as file:
            while True:
                try:
                    written += file.write(chunk)
                except OSError as error:
                    if error.errno != errno.ENOSPC:
                        raise
                    break
            # The last pages: a smaller write may still fit.
            with contextlib.suppress(OSError):
                while file.write(b"\0" * 512):
                    written += 512
        return written

    def free(self) -> None:
        """Delete the filler."""
        self.filler.unlink(missing_ok=True)

    def read_only(self) -> None:
        """Remount read-only (refused while a file on it is open for writing)."""
        _mount("-o", "remount,ro", str(self.path))


def _mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, capture_output=True, timeout=30)


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Tmpfs]:
    """Mount a tmpfs of ``size`` (a mount option: "8m") on ``path`` for the block; needs root."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    path.mkdir(parents=True, exist_ok=True)
    _mount("-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path))
    try:
        yield Tmpfs(path)
    finally:
        done = subprocess.run(["umount", str(path)], capture_output=True, check=False, timeout=30)
        if done.returncode:  # something still holds it: detach it now, it goes when let go
            subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)
