"""`make bench`: every benchmark, each row printed as it is measured, then bench/results.md.

`python -m bench --quick` (or BENCH_QUICK=1) runs each at tiny sizes in a minute or two, to
check that they all work; its figures are not comparable with the targets. `--only 7` runs
the benchmarks whose name starts with 7 and prints their table without writing the file.
"""

from __future__ import annotations

import argparse
import os
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path

from bench import events, load, overhead, queue, shared_machine, store, sweeps
from bench.report import Row, markdown, not_measured, text

RESULTS = Path(__file__).parent / "results.md"

#: (name, the rows it measures), in the issue's order
BENCHMARKS: list[tuple[str, Callable[[bool], Iterator[Row]]]] = [
    ("1-2. training overhead and data loading", overhead.rows),
    ("3. metric store", store.rows),
    ("4. queue", queue.rows),
    ("5. sweeps vectorised", sweeps.rows),
    ("6. API under load", load.rows),
    ("7. API and worker sharing the machine", shared_machine.rows),
    ("8. live events fanned out", events.rows),
]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, to check it all runs")
    parser.add_argument("--only", metavar="PREFIX", help="the benchmarks whose name starts so")
    args = parser.parse_args()
    quick = args.quick or os.environ.get("BENCH_QUICK", "") not in ("", "0")
    rows: list[Row] = []
    started = time.perf_counter()
    chosen = [(n, m) for n, m in BENCHMARKS if args.only is None or n.startswith(args.only)]
    for name, measure in chosen:
        section = time.perf_counter()
        try:
            for row in measure(quick):
                print(text(row), flush=True)
                rows.append(row)
        except Exception as exc:  # noqa: BLE001 - one broken benchmark must not hide the rest
            traceback.print_exc()
            row = not_measured(name, f"{type(exc).__name__}: {exc}")
            print(text(row), flush=True)
            rows.append(row)
        print(f"({name}: {time.perf_counter() - section:.0f} s)", flush=True)
    table = markdown(rows, quick=quick)
    if args.only is not None:  # a part of the table: bench/results.md stays a whole run's
        print(f"\n{table}\nin {time.perf_counter() - started:.0f} s")
        return
    RESULTS.write_text(table)
    print(f"\n{table}\nwritten to {RESULTS} in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
