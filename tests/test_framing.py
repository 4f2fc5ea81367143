"""Line framing: whole lines out, any chunking in, a hard cap on length."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cc2api.framing import LineFramer, LineTooLong, marked


def frame_all(chunks: list[bytes], limit: int = 1 << 20) -> list[bytes]:
    framer = LineFramer(limit)
    lines: list[bytes] = []
    for chunk in chunks:
        lines.extend(framer.feed(chunk))
    return lines + framer.finish()


class TestLineFramer:
    def test_splits_on_newline(self) -> None:
        """Each newline ends one line, and the newline is not part of it."""
        assert frame_all([b"a\nbb\nccc\n"]) == [b"a", b"bb", b"ccc"]

    def test_joins_lines_split_across_chunks(self) -> None:
        """A line cut across reads comes out whole."""
        assert frame_all([b'{"a":', b"1}\n{", b'"b":2}\n']) == [b'{"a":1}', b'{"b":2}']

    def test_last_line_without_newline(self) -> None:
        """Text after the last newline is a line when the stream ends."""
        assert frame_all([b"x\ny"]) == [b"x", b"y"]

    def test_keeps_bytes_unmodified(self) -> None:
        """Invalid UTF-8 and carriage returns pass through untouched."""
        assert frame_all([b"\xff\xfe\r\n"]) == [b"\xff\xfe\r"]

    def test_line_at_limit_passes(self) -> None:
        """A line exactly at the limit is fine."""
        assert frame_all([b"x" * 1024 + b"\n"], limit=1024) == [b"x" * 1024]

    def test_complete_line_over_limit_raises(self) -> None:
        """A complete line one byte over the limit is refused."""
        with pytest.raises(LineTooLong):
            frame_all([b"x" * 1025 + b"\n"], limit=1024)

    def test_partial_line_over_limit_raises_early(self) -> None:
        """An unfinished line is refused as soon as it outgrows the limit."""
        framer = LineFramer(1024)
        framer.feed(b"x" * 1000)
        with pytest.raises(LineTooLong):
            framer.feed(b"x" * 100)

    def test_line_over_limit_across_chunks_raises(self) -> None:
        """A line that outgrows the limit only with its earlier part is refused."""
        framer = LineFramer(1024)
        assert framer.feed(b"a\n" + b"x" * 600) == [b"a"]
        with pytest.raises(LineTooLong) as caught:
            framer.feed(b"x" * 600 + b"\nb\n")
        assert caught.value.before == []

    def test_lines_before_the_long_one_are_kept(self) -> None:
        """The complete lines ahead of an overlong one are handed over with the error."""
        framer = LineFramer(1024)
        with pytest.raises(LineTooLong) as caught:
            framer.feed(b"a\nb\n" + b"x" * 2000)
        assert caught.value.before == [b"a", b"b"]
        with pytest.raises(LineTooLong) as caught:
            LineFramer(1024).feed(b"a\n" + b"x" * 2000 + b"\nc\n")
        assert caught.value.before == [b"a"]

    @given(
        st.lists(st.binary(max_size=50).map(lambda b: b.replace(b"\n", b"")), max_size=20),
        st.lists(st.integers(min_value=1, max_value=7), min_size=1),
    )
    def test_any_chunking_gives_the_same_lines(self, lines: list[bytes], cuts: list[int]) -> None:
        """However the stream is cut into reads, the same lines come out."""
        data = b"".join(line + b"\n" for line in lines)
        chunks, pos, i = [], 0, 0
        while pos < len(data):
            step = cuts[i % len(cuts)]
            chunks.append(data[pos : pos + step])
            pos, i = pos + step, i + 1
        assert frame_all(chunks) == lines


MARKERS = (b'"init"', b'"result"', b'"control_')


class TestMarked:
    def test_finds_the_lines_whose_head_names_a_marker(self) -> None:
        """Only a marker within the head counts, and each line is named once, in order."""
        lines = [
            b'{"type":"assistant","text":"a \\"result\\" later"}',
            b'{"type":"result","result":"x"}',
            b'{"type":"system","subtype":"init"}',
            b'{"type":"control_request","init":"result"}',
        ]
        assert marked(lines, MARKERS, 64) == [1, 2, 3]
        assert marked(lines, MARKERS, 17) == [1, 3]
        assert marked([], MARKERS, 64) == []
        assert marked([b"plain", b""], MARKERS, 64) == []

    def test_a_marker_cannot_hold_a_newline(self) -> None:
        """Heads are joined with newlines: such a marker could match across two."""
        with pytest.raises(ValueError, match="newline"):
            marked([b"a"], (b"a\nb",), 64)

    @given(
        st.lists(
            st.lists(st.sampled_from([*MARKERS, b"x", b'"', b" ", b"\xff", b"r" * 20])).map(
                b"".join
            ),
            max_size=8,
        ),
        st.integers(min_value=1, max_value=80),
    )
    def test_is_a_search_of_each_head(self, lines: list[bytes], head_bytes: int) -> None:
        """It answers as a search of every line's head for every marker would."""
        expected = [
            index
            for index, line in enumerate(lines)
            if any(marker in line[:head_bytes] for marker in MARKERS)
        ]
        assert marked(lines, MARKERS, head_bytes) == expected
