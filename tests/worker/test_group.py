"""Vectorised groups against the ground truth: each run trained alone by `train`.

Every run of a `train_many` group must record what `train` records for its spec, step for
step: the loss curve, the per-epoch metrics and learning rates, the trajectory, the final
parameters and the result. float64 keeps the comparisons tight (to 1e-9 where the only
difference is the order of floating-point sums); float32 is checked to 1e-5 over long runs at
high rates, and on the CPU the float32 parameters are checked bit for bit.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch

from service.spec import FitSpec, MinimizeSpec
from worker.training import group_data
from worker.training.errors import Diverged, Interrupted, TimedOut
from worker.training.fit import train
from worker.training.group import group_key, train_many
from worker.training.recorder import Chunk, MemoryRecorder
from worker.training.skeleton import RunOptions, RunResult

# --- helpers ---------------------------------------------------------------------------------

#: a small MLP on synthetic classes: mini-batches, a short last batch, shuffling, held-out rows
BASE: dict[str, Any] = {
    "model": {"type": "mlp", "hidden": [8], "activation": "tanh"},
    "data": {"type": "classification", "kind": "blobs", "n_samples": 90, "n_features": 3},
    "optimizer": {"type": "sgd", "lr": 0.1},
    "batch_size": 16,
    "epochs": 3,
    "validation_split": 0.2,
    "dtype": "float64",
    "device": "cpu",
}


def _spec(**overrides: Any) -> FitSpec:
    return FitSpec.model_validate({**BASE, **overrides})


def _alone(spec: FitSpec, **options: Any) -> tuple[dict[str, Any] | Exception, MemoryRecorder]:
    recorder = MemoryRecorder()
    try:
        result: dict[str, Any] | Exception = train(
            spec, recorder, options=RunOptions(**options)
        ).as_dict()
    except (Diverged, Interrupted, TimedOut) as exc:
        result = exc
    return result, recorder


def _together(
    specs: list[FitSpec], **options: Any
) -> tuple[list[dict[str, Any] | Exception], list[MemoryRecorder]]:
    recorders = [MemoryRecorder() for _ in specs]
    outcomes = train_many(specs, recorders, device="cpu", options=RunOptions(**options))
    return _stored(outcomes), recorders


def _stored(outcomes: list[RunResult | Exception]) -> list[dict[str, Any] | Exception]:
    """Each outcome as the job stores it: a result as its JSON, an exception as itself."""
    return [o.as_dict() if isinstance(o, RunResult) else o for o in outcomes]


def _assert_same_run(
    together: MemoryRecorder,
    alone: MemoryRecorder,
    outcome: dict[str, Any] | Exception,
    expected: dict[str, Any] | Exception,
    *,
    rtol: float = 1e-9,
) -> None:
    """Same series at the same steps, values to `rtol`; same trajectory, parameters, result."""
    assert sorted(together.series) == sorted(alone.series)
    for name, (steps, values) in alone.series.items():
        got_steps, got_values = together.series[name]
        assert got_steps == steps, name
        assert [v is None for v in got_values] == [v is None for v in values], name
        a = np.array([np.nan if v is None else v for v in got_values], dtype=np.float64)
        b = np.array([np.nan if v is None else v for v in values], dtype=np.float64)
        np.testing.assert_allclose(a, b, rtol=rtol, atol=1e-12, equal_nan=True, err_msg=name)
    assert [s for s, _ in together.trajectory] == [s for s, _ in alone.trajectory]
    for (_, p), (_, q) in zip(together.trajectory, alone.trajectory, strict=True):
        _assert_close_parameters(np.array(p), np.array(q), rtol)
    # saved at the end, or when a run that ends early happened to be due a save
    assert (together.parameters is None) == (alone.parameters is None)
    if alone.parameters is not None and together.parameters is not None:
        assert sorted(together.parameters) == sorted(alone.parameters)
        for name, value in alone.parameters.items():
            _assert_close_parameters(np.array(together.parameters[name]), np.array(value), rtol)
    if isinstance(expected, Exception):
        assert type(outcome) is type(expected)
        assert isinstance(outcome, Exception)
        assert str(outcome).startswith(str(expected)), (outcome, expected)
        return
    assert isinstance(outcome, dict)
    assert sorted(outcome) == sorted(expected)
    assert outcome["steps"] == expected["steps"]
    assert outcome["device"] == expected["device"]
    assert outcome["final_loss"] == pytest.approx(expected["final_loss"], rel=rtol)
    assert outcome["best_loss"] == pytest.approx(expected["best_loss"], rel=rtol)
    assert sorted(outcome["metrics"]) == sorted(expected["metrics"])
    for name, value in expected["metrics"].items():
        assert outcome["metrics"][name] == pytest.approx(value, rel=rtol), name


def _assert_close_parameters(got: np.ndarray, expected: np.ndarray, rtol: float) -> None:
    """To `rtol` of the largest parameter: one near 0 has no relative precision to speak of."""
    scale = float(np.max(np.abs(expected), initial=1.0))
    np.testing.assert_allclose(got, expected, rtol=rtol, atol=rtol * scale)


def _check_group(specs: list[FitSpec], *, rtol: float = 1e-9, **options: Any) -> None:
    assert len({group_key(s) for s in specs}) == 1
    outcomes, recorders = _together(specs, **options)
    assert len(outcomes) == len(specs)
    for spec, outcome, recorder in zip(specs, outcomes, recorders, strict=True):
        expected, alone = _alone(spec, **options)
        _assert_same_run(recorder, alone, outcome, expected, rtol=rtol)


# --- every optimizer, its numeric fields differing between runs ------------------------------

OPTIMIZERS = {
    "sgd": [{"lr": 0.3}, {"lr": 0.05, "weight_decay": 0.01}, {"lr": 0.1}],
    "sgd-momentum": [
        {"lr": 0.05, "momentum": 0.9},
        {"lr": 0.1, "momentum": 0.5, "dampening": 0.3, "weight_decay": 0.02},
        {"lr": 0.2},  # momentum 0 in a group with momentum: a plain step
    ],
    "nesterov": [
        {"lr": 0.05, "momentum": 0.9, "nesterov": True},
        {"lr": 0.1, "momentum": 0.6, "nesterov": True, "weight_decay": 0.01},
    ],
    "momentum": [{"lr": 0.3, "beta": 0.9}, {"lr": 0.1, "beta": 0.5}, {"lr": 1.0, "beta": 0.0}],
    "adagrad": [
        {"lr": 0.1},
        {"lr": 0.3, "lr_decay": 0.05, "initial_accumulator_value": 0.1},
        {"lr": 0.05, "weight_decay": 0.01, "eps": 1e-6},
    ],
    "rmsprop": [{"lr": 0.01}, {"lr": 0.003, "alpha": 0.9, "eps": 1e-6, "weight_decay": 0.01}],
    "rmsprop-momentum": [
        {"lr": 0.01, "momentum": 0.9},
        {"lr": 0.003, "alpha": 0.8},  # momentum 0 in a group with momentum
    ],
    "rmsprop-centered": [
        {"lr": 0.01, "centered": True},
        {"lr": 0.002, "centered": True, "momentum": 0.5, "alpha": 0.95},
    ],
    "adam": [
        {"lr": 0.01},
        {"lr": 0.05, "betas": [0.8, 0.99], "eps": 1e-6},
        {"lr": 0.003, "weight_decay": 0.1},
    ],
    "adam-amsgrad": [
        {"lr": 0.01, "amsgrad": True},
        {"lr": 0.05, "betas": [0.5, 0.9], "amsgrad": True, "weight_decay": 0.01},
    ],
    "adamw": [{"lr": 0.01}, {"lr": 0.03, "weight_decay": 0.3, "betas": [0.85, 0.95]}],
}


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_each_run_of_a_group_is_the_run_trained_alone(name: str) -> None:
    kind = name.split("-")[0].replace("nesterov", "sgd")
    specs = [
        _spec(seed=seed, optimizer={"type": kind, **fields})
        for seed, fields in enumerate(OPTIMIZERS[name])
    ]
    _check_group(specs)


def test_penalties_differ_between_runs() -> None:
    penalties = [{"l1": 0.0, "l2": 0.0}, {"l1": 0.01, "l2": 0.0}, {"l1": 0.0, "l2": 0.05}]
    penalties.append({"l1": 0.02, "l2": 0.03})
    specs = [_spec(seed=3, penalty=p, optimizer={"type": "adam", "lr": 0.02}) for p in penalties]
    _check_group(specs)


@pytest.mark.parametrize(
    "schedules",
    [
        [{"type": "step", "step_size": 1, "gamma": 0.5}, {"type": "step", "step_size": 2}],
        [{"type": "exponential", "gamma": 0.7}, {"type": "exponential", "gamma": 0.95}],
        [{"type": "cosine"}, {"type": "cosine", "t_max": 2, "eta_min": 0.01}],
    ],
)
def test_schedules_differ_between_runs(schedules: list[dict[str, Any]]) -> None:
    specs = [
        _spec(seed=i, epochs=4, schedule=s, optimizer={"type": "sgd", "lr": 0.1 * (i + 1)})
        for i, s in enumerate(schedules)
    ]
    _check_group(specs)


# --- the data and the batches ---------------------------------------------------------------


def test_digits_mlp_mini_batches_shuffle_and_validation_split() -> None:
    specs = [
        _spec(
            seed=seed,
            model={"type": "mlp", "hidden": [32]},
            data={"type": "digits"},
            optimizer={"type": "adam", "lr": lr},
            batch_size=64,
            epochs=2,
        )
        for seed, lr in [(0, 0.001), (1, 0.01), (0, 0.03), (7, 0.003)]
    ]
    _check_group(specs)


def test_digits_mlp_in_float32_matches_to_1e_5() -> None:
    specs = [
        _spec(
            seed=seed,
            model={"type": "mlp", "hidden": [64]},
            data={"type": "digits"},
            optimizer={"type": "adam", "lr": lr},
            batch_size=64,
            epochs=1,
            dtype="float32",
        )
        for seed, lr in [(0, 0.001), (1, 0.01), (2, 0.003)]
    ]
    _check_group(specs, rtol=1e-5)


FLOAT32_OPTIMIZERS = {
    "adam": [{"type": "adam", "lr": 0.01}, {"type": "adam", "lr": 0.05, "weight_decay": 0.01}],
    "adamw-amsgrad": [
        {"type": "adamw", "lr": 0.02, "amsgrad": True},
        {"type": "adamw", "lr": 0.005, "amsgrad": True, "betas": [0.8, 0.99]},
    ],
    "sgd-nesterov": [
        {"type": "sgd", "lr": 0.3, "momentum": 0.9, "nesterov": True, "weight_decay": 0.001},
        {"type": "sgd", "lr": 0.1, "momentum": 0.5, "nesterov": True},
    ],
    "sgd-dampening": [
        {"type": "sgd", "lr": 0.3, "momentum": 0.9, "dampening": 0.5},
        {"type": "sgd", "lr": 0.5},
    ],
    "momentum": [{"type": "momentum", "lr": 0.5, "beta": 0.9}, {"type": "momentum", "lr": 0.1}],
    "rmsprop": [
        {"type": "rmsprop", "lr": 0.01, "centered": True, "momentum": 0.5},
        {"type": "rmsprop", "lr": 0.003, "centered": True, "weight_decay": 0.01},
    ],
    "adagrad": [
        {"type": "adagrad", "lr": 0.2, "lr_decay": 0.01, "initial_accumulator_value": 0.1},
        {"type": "adagrad", "lr": 0.05, "weight_decay": 0.01},
    ],
}


def _float32_digits(name: str, epochs: int) -> list[FitSpec]:
    return [
        _spec(
            seed=seed,
            model={"type": "mlp", "hidden": [32]},
            data={"type": "digits"},
            optimizer=optimizer,
            batch_size=64,
            epochs=epochs,
            dtype="float32",
            penalty={"l2": 0.001 * seed},
        )
        for seed, optimizer in enumerate(FLOAT32_OPTIMIZERS[name])
    ]


@pytest.mark.parametrize("name", list(FLOAT32_OPTIMIZERS))
def test_float32_runs_do_not_drift_from_the_runs_alone(name: str) -> None:
    """Many steps at high rates, where rounding that differs from `train`'s could grow."""
    _check_group(_float32_digits(name, epochs=4), rtol=1e-5)


