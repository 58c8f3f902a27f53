"""Pictures of jobs and sweeps as PNG bytes: pure functions of the data, no HTTP, no SQL.

Figures are built on matplotlib's object API (a `Figure` on its own Agg canvas), never pyplot,
so no figure is shared. Matplotlib's font and text caches are shared all the same, and its
documentation asks threaded programs to serialise drawing; the API draws from a threadpool,
so one lock does. Each `_..._figure` builder is separately callable, for tests.
"""

from __future__ import annotations

import io
import json
import math
import threading
import typing
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import LogNorm, Normalize, PowerNorm
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from pydantic import BaseModel

from service import spec as specs
from service.plots import surfaces

#: a job's curves by name: steps and values (None where a value was not finite)
Series = Mapping[str, tuple[Sequence[int], Sequence[float | None]]]

#: inches, and dots per inch: 8 x 5 at 110 dpi is 880 x 550 pixels
SIZE = (8.0, 5.0)
DPI = 110
#: all-positive values spanning more than this ratio (max / min) get a log axis
LOG_RATIO = 100.0
#: the most markers one line carries; a longer series is marked every k-th point
MAX_MARKERS = 60
#: sweeps with more runs than this get their legend outside the plot, on the right
LEGEND_INSIDE_MAX = 4
#: a legend label, or a job's name in a title, longer than this is cut, with an ellipsis
LABEL_MAX = 48
TITLE_MAX = 60
#: grid points along each side of a contour plot, and its number of contour levels
GRID = 240
LEVELS = 20

_LOCK = threading.Lock()

#: how each series a job records is drawn: the per-step loss as a plain line, the per-epoch
#: series as markers joined by lines, in the same colours on the loss and accuracy panels
_STYLES: dict[str, dict[str, Any]] = {
    "loss": {"color": "tab:blue", "linewidth": 0.9, "alpha": 0.75},
    "train_loss": {"color": "tab:orange", "marker": "o", "linewidth": 1.8, "zorder": 3},
    "val_loss": {"color": "tab:green", "marker": "s", "linewidth": 1.8, "zorder": 3},
    "accuracy": {"color": "tab:orange", "marker": "o", "linewidth": 1.8},
    "val_accuracy": {"color": "tab:green", "marker": "s", "linewidth": 1.8},
    "lr": {"color": "tab:gray", "drawstyle": "steps-post"},
}
#: the panel each series goes on (the rest go on the loss panel), top to bottom
_PANELS = {"accuracy": "accuracy", "val_accuracy": "accuracy", "lr": "lr"}
#: inches: a loss panel alone makes an 8 x 5 inch plot, with its legend beside it
_PANEL_HEIGHTS = {"loss": 3.6, "accuracy": 1.8, "lr": 1.0}
#: the marks on a minimize job's path: the known minima under the end, so a path that reached
#: one shows both
_LANDMARK: dict[str, Any] = dict(ls="none", marker="*", ms=18, color="gold", mec="black", zorder=4)
_START: dict[str, Any] = dict(ls="none", marker="o", ms=10, mfc="white", mec="black", zorder=5)
_END: dict[str, Any] = dict(ls="none", marker="X", ms=9, color="tab:red", mec="white", zorder=6)
#: a note written across an empty plot
_NOTE: dict[str, Any] = dict(ha="center", va="center", fontsize="x-large", color="0.4")


# --- the pictures -------------------------------------------------------------------------


def job_png(
    *,
    job_id: str,
    name: str | None,
    status: str,
    spec: Mapping[str, Any],
    series: Series,
    path: Sequence[Sequence[float]],
    error_type: str | None = None,
) -> bytes:
    """`GET /jobs/{id}/plot.png`: a minimize job's path when it has 1 or 2 dimensions and has
    started; otherwise the loss curves. The title names the job and sums up its spec."""
    with _LOCK:
        return _png(_job_figure(job_id, name, status, spec, series, path, error_type))


def job_curves_png(title: str, series: Series, *, status: str) -> bytes:
    """A job's curves: the loss, accuracies and a varying learning rate, each on a panel."""
    with _LOCK:
        return _png(_curves_figure(title, series, status=status))


def minimize_path_png(
    title: str,
    objective: Mapping[str, Any],
    points: Sequence[Sequence[float]],
    *,
    losses: tuple[Sequence[int], Sequence[float | None]],
    status: str | None = None,
) -> bytes:
    """A minimize job's path: on the contours of a 2-D objective, on the curve of a 1-D one;
    beside it f(x_k) against k. An n-D path has no picture: the loss curve stands in."""
    with _LOCK:
        return _png(_minimize_figure(_heading(title, status), objective, points, losses))


