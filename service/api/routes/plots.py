"""Pictures: a job's curves, or a minimize job's path, as a PNG."""

from __future__ import annotations

from collections.abc import Sequence

import orjson
from fastapi import APIRouter, Response

from service.api.deps import EngineDep, JobId, OwnerDep
from service.api.responses import NOT_FOUND, PNG, UNAUTHORIZED
from service.plots import charts
from service.store import curves

#: points per series a picture draws (thinned keeping each stretch's extremes)
CURVE_POINTS = 2000
#: points of a minimize job's path a picture draws (evenly spaced, the first and last kept)
PATH_POINTS = 2000

router = APIRouter(prefix="/jobs", tags=["jobs"], responses=UNAUTHORIZED)


@router.get("/{job_id}/plot.png", response_class=Response, responses={**PNG, **NOT_FOUND})
def get_plot(job_id: JobId, engine: EngineDep, owner: OwnerDep) -> Response:
    """The loss curves as a picture; a 2-D minimize job's path on the objective's contours."""
    row, series, points = curves.job_drawing(
        engine, job_id=job_id, owner=owner, points=CURVE_POINTS
    )
    # plotting is CPU work: a plain `def` route runs it in the threadpool, off the event loop
    png = charts.job_png(
        job_id=row.id,
        name=row.name,
        status=row.status,
        spec=row.spec,
        series=series,
        path=[orjson.loads(p) for p in _spaced(points, PATH_POINTS)],
        error_type=row.error["type"] if row.error else None,
    )
    return Response(png, media_type="image/png")


def _spaced(items: Sequence[str], most: int) -> list[str]:
    """At most `most` items, evenly spaced, the first and the last among them."""
    if len(items) <= most:
        return list(items)
    step = (len(items) - 1) / (most - 1)
    return [items[round(i * step)] for i in range(most)]
