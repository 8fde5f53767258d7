"""Payload logging: sampling, redaction, rotation, the logs CLI, and a broken sink that never fails
a request."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import numpy as np
import tritonclient.grpc as grpcclient
from click.testing import CliRunner

from modelserve import testing
from modelserve.cli.main import main
from modelserve.telemetry.payloads import Entry, PayloadSink, files, read
from tests.fixtures.models import _save_onnx, adder_model


def _body(i: int) -> dict[str, object]:
    return {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 3], "data": [i, i + 1, i + 2]}]}


def _repo(root: Path, config: str) -> Path:
    _save_onnx(root / "adder" / "1" / "model.onnx", adder_model(1.0))
    (root / "adder" / "config.yaml").write_text(config)
    _save_onnx(root / "quiet" / "1" / "model.onnx", adder_model(2.0))  # payload_log off
    return root


def _wait_for(directory: Path, count: int) -> list[dict[str, object]]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        entries = read(directory) if directory.is_dir() else []
        if len(entries) >= count:
            return entries
        time.sleep(0.05)
    raise AssertionError(f"fewer than {count} entries in {directory}")


def test_requests_and_answers_are_logged_with_redaction(tmp_path: Path) -> None:
    repo = _repo(tmp_path, "payload_log: {redact: [x]}\n")
    with testing.run(repo, access_log=True) as srv, httpx.Client(base_url=srv.http_url) as client:
        client.post("/v2/models/adder/infer", json=_body(1), headers={"X-Request-ID": "r-1"})
        client.post("/v2/models/quiet/infer", json=_body(1))
        grpc = grpcclient.InferenceServerClient(srv.grpc_target)
        tensor = grpcclient.InferInput("x", [1, 3], "FP32")
        tensor.set_data_from_numpy(np.array([[5, 6, 7]], dtype=np.float32))
        grpc.infer("adder", [tensor])
        grpc.close()
        entries = _wait_for(repo / ".modelserve" / "payloads", 2)
    assert [(e["model"], e["protocol"]) for e in entries] == [("adder", "rest"), ("adder", "grpc")]
    first = entries[0]
    assert first["request_id"] == "r-1" and first["version"] == "1"
    assert first["inputs"] == {"x": {"datatype": "FP32", "shape": [1, 3], "data": "[redacted]"}}
    assert first["outputs"] == {"y": {"datatype": "FP32", "shape": [1, 3], "data": [2.0, 3.0, 4.0]}}
    assert entries[1]["outputs"]["y"]["data"] == [6.0, 7.0, 8.0]  # type: ignore[index]


def test_sampling_logs_about_the_given_share(tmp_path: Path) -> None:
    repo = _repo(tmp_path, "payload_log: {sample: 0.25}\n")
    with testing.run(repo) as srv, httpx.Client(base_url=srv.http_url) as client:
        for i in range(400):
            assert client.post("/v2/models/adder/infer", json=_body(i)).status_code == 200
        time.sleep(0.5)
        logged = len(read(repo / ".modelserve" / "payloads"))
    assert 60 <= logged <= 140, logged  # 100 expected; 5 standard deviations either side


def test_files_rotate_and_old_ones_go(tmp_path: Path) -> None:
    sink = PayloadSink(tmp_path, max_file_bytes=400, keep_files=3)
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    for i in range(40):
        sink.put(Entry(float(i), f"r{i}", "m", "1", "rest", [("x", "FP32", x)], [("y", "FP32", x)]))
    sink.close()
    kept = files(tmp_path)
    assert len(kept) == 3 and all(p.stat().st_size <= 400 for p in kept)
    entries = read(tmp_path)
    assert [e["request_id"] for e in entries] == [f"r{i}" for i in range(40 - len(entries), 40)]  # the newest
    assert sink.counts.written == 40 and sink.counts.dropped == sink.counts.failed == 0


def test_a_broken_sink_never_fails_a_request(tmp_path: Path) -> None:
    repo = _repo(tmp_path, "payload_log: on\n")
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("a file where the log directory should be")
    with testing.run(repo, payload_log_dir=str(blocked / "payloads")) as srv, httpx.Client(base_url=srv.http_url) as c:
        for i in range(20):
            assert c.post("/v2/models/adder/infer", json=_body(i)).status_code == 200
        deadline = time.monotonic() + 10
        while srv.server.payloads is not None and srv.server.payloads.counts.failed < 20:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        metrics = c.get("/metrics").text
    assert 'modelserve_payload_log_entries_total{result="failed"} 20.0' in metrics


def test_a_full_queue_drops_and_counts(tmp_path: Path) -> None:
    sink = PayloadSink(tmp_path, queue_size=1)
    x = np.zeros((1, 1), dtype=np.float32)
    for i in range(2000):  # far faster than the writer: most are dropped, none blocks
        sink.put(Entry(0.0, str(i), "m", "1", "rest", [("x", "FP32", x)], []))
    sink.close()
    assert sink.counts.dropped > 0 and sink.counts.written + sink.counts.dropped == 2000


def test_the_logs_cli_queries_and_tails(tmp_path: Path) -> None:
    sink = PayloadSink(tmp_path / "payloads")
    x = np.zeros((1, 1), dtype=np.float32)
    now = time.time()
    for i, (model, at) in enumerate([("a", now - 3600), ("b", now - 60), ("a", now - 30), ("a", now)]):
        sink.put(Entry(at, f"r{i}", model, "1", "rest", [("x", "FP32", x)], []))
    sink.close()
    runner = CliRunner()
    base = ["logs", "--dir", str(tmp_path / "payloads")]
    result = runner.invoke(main, [*base, "query", "--model", "a", "--since", "10m"])
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["request_id"] for line in result.output.splitlines()] == ["r2", "r3"]
    result = runner.invoke(main, [*base, "tail", "-n", "2"])
    assert [json.loads(line)["request_id"] for line in result.output.splitlines()] == ["r2", "r3"]
    result = runner.invoke(main, [*base, "query", "--since", "soon"])
    assert result.exit_code == 2 and "expected a duration" in result.output
