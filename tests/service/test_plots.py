"""Pictures (API.md section 7): `GET /jobs/{id}/plot.png`, and the figures behind it, checked
for the choices a reader sees (log scales, legends, titles) and for text that overlaps."""

from __future__ import annotations

import io
import itertools
import math
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from matplotlib import image
from matplotlib.axes import Axes
from matplotlib.axis import Axis, Tick
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.text import Text
from matplotlib.transforms import Bbox

from service.api.routes import plots as plot_routes
from service.config import Settings
from service.main import create_app
from service.plots import charts, surfaces
from service.spec import MinimizeSpec
from tests.conftest import fit_spec
from worker.claims import Worker
from worker.training import objectives

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
#: as long a name as a spec takes
LONG_NAME = "a name typed in full " * 9 + "to the limi"


@pytest.fixture
def worker(settings: Settings) -> Worker:
    return Worker(settings, device="cpu")


def minimize_spec(**overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "task": "minimize",
        "objective": {"type": "rosenbrock"},
        "x0": [-1.5, 2.0],
        "optimizer": {"type": "adam", "lr": 0.05},
        "steps": 200,
        "device": "cpu",
    }
    return spec | overrides


def png_shape(client: TestClient, job_id: str) -> tuple[int, int]:
    """(height, width) of the job's picture, checked to be a PNG."""
    response = client.get(f"/jobs/{job_id}/plot.png")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    assert response.content.startswith(PNG_MAGIC)
    pixels = image.imread(io.BytesIO(response.content), format="png")
    return pixels.shape[0], pixels.shape[1]


def inches(width: float, height: float) -> tuple[int, int]:
    return round(height * charts.DPI), round(width * charts.DPI)


# --- the endpoint ---------------------------------------------------------------------------


def test_fit_job_plot(client: TestClient, worker: Worker) -> None:
    job = client.post("/jobs", json=fit_spec(name="fit")).json()
    assert worker.run_one()
    # loss, train_loss, val_loss on one panel (lr is constant), the legend beside it
    assert png_shape(client, job["id"]) == inches(9.8, 5.0)


def test_classifier_with_a_schedule_gets_three_panels(client: TestClient, worker: Worker) -> None:
    spec = fit_spec(
        model={"type": "softmax"},
        data={"type": "classification", "kind": "blobs", "n_classes": 3},
        optimizer={"type": "adam", "lr": 0.05},
        schedule={"type": "exponential", "gamma": 0.5},
    )
    job = client.post("/jobs", json=spec).json()
    worker.run_one()
    assert png_shape(client, job["id"]) == inches(9.8, 1.4 + 3.6 + 1.8 + 1.0)


@pytest.mark.parametrize("objective", [{"type": "rosenbrock"}, {"type": "booth"}])
def test_minimize_2d_job_plot(client: TestClient, worker: Worker, objective: dict) -> None:
    job = client.post("/jobs", json=minimize_spec(objective=objective)).json()
    worker.run_one()
    assert png_shape(client, job["id"]) == inches(10.0, 5.6)


def test_minimize_1d_and_nd_jobs(client: TestClient, worker: Worker) -> None:
    quadratic = {"type": "quadratic"}
    one = client.post("/jobs", json=minimize_spec(objective=quadratic, x0=[10.0])).json()
    many = client.post("/jobs", json=minimize_spec(objective=quadratic, x0=[1.0, 2, 3])).json()
    worker.run_one()
    worker.run_one()
    assert png_shape(client, one["id"]) == inches(10.0, 5.6)  # the path on the parabola
    assert png_shape(client, many["id"]) == inches(9.8, 5.0)  # the loss curve


def test_queued_jobs_have_a_picture_too(client: TestClient) -> None:
    fit = client.post("/jobs", json=fit_spec()).json()
    minimize = client.post("/jobs", json=minimize_spec()).json()
    assert png_shape(client, fit["id"]) == inches(*charts.SIZE)
    assert png_shape(client, minimize["id"]) == inches(*charts.SIZE)


