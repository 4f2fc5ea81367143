"""Copying files a run's tools may have had their hands on, without being led astray.

A run can replace a file in its folders with a symbolic link (to another session's
transcript, say), a FIFO that blocks, a tree thousands of folders deep, or a file of
many gigabytes. So what a run wrote is copied only as regular files and folders,
opened without following a link and without blocking, within a byte, file and depth
budget that is checked before anything is written, each file written beside its
target and renamed into place. The operator's own files (``follow=True``) may be
reached through links, as dotfile managers make them.

Blocking file I/O: call it from a worker thread.
"""

from __future__ import annotations

import os
import shutil
import stat
import uuid
from pathlib import Path
from typing import BinaryIO

MAX_DEPTH = 8
MAX_FILES = 10_000


class CopyTooLarge(Exception):
    """Raised when what is to be copied holds more than its budget allows."""


class CopyBudget:
    """Bytes and files left to copy."""

    def __init__(self, limit: int, files: int = MAX_FILES) -> None:
        self.limit = limit
        self.left = limit
        self.files_left = files

    def spend(self, size: int) -> None:
        """Take one file of ``size`` bytes from the budget.

        Raises:
            CopyTooLarge: fewer bytes, or no files, are left.
        """
        if size > self.left or self.files_left <= 0:
            raise CopyTooLarge(f"more than {self.limit} bytes or {MAX_FILES} files to copy")
        self.left -= size
        self.files_left -= 1


def open_regular(path: Path, *, follow: bool = False) -> BinaryIO:
    """Open a regular file for reading, never into a FIFO; through a link only if ``follow``.

    Raises:
        OSError: it is missing, a link (unless followed), or not a regular file.
    """
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | (0 if follow else os.O_NOFOLLOW)
    fd = os.open(path, flags)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(f"{path} is not a regular file")
    return os.fdopen(fd, "rb")


def copy_file(
    source: Path,
    target: Path,
    budget: CopyBudget,
    *,
    missing_ok: bool = False,
    follow: bool = False,
) -> bool:
    """Copy one regular file; return False when it is missing and ``missing_ok``.

    Raises:
        CopyTooLarge: it is larger than what is left of the budget.
        OSError: it is not a regular file, or reading or writing failed.
    """
    try:
        file = open_regular(source, follow=follow)
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


def tree_files(source: Path, *, follow: bool = False) -> list[tuple[Path, int]]:
    """Return the regular files below ``source`` with their sizes, relative to it.

    Links are left out unless ``follow``; so is anything deeper than MAX_DEPTH. A
    missing or non-folder ``source`` holds none.

    Raises:
        CopyTooLarge: it holds more than MAX_FILES files.
    """
    found: list[tuple[Path, int]] = []
    try:
        info = os.stat(source) if follow else os.lstat(source)
    except FileNotFoundError:
        return found
    if not stat.S_ISDIR(info.st_mode):
        return found
    pending = [(Path(), 0)]
    while pending:
        relative, depth = pending.pop()
        with os.scandir(source / relative) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=follow):
                    if depth + 1 < MAX_DEPTH:
                        pending.append((relative / entry.name, depth + 1))
                elif entry.is_file(follow_symlinks=follow):
                    found.append(
                        (relative / entry.name, entry.stat(follow_symlinks=follow).st_size)
                    )
                    if len(found) > MAX_FILES:
                        raise CopyTooLarge(f"more than {MAX_FILES} files to copy")
    return found


def copy_tree(source: Path, target: Path, budget: CopyBudget, *, follow: bool = False) -> None:
    """Copy a folder's regular files and subfolders, or nothing when it is over the budget.

    Raises:
        CopyTooLarge: the files hold more than the budget; nothing was copied.
        OSError: reading or writing failed.
    """
    files = tree_files(source, follow=follow)
    if sum(size for _, size in files) > budget.left or len(files) > budget.files_left:
        raise CopyTooLarge(f"{source} holds more than is left to copy ({budget.left} bytes)")
    for relative, _ in files:
        copy_file(source / relative, target / relative, budget, follow=follow)