@pytest.fixture
def one_thread() -> Iterator[None]:
    """One torch thread: with more, BLAS may split a small product's sum across threads, so
    that even `train` alone rounds differently from one thread count to another."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("name", list(FLOAT32_OPTIMIZERS))
def test_float32_parameters_are_trains_bit_for_bit_on_the_cpu(name: str) -> None:
    """On the CPU each update is `train`'s operation for operation (a fused multiply-add where
    torch has one): the parameters come out identical, so no run can drift however long it
    trains. Only the loss values differ, by the order of the batch mean's sum. Should a torch
    upgrade change its kernels, the 1e-5 tests above remain the contract."""
    specs = _float32_digits(name, epochs=2)
    _, recorders = _together(specs)
    for spec, recorder in zip(specs, recorders, strict=True):
        _, alone = _alone(spec)
        assert recorder.parameters == alone.parameters
        assert recorder.trajectory == alone.trajectory
        for metric in ("train_loss", "val_loss", "accuracy", "val_accuracy", "lr"):
            assert recorder.series[metric] == alone.series[metric], metric


def test_float32_logistic_regression_with_a_short_last_batch() -> None:
    """bce's mean divides its gradient by the rows, 48 here in the last batch, as torch does."""
    specs = [
        _spec(
            seed=seed,
            model={"type": "logistic"},
            data={"type": "classification", "kind": "moons", "n_samples": 300},
            optimizer={"type": "sgd", "lr": lr},
            batch_size=64,
            epochs=20,
            dtype="float32",
        )
        for seed, lr in [(0, 0.5), (1, 2.0)]
    ]
    _check_group(specs, rtol=1e-5)


