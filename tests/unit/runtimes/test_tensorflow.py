"""TensorFlowRuntime: signatures from the SavedModel, several signatures, dtypes, threads, errors,
concurrency, unload."""

from __future__ import annotations

import gc
import logging
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from modelserve.config.model import ModelConfig
from modelserve.errors import LoadError
from modelserve.runtimes import tensorflow as tf_runtime
from modelserve.runtimes.base import MultiSignatureRuntime
from modelserve.runtimes.tensorflow import TensorFlowRuntime
from modelserve.types import Signature
from tests.fixtures.models import build_format

tf = pytest.importorskip("tensorflow")

X = np.random.default_rng(5).uniform(0.1, 7.9, size=(16, 4)).astype(np.float32)


@pytest.fixture(scope="module")
def examples(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_format("tensorflow", tmp_path_factory.mktemp("tf"))


def load(version_dir: Path, threads: int = 1) -> tuple[TensorFlowRuntime, Signature]:
    runtime = TensorFlowRuntime()
    return runtime, runtime.load(version_dir / "saved_model.pb", ModelConfig(threads=threads))


def specs(signature: Signature) -> list[tuple[str, str, tuple[int, ...]]]:
    return [(t.name, t.datatype, t.shape) for t in (*signature.inputs, *signature.outputs)]


def save(path: Path, signatures: dict[str, Callable[..., Any]]) -> Path:
    module = tf.Module()
    module.fns = list(signatures.values())  # tracked, so that save() finds them
    tf.saved_model.save(module, str(path), signatures=signatures)
    return path


def fn(*specs: Any, body: Callable[..., Any] = lambda *a: {"y": a[0]}) -> Any:
    return tf.function(body, input_signature=list(specs))


def test_the_module_imports_the_library_not_itself() -> None:
    library = tf_runtime._import_tensorflow()
    assert library.__name__ == "tensorflow" and library is tf
    assert tf_runtime.__name__ == "modelserve.runtimes.tensorflow"


def test_signature_of_the_iris_savedmodel(examples: Path) -> None:
    runtime, signature = load(examples / "tf-iris" / "1")
    assert runtime.platform == "tensorflow_savedmodel"
    assert isinstance(runtime, MultiSignatureRuntime)
    assert specs(signature) == [  # outputs in name order, as in TF Serving's metadata
        ("features", "FP32", (-1, 4)),
        ("class_ids", "INT64", (-1,)),
        ("probabilities", "FP32", (-1, 3)),
    ]
    signatures = runtime.signatures()
    assert list(signatures) == ["serving_default", "predict_logits"]  # the default first
    assert signatures["serving_default"] == signature
    assert specs(signatures["predict_logits"]) == [("features", "FP32", (-1, 4)), ("logits", "FP32", (-1, 3))]


def test_predict_equals_each_signature_function(examples: Path) -> None:
    runtime, _ = load(examples / "tf-iris" / "1")
    native = tf.saved_model.load(str(examples / "tf-iris" / "1")).signatures
    for name in ("serving_default", "predict_logits"):
        expected = {k: v.numpy() for k, v in native[name](features=tf.constant(X)).items()}
        got = runtime.predict({"features": X}, signature=name)
        assert got.keys() == expected.keys()
        for key, value in expected.items():
            np.testing.assert_array_equal(got[key], value)
    default = runtime.predict({"features": X})
    np.testing.assert_array_equal(default["class_ids"], runtime.predict({"features": X}, signature=None)["class_ids"])


def test_requested_outputs_only(examples: Path) -> None:
    runtime, _ = load(examples / "tf-iris" / "1")
    assert list(runtime.predict({"features": X}, ["class_ids"])) == ["class_ids"]


def test_two_inputs_strings_bools_and_ints(examples: Path) -> None:
    runtime, signature = load(examples / "tf-scorer" / "1")
    assert specs(signature) == [
        ("word", "BYTES", (-1,)),
        ("x", "FP64", (-1, 2)),
        ("label", "BYTES", (-1,)),
        ("length", "INT32", (-1,)),
        ("positive", "BOOL", (-1,)),
        ("score", "FP64", (-1,)),
    ]
    words = np.array(["héllo".encode(), b"", b"ab"], dtype=object)
    x = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    out = runtime.predict({"x": x, "word": words})
    assert out["length"].tolist() == [5, 0, 2]  # UTF-8 characters, not bytes
    np.testing.assert_allclose(out["score"], [2.0, -2.0, 0.2])
    assert out["positive"].tolist() == [True, False, True]
    assert out["label"].tolist() == [b"positive", b"negative", b"positive"]


def test_empty_batch(examples: Path) -> None:
    runtime, _ = load(examples / "tf-iris" / "1")
    out = runtime.predict({"features": np.zeros((0, 4), np.float32)})
    assert out["class_ids"].shape == (0,) and out["probabilities"].shape == (0, 3)


def test_concurrent_predicts_agree_with_serial_ones(examples: Path) -> None:
    runtime, _ = load(examples / "tf-iris" / "1")
    batches = [X[i : i + 4] for i in range(0, 16, 2)] * 8
    signatures = ["serving_default", "predict_logits"] * (len(batches) // 2)
    jobs = list(zip(batches, signatures, strict=True))
    serial = [runtime.predict({"features": b}, signature=s) for b, s in jobs]
    with ThreadPoolExecutor(8) as pool:
        parallel = list(pool.map(lambda job: runtime.predict({"features": job[0]}, signature=job[1]), jobs))
    for one, other in zip(serial, parallel, strict=True):
        assert one.keys() == other.keys()
        for key in one:
            np.testing.assert_array_equal(one[key], other[key])


def test_unload_drops_the_model_and_its_functions(examples: Path) -> None:
    runtime, _ = load(examples / "tf-iris" / "1")
    model = weakref.ref(runtime.model)
    function = weakref.ref(runtime._functions["serving_default"])
    runtime.unload()
    gc.collect()
    assert runtime.model is None and model() is None and function() is None


def test_corrupt_saved_model_is_a_load_error_with_tensorflows_reason(examples: Path, tmp_path: Path) -> None:
    (tmp_path / "saved_model.pb").write_bytes(b"corrupt\x00this is not a model\n")
    with pytest.raises(LoadError, match=r"saved_model.pb: TensorFlow cannot load the SavedModel: .*parse") as info:
        TensorFlowRuntime().load(tmp_path / "saved_model.pb", ModelConfig())
    assert "\n" not in info.value.message


def test_missing_variables_is_a_load_error(examples: Path, tmp_path: Path) -> None:
    (tmp_path / "saved_model.pb").write_bytes((examples / "tf-iris" / "1" / "saved_model.pb").read_bytes())
    with pytest.raises(LoadError, match="TensorFlow cannot load the SavedModel"):
        TensorFlowRuntime().load(tmp_path / "saved_model.pb", ModelConfig())


def test_a_savedmodel_without_signatures_is_a_load_error(tmp_path: Path) -> None:
    tf.saved_model.save(tf.Module(), str(tmp_path))
    with pytest.raises(LoadError, match="no signatures to serve"):
        load(tmp_path)


def test_unsupported_dtype_in_the_default_signature_names_it(tmp_path: Path) -> None:
    save(tmp_path, {"serving_default": fn(tf.TensorSpec([None], tf.complex64, name="z"))})
    with pytest.raises(LoadError, match=r"'serving_default': input 'z' has TensorFlow dtype complex64"):
        load(tmp_path)


def test_other_signatures_with_unsupported_dtypes_are_left_out(tmp_path: Path, caplog: Any) -> None:
    save(
        tmp_path,
        {
            "serving_default": fn(tf.TensorSpec([None, 2], tf.int32, name="a")),
            "complex": fn(tf.TensorSpec([None], tf.complex64, name="z")),
        },
    )
    with caplog.at_level(logging.WARNING, logger="modelserve.runtimes.tensorflow"):
        runtime, signature = load(tmp_path)
    assert list(runtime.signatures()) == ["serving_default"]
    assert specs(signature) == [("a", "INT32", (-1, 2)), ("y", "INT32", (-1, 2))]
    assert "'complex' is not served" in caplog.text


def test_without_serving_default_the_first_signature_by_name_is_the_default(tmp_path: Path, caplog: Any) -> None:
    double = fn(tf.TensorSpec([None], tf.float64, name="v"), body=lambda v: {"y": v * 2})
    save(
        tmp_path,
        {"triple": fn(tf.TensorSpec([None], tf.float64, name="v"), body=lambda v: {"y": v * 3}), "double": double},
    )
    with caplog.at_level(logging.WARNING, logger="modelserve.runtimes.tensorflow"):
        runtime, _ = load(tmp_path)
    assert list(runtime.signatures()) == ["double", "triple"]
    assert runtime.predict({"v": np.array([1.0])})["y"].tolist() == [2.0]
    assert runtime.predict({"v": np.array([1.0])}, signature="triple")["y"].tolist() == [3.0]
    assert "no 'serving_default' signature" in caplog.text


def test_unknown_rank_is_reported_as_shape_empty(tmp_path: Path) -> None:
    save(tmp_path, {"serving_default": fn(tf.TensorSpec(None, tf.float32, name="any"))})
    _, signature = load(tmp_path)
    assert specs(signature) == [("any", "FP32", ()), ("y", "FP32", ())]


def test_missing_library_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(name: str) -> Any:
        raise ModuleNotFoundError(f"No module named {name!r}", name=name)

    monkeypatch.setattr(tf_runtime.importlib, "import_module", missing)
    with pytest.raises(LoadError, match=r"pip install 'modelserve\[tensorflow\]'"):
        TensorFlowRuntime().load(Path("saved_model.pb"), ModelConfig())


def test_a_broken_install_is_not_called_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(name: str) -> Any:
        raise ModuleNotFoundError("No module named 'tensorflow.python._pywrap'", name="tensorflow.python._pywrap")

    monkeypatch.setattr(tf_runtime.importlib, "import_module", broken)
    with pytest.raises(LoadError, match=r"tensorflow cannot be imported: .*_pywrap"):
        TensorFlowRuntime().load(Path("saved_model.pb"), ModelConfig())


class FakeThreading:
    def __init__(self, initialised: bool = False) -> None:
        self.initialised = initialised
        self.intra = self.inter = 0

    def set_intra_op_parallelism_threads(self, n: int) -> None:
        self._check()
        self.intra = n

    def set_inter_op_parallelism_threads(self, n: int) -> None:
        self._check()
        self.inter = n

    def get_intra_op_parallelism_threads(self) -> int:
        return self.intra

    def get_inter_op_parallelism_threads(self) -> int:
        return self.inter

    def _check(self) -> None:
        if self.initialised:
            raise RuntimeError("Intra op parallelism cannot be modified after initialization.")


def test_the_first_model_sizes_the_process_wide_pools(monkeypatch: pytest.MonkeyPatch, caplog: Any) -> None:
    monkeypatch.setattr(tf_runtime, "_threads", None)
    threading = FakeThreading()
    fake = SimpleNamespace(config=SimpleNamespace(threading=threading))
    with caplog.at_level(logging.WARNING, logger="modelserve.runtimes.tensorflow"):
        tf_runtime._size_thread_pools(fake, 3, Path("a/1"))
        assert (threading.intra, threading.inter) == (3, 3) and not caplog.text
        tf_runtime._size_thread_pools(fake, 3, Path("b/1"))
        assert not caplog.text
        tf_runtime._size_thread_pools(fake, 1, Path("c/1"))
    assert (threading.intra, threading.inter) == (3, 3)
    assert "c/1 asks for threads: 1" in caplog.text and "process-wide" in caplog.text


def test_pools_already_initialised_are_left_with_a_warning(monkeypatch: pytest.MonkeyPatch, caplog: Any) -> None:
    monkeypatch.setattr(tf_runtime, "_threads", None)
    fake = SimpleNamespace(config=SimpleNamespace(threading=FakeThreading(initialised=True)))
    with caplog.at_level(logging.WARNING, logger="modelserve.runtimes.tensorflow"):
        tf_runtime._size_thread_pools(fake, 2, Path("a/1"))
    assert "initialised in this process before modelserve loaded a/1" in caplog.text
