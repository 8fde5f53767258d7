"""``device: cuda`` in config.yaml: used where a GPU runtime can use one, and a clear load failure
where it cannot. CI has no GPU, so this checks the failures users meet on a CPU-only install; the
CPU default must stay untouched by the option's existence."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from modelserve import testing
from tests.fixtures.models import _save_onnx, adder_model, build_format


def _with_device(root: Path, model: str, device: str) -> None:
    config = root / model / "config.yaml"
    existing = config.read_text() if config.exists() else ""
    config.write_text(existing + f"\ndevice: {device}\n")


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("device")
    _save_onnx(root / "onnx-gpu" / "1" / "model.onnx", adder_model(1.0))
    _with_device(root, "onnx-gpu", "cuda")
    _save_onnx(root / "onnx-cpu" / "1" / "model.onnx", adder_model(1.0))
    _with_device(root, "onnx-cpu", "cpu")
    build_format("torch", root)
    _with_device(root, "torch-iris", "cuda:0")
    build_format("xgboost", root)
    _with_device(root, "xgboost-iris", "cuda")
    build_format("lightgbm", root)
    for model in [p.name for p in root.iterdir() if p.name.startswith("lightgbm")]:
        _with_device(root, model, "cuda")
    return root


@pytest.fixture(scope="module")
def index(repo: Path) -> dict[str, dict[str, str]]:
    with testing.run(repo) as srv:
        rows = httpx.post(f"{srv.http_url}/v2/repository/index", json={}).json()
    return {row["name"]: row for row in rows}


@pytest.mark.parametrize(
    ("model", "words"),
    [
        ("onnx-gpu", ["device 'cuda'", "no CUDA provider", "onnxruntime-gpu"]),
        ("torch-iris", ["device 'cuda:0'", "torch sees no CUDA device"]),
        ("xgboost-iris", ["device 'cuda'", "built without CUDA"]),
    ],
)
def test_a_gpu_model_without_a_gpu_fails_with_the_reason(
    index: dict[str, dict[str, str]], model: str, words: list[str]
) -> None:
    row = index[model]
    assert row["state"] == "FAILED"
    for word in words:
        assert word in row["reason"]


def test_cpu_only_runtimes_refuse_a_gpu(index: dict[str, dict[str, str]]) -> None:
    rows = [row for name, row in index.items() if name.startswith("lightgbm")]
    assert rows and all(row["state"] == "FAILED" and "runs on CPU only" in row["reason"] for row in rows)


def test_device_cpu_is_the_default_behaviour(index: dict[str, dict[str, str]]) -> None:
    assert index["onnx-cpu"]["state"] == "READY"