@pytest.mark.parametrize(
    "overrides",
    [
        # data made from the seed: each run has its own data set
        pytest.param(
            {
                "model": {"type": "linear"},
                "data": {"type": "linear", "n_samples": 50, "n_features": 2, "x_range": [-1, 1]},
            },
            id="linear-data",
        ),
        pytest.param(
            {"data": {"type": "classification", "kind": "moons", "n_samples": 60}},
            id="moons",
        ),
        pytest.param(
            {
                "model": {"type": "logistic"},
                "data": {"type": "classification", "kind": "xor", "n_samples": 40},
            },
            id="logistic-bce",
        ),
        pytest.param(
            {
                "model": {"type": "softmax", "bias": False},
                "data": {"type": "classification", "kind": "blobs", "n_classes": 3},
            },
            id="softmax-no-bias",
        ),
        # inline data: the same rows, split and shuffled per seed
        pytest.param(
            {
                "model": {"type": "mlp", "hidden": [4, 3], "activation": "relu"},
                "data": {
                    "type": "inline",
                    "x": [[i / 10, (i % 7) / 3] for i in range(30)],
                    "y": [float(i % 5) + i / 30 for i in range(30)],
                },
                "validation_split": 0.3,
            },
            id="inline-values",
        ),
        pytest.param(
            {
                "data": {
                    "type": "inline",
                    "x": [[i / 10, (i % 7) / 3] for i in range(30)],
                    "y": [i % 3 for i in range(30)],
                },
            },
            id="inline-labels",
        ),
        pytest.param({"batch_size": None}, id="full-batch"),
        pytest.param({"batch_size": 1000}, id="batch-over-the-set"),
        pytest.param({"shuffle": False}, id="no-shuffle"),
        pytest.param({"validation_split": 0.0, "batch_size": 7}, id="no-validation"),
        pytest.param({"model": {"type": "mlp", "hidden": [40, 30]}}, id="no-trajectory"),
    ],
)
def test_data_and_batching_are_each_runs_own(overrides: dict[str, Any]) -> None:
    specs = [
        _spec(**overrides, seed=seed, optimizer={"type": "adam", "lr": lr})
        for seed, lr in [(0, 0.01), (5, 0.05), (11, 0.02)]
    ]
    _check_group(specs)


