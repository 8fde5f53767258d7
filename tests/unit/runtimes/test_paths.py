"""confined(): a path named inside a model file stays inside its directory; and the ONNX reader
that finds those paths finds every one that onnx itself knows of."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, external_data_helper, helper, numpy_helper

from modelserve.errors import LoadError
from modelserve.runtimes._paths import confined
from modelserve.runtimes.onnx import _external_tensors, check_external_data


@pytest.fixture
def base(tmp_path: Path) -> Path:
    (tmp_path / "outside.bin").write_bytes(b"secret")
    version = tmp_path / "model" / "1"
    (version / "sub").mkdir(parents=True)
    (version / "sub" / "w.bin").write_bytes(b"weights")
    (version / "inside-link.bin").symlink_to(version / "sub" / "w.bin")
    (version / "outside-link.bin").symlink_to(tmp_path / "outside.bin")
    (version / "dir-link").symlink_to(tmp_path, target_is_directory=True)
    return version


@pytest.mark.parametrize("relative", ["sub/w.bin", "./sub/w.bin", "inside-link.bin", "not-yet-there.bin"])
def test_paths_inside_resolve_inside(base: Path, relative: str) -> None:
    assert confined(base, relative, what="m.onnx") == (base / relative).resolve()


@pytest.mark.parametrize(
    ("relative", "words"),
    [
        ("/etc/passwd", "is absolute"),
        ("\\etc\\passwd", "is absolute"),
        ("C:\\Windows\\win.ini", "is absolute"),
        ("c:/x", "is absolute"),
        ("../outside.bin", "climbs out with '..'"),
        ("sub/../../outside.bin", "climbs out with '..'"),
        ("sub/..", "climbs out with '..'"),
        ("sub\\..\\..\\outside.bin", "climbs out with '..'"),
        ("outside-link.bin", "through a symlink"),
        ("dir-link/outside.bin", "through a symlink"),
        ("", "empty or holds a NUL"),
        ("w\x00.bin", "empty or holds a NUL"),
    ],
)
def test_paths_that_escape_are_refused_naming_the_value(base: Path, relative: str, words: str) -> None:
    with pytest.raises(LoadError) as raised:
        confined(base, relative, what="m.onnx: tensor 'w'")
    assert raised.value.message.startswith("m.onnx: tensor 'w': location ")
    assert repr(relative) in raised.value.message and words in raised.value.message


def test_a_symlink_loop_is_refused(base: Path) -> None:
    (base / "loop").symlink_to(base / "loop")
    with pytest.raises(LoadError, match="'loop'"):
        confined(base, "loop", what="m.onnx")


# --- the ONNX reader -----------------------------------------------------------------------------


def _tensor(name: str) -> onnx.TensorProto:
    return numpy_helper.from_array(np.arange(4, dtype=np.float32), name)


def _nested_model() -> onnx.ModelProto:
    """A tensor in every place onnx keeps one: initializer, Constant attribute, If subgraphs,
    sparse initializer, a function's Constant node, and a training graph."""
    then = helper.make_graph(
        [helper.make_node("Constant", [], ["t"], value=_tensor("then_const"))],
        "then",
        [],
        [helper.make_tensor_value_info("t", TensorProto.FLOAT, [4])],
        initializer=[_tensor("then_init")],
    )
    other = helper.make_graph(
        [helper.make_node("Identity", ["w"], ["e"])],
        "else",
        [],
        [helper.make_tensor_value_info("e", TensorProto.FLOAT, [4])],
    )
    sparse = helper.make_sparse_tensor(
        _tensor("sparse_values"), numpy_helper.from_array(np.arange(4, dtype=np.int64), "sparse_indices"), [8]
    )
    graph = helper.make_graph(
        [
            helper.make_node("Constant", [], ["c"], value=_tensor("const")),
            helper.make_node("If", ["cond"], ["y"], then_branch=then, else_branch=other),
        ],
        "main",
        [helper.make_tensor_value_info("cond", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])],
        initializer=[_tensor("w")],
        sparse_initializer=[sparse],
    )
    function = helper.make_function(
        "local", "f", [], ["o"], [helper.make_node("Constant", [], ["o"], value=_tensor("function_const"))], []
    )
    model = helper.make_model(graph, functions=[function])
    training = model.training_info.add()
    training.initialization.CopyFrom(helper.make_graph([], "init", [], [], initializer=[_tensor("training_init")]))
    return model


def test_the_reader_finds_every_external_tensor_that_onnx_knows(tmp_path: Path) -> None:
    model = _nested_model()
    for tensor in external_data_helper._get_all_tensors(model):
        external_data_helper.set_external_data(tensor, f"data/{tensor.name}.bin")
        tensor.data_location = TensorProto.EXTERNAL
    for tensor in (model.graph.sparse_initializer[0].values, model.graph.sparse_initializer[0].indices):
        external_data_helper.set_external_data(tensor, f"data/{tensor.name}.bin")
    for tensor in model.training_info[0].initialization.initializer:
        external_data_helper.set_external_data(tensor, f"data/{tensor.name}.bin")
    data = model.SerializeToString()
    found = {t.name: t.entries["location"] for t in _external_tensors(memoryview(data))}
    names = [*(t.name for t in external_data_helper._get_all_tensors(model)), "sparse_values", "sparse_indices"]
    assert found == {name: f"data/{name}.bin" for name in [*names, "training_init"]}


def test_a_model_without_external_data_has_none(tmp_path: Path) -> None:
    data = _nested_model().SerializeToString()
    assert list(_external_tensors(memoryview(data))) == []


def _external_model(path: Path, location: str, offset: int = 0, length: int = 16) -> Path:
    tensor = _tensor("w")
    external_data_helper.set_external_data(tensor, location, offset=offset, length=length)
    tensor.ClearField("raw_data")
    tensor.data_location = TensorProto.EXTERNAL
    graph = helper.make_graph([], "g", [], [], initializer=[tensor])
    path.write_bytes(helper.make_model(graph).SerializeToString())
    return path


@pytest.mark.parametrize(
    ("location", "offset", "length", "words"),
    [
        ("w.bin", 0, 16, None),
        ("w.bin", 8, 8, None),
        ("missing.bin", 0, 16, "'missing.bin' is not a file"),
        (".", 0, 16, "'.' is not a file"),
        ("w.bin", 8, 16, "offset 8 + length 16 lie outside 'w.bin' (16 bytes)"),
        ("../w.bin", 0, 16, "climbs out"),
        ("*/_ORT_MEM_ADDR_/*", 0, 16, "in-memory marker"),
    ],
)
def test_check_external_data(tmp_path: Path, location: str, offset: int, length: int, words: str | None) -> None:
    (tmp_path / "w.bin").write_bytes(bytes(16))
    artifact = _external_model(tmp_path / "model.onnx", location, offset, length)
    if words is None:
        check_external_data(artifact)
        return
    with pytest.raises(LoadError) as raised:
        check_external_data(artifact)
    assert raised.value.message.startswith("model.onnx: external data of tensor 'w'") and words in raised.value.message


@pytest.mark.parametrize(
    ("data", "words"),
    [(b"", "the file is empty"), (b"\x0a\xff", "cut short"), (b"\x3b\x00", "wire type 3"), (b"\x80" * 11, "varint")],
)
def test_a_file_that_is_not_protobuf_is_not_an_onnx_model(tmp_path: Path, data: bytes, words: str) -> None:
    (tmp_path / "model.onnx").write_bytes(data)
    with pytest.raises(LoadError, match=f"model.onnx: not an ONNX model.*{words}"):
        check_external_data(tmp_path / "model.onnx")
