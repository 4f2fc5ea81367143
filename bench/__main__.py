"""``python -m bench [--quick]``: run the suite, print the table, exit 1 if any run failed."""

from __future__ import annotations

import argparse
import os
import platform
import sys

import trio

from .config import FULL, QUICK, row_names
from .suite import FIGURES, run_suite
from .table import Row, render

NOT_MEASURED = "not measured"


def machine() -> str:
    """Return one line about the machine: CPUs, their model, memory."""
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{os.cpu_count()} CPUs ({model}), {memory:.1f} GiB RAM, Python {platform.python_version()}"
    )


def main(argv: list[str] | None = None) -> int:
    """Run the suite and return the exit status."""
    parser = argparse.ArgumentParser(prog="bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes: check that it works")
    parser.add_argument(
        "--only",
        action="append",
        choices=[name for name, _ in FIGURES],
        default=[],
        help="run only this figure (repeatable); the others' rows say not measured",
    )
    parser.add_argument(
        "--store-on",
        choices=["sqlite", "memory"],
        default="sqlite",
        help="the STORE of the gateways with the store on (default sqlite); memory runs "
        "both sides without a store (an A/A run: how far the on/off ratios stray by noise)",
    )
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL

    def progress(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    # Other work on the machine skews every figure: say how busy it was.
    load_before = os.getloadavg()[0]
    report = trio.run(run_suite, sizes, progress, frozenset(args.only), args.store_on)
    load_after = os.getloadavg()[0]
    # Every row, in a fixed order; a figure that broke off leaves its rows unmeasured.
    measured = {row.figure: row for row in report.rows}
    rows = [measured.get(name, Row(name, NOT_MEASURED)) for name in row_names(sizes)]
    if not args.only:
        report.failures += [
            f"{row.figure}: not measured" for row in rows if row.value == NOT_MEASURED
        ]
    print(f"cc2api benchmark ({'quick' if args.quick else 'full'}) on {machine()}")
    print(f"load average (1 min): {load_before:.2f} before, {load_after:.2f} after")
    print(f"store on: STORE={args.store_on}, DATA_DIR in the scratch folder; off: STORE=memory")
    print()
    print(render(rows))
    print()
    print("ratio = value / reference; references are measured in the same run")
    print(
        "store on/off, restart and pool ratios: the median of each round's, both sides side by side"
    )
    if report.failures:
        done = f"{report.runs} runs and {report.requests} requests"
        print(f"FAILED: {len(report.failures)} failures in {done}:")
        for failure in report.failures:
            print(f"  {failure}")
        return 1
    print(f"all {report.runs} runs and {report.requests} requests completed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