@pytest.mark.parametrize("overrides", [{}, {"batch_size": None}, {"shuffle": False}])
def test_a_group_too_large_to_gather_takes_its_batches_one_at_a_time(
    monkeypatch: pytest.MonkeyPatch, overrides: dict[str, Any]
) -> None:
    monkeypatch.setattr(group_data, "EPOCH_GATHER_BYTES", 0)
    specs = [
        _spec(**overrides, seed=seed, optimizer={"type": "adam", "lr": 0.02}) for seed in (0, 3)
    ]
    _check_group(specs)


def test_the_seed_alone_may_differ_and_gives_different_runs() -> None:
    specs = [_spec(seed=seed) for seed in (1, 2)]
    outcomes, recorders = _together(specs)
    assert recorders[0].series["loss"][1] != recorders[1].series["loss"][1]
    _check_group(specs)


def test_the_parameters_start_as_trains_bit_for_bit() -> None:
    specs = [_spec(seed=seed, epochs=1) for seed in (4, 9)]
    _, recorders = _together(specs)
    for spec, recorder in zip(specs, recorders, strict=True):
        _, alone = _alone(spec)
        assert recorder.trajectory[0] == alone.trajectory[0]


@pytest.mark.parametrize("flush_seconds", [0.0, 0.2])
def test_chunks_hold_whole_steps_as_trains_do(flush_seconds: float) -> None:
    class Chunks(MemoryRecorder):
        def __init__(self) -> None:
            super().__init__()
            self.kept: list[Chunk] = []

        def record(self, chunk: Chunk) -> None:
            super().record(chunk)
            self.kept.append(chunk)

    specs = [_spec(seed=s, optimizer={"type": "sgd", "lr": 0.1 * (s + 1)}) for s in range(3)]
    recorders = [Chunks() for _ in specs]
    train_many(specs, recorders, options=RunOptions(flush_seconds=flush_seconds))
    per_epoch = 5  # 72 training rows in batches of 16
    for recorder in recorders:
        chunk_of: dict[int, int] = {}
        for index, chunk in enumerate(recorder.kept):
            for name, (steps, _) in chunk.series.items():
                for step in steps:
                    assert chunk_of.setdefault(step, index) == index, (name, step)
            assert chunk.step == max(chunk_of, default=0)
            assert chunk.epoch == sum(s % per_epoch == 0 for s in chunk_of)
        assert sorted(chunk_of) == list(range(1, 3 * per_epoch + 1))
        assert recorder.kept[-1].parameters is not None


