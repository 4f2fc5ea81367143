"""Copying files a run's tools may have had their hands on, without being led astray.

A run can replace a file in its folders with a symbolic link (to another session's
transcript, say), a FIFO that blocks, or a file of many gigabytes. So only regular
files are copied, opened without following a link and without blocking, within a
byte budget, each written beside its target and renamed into place.

Blocking file I/O: call it from a worker thread.
"""

from __future__ import annotations

import os
import shutil
import stat
import uuid
from pathlib import Path
from typing import BinaryIO


class CopyTooLarge(Exception):
    """Raised when what is to be copied holds more than its budget."""


class CopyBudget:
    """Bytes left to copy."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.left = limit

    def spend(self, size: int) -> None:
        """Take ``size`` bytes from the budget.

        Raises:
            CopyTooLarge: fewer are left.
        """
        if size > self.left:
            raise CopyTooLarge(f"more than {self.limit} bytes to copy")
        self.left -= size


def open_regular(path: Path) -> BinaryIO:
    """Open a regular file for reading, never through a symbolic link or into a FIFO.

    Raises:
        OSError: it is missing, a link, or not a regular file.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(f"{path} is not a regular file")
    return os.fdopen(fd, "rb")


def copy_file(source: Path, target: Path, budget: CopyBudget, *, missing_ok: bool = False) -> bool:
    """Copy one regular file; return False when it is missing and ``missing_ok``.

    Raises:
        CopyTooLarge: it is larger than what is left of the budget.
        OSError: it is not a regular file, or reading or writing failed.
    """
    try:
        file = open_regular(source)
    except FileNotFoundError:
        if missing_ok:
            return False
        raise
    with file:
        budget.spend(os.fstat(file.fileno()).st_size)
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        partial = target.with_name(f".{target.name}.{uuid.uuid4().hex}.partial")
        try:
            with partial.open("xb") as out:
                shutil.copyfileobj(file, out, 1024 * 1024)
            partial.replace(target)
        finally:
            partial.unlink(missing_ok=True)
    return True


def copy_tree(source: Path, target: Path, budget: CopyBudget) -> None:
    """Copy a folder's regular files and subfolders; links and the rest are left out.

    A missing or non-folder ``source`` copies nothing.

    Raises:
        CopyTooLarge: the files hold more than the budget.
        OSError: reading or writing failed.
    """
    try:
        if not stat.S_ISDIR(os.lstat(source).st_mode):
            return
    except FileNotFoundError:
        return
    with os.scandir(source) as entries:
        for entry in entries:
            path = Path(entry.path)
            if entry.is_dir(follow_symlinks=False):
                copy_tree(path, target / entry.name, budget)
            elif entry.is_file(follow_symlinks=False):
                copy_file(path, target / entry.name, budget)
