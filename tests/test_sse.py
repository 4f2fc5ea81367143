"""SSE framing: ids, event names, payloads that survive any client parser."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cc2api.sse import PING, frame, frame_json, frame_messages

from .helpers import parse_block


class TestFrame:
    def test_event_has_id_name_and_data(self) -> None:
        """An event is id, event and data fields ended by a blank line."""
        assert frame(7, "message", b'{"a":1}') == b'id: 7\nevent: message\ndata: {"a":1}\n\n'

    def test_json_payload_is_compact(self) -> None:
        """JSON payloads are written without spaces."""
        assert frame_json(1, "process", {"process_id": "x"}) == (
            b'id: 1\nevent: process\ndata: {"process_id":"x"}\n\n'
        )

    @pytest.mark.parametrize("plain", [False, True])
    def test_messages_are_numbered_in_one_write(self, plain: bool) -> None:
        """A batch of lines becomes consecutive message events in one bytes object."""
        out = frame_messages(5, [b"a", b"b"], plain=plain)
        assert out == b"id: 5\nevent: message\ndata: a\n\nid: 6\nevent: message\ndata: b\n\n"

    def test_carriage_return_cannot_break_framing(self) -> None:
        """A CR inside a line becomes a second data field, not a broken event."""
        block = frame(1, "message", b"a\rb").decode()
        assert block.count("\n\n") == 1
        assert parse_block(block.rstrip("\n")).data == "a\nb"

    def test_ping_is_a_comment(self) -> None:
        """The keepalive is an SSE comment, which clients ignore."""
        assert PING == b": ping\n\n"

    @given(
        st.text(
            alphabet=st.characters(codec="utf-8", exclude_characters="\r\n"),
            max_size=200,
        )
    )
    def test_round_trip(self, text: str) -> None:
        """Any single-line payload is read back exactly by an SSE parser."""
        block = frame(3, "message", text.encode()).decode()
        event = parse_block(block.removesuffix("\n\n"))
        assert (event.id, event.event, event.data) == (3, "message", text)
