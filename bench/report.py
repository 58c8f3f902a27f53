"""A benchmark's row of the results table, the machine it ran on, and the Markdown table."""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import torch

COLUMNS = ("benchmark", "figure", "reference", "ratio", "target", "met?")


@dataclass(frozen=True)
class Row:
    benchmark: str
    figure: str
    reference: str = "-"
    ratio: str = "-"
    target: str = "-"
    #: True, False, or None where the row has no target (or was not measured)
    met: bool | None = None

    def cells(self) -> tuple[str, ...]:
        met = {True: "yes", False: "**no**", None: "-"}[self.met]
        return (self.benchmark, self.figure, self.reference, self.ratio, self.target, met)


def not_measured(benchmark: str, why: str) -> Row:
    return Row(benchmark, f"not measured: {why}")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> str:
    return (
        f"{cpu_model()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads, "
        f"torch {torch.__version__}, Python {platform.python_version()}"
    )


def markdown(rows: list[Row], *, quick: bool) -> str:
    head = f"Measured {date.today()} on {machine()}"
    head += " (quick mode: tiny sizes, not comparable to the targets)." if quick else "."
    lines = [head, "", "| " + " | ".join(COLUMNS) + " |", "|" + " --- |" * len(COLUMNS)]
    lines += ["| " + " | ".join(row.cells()) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def text(row: Row) -> str:
    """One row as a line for the terminal."""
    b, figure, reference, ratio, target, met = row.cells()
    parts = [figure]
    if reference != "-":
        parts.append(f"reference {reference}")
    if ratio != "-":
        parts.append(f"ratio {ratio}")
    if target != "-":
        parts.append(f"target {target}: {met.strip('*')}")
    return f"{b}: " + "; ".join(parts)
