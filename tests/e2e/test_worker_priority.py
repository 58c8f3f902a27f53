"""A worker shares its machine with the API: torch's threads leave a core to the API and are
divided among the workers `descent up` starts, and a worker runs at a lower CPU priority
(DESCENT_TORCH_THREADS, DESCENT_WORKER_NICE). Read back from real processes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import free_port, start_process, stop_process, wait_healthy
from worker.priority import cores, torch_threads

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize(
    ("setting", "workers", "machine_cores", "expected"),
    [
        (0, 1, 2, 1),  # one core for the API, one for the worker
        (0, 1, 8, 7),
        (0, 2, 8, 3),  # 7 cores shared by 2 workers
        (0, 3, 2, 1),  # never fewer than one
        (0, 1, 1, 1),
        (4, 2, 2, 4),  # a setting wins
    ],
)
def test_torch_threads_by_default_leave_a_core_to_the_api(
    setting: int, workers: int, machine_cores: int, expected: int
) -> None:
    assert torch_threads(setting, workers=workers, cores=machine_cores) == expected


def _nice(pid: int) -> int:
    """The niceness of process `pid`, field 19 of /proc/PID/stat (the name may hold spaces)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[16])  # fields[0] is field 3, the state


def _wait_for(log: Path, text: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        content = log.read_text() if log.exists() else ""
        if text in content:
            return content
        time.sleep(0.1)
    raise AssertionError(f"{text!r} never appeared in the log:\n{log.read_text()[-3000:]}")


def _take_share_in_a_fresh_process(env: dict[str, str], before: str = "") -> list[str]:
    """`take_share` in a new Python process (it changes its process for good): what torch and
    the kernel then report, and the log."""
    code = "\n".join(
        [
            "import logging, os, torch",
            "from service.config import Settings",
            "from worker.priority import take_share",
            "logging.basicConfig()",
            before,
            "share = take_share(Settings(), workers=2)",
            "print(share.threads, share.nice, torch.get_num_threads(), os.nice(0))",
        ]
    )
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DESCENT_")}
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return [*done.stdout.split(), done.stderr]


def test_take_share_sets_torch_threads_and_lowers_priority() -> None:
    base = os.nice(0)
    threads, nice, torch_now, nice_now, log = _take_share_in_a_fresh_process(
        {"DESCENT_TORCH_THREADS": "3", "DESCENT_WORKER_NICE": "6"}
    )
    assert (int(threads), int(torch_now)) == (3, 3)
    assert int(nice) == int(nice_now) == min(19, base + 6)
    assert "inter-op" not in log


def test_take_share_after_torch_set_its_inter_op_threads_still_sets_the_rest() -> None:
    base = os.nice(0)
    threads, nice, torch_now, _, log = _take_share_in_a_fresh_process(
        {"DESCENT_TORCH_THREADS": "0"}, before="torch.set_num_interop_threads(1)"
    )
    assert int(threads) == int(torch_now) == max(1, (cores() - 1) // 2)
    assert int(nice) == min(19, base + 10)  # the default
    assert "inter-op threads were already set" in log


def test_a_lone_worker_takes_its_share_at_start(tmp_path: Path) -> None:
    log = tmp_path / "worker.log"
    db_url = f"sqlite:///{tmp_path / 'descent.db'}"
    proc = start_process(["worker", "--database-url", db_url], log, {"DESCENT_WORKER_NICE": "5"})
    try:
        content = _wait_for(log, "ready (device")
        expected = torch_threads(0, workers=1, cores=cores())
        assert f"worker process: {expected} torch thread(s), nice {os.nice(0) + 5}" in content
        assert _nice(proc.pid) == os.nice(0) + 5
    finally:
        assert stop_process(proc) == 0


def _children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def test_descent_up_runs_its_workers_below_the_api(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "up.log"
    db_url = f"sqlite:///{tmp_path / 'descent.db'}"
    proc = start_process(
        ["up", "--port", str(port), "--workers", "2", "--database-url", db_url], log
    )
    try:
        wait_healthy(f"http://127.0.0.1:{port}", proc, log)
        content = _wait_for(log, "worker process:")
        expected = torch_threads(0, workers=2, cores=cores())
        nice = os.nice(0) + 10
        deadline = time.monotonic() + 60
        while content.count("worker process:") < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
            content = log.read_text()
        assert content.count(f"worker process: {expected} torch thread(s), nice {nice}") == 2
        by_role: dict[str, list[int]] = {"api": [], "worker": []}
        for child in _children(proc.pid):
            argv = Path(f"/proc/{child}/cmdline").read_text().split("\0")
            role = "worker" if "worker" in argv else "api"
            by_role[role].append(_nice(child))
            if role == "worker":
                assert argv[argv.index("--machine-workers") + 1] == "2"
        assert by_role == {"api": [os.nice(0)], "worker": [nice, nice]}
    finally:
        assert stop_process(proc) == 0
