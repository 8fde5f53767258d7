"""graph.yaml: structure checks (pure), checks against a real manager's models, and execution of
graphs in-process over real ONNX models (adder: y = x + version, FP32 [-1, 3]; iris)."""

from __future__ import annotations

import asyncio
import sys
import textwrap
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pytest
import yaml
from skl2onnx import to_onnx
from skl2onnx.common.data_types import FloatTensorType

from modelserve.core.manager import ModelManager
from modelserve.core.pool import Pool
from modelserve.errors import InvalidInput, LoadError, ModelNotReady, RuntimeFailure
from modelserve.routing.graph import PLATFORM, Graph, GraphComposer, node_timings
from modelserve.routing.graph_spec import Combine, check_graph
from modelserve.routing.nodes import make_step
from modelserve.types import TensorSpec
from tests.fixtures.models import _save_onnx, adder_model, iris_classifier

T = TypeVar("T")
X3 = {"name": "x", "datatype": "FP32", "shape": [-1, 3]}


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("graph-models")
    for version in (1, 2):
        _save_onnx(root / "adder" / str(version) / "model.onnx", adder_model(float(version)))
    (root / "adder" / "config.yaml").write_text("version_policy: {latest: 2}\nversion_labels: {stable: 1}\n")
    classifier = iris_classifier()
    options = {id(classifier): {"zipmap": False}}
    onnx_model = to_onnx(classifier, initial_types=[("input", FloatTensorType([None, 4]))], options=options)
    (root / "iris" / "1").mkdir(parents=True)
    (root / "iris" / "1" / "model.onnx").write_bytes(onnx_model.SerializeToString())
    (root / "iris" / "config.yaml").write_text("signature: {outputs: [{name: label}, {name: probabilities}]}\n")
    (root / "broken" / "1").mkdir(parents=True)
    (root / "broken" / "1" / "model.onnx").write_bytes(b"not onnx")
    return root


Doc = dict[str, Any]


def _doc(nodes: list[Doc], outputs: list[dict[str, str]], inputs: list[Doc] | None = None) -> Doc:
    return {"inputs": inputs or [X3], "outputs": outputs, "nodes": nodes}


def _adder(name: str = "a", source: str = "x", **route: Any) -> dict[str, Any]:
    return {"name": name, "kind": "model", "model": "adder", "inputs": {"x": source}, **route}


def _structure_error(tmp_path: Path, doc: object) -> str:
    with pytest.raises(LoadError) as info:
        check_graph(doc, tmp_path)
    return info.value.message


@asynccontextmanager
async def _manager(repo: Path) -> AsyncIterator[ModelManager]:
    pool = Pool(2)
    manager = ModelManager(pool, repo)
    await manager.load_repository(manager.discover())
    try:
        yield manager
    finally:
        await manager.shutdown()
        pool.shutdown()


def _write(directory: Path, doc: object, files: dict[str, str] | None = None) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "graph.yaml").write_text(yaml.safe_dump(doc))
    for name, text in (files or {}).items():
        (directory / name).write_text(textwrap.dedent(text))
    return directory


def _with_graph(
    repo: Path, directory: Path, use: Callable[[Graph, ModelManager], Awaitable[T]], trust_code: bool = False
) -> T:
    async def go() -> T:
        async with _manager(repo) as manager:
            graph = await GraphComposer(manager, trust_code=trust_code)("g", directory)
            try:
                return await use(graph, manager)
            finally:
                graph.close()

    return asyncio.run(go())


def _load_error(repo: Path, directory: Path, trust_code: bool = False) -> str:
    async def go() -> str:
        async with _manager(repo) as manager:
            with pytest.raises(LoadError) as info:
                await GraphComposer(manager, trust_code=trust_code)("g", directory)
            return info.value.message

    return asyncio.run(go())


# -- structure -----------------------------------------------------------------------------


