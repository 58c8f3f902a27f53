"""`descent up | api | worker`: the service's processes."""

from __future__ import annotations

import argparse
import ctypes
import logging
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from types import FrameType

import httpx

from service.client import commands as client_commands
from service.config import DEFAULT_DATABASE_URL, Settings

log = logging.getLogger("descent")

#: seconds `descent up` gives its children to stop before it kills them
STOP_GRACE_SECONDS = 15.0
#: seconds between looks at the children
SUPERVISE_SECONDS = 0.2
#: seconds between `descent up`'s looks at its own /health until a worker is ready
READY_POLL_SECONDS = 0.5
#: Linux prctl option: signal the child when its parent dies
PR_SET_PDEATHSIG = 1


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(process)d %(name)s %(levelname)s %(message)s"
    )
    logging.getLogger("alembic").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per `up`'s look at /health
    return int(args.func(args) or 0)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="descent", description=__doc__)
    commands = parser.add_subparsers(required=True, metavar="COMMAND")
    db_help = f"database URL (default: $DESCENT_DATABASE_URL or {DEFAULT_DATABASE_URL})"

    up = commands.add_parser("up", help="the API and N workers in one command")
    up.add_argument("--host", default="127.0.0.1")
    up.add_argument("--port", type=int, default=8000)
    up.add_argument("--workers", type=_count, default=1)
    up.add_argument("--database-url", help=db_help)
    up.add_argument("--device", default="auto", help="the workers' device")
    up.set_defaults(func=cmd_up)

    api = commands.add_parser("api", help="the HTTP API alone")
    api.add_argument("--host", default="127.0.0.1")
    api.add_argument("--port", type=int, default=8000)
    api.add_argument("--database-url", help=db_help)
    api.set_defaults(func=cmd_api)

    worker = commands.add_parser("worker", help="one worker alone")
    worker.add_argument("--database-url", help=db_help)
    worker.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    worker.add_argument(
        "--machine-workers",
        type=_positive,
        default=1,
        help="workers sharing this machine's cores, among which torch's threads are divided "
        "when DESCENT_TORCH_THREADS is 0 (`descent up` passes its --workers; default 1)",
    )
    worker.set_defaults(func=cmd_worker)
    client_commands.add_commands(commands)  # submit, jobs, show, curves, cancel, sweep
    return parser


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return value


def _settings(args: argparse.Namespace) -> Settings:
    """Settings from the environment, with the flags given on top (the flag wins)."""
    overrides = {"database_url": args.database_url} if args.database_url else {}
    return Settings(**overrides)


def cmd_api(args: argparse.Namespace) -> int:
    import uvicorn

    from service.main import create_app

    app = create_app(_settings(args))
    # uvicorn shuts down gracefully on SIGTERM/SIGINT, then raises the signal again with the
    # handler that was there before; a no-op one lets a clean stop exit with status 0
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    uvicorn.run(app, host=args.host, port=args.port, log_level="info", access_log=False)
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from worker.claims import Worker
    from worker.memory import cap_address_space
    from worker.priority import take_share

    settings = _settings(args)
    # before the worker touches torch: its inter-op threads can be set only until first used
    share = take_share(settings, workers=args.machine_workers)
    log.info("worker process: %d torch thread(s), nice %d", share.threads, share.nice)
    worker = Worker(settings, device=args.device)
    if not worker.has_gpu:  # a job past the budget then fails alone, not the whole worker
        cap_address_space(int(settings.worker_memory))

    def stop(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %d: stopping after handing back the running job", signum)
        worker.stop.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    worker.run()
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    from service.db.engine import make_engine
    from service.db.migrate import migrate

    settings = _settings(args)
    migrate(make_engine(settings.database_url))  # once here, so the children find it done
    return Supervisor(args, settings.database_url).run()


class Supervisor:
    """Runs the API and the workers as child processes; restarts a worker that dies."""

    def __init__(self, args: argparse.Namespace, database_url: str) -> None:
        self.args, self.database_url = args, database_url
        self.stopping = False
        self.api: subprocess.Popen[bytes] | None = None
        self.workers: list[subprocess.Popen[bytes]] = []

    def _spawn(self, *command: str) -> subprocess.Popen[bytes]:
        argv = [sys.executable, "-m", "service.cli", *command, "--database-url", self.database_url]
        return subprocess.Popen(argv, preexec_fn=_die_with_parent)  # noqa: PLW1509

    def _spawn_worker(self) -> subprocess.Popen[bytes]:
        # each child divides the cores among this many workers (DESCENT_TORCH_THREADS=0)
        machine_workers = str(max(1, self.args.workers))
        return self._spawn(
            "worker", "--device", self.args.device, "--machine-workers", machine_workers
        )

    def run(self) -> int:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._on_signal)
        self.api = self._spawn("api", "--host", self.args.host, "--port", str(self.args.port))
        self.workers = [self._spawn_worker() for _ in range(self.args.workers)]
        log.info(
            "descent up: API on http://%s:%d, %d worker(s)",
            self.args.host,
            self.args.port,
            len(self.workers),
        )
        threading.Thread(target=self._announce_ready, name="ready", daemon=True).start()
        code = 0
        while not self.stopping:
            time.sleep(SUPERVISE_SECONDS)
            if self.api.poll() is not None and not self.stopping:
                log.error("the API exited (code %s); stopping", self.api.returncode)
                code = 1
                break
            for i, proc in enumerate(self.workers):
                if proc.poll() is not None and not self.stopping:
                    log.warning(
                        "worker %d exited (code %s); starting another", proc.pid, proc.returncode
                    )
                    self.workers[i] = self._spawn_worker()
        self._stop_children()
        return code

    def _announce_ready(self) -> None:
        """Say where the service is once a worker can take a job, and what it waits for until."""
        url = _url(self.args.host, self.args.port)
        waiting_for = ""
        with httpx.Client(base_url=url, timeout=1, trust_env=False) as http:
            while not self.stopping:
                workers = _workers_seen(http)
                if workers is not None and (workers >= 1 or self.args.workers == 0):
                    log.info("Descent is ready: %s (%d worker(s) ready)", url, workers)
                    return
                now_waiting_for = "the API" if workers is None else "the first worker"
                if now_waiting_for != waiting_for:
                    waiting_for = now_waiting_for
                    log.info("waiting for %s...", waiting_for)
                time.sleep(READY_POLL_SECONDS)

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self.stopping = True

    def _stop_children(self) -> None:
        children = [p for p in [self.api, *self.workers] if p is not None]
        for proc in children:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for proc in children:
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("process %d did not stop in time; killing it", proc.pid)
                proc.kill()
                proc.wait()
        log.info("descent up: stopped")


def _url(host: str, port: int) -> str:
    """The address to give a person; an API on every interface is reached on this host's."""
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _workers_seen(http: httpx.Client) -> int | None:
    """The workers the API's /health counts; None while it does not answer."""
    try:
        answer = http.get("/health")
    except httpx.HTTPError:
        return None
    if answer.status_code != 200:
        return None
    return int(answer.json().get("workers", 0))


def _die_with_parent() -> None:
    """In the child: get SIGTERM if `descent up` dies, even by SIGKILL (Linux only)."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


if __name__ == "__main__":
    sys.exit(main())