def sweep_curves_png(title: str, runs: Sequence[Mapping[str, Any]], *, name: str) -> bytes:
    """Every run of a sweep on one axis, labelled by its overrides (`GET /sweeps/{id}/curves`'
    runs: `{"job_id", "overrides", "steps", "values"}`)."""
    with _LOCK:
        return _png(_sweep_figure(title, runs, name=name))


def _job_figure(
    job_id: str,
    name: str | None,
    status: str,
    spec: Mapping[str, Any],
    series: Series,
    path: Sequence[Sequence[float]],
    error_type: str | None,
) -> Figure:
    title = f"{_cut(name, TITLE_MAX)} (job {job_id})" if name else f"job {job_id}"
    title += "\n" + _cut(_summary(spec), 2 * TITLE_MAX)
    status = f"{status} ({error_type})" if error_type else status
    if spec.get("task") == "minimize" and path and len(path[0]) in (1, 2):
        loss = series.get("loss", ([], []))
        return _minimize_figure(_heading(title, status), spec["objective"], path, loss)
    return _curves_figure(title, series, status=status)


def _minimize_figure(
    heading: str,
    objective: Mapping[str, Any],
    points: Sequence[Sequence[float]],
    losses: tuple[Sequence[int], Sequence[float | None]],
) -> Figure:
    if points and len(points[0]) == 2:
        return _path_2d_figure(heading, objective, points, losses)
    if points and len(points[0]) == 1:
        return _path_1d_figure(heading, objective, points, losses)
    return _curves_figure(heading, {"loss": losses}, status=None)


# --- job curves ---------------------------------------------------------------------------


def _curves_figure(title: str, series: Series, *, status: str | None) -> Figure:
    panels = _panels(series)
    if not panels:
        return _empty_figure(_heading(title, status), "loss")
    heights = [_PANEL_HEIGHTS[p] for p in panels]
    fig = _figure((SIZE[0] + 1.8, 1.4 + sum(heights)))
    axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False, height_ratios=heights)[:, 0]
    for ax, (panel, names) in zip(axes, panels.items(), strict=True):
        for name in names:
            steps, values = series[name]
            _plot_series(ax, name, steps, values)
        _finish_panel(ax, panel, [_values(series[n][1]) for n in names])
    axes[-1].set_xlabel("step")
    fig.suptitle(_heading(title, status))
    return fig


def _panels(series: Series) -> dict[str, list[str]]:
    """The panels to draw and their series; lr only when it changes, empty series nowhere."""
    panels: dict[str, list[str]] = {"loss": [], "accuracy": [], "lr": []}
    for name, (_, values) in series.items():
        finite = _values(values)
        finite = finite[np.isfinite(finite)]
        if finite.size == 0 or (name == "lr" and finite.min() == finite.max()):
            continue
        panels[_PANELS.get(name, "loss")].append(name)
    return {panel: names for panel, names in panels.items() if names}


def _plot_series(ax: Axes, name: str, steps: Sequence[int], values: Sequence[float | None]) -> None:
    style = dict(_STYLES.get(name, {"marker": "D"}))
    y = _values(values)
    if "marker" in style:
        style.update(markersize=4 if len(y) <= MAX_MARKERS else 2, markevery=_every(len(y)))
    kind = "per step" if name == "loss" else "per epoch"
    ax.plot(steps, y, label=f"{name}\n{kind}, last {_last(y)}", **style)


def _finish_panel(ax: Axes, panel: str, arrays: list[np.ndarray]) -> None:
    ax.set_ylabel(panel)
    if _wants_log(arrays):
        ax.set_yscale("log")
    ax.grid(True, which="major", alpha=0.3)
    # beside the panel, not on it: a noisy per-step loss leaves no free corner
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0, fontsize="small")


# --- minimize paths -----------------------------------------------------------------------


