"""Strict reading of JSON request bodies: UTF-8, plain JSON numbers, bounded size and nesting.

A body's cost to parse grows with the number of values in it, not its bytes: a
10 MiB prompt parses in milliseconds, while 10 MiB of tiny keys takes over a second
of CPU that holds the interpreter lock whatever thread it runs in. So the values are
counted first, with two C-speed scans of the raw bytes, and a body holding more than
any request needs is refused before it is parsed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from itertools import islice
from typing import Any, TypeVar

import trio

from .errors import BodyTooComplex, InvalidJSON

# Deeper than any request needs (a JSON Schema seldom passes 20), and far from the
# interpreter's recursion limit that validation and serialisation would run into.
MAX_DEPTH = 64
TOO_DEEP = f"the request body is nested too deeply (over {MAX_DEPTH} levels)"
# Strings (keys included) and values a body may hold. The largest requests hold a
# 64 KiB json_schema and 64 KiB of agents: a few thousand each.
MAX_STRINGS = 20_000
MAX_VALUES = 20_000
# A body of fewer bytes than this cannot hold that many of either (each takes at
# least two bytes), so it is not scanned.
_SCAN_FROM = 2 * min(MAX_STRINGS, MAX_VALUES)
# Bodies this large are parsed in a worker thread, a few at a time (the caller's
# limiter), so that several of them neither hold up the event loop in Python code
# nor add up in memory.
THREAD_FROM = 256 * 1024
T = TypeVar("T")
# One JSON string; in valid JSON a '"' outside a string always opens one, so
# consecutive matches stay in step with the document.
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _check_size(raw: bytes) -> None:
    """Refuse a body holding more strings or values than any request needs.

    Both counts are upper bounds that are exact for valid JSON, and for the valid
    prefix of invalid JSON, which is all that json.loads would parse.
    """
    strings = sum(1 for _ in islice(_STRING.finditer(raw), MAX_STRINGS + 1))
    if strings > MAX_STRINGS:
        raise BodyTooComplex(
            f"the request body holds more than {MAX_STRINGS} strings and keys; "
            "no request needs that many"
        )
    # With every string emptied, each separator left parts two values (or members).
    values = _STRING.sub(b'""', raw).count(b",") + 1
    if values > MAX_VALUES:
        raise BodyTooComplex(
            f"the request body holds more than {MAX_VALUES} values; no request needs that many"
        )


def load_object(raw: bytes) -> dict[str, Any]:
    """Return the JSON object a request body holds.

    Raises:
        InvalidJSON: the body is not UTF-8, not JSON (NaN and Infinity included),
            not an object, or nested deeper than MAX_DEPTH.
        BodyTooComplex: it holds more than MAX_STRINGS strings or MAX_VALUES values.
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidJSON("the request body is not valid UTF-8") from None
    if len(raw) >= _SCAN_FROM:
        _check_size(raw)
    try:
        body = json.loads(text, parse_constant=_no_constant)
    except RecursionError:
        raise InvalidJSON(TOO_DEEP) from None
    except ValueError as error:
        raise InvalidJSON(f"the request body is not valid JSON: {error}") from None
    if not isinstance(body, dict):
        raise InvalidJSON("the request body must be a JSON object")
    if _depth(body) > MAX_DEPTH:
        raise InvalidJSON(TOO_DEEP)
    return body


async def off_loop(parse: Callable[[bytes], T], raw: bytes, limiter: trio.CapacityLimiter) -> T:
    """Return ``parse(raw)``, run in a worker thread under ``limiter`` when the body is large.

    Cancellation: a parse under way is abandoned (its thread finishes on its own).
    """
    if len(raw) < THREAD_FROM:
        return parse(raw)
    return await trio.to_thread.run_sync(parse, raw, limiter=limiter, abandon_on_cancel=True)


def _depth(value: Any) -> int:
    """Return how deeply ``value`` nests, without recursion."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            item = list(item.values())
        if isinstance(item, list):
            deepest = max(deepest, depth)
            if depth > MAX_DEPTH:
                break
            stack.extend((child, depth + 1) for child in item)
    return deepest
