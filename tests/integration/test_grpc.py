"""The v2 gRPC service, driven by Triton's official client (tritonclient.grpc) and by raw gRPC."""

from __future__ import annotations

import queue
from collections.abc import Iterator

import grpc
import numpy as np
import pytest
import tritonclient.grpc as tg
from tritonclient.utils import InferenceServerException

from modelserve import testing
from modelserve.protocol.v2.grpc import messages as pb
from tests.conftest import IRIS_ROW
from tests.fixtures.models import identity_batch

INFER = "/inference.GRPCInferenceService/ModelInfer"


@pytest.fixture
def triton(server: testing.run) -> Iterator[tg.InferenceServerClient]:
    client = tg.InferenceServerClient(server.grpc_target)
    yield client
    client.close()


def _iris_input(rows: list[list[float]]) -> tg.InferInput:
    x = np.array(rows, dtype=np.float32)
    tensor = tg.InferInput("input", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x)
    return tensor


def test_health_and_server_metadata(triton: tg.InferenceServerClient) -> None:
    assert triton.is_server_live() and triton.is_server_ready()
    meta = triton.get_server_metadata(as_json=True)
    assert meta["name"] == "modelserve"
    assert {"binary_tensor_data", "model_repository", "streaming"} <= set(meta["extensions"])


def test_model_readiness_per_state(triton: tg.InferenceServerClient) -> None:
    assert triton.is_model_ready("iris")
    assert triton.is_model_ready("adder", "3") and triton.is_model_ready("adder", "2")
    assert not triton.is_model_ready("broken")  # FAILED: known, not ready
    with pytest.raises(InferenceServerException, match="NOT_FOUND"):
        triton.is_model_ready("nope")


def test_model_metadata_matches_rest(triton: tg.InferenceServerClient, client) -> None:
    meta = triton.get_model_metadata("iris", as_json=True)
    rest = client.get("/v2/models/iris").json()
    assert meta["name"] == rest["name"] == "iris"
    assert meta["versions"] == rest["versions"] and meta["platform"] == rest["platform"]
    assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": ["-1", "4"]}]  # int64 as JSON strings
    assert [o["name"] for o in meta["outputs"]] == ["label", "probabilities"]


def test_infer_iris_matches_rest(triton: tg.InferenceServerClient, client) -> None:
    result = triton.infer("iris", [_iris_input([IRIS_ROW, [6.7, 3.0, 5.2, 2.3]])], request_id="g1")
    np.testing.assert_array_equal(result.as_numpy("label"), [0, 2])
    rest = client.post(
        "/v2/models/iris/infer",
        json={
            "inputs": [{"name": "input", "shape": [2, 4], "datatype": "FP32", "data": [IRIS_ROW, [6.7, 3.0, 5.2, 2.3]]}]
        },
    ).json()
    np.testing.assert_allclose(result.as_numpy("probabilities").ravel(), rest["outputs"][1]["data"], rtol=1e-6)
    response = result.get_response()
    assert response.id == "g1" and response.model_name == "iris" and response.model_version == "1"
    assert len(response.raw_output_contents) == 2  # outputs come back raw by default, like Triton


def test_requested_output_subset_and_version(triton: tg.InferenceServerClient) -> None:
    x = np.array([[1.0, 2.0, 3.0]], dtype=np.float32)
    tensor = tg.InferInput("x", [1, 3], "FP32")
    tensor.set_data_from_numpy(x)
    meta = triton.get_model_metadata("adder", as_json=True)
    out = meta["outputs"][0]["name"]
    for version, constant in (("2", 2.0), ("3", 3.0)):
        result = triton.infer("adder", [tensor], model_version=version, outputs=[tg.InferRequestedOutput(out)])
        np.testing.assert_allclose(result.as_numpy(out), x + constant)
    with pytest.raises(InferenceServerException, match="no version 7"):
        triton.infer("adder", [tensor], model_version="7")


def test_every_datatype_round_trips_raw(triton: tg.InferenceServerClient) -> None:
    arrays = identity_batch()
    inputs = []
    for dt, array in arrays.items():
        tensor = tg.InferInput(f"in_{dt}", list(array.shape), dt)
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    result = triton.infer("identity", inputs)
    for dt, array in arrays.items():
        got = result.as_numpy(f"out_{dt}")
        np.testing.assert_array_equal(got, array, err_msg=dt)


def test_typed_contents_in_and_out(server: testing.run) -> None:
    """Clients that send InferTensorContents (no raw) work; binary_data_output=false gets typed outputs."""
    request = pb.ModelInferRequest(model_name="iris", id="typed")
    request.inputs.add(name="input", datatype="FP32", shape=[2, 4]).contents.fp32_contents.extend(
        [*IRIS_ROW, 6.7, 3.0, 5.2, 2.3]
    )
    request.parameters["binary_data_output"].bool_param = False
    with grpc.insecure_channel(server.grpc_target) as channel:
        response = pb.ModelInferResponse.FromString(channel.unary_unary(INFER)(request.SerializeToString(), timeout=30))
    assert not response.raw_output_contents and response.id == "typed"
    label, probabilities = response.outputs
    assert (label.name, label.datatype, list(label.shape)) == ("label", "INT64", [2])
    assert list(label.contents.int64_contents) == [0, 2]
    assert list(probabilities.shape) == [2, 3] and len(probabilities.contents.fp32_contents) == 6


