"""KServe's own Python clients (InferenceRESTClient, InferenceGRPCClient) against modelserve.

They run in a child process (kserve_probe.py): kserve and tritonclient.grpc both register
``inference.*`` protobuf messages, and protobuf refuses the second in one process.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from modelserve import testing

PROBE = Path(__file__).with_name("kserve_probe.py")


def test_kserve_rest_and_grpc_clients(server: testing.run) -> None:
    done = subprocess.run(
        [sys.executable, str(PROBE), server.http_url, server.grpc_target],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    rest, grpc = seen["rest"], seen["grpc"]
    assert rest["live"] and rest["ready"] and rest["model_ready"]
    assert rest["labels_binary_False"] == rest["labels_binary_True"] == [0, 2] and rest["id"] == "k1"
    assert "400" in rest["bad_shape"] and "got shape [2, 3], expected [-1, 4]" in rest["bad_shape"]
    assert grpc["ready"] and grpc["model_ready"] and grpc["id"] == "k1"
    assert grpc["labels"] == [0, 2] and grpc["probabilities_shape"] == [2, 3]
    assert "INVALID_ARGUMENT" in grpc["bad_shape"] and "got shape [2, 3]" in grpc["bad_shape"]
