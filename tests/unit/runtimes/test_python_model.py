"""PythonRuntime: the model.py contract, signatures, module isolation, errors and thread safety."""

from __future__ import annotations

import gc
import sys
import textwrap
import threading
import weakref
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from modelserve.config.model import ModelConfig, parse_model_config
from modelserve.core.signature import adapt
from modelserve.errors import LoadError, RuntimeFailure
from modelserve.runtimes.python import PythonRuntime

SIGNATURE = """\
    signature = {
        "inputs": [{"name": "x", "datatype": "FP64", "shape": [-1]}],
        "outputs": [{"name": "y", "datatype": "FP64", "shape": [-1]}],
    }
"""

DOUBLER = f"""\
import numpy as np

class Model:
{SIGNATURE}
    def load(self, path):
        self.factor = float((path / "factor.txt").read_text())

    def predict(self, inputs):
        return {{"y": inputs["x"] * self.factor}}
"""


def write(tmp_path: Path, source: str, version: str = "1", **files: str) -> Path:
    version_dir = tmp_path / version
    version_dir.mkdir(parents=True, exist_ok=True)
    for name, text in {"model.py": source, **files}.items():
        (version_dir / name).write_text(textwrap.dedent(text))
    return version_dir / "model.py"


def loaded(artifact: Path, config: ModelConfig | None = None) -> PythonRuntime:
    runtime = PythonRuntime()
    runtime.load(artifact, config or ModelConfig())
    return runtime


def test_model_loads_its_files_and_predicts(tmp_path: Path) -> None:
    runtime = PythonRuntime()
    signature = runtime.load(write(tmp_path, DOUBLER, **{"factor.txt": "3"}), ModelConfig())
    assert [(t.name, t.datatype, t.shape) for t in signature.inputs] == [("x", "FP64", (-1,))]
    assert [t.name for t in signature.outputs] == ["y"]
    np.testing.assert_array_equal(runtime.predict({"x": np.array([1.0, 2.0])})["y"], [3.0, 6.0])


def test_the_only_class_with_predict_is_the_model_and_imported_classes_do_not_count(tmp_path: Path) -> None:
    source = f"""\
from collections import OrderedDict  # a class, without predict
from modelserve.runtimes.python import PythonRuntime  # a class with predict, not defined here

class Helper:
    pass

class Scorer:
{SIGNATURE}
    def predict(self, inputs):
        return {{"y": [len(inputs["x"])]}}  # a list: converted with np.asarray
"""
    runtime = loaded(write(tmp_path, source))
    assert type(runtime.model).__name__ == "Scorer"
    out = runtime.predict({"x": np.zeros(4)})
    assert isinstance(out["y"], np.ndarray) and out["y"].tolist() == [4]


@pytest.mark.parametrize(
    ("source", "words"),
    [
        ("class A:\n    pass\n", ["found none"]),
        ("class A:\n    def predict(self, i): pass\nclass B:\n    def predict(self, i): pass\n", ["found 2", "'A'"]),
        ("class Model:\n    pass\n", ["class Model has no predict"]),
    ],
    ids=["none", "two", "model-without-predict"],
)
def test_the_model_class_must_be_unambiguous(tmp_path: Path, source: str, words: list[str]) -> None:
    with pytest.raises(LoadError) as info:
        loaded(write(tmp_path, source))
    for word in words:
        assert word in info.value.message


def test_without_a_signature_anywhere_the_error_says_how_to_declare_one(tmp_path: Path) -> None:
    source = "class Model:\n    def predict(self, inputs):\n        return inputs\n"
    with pytest.raises(LoadError, match=r"(?s)need a signature.*class attribute.*signature = \{.*config.yaml") as info:
        loaded(write(tmp_path, source))
    assert "Model" in info.value.message


def test_the_config_signature_stands_in_when_the_class_declares_none(tmp_path: Path) -> None:
    source = "class Model:\n    def predict(self, inputs):\n        return {'out': inputs['in'] + 1}\n"
    config = parse_model_config(
        {
            "signature": {
                "inputs": [{"name": "in", "datatype": "INT32", "shape": [2]}],
                "outputs": [{"name": "out", "datatype": "INT32", "shape": [2]}],
            }
        },
        "config.yaml",
    )
    runtime = PythonRuntime()
    signature = runtime.load(write(tmp_path, source), config)
    assert signature.inputs[0].datatype == "INT32" and signature.inputs[0].shape == (2,)
    assert runtime.predict({"in": np.array([1, 2], np.int32)})["out"].tolist() == [2, 3]


def test_the_config_signature_renames_the_class_one_by_position(tmp_path: Path) -> None:
    config = parse_model_config({"signature": {"inputs": [{"name": "public_x"}]}}, "config.yaml")
    runtime = PythonRuntime()
    native = runtime.load(write(tmp_path, DOUBLER, **{"factor.txt": "1"}), config)
    adapter = adapt(native, config.signature)
    assert [t.name for t in adapter.public.inputs] == ["public_x"]
    assert adapter.input_names == {"public_x": "x"}  # predict still sees its own name