def test_a_cycle_is_named(tmp_path: Path) -> None:
    nodes = [_adder("a", "b.y"), _adder("b", "a.y")]
    message = _structure_error(tmp_path, _doc(nodes, [{"name": "y", "from": "a.y"}]))
    assert "graph.yaml" in message and "cycle: a -> b -> a" in message


def test_unknown_sources_are_named(tmp_path: Path) -> None:
    message = _structure_error(tmp_path, _doc([_adder("a", "nope.y")], [{"name": "y", "from": "a.y"}]))
    assert "node input 'x' reads 'nope.y', but there is no node 'nope'" in message
    message = _structure_error(tmp_path, _doc([_adder("a", "z")], [{"name": "y", "from": "a.y"}]))
    assert "'z', which is not a graph input" in message and "node.output" in message
    message = _structure_error(tmp_path, _doc([_adder("a")], [{"name": "y", "from": "b.y"}]))
    assert "graph output 'y' (from) reads 'b.y', but there is no node 'b'" in message


def test_duplicate_names_unknown_keys_and_kinds(tmp_path: Path) -> None:
    out = [{"name": "y", "from": "a.y"}]
    assert "duplicate node name(s) ['a']" in _structure_error(tmp_path, _doc([_adder(), _adder()], out))
    assert "duplicate graph input name(s) ['x']" in _structure_error(tmp_path, _doc([_adder()], out, [X3, X3]))
    typo = {**_adder(), "verison": 2}
    message = _structure_error(tmp_path, _doc([typo], out))
    assert "node 'a' (model model) has unknown key(s) ['verison']" in message
    message = _structure_error(tmp_path, _doc([{**_adder(), "kind": "ensemble"}], out))
    assert "node 'a': kind must be one of ['transformer', 'model', 'combiner', 'router'], got 'ensemble'" in message
    message = _structure_error(tmp_path, {**_doc([_adder()], out), "edges": []})
    assert "the document has unknown key(s) ['edges']" in message
    standardize = {"name": "s", "kind": "transformer", "transform": "standardize", "mean": [1], "inputs": {"x": "x"}}
    message = _structure_error(tmp_path, _doc([standardize], [{"name": "y", "from": "s.y"}]))
    assert "node 's': std must be a non-empty list of finite numbers, got None" in message


def test_nodes_that_feed_nothing_and_unread_inputs_are_errors(tmp_path: Path) -> None:
    nodes = [_adder("a"), _adder("b"), _adder("c", "b.y")]
    message = _structure_error(tmp_path, _doc(nodes, [{"name": "y", "from": "a.y"}]))
    assert "node(s) ['b', 'c'] feed no graph output" in message
    inputs = [X3, {"name": "unused", "datatype": "FP32", "shape": [-1]}]
    message = _structure_error(tmp_path, _doc([_adder()], [{"name": "y", "from": "a.y"}], inputs))
    assert "graph input(s) ['unused'] are read by no node or output" in message


def test_code_and_stats_files_stay_inside_the_graph_directory(tmp_path: Path) -> None:
    (tmp_path / "outside.py").write_text("class T: pass\n")
    inner = tmp_path / "g"
    inner.mkdir()
    node = {"name": "t", "kind": "transformer", "code": "../outside.py", "class": "T", "inputs": {"x": "x"}}
    node["produces"] = [X3 | {"name": "y"}]
    message = _structure_error(inner, _doc([node], [{"name": "y", "from": "t.y"}]))
    assert "code: '../outside.py' is outside the graph directory" in message
    scale = {
        "name": "s",
        "kind": "transformer",
        "transform": "standardize",
        "stats": "/etc/passwd",
        "inputs": {"x": "x"},
    }
    message = _structure_error(inner, _doc([scale], [{"name": "y", "from": "s.y"}]))
    assert "stats: '/etc/passwd' is outside the graph directory" in message


# -- against the served models ---------------------------------------------------------------


