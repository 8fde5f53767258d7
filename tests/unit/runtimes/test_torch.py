"""TorchScriptRuntime: the declared signature, forward()'s return forms, threads, errors."""

from __future__ import annotations

import gc
import logging
import sys
import warnings
import weakref
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from modelserve.config.model import ModelConfig, parse_model_config
from modelserve.errors import LoadError, RuntimeFailure
from modelserve.runtimes import torch as torch_runtime
from modelserve.runtimes.torch import TorchScriptRuntime

ONE_IN = "signature: {inputs: [{name: x, datatype: FP32, shape: [-1, 2]}], outputs: %s}"
TWO_OUT = "[{name: doubled, datatype: FP32, shape: [-1, 2]}, {name: total, datatype: FP32, shape: [-1]}]"


class Pair(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x * 2, x.sum(dim=1)


class Named(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"total": x.sum(dim=1), "doubled": x * 2, "extra": x}


class Single(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 2


class Adder(torch.nn.Module):
    def forward(self, a: torch.Tensor, b: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
        return (a + b) * scale


def save(module: torch.nn.Module, tmp_path: Path) -> Path:
    path = tmp_path / "model.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript is deprecated upstream
        torch.jit.save(torch.jit.script(module), str(path))
    return path


def config(text: str, **extra: object) -> ModelConfig:
    import yaml

    return parse_model_config({**yaml.safe_load(text), **extra}, "config.yaml")


@pytest.fixture(autouse=True)
def _restore_threads(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(torch_runtime, "_threads", None)
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


X = np.array([[1.0, 2.0], [3.0, 4.0]], dtype=np.float32)


@pytest.mark.parametrize("module", [Pair(), Named()], ids=["tuple", "dict"])
def test_outputs_map_to_declared_names_by_position_or_key(tmp_path: Path, module: torch.nn.Module) -> None:
    runtime = TorchScriptRuntime()
    signature = runtime.load(save(module, tmp_path), config(ONE_IN % TWO_OUT))
    assert [t.name for t in signature.inputs] == ["x"]
    assert [(t.name, t.datatype, t.shape) for t in signature.outputs] == [
        ("doubled", "FP32", (-1, 2)),
        ("total", "FP32", (-1,)),
    ]
    out = runtime.predict({"x": X})
    assert set(out) == {"doubled", "total"}
    np.testing.assert_array_equal(out["doubled"], X * 2)
    np.testing.assert_array_equal(out["total"], X.sum(axis=1))


def test_a_single_tensor_is_the_single_output(tmp_path: Path) -> None:
    runtime = TorchScriptRuntime()
    runtime.load(save(Single(), tmp_path), config(ONE_IN % "[{name: y, datatype: FP32, shape: [-1, 2]}]"))
    np.testing.assert_array_equal(runtime.predict({"x": X})["y"], X * 2)


def test_inputs_go_to_forward_in_declared_order_and_defaults_may_be_left_out(tmp_path: Path) -> None:
    text = (
        "signature: {inputs: [{name: b, datatype: FP32, shape: [-1]}, {name: a, datatype: FP32, shape: [-1]}],"
        " outputs: [{name: y, datatype: FP32, shape: [-1]}]}"
    )
    runtime = TorchScriptRuntime()
    runtime.load(save(Adder(), tmp_path), config(text))
    out = runtime.predict({"a": np.array([1.0], np.float32), "b": np.array([10.0], np.float32)})
    np.testing.assert_array_equal(out["y"], [11.0])


def test_read_only_and_strided_inputs_work(tmp_path: Path) -> None:
    runtime = TorchScriptRuntime()
    runtime.load(save(Single(), tmp_path), config(ONE_IN % "[{name: y, datatype: FP32, shape: [-1, 2]}]"))
    frozen = X.copy()
    frozen.flags.writeable = False
    np.testing.assert_array_equal(runtime.predict({"x": frozen})["y"], X * 2)
    np.testing.assert_array_equal(runtime.predict({"x": X[::-1]})["y"], X[::-1] * 2)
    assert not frozen.flags.writeable  # the caller's array is left alone


@pytest.mark.parametrize(
    ("module", "outputs"),
    [
        (Pair(), "[{name: y, datatype: FP32, shape: [-1, 2]}]"),
        (Single(), TWO_OUT),
        (Named(), "[{name: nope, datatype: FP32, shape: [-1]}]"),
    ],
    ids=["tuple-too-long", "tensor-for-two", "dict-missing-key"],
)
def test_outputs_that_do_not_match_the_declaration_are_a_clear_error(
    tmp_path: Path, module: torch.nn.Module, outputs: str
) -> None:
    runtime = TorchScriptRuntime()
    runtime.load(save(module, tmp_path), config(ONE_IN % outputs))
    with pytest.raises(RuntimeFailure, match=r"forward\(\) returned .*config.yaml declares the outputs"):
        runtime.predict({"x": X})


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("metadata: {}", ["need a signature", "signature:", "datatype: FP32"]),
        ("signature: {inputs: [{name: x}], outputs: [{name: y}]}", ["datatype and a shape", "['x', 'y']"]),
        ("signature: {inputs: [{name: x, datatype: FP32, shape: [-1]}]}", ["need a signature"]),
    ],
    ids=["none", "incomplete", "no-outputs"],
)
def test_a_missing_or_incomplete_signature_fails_saying_how_to_declare_it(
    tmp_path: Path, text: str, words: list[str]
) -> None:
    with pytest.raises(LoadError) as info:
        TorchScriptRuntime().load(save(Single(), tmp_path), config(text))
    for word in words:
        assert word in info.value.message


def test_bytes_tensors_are_refused(tmp_path: Path) -> None:
    text = (
        "signature: {inputs: [{name: x, datatype: BYTES, shape: [-1]}],"
        " outputs: [{name: y, datatype: FP32, shape: [-1]}]}"
    )
    with pytest.raises(LoadError, match=r"\['x'\] are BYTES"):
        TorchScriptRuntime().load(save(Single(), tmp_path), config(text))


def test_declared_inputs_must_fit_forward(tmp_path: Path) -> None:
    text = (
        "signature: {inputs: [{name: a, datatype: FP32, shape: [-1]}],"
        " outputs: [{name: y, datatype: FP32, shape: [-1]}]}"
    )
    with pytest.raises(LoadError, match=r"forward\(\) takes \['a', 'b', 'scale'\] \(2 required\).*declares 1"):
        TorchScriptRuntime().load(save(Adder(), tmp_path), config(text))


def test_a_file_torch_cannot_read_fails_with_the_reason(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    path.write_bytes(b"not a zip")
    with pytest.raises(LoadError, match=r"model.pt: torch.jit.load cannot load it: RuntimeError: "):
        TorchScriptRuntime().load(path, config(ONE_IN % "[{name: y, datatype: FP32, shape: [-1, 2]}]"))


def test_threads_are_process_wide_the_largest_wins_and_disagreement_is_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = save(Single(), tmp_path)
    text = ONE_IN % "[{name: y, datatype: FP32, shape: [-1, 2]}]"
    TorchScriptRuntime().load(path, config(text, threads=2))
    assert torch.get_num_threads() == 2
    with caplog.at_level(logging.WARNING, logger="modelserve.runtimes.torch"):
        TorchScriptRuntime().load(path, config(text, threads=1))
    assert torch.get_num_threads() == 2
    assert "process-wide" in caplog.text and "asks for threads: 1" in caplog.text


def test_missing_torch_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` raise ImportError
    with pytest.raises(LoadError, match=r"pip install 'modelserve\[torch\]'"):
        TorchScriptRuntime().load(tmp_path / "model.pt", ModelConfig())


def test_the_module_is_the_real_library_not_this_package() -> None:
    assert torch_runtime.__name__ == "modelserve.runtimes.torch"
    assert torch.__name__ == "torch" and hasattr(torch, "jit")


def test_unload_drops_the_module(tmp_path: Path) -> None:
    runtime = TorchScriptRuntime()
    runtime.load(save(Single(), tmp_path), config(ONE_IN % "[{name: y, datatype: FP32, shape: [-1, 2]}]"))
    runtime.predict({"x": X})
    ref = weakref.ref(runtime.model)
    runtime.unload()
    gc.collect()
    assert runtime.model is None and ref() is None
