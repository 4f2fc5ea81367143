"""The benchmark suite: its quick mode runs to the end (speed is not judged), and its checks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from bench import backlog
from bench.config import QUICK, MiB, row_names
from bench.fake import message_frames_bytes
from bench.pool import Round, rate_row, run_problem
from bench.restart import replay_problem
from bench.table import Report

from .helpers import REPO


def test_quick_benchmark_completes() -> None:
    """`python -m bench --quick` exits 0, prints a row for every figure and completes every run."""
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick"],
        capture_output=True,
        text=True,
        # The pool's figure runs the real CLI, about a second a start-up on a small machine.
        timeout=240,
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


def one_turn(status: str = "completed", result: str = "echo: hello") -> bytes:
    """Return a one-turn run's stream: process, init and result lines, and done."""
    init = b'id: 2\nevent: message\ndata: {"type":"system","subtype":"init"}\n\n'
    line = b'id: 3\nevent: message\ndata: {"type":"result","result":"%s"}\n\n' % result.encode()
    done = b'id: 4\nevent: done\ndata: {"status":"%s"}\n\n' % status.encode()
    return b"id: 1\nevent: process\ndata: {}\n\n" + init + line + done


class TestPoolFigure:
    """What the pool's figure takes for a run that answered, and how it shows its rounds."""

    def test_answered(self) -> None:
        """A completed run whose result is the scripted answer passes."""
        assert run_problem(one_turn()) is None

    def test_not_completed(self) -> None:
        """A run that did not complete is named by its done status."""
        assert run_problem(one_turn(status="failed")) == (
            "the run ended with done status failed, not completed"
        )

    def test_wrong_answer(self) -> None:
        """A completed run without the scripted answer does not pass."""
        problem = run_problem(one_turn(result="something else"))
        assert problem is not None
        assert "echo: hello" in problem

    def test_rate_row(self) -> None:
        """The pooled rounds' median rate is shown with what the pool did, beside the cold one."""
        pooled = [Round(2.0, 8, 7, 1, 2), Round(4.0, 8, 8, 0, 0), Round(3.0, 8, 8, 0, 1)]
        cold = [Round(1.0, 8, 0, 0, 0), Round(2.0, 8, 0, 0, 0), Round(1.5, 8, 0, 0, 0)]
        row = rate_row("pool: runs/s", pooled, cold, "x")
        assert row.value == "3.00 (23 hits, 1 misses, 3 retired)"
        assert (row.reference, row.ratio) == ("1.50 POOL_SIZE=0", "2.00")

    def test_rate_row_failed(self) -> None:
        """Without a completed run on either side the row says failed."""
        row = rate_row("pool: runs/s", [Round(0.0, 0, 0, 0, 0)], [Round(1.0, 8, 0, 0, 0)], "x")
        assert row.value == "failed"
