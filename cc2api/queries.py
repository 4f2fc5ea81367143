"""Query parameters of the history API: parsed once, each refusal naming the parameter."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TypeVar

from .codes import ErrorCode, Status
from .errors import BadRequest
from .store import MAX_PAGE, RunQuery, decode_cursor

__all__ = ["DEFAULT_PAGE", "page_limit", "run_query", "timestamp_param"]

DEFAULT_PAGE = 100
T = TypeVar("T")


def _refuse(name: str, problem: str) -> BadRequest:
    return BadRequest(f"query parameter {name}: {problem}", code=ErrorCode.INVALID_QUERY)


def _one(args: Mapping[str, str], name: str, parse: Callable[[str], T]) -> T | None:
    value = args.get(name)
    if value is None or value == "":
        return None
    return parse(value)


def timestamp_param(name: str) -> Callable[[str], datetime]:
    """Return a parser of an ISO 8601 time; one without an offset is taken as UTC."""

    def parse(value: str) -> datetime:
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise _refuse(name, f"{value!r} is not an ISO 8601 time") from None
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)

    return parse


def page_limit(args: Mapping[str, str]) -> int:
    """Return ``limit``: 1 to MAX_PAGE, DEFAULT_PAGE when absent."""

    def parse(value: str) -> int:
        if not value.isascii() or not value.isdigit() or not 1 <= int(value) <= MAX_PAGE:
            raise _refuse("limit", f"{value!r} is not a whole number from 1 to {MAX_PAGE}")
        return int(value)

    found = _one(args, "limit", parse)
    return DEFAULT_PAGE if found is None else found


def cursor_param(args: Mapping[str, str], check: Callable[[str], object]) -> str | None:
    """Return ``cursor`` once ``check`` (the decoder) accepts it."""
    cursor = args.get("cursor") or None
    if cursor is not None:
        try:
            check(cursor)
        except ValueError:
            raise _refuse("cursor", "not a next_cursor this server gave") from None
    return cursor


def _statuses(values: list[str]) -> frozenset[str]:
    known = {str(status) for status in Status}
    found = {part.strip() for value in values for part in value.split(",") if part.strip()}
    for status in sorted(found - known):
        raise _refuse("status", f"{status!r} is not a status (one of {', '.join(Status)})")
    return frozenset(found)


def _folder(value: str) -> str:
    if not value.startswith("/"):
        raise _refuse("cwd", f"{value!r} is not an absolute path")
    return value


def run_query(args: Mapping[str, str], statuses: list[str]) -> RunQuery:
    """Return the GET /runs query the parameters ask for (``statuses``: every ``status``).

    Raises:
        BadRequest: a parameter is malformed (code ``invalid_query``, naming it).
    """
    since = _one(args, "since", timestamp_param("since"))
    until = _one(args, "until", timestamp_param("until"))
    if since is not None and until is not None and until <= since:
        raise _refuse("until", "must be later than since")
    return RunQuery(
        statuses=_statuses(statuses),
        session_id=args.get("session_id") or None,
        cwd_prefix=_one(args, "cwd", _folder),
        since=since,
        until=until,
        cursor=cursor_param(args, decode_cursor),
        limit=page_limit(args),
    )