def test_missing_and_unready_models_are_all_named(repo: Path, tmp_path: Path) -> None:
    nodes = [
        {"name": "a", "kind": "model", "model": "nope", "inputs": {"x": "x"}},
        {"name": "b", "kind": "model", "model": "broken", "inputs": {"x": "x"}},
        _adder("c", version=7),
        _adder("d", label="canary"),
    ]
    outputs = [{"name": n, "from": f"{n}.y"} for n in "abcd"]
    message = _load_error(repo, _write(tmp_path / "g", _doc(nodes, outputs)))
    assert "graph.yaml" in message
    assert "node 'a' calls model 'nope', which is not in the repository" in message
    assert "node 'b' calls model 'broken', which is not READY" in message and "FAILED" in message
    assert "node 'c' calls model 'adder' version 7, which is not served: model 'adder' has no version 7" in message
    assert "node 'd' calls model 'adder' label 'canary', which is not served" in message
    assert "has no version label 'canary'" in message


def test_incompatible_signatures_are_explained(repo: Path, tmp_path: Path) -> None:
    four = {"name": "x", "datatype": "FP32", "shape": [-1, 4]}
    select = {"name": "sel", "kind": "transformer", "transform": "select", "columns": [0, 1], "inputs": {"x": "x"}}
    doc = _doc([select, _adder("a", "sel.y")], [{"name": "y", "from": "a.y"}], [four])
    message = _load_error(repo, _write(tmp_path / "shape", doc))
    assert "node 'a' input 'x' expects FP32 [-1, 3] but sel.y gives FP32 [-1, 2] (model 'adder')" in message
    cast = {"name": "c", "kind": "transformer", "transform": "cast", "datatype": "FP64", "inputs": {"x": "x"}}
    doc = _doc([cast, _adder("a", "c.y")], [{"name": "y", "from": "a.y"}])
    message = _load_error(repo, _write(tmp_path / "dtype", doc))
    assert "node 'a' input 'x' expects FP32 [-1, 3] but c.y gives FP64 [-1, 3]" in message
    doc = _doc([_adder("a")], [{"name": "y", "from": "a.probabilities"}])
    message = _load_error(repo, _write(tmp_path / "output", doc))
    assert "graph output 'y' reads a.probabilities, but node 'a' has no output 'probabilities'" in message
    misnamed = {"name": "a", "kind": "model", "model": "adder", "inputs": {"input": "x"}}
    doc = _doc([misnamed], [{"name": "y", "from": "a.y"}])
    message = _load_error(repo, _write(tmp_path / "names", doc))
    assert "node 'a' feeds input(s) ['input'], but model 'adder' has inputs ['x']" in message
    vote = {"name": "m", "kind": "combiner", "combine": "mean", "inputs": ["x", "i.probabilities"]}
    iris = {"name": "i", "kind": "model", "model": "iris", "inputs": {"input": "x"}}
    doc = _doc([iris, vote], [{"name": "y", "from": "m.y"}], [four])
    message = _load_error(repo, _write(tmp_path / "combine", doc))
    assert "node 'm': mean cannot combine: x gives FP32 [-1, 4] but i.probabilities gives FP32 [-1, 3]" in message


def test_code_needs_trust_and_a_graph_cannot_call_itself(repo: Path, tmp_path: Path) -> None:
    node = {"name": "t", "kind": "transformer", "code": "t.py", "class": "T", "inputs": {"x": "x"}}
    node["produces"] = [X3 | {"name": "y"}]
    directory = _write(tmp_path / "code", _doc([node], [{"name": "y", "from": "t.y"}]), {"t.py": "class T: pass\n"})
    message = _load_error(repo, directory)
    assert "node 't' runs code from t.py, which needs --trust-code" in message
    directory = _write(tmp_path / "self", _doc([{**_adder(), "model": "g"}], [{"name": "y", "from": "a.y"}]))
    assert "node 'a' calls this graph itself" in _load_error(repo, directory)


