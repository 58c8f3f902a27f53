"""`descent submit | jobs | show | curves | cancel | sweep`: the client's commands."""

from __future__ import annotations

import argparse
import csv
import functools
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from service.client import DEFAULT_URL, FINISHED, POLL_SECONDS, Client, ClientError, Json

#: seconds between the plain progress lines written where stdout is not a terminal
LINE_SECONDS = 1.0
#: the width of tables written to a pipe or a file, where there is no terminal to fit
PIPE_WIDTH = 120
#: the exit status of a command stopped by Ctrl-C (128 + SIGINT), as shells give it
INTERRUPTED = 130

T = TypeVar("T")

Command = Callable[[Client, argparse.Namespace], int]


def add_commands(commands: Any) -> None:
    """Add the client's subcommands to `descent`'s subparsers."""
    conn = argparse.ArgumentParser(add_help=False)
    conn.add_argument("--url", help=f"the service (default: $DESCENT_URL or {DEFAULT_URL})")
    conn.add_argument("--token", help="a bearer token (default: $DESCENT_TOKEN)")

    def add(name: str, func: Command, help: str) -> argparse.ArgumentParser:
        sub: argparse.ArgumentParser = commands.add_parser(name, help=help, parents=[conn])
        sub.set_defaults(func=functools.partial(_run, func))
        return sub

    submit = add("submit", cmd_submit, "submit a job spec (a JSON file, - for stdin)")
    submit.add_argument("spec", metavar="SPEC_FILE", type=_json_file)
    submit.add_argument("--follow", action="store_true", help="show its progress, then result")
    jobs = add("jobs", cmd_jobs, "list jobs, newest first")
    jobs.add_argument("--status", choices=["queued", "running", *sorted(FINISHED)])
    jobs.add_argument("--limit", type=int, default=20)
    show = add("show", cmd_show, "a job as JSON")
    show.add_argument("id", metavar="ID")
    curves = add("curves", cmd_curves, "a job's curves: a summary, or every point as CSV")
    curves.add_argument("id", metavar="ID")
    curves.add_argument("--names", help="comma-separated series (default: all)")
    curves.add_argument("--points", type=int, help="thin each series to at most N points")
    curves.add_argument("--csv", action="store_true", help="name,step,value rows on stdout")
    cancel = add("cancel", cmd_cancel, "cancel a queued or running job")
    cancel.add_argument("id", metavar="ID")
    sweep = add("sweep", cmd_sweep, "create a sweep: one job per point of a grid")
    sweep.add_argument("sweep", metavar="SWEEP_FILE", type=_json_file)
    sweep.add_argument("--follow", action="store_true", help="wait, then rank the runs")


def _json_file(path: str) -> Any:
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text()
        return json.loads(text)
    except (OSError, ValueError) as exc:
        raise argparse.ArgumentTypeError(f"cannot read {path} as JSON: {exc}") from exc


def _run(func: Command, args: argparse.Namespace) -> int:
    """Run a command with a client; an error answer becomes a message and exit code 1."""
    logging.getLogger("httpx").setLevel(logging.WARNING)  # no line per request
    url = args.url or os.environ.get("DESCENT_URL") or DEFAULT_URL
    token = args.token or os.environ.get("DESCENT_TOKEN") or None
    try:
        with Client(url, token) as client:
            return func(client, args)
    except ClientError as exc:
        _console(stderr=True).print(f"error: {exc}", markup=False, highlight=False)
    except httpx.TransportError as exc:
        _console(stderr=True).print(f"error: cannot reach {url}: {exc}", markup=False)
    return 1


