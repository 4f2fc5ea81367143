"""The client's incremental SSE parser, fed the gateway's own framing in every chunking."""

from __future__ import annotations

import json

from cc2api.client.events import Event
from cc2api.client.sse import Frame, Parser
from cc2api.sse import PING, frame, frame_json

STREAM = (
    frame_json(1, "process", {"process_id": "p"})
    + PING
    + frame(2, "message", '{"type":"assistant","text":"h\u00e9llo \u2603 \U0001f600"}'.encode())
    + frame(3, "message", b"a line\rwith a CR\r\nand a CRLF")
    + frame_json(None, "dropped", {"dropped": 2, "first_id": 5})
    + frame_json(5, "done", {"status": "completed"})
)
EXPECTED = [
    Frame(1, "process", '{"process_id":"p"}'),
    Frame(2, "message", '{"type":"assistant","text":"h\u00e9llo \u2603 \U0001f600"}'),
    Frame(3, "message", "a line\nwith a CR\nand a CRLF"),
    Frame(None, "dropped", '{"dropped":2,"first_id":5}'),
    Frame(5, "done", '{"status":"completed"}'),
]


def parse(chunks: list[bytes]) -> list[Frame]:
    """Return every frame a parser makes of ``chunks``."""
    parser = Parser()
    return [found for chunk in chunks for found in parser.feed(chunk)]


def test_whole_stream_parses_to_its_events() -> None:
    """The gateway's framing of each kind of event parses back to its id, name and data."""
    assert parse([STREAM]) == EXPECTED


def test_every_split_point_gives_the_same_events() -> None:
    """A stream cut into two chunks anywhere, mid-character and mid-CRLF too, parses the same."""
    for cut in range(len(STREAM) + 1):
        assert parse([STREAM[:cut], STREAM[cut:]]) == EXPECTED, cut


def test_one_byte_at_a_time_gives_the_same_events() -> None:
    """A stream fed a byte at a time parses the same as whole."""
    assert parse([STREAM[i : i + 1] for i in range(len(STREAM))]) == EXPECTED


def test_lone_carriage_returns_end_lines_as_the_specification_says() -> None:
    """A server that ends lines with bare CRs is understood too."""
    assert parse([b"id: 7\revent: done\rdata: {}\r\r"]) == [Frame(7, "done", "{}")]


def test_a_non_json_cli_line_stays_text() -> None:
    """A message that is not JSON keeps its text as data; JSON lines become dicts."""
    text = Event.from_frame(Frame(2, "message", "not json"))
    assert text.data == "not json"
    parsed = Event.from_frame(EXPECTED[1])
    assert parsed.data == json.loads(EXPECTED[1].data)
    assert parsed.line == EXPECTED[1].data


def test_only_cr_and_lf_end_lines() -> None:
    """A line separator inside a CLI line (U+2028, form feed) does not split it."""
    data = '{"text":"a\u2028b\u0085c\x0cd"}'
    assert parse([frame(4, "message", data.encode())]) == [Frame(4, "message", data)]
