"""Drives a running modelserve with KServe's own v2 clients and prints what they saw as JSON.

Run as a separate process by test_kserve_clients.py: the ``kserve`` package registers protobuf
messages named ``inference.*`` that clash with ``tritonclient.grpc``'s in one process.
Usage: python kserve_probe.py HTTP_URL GRPC_TARGET
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import numpy as np
from kserve import InferenceGRPCClient, InferenceRESTClient, InferInput, InferRequest, RESTConfig

ROWS = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]], dtype=np.float32)


def _request(rows: np.ndarray, binary: bool = False) -> InferRequest:
    tensor = InferInput("input", list(rows.shape), "FP32")
    tensor.set_data_from_numpy(rows, binary_data=binary)
    return InferRequest(model_name="iris", infer_inputs=[tensor], request_id="k1")


async def _error(call: Any) -> str:
    try:
        await call
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return "no error"


async def rest(url: str) -> dict[str, Any]:
    client = InferenceRESTClient(RESTConfig(protocol="v2", timeout=30))
    try:
        out: dict[str, Any] = {
            "live": await client.is_server_live(url),
            "ready": await client.is_server_ready(url),
            "model_ready": await client.is_model_ready(url, "iris"),
        }
        for binary in (False, True):
            response = await client.infer(url, _request(ROWS, binary), model_name="iris")
            out[f"labels_binary_{binary}"] = response.outputs[0].as_numpy().tolist()
            out["id"] = response.id
        out["bad_shape"] = await _error(client.infer(url, _request(ROWS[:, :3]), model_name="iris"))
        return out
    finally:
        await client.close()


async def grpc(target: str) -> dict[str, Any]:
    client = InferenceGRPCClient(target, timeout=30)
    try:
        response = await client.infer(_request(ROWS))
        return {
            "ready": await client.is_server_ready(),
            "model_ready": await client.is_model_ready("iris"),
            "labels": response.outputs[0].as_numpy().tolist(),
            "probabilities_shape": list(response.outputs[1].as_numpy().shape),
            "id": response.id,
            "bad_shape": await _error(client.infer(_request(ROWS[:, :3]))),
        }
    finally:
        await client.close()


async def main(url: str, target: str) -> None:
    print(json.dumps({"rest": await rest(url), "grpc": await grpc(target)}))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