def _path_2d_figure(
    heading: str,
    objective: Mapping[str, Any],
    points: Sequence[Sequence[float]],
    losses: tuple[Sequence[int], Sequence[float | None]],
) -> Figure:
    fig, ax, ax_f, ax_key = _path_layout(heading)
    path = _finite_rows(points, 2)
    label, marks = surfaces.landmarks(objective)
    x, y = _window(np.vstack([path, marks]) if len(path) else np.array(marks))
    _contours(fig, ax, objective, x, y)
    every = _every(len(path))
    ax.plot(*path.T, color="tab:red", lw=1.2, marker="o", ms=3, markevery=every, label="path")
    where = f" {_point(marks[0])}" if len(marks) == 1 else ""
    ax.plot(*np.array(marks).T, **_LANDMARK, label=label + where)
    _mark_ends(ax, path, 2, _last_step(points, path, losses))
    ax.set(xlim=(x[0], x[-1]), ylim=(y[0], y[-1]), xlabel="x", ylabel="y", aspect="equal")
    ax.set_title(f"the path over the contours of f = {objective['type']}", fontsize="medium")
    _loss_panel(ax_f, losses)
    _key(ax_key, ax)
    return fig


def _path_1d_figure(
    heading: str,
    objective: Mapping[str, Any],
    points: Sequence[Sequence[float]],
    losses: tuple[Sequence[int], Sequence[float | None]],
) -> Figure:
    fig, ax, ax_f, ax_key = _path_layout(heading)
    f = surfaces.quadratic_1d(objective)
    xs = _finite_rows(points, 1)[:, 0]
    half = 1.15 * float(np.max(np.abs(xs))) if xs.size and np.any(xs) else 1.0
    grid = np.linspace(-half, half, 400)
    ax.plot(grid, f(grid), color="tab:blue", lw=1.5, label="f(x)")
    ax.plot(xs, f(xs), color="0.3", lw=0.6, alpha=0.8)  # the order the points came in
    label = "x_k, coloured by step k"
    dots = ax.scatter(xs, f(xs), c=np.arange(len(xs)), cmap="plasma", s=22, zorder=3, label=label)
    bar = fig.colorbar(dots, ax=ax, label="step k", pad=0.02, shrink=0.9)
    bar.locator = MaxNLocator(integer=True)
    _mark_ends(ax, np.column_stack([xs, f(xs)]), 1, _last_step(points, xs, losses))
    ax.set(xlabel="x", ylabel="f(x)")
    ax.set_title(f"the path on f = {objective['type']}", fontsize="medium")
    ax.grid(True, alpha=0.3)
    _loss_panel(ax_f, losses)
    _key(ax_key, ax)
    return fig


def _path_layout(heading: str) -> tuple[Figure, Axes, Axes, Axes]:
    """The path on the left; on the right f(x_k) over the key (the path's legend)."""
    fig = _figure((10.0, 5.6))
    grid = fig.add_gridspec(2, 2, width_ratios=[1.6, 1.0], height_ratios=[1.2, 1.0])
    ax = fig.add_subplot(grid[:, 0])
    ax_f = fig.add_subplot(grid[0, 1])
    ax_key = fig.add_subplot(grid[1, 1])
    ax_key.axis("off")
    fig.suptitle(heading)
    return fig, ax, ax_f, ax_key


def _contours(
    fig: Figure, ax: Axes, objective: Mapping[str, Any], x: np.ndarray, y: np.ndarray
) -> None:
    u, v = np.meshgrid(x, y)
    with np.errstate(all="ignore"):
        z = surfaces.function_2d(objective)(u, v)
    z = np.where(np.isfinite(z), z, np.nan)
    if np.isnan(z).all():  # a window out where f overflows: no contours to draw
        return
    levels, norm, ticks = _levels(objective["type"], z)
    z = np.clip(z, levels[0], levels[-1])
    filled = ax.contourf(u, v, z, levels=levels, norm=norm, cmap="viridis")
    ax.contour(u, v, z, levels=levels, norm=norm, colors="white", linewidths=0.3, alpha=0.45)
    label = "f(x, y)" + (", log scale" if isinstance(norm, LogNorm) else "")
    bar = fig.colorbar(filled, ax=ax, label=label, ticks=ticks, pad=0.02, shrink=0.9)
    bar.minorticks_off()


