"""docker/Dockerfile and docker-compose.yml: linted, validated, and their commands run for real.

No Docker engine is needed: the compose services' exact commands and environments are started on
the host, with the container paths and the published port mapped to a temporary folder and a
free port, so a wrong command, variable or healthcheck in docker-compose.yml fails here.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.conftest import Service, fit_spec, free_port, start_process, stop_process, wait_healthy

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "docker" / "Dockerfile"
#: seconds Docker waits after SIGTERM before SIGKILL when a service names no stop_grace_period
DOCKER_STOP_SECONDS = 10.0


def _tool(name: str) -> Path:
    """A command-line tool installed in this virtualenv (by the `test` extra)."""
    path = Path(sys.executable).parent / name
    if not path.exists():
        pytest.fail(f"{name} is not installed next to {sys.executable}; `make test` installs it")
    return path


def _validate(path: Path) -> subprocess.CompletedProcess[str]:
    argv = [str(_tool("check-jsonschema")), "--builtin-schema", "vendor.compose-spec", str(path)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


def _compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())  # type: ignore[no-any-return]


def _argv(value: str | list[str]) -> list[str]:
    """A compose `command` as an argument list (a string is split into shell words)."""
    return shlex.split(value) if isinstance(value, str) else [str(word) for word in value]


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):  # the `- KEY=value` form
        env = dict(item.split("=", 1) for item in env)
    return {key: str(value) for key, value in env.items()}


def _mounts(service: dict[str, Any]) -> dict[str, str]:
    """Container path -> volume name, for the short (`name:/path`) and the long syntax."""
    mounts = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source, target = volume.split(":")[:2]
        else:
            source, target = volume["source"], volume["target"]
        mounts[target] = source
    return mounts


def _seconds(duration: str) -> float:
    """A compose duration such as `30s` or `1m30s`, in seconds."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 1e-6}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", duration)
    assert "".join(n + u for n, u in parts) == duration != "", f"unreadable duration {duration!r}"
    return sum(float(number) * units[unit] for number, unit in parts)


def test_compose_file_follows_the_compose_spec() -> None:
    result = _validate(COMPOSE)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    "service",
    [{"image": "x", "ports": 8000}, {"image": "x", "comand": "descent api"}],
    ids=["ports-not-a-list", "unknown-key"],
)
def test_the_validator_rejects_a_broken_compose_file(tmp_path: Path, service: dict) -> None:
    # a negative control: the check above could otherwise pass by validating nothing
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(yaml.safe_dump({"services": {"api": service}}))
    result = _validate(broken)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "validation errors" in result.stdout


def test_dockerfile_passes_hadolint() -> None:
    result = subprocess.run(
        [str(_tool("hadolint")), "--no-color", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert result.returncode == 0 and not (result.stdout + result.stderr).strip(), result.stdout


def test_dockerfile_installs_the_makefiles_torch_pin_before_the_project() -> None:
    # an unpinned or default-index torch pulls several GB of CUDA wheels into the image
    pin = re.search(r"^TORCH := (\S+)$", (ROOT / "Makefile").read_text(), re.M)
    assert pin, "the Makefile no longer names TORCH"
    dockerfile = DOCKERFILE.read_text()
    torch = f"--index-url https://download.pytorch.org/whl/cpu {pin[1]}"
    assert torch in dockerfile
    assert dockerfile.index(torch) < dockerfile.index("pip install --no-cache-dir .")


def test_compose_shares_one_volume_and_health_checks_the_api() -> None:
    compose = _compose()
    api, worker = compose["services"]["api"], compose["services"]["worker"]
    assert _mounts(api) == _mounts(worker), "both services must see the same SQLite file"
    assert set(_mounts(api).values()) <= set(compose.get("volumes") or {}), "undeclared volume"
    assert api["image"] == worker["image"]
    assert "8000:8000" in [str(port) for port in api["ports"]]
    # the run below swaps these two for the host's; inside the container they must be exactly so
    command = _argv(api["command"])
    assert command[command.index("--host") + 1] == "0.0.0.0", "unreachable from outside"
    assert command[command.index("--port") + 1] == "8000", "not the published port"
    assert api["healthcheck"]["test"][0] == "CMD", "the run below runs the exec form only"
    assert worker["depends_on"]["api"]["condition"] == "service_healthy"


def _start(
    name: str, service: dict[str, Any], tmp_path: Path, port: int
) -> subprocess.Popen[bytes]:
    """Run a service's command as its container would, with /data and the port mapped."""
    command, env = _argv(service["command"]), _environment(service)
    assert command[0] == "descent", command
    for target, volume in _mounts(service).items():
        (tmp_path / volume).mkdir(exist_ok=True)
        env = {key: value.replace(target, str(tmp_path / volume)) for key, value in env.items()}
    for flag, value in (("--host", "127.0.0.1"), ("--port", str(port))):
        if flag in command:
            command[command.index(flag) + 1] = value
    return start_process(command[1:], tmp_path / f"{name}.log", env)


def _run_healthcheck(api: dict[str, Any], port: int) -> subprocess.CompletedProcess[str]:
    _cmd, *test = api["healthcheck"]["test"]
    # the image's python is this one; the container's port 8000 is the free port here
    argv = [
        sys.executable if word == "python" else word.replace(":8000", f":{port}") for word in test
    ]
    return subprocess.run(argv, capture_output=True, text=True, timeout=30)


@pytest.mark.e2e
def test_compose_services_run_a_job_and_stop_cleanly(tmp_path: Path) -> None:
    services = _compose()["services"]
    api, worker = services["api"], services["worker"]
    port, procs = free_port(), []
    try:
        procs.append(_start("api", api, tmp_path, port))
        url = f"http://127.0.0.1:{port}"
        wait_healthy(url, procs[0], tmp_path / "api.log")
        health = _run_healthcheck(api, port)
        assert health.returncode == 0, health.stdout + health.stderr
        procs.append(_start("worker", worker, tmp_path, port))  # depends_on: service_healthy

        with httpx.Client(base_url=url, timeout=30) as http:
            service = Service(url, "", procs[0], http, tmp_path / "worker.log")
            job = service.wait(service.submit(fit_spec())["id"])
            assert job["status"] == "succeeded", job
            curves = http.get(f"/jobs/{job['id']}/curves", params={"names": "loss"}).json()
            assert len(curves["series"]["loss"]["steps"]) == job["progress"]["total_steps"] > 0
        volumes = [tmp_path / volume for volume in _mounts(api).values()]
        assert any(any(v.iterdir()) for v in volumes), "the database is not on the volume"

        # within the grace Docker gives each before SIGKILL, worker first as compose stops it
        for proc, spec in ((procs[1], worker), (procs[0], api)):
            grace = _seconds(spec["stop_grace_period"]) if "stop_grace_period" in spec else None
            assert stop_process(proc, timeout=grace or DOCKER_STOP_SECONDS) == 0
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
