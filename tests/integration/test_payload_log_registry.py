"""The payload log in the registry database (``--payload-log-sink registry``): a real server writes
it, ``modelserve logs --registry`` reads back what the files would hold, and a broken database
never fails a request."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import tritonclient.grpc as grpcclient
from click.testing import CliRunner
from sqlalchemy import create_engine, text

from modelserve import testing
from modelserve.cli.main import main
from modelserve.repository.registry import default_url
from tests.fixtures.models import _save_onnx, adder_model


def _body(i: int) -> dict[str, object]:
    return {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 3], "data": [i, i + 1, i + 2]}]}


def _repo(root: Path) -> Path:
    _save_onnx(root / "adder" / "1" / "model.onnx", adder_model(1.0))
    (root / "adder" / "config.yaml").write_text("payload_log: {redact: [x]}\n")
    _save_onnx(root / "other" / "1" / "model.onnx", adder_model(2.0))
    (root / "other" / "config.yaml").write_text("payload_log: on\n")
    _save_onnx(root / "quiet" / "1" / "model.onnx", adder_model(3.0))  # payload_log off
    return root


def _settle(srv: testing.run, count: int, result: str = "written") -> None:
    deadline = time.monotonic() + 10
    while srv.server.payloads is None or getattr(srv.server.payloads.counts, result) < count:
        assert time.monotonic() < deadline, f"fewer than {count} payload log entries {result}"
        time.sleep(0.02)


def _serve_and_log(repo: Path, **settings: Any) -> None:
    """Two REST requests to adder, one to quiet, one to other, one gRPC request to adder."""
    with testing.run(repo, **settings) as srv, httpx.Client(base_url=srv.http_url) as client:
        for i, model in enumerate(["adder", "quiet", "other", "adder"]):
            response = client.post(f"/v2/models/{model}/infer", json=_body(i), headers={"X-Request-ID": f"r-{i}"})
            assert response.status_code == 200
        grpc = grpcclient.InferenceServerClient(srv.grpc_target)
        tensor = grpcclient.InferInput("x", [1, 3], "FP32")
        tensor.set_data_from_numpy(np.array([[5, 6, 7]], dtype=np.float32))
        grpc.infer("adder", [tensor])
        grpc.close()
        _settle(srv, 4)


def _lines(*args: str) -> list[dict[str, Any]]:
    result = CliRunner().invoke(main, ["logs", *args])
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.output.splitlines()]


def _untimed(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in entry.items() if k != "time"} for entry in entries]


def test_the_registry_sink_gives_what_the_files_give(tmp_path: Path) -> None:
    files_repo, table_repo = _repo(tmp_path / "files"), _repo(tmp_path / "table")
    _serve_and_log(files_repo)
    _serve_and_log(table_repo, payload_log_sink="registry")
    assert not (table_repo / ".modelserve" / "payloads").exists()  # no files beside the table

    from_files = _lines("--repository", str(files_repo), "query")
    from_table = _lines("--repository", str(table_repo), "query", "--registry")
    assert len(from_table) == 4 and _untimed(from_table) == _untimed(from_files)
    assert [(e["model"], e["protocol"]) for e in from_table] == [
        ("adder", "rest"),
        ("other", "rest"),
        ("adder", "rest"),
        ("adder", "grpc"),
    ]
    assert [e["request_id"] for e in from_table[:3]] == ["r-0", "r-2", "r-3"]
    assert from_table[0]["inputs"]["x"]["data"] == "[redacted]"
    assert from_table[1]["outputs"]["y"]["data"] == [4.0, 5.0, 6.0]
    assert all(isinstance(e["time"], float) and e["time"] <= time.time() for e in from_table)

    # the other spellings: --registry before the subcommand, --url, a model, tail
    url = default_url(table_repo)
    assert _lines("--repository", str(table_repo), "--registry", "query") == from_table
    adder = _lines("--url", url, "query", "--model", "adder", "--since", "10m")
    assert [(e["request_id"], e["protocol"]) for e in adder] == [("r-0", "rest"), ("r-3", "rest"), (None, "grpc")]
    assert _lines("--repository", str(table_repo), "tail", "--registry", "-n", "2") == from_table[-2:]
    assert _lines("--url", url, "query", "--model", "adder", "--since", "10m") == adder


def test_the_logs_cli_explains_a_missing_or_ambiguous_source(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(main, ["logs", "--repository", str(tmp_path), "query", "--registry"])
    assert result.exit_code == 1 and "no payload log in sqlite:///" in result.output
    assert not (tmp_path / ".modelserve").exists()  # reading created nothing
    result = runner.invoke(main, ["logs", "--dir", str(tmp_path), "query", "--url", "sqlite:///x.db", "--dir", "y"])
    assert result.exit_code == 2 and "give one" in result.output
    result = runner.invoke(main, ["logs", "query", "--url", "mysql://u@h/db"])
    assert result.exit_code == 1 and "unsupported database 'mysql'" in result.output


def _failed_metric(client: httpx.Client) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith('modelserve_payload_log_entries_total{result="failed"}'):
            return float(line.split()[-1])
    raise AssertionError("no payload log metrics")


def test_a_database_that_cannot_be_created_never_fails_a_request(tmp_path: Path) -> None:
    repo = _repo(tmp_path / "repo")
    (repo / ".modelserve").write_text("a file where the registry's directory should be")
    with testing.run(repo, payload_log_sink="registry") as srv, httpx.Client(base_url=srv.http_url) as client:
        for i in range(20):
            assert client.post("/v2/models/adder/infer", json=_body(i)).status_code == 200
        _settle(srv, 20, "failed")
        assert _failed_metric(client) == 20.0
        assert srv.server.payloads is not None and srv.server.payloads.counts.written == 0


def test_a_table_dropped_mid_run_never_fails_a_request(tmp_path: Path) -> None:
    repo = _repo(tmp_path / "repo")
    with testing.run(repo, payload_log_sink="registry") as srv, httpx.Client(base_url=srv.http_url) as client:
        for i in range(5):
            assert client.post("/v2/models/adder/infer", json=_body(i)).status_code == 200
        _settle(srv, 5)
        engine = create_engine(default_url(repo))
        with engine.begin() as connection:
            connection.execute(text("DROP TABLE payloads"))
        engine.dispose()
        for i in range(10):
            assert client.post("/v2/models/other/infer", json=_body(i)).status_code == 200
        _settle(srv, 10, "failed")
        assert _failed_metric(client) == 10.0
        assert srv.server.payloads is not None and srv.server.payloads.counts.written == 5


def test_serve_takes_files_or_registry() -> None:
    result = CliRunner().invoke(main, ["serve", "models", "--payload-log-sink", "table"])
    assert result.exit_code == 2 and "'table' is not one of 'files', 'registry'" in result.output
