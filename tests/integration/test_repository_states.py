"""Model states as users see them: failures are visible with reasons and never take the server down."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from modelserve import testing
from modelserve.errors import ConfigError
from tests.conftest import IRIS_REQUEST


@pytest.mark.parametrize(
    ("model", "words"),
    [
        ("broken", ["model.onnx", "not an ONNX model"]),
        ("pickled", ["pickle", "trusted: true"]),
        ("bad-config", ["config.yaml", "version_policy.latest", "'many'"]),
    ],
)
def test_failed_model_shows_state_and_reason(client: httpx.Client, model: str, words: list[str]) -> None:
    response = client.get(f"/v2/models/{model}/ready")
    assert response.status_code == 503
    for word in words:
        assert word in response.json()["error"]


def test_trusted_pickle_loads(client: httpx.Client) -> None:
    response = client.post("/v2/models/pickled-trusted/infer", json=IRIS_REQUEST)
    assert response.status_code == 200 and response.json()["outputs"][0]["data"] == [0]


def test_skops_with_untrusted_types_is_refused(tmp_path: Path) -> None:
    import skops.io as sio
    from sklearn.preprocessing import FunctionTransformer

    (tmp_path / "custom" / "1").mkdir(parents=True)
    sio.dump(FunctionTransformer(func=Path), tmp_path / "custom" / "1" / "model.skops")
    with testing.run(tmp_path) as srv, httpx.Client(base_url=srv.http_url) as c:
        error = c.get("/v2/models/custom/ready").json()["error"]
    assert "does not trust" in error and "trusted_types" in error


def test_one_bad_config_or_version_name_fails_only_its_model(repo: Path, tmp_path: Path) -> None:
    import shutil

    shutil.copytree(repo / "iris", tmp_path / "iris")
    shutil.copytree(repo / "iris", tmp_path / "aaa-typo")
    (tmp_path / "aaa-typo" / "config.yaml").write_text("1: x\nfoo: y\n")
    shutil.copytree(repo / "iris", tmp_path / "meta")
    (tmp_path / "meta" / "config.yaml").write_text("metadata: {tags: !!set {a: null}}\n")
    (tmp_path / "iris" / "\u00b2").mkdir()
    with testing.run(tmp_path) as srv, httpx.Client(base_url=srv.http_url) as c:
        assert c.get("/v2/health/ready").status_code == 200
        assert c.post("/v2/models/iris/infer", json=IRIS_REQUEST).status_code == 200
        assert "keys of the document must be strings" in c.get("/v2/models/aaa-typo/ready").json()["error"]
        assert "JSON values" in c.get("/v2/models/meta/ready").json()["error"]


def test_bytes_override_of_a_numeric_input_fails_the_load(repo: Path, tmp_path: Path) -> None:
    import shutil

    shutil.copytree(repo / "iris", tmp_path / "iris")
    (tmp_path / "iris" / "config.yaml").write_text("signature: {inputs: [{name: input, datatype: BYTES}]}\n")
    with testing.run(tmp_path) as srv, httpx.Client(base_url=srv.http_url) as c:
        error = c.get("/v2/models/iris/ready").json()["error"]
    assert "only numeric datatypes" in error


def test_missing_repository_fails_to_start(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a directory"), testing.run(tmp_path / "absent"):
        pass


def test_unload_lets_a_pinned_request_finish_and_then_refuses_new_ones(repo: Path) -> None:
    import asyncio

    import numpy as np

    from modelserve.types import InferInput, InferRequest, ModelState

    async def scenario(manager) -> tuple[ModelState, bool, list[int], ModelState]:
        handle = manager.acquire("iris", 1)  # pinned, as a request in flight holds it
        unloading = asyncio.create_task(manager.unload("iris", 1))
        await asyncio.sleep(0.05)
        state = manager.model("iris").versions[1].state
        request = InferRequest([InferInput("input", "FP32", np.array([[5.1, 3.5, 1.4, 0.2]], dtype=np.float32))])
        label = (await handle.infer(request)).outputs[0].data.tolist()
        waited = not unloading.done()
        handle.release()
        await unloading
        return state, waited, label, manager.model("iris").versions[1].state

    with testing.run(repo) as srv, httpx.Client(base_url=srv.http_url) as c:
        state, waited, label, final = srv.call(scenario(srv.server.manager))
        assert state is ModelState.UNLOADING and waited and label == [0] and final is ModelState.UNLOADED
        response = c.post("/v2/models/iris/infer", json=IRIS_REQUEST)
        assert response.status_code == 503 and "version 1 is UNLOADED" in response.json()["error"]
        assert c.post("/v2/models/iris-skops/infer", json=IRIS_REQUEST).status_code == 200


def test_cancelled_request_keeps_its_version_pinned_until_the_computation_ends(repo: Path) -> None:
    import asyncio
    import contextlib

    import numpy as np

    from modelserve.types import InferInput, InferRequest

    big = InferRequest([InferInput("input", "FP32", np.full((6_000_000, 4), 5.0, dtype=np.float32))])

    async def scenario(manager) -> tuple[int, int, bool]:
        mv = manager.model("iris").versions[1]
        handle = manager.acquire("iris", 1)
        task = asyncio.ensure_future(handle.infer(big))
        await asyncio.sleep(0.05)  # the ~0.4 s computation is now running in the pool
        task.cancel()  # the client went away
        with contextlib.suppress(asyncio.CancelledError):
            await task
        handle.release()
        pinned = mv.inflight  # an unload now would still wait for the running computation
        for _ in range(500):
            if mv.inflight == 0:
                break
            await asyncio.sleep(0.01)
        still_ready = manager.acquire("iris", 1)
        still_ready.release()
        return pinned, mv.inflight, still_ready.version == 1

    with testing.run(repo, inference_threads=1, max_tensor_elements=1 << 26) as srv:
        pinned, finally_pinned, ok = srv.call(scenario(srv.server.manager))
    assert (pinned, finally_pinned, ok) == (1, 0, True)
