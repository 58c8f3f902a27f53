"""Jobs: submit, read, list, cancel, delete; their curves and parameters."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from service import curves, jobs, specs
from service.api.deps import INT32_MAX, INT32_MIN, Cursor, EngineDep, JobId, OwnerDep
from service.api.responses import BAD_BODY, NOT_FOUND, UNAUTHORIZED, dumps
from service.db.engine import reading
from service.schemas.errors import ErrorMessage
from service.schemas.jobs import Curves, Job, JobPage, JobStatus, Parameters, Trajectory
from service.schemas.spec import TEXT_PATTERN, JobSpec

router = APIRouter(prefix="/jobs", tags=["jobs"], responses=UNAUTHORIZED)


@router.post("", status_code=201, responses=BAD_BODY)
def submit_job(spec: JobSpec, engine: EngineDep, owner: OwnerDep) -> Job:
    """Queue a job; the answer carries the spec with every default filled in."""
    try:
        spec = specs.resolve(engine, spec, owner=owner)
    except ValidationError as exc:
        raise RequestValidationError(specs.prefixed(exc)) from exc
    return jobs.create(
        engine,
        spec=spec.model_dump(mode="json"),
        owner=owner,
        total_steps=spec.total_steps,
        total_epochs=spec.epochs,
    )


@router.get("")
def list_jobs(
    engine: EngineDep,
    owner: OwnerDep,
    status: JobStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=jobs.MAX_PAGE)] = 50,
    cursor: Cursor = None,
) -> JobPage:
    """Jobs, newest first; pass `next_cursor` back as `cursor` for the next page."""
    items, next_cursor = jobs.list_page(
        engine, owner=owner, status=status, limit=limit, cursor=cursor
    )
    return JobPage(items=items, next_cursor=next_cursor)


@router.get("/{job_id}", responses=NOT_FOUND)
def get_job(job_id: JobId, engine: EngineDep, owner: OwnerDep) -> Job:
    """One job."""
    return jobs.get(engine, job_id=job_id, owner=owner)


@router.post(
    "/{job_id}/cancel",
    responses={**NOT_FOUND, 409: {"model": ErrorMessage, "description": "the job has finished"}},
)
def cancel_job(job_id: JobId, engine: EngineDep, owner: OwnerDep) -> Job:
    """Cancel a queued job at once, or ask a running job's worker to stop it."""
    return jobs.cancel(engine, job_id=job_id, owner=owner)


@router.delete("/{job_id}", status_code=204, responses=NOT_FOUND)
def delete_job(job_id: JobId, engine: EngineDep, owner: OwnerDep) -> Response:
    """Remove a job and all its data; a running job is stopped."""
    jobs.delete_job(engine, job_id=job_id, owner=owner)
    return Response(status_code=204)


@router.get("/{job_id}/curves", response_model=Curves, responses=NOT_FOUND)
def get_curves(
    job_id: JobId,
    engine: EngineDep,
    owner: OwnerDep,
    names: Annotated[
        str | None, Query(pattern=TEXT_PATTERN, description="comma-separated series names")
    ] = None,
    after: Annotated[
        int | None,
        Query(ge=INT32_MIN, le=INT32_MAX, description="only points with step > after"),
    ] = None,
    points: Annotated[int | None, Query(ge=2, description="thin each series to at most N")] = None,
) -> Response:
    """The job's series; poll with `after` while it runs."""
    wanted = [n.strip() for n in names.split(",") if n.strip()] if names else None
    with reading(engine) as conn:
        row = jobs.find(conn, job_id=job_id, owner=owner)
        series = curves.read(conn, job_pk=row.pk, names=wanted, after=after)
    body = {
        "job_id": job_id,
        "status": row.status,
        "series": {
            name: {"steps": s, "values": v}
            for name, (s, v) in curves.thin_all(series, points).items()
        },
    }
    # built by hand: validating a 100,000-point answer through pydantic would cost more than
    # reading it
    return Response(dumps(body), media_type="application/json")


@router.get("/{job_id}/parameters", response_model=Parameters, responses=NOT_FOUND)
def get_parameters(job_id: JobId, engine: EngineDep, owner: OwnerDep) -> Response:
    """The final parameters of a finished job, the latest saved ones of a running job."""
    with reading(engine) as conn:
        row = jobs.find(conn, job_id=job_id, owner=owner)
        saved = curves.read_parameters(conn, job_pk=row.pk)
    step, params = saved if saved is not None else (0, "{}")
    head = dumps({"job_id": job_id, "step": step})[:-1]
    # the parameters are stored as the JSON object served, so they are not parsed again
    return Response(
        head + b',"parameters":' + params.encode() + b"}", media_type="application/json"
    )


@router.get("/{job_id}/trajectory", response_model=Trajectory, responses=NOT_FOUND)
def get_trajectory(job_id: JobId, engine: EngineDep, owner: OwnerDep) -> Response:
    """`x` at every step of a minimize job; a small model's parameters after every epoch."""
    with reading(engine) as conn:
        row = jobs.find(conn, job_id=job_id, owner=owner)
        steps, points = curves.read_trajectory(conn, job_pk=row.pk)
    head = dumps({"job_id": job_id, "steps": steps})[:-1]
    # each point is stored as the JSON list served
    body = head + b',"points":[' + ",".join(points).encode() + b"]}"
    return Response(body, media_type="application/json")