def _levels(kind: str, z: np.ndarray) -> tuple[np.ndarray, Normalize | None, np.ndarray]:
    """Contour levels, their colour scale and the colour bar's ticks, for values `z`.

    Steep objectives get log-spaced levels; other non-negative ones levels even in sqrt(f),
    which for a quadratic bowl are evenly spaced rings, so the rings near the minimum show;
    the rest (a saddle) plain, evenly spaced levels.
    """
    low, top = float(np.nanmin(z)), float(np.nanmax(z))
    top = max(top, low + 1e-12)
    if low >= 0 and kind in surfaces.STEEP:
        low = max(low, top * 1e-6, 1e-300)
        levels = np.geomspace(low, max(top, low * 10), LEVELS)
        decades = 10.0 ** np.arange(math.ceil(math.log10(low)), math.floor(math.log10(top)) + 1)
        return levels, LogNorm(levels[0], levels[-1]), decades
    if low >= 0:
        levels = np.linspace(math.sqrt(low), math.sqrt(top), LEVELS) ** 2
        ticks = _nice(math.sqrt(low), math.sqrt(top), 6) ** 2  # evenly spaced on the bar
        return levels, PowerNorm(0.5, levels[0], levels[-1]), ticks
    levels = np.asarray(MaxNLocator(LEVELS).tick_values(low, top))
    return levels, None, _nice(low, top, 8)


def _nice(low: float, top: float, n: int) -> np.ndarray:
    ticks = np.asarray(MaxNLocator(n).tick_values(low, top))
    return ticks[(ticks >= low) & (ticks <= top)]


def _mark_ends(ax: Axes, path: np.ndarray, dims: int, last_step: int | None) -> None:
    """The path's first point and its last, each a marker in the legend with its x. A long
    path comes thinned, so its last step is the loss curve's (`last_step`), not its length."""
    if len(path) == 0:
        return
    first, last = path[0], path[-1]
    step = len(path) - 1 if last_step is None else last_step
    ax.plot(*first, **_START, label=f"start: x = {_point(first[:dims])}")
    ax.plot(*last, **_END, label=f"end, step {step}: x = {_point(last[:dims])}")


def _last_step(
    points: Sequence[Sequence[float]], path: np.ndarray, losses: tuple[Sequence[int], Any]
) -> int | None:
    """The step of the path's last point: the loss curve's last, unless points were dropped."""
    return losses[0][-1] if losses[0] and len(path) == len(points) else None


def _loss_panel(ax: Axes, losses: tuple[Sequence[int], Sequence[float | None]]) -> None:
    steps, values = losses
    y = _values(values)
    ax.plot(steps, y, color="tab:blue", marker="o", markersize=3, markevery=_every(len(y)))
    if _wants_log([y]):
        ax.set_yscale("log")
    ax.set(xlabel="step k", ylabel="f(xₖ)")
    ax.set_title(f"f along the path (last {_last(y)})", fontsize="medium")
    ax.grid(True, alpha=0.3)


def _key(ax_key: Axes, ax: Axes) -> None:
    handles, labels = ax.get_legend_handles_labels()
    ax_key.legend(handles, labels, loc="center", fontsize="small", frameon=False)