# -- execution -------------------------------------------------------------------------------


def test_ensemble_matches_its_parts_and_times_each_node(repo: Path, tmp_path: Path) -> None:
    scale = {"name": "scale", "kind": "transformer", "transform": "standardize", "stats": "stats.json"}
    scale["inputs"] = {"x": "x"}
    nodes = [
        scale,
        _adder("one", "scale.y", version=1),
        _adder("two", "scale.y", label="stable"),
        {**_adder("three", "scale.y", version=2), "outputs": {"z": "y"}},
        {
            "name": "avg",
            "kind": "combiner",
            "combine": "weighted_mean",
            "weights": [1, 1, 2],
            "inputs": ["one.y", "two.y", "three.z"],
        },
        {"name": "sel", "kind": "transformer", "transform": "select", "columns": [2, 0], "inputs": {"v": "x"}},
    ]
    outputs = [{"name": "mean", "from": "avg.y"}, {"name": "picked", "from": "sel.y"}, {"name": "echo", "from": "x"}]
    stats = '{"mean": [1, 2, 3], "std": [2, 4, 8], "comment": "ignored"}'
    directory = _write(tmp_path / "g", _doc(nodes, outputs), {"stats.json": stats})
    x = np.array([[1, 2, 3], [5, 6, 7]], np.float32)

    async def use(graph: Graph, manager: ModelManager) -> None:
        assert graph.platform == PLATFORM
        assert [(t.name, t.datatype, t.shape) for t in graph.signature.outputs] == [
            ("mean", "FP32", (-1, 3)), ("picked", "FP32", (-1, 2)), ("echo", "FP32", (-1, 3))
        ]  # fmt: skip
        result = await graph.predict({"x": x}, None)
        z = (x - np.array([1, 2, 3], np.float32)) / np.array([2, 4, 8], np.float32)
        np.testing.assert_allclose(result["mean"], ((z + 1) + (z + 1) + 2 * (z + 2)) / 4, rtol=1e-6)
        np.testing.assert_array_equal(result["picked"], x[:, [2, 0]])
        assert result["echo"] is x
        timings = node_timings.get()
        assert timings is not None and sorted(t[0] for t in timings) == sorted(n["name"] for n in nodes)
        assert all(start <= end for _, start, end in timings)
        # only what the requested outputs need runs
        await graph.predict({"x": x}, ["picked"])
        assert [t[0] for t in node_timings.get() or []] == ["sel"]
        assert graph.node_seconds["sel"].count == 2 and graph.node_seconds["one"].count == 1
        counted = manager.stats.versions[("adder", "2")].requests
        assert counted == {("graph", "success"): 1}  # the called model counts the call

    _with_graph(repo, directory, use)


def test_errors_name_the_node_and_keep_their_kind(repo: Path, tmp_path: Path) -> None:
    anything = {"name": "x", "datatype": "FP32", "shape": [-1, -1]}
    raising = {"name": "boom", "kind": "transformer", "code": "boom.py", "class": "Boom", "inputs": {"v": "x"}}
    raising["produces"] = [{"name": "y", "datatype": "FP32", "shape": [-1, -1]}]
    nodes = [_adder("a"), raising]
    doc = _doc(nodes, [{"name": "y", "from": "a.y"}, {"name": "b", "from": "boom.y"}], [anything])
    code = "class Boom:\n    def __call__(self, inputs):\n        raise ValueError('no')\n"
    directory = _write(tmp_path / "g", doc, {"boom.py": code})

    async def use(graph: Graph, manager: ModelManager) -> None:
        with pytest.raises(
            InvalidInput, match=r"node 'a' of graph 'g': input 'x' of model 'adder' .*got shape \[1, 2\]"
        ):
            await graph.predict({"x": np.zeros((1, 2), np.float32)}, ["y"])
        with pytest.raises(RuntimeFailure, match="node 'boom' of graph 'g' raised ValueError: no"):
            await graph.predict({"x": np.zeros((1, 3), np.float32)}, None)
        await manager.unload_model("adder")
        with pytest.raises(ModelNotReady, match="node 'a' of graph 'g': model 'adder'"):
            await graph.predict({"x": np.zeros((1, 3), np.float32)}, ["y"])

    _with_graph(repo, directory, use, trust_code=True)


