"""`make bench`: every benchmark, with its figures printed and written to bench/results.md."""

from __future__ import annotations

import platform
from datetime import date
from pathlib import Path

import torch

from bench import overhead, queue, recording

RESULTS = Path(__file__).parent / "results.md"


def main() -> None:
    rows = []
    o = overhead.measure()
    rows.append(
        (
            "digits MLP [128], Adam, batch 64: service / plain PyTorch steps per second",
            f"{o['service_steps_per_s']:.0f} / {o['plain_steps_per_s']:.0f} = {o['ratio']:.3f}",
        )
    )
    r = recording.measure()
    rows.append(
        (
            f"{r['steps']:,} steps, batch 1: curve discarded / curve stored in SQLite, speed",
            f"{r['discarded_s']:.2f} s / {r['stored_s']:.2f} s = {r['ratio']:.3f}",
        )
    )
    q = queue.measure()
    rows.append(
        (
            "POST to running, idle worker, SQLite",
            f"median {q['median_ms']:.1f} ms, p90 {q['p90_ms']:.1f} ms",
        )
    )
    machine = (
        f"{platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}"
    )
    lines = [
        f"Measured {date.today()} on {machine}.",
        "",
        "| benchmark | figure |",
        "| --- | --- |",
    ]
    lines += [f"| {name} | {value} |" for name, value in rows]
    text = "\n".join(lines) + "\n"
    print(text)
    RESULTS.write_text(text)


if __name__ == "__main__":
    main()
