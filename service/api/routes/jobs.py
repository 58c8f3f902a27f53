"""Jobs: submit, read, list, cancel, delete; their curves and parameters."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, Response
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from service.api import conditional, polls
from service.api.deps import (
    Cursor,
    CurveWindow,
    EngineDep,
    JobId,
    LimitsDep,
    OwnerDep,
    PageLimit,
    SettingsDep,
)
from service.api.responses import BAD_BODY, NOT_FOUND, UNAUTHORIZED, dumps
from service.errors import NotFound
from service.schemas.errors import ErrorMessage
from service.schemas.jobs import Curves, Job, JobPage, JobStatus, Parameters, Trajectory
from service.spec import TEXT_PATTERN, JobSpec
from service.spec.resolve import prefixed
from service.store import curves, datasets, job_queue

router = APIRouter(prefix="/jobs", tags=["jobs"], responses=UNAUTHORIZED)


@router.post("", status_code=201, responses=BAD_BODY)
def submit_job(spec: JobSpec, engine: EngineDep, owner: OwnerDep, limits: LimitsDep) -> Job:
    """Queue a job; the answer carries the spec with every default filled in."""
    try:
        spec = datasets.resolve_for(engine, spec, owner=owner, limits=limits)
    except ValidationError as exc:
        raise RequestValidationError(prefixed(exc)) from exc
    return job_queue.create(
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
    limit: PageLimit = 50,
    cursor: Cursor = None,
) -> JobPage:
    """Jobs, newest first; pass `next_cursor` back as `cursor` for the next page."""
    items, next_cursor = job_queue.list_page(
        engine, owner=owner, status=status, limit=limit, cursor=cursor
    )
    return JobPage(items=items, next_cursor=next_cursor)


@router.get("/{job_id}", responses=NOT_FOUND)
def get_job(job_id: JobId, engine: EngineDep, owner: OwnerDep) -> Job:
    """One job."""
    return job_queue.get(engine, job_id=job_id, owner=owner)


@router.post(
    "/{job_id}/cancel",
    responses={**NOT_FOUND, 409: {"model": ErrorMessage, "description": "the job has finished"}},
)
def cancel_job(job_id: JobId, engine: EngineDep, owner: OwnerDep) -> Job:
    """Cancel a queued job at once, or ask a running job's worker to stop it."""
    return job_queue.cancel(engine, job_id=job_id, owner=owner)


@router.delete("/{job_id}", status_code=204, responses=NOT_FOUND)
def delete_job(job_id: JobId, engine: EngineDep, owner: OwnerDep) -> Response:
    """Remove a job and all its data; a running job is stopped."""
    job_queue.delete_job(engine, job_id=job_id, owner=owner)
    return Response(status_code=204)


@router.get(
    "/{job_id}/curves", response_model=Curves, responses={**NOT_FOUND, **conditional.NOT_MODIFIED}
)
async def get_curves(
    job_id: JobId,
    engine: EngineDep,
    owner: OwnerDep,
    window: CurveWindow,
    names: Annotated[
        str | None, Query(pattern=TEXT_PATTERN, description="comma-separated series names")
    ] = None,
    if_none_match: conditional.IfNoneMatch = None,
) -> Response:
    """The job's series; poll with `after` and `If-None-Match` while it runs; `start`/`end`
    with `points` zoom into a window at a screen's resolution."""
    wanted = [n.strip() for n in names.split(",") if n.strip()] if names else None
    query = polls.CurvesQuery(job_id=job_id, names=wanted, window=window)
    return await polls.curves_answer(engine, query, owner=owner, if_none_match=if_none_match)


#: what `GET /jobs/{id}/parameters` may answer besides JSON and a missing job
PARAMETERS_ANSWERS: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {"application/octet-stream": {}},
        "description": "JSON; with `format=safetensors`, the tensors as a safetensors file, with"
        " the step in `X-Descent-Step` and the number of scalars in `X-Descent-Parameters`",
    },
    413: {
        "model": ErrorMessage,
        "description": "JSON asked for a model of more parameters than"
        " DESCENT_MAX_PARAMETERS_JSON: download it with `format=safetensors`",
    },
}


@router.get(
    "/{job_id}/parameters",
    response_model=Parameters,
    responses={**NOT_FOUND, **PARAMETERS_ANSWERS},
)
def get_parameters(
    job_id: JobId,
    engine: EngineDep,
    owner: OwnerDep,
    settings: SettingsDep,
    format_: Annotated[
        Literal["json", "safetensors"],
        Query(alias="format", description="`safetensors` for the file, whatever the size"),
    ] = "json",
) -> Response:
    """The final parameters of a finished job, the latest saved ones of a running job."""
    limit = settings.max_parameters_json
    saved = curves.job_parameters(
        engine, job_id=job_id, owner=owner, max_scalars=limit if format_ == "json" else None
    )
    if saved.file is None:  # more scalars than the JSON limit: left unread
        raise HTTPException(status_code=413, detail=_too_large_for_json(job_id, saved, limit))
    if format_ == "safetensors":
        return _safetensors_download(job_id, saved, saved.file)
    head = dumps({"job_id": job_id, "step": saved.step})[:-1]
    body = head + b',"parameters":' + curves.parameters_json(saved.file) + b"}"
    return Response(body, media_type="application/json")


def _too_large_for_json(job_id: str, saved: curves.SavedParameters, limit: int) -> str:
    return (
        f"the model has {saved.scalars} parameters, more than the {limit} served as JSON"
        " (DESCENT_MAX_PARAMETERS_JSON); download them as a safetensors file with"
        f" GET /jobs/{job_id}/parameters?format=safetensors"
    )


def _safetensors_download(job_id: str, saved: curves.SavedParameters, file: bytes) -> Response:
    headers = {
        "Content-Disposition": f'attachment; filename="{job_id}.safetensors"',
        "X-Descent-Step": str(saved.step),
        "X-Descent-Parameters": str(saved.scalars),
    }
    return Response(file, media_type="application/octet-stream", headers=headers)


@router.get(
    "/{job_id}/trajectory",
    response_model=Trajectory,
    responses={
        404: {
            "model": ErrorMessage,
            "description": "no such job, or one whose model is"
            " too large to keep a trajectory (the detail says which)",
        }
    },
)
def get_trajectory(
    job_id: JobId, engine: EngineDep, owner: OwnerDep, limits: LimitsDep
) -> Response:
    """`x` at every step of a minimize job; a small model's parameters after every epoch."""
    raw_spec, steps, points = curves.job_trajectory(engine, job_id=job_id, owner=owner)
    if (
        not steps
        and (why := curves.why_no_trajectory(engine, raw_spec, owner=owner, limits=limits))
        is not None
    ):
        raise NotFound(why)
    head = dumps({"job_id": job_id, "steps": steps})[:-1]
    # each point is stored as the JSON list served
    body = head + b',"points":[' + ",".join(points).encode() + b"]}"
    return Response(body, media_type="application/json")