def _window(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A square grid over the points, padded: drawn with equal axes, a bowl's true shape shows,
    and so do the contours on both sides of a straight path."""
    low, high = points.min(axis=0), points.max(axis=0)
    centre = (low + high) / 2
    span = float(np.max(high - low))
    if span < 1e-9:  # one point: a window its size, or 1 wide about the origin
        span = max(1.0, 0.5 * float(np.max(np.abs(centre))))
    half = 0.6 * span
    return (
        np.linspace(centre[0] - half, centre[0] + half, GRID),
        np.linspace(centre[1] - half, centre[1] + half, GRID),
    )


def _objective(objective: Mapping[str, Any]) -> str:
    """`rosenbrock (a=1, b=100)`: the objective and its parameters."""
    params = [f"{k}={_fmt(v)}" for k, v in objective.items() if k != "type" and v is not None]
    return objective["type"] + (f" ({', '.join(params)})" if params else "")


def _summary(spec: Mapping[str, Any]) -> str:
    """One line of what a job runs: `mlp [32] relu · digits · adam lr=0.01 · batch 64 · ...`."""
    optimizer = spec.get("optimizer") or {}
    # lr shown even at its default: a reader compares runs by it
    parts = [_override("optimizer", optimizer, {("optimizer", "lr")}).partition("=")[2]]
    if spec.get("task") == "minimize":
        objective = _objective(spec.get("objective") or {"type": "?"})
        return " · ".join([objective, *parts, f"{spec.get('steps')} steps"])
    model, data = spec.get("model") or {}, spec.get("data") or {}
    head = [model.get("type", "?"), *([str(model["hidden"])] if "hidden" in model else [])]
    batch = spec.get("batch_size")
    tail = [f"batch {batch if batch is not None else 'all'}", f"{spec.get('epochs')} epochs"]
    if spec.get("schedule"):
        tail.append(f"{spec['schedule'].get('type')} schedule")
    return " · ".join([" ".join(head), f"{data.get('type', '?')} data", *parts, *tail])


# --- sweeps -------------------------------------------------------------------------------


def _sweep_figure(title: str, runs: Sequence[Mapping[str, Any]], *, name: str) -> Figure:
    arrays = [_values(run["values"]) for run in runs]
    if not any(np.isfinite(a).any() for a in arrays):
        return _empty_figure(title, name)
    labels = override_labels([run.get("overrides") or {} for run in runs])
    steps = [run["steps"] for run in runs]
    min_step = min((s[0] for s in steps if s), default=0)
    outside = len(runs) > LEGEND_INSIDE_MAX
    # an outside legend widens the figure by about its own width, so the plot keeps its size
    extra = min(4.5, 0.6 + 0.068 * max(map(len, labels))) if outside else 0.0
    fig = _figure((SIZE[0] + extra, SIZE[1]))
    ax = fig.add_subplot()
    for i, (run, y, label) in enumerate(zip(runs, arrays, labels, strict=True)):
        style: dict[str, Any] = {"color": f"C{i % 10}", "ls": ["-", "--", ":", "-."][i // 10 % 4]}
        if len(y) <= 30:  # a per-epoch series: few points, each marked, over the long ones
            style.update(marker="o", markersize=3, zorder=3)
        ax.plot(run["steps"], y, label=label, **style)
    if _wants_log(arrays):
        ax.set_yscale("log")
    if _wants_log([np.array([s[-1] for s in steps if s], dtype=float)]) and min_step >= 1:
        ax.set_xscale("log")  # 10 steps beside 10,000 (batch sizes): each its own decade
    ax.set(xlabel="step", ylabel=name)
    fig.suptitle(f"{_cut(title, TITLE_MAX)}: {name}")
    ax.grid(True, alpha=0.3)
    where = {"loc": "outside right upper"} if outside else {"loc": "best", "framealpha": 0.85}
    (fig if outside else ax).legend(fontsize="small", title="overrides", **where)
    return fig


def gaps(runs: Sequence[Mapping[str, Any]]) -> tuple[list[dict[str, Any]], float]:
    """The runs with each value less the smallest value of any run, that smallest value:
    `f - f*` where every run reaches one optimum (the lasso's solvers), for a log axis. The
    best point itself, now 0, is dropped from its run."""
    arrays = [_values(run["values"]) for run in runs]
    best = min((float(np.nanmin(a)) for a in arrays if np.isfinite(a).any()), default=0.0)
    out = []
    for run, y in zip(runs, arrays, strict=True):
        keep = ~(y - best <= 0)  # NaN stays, a gap in the line
        steps = [s for s, k in zip(run["steps"], keep, strict=True) if k]
        values = [None if math.isnan(v) else v for v in (y - best)[keep].tolist()]
        out.append({**run, "steps": steps, "values": values})
    return out, best


def override_labels(overrides: Sequence[Mapping[str, Any]]) -> list[str]:
    """Short labels for a sweep's runs: `optimizer=adam lr=0.1 batch_size=None`.

    A whole object (an optimizer) shows its `type` and those of its numbers and flags that
    are not the default or that differ between runs, so no two different runs read the same.
    """
    varying = _varying_fields(overrides)
    labels = []
    for run in overrides:
        parts = [_override(path, value, varying) for path, value in run.items()]
        label = " ".join(p for p in parts if p) or "(the base spec)"
        labels.append(_cut(label, LABEL_MAX))
    return labels


def _override(path: str, value: Any, varying: set[tuple[str, str]]) -> str:
    if not isinstance(value, Mapping):
        return f"{path}={_fmt(value)}"
    defaults = _defaults(path, value.get("type"))
    shown = [
        f"{key}={_fmt(v)}"
        for key, v in value.items()
        if key != "type"
        and _is_number_like(v)
        and ((path, key) in varying or key not in defaults or defaults[key] != v)
    ]
    head = f"{path}={value['type']}" if "type" in value else ""
    if not head:
        shown = [f"{path}.{s}" for s in shown]
    return " ".join([head, *shown]).strip()


def _varying_fields(overrides: Sequence[Mapping[str, Any]]) -> set[tuple[str, str]]:
    """(path, field) of the objects' fields that differ between runs of one object type."""
    seen: dict[tuple[str, str, str], set[str]] = {}
    for run in overrides:
        for path, value in run.items():
            if isinstance(value, Mapping):
                for key, field in value.items():
                    where = (path, str(value.get("type")), key)
                    seen.setdefault(where, set()).add(json.dumps(field, sort_keys=True))
    return {(path, key) for (path, _, key), values in seen.items() if len(values) > 1}


def _members(union: Any) -> tuple[type[BaseModel], ...]:
    """The models of an `Annotated[A | B | ..., Field(discriminator=...)]` union."""
    return typing.get_args(typing.get_args(union)[0])


#: the spec's objects a sweep may override whole, by the field that holds them
_OBJECTS: dict[str, tuple[type[BaseModel], ...]] = {
    "model": _members(specs.ModelSpec),
    "data": _members(specs.DataSpec),
    "optimizer": _members(specs.OptimizerSpec),
    "schedule": _members(specs.ScheduleSpec),
    "objective": _members(specs.ObjectiveSpec),
    "penalty": (specs.Penalty,),
}


def _defaults(path: str, kind: Any) -> dict[str, Any]:
    """The defaults of the spec object at `path` of type `kind` (empty when unknown)."""
    for cls in _OBJECTS.get(path.rsplit(".", 1)[-1], ()):
        fields = cls.model_fields
        if "type" not in fields or fields["type"].default == kind:
            return {k: _plain(f.default) for k, f in fields.items() if not f.is_required()}
    return {}


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _is_number_like(value: Any) -> bool:
    if isinstance(value, (list, tuple)):
        return 0 < len(value) <= 4 and all(_is_number_like(v) for v in value)
    return isinstance(value, (int, float, bool))


def _fmt(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        shown = [_fmt(v) for v in value[:4]] + (["…"] if len(value) > 4 else [])
        return "[" + ",".join(shown) + "]"
    if isinstance(value, Mapping):
        return str(value.get("type", "{…}"))
    return str(value)


# --- small helpers ------------------------------------------------------------------------


def _figure(size: tuple[float, float]) -> Figure:
    fig = Figure(figsize=size, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def _empty_figure(heading: str, ylabel: str) -> Figure:
    fig = _figure(SIZE)
    ax = fig.add_subplot()
    ax.text(0.5, 0.5, "no points yet", transform=ax.transAxes, **_NOTE)
    ax.set(xlabel="step", ylabel=ylabel, xticks=[], yticks=[])
    fig.suptitle(heading)
    return fig


def _cut(text: str, most: int) -> str:
    return text if len(text) <= most else text[: most - 1] + "…"


def _heading(title: str, status: str | None) -> str:
    """The title with the status after its first line."""
    first, newline, rest = title.partition("\n")
    return f"{first}: {status}{newline}{rest}" if status else title


def _values(values: Sequence[float | None]) -> np.ndarray:
    """Floats, NaN for a missing or non-finite value (a gap in the line)."""
    y = np.array([math.nan if v is None else v for v in values], dtype=float)
    return np.where(np.isfinite(y), y, np.nan)


def _wants_log(arrays: Sequence[np.ndarray]) -> bool:
    """All values positive, spanning more than LOG_RATIO."""
    finite = np.concatenate([a[np.isfinite(a)] for a in arrays]) if arrays else np.array([])
    if finite.size == 0 or finite.min() <= 0:
        return False
    return bool(finite.max() / finite.min() > LOG_RATIO)


def _every(n: int) -> int:
    return max(1, math.ceil(n / MAX_MARKERS))


def _last(y: np.ndarray) -> str:
    finite = y[np.isfinite(y)]
    return f"{finite[-1]:.4g}" if finite.size else "none"


def _point(p: Sequence[float] | np.ndarray) -> str:
    """`(1, 0.5)`; one coordinate alone without brackets."""
    coords = [f"{float(c):.3g}" for c in p]
    return coords[0] if len(coords) == 1 else "(" + ", ".join(coords) + ")"


def _finite_rows(points: Sequence[Sequence[float]], dims: int) -> np.ndarray:
    """The path as an (n, dims) array, without the points a diverging job left non-finite."""
    rows = np.array([[math.nan if c is None else c for c in p] for p in points], dtype=float)
    rows = rows.reshape(-1, dims)
    return rows[np.all(np.isfinite(rows), axis=1)]
