"""The benchmark suite: its quick mode runs to the end (speed is not judged), and its checks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from bench import backlog
from bench.config import QUICK, MiB, row_names
from bench.fake import message_frames_bytes
from bench.restart import replay_problem
from bench.table import Report

from .helpers import REPO


def test_quick_benchmark_completes() -> None:
    """`python -m bench --quick` exits 0, prints a row for every figure and completes every run."""
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=REPO,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    for name in row_names(QUICK):
        row = next((line for line in lines if line.startswith(f"{name}  ")), None)
        assert row is not None, f"no row {name!r} in:\n{done.stdout}"
        assert "not measured" not in row, row
        assert "failed" not in row, row
        assert "unavailable" not in row, row
    assert any(line.startswith("all ") and line.endswith(" completed") for line in lines)
    assert "store on: STORE=sqlite" in done.stdout


def replayed(ids: list[int], *, done: bool = True) -> bytes:
    """Return a replay's body: a process event, message events, and a done event."""
    frames = [b"id: %d\nevent: message\ndata: {}\n\n" % event_id for event_id in ids[1:-1]]
    last = b'id: %d\nevent: done\ndata: {"status":"completed"}\n\n' % ids[-1]
    ending = last if done else b"id: %d\nevent: message\ndata: {}\n\n" % ids[-1]
    return b"".join([b"id: %d\nevent: process\ndata: {}\n\n" % ids[0], *frames, ending])


class TestReplayCheck:
    """What the restart figure takes for a whole replay."""

    MESSAGES = message_frames_bytes([2] * 3, first_id=2)  # three lines of "{}"

    def test_whole(self) -> None:
        """Consecutive ids from 1, a process event, the messages sent and a done event pass."""
        assert replay_problem(replayed([1, 2, 3, 4, 5]), 5, self.MESSAGES) is None

    def test_gap(self) -> None:
        """A missing event is named by the id found in its place."""
        problem = replay_problem(replayed([1, 2, 4, 5, 6]), 6, self.MESSAGES)
        assert problem == "the replay has 5 events of 6, id 4 where 3 was due"

    def test_short(self) -> None:
        """A replay that stops early says it has fewer events."""
        problem = replay_problem(replayed([1, 2, 3, 4]), 5, self.MESSAGES)
        assert problem == "the replay has 4 events of 5, an end"

    def test_no_done(self) -> None:
        """A replay whose last event is not `done` is not whole, its ids right or not."""
        problem = replay_problem(replayed([1, 2, 3, 4, 5], done=False), 5, self.MESSAGES)
        assert problem is not None
        assert "done" in problem


class TestBacklogRow:
    """The store's backlog row never shows a number the gateway did not give."""

    def test_peak(self) -> None:
        """A peak is shown in MiB beside the bytes streamed, and their ratio."""
        report = Report()
        row = backlog.row(report, "store backlog peak: x", 3 * MiB, 300 * MiB, "per run")
        assert (row.value, row.reference, row.ratio) == ("3.0 MiB", "300 MiB per run", "0.01")
        assert report.failures == []

    def test_unavailable(self) -> None:
        """Without a peak the row says unavailable and the run fails."""
        report = Report()
        row = backlog.row(report, "store backlog peak: x", None, 300 * MiB, "per run")
        assert row.value == "unavailable"
        assert len(report.failures) == 1

    def test_from_log(self, tmp_path: Path) -> None:
        """A stopped gateway's last line naming the backlog's peak in bytes gives it."""
        log = tmp_path / "server.log"
        log.write_text("store: backlog peak 10 bytes\nstore: backlog_peak_bytes=2048\n")
        assert backlog.from_log(log) == 2048
        log.write_text("listening on http://127.0.0.1:1\n")
        assert backlog.from_log(log) is None
