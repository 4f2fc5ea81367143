"""Query parameters, checked: page sizes, cursors, times and folders of the listing endpoints.

Each parser names the parameter it refuses in a 422 ``validation_error``, as
:mod:`cc2api.bodies` names a body's fields: ``limit: must be a whole number from 1 to 500``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection
from datetime import UTC, datetime
from typing import TypeVar

from werkzeug.datastructures import MultiDict

from .errors import ValidationFailed
from .store import MAX_PAGE

__all__ = ["DEFAULT_PAGE", "cursor_of", "folder_of", "limit_of", "moment_of", "only"]

DEFAULT_PAGE = 100
Decoded = TypeVar("Decoded")
Args = MultiDict[str, str]


def only(args: Args, names: Collection[str], *, repeatable: Collection[str] = ()) -> None:
    """Refuse parameters the endpoint does not take, and any given twice (but ``repeatable``).

    Raises:
        ValidationFailed: an unknown or repeated parameter.
    """
    for name in args:
        if name not in names:
            known = ", ".join(sorted(names))
            raise ValidationFailed(f"{name}: unknown query parameter (this endpoint takes {known})")
        if len(args.getlist(name)) > 1 and name not in repeatable:
            raise ValidationFailed(f"{name}: given more than once")


def limit_of(args: Args, default: int = DEFAULT_PAGE, most: int = MAX_PAGE) -> int:
    """Return ``limit``: a page's size, ``default`` when not given.

    Raises:
        ValidationFailed: not a whole number from 1 to ``most``.
    """
    given = args.get("limit")
    if given is None:
        return default
    if not (given.isascii() and given.isdigit() and len(given) <= 6 and 1 <= int(given) <= most):
        raise ValidationFailed(f"limit: must be a whole number from 1 to {most}, got {given!r}")
    return int(given)


def moment_of(args: Args, name: str) -> datetime | None:
    """Return an ISO 8601 time parameter, in UTC; None when not given.

    Raises:
        ValidationFailed: not an ISO 8601 time with a time zone.
    """
    given = args.get(name)
    if given is None:
        return None
    try:
        moment = datetime.fromisoformat(given)
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise ValidationFailed(
            f"{name}: must be an ISO 8601 time with a time zone, such as "
            f"2026-12-01T09:30:00Z, got {given!r}"
        )
    return moment.astimezone(UTC)


def folder_of(args: Args, name: str) -> str | None:
    """Return a folder parameter, as given; None when not given.

    Raises:
        ValidationFailed: not an absolute path.
    """
    given = args.get(name)
    if given is None:
        return None
    if "\0" in given or not os.path.isabs(given):
        raise ValidationFailed(f"{name}: must be an absolute path, got {given!r}")
    return given


def cursor_of(args: Args, decode: Callable[[str], Decoded]) -> Decoded | None:
    """Return ``cursor`` decoded by ``decode``; None when not given.

    Raises:
        ValidationFailed: ``decode`` refused it (ValueError): not a cursor this server gave.
    """
    given = args.get("cursor")
    if given is None:
        return None
    try:
        return decode(given)
    except ValueError:
        raise ValidationFailed(
            f"cursor: {given!r} is not a cursor this server gave (pass next_cursor as it came)"
        ) from None
