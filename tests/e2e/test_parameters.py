"""Parameters through a real `descent up`: JSON up to DESCENT_MAX_PARAMETERS_JSON, then a 413
pointing at the safetensors download, which the Python client streams to a file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import safetensors.torch

from service.client import Client, ClientError
from tests.conftest import Service, fit_spec

pytestmark = pytest.mark.e2e

#: (2 + 1) * 2 + (2 + 1) * 2 + (2 + 1) * 1 = 15 scalars: past a JSON limit of 5
MLP = fit_spec(
    model={"type": "mlp", "hidden": [2, 2]},
    data={"type": "linear", "n_samples": 32, "n_features": 2},
)
#: 3 scalars: within it
LINEAR = fit_spec(data={"type": "linear", "n_samples": 32, "n_features": 2})


def test_json_within_the_limit_and_the_download_past_it(start_service: Any, tmp_path: Path) -> None:
    service: Service = start_service(workers=1, env={"DESCENT_MAX_PARAMETERS_JSON": "5"})
    with Client(service.url) as client:
        small, big = (client.submit(spec)["id"] for spec in (LINEAR, MLP))
        for job_id in (small, big):
            assert client.wait(job_id, timeout=60)["status"] == "succeeded", service.logs()

        body = client.parameters(small)
        assert client.download_parameters(small, tmp_path / "small.safetensors") == body["step"]
        tensors = safetensors.torch.load_file(tmp_path / "small.safetensors")
        assert {k: v.tolist() for k, v in tensors.items()} == body["parameters"]

        with pytest.raises(ClientError) as raised:
            client.parameters(big)
        assert raised.value.status == 413
        assert "DESCENT_MAX_PARAMETERS_JSON" in raised.value.detail
        assert "has 15 parameters" in raised.value.detail
        assert client.download_parameters(big, tmp_path / "big.safetensors") == 6
        tensors = safetensors.torch.load_file(tmp_path / "big.safetensors")
        assert sum(t.numel() for t in tensors.values()) == 15