def test_a_long_path_is_drawn_from_evenly_spaced_points() -> None:
    points = [str(i) for i in range(10_001)]
    spaced = plot_routes._spaced(points, 2000)
    assert len(spaced) == 2000 and spaced[0] == "0" and spaced[-1] == "10000"
    assert plot_routes._spaced(points[:5], 2000) == points[:5]


def test_unknown_job_is_404(client: TestClient) -> None:
    response = client.get("/jobs/nope/plot.png")
    assert response.status_code == 404
    assert "nope" in response.json()["detail"]


def test_openapi_documents_a_png(client: TestClient) -> None:
    operation = client.get("/openapi.json").json()["paths"]["/jobs/{job_id}/plot.png"]["get"]
    assert set(operation["responses"]["200"]["content"]) == {"image/png"}
    assert {"404", "401"} <= set(operation["responses"])


@pytest.fixture
def guarded(db_url: str) -> Iterator[TestClient]:
    settings = Settings(database_url=db_url, api_tokens="alpha,beta")
    with TestClient(create_app(settings)) as client:
        yield client


def test_another_tokens_job_is_404(guarded: TestClient) -> None:
    alpha, beta = {"Authorization": "Bearer alpha"}, {"Authorization": "Bearer beta"}
    job = guarded.post("/jobs", json=fit_spec(), headers=alpha).json()
    assert guarded.get(f"/jobs/{job['id']}/plot.png", headers=alpha).status_code == 200
    assert guarded.get(f"/jobs/{job['id']}/plot.png", headers=beta).status_code == 404
    assert guarded.get(f"/jobs/{job['id']}/plot.png").status_code == 401


# --- what the figures show ----------------------------------------------------------------


def curves(**named: list[float | None]) -> dict[str, tuple[list[int], list[float | None]]]:
    """Series with steps 1, 2, ...; per-epoch ones every 10th step."""
    out = {}
    for name, values in named.items():
        every = 1 if name == "loss" else 10
        out[name] = ([every * (i + 1) for i in range(len(values))], values)
    return out


def decaying(n: int, start: float, end: float) -> list[float | None]:
    return [float(v) for v in np.geomspace(start, end, n)]


def test_log_scale_when_the_range_calls_for_it() -> None:
    wide = charts._curves_figure("t", curves(loss=decaying(100, 50, 0.01)), status="running")
    narrow = charts._curves_figure("t", curves(loss=decaying(100, 2, 0.5)), status="running")
    signed = charts._curves_figure("t", curves(loss=[-5.0, 100.0, 1e-3]), status="running")
    assert wide.axes[0].get_yscale() == "log"
    assert narrow.axes[0].get_yscale() == "linear"
    assert signed.axes[0].get_yscale() == "linear"


def test_panels_titles_and_legends() -> None:
    series = curves(
        loss=decaying(50, 2.0, 0.1),
        train_loss=[1.0, 0.5, None, 0.2, 0.1],  # None: a gap
        val_loss=[1.1, 0.6, 0.4, 0.3, 0.2],
        accuracy=[0.5, 0.7, 0.8, 0.85, 0.9],
        lr=[0.1, 0.1, 0.05, 0.05, 0.025],
    )
    fig = charts._curves_figure("digits (job abc)", series, status="succeeded")
    assert fig.get_suptitle() == "digits (job abc): succeeded"
    loss, accuracy, lr = fig.axes
    assert [legend_names(ax) for ax in fig.axes] == [
        ["loss", "train_loss", "val_loss"],
        ["accuracy"],
        ["lr"],
    ]
    assert (loss.get_ylabel(), accuracy.get_ylabel(), lr.get_ylabel()) == ("loss", "accuracy", "lr")
    assert lr.get_xlabel() == "step"
    assert "last 0.2" in legend_texts(loss)[2]
    # a constant learning rate gets no panel
    steady = charts._curves_figure("t", curves(loss=[1.0, 0.5], lr=[0.1, 0.1]), status="running")
    assert len(steady.axes) == 1


