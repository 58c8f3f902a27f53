"""A small Python client for the Descent API, on httpx: `Client(url, token)`, whose methods
answer the API's resources as dicts and raise `ClientError` for an error answer."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote

import httpx

from service.schemas.jobs import JobStatus

#: where `descent up` serves by default
DEFAULT_URL = "http://127.0.0.1:8000"
#: the statuses a job ends in
FINISHED = frozenset(status.value for status in JobStatus if status.finished)
#: seconds between polls while waiting for or following a job
POLL_SECONDS = 0.2

Json = dict[str, Any]
#: a curve point as (step, value); the value is None where the loss was not finite
Point = tuple[int, float | None]


class ClientError(Exception):
    """An error answer (4xx, 5xx): its HTTP status and the server's `detail`."""

    def __init__(self, status: int, detail: Any) -> None:
        self.status = status
        self.detail = detail
        super().__init__(f"{status}: {describe(detail)}")

    @classmethod
    def from_response(cls, response: httpx.Response) -> ClientError:
        try:
            detail = response.json().get("detail", response.text)
        except ValueError:  # not JSON (a proxy's error page, say)
            detail = response.text or response.reason_phrase
        return cls(response.status_code, detail)


def describe(detail: Any) -> str:
    """FastAPI's `detail` as a line: validation errors as `body.field: reason; ...`."""
    if not isinstance(detail, list):
        return str(detail)
    parts = []
    for error in detail:
        if isinstance(error, dict):
            where = ".".join(str(part) for part in error.get("loc", ()))
            reason = str(error.get("msg", error))
            parts.append(f"{where}: {reason}" if where else reason)
        else:
            parts.append(str(error))
    return "; ".join(parts)


