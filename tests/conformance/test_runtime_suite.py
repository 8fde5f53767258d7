"""The conformance suite every runtime passes: one case per example model of each format.

Through a real server: metadata, inference with a batch of 1 and of 64 rows equal to the format's
own library called in-process (labels exactly, floats to 1e-6 relative), and a corrupt artifact
that FAILS with a reason while every other model keeps serving. In-process: unload drops the
runtime's last reference to the library's model object.
"""

from __future__ import annotations

import gc
import shutil
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from modelserve import testing
from modelserve.config.model import load_model_config
from modelserve.runtimes.registry import resolve
from modelserve.types import datatype_of
from tests.fixtures.models import build_examples
from tests.fixtures.runtime_cases import RuntimeCase, all_cases

CASES = all_cases()
CORRUPT = b"corrupt\x00this is not a model artifact\n"


def _corrupt_copy(repo: Path, model: str) -> None:
    """``<model>-corrupt``: the model with garbage in place of every version's artifact."""
    target = repo / f"{model}-corrupt"
    shutil.copytree(repo / model, target)
    config = load_model_config(target / "config.yaml")
    for version_dir in (p for p in target.iterdir() if p.is_dir()):
        resolve(version_dir, config).artifact.write_bytes(CORRUPT)


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("formats")
    build_examples(out)
    for case in CASES:
        _corrupt_copy(out, case.model)
    return out


@pytest.fixture(scope="module")
def client(repo: Path) -> Iterator[httpx.Client]:
    settings: dict[str, Any] = {}
    for case in CASES:
        settings.update(case.settings)
    with testing.run(repo, **settings) as server, httpx.Client(base_url=server.http_url, timeout=60) as http:
        yield http


@pytest.mark.parametrize("case", CASES, ids=str)
def test_metadata_describes_the_model(client: httpx.Client, case: RuntimeCase) -> None:
    response = client.get(f"/v2/models/{case.model}")
    assert response.status_code == 200, response.text
    meta = response.json()
    assert meta["platform"] == case.platform
    sample = case.inputs(1)
    assert {t["name"]: t["datatype"] for t in meta["inputs"]} == {k: datatype_of(v) for k, v in sample.items()}


@pytest.mark.parametrize("batch", [1, 64])
@pytest.mark.parametrize("case", CASES, ids=str)
def test_server_equals_native_library(client: httpx.Client, repo: Path, case: RuntimeCase, batch: int) -> None:
    inputs = case.inputs(batch)
    body = {"inputs": [_json_tensor(name, array) for name, array in inputs.items()]}
    response = client.post(f"/v2/models/{case.model}/infer", json=body)
    assert response.status_code == 200, response.text
    served = {o["name"]: np.array(o["data"]).reshape(o["shape"]) for o in response.json()["outputs"]}
    expected = case.native(_latest(repo / case.model), inputs)
    assert served.keys() == expected.keys()
    for name, value in expected.items():
        value = np.asarray(value)
        got = served[name]
        assert got.shape == value.shape, name
        if value.dtype.kind in "OSU":
            assert [_text(v) for v in got.ravel()] == [_text(v) for v in value.ravel()], name
        elif name in case.exact:
            np.testing.assert_array_equal(got.astype(value.dtype), value, err_msg=name)
        else:
            np.testing.assert_allclose(got.astype(np.float64), value.astype(np.float64), rtol=1e-6, err_msg=name)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_corrupt_artifact_fails_with_a_reason_and_others_serve(client: httpx.Client, case: RuntimeCase) -> None:
    index = {e["name"]: e for e in client.post("/v2/repository/index", json={}).json()}
    broken = index[f"{case.model}-corrupt"]
    assert broken["state"] == "FAILED"
    assert broken["reason"]
    assert client.get(f"/v2/models/{case.model}-corrupt/ready").status_code != 200
    assert client.get(f"/v2/models/{case.model}/ready").status_code == 200


@pytest.mark.parametrize("case", CASES, ids=str)
def test_unload_drops_the_model(repo: Path, case: RuntimeCase) -> None:
    version_dir = _latest(repo / case.model)
    resolved = resolve(version_dir, load_model_config(repo / case.model / "config.yaml"))
    runtime = resolved.runtime()
    runtime.load(resolved.artifact, load_model_config(repo / case.model / "config.yaml"))
    assert runtime.model is not None
    ref = weakref.ref(runtime.model)
    runtime.unload()
    gc.collect()
    assert runtime.model is None
    assert ref() is None, "something still holds the library's model object after unload"


def _latest(model_dir: Path) -> Path:
    return max((p for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name))


def _json_tensor(name: str, array: np.ndarray) -> dict[str, Any]:
    data = [_text(v) for v in array.ravel()] if array.dtype.kind in "OSU" else array.ravel().tolist()
    return {"name": name, "datatype": datatype_of(array), "shape": list(array.shape), "data": data}


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