def legend_texts(ax: Axes) -> list[str]:
    legend = ax.get_legend()
    assert legend is not None
    return [t.get_text() for t in legend.get_texts()]


def legend_names(ax: Axes) -> list[str]:
    """The series' names: the first line of each label."""
    return [text.split("\n")[0] for text in legend_texts(ax)]


@pytest.mark.parametrize("series", [{}, {"loss": ([], [])}, {"loss": ([1, 2], [None, None])}])
def test_no_points_yet(series: dict) -> None:
    fig = charts._curves_figure("job x", series, status="queued")
    assert [t.get_text() for t in fig.axes[0].texts] == ["no points yet"]
    assert fig.get_suptitle() == "job x: queued"
    assert charts.job_curves_png("job x", series, status="queued").startswith(PNG_MAGIC)


def minimize(**fields: Any) -> MinimizeSpec:
    return MinimizeSpec.model_validate(minimize_spec(**fields))


def path_of(objective: dict[str, Any], x0: list[float], steps: int = 100) -> list[list[float]]:
    """Adam's path from x0 over the worker's own objective: a path to draw."""
    spec = minimize(objective=objective, x0=x0, steps=steps)
    f = objectives.build(spec.objective, device=torch.device("cpu"))
    x = torch.tensor(x0, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.Adam([x], lr=0.05)
    points = [x.tolist()]
    for _ in range(steps):
        optimizer.zero_grad()
        f(x).backward()
        optimizer.step()
        points.append(x.tolist())
    return points


def losses_of(objective: dict[str, Any], points: list[list[float]]) -> tuple[list[int], list]:
    u, v = np.array(points).T
    values = surfaces.function_2d(objective)(u, v)
    return list(range(len(points))), [float(z) for z in values]


def contour_norm(fig: Figure) -> Any:
    (filled, _lines) = [c for c in fig.axes[0].collections if hasattr(c, "levels")]
    return filled.norm


@pytest.mark.parametrize(
    ("objective", "x0", "log_levels"),
    [
        ({"type": "rosenbrock", "a": 1.0, "b": 100.0}, [-1.5, 2.0], True),
        ({"type": "beale"}, [1.0, 1.5], True),
        ({"type": "himmelblau"}, [0.0, 0.0], True),
        ({"type": "booth"}, [-5.0, -5.0], False),
        ({"type": "quadratic", "scales": [1.0, 10.0]}, [10.0, 2.0], False),
        ({"type": "saddle"}, [2.0, 0.01], False),
    ],
)
def test_path_on_contours(objective: dict, x0: list[float], log_levels: bool) -> None:
    points = path_of(objective, x0)
    fig = charts._path_2d_figure("t", objective, points, losses_of(objective, points))
    assert isinstance(contour_norm(fig), LogNorm) == log_levels
    path, f_panel = fig.axes[0], fig.axes[1]
    lo, hi = sorted(path.get_xlim()), sorted(path.get_ylim())
    for x, y in points:  # the whole path is in view
        assert lo[0] <= x <= lo[1] and hi[0] <= y <= hi[1]
    labels = legend_texts(fig.axes[2])
    assert labels[0] == "path" and labels[2].startswith("start: x = (")
    assert labels[3].startswith(f"end, step {len(points) - 1}: x = (")
    # log where f stays positive and falls by more than a hundredfold
    f = np.array(losses_of(objective, points)[1])
    wide = f.min() > 0 and f.max() / f.min() > charts.LOG_RATIO
    assert f_panel.get_yscale() == ("log" if wide else "linear")
    assert f_panel.get_xlabel() == "step k"


def test_known_minima_are_marked() -> None:
    points = path_of({"type": "booth"}, [-5.0, -5.0])
    fig = charts._path_2d_figure(
        "t", {"type": "booth"}, points, losses_of({"type": "booth"}, points)
    )
    labels = legend_texts(fig.axes[2])
    assert "minimum (1, 3)" in labels
    assert surfaces.landmarks({"type": "himmelblau"})[0] == "minima"
    assert surfaces.landmarks({"type": "saddle"}) == ("saddle point", [(0.0, 0.0)])


def test_path_1d_on_the_parabola() -> None:
    points = [[10.0 * 0.8**k] for k in range(21)]
    losses = (list(range(21)), [p[0] ** 2 for p in points])
    fig = charts._path_1d_figure("x^2", {"type": "quadratic", "scales": [1.0]}, points, losses)
    curve = fig.axes[0].get_lines()[0]
    assert np.allclose(curve.get_ydata(), np.asarray(curve.get_xdata()) ** 2)
    assert fig.axes[0].get_ylabel() == "f(x)"
    labels = legend_texts(fig.axes[2])
    assert "start: x = 10" in labels


def test_a_thinned_path_ends_at_the_last_step_of_its_loss() -> None:
    points = [[10.0 * 0.8**k] for k in range(0, 5001, 5)]  # 1001 points of 5000 steps
    losses = (list(range(0, 5001, 5)), [p[0] ** 2 for p in points])
    fig = charts._path_1d_figure("x^2", {"type": "quadratic"}, points, losses)
    assert any(t.startswith("end, step 5000: x = ") for t in legend_texts(fig.axes[2]))


def test_paths_that_diverged_or_barely_started() -> None:
    rosenbrock = {"type": "rosenbrock"}
    cases = [
        [[-1.5, 2.0]],  # one point
        [[-1.5, 2.0], [1e200, -1e200], [math.nan, math.inf]],  # f overflows out there
        [[0.0, 0.0], [0.0, 0.0]],  # standing still
    ]
    for points in cases:
        png = charts.minimize_path_png("t", rosenbrock, points, losses=([0], [12.5]))
        assert png.startswith(PNG_MAGIC)
    png = charts.minimize_path_png("t", {"type": "quadratic"}, [[math.nan]], losses=([], []))
    assert png.startswith(PNG_MAGIC)


def test_numpy_objectives_match_the_workers() -> None:
    rng = np.random.default_rng(0)
    for kind in ["rosenbrock", "beale", "himmelblau", "booth", "saddle", "quadratic"]:
        spec = minimize(objective={"type": kind}, x0=[0.0, 0.0])
        f = objectives.build(spec.objective, device=torch.device("cpu"))
        g = surfaces.function_2d(spec.objective.model_dump())
        for u, v in rng.uniform(-3, 3, size=(20, 2)):
            expected = f(torch.tensor([u, v], dtype=torch.float64)).item()
            assert g(np.array(u), np.array(v)) == pytest.approx(expected, rel=1e-12)
        for point in surfaces.landmarks(spec.objective.model_dump())[1]:
            if kind != "saddle":
                assert f(torch.tensor(point, dtype=torch.float64)).item() == pytest.approx(
                    0, abs=1e-9
                )


# --- sweeps ---------------------------------------------------------------------------------


def test_override_labels() -> None:
    overrides: list[dict[str, Any]] = [
        {"optimizer": {"type": "sgd", "lr": 0.1}, "batch_size": None},
        {"optimizer": {"type": "adam", "lr": 0.1}, "batch_size": 16},
        {"optimizer": {"type": "momentum", "lr": 0.1, "beta": 0.9}, "batch_size": 1},
        {"optimizer": {"type": "momentum", "lr": 0.1, "beta": 0.5}, "batch_size": 1},
        {"optimizer.lr": 0.001, "penalty": {"l1": 0.5}},
        {},
    ]
    assert charts.override_labels(overrides) == [
        "optimizer=sgd lr=0.1 batch_size=None",
        "optimizer=adam lr=0.1 batch_size=16",
        # beta=0.9 is momentum's default, but it differs between the momentum runs
        "optimizer=momentum lr=0.1 beta=0.9 batch_size=1",
        "optimizer=momentum lr=0.1 beta=0.5 batch_size=1",
        "optimizer.lr=0.001 penalty.l1=0.5",
        "(the base spec)",
    ]


def test_override_labels_hide_defaults_and_cut_long_ones() -> None:
    adam = {"type": "adam", "lr": 0.001, "betas": [0.9, 0.999], "eps": 1e-8, "amsgrad": True}
    model = {"type": "mlp", "hidden": [512, 256, 128, 64, 32], "activation": "tanh"}
    (label,) = charts.override_labels([{"optimizer": adam, "model": model, "seed": 123456789}])
    assert label.startswith("optimizer=adam amsgrad=True model=mlp")
    assert len(label) == charts.LABEL_MAX and label.endswith("…")


def sweep_runs(n: int, spread: float = 1000.0) -> list[dict[str, Any]]:
    return [
        {
            "job_id": f"j{i}",
            "overrides": {"optimizer": {"type": "sgd", "lr": 0.01 * (i + 1)}},
            "steps": list(range(1, 101)),
            "values": decaying(100, spread, 1.0 + i),
        }
        for i in range(n)
    ]


def test_sweep_legend_inside_for_few_runs_outside_for_many() -> None:
    few = charts._sweep_figure("lr sweep", sweep_runs(3), name="loss")
    (ax,) = few.axes
    assert legend_names(ax) == [
        "optimizer=sgd lr=0.01",
        "optimizer=sgd lr=0.02",
        "optimizer=sgd lr=0.03",
    ]
    assert few.get_suptitle() == "lr sweep: loss" and ax.get_ylabel() == "loss"
    assert ax.get_yscale() == "log" and not few.legends
    many = charts._sweep_figure("lr sweep", sweep_runs(9), name="loss")
    many.canvas.draw()  # lays it out
    assert many.axes[0].get_legend() is None and len(many.legends[0].get_texts()) == 9
    legend, axes = many.legends[0].get_window_extent(), many.axes[0].get_window_extent()
    assert legend.x0 >= axes.x1  # to the right of the plot
    flat = charts._sweep_figure("t", sweep_runs(2, spread=3.0), name="val_loss")
    assert flat.axes[0].get_yscale() == "linear"


def test_sweep_of_runs_10_to_10000_steps_long_gets_a_log_step_axis() -> None:
    runs = [
        {"job_id": str(n), "overrides": {"batch_size": b}, "steps": list(range(1, n + 1)),
         "values": decaying(n, 10.0, 0.01)}
        for n, b in [(10, None), (10_000, 1), (100, 100)]
    ]  # fmt: skip
    fig = charts._sweep_figure("batch sizes", runs, name="loss")
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    # the short run's marked points are drawn over the long run's noise
    assert ax.get_lines()[0].get_zorder() > ax.get_lines()[1].get_zorder()
    same = charts._sweep_figure("lr sweep", sweep_runs(3), name="loss")
    assert same.axes[0].get_xscale() == "linear"
    # a minimize sweep starts at step 0: no log axis for it
    from_zero = [run | {"steps": [0, *run["steps"][1:]]} for run in runs]
    assert charts._sweep_figure("s", from_zero, name="loss").axes[0].get_xscale() == "linear"


def test_sweep_plot_of_the_gap_to_the_best(client: TestClient, worker: Worker) -> None:
    grid = {"optimizer": [{"type": "sgd", "lr": 0.01}, {"type": "adam", "lr": 0.05}]}
    sweep = client.post("/sweeps", json={"base": fit_spec(), "grid": grid}).json()
    while worker.run_one():
        pass
    response = client.get(f"/sweeps/{sweep['id']}/plot.png", params={"gap": "true"})
    assert response.status_code == 200 and response.content.startswith(PNG_MAGIC)
    assert client.get(f"/sweeps/{sweep['id']}/plot.png?gap=perhaps").status_code == 422


def test_gaps_to_the_best_value_of_any_run() -> None:
    runs = [
        {"job_id": "a", "overrides": {}, "steps": [1, 2, 3, 4], "values": [5.0, 2.0, 1.5, 1.5]},
        {"job_id": "b", "overrides": {}, "steps": [1, 2, 3], "values": [4.0, None, 1.5001]},
    ]
    gapped, best = charts.gaps(runs)
    assert best == 1.5
    assert gapped[0]["steps"] == [1, 2] and gapped[0]["values"] == [3.5, 0.5]  # 0 dropped
    assert gapped[1]["steps"] == [1, 2, 3] and gapped[1]["values"][:2] == [2.5, None]
    assert gapped[1]["values"][2] == pytest.approx(1e-4)
    fig = charts._sweep_figure("lasso", gapped, name="loss − best (1.5)")
    assert fig.axes[0].get_yscale() == "log"
    assert charts.gaps([]) == ([], 0.0)


def test_sweep_png_and_no_points() -> None:
    assert charts.sweep_curves_png("s", sweep_runs(12), name="loss").startswith(PNG_MAGIC)
    empty = charts._sweep_figure(
        "s", [{"job_id": "a", "overrides": {}, "steps": [], "values": []}], name="loss"
    )
    assert [t.get_text() for t in empty.axes[0].texts] == ["no points yet"]


# --- no overlapping text ------------------------------------------------------------------


def text_boxes(fig: Figure) -> list[tuple[str, Bbox]]:
    """Every piece of text a reader sees, and each legend's frame, in pixels."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    found: list[tuple[str, Bbox]] = []

    def add(kind: str, text: Text | None) -> None:
        if text is not None and text.get_visible() and text.get_text():
            found.append((f"{kind} {text.get_text()!r}", text.get_window_extent(renderer)))

    add("suptitle", getattr(fig, "_suptitle", None))
    for i, ax in enumerate(fig.axes):
        add(f"axes {i} title", ax.title)
        add(f"axes {i} xlabel", ax.xaxis.label)
        add(f"axes {i} ylabel", ax.yaxis.label)
        for axis in (ax.xaxis, ax.yaxis):
            for tick in drawn_ticks(axis):
                add(f"axes {i} tick", tick.label1)
                add(f"axes {i} tick", tick.label2)
        if (legend := ax.get_legend()) is not None:
            found.append((f"axes {i} legend", legend.get_window_extent(renderer)))
    for legend in fig.legends:
        found.append(("figure legend", legend.get_window_extent(renderer)))
    return found


def drawn_ticks(axis: Axis) -> list[Tick]:
    """The ticks inside the view: an axis keeps labels for ticks just outside it, undrawn."""
    low, high = sorted(axis.get_view_interval())
    slack = (high - low) * 1e-9
    ticks = [
        *axis.get_major_ticks(len(axis.get_majorticklocs())),
        *axis.get_minor_ticks(len(axis.get_minorticklocs())),
    ]
    return [t for t in ticks if low - slack <= t.get_loc() <= high + slack]


def overlaps(fig: Figure) -> list[str]:
    boxes = text_boxes(fig)
    clash = []
    for (a, box_a), (b, box_b) in itertools.combinations(boxes, 2):
        # a pixel of antialiasing either side is not an overlap
        if box_a.padded(-1).overlaps(box_b.padded(-1)):
            clash.append(f"{a} overlaps {b}")
    return clash


def figure_for(case: str) -> Figure:
    """Each kind of picture, with long text where a user may type it."""
    if case == "curves":
        full = curves(
            loss=decaying(2000, 200, 0.01),
            train_loss=decaying(20, 100, 0.02),
            val_loss=decaying(20, 120, 0.03),
            accuracy=list(np.linspace(0.1, 0.99, 20)),
            val_accuracy=list(np.linspace(0.1, 0.95, 20)),
            lr=decaying(20, 0.1, 1e-4),
        )
        name = "a rather long job name that someone typed in to describe the experiment"
        return charts._curves_figure(f"{name} (job 0123456789abcdef)", full, status="running")
    if case == "queued":
        return charts._curves_figure("job 0123456789abcdef", {}, status="queued")
    if case in ("rosenbrock", "saddle"):
        objective = {"type": case}
        points = path_of(objective, [-1.5, 2.0] if case == "rosenbrock" else [2.0, 0.01])
        losses = losses_of(objective, points)
        return charts._path_2d_figure("job x\nadam lr=0.05", objective, points, losses)
    if case == "parabola":
        points = [[10.0 * (-0.7) ** k] for k in range(21)]
        losses = (list(range(21)), [p[0] ** 2 for p in points])
        return charts._path_1d_figure("x^2", {"type": "quadratic", "scales": [1.0]}, points, losses)
    if case in ("long fit", "long minimize"):
        fit = case == "long fit"
        spec = fit_spec(name=LONG_NAME) if fit else minimize_spec(name=LONG_NAME)
        series = curves(loss=decaying(100, 10, 0.1))
        path = [] if fit else path_of(spec["objective"], spec["x0"])
        return charts._job_figure(
            "0123456789abcdef", LONG_NAME, "failed", spec, series, path, "diverged"
        )
    return charts._sweep_figure(LONG_NAME, sweep_runs(int(case[len("sweep") :])), name="loss")


@pytest.mark.parametrize(
    "case",
    [
        "curves",
        "queued",
        "rosenbrock",
        "saddle",
        "parabola",
        "long fit",
        "long minimize",
        "sweep3",
        "sweep12",
    ],
)
def test_no_text_overlaps(case: str) -> None:
    fig = figure_for(case)
    assert overlaps(fig) == []
    # and nothing spills off the canvas
    width, height = fig.canvas.get_width_height()
    for name, box in text_boxes(fig):
        assert box.x0 >= -1 and box.y0 >= -1 and box.x1 <= width + 1 and box.y1 <= height + 1, name


def test_a_long_name_is_cut_in_the_title() -> None:
    assert len(LONG_NAME) == 200
    fig = figure_for("long fit")
    title = fig.get_suptitle()
    assert title.startswith(LONG_NAME[: charts.TITLE_MAX - 1] + "… (job 0123456789abcdef)")
    assert ": failed (diverged)\nlinear · linear data · sgd lr=0.01 · batch 16 · 3 epochs" in title


def test_pictures_drawn_at_once_from_many_threads() -> None:
    series = curves(loss=decaying(50, 10, 0.1), val_loss=[1.0, 0.5, 0.2])
    with ThreadPoolExecutor(max_workers=8) as pool:
        pngs = list(
            pool.map(
                lambda i: charts.job_curves_png(f"job {i}", series, status="running"), range(8)
            )
        )
    assert all(png.startswith(PNG_MAGIC) for png in pngs)
    assert len({png for png in pngs}) == 8  # each its own title


def test_the_overlap_check_sees_an_overlap() -> None:
    fig = charts._curves_figure("t", curves(loss=[1.0, 0.5]), status="running")
    fig.axes[0].legend(loc="upper center", bbox_to_anchor=(0.5, 1.08))  # onto the title area
    fig.axes[0].set_title("a title right where the legend is")
    assert any("legend" in clash and "title" in clash for clash in overlaps(fig))
    crowded = charts._curves_figure("t", curves(loss=[1.0, 0.5]), status="running")
    crowded.axes[0].set_xticks(np.linspace(1, 2, 40))  # forty labels side by side
    assert any(clash.count("tick") == 2 for clash in overlaps(crowded))