def test_trusted_code_and_router(repo: Path, tmp_path: Path) -> None:
    code = """\
    import numpy as np

    class Double:
        def __init__(self, factor=2):
            self.factor = factor

        def __call__(self, inputs):
            return {"twice": inputs["v"] * self.factor, "rows": np.arange(len(inputs["v"]))}
    """
    double = {"name": "d", "kind": "transformer", "code": "double.py", "class": "Double", "inputs": {"v": "x"}}
    double["options"] = {"factor": 3}
    double["produces"] = [X3 | {"name": "twice"}, {"name": "rows", "datatype": "INT32", "shape": [-1]}]
    router = {"name": "r", "kind": "router", "inputs": {"x": "d.twice"}}
    router["routes"] = [{"model": "adder", "version": 1}, {"model": "adder", "version": 2, "weight": 1}]
    outputs = [{"name": "y", "from": "r.y"}, {"name": "rows", "from": "d.rows"}]
    directory = _write(tmp_path / "g", _doc([double, router], outputs), {"double.py": code})
    x = np.ones((2, 3), np.float32)

    async def use(graph: Graph, manager: ModelManager) -> None:
        modules = [m for m in sys.modules if m.startswith("_modelserve_graph_code_")]
        seen = set()
        for _ in range(40):
            result = await graph.predict({"x": x}, None)
            assert result["rows"].dtype == np.int32 and list(result["rows"]) == [0, 1]
            seen.add(float(result["y"][0, 0]))
        assert seen == {4.0, 5.0}  # 3 + 1 or 3 + 2: both routes answer
        graph.close()
        assert not any(m in sys.modules for m in modules)

    _with_graph(repo, directory, use, trust_code=True)


def test_majority_vote_over_labels_and_scores() -> None:
    specs = {
        "0": TensorSpec("a.label", "INT64", (-1,)),
        "1": TensorSpec("b.probabilities", "FP32", (-1, 3)),
        "2": TensorSpec("c.label", "INT32", (-1,)),
    }
    step = make_step(Combine("majority_vote"), specs, "graph.yaml: node 'v'")
    assert step.outputs == (TensorSpec("label", "INT64", (-1,)),)
    scores = np.array([[0.1, 0.8, 0.1], [0.7, 0.2, 0.1], [0.1, 0.1, 0.8]], np.float32)
    votes = step({"0": np.array([1, 2, 0]), "1": scores, "2": np.array([2, 1, 1], np.int32)})
    # row 0: 1, 1, 2 -> 1; row 1: 2, 0, 1 -> a three-way tie, the smallest wins; row 2: 0, 2, 1 -> 0
    np.testing.assert_array_equal(votes["label"], [1, 0, 0])
    words = {str(i): TensorSpec(f"m{i}.label", "BYTES", (-1,)) for i in range(3)}
    step = make_step(Combine("majority_vote"), words, "graph.yaml: node 'v'")
    labels = [
        np.array([b"cat", b"dog"], object),
        np.array([b"dog", b"dog"], object),
        np.array([b"cat", b"ant"], object),
    ]
    np.testing.assert_array_equal(step(dict(zip("012", labels, strict=True)))["label"], [b"cat", b"dog"])
    with pytest.raises(LoadError, match="cannot compare BYTES labels with integer ones"):
        make_step(Combine("majority_vote"), {"0": words["0"], "1": specs["0"]}, "graph.yaml: node 'v'")