def test_errors_carry_status_and_message(triton: tg.InferenceServerClient) -> None:
    tensor = tg.InferInput("input", [1, 3], "FP32")
    tensor.set_data_from_numpy(np.zeros((1, 3), dtype=np.float32))
    with pytest.raises(InferenceServerException) as bad_shape:
        triton.infer("iris", [tensor])
    assert bad_shape.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert "got shape [1, 3], expected [-1, 4]" in bad_shape.value.message()
    with pytest.raises(InferenceServerException) as failed:
        triton.infer("broken", [_iris_input([IRIS_ROW])])
    assert failed.value.status() == "StatusCode.UNAVAILABLE" and "FAILED" in failed.value.message()


def test_stream_answers_in_order_and_survives_errors(triton: tg.InferenceServerClient) -> None:
    results: queue.Queue[tuple[object, object]] = queue.Queue()
    triton.start_stream(callback=lambda result, error: results.put((result, error)))
    try:
        triton.async_stream_infer("iris", [_iris_input([IRIS_ROW])], request_id="s1")
        bad = tg.InferInput("input", [1, 3], "FP32")
        bad.set_data_from_numpy(np.zeros((1, 3), dtype=np.float32))
        triton.async_stream_infer("iris", [bad], request_id="s2")
        triton.async_stream_infer("iris", [_iris_input([[6.7, 3.0, 5.2, 2.3]])], request_id="s3")
        received = [results.get(timeout=30) for _ in range(3)]
    finally:
        triton.stop_stream()
    (first, e1), (_, e2), (third, e3) = received
    assert e1 is None and e3 is None
    assert first.get_response().id == "s1" and first.as_numpy("label").tolist() == [0]
    assert third.get_response().id == "s3" and third.as_numpy("label").tolist() == [2]
    assert isinstance(e2, InferenceServerException) and "got shape [1, 3]" in e2.message()


def test_async_client_many_concurrent_requests(server: testing.run) -> None:
    import asyncio

    import tritonclient.grpc.aio as tga

    async def burst() -> list[list[int]]:
        client = tga.InferenceServerClient(server.grpc_target)
        try:
            rows = [IRIS_ROW, [6.7, 3.0, 5.2, 2.3]]
            results = await asyncio.gather(*(client.infer("iris", [_iris_input([rows[i % 2]])]) for i in range(64)))
            return [r.as_numpy("label").tolist() for r in results]
        finally:
            await client.close()

    labels = asyncio.run(burst())
    assert labels == [[0] if i % 2 == 0 else [2] for i in range(64)]


def test_request_whose_deadline_passes_in_the_queue_is_not_run(repo) -> None:
    """With the only worker busy, a request waits; once its deadline passes it is dropped, not run."""
    import asyncio
    import threading
    import time

    from modelserve.errors import DeadlineExceeded
    from modelserve.types import InferInput, InferRequest

    busy = threading.Event()

    async def scenario(manager, pool) -> tuple[str, list[int]]:
        blocker = pool.submit(busy.wait, 30)  # occupies the single inference thread
        request = InferRequest([InferInput("input", "FP32", np.array([IRIS_ROW], dtype=np.float32))])
        with manager.acquire("iris") as handle:
            late = asyncio.ensure_future(handle.infer(request, deadline=time.monotonic() + 0.05))
            await asyncio.sleep(0.2)  # the deadline passes while the request is queued
            busy.set()
            try:
                await late
                outcome = "ran"
            except DeadlineExceeded as exc:
                outcome = exc.message
        await asyncio.wrap_future(blocker)
        with manager.acquire("iris") as handle:  # a request with time left still runs
            labels = (await handle.infer(request, deadline=time.monotonic() + 30)).outputs[0].data.tolist()
        return outcome, labels

    with testing.run(repo, inference_threads=1) as srv:
        outcome, labels = srv.call(scenario(srv.server.manager, srv.server.pool))
        assert "deadline passed" in outcome and "it was not run" in outcome
        assert labels == [0]
        with grpc.insecure_channel(srv.grpc_target) as channel:  # the transport maps it to DEADLINE_EXCEEDED
            busy.clear()
            srv.call(_occupy(srv.server.pool, busy))
            request = pb.ModelInferRequest(model_name="iris")
            request.inputs.add(name="input", datatype="FP32", shape=[1, 4]).contents.fp32_contents.extend(IRIS_ROW)
            with pytest.raises(grpc.RpcError) as err:
                channel.unary_unary(INFER)(request.SerializeToString(), timeout=0.2)
            busy.set()
            assert err.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
            ok = pb.ModelInferResponse.FromString(channel.unary_unary(INFER)(request.SerializeToString(), timeout=30))
            assert ok.model_name == "iris"


async def _occupy(pool, event) -> None:
    pool.submit(event.wait, 30)