def test_a_malformed_class_signature_names_the_class_and_the_problem(tmp_path: Path) -> None:
    source = (
        "class Model:\n"
        "    signature = {'inputs': [{'name': 'x', 'datatype': 'FLOAT'}]}\n"
        "    def predict(self, i): pass\n"
    )
    with pytest.raises(LoadError, match=r"model.py: Model.signature: signature.inputs\[0\].datatype 'FLOAT'"):
        loaded(write(tmp_path, source))


def test_an_exception_in_load_fails_with_its_type_and_message(tmp_path: Path) -> None:
    source = f"""\
class Model:
{SIGNATURE}
    def load(self, path):
        raise ValueError("no weights here")

    def predict(self, inputs):
        return inputs
"""
    before = set(sys.modules)
    with pytest.raises(LoadError, match=r"^model.py: load failed: ValueError: no weights here$"):
        loaded(write(tmp_path, source))
    assert set(sys.modules) == before  # the failed module was forgotten


def test_an_import_error_fails_the_load_and_leaves_no_module_behind(tmp_path: Path) -> None:
    before = set(sys.modules)
    with pytest.raises(
        LoadError, match=r"model.py: import failed: ModuleNotFoundError: No module named 'nope_not_here'"
    ):
        loaded(write(tmp_path, "import nope_not_here\n"))
    assert set(sys.modules) == before


def test_an_exception_in_predict_propagates_unchanged(tmp_path: Path) -> None:
    source = f"class Model:\n{SIGNATURE}\n    def predict(self, inputs):\n        raise KeyError('oops')\n"
    runtime = loaded(write(tmp_path, source))
    with pytest.raises(KeyError, match="oops"):
        runtime.predict({"x": np.zeros(1)})


@pytest.mark.parametrize(
    ("returned", "match"),
    [("[1.0]", r"predict returned a list, expected a dict"), ("{'z': 1}", r"declared output\(s\) \['y'\]")],
)
def test_wrong_return_values_are_clear_errors(tmp_path: Path, returned: str, match: str) -> None:
    source = f"class Model:\n{SIGNATURE}\n    def predict(self, inputs):\n        return {returned}\n"
    runtime = loaded(write(tmp_path, source))
    with pytest.raises(RuntimeFailure, match=match):
        runtime.predict({"x": np.zeros(1)})


COUNTER = f"""\
import numpy as np
from .helpers import bump

class Model:
{SIGNATURE}
    def predict(self, inputs):
        return {{"y": np.array([float(bump())])}}
"""
HELPERS = "calls = 0\n\ndef bump():\n    global calls\n    calls += 1\n    return calls\n"


def test_versions_get_their_own_modules_sibling_files_import_relatively_and_unload_forgets_them(
    tmp_path: Path,
) -> None:
    path_before, modules_before = list(sys.path), set(sys.modules)
    one = loaded(write(tmp_path, COUNTER, "1", **{"helpers.py": HELPERS}))
    two = loaded(write(tmp_path, COUNTER, "2", **{"helpers.py": HELPERS}))
    x = {"x": np.zeros(1)}
    assert [one.predict(x)["y"][0], one.predict(x)["y"][0], two.predict(x)["y"][0]] == [1.0, 2.0, 1.0]
    assert sys.path == path_before
    added = set(sys.modules) - modules_before
    assert len(added) == 4  # two packages, each with its helpers submodule
    one.unload()
    two.unload()
    assert set(sys.modules) == modules_before


def test_unload_drops_the_instance(tmp_path: Path) -> None:
    runtime = loaded(write(tmp_path, DOUBLER, **{"factor.txt": "2"}))
    runtime.predict({"x": np.zeros(2)})
    ref = weakref.ref(runtime.model)
    runtime.unload()
    gc.collect()
    assert runtime.model is None and ref() is None


BARRIER = f"""\
import threading

class Model:
{SIGNATURE}
    thread_safe = {{safe}}
    barrier = threading.Barrier(2, timeout=2)

    def predict(self, inputs):
        try:
            self.barrier.wait()  # returns only if two predicts run at once
            return {{"y": [1.0]}}
        except threading.BrokenBarrierError:
            return {{"y": [0.0]}}
"""


@pytest.mark.parametrize(("safe", "overlapped"), [(False, 0.0), (True, 1.0)])
def test_predict_is_serialised_unless_the_class_says_it_is_thread_safe(
    tmp_path: Path, safe: bool, overlapped: float
) -> None:
    runtime = loaded(write(tmp_path, BARRIER.replace("{safe}", str(safe))))
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda _: runtime.predict({"x": np.zeros(1)})["y"][0], range(2)))
    assert overlapped in results
    assert isinstance(runtime._lock, type(threading.Lock())) is not safe
