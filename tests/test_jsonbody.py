"""Strict request bodies: UTF-8 JSON objects, plain numbers, at most 64 levels deep."""

from __future__ import annotations

import pytest

from cc2api.errors import InvalidJSON
from cc2api.jsonbody import MAX_DEPTH, load_object


def nested(depth: int) -> bytes:
    """Return a JSON object nested ``depth`` levels deep (the outer object is level 1)."""
    return b'{"a":' * (depth - 1) + b"{}" + b"}" * (depth - 1)


def test_nesting_up_to_the_limit_is_taken() -> None:
    """A body exactly MAX_DEPTH levels deep is read."""
    assert load_object(nested(MAX_DEPTH))


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 10_000])
def test_nesting_past_the_limit_is_refused(depth: int) -> None:
    """One level past MAX_DEPTH, or far past it, is refused as nested too deeply."""
    with pytest.raises(InvalidJSON, match="nested too deeply"):
        load_object(nested(depth))


def test_lists_count_as_levels() -> None:
    """Arrays nest like objects."""
    with pytest.raises(InvalidJSON, match="nested too deeply"):
        load_object(b'{"a":' + b"[" * MAX_DEPTH + b"]" * MAX_DEPTH + b"}")


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ('{"a": 1}'.encode("utf-16"), "not valid UTF-8"),
        (b'{"a": NaN}', "not valid JSON"),
        (b'{"a": -Infinity}', "not valid JSON"),
        (b"[]", "must be a JSON object"),
    ],
)
def test_refused_bodies_say_why(raw: bytes, fragment: str) -> None:
    """UTF-16, NaN, Infinity and non-objects are refused, each with its reason."""
    with pytest.raises(InvalidJSON, match=fragment):
        load_object(raw)
