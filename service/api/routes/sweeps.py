"""Sweeps: one job per point of a grid; create, read, list, cancel, delete; their curves and
their picture."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response
from fastapi.exceptions import RequestValidationError

from service.api.deps import (
    Cursor,
    CurveWindow,
    EngineDep,
    LimitsDep,
    OwnerDep,
    PageLimit,
    SettingsDep,
    SweepId,
)
from service.api.responses import BAD_BODY, NOT_FOUND, PNG, UNAUTHORIZED, dumps
from service.api.routes.plots import CURVE_POINTS
from service.errors import InvalidSweep
from service.plots import charts
from service.schemas.sweeps import Sweep, SweepCreated, SweepCurves, SweepPage
from service.spec import TEXT_PATTERN
from service.spec.sweep import SweepRequest
from service.store import curves, sweeps

router = APIRouter(prefix="/sweeps", tags=["sweeps"], responses=UNAUTHORIZED)

#: a series' name, as the curves and the picture take it
SeriesName = Annotated[str, Query(min_length=1, max_length=64, pattern=TEXT_PATTERN)]


@router.post("", status_code=201, responses=BAD_BODY)
def create_sweep(
    request: SweepRequest,
    engine: EngineDep,
    owner: OwnerDep,
    settings: SettingsDep,
    limits: LimitsDep,
) -> SweepCreated:
    """Queue one job per point of the grid; if any point is invalid, nothing is stored."""
    most = settings.max_sweep_jobs
    try:
        return sweeps.create(engine, request=request, owner=owner, max_jobs=most, limits=limits)
    except InvalidSweep as exc:
        raise RequestValidationError(exc.errors) from exc


@router.get("")
def list_sweeps(
    engine: EngineDep,
    owner: OwnerDep,
    limit: PageLimit = 50,
    cursor: Cursor = None,
) -> SweepPage:
    """Sweeps, newest first, with their jobs counted by status; pass `next_cursor` back."""
    items, next_cursor = sweeps.list_page(engine, owner=owner, limit=limit, cursor=cursor)
    return SweepPage(items=items, next_cursor=next_cursor)


@router.get("/{sweep_id}", responses=NOT_FOUND)
def get_sweep(
    sweep_id: SweepId,
    engine: EngineDep,
    owner: OwnerDep,
    order: Annotated[
        sweeps.Order,
        Query(description="`grid`: the grid's order; `final_loss`: best final loss first"),
    ] = "grid",
) -> Sweep:
    """The sweep's runs with their status, progress and result."""
    return sweeps.get(engine, sweep_id=sweep_id, owner=owner, order=order)


@router.post("/{sweep_id}/cancel", responses=NOT_FOUND)
def cancel_sweep(sweep_id: SweepId, engine: EngineDep, owner: OwnerDep) -> Sweep:
    """Cancel every job of the sweep that has not finished; answers the sweep."""
    return sweeps.cancel(engine, sweep_id=sweep_id, owner=owner)


@router.delete("/{sweep_id}", status_code=204, responses=NOT_FOUND)
def delete_sweep(sweep_id: SweepId, engine: EngineDep, owner: OwnerDep) -> Response:
    """Remove the sweep, its jobs and all their data; running jobs are stopped."""
    sweeps.delete_sweep(engine, sweep_id=sweep_id, owner=owner)
    return Response(status_code=204)


@router.get("/{sweep_id}/curves", response_model=SweepCurves, responses=NOT_FOUND)
def get_sweep_curves(
    sweep_id: SweepId,
    engine: EngineDep,
    owner: OwnerDep,
    window: CurveWindow,
    name: SeriesName = "loss",
) -> Response:
    """One series of every run, in grid order, to plot side by side; `start`/`end` zoom."""
    _, runs = sweeps.read_curves(engine, sweep_id=sweep_id, owner=owner, name=name, window=window)
    # built by hand, as a job's curves are: no pydantic pass over every point
    body = {"sweep_id": sweep_id, "name": name, "runs": runs}
    return Response(dumps(body), media_type="application/json")


@router.get("/{sweep_id}/plot.png", response_class=Response, responses={**PNG, **NOT_FOUND})
def get_sweep_plot(
    sweep_id: SweepId,
    engine: EngineDep,
    owner: OwnerDep,
    name: SeriesName = "loss",
    gap: Annotated[
        bool,
        Query(description="draw each value less the smallest of any run (f - f*), on a log axis"),
    ] = False,
) -> Response:
    """Every run's curve on one axis, with a legend of their grid values."""
    row, runs = sweeps.read_curves(
        engine,
        sweep_id=sweep_id,
        owner=owner,
        name=name,
        window=curves.Window(points=CURVE_POINTS),
    )
    label = name
    if gap:
        runs, best = charts.gaps(runs)
        label = f"{name} − best ({best:.6g})"
    png = charts.sweep_curves_png(row.name or f"sweep {row.id}", runs, name=label)
    return Response(png, media_type="image/png")
