"""The CLI's sessions as the API shows them: listed, summarized, read a page at a time, deleted.

Design
======

The CLI's own files are the truth (:mod:`cc2api.sessions` says where it keeps them): a
session is a ``<session id>.jsonl`` transcript in a folder of ``<config>/projects``,
and exists for as long as that file does. Nothing is copied or indexed elsewhere, so
a session written or removed by the CLI, by hand or by another tool is seen at once.

What a summary holds, and how it is read
----------------------------------------
The Agent SDK (``list_sessions`` in anthropics/claude-agent-sdk-python,
``src/claude_agent_sdk/_internal/sessions.py``) reads 64 KiB from each end of a
transcript and picks fields out of the text without parsing it. A message count
needs a pass over every line, so here each transcript is read once, line by line,
every complete line parsed, and what was learned is kept in a :class:`SessionIndex`
(an LRU the app owns) under the file's identity (device, inode, size, modification
time). Transcripts only grow: when a cached file has grown and the bytes before the
end of the last pass are unchanged, the pass goes on from there instead of starting
again, so listing thousands of sessions reads only what was appended since.

- ``cwd``: the first entry carrying one, within :data:`~cc2api.sessions.HEAD_BYTES`,
  exactly as :func:`~cc2api.sessions.recorded_cwd` reads it (the folder resumes and
  ALLOWED_CWD_ROOTS are checked against).
- ``created_at`` and ``last_activity``: the first and last entries' ``timestamp``
  (the SDK takes ``created_at`` from the first timestamp of the head too, and its
  ``last_modified`` from the file's mtime); without any, the file's mtime.
- ``message_count``: the ``user`` and ``assistant`` entries that are not ``isMeta``,
  ``isSidechain`` or a team's, the entries the SDK's ``get_session_messages`` shows
  (``_is_visible_message``). The SDK counts only those on the conversation's chain
  (``parentUuid`` links from the newest leaf); here they are counted in file order, as
  the transcript is served, so a rewound branch still counts.
- ``preview``: the first real user prompt as the SDK extracts it
  (``_extract_first_prompt_from_head``): tool results, ``isMeta`` and
  ``isCompactSummary`` entries and the CLI's own markers (``<local-command-stdout>``,
  hooks, IDE selections, interruptions) skipped, a slash command's name kept only as a
  fallback, newlines as spaces, cut at :data:`PREVIEW_CHARS` with an ellipsis. It is
  looked for in every line, not only in the head, so a first prompt of a megabyte
  still gives one.

Which transcripts are sessions
------------------------------
Files named ``<UUID>.jsonl`` in real folders of ``<config>/projects``; the operator's
``<config>`` and ``projects`` may be links, nothing below them is followed: a folder
is opened with ``O_NOFOLLOW``, its files through that descriptor, also with
``O_NOFOLLOW``, and only regular files are read (``cc2api.safecopy.open_regular``
does the same from a path; a descriptor also holds when a folder is swapped for a
link meanwhile). Unlike the SDK, a session with no prompt yet (a run killed at
once) is listed, with ``preview`` null: the CLI resumes it all the same. Like the SDK,
a transcript whose first entry is a sidechain's is left out of the list (such files
are subagents' in older CLIs); it can still be read and deleted by its id. An id in
several projects (copied by hand) is listed once, its newest copy, and deleting it
removes every copy.

Blocking file I/O throughout: call it from a worker thread.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import dataclasses
import json
import os
import re
import shutil
import stat
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from .codes import ErrorCode
from .errors import NotFound
from .sessions import HEAD_BYTES, is_session_id, project_key

__all__ = [
    "MAX_PAGE_BYTES",
    "PREVIEW_CHARS",
    "SUMMARY_CACHE_ENTRIES",
    "LinePage",
    "SessionIndex",
    "SessionPage",
    "SessionQuery",
    "SessionSummary",
    "Visible",
    "decode_line_cursor",
    "decode_list_cursor",
    "require_resumable",
]

PREVIEW_CHARS = 200
# One page of a transcript holds at most this many bytes of lines (and at least one
# line, whatever its size): 500 lines of big tool results would not fit in memory.
MAX_PAGE_BYTES = 16 * 1024 * 1024
# Summaries kept: a few hundred bytes each, enough for every session of a busy host.
SUMMARY_CACHE_ENTRIES = 16_384
# The CLI cuts a project key at 200 characters and adds a hash of the path (Bun's,
# which is not reproduced here): a longer key's folder is found by its first 200.
MAX_KEY_CHARS = 200
# How many bytes before the end of the last pass must be unchanged for the file to
# count as appended to.
_MARK_BYTES = 64
_SUFFIX = ".jsonl"
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC

# As the SDK: auto-generated user text that is not a prompt.
_NOT_A_PROMPT = re.compile(
    r"^(?:<local-command-stdout>|<session-start-hook>|<tick>|<goal>|"
    r"\[Request interrupted by user[^\]]*\]|"
    r"\s*<ide_opened_file>[\s\S]*</ide_opened_file>\s*$|"
    r"\s*<ide_selection>[\s\S]*</ide_selection>\s*$)"
)
_COMMAND_NAME = re.compile(r"<command-name>(.*?)</command-name>")

# Whether a recorded folder (None: none recorded) may be shown: ALLOWED_CWD_ROOTS.
Visible = Callable[[str | None], bool]


@dataclass(frozen=True)
class SessionSummary:
    """What a session's transcript says of it, as GET /sessions lists it (less the store's part)."""

    session_id: str
    cwd: str | None
    created_at: datetime
    last_activity: datetime
    message_count: int
    preview: str | None
    sidechain: bool  # its first entry is a sidechain's: left out of the list
    folder: str  # the project folder holding it


@dataclass(frozen=True)
class SessionQuery:
    """A page of GET /sessions: filters, newest activity first, after a cursor."""

    cwd: str | None = None  # recorded in exactly this folder
    since: datetime | None = None  # last activity at or after
    after: tuple[datetime, str] | None = None  # a decoded cursor: (last_activity, id)
    limit: int = 100


@dataclass(frozen=True)
class SessionPage:
    """Summaries, newest activity first, and the cursor of the next page (None: the last)."""

    sessions: list[SessionSummary]
    next_cursor: str | None


@dataclass(frozen=True)
class LinePage:
    """Lines of a transcript, parsed, in file order, and the cursor of the next page."""

    summary: SessionSummary
    messages: list[Any]
    next_cursor: str | None


def _moment(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _prompt_texts(entry: dict[str, Any]) -> list[str]:
    """Return the texts of a user entry that may be its prompt (none for a tool result)."""
    if entry.get("isMeta") is True or entry.get("isCompactSummary") is True:
        return []
    message = entry.get("message")
    if not isinstance(message, dict):
        return []
    content = message.get("content")
    if isinstance(content, str):
        return [content]
    if not isinstance(content, list):
        return []
    texts = []
    for block in content:
        if not isinstance(block, dict):
            continue
        if block.get("type") == "tool_result":
            return []
        if block.get("type") == "text" and isinstance(block.get("text"), str):
            texts.append(block["text"])
    return texts


def _counts(entry: dict[str, Any]) -> bool:
    """Return whether an entry is a message (the SDK's ``_is_visible_message``)."""
    return (
        entry.get("type") in ("user", "assistant")
        and not entry.get("isMeta")
        and not entry.get("isSidechain")
        and not entry.get("teamName")
    )


@dataclass
class _Scan:
    """What one pass over a transcript learned, and where it stopped (a line's start)."""

    offset: int = 0
    mark: bytes = b""  # the bytes just before ``offset``
    entries: int = 0
    count: int = 0
    first: datetime | None = None
    last: datetime | None = None
    cwd: str | None = None
    preview: str | None = None
    command: str | None = None  # the first slash command: the preview's fallback
    sidechain: bool = False

    def feed(self, file: BinaryIO) -> None:
        """Read the complete lines from ``offset`` on; an unfinished last line waits."""
        file.seek(self.offset)
        for line in file:
            if not line.endswith(b"\n"):
                break  # being written: read it next time
            end = self.offset + len(line)
            try:
                entry = json.loads(line)
            except (ValueError, RecursionError):
                entry = None
            if isinstance(entry, dict):
                self._take(entry, in_head=end <= HEAD_BYTES)
            self.mark = (self.mark + line)[-_MARK_BYTES:]
            self.offset = end

    def _take(self, entry: dict[str, Any], *, in_head: bool) -> None:
        if self.entries == 0:
            self.sidechain = entry.get("isSidechain") is True
        self.entries += 1
        moment = _moment(entry.get("timestamp"))
        if moment is not None:
            self.first = self.first or moment
            self.last = moment
        if self.cwd is None and in_head and isinstance(entry.get("cwd"), str):
            self.cwd = entry["cwd"]
        if _counts(entry):
            self.count += 1
        if self.preview is None and entry.get("type") == "user":
            self._look_for_prompt(entry)

    def _look_for_prompt(self, entry: dict[str, Any]) -> None:
        for raw in _prompt_texts(entry):
            text = raw.replace("\n", " ").strip()
            if not text:
                continue
            command = _COMMAND_NAME.search(text)
            if command:
                self.command = self.command or command.group(1)
                continue
            if _NOT_A_PROMPT.match(text):
                continue
            if len(text) > PREVIEW_CHARS:
                text = text[:PREVIEW_CHARS].rstrip() + "\u2026"
            self.preview = text
            return

    def summary(self, session_id: str, folder: str, mtime_ns: int) -> SessionSummary:
        """Return the session's summary; times default to the file's modification time."""
        modified = datetime.fromtimestamp(mtime_ns / 1e9, UTC)
        return SessionSummary(
            session_id=session_id,
            cwd=self.cwd,
            created_at=self.first or modified,
            last_activity=self.last or modified,
            message_count=self.count,
            preview=self.preview or self.command,
            sidechain=self.sidechain,
            folder=folder,
        )


@dataclass(frozen=True)
class _Cached:
    identity: tuple[int, int, int, int]  # device, inode, size, mtime_ns
    scan: _Scan
    summary: SessionSummary


@contextlib.contextmanager
def _folder(path: str) -> Iterator[int]:
    """Open a project folder without following a link; yield its descriptor."""
    fd = os.open(path, _DIR_FLAGS)
    try:
        yield fd
    finally:
        os.close(fd)


def _open_transcript(dir_fd: int, name: str) -> BinaryIO:
    """Open a transcript of an open folder: a regular file, never through a link or a FIFO."""
    fd = os.open(name, _FILE_FLAGS, dir_fd=dir_fd)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(f"{name} is not a regular file")
    return os.fdopen(fd, "rb")


def _project_folders(config: Path, *, follow: bool = False) -> list[str]:
    """Return the folders of ``<config>/projects``; links among them only if ``follow``."""
    try:
        with os.scandir(config / "projects") as entries:
            return [entry.path for entry in entries if entry.is_dir(follow_symlinks=follow)]
    except OSError:
        return []


def _keys_of(cwd: str) -> set[str]:
    """Return the names the CLI may give ``cwd``'s project: of its real path, or as given."""
    return {project_key(cwd), re.sub(r"[^A-Za-z0-9]", "-", cwd)}


def _is_project_of(name: str, keys: set[str]) -> bool:
    return any(
        name == key or (len(key) > MAX_KEY_CHARS and name.startswith(key[:MAX_KEY_CHARS] + "-"))
        for key in keys
    )


def encode_list_cursor(last_activity: datetime, session_id: str) -> str:
    """Return the opaque cursor of the page after the session (last_activity, session_id)."""
    raw = f"s|{last_activity.isoformat()}|{session_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unbase64(cursor: str) -> str:
    try:
        return base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (ValueError, binascii.Error, UnicodeDecodeError) as error:
        raise ValueError(f"{cursor!r} is not a cursor this server gave") from error


def decode_list_cursor(cursor: str) -> tuple[datetime, str]:
    """Return what :func:`encode_list_cursor` encoded.

    Raises:
        ValueError: not such a cursor.
    """
    kind, _, rest = _unbase64(cursor).partition("|")
    moment, _, session_id = rest.partition("|")
    parsed = _moment(moment)
    if kind != "s" or parsed is None or not is_session_id(session_id):
        raise ValueError(f"{cursor!r} is not a cursor this server gave")
    return parsed, session_id


def encode_line_cursor(line: int, offset: int) -> str:
    """Return the opaque cursor of a transcript's page from line ``line``, at byte ``offset``."""
    return base64.urlsafe_b64encode(f"l|{line}|{offset}".encode()).decode().rstrip("=")


def decode_line_cursor(cursor: str) -> tuple[int, int]:
    """Return what :func:`encode_line_cursor` encoded: the line's index and its offset.

    Raises:
        ValueError: not such a cursor.
    """
    kind, *parts = _unbase64(cursor).split("|")
    if (
        kind != "l"
        or len(parts) != 2
        or not all(p.isascii() and p.isdigit() and len(p) <= 20 for p in parts)
    ):
        raise ValueError(f"{cursor!r} is not a cursor this server gave")
    return int(parts[0]), int(parts[1])


def _parsed(line: bytes) -> Any:
    try:
        return json.loads(line)
    except (ValueError, RecursionError):
        return line.rstrip(b"\n").decode("utf-8", "replace")  # not JSON: passed on as text


def _seek_line(file: BinaryIO, line: int, offset: int) -> None:
    """Put ``file`` at the start of line ``line``, which a cursor says begins at ``offset``.

    The offset is trusted when a line starts there (the file was only appended to since);
    else (it was rewritten) the lines are counted from the start.
    """
    if 0 < offset <= os.fstat(file.fileno()).st_size:
        file.seek(offset - 1)
        if file.read(1) == b"\n":
            return
    file.seek(0)
    for _ in range(line):
        if not file.readline().endswith(b"\n"):
            return


class SessionIndex:
    """Reads the CLI's sessions; keeps their summaries in a bounded LRU. App-long, thread-safe.

    Every method does blocking file I/O: call it from a worker thread.
    """

    def __init__(self, entries: int = SUMMARY_CACHE_ENTRIES) -> None:
        self._entries = entries
        self._cache: OrderedDict[str, _Cached] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        """Return how many summaries are kept."""
        return len(self._cache)

    # -- summaries -------------------------------------------------------------

    def _summarize(self, dir_fd: int, folder: str, name: str) -> SessionSummary | None:
        """Return the summary of transcript ``name`` of an open folder; None if it is none."""
        try:
            info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except OSError:
            return None
        if not stat.S_ISREG(info.st_mode):
            return None
        key = os.path.join(folder, name)
        identity = (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None:
                self._cache.move_to_end(key)
        if cached is not None and cached.identity == identity:
            return cached.summary
        try:
            with _open_transcript(dir_fd, name) as file:
                opened = os.fstat(file.fileno())
                identity = (opened.st_dev, opened.st_ino, opened.st_size, opened.st_mtime_ns)
                scan = _Scan()
                if cached is not None and _appended(file, cached, identity):
                    scan = dataclasses.replace(cached.scan)
                scan.feed(file)
        except OSError:
            return None
        summary = scan.summary(name.removesuffix(_SUFFIX), folder, identity[3])
        with self._lock:
            self._cache[key] = _Cached(identity, scan, summary)
            self._cache.move_to_end(key)
            while len(self._cache) > self._entries:
                self._cache.popitem(last=False)
        return summary

    def _in_folder(self, folder: str, visible: Visible) -> list[SessionSummary]:
        try:
            with _folder(folder) as dir_fd, os.scandir(dir_fd) as entries:
                names = [
                    entry.name
                    for entry in entries
                    if entry.name.endswith(_SUFFIX)
                    and is_session_id(entry.name.removesuffix(_SUFFIX))
                ]
                found = [self._summarize(dir_fd, folder, name) for name in names]
        except OSError:
            return []
        return [s for s in found if s is not None and visible(s.cwd)]

    def _copies(self, config: Path, session_id: str, visible: Visible) -> list[SessionSummary]:
        """Return every visible transcript of ``session_id``, newest activity first."""
        found = []
        for folder in _project_folders(config):
            try:
                with _folder(folder) as dir_fd:
                    summary = self._summarize(dir_fd, folder, session_id + _SUFFIX)
            except OSError:
                continue
            if summary is not None and visible(summary.cwd):
                found.append(summary)
        found.sort(key=lambda s: s.last_activity, reverse=True)
        return found

    # -- the API ---------------------------------------------------------------

    def list_page(
        self,
        config: Path,
        query: SessionQuery,
        visible: Visible,
        only: frozenset[str] | None = None,
    ) -> SessionPage:
        """Return a page of sessions, newest activity first, as GET /sessions lists them.

        ``only``: the session ids that may be listed at all (a key's), left out before
        the page and its cursor are cut, so that neither says anything of the others.
        """
        wanted = set() if query.cwd is None else {query.cwd, os.path.realpath(query.cwd)}
        if query.cwd is None:
            folders = _project_folders(config)
        else:
            keys = _keys_of(query.cwd)
            folders = [f for f in _project_folders(config) if _is_project_of(Path(f).name, keys)]
        newest: dict[str, SessionSummary] = {}
        for folder in folders:
            for summary in self._in_folder(folder, visible):
                if summary.sidechain or (query.cwd is not None and summary.cwd not in wanted):
                    continue
                if only is not None and summary.session_id not in only:
                    continue
                if query.since is not None and summary.last_activity < query.since:
                    continue
                known = newest.get(summary.session_id)
                if known is None or summary.last_activity > known.last_activity:
                    newest[summary.session_id] = summary
        picked = sorted(newest.values(), key=_order, reverse=True)
        if query.after is not None:
            after = query.after
            picked = [s for s in picked if _order(s) < after]
        page = picked[: query.limit]
        more = len(picked) > query.limit
        cursor = encode_list_cursor(page[-1].last_activity, page[-1].session_id) if more else None
        return SessionPage(page, cursor)

    def summary(self, config: Path, session_id: str, visible: Visible) -> SessionSummary:
        """Return the summary of a session (its newest copy).

        Raises:
            NotFound: no visible transcript has this id.
        """
        copies = self._copies(config, session_id, visible)
        if not copies:
            raise _unknown(session_id)
        return copies[0]

    def read_page(
        self,
        config: Path,
        session_id: str,
        visible: Visible,
        *,
        start: tuple[int, int] = (0, 0),
        limit: int = 100,
    ) -> LinePage:
        """Return up to ``limit`` lines of a session's transcript from ``start`` (line, offset).

        Only the page's lines are held, and at most MAX_PAGE_BYTES of them (one at least).

        Raises:
            NotFound: no visible transcript has this id.
        """
        summary = self.summary(config, session_id, visible)
        line, offset = start
        lines: list[bytes] = []
        held = 0
        more = False
        try:
            with (
                _folder(summary.folder) as dir_fd,
                _open_transcript(dir_fd, session_id + _SUFFIX) as file,
            ):
                _seek_line(file, line, offset)
                offset = file.tell()
                for raw in file:
                    if not raw.endswith(b"\n"):
                        break  # being written
                    if len(lines) >= limit or (lines and held + len(raw) > MAX_PAGE_BYTES):
                        more = True
                        break
                    lines.append(raw)
                    held += len(raw)
        except FileNotFoundError:
            raise _unknown(session_id) from None
        cursor = encode_line_cursor(line + len(lines), offset + held) if more else None
        return LinePage(summary, [_parsed(raw) for raw in lines], cursor)

    def delete(self, config: Path, session_id: str, visible: Visible) -> None:
        """Remove every visible copy of a session: its folder beside it, then its transcript.

        The folder goes first, so that a failure halfway leaves a session that is still
        listed and can be deleted again, never a folder without its transcript.

        Raises:
            NotFound: no visible transcript has this id.
            OSError: a file could not be removed.
        """
        copies = self._copies(config, session_id, visible)
        if not copies:
            raise _unknown(session_id)
        for copy in copies:
            with _folder(copy.folder) as dir_fd:
                _remove_beside(dir_fd, session_id)
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(session_id + _SUFFIX, dir_fd=dir_fd)
            with self._lock:
                self._cache.pop(os.path.join(copy.folder, session_id + _SUFFIX), None)


def _order(summary: SessionSummary) -> tuple[datetime, str]:
    return summary.last_activity, summary.session_id


def _appended(file: BinaryIO, cached: _Cached, identity: tuple[int, int, int, int]) -> bool:
    """Return whether ``file`` is the cached one, only appended to since its last pass."""
    scan = cached.scan
    if identity[:2] != cached.identity[:2] or identity[2] < scan.offset:
        return False
    file.seek(scan.offset - len(scan.mark))
    return file.read(len(scan.mark)) == scan.mark


def _remove_beside(dir_fd: int, session_id: str) -> None:
    """Remove ``<session id>/`` of an open project folder (a link there: only the link)."""
    try:
        info = os.stat(session_id, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(info.st_mode):
        shutil.rmtree(session_id, dir_fd=dir_fd)  # never follows a link, at any depth
    else:
        os.unlink(session_id, dir_fd=dir_fd)


def _unknown(session_id: str) -> NotFound:
    return NotFound(f"no session {session_id}", code=ErrorCode.UNKNOWN_SESSION)


def require_resumable(config: Path, cwd: str, session_id: str) -> None:
    """Check that a run in ``cwd`` resuming ``session_id`` has a transcript to resume.

    For runs that are neither bounded nor confined, where the CLI finds the session
    itself (bounded and confined runs: :func:`cc2api.resume.choose_session`). The CLI
    looks in the project of ``cwd``, and also in those of the folder's git worktrees
    (seen with 2.1.197); rather than run git, a transcript of that id in any project
    passes, and the CLI says so if it cannot find it after all. Links are followed, as
    the CLI follows them: this only tells whether there is something to resume.

    Raises:
        NotFound: no project of the CLI's config folder holds such a transcript.
    """
    name = session_id + _SUFFIX
    if os.path.lexists(config / "projects" / project_key(cwd) / name):
        return
    if any(os.path.lexists(os.path.join(f, name)) for f in _project_folders(config, follow=True)):
        return
    raise NotFound(
        f"no session {session_id} to resume: the CLI keeps none with this id "
        "(deleted, never saved, or kept by another server)",
        code=ErrorCode.UNKNOWN_SESSION,
    )
