"""Datasets: upload a CSV, read, list, delete."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Request, Response, UploadFile
from starlette.concurrency import run_in_threadpool

from service.api import uploads
from service.api.deps import Cursor, DatasetId, EngineDep, OwnerDep, PageLimit, SettingsDep
from service.api.responses import BAD_BODY, NOT_FOUND, UNAUTHORIZED
from service.schemas.datasets import Dataset, DatasetPage
from service.spec import TEXT_PATTERN
from service.store import datasets

router = APIRouter(prefix="/datasets", tags=["datasets"], responses=UNAUTHORIZED)

#: the status an upload whose client went away ends with (nginx's "client closed request"):
#: nobody reads it, but the request metrics count it
CLIENT_GONE = 499


@router.post(
    "",
    status_code=201,
    response_model=Dataset,
    responses={
        **BAD_BODY,
        422: {
            "description": "the file is not a rectangular numeric CSV, or has too many rows,"
            " columns or values"
        },
    },
)
async def upload_dataset(
    request: Request,
    file: UploadFile,
    engine: EngineDep,
    owner: OwnerDep,
    settings: SettingsDep,
    name: Annotated[str | None, Form(max_length=datasets.MAX_NAME, pattern=TEXT_PATTERN)] = None,
    target: Annotated[
        str | None,
        Form(
            max_length=datasets.MAX_NAME,
            pattern=TEXT_PATTERN,
            description="the target column; default the last",
        ),
    ] = None,
) -> Dataset | Response:
    """Store a CSV with a header row; `target` names the column to predict."""
    limit = settings.max_upload_bytes
    raw = await file.read(limit + 1)
    if len(raw) > limit:
        raise HTTPException(
            status_code=413,
            detail=f"the upload is larger than {limit} bytes (DESCENT_MAX_UPLOAD_BYTES)",
        )
    # parsed and stored in threads: a large file must not hold up the other requests
    parsed = await run_in_threadpool(
        uploads.parse_csv, raw, target=target or None, limits=uploads.Limits.of(settings)
    )
    if await request.is_disconnected():  # the client gave up while the file was parsed
        return Response(status_code=CLIENT_GONE)
    dataset = await run_in_threadpool(
        datasets.create,
        engine,
        parsed=parsed,
        name=name or datasets.name_from(file.filename),
        owner=owner,
    )
    if await request.is_disconnected():  # ... or while it was stored: nobody knows its id
        await run_in_threadpool(datasets.delete_dataset, engine, dataset_id=dataset.id, owner=owner)
        return Response(status_code=CLIENT_GONE)
    return dataset


@router.get("")
def list_datasets(
    engine: EngineDep,
    owner: OwnerDep,
    limit: PageLimit = 50,
    cursor: Cursor = None,
) -> DatasetPage:
    """Datasets, newest first; pass `next_cursor` back as `cursor` for the next page."""
    items, next_cursor = datasets.list_page(engine, owner=owner, limit=limit, cursor=cursor)
    return DatasetPage(items=items, next_cursor=next_cursor)


@router.get("/{dataset_id}", responses=NOT_FOUND)
def get_dataset(dataset_id: DatasetId, engine: EngineDep, owner: OwnerDep) -> Dataset:
    """One dataset (its description; the numbers stay with the service)."""
    return datasets.get(engine, dataset_id=dataset_id, owner=owner)


@router.delete("/{dataset_id}", status_code=204, responses=NOT_FOUND)
def delete_dataset(dataset_id: DatasetId, engine: EngineDep, owner: OwnerDep) -> Response:
    """Remove a dataset."""
    datasets.delete_dataset(engine, dataset_id=dataset_id, owner=owner)
    return Response(status_code=204)