# --- runs that end on their own -------------------------------------------------------------


def test_a_diverging_run_fails_alone() -> None:
    linear = {
        "model": {"type": "linear"},
        "data": {"type": "linear", "n_samples": 64, "weights": [3.0], "x_range": [0, 10]},
        "validation_split": 0.0,
        "epochs": 40,  # float64 overflows after about 130 steps of lr 5
    }
    specs = [
        _spec(**linear, seed=0, optimizer={"type": "sgd", "lr": 0.001}),
        _spec(**linear, seed=1, optimizer={"type": "sgd", "lr": 5.0}),  # blows up
        _spec(**linear, seed=2, optimizer={"type": "sgd", "lr": 0.002}),
    ]
    outcomes, recorders = _together(specs, flush_seconds=0.0)
    assert isinstance(outcomes[0], dict) and isinstance(outcomes[2], dict)
    assert isinstance(outcomes[1], Diverged)
    expected, _ = _alone(specs[1], flush_seconds=0.0)
    assert isinstance(expected, Diverged)
    assert outcomes[1].step == expected.step
    assert len(recorders[1].series["loss"][0]) == expected.step - 1
    for spec, outcome, recorder in zip(specs, outcomes, recorders, strict=True):
        expected, alone = _alone(spec, flush_seconds=0.0)
        _assert_same_run(recorder, alone, outcome, expected)


def test_a_diverging_run_found_at_the_last_flush_fails_alone() -> None:
    linear = {
        "model": {"type": "linear"},
        "data": {"type": "linear", "n_samples": 64, "weights": [3.0], "x_range": [0, 10]},
        "epochs": 60,
    }
    specs = [
        _spec(**linear, seed=0, optimizer={"type": "sgd", "lr": 0.001}),
        _spec(**linear, seed=0, optimizer={"type": "sgd", "lr": 5.0}),
    ]
    outcomes, recorders = _together(specs, flush_seconds=3600)
    assert isinstance(outcomes[0], dict)
    assert isinstance(outcomes[1], Diverged)
    for spec, outcome, recorder in zip(specs, outcomes, recorders, strict=True):
        expected, alone = _alone(spec, flush_seconds=3600)
        _assert_same_run(recorder, alone, outcome, expected)


