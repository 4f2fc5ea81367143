"""Strict reading of JSON request bodies: UTF-8, plain JSON numbers, bounded nesting."""

from __future__ import annotations

import json
from typing import Any

from .errors import InvalidJSON

# Deeper than any request needs (a JSON Schema seldom passes 20), and far from the
# interpreter's recursion limit that validation and serialisation would run into.
MAX_DEPTH = 64
TOO_DEEP = f"the request body is nested too deeply (over {MAX_DEPTH} levels)"


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def load_object(raw: bytes) -> dict[str, Any]:
    """Return the JSON object a request body holds.

    Raises:
        InvalidJSON: the body is not UTF-8, not JSON (NaN and Infinity included),
            not an object, or nested deeper than MAX_DEPTH.
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidJSON("the request body is not valid UTF-8") from None
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
