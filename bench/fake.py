"""The fake CLI's side of things: its data files, its line formats, and running it directly.

Running the fake straight from a pipe is the reference ("physical limit") the gateway's
figures are divided by, so it is done the cheapest way there is: blocking ``os.read``.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

FAKE_CLI = Path(__file__).resolve().parent / "fake_cli.sh"
# What the gateway passes (its other flags are ignored by the fake).
CLI_FLAGS = ("-p", "--output-format=stream-json", "--input-format=stream-json", "--verbose")
READ_BYTES = 1024 * 1024
SESSION_CHARS = 36  # a UUID

# The fake's lines, as fake_cli.sh prints them (without the newline).
INIT_LINE = b'{"type":"system","subtype":"init","session_id":"%s","model":"fake"}'
RESULT_LINE = (
    b'{"type":"result","subtype":"success","is_error":false,"result":"ok","session_id":"%s"}'
)
SESSION = b"0" * SESSION_CHARS


def assistant_line(index: int, pad: int) -> bytes:
    """Return line ``index`` of the fake's ``lines COUNT PAD`` output."""
    return b'{"type":"assistant","n":%d,"pad":"%s"}' % (index, b" " * pad)


def message_frames_bytes(line_lengths: list[int], first_id: int) -> int:
    """Return the bytes of ``message`` events carrying lines of these lengths.

    The gateway frames each line as ``id: N\\nevent: message\\ndata: LINE\\n\\n``.
    """
    fixed = len(b"id: \nevent: message\ndata: \n\n")
    digits = sum(len(str(first_id + i)) for i in range(len(line_lengths)))
    return fixed * len(line_lengths) + digits + sum(line_lengths)


def user_message(prompt: str) -> bytes:
    """Return the stream-json user line the gateway writes to the CLI's stdin."""
    line = {"type": "user", "message": {"role": "user", "content": prompt}}
    return json.dumps(line).encode() + b"\n"


@dataclass(frozen=True)
class DataFile:
    """A file of JSON lines for ``stream FILE``, and what streaming it must deliver."""

    path: Path
    size: int
    line_lengths: list[int]  # without newlines

    def stream_lengths(self) -> list[int]:
        """Return the lengths of every line the fake prints for it, init and result too."""
        init = len(INIT_LINE % SESSION)
        result = len(RESULT_LINE % SESSION)
        return [init, *self.line_lengths, result]


def write_data_file(path: Path, total: int, line_bytes: int) -> DataFile:
    """Write about ``total`` bytes of assistant lines of ``line_bytes`` each (newline included)."""
    # Text a model might write: words, punctuation, JSON escapes kept out so that
    # every line is exactly the same size.
    words = b"The gateway frames each line it reads, and sends it on as one event. "
    count = max(1, total // line_bytes)
    lengths = []
    with path.open("wb") as out:
        for index in range(count):
            head = b'{"type":"assistant","message":{"id":"msg_%08d","content":[' % index
            head += b'{"type":"text","text":"'
            tail = b'"}]}}'
            room = line_bytes - 1 - len(head) - len(tail)
            text = (words * (room // len(words) + 1))[:room]
            line = head + text + tail
            lengths.append(len(line))
            out.write(line + b"\n")
    return DataFile(path, path.stat().st_size, lengths)


def spawn(prompt: str, cwd: Path, *, close_stdin: bool) -> subprocess.Popen[bytes]:
    """Start the fake as the gateway does (own session, pipes), its prompt written."""
    proc = subprocess.Popen(
        [str(FAKE_CLI), *CLI_FLAGS],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        cwd=cwd,
        start_new_session=True,
    )
    assert proc.stdin is not None  # noqa: S101 (PIPE)
    proc.stdin.write(user_message(prompt))
    proc.stdin.flush()
    if close_stdin:
        proc.stdin.close()
    return proc


def read_to_end(proc: subprocess.Popen[bytes]) -> int:
    """Close the fake's stdin, read its stdout to EOF, reap it; return the bytes read."""
    assert proc.stdout is not None  # noqa: S101 (PIPE)
    if proc.stdin is not None and not proc.stdin.closed:
        proc.stdin.close()  # the fake, as the CLI, exits only once its input has ended
    fd = proc.stdout.fileno()
    total = 0
    while data := os.read(fd, READ_BYTES):
        total += len(data)
    proc.stdout.close()
    proc.wait()
    return total


def read_first_line(proc: subprocess.Popen[bytes]) -> bytes:
    """Return the fake's first stdout line (what the gateway's first message event carries)."""
    assert proc.stdout is not None  # noqa: S101 (PIPE)
    fd = proc.stdout.fileno()
    data = b""
    while b"\n" not in data:
        chunk = os.read(fd, READ_BYTES)
        if not chunk:
            break
        data += chunk
    return data