class _StopAfter(MemoryRecorder):
    """Asks its run to stop once it has recorded `chunks` chunks."""

    def __init__(self, chunks: int | None) -> None:
        super().__init__()
        self.after = chunks

    def should_stop(self) -> bool:
        return self.after is not None and self.chunks >= self.after


def test_a_cancelled_run_stops_alone() -> None:
    specs = [_spec(seed=s, optimizer={"type": "adam", "lr": 0.01 * (s + 1)}) for s in range(3)]
    recorders = [_StopAfter(None), _StopAfter(4), _StopAfter(None)]
    ended: list[int] = []
    outcomes = _stored(
        train_many(
            specs,
            recorders,
            options=RunOptions(flush_seconds=0.0),
            on_done=lambda i, outcome: ended.append(i),
        )
    )
    assert isinstance(outcomes[1], Interrupted)
    assert ended[0] == 1 and sorted(ended) == [0, 1, 2]
    # flushing every step, the stop is seen at the 5th flush, after the 5th step
    assert outcomes[1].step == 5
    assert recorders[1].series["loss"][0] == [1, 2, 3, 4, 5]
    alone = MemoryRecorder()
    train(specs[1], alone)
    np.testing.assert_allclose(
        recorders[1].series["loss"][1], alone.series["loss"][1][:5], rtol=1e-9
    )
    for i in (0, 2):
        expected, alone = _alone(specs[i])
        _assert_same_run(recorders[i], alone, outcomes[i], expected)


def test_every_run_stopping_ends_the_group() -> None:
    specs = [_spec(seed=s, epochs=50) for s in range(2)]
    recorders = [_StopAfter(2), _StopAfter(3)]
    outcomes = train_many(specs, recorders, options=RunOptions(flush_seconds=0.0))
    assert [o.step for o in outcomes if isinstance(o, Interrupted)] == [3, 4]


def test_a_group_past_its_time_limit_times_out() -> None:
    specs = [_spec(seed=s, epochs=100_000) for s in range(2)]
    outcomes, _ = _together(specs, time_limit=0.3, flush_seconds=0.05)
    assert all(isinstance(o, TimedOut) for o in outcomes)


def test_a_failing_recorder_ends_its_run_only() -> None:
    class Broken(MemoryRecorder):
        def record(self, chunk: Chunk) -> None:
            raise OSError("disk full")

    specs = [_spec(seed=s) for s in range(2)]
    outcomes = _stored(train_many(specs, [Broken(), MemoryRecorder()]))
    assert isinstance(outcomes[0], OSError)
    assert isinstance(outcomes[1], dict)


# --- no host sync per step ------------------------------------------------------------------

SYNCING = ("item", "tolist", "cpu", "numpy", "__float__", "__bool__", "__int__")


def test_losses_are_fetched_per_flush_not_per_step(monkeypatch: pytest.MonkeyPatch) -> None:
    specs = [
        FitSpec.model_validate(
            {
                "model": {"type": "linear"},
                "data": {"type": "linear", "n_samples": 1000, "n_features": 3},
                "optimizer": {"type": "adam", "lr": 0.001 * (i + 1)},
                "batch_size": 1,
                "epochs": 1,
                "validation_split": 0.2,
                "device": "cpu",
                "seed": i,
            }
        )
        for i in range(4)
    ]
    calls: Counter[str] = Counter()
    for name in SYNCING:
        original = getattr(torch.Tensor, name)

        def counted(self: torch.Tensor, *args: Any, _name: str = name, _f: Any = original) -> Any:
            calls[_name] += 1
            return _f(self, *args)

        monkeypatch.setattr(torch.Tensor, name, counted)
    recorders = [MemoryRecorder() for _ in specs]
    outcomes = _stored(train_many(specs, recorders, options=RunOptions(flush_seconds=3600)))
    assert all(isinstance(o, dict) and o["steps"] == 800 for o in outcomes)
    assert all(len(r.series["loss"][0]) == 800 for r in recorders)
    # one flush at the end: a handful of transfers per run for 800 steps, not one a step
    assert sum(calls.values()) < 50, calls


