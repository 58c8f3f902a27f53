"""The spec validates the same in any environment; the limits come in with the call."""

from __future__ import annotations

from dataclasses import fields

import pytest
from pydantic import ValidationError

from service.config import Settings
from service.spec import DatasetFacts, job_spec_adapter, locate_errors
from service.spec.limits import Limits, check
from service.spec.resolve import resolve

DEEP = {"model": {"type": "mlp", "hidden": [4, 4, 4]}, "data": {"type": "digits"}}


def test_the_default_limits_are_the_settings_defaults() -> None:
    for limit in fields(Limits):
        if limit.name != "worker_memory":  # the setting's default is half this machine's
            assert limit.default == Settings.model_fields[limit.name].default, limit.name


def test_the_environment_does_not_change_what_validates(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DESCENT_MAX_HIDDEN_LAYERS", "1")
    spec = job_spec_adapter.validate_python(DEEP)
    assert spec.model.hidden == [4, 4, 4]  # type: ignore[union-attr]
    check(spec, Limits())  # three layers pass the default limit of 16


def test_a_limit_given_is_a_located_error_naming_its_variable() -> None:
    spec = job_spec_adapter.validate_python(DEEP)
    with pytest.raises(ValidationError) as raised:
        check(spec, Limits(max_hidden_layers=2))
    (error,) = locate_errors(raised.value.errors())
    assert error["loc"] == ("fit", "model", "mlp", "hidden")
    assert error["msg"] == (
        "Value error, model.hidden has 3 layers; the limit is 2 (DESCENT_MAX_HIDDEN_LAYERS)"
    )


def test_resolve_checks_a_dataset_job_against_the_facts_given() -> None:
    raw = {"model": {"type": "softmax"}, "data": {"type": "dataset", "id": "d1"}}
    spec = job_spec_adapter.validate_python(raw)
    assert spec.loss is None  # type: ignore[union-attr]  # unknown until the dataset is
    facts = DatasetFacts(
        n_samples=50, n_features=3, integer_target=True, target_min=0, target_max=4
    )
    resolved = resolve(spec, limits=Limits(), datasets={"d1": facts})
    assert resolved.loss == "cross_entropy"  # type: ignore[union-attr]
    with pytest.raises(ValidationError, match="the limit is 3 classes"):
        resolve(spec, limits=Limits(max_classes=3), datasets={"d1": facts})
    with pytest.raises(ValidationError, match="there is no dataset 'd1'"):
        resolve(spec, limits=Limits(), datasets={})
