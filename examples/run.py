"""Run the seeds' experiments in examples/*.json and save their pictures.

    python examples/run.py [--url URL] [--out docs/examples]

Each file with `base` and `grid` is a sweep, any other a job. Without --url, `descent up`
runs on a free port over a temporary SQLite file for as long as the examples take.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # `service`, when run as a script from anywhere

import httpx  # noqa: E402
from PIL import Image  # noqa: E402
from rich.console import Console  # noqa: E402

from service.client import Client, Json  # noqa: E402

#: a sweep's run whose own picture (its path) is saved too: example -> optimizer type
PATHS = {"x2_four_optimizers": "momentum", "rosenbrock_paths": "adam"}
#: sweeps whose solvers all reach one optimum: their distance to it, f - f*, on a log axis
GAP = {"lasso_three_ways"}
#: seconds an example may take
TIMEOUT = 600
ROW = "{:<20} {:<17} {:<10} {}"

console = Console(highlight=False, soft_wrap=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", help="a running service (default: start one)")
    parser.add_argument("--out", type=Path, default=HERE.parent / "docs" / "examples")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with local_service() if args.url is None else nullcontext(args.url) as url:
        with Client(url, timeout=60) as client:
            console.print(ROW.format("example", "id", "status", "result"))
            ok = [run_example(client, path, args.out) for path in sorted(HERE.glob("*.json"))]
    return 0 if all(ok) else 1


def run_example(client: Client, path: Path, out: Path) -> bool:
    """Submit one example, wait for it, save its pictures and print its row."""
    body, name = json.loads(path.read_text()), path.stem
    if "grid" in body:
        sweep_id = client.sweep(body)["id"]
        client.wait_sweep(sweep_id, timeout=TIMEOUT)
        runs = client.get_sweep(sweep_id, order="final_loss")["runs"]
        gap = "&gap=true" if name in GAP else ""
        save_png(client, f"/sweeps/{sweep_id}/plot.png?name=loss{gap}", out / f"{name}.png")
        if name in PATHS:
            run = next(r for r in runs if r["overrides"]["optimizer"]["type"] == PATHS[name])
            save_png(client, f"/jobs/{run['job_id']}/plot.png", out / f"{name}_{PATHS[name]}.png")
        statuses = {r["status"] for r in runs}
        console.print(ROW.format(name, sweep_id, "/".join(sorted(statuses)), ranking(runs)))
        return statuses == {"succeeded"}
    job = client.wait(client.submit(body)["id"], timeout=TIMEOUT)
    save_png(client, f"/jobs/{job['id']}/plot.png", out / f"{name}.png")
    console.print(ROW.format(name, job["id"], job["status"], job_result(client, job)))
    return bool(job["status"] == "succeeded")


def ranking(runs: list[Json]) -> str:
    """`sgd 0.0133, momentum 7.33, ...`: the runs best first, each named by its grid values (an
    object by its type), by the loss over the whole training set where a fit job has one (the
    last batch's alone is noisy), else by the final loss."""
    scored = sorted((final_loss(run), i, run) for i, run in enumerate(runs))
    parts = []
    for loss, _, run in scored:
        label = " ".join(label_of(path, v) for path, v in run["overrides"].items())
        parts.append(f"{label} {number(loss)}")
    return ", ".join(parts)


def final_loss(run: Json) -> float:
    result = run["result"] or {}
    loss = (result.get("metrics") or {}).get("train_loss", result.get("final_loss"))
    return float("inf") if loss is None else float(loss)


def label_of(path: str, value: Any) -> str:
    if isinstance(value, dict) and "type" in value:
        return str(value["type"])
    return f"{path}={json.dumps(value)}"


def job_result(client: Client, job: Json) -> str:
    """The final loss, the metrics, and the parameters when there are a few of them."""
    result = job["result"] or {}
    if not result:
        return str(job["error"])
    parts = [f"final loss {number(result['final_loss'])}"]
    parts += [f"{k} {number(v)}" for k, v in (result.get("metrics") or {}).items() if "acc" in k]
    for key, value in client.parameters(job["id"])["parameters"].items():
        if len(flat := list(flatten(value))) <= 4:
            parts.append(f"{key} {' '.join(number(v) for v in flat)}")
    return ", ".join(parts)


def flatten(value: Any) -> Iterator[float]:
    if isinstance(value, list):
        for item in value:
            yield from flatten(item)
    else:
        yield value


def number(value: float | None) -> str:
    return "-" if value is None or value == float("inf") else f"{value:.4g}"


def save_png(client: Client, url: str, path: Path) -> None:
    """The service's picture, in 256 colours: a third of the size, to commit, and no change
    a reader sees (flat colours, a few contour levels)."""
    response = client.http.get(url)
    response.raise_for_status()
    image = Image.open(io.BytesIO(response.content)).convert("RGB")
    image.quantize(256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)


@contextmanager
def local_service() -> Iterator[str]:
    """`descent up` on a free port over a temporary SQLite file; its URL, until the end."""
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        argv = [sys.executable, "-m", "service.cli", "up", "--port", str(port)]
        argv += ["--database-url", f"sqlite:///{tmp}/examples.db"]
        env = {k: v for k, v in os.environ.items() if not k.startswith("DESCENT_")}
        with open(f"{tmp}/service.log", "wb") as log:
            proc = subprocess.Popen(argv, cwd=HERE.parent, env=env, stdout=log, stderr=log)
        try:
            wait_healthy(f"http://127.0.0.1:{port}", proc, Path(tmp) / "service.log")
            yield f"http://127.0.0.1:{port}"
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_healthy(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    with Client(url, timeout=5) as client:
        for _ in range(600):
            if proc.poll() is not None:
                raise RuntimeError(f"descent up exited:\n{log.read_text()[-2000:]}")
            try:
                if client.http.get("/health").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
    raise RuntimeError(f"descent up was not healthy in 60 s:\n{log.read_text()[-2000:]}")


if __name__ == "__main__":
    sys.exit(main())