def _console(stderr: bool = False) -> Console:
    console = Console(stderr=stderr, highlight=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = PIPE_WIDTH
    return console


def cmd_submit(client: Client, args: argparse.Namespace) -> int:
    job_id = client.submit(args.spec)["id"]
    console = _console()
    console.print(job_id)
    if not args.follow:
        return 0
    goes_on = f"the job goes on (descent cancel {job_id} stops it)"
    job = _following(console, goes_on, lambda: follow(client, job_id, console))
    if job is None:
        return INTERRUPTED
    console.print(result_table(job))
    return 0 if job["status"] == "succeeded" else 1


def _following(console: Console, goes_on: str, wait: Callable[[], T]) -> T | None:
    """What `wait()` answers, or None where Ctrl-C stopped the waiting (not the work)."""
    try:
        return wait()
    except KeyboardInterrupt:
        console.print(f"stopped following; {goes_on}")
        return None


def follow(client: Client, job_id: str, console: Console) -> Json:
    """Show a job's progress and latest loss until it finishes; answer the finished job."""
    columns = (
        TextColumn("{task.description:<9}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[epoch]}"),
        TextColumn("loss {task.fields[loss]}"),
        TimeElapsedColumn(),
    )
    loss: float | None = None
    last_line, last_status = 0.0, None
    with Progress(*columns, console=console) as bar:
        task = bar.add_task("queued", total=None, epoch="", loss="-")
        for job, points in client.follow(job_id, poll=POLL_SECONDS):
            loss = next((v for _, v in reversed(points) if v is not None), loss)
            progress = job["progress"]
            step, total = progress["step"], progress["total_steps"]
            epochs = progress["total_epochs"]
            epoch = f"epoch {progress['epoch']}/{epochs}" if epochs else ""
            bar.update(
                task,
                description=job["status"],
                completed=step,
                total=total or None,
                epoch=epoch,
                loss=_number(loss),
            )
            # rich draws nothing until the end where stdout is not a terminal: a line now and then
            due = job["status"] != last_status or time.monotonic() - last_line >= LINE_SECONDS
            if not console.is_terminal and due and job["status"] not in FINISHED:
                line = [job["status"], f"step {step}/{total}", epoch, f"loss {_number(loss)}"]
                console.print(" ".join(part for part in line if part))
                last_line, last_status = time.monotonic(), job["status"]
    return job


def result_table(job: Json) -> Table:
    """A finished job's status, losses, steps, duration and metrics; or its error."""
    table = Table(box=box.SIMPLE, show_header=False)
    table.add_column(style="bold")
    table.add_column()
    result, error = job.get("result") or {}, job.get("error")
    rows: list[tuple[str, Any]] = [("status", job["status"])]
    rows += [(key, result.get(key)) for key in ("final_loss", "best_loss", "steps")]
    rows.append(("duration", f"{result['duration_s']:.2f} s" if "duration_s" in result else None))
    rows += list((result.get("metrics") or {}).items())
    rows.append(("error", f"{error['type']}: {error['message']}" if error else None))
    for name, value in rows:
        if value is not None:
            table.add_row(name, _number(value) if isinstance(value, float) else str(value))
    return table


def cmd_jobs(client: Client, args: argparse.Namespace) -> int:
    table = Table("id", "name", "status", "progress", "final loss", "created", box=box.SIMPLE)
    for job in client.jobs(status=args.status, limit=args.limit):
        progress = job["progress"]
        table.add_row(
            job["id"],
            job["name"] or "",
            job["status"],
            f"{progress['step']}/{progress['total_steps']}",
            _number((job["result"] or {}).get("final_loss")),
            job["created_at"][:19].replace("T", " "),
        )
    _console().print(table)
    return 0


def cmd_show(client: Client, args: argparse.Namespace) -> int:
    sys.stdout.write(json.dumps(client.job(args.id), indent=2) + "\n")
    return 0


def cmd_curves(client: Client, args: argparse.Namespace) -> int:
    series = client.curves(args.id, names=args.names, points=args.points)["series"]
    if args.csv:
        out = csv.writer(sys.stdout, lineterminator="\n")
        out.writerow(["name", "step", "value"])
        for name, curve in series.items():
            points = zip(curve["steps"], curve["values"], strict=True)
            out.writerows((name, step, "" if v is None else v) for step, v in points)
        return 0
    table = Table("series", "points", "steps", "first", "last", "min", box=box.SIMPLE)
    for name, curve in series.items():
        steps, values = curve["steps"], curve["values"]
        finite = [v for v in values if v is not None]
        table.add_row(
            name,
            str(len(steps)),
            f"{steps[0]}..{steps[-1]}" if steps else "",
            _number(values[0] if values else None),
            _number(values[-1] if values else None),
            _number(min(finite) if finite else None),
        )
    _console().print(table)
    return 0


def cmd_cancel(client: Client, args: argparse.Namespace) -> int:
    job = client.cancel(args.id)
    note = "" if job["status"] in FINISHED else " (stopping: it ends within about a second)"
    _console().print(f"{job['id']} {job['status']}{note}")
    return 0


def cmd_sweep(client: Client, args: argparse.Namespace) -> int:
    sweep = client.sweep(args.sweep)
    console = _console()
    console.print(f"sweep {sweep['id']}: {len(sweep['jobs'])} jobs")
    table = Table("job", "overrides", box=box.SIMPLE)
    for job in sweep["jobs"]:
        table.add_row(job["id"], _overrides(job["overrides"]))
    console.print(table)
    if not args.follow:
        return 0
    goes_on = f"the sweep goes on (GET /sweeps/{sweep['id']})"
    runs = _following(console, goes_on, lambda: wait_sweep(client, sweep["id"], console))
    if runs is None:
        return INTERRUPTED
    table = Table("job", "overrides", "status", "final loss", "best loss", "steps", box=box.SIMPLE)
    for run in runs:
        result = run["result"] or {}
        table.add_row(
            run["job_id"],
            _overrides(run["overrides"]),
            run["status"],
            _number(result.get("final_loss")),
            _number(result.get("best_loss")),
            str(result.get("steps", run["progress"]["step"])),
        )
    console.print(table)
    return 0 if all(run["status"] == "succeeded" for run in runs) else 1


def wait_sweep(client: Client, sweep_id: str, console: Console) -> list[Json]:
    """The sweep's runs once all have finished, best final loss first (as the service ranks
    them), with a bar counting the finished ones."""
    columns = TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn()
    with Progress(*columns, console=console) as bar:
        task = bar.add_task("runs finished", total=None)
        while True:
            runs = client.get_sweep(sweep_id, order="final_loss")["runs"]
            done = sum(run["status"] in FINISHED for run in runs)
            bar.update(task, completed=done, total=len(runs))
            if done == len(runs):
                return runs
            time.sleep(POLL_SECONDS)


def _overrides(overrides: dict[str, Any]) -> str:
    return ", ".join(f"{path}={json.dumps(value)}" for path, value in overrides.items())


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.6g}"