class Client:
    """The Descent API as methods that answer the resources as dicts, or raise ClientError."""

    def __init__(
        self, url: str = DEFAULT_URL, token: str | None = None, timeout: float = 30
    ) -> None:
        self.url = url.rstrip("/")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    @classmethod
    def from_env(cls, timeout: float = 30) -> Client:
        """A client for $DESCENT_URL (default http://127.0.0.1:8000) with $DESCENT_TOKEN."""
        url = os.environ.get("DESCENT_URL") or DEFAULT_URL
        return cls(url, os.environ.get("DESCENT_TOKEN") or None, timeout)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.http.request(method, path, **kwargs)
        if response.is_error:
            raise ClientError.from_response(response)
        return response.json() if response.content else None

    def _get(self, path: str, **params: Any) -> Any:
        """GET with the parameters that are not None."""
        wanted = {k: v for k, v in params.items() if v is not None}
        return self._call("GET", path, params=wanted)

    # jobs

    def submit(self, spec: Json) -> Json:
        """Queue a job; the answer is the job, its spec with every default filled in."""
        return self._call("POST", "/jobs", json=spec)

    def job(self, job_id: str) -> Json:
        return self._get(_job(job_id))

    def jobs(self, status: str | None = None, limit: int = 50) -> list[Json]:
        """The newest `limit` jobs (of that status)."""
        return self._get("/jobs", status=status, limit=limit)["items"]

    def all_jobs(self, status: str | None = None, page_size: int = 100) -> Iterator[Json]:
        """Every job (of that status), newest first, a page at a time."""
        cursor = None
        while True:
            page = self._get("/jobs", status=status, limit=page_size, cursor=cursor)
            yield from page["items"]
            cursor = page["next_cursor"]
            if cursor is None:
                return

    def cancel(self, job_id: str) -> Json:
        """Cancel a queued or running job; a finished one raises ClientError 409."""
        return self._call("POST", f"{_job(job_id)}/cancel")

    def delete(self, job_id: str) -> None:
        self._call("DELETE", _job(job_id))

    def curves(
        self,
        job_id: str,
        names: list[str] | str | None = None,
        after: int | None = None,
        points: int | None = None,
    ) -> Json:
        """`{"job_id", "status", "series": {name: {"steps", "values"}}}`."""
        if isinstance(names, list | tuple):
            names = ",".join(names)
        return self._get(f"{_job(job_id)}/curves", names=names, after=after, points=points)

    def parameters(self, job_id: str) -> Json:
        """`{"job_id", "step", "parameters": {name: nested lists}}`. A model past the service's
        JSON limit raises ClientError 413: `download_parameters` takes any size."""
        return self._get(f"{_job(job_id)}/parameters")

    def download_parameters(self, job_id: str, path: str | Path) -> int:
        """Write the job's parameters to `path` as a safetensors file (read it with
        `safetensors.torch.load_file`); answers their step. Streamed, so any size fits."""
        path = Path(path)
        part = path.with_name(path.name + ".part")  # no half-written file left at `path`
        url = f"{_job(job_id)}/parameters"
        with self.http.stream("GET", url, params={"format": "safetensors"}) as response:
            if response.is_error:
                response.read()
                raise ClientError.from_response(response)
            with part.open("wb") as file:
                for block in response.iter_bytes():
                    file.write(block)
        part.replace(path)
        return int(response.headers["X-Descent-Step"])

    def trajectory(self, job_id: str) -> Json:
        return self._get(f"{_job(job_id)}/trajectory")

    def wait(self, job_id: str, poll: float = POLL_SECONDS, timeout: float | None = None) -> Json:
        """The job once it has finished; TimeoutError after `timeout` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if job["status"] in FINISHED:
                return job
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} is still {job['status']} after {timeout} s")
            time.sleep(poll)

    def follow(self, job_id: str, poll: float = POLL_SECONDS) -> Iterator[tuple[Json, list[Point]]]:
        """(job, new loss points) each time the job moves on, ending with the finished job."""
        last_step: int | None = None
        seen: Any = None
        tag: str | None = None
        while True:
            # the job first: once it reads finished, the curve read after it holds every point
            job = self.job(job_id)
            points, tag = self._new_loss_points(job_id, after=last_step, tag=tag)
            if points:
                last_step = points[-1][0]
            state = (job["status"], job["progress"])
            if points or state != seen:
                yield job, points
            seen = state
            if job["status"] in FINISHED:
                return
            time.sleep(poll)

    def _new_loss_points(
        self, job_id: str, after: int | None, tag: str | None
    ) -> tuple[list[Point], str | None]:
        """The loss past step `after`, and its answer's ETag; none while `tag` is current (the
        service answers 304 and sends no points)."""
        params: dict[str, str | int] = {"names": "loss"}
        if after is not None:
            params["after"] = after
        headers = {"If-None-Match": tag} if tag else {}
        response = self.http.get(f"{_job(job_id)}/curves", params=params, headers=headers)
        if response.status_code == 304:
            return [], tag
        if response.is_error:
            raise ClientError.from_response(response)
        loss = response.json()["series"].get("loss")
        points = list(zip(loss["steps"], loss["values"], strict=True)) if loss else []
        return points, response.headers.get("ETag")

    # datasets

    def upload_dataset(
        self, path: str | Path, name: str | None = None, target: str | None = None
    ) -> Json:
        """Upload a CSV with a header row; `target` names the column to predict (default last)."""
        path = Path(path)
        form = {k: v for k, v in {"name": name, "target": target}.items() if v is not None}
        with path.open("rb") as file:
            files = {"file": (path.name, file, "text/csv")}
            return self._call("POST", "/datasets", files=files, data=form)

    # sweeps

    def sweep(self, body: Json) -> Json:
        """Create one job per grid point: `{"name", "base": spec, "grid": {path: [values]}}`."""
        return self._call("POST", "/sweeps", json=body)

    def sweeps(self, limit: int = 50) -> list[Json]:
        """The newest `limit` sweeps, each with `n_jobs` and its jobs' `counts` by status."""
        return self._get("/sweeps", limit=limit)["items"]

    def get_sweep(self, sweep_id: str, order: str | None = None) -> Json:
        """The sweep and its `runs`: in grid order, or with `order="final_loss"` best first."""
        return self._get(_sweep(sweep_id), order=order)

    def sweep_curves(
        self,
        sweep_id: str,
        name: str = "loss",
        points: int | None = None,
        after: int | None = None,
    ) -> Json:
        """`{"runs": [{"job_id", "overrides", "steps", "values"}]}`, to plot side by side."""
        return self._get(f"{_sweep(sweep_id)}/curves", name=name, points=points, after=after)

    def wait_sweep(
        self, sweep_id: str, poll: float = POLL_SECONDS, timeout: float | None = None
    ) -> Json:
        """The sweep once every run has finished; TimeoutError after `timeout` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            sweep = self.get_sweep(sweep_id)
            if all(run["status"] in FINISHED for run in sweep["runs"]):
                return sweep
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"sweep {sweep_id} has unfinished runs after {timeout} s")
            time.sleep(poll)

    def cancel_sweep(self, sweep_id: str) -> Json:
        """Cancel every run that has not finished; answers the sweep."""
        return self._call("POST", f"{_sweep(sweep_id)}/cancel")

    def delete_sweep(self, sweep_id: str) -> None:
        """Remove the sweep, its jobs and all their data."""
        self._call("DELETE", _sweep(sweep_id))


def _job(job_id: str) -> str:
    return f"/jobs/{quote(job_id, safe='')}"


def _sweep(sweep_id: str) -> str:
    return f"/sweeps/{quote(sweep_id, safe='')}"
