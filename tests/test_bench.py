"""The benchmark suite runs to the end in its quick mode (speed is not judged here)."""

from __future__ import annotations

import subprocess
import sys

from bench.config import QUICK, row_names

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
    assert any(line.startswith("all ") and line.endswith(" completed") for line in lines)