# --- which specs group together ---------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides",
    [
        {"seed": 5},
        {"name": "another"},
        {"optimizer": {"type": "sgd", "lr": 0.5, "momentum": 0.9, "weight_decay": 0.1}},
        {"penalty": {"l1": 0.1, "l2": 0.2}},
        {"schedule": {"type": "step", "step_size": 3, "gamma": 0.2}},
    ],
)
def test_specs_differing_in_numbers_and_seed_share_a_key(overrides: dict[str, Any]) -> None:
    base = _spec(schedule={"type": "step", "step_size": 1})
    other = _spec(**{"schedule": {"type": "step", "step_size": 1}, **overrides})
    assert group_key(base) is not None
    assert group_key(base) == group_key(other)


@pytest.mark.parametrize(
    "overrides",
    [
        {"model": {"type": "mlp", "hidden": [9], "activation": "tanh"}},
        {"model": {"type": "mlp", "hidden": [8], "activation": "relu"}},
        {"data": {"type": "classification", "kind": "blobs", "n_samples": 91, "n_features": 3}},
        {"data": {"type": "digits"}},
        {"batch_size": 17},
        {"batch_size": None},
        {"epochs": 4},
        {"shuffle": False},
        {"validation_split": 0.3},
        {"dtype": "float32"},
        {"device": "auto"},
        {"optimizer": {"type": "adam", "lr": 0.1}},
        {"optimizer": {"type": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": True}},
        {"schedule": {"type": "exponential", "gamma": 0.5}},
    ],
)
def test_specs_differing_in_anything_else_do_not(overrides: dict[str, Any]) -> None:
    assert group_key(_spec()) != group_key(_spec(**overrides))


def test_flags_of_an_optimizer_split_groups() -> None:
    adam = _spec(optimizer={"type": "adam", "lr": 0.1})
    assert group_key(adam) != group_key(_spec(optimizer={"type": "adam", "amsgrad": True}))
    assert group_key(adam) != group_key(_spec(optimizer={"type": "adamw", "lr": 0.1}))
    rms = _spec(optimizer={"type": "rmsprop"})
    assert group_key(rms) != group_key(_spec(optimizer={"type": "rmsprop", "centered": True}))


@pytest.mark.parametrize(
    "spec",
    [
        pytest.param(_spec(gradients="manual"), id="manual"),
        pytest.param(_spec(optimizer={"type": "ista", "lr": 0.1}, batch_size=None), id="ista"),
        pytest.param(_spec(optimizer={"type": "fista", "lr": 0.1}, batch_size=None), id="fista"),
        pytest.param(
            _spec(
                model={"type": "linear"},
                data={"type": "linear"},
                optimizer={"type": "admm"},
                batch_size=None,
            ),
            id="admm",
        ),
        pytest.param(
            _spec(
                model={"type": "linear"},
                data={"type": "linear"},
                optimizer={"type": "coordinate_descent"},
                batch_size=None,
            ),
            id="coordinate-descent",
        ),
        pytest.param(
            MinimizeSpec.model_validate(
                {
                    "task": "minimize",
                    "objective": {"type": "quadratic"},
                    "x0": [1.0],
                    "steps": 3,
                    "optimizer": {"type": "sgd", "lr": 0.1},
                }
            ),
            id="minimize",
        ),
    ],
)
def test_what_cannot_vectorise_has_no_key(spec: FitSpec | MinimizeSpec) -> None:
    assert group_key(spec) is None


def test_train_many_refuses_specs_of_different_groups() -> None:
    with pytest.raises(ValueError, match="group_key"):
        train_many([_spec(), _spec(batch_size=8)], [MemoryRecorder(), MemoryRecorder()])
    with pytest.raises(ValueError, match="group_key"):
        train_many([_spec(gradients="manual")], [MemoryRecorder()])
    with pytest.raises(ValueError, match="recorders"):
        train_many([_spec()], [])
    assert train_many([], []) == []
