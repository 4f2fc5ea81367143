"""Strict request bodies: UTF-8 JSON objects, plain numbers, bounded nesting and value counts."""

from __future__ import annotations

import json

import pytest

from cc2api.errors import BodyTooComplex, InvalidJSON
from cc2api.jsonbody import MAX_DEPTH, MAX_STRINGS, MAX_VALUES, load_object


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


def many_keys(count: int) -> bytes:
    """Return a body whose object holds ``count`` keys besides a valid request's."""
    keys = ",".join(f'"k{i}":1' for i in range(count))
    return ('{"prompt":"x","cwd":"/tmp",' + keys + "}").encode()


def test_a_body_of_more_keys_than_any_request_holds_is_refused() -> None:
    """Over MAX_STRINGS keys are refused as too complex, before json.loads builds them."""
    with pytest.raises(BodyTooComplex, match="strings and keys"):
        load_object(many_keys(MAX_STRINGS))


def test_a_body_of_more_values_than_any_request_holds_is_refused() -> None:
    """An array of over MAX_VALUES numbers is refused as too complex."""
    raw = b'{"prompt":"x","tools":[' + b",".join([b"1"] * MAX_VALUES) + b"]}"
    with pytest.raises(BodyTooComplex, match="values"):
        load_object(raw)


def test_keys_and_commas_inside_a_string_are_not_counted() -> None:
    """A prompt holding escaped JSON with many keys and commas is one string, and is read."""
    inner = json.dumps({f"k{i}": [1, 2, "a,b"] for i in range(3 * MAX_STRINGS)})
    raw = json.dumps({"prompt": inner, "cwd": "/tmp"}).encode()
    assert load_object(raw)["prompt"] == inner


def test_a_large_body_of_few_values_is_read() -> None:
    """A 10 MiB prompt is far under the limits, whatever its size in bytes."""
    raw = json.dumps({"prompt": "x" * 10 * 1024 * 1024, "cwd": "/tmp"}).encode()
    assert len(load_object(raw)["prompt"]) == 10 * 1024 * 1024


def test_a_body_just_under_the_limits_is_read() -> None:
    """MAX_STRINGS strings (keys included) in all are still read."""
    # Four strings besides the extra keys: "prompt", "x", "cwd" and "/tmp".
    assert len(load_object(many_keys(MAX_STRINGS - 4))) == MAX_STRINGS - 4 + 2
