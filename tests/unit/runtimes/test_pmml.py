"""PmmlRuntime: signatures, equality with scikit-learn, XML safety, the JVM's lifetime and errors."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

from modelserve.config.model import DEFAULT
from modelserve.errors import InvalidInput, LoadError
from modelserve.runtimes import pmml
from modelserve.runtimes.pmml import PmmlRuntime
from tests.fixtures.models import ROOT, build_format

IRIS = ("sepal_length", "sepal_width", "petal_length", "petal_width")
HEAD = '<?xml version="1.0" encoding="UTF-8"?>\n'
MIXED = """\
<PMML xmlns="http://www.dmg.org/PMML-4_4" version="4.4">
  <Header/>
  <DataDictionary numberOfFields="4">
    <DataField name="color" optype="categorical" dataType="string"><Value value="red"/><Value value="blue"/></DataField>
    <DataField name="count" optype="continuous" dataType="integer"/>
    <DataField name="x" optype="continuous" dataType="double"/>
    <DataField name="y" optype="continuous" dataType="double"/>
  </DataDictionary>
  <RegressionModel functionName="regression">
    <MiningSchema>
      <MiningField name="color"/><MiningField name="count"/><MiningField name="x"/>
      <MiningField name="y" usageType="target"/>
    </MiningSchema>
    <Output><OutputField name="y_hat" feature="predictedValue" dataType="double" optype="continuous"/></Output>
    <RegressionTable intercept="1">
      <NumericPredictor name="x" coefficient="2"/>
      <NumericPredictor name="count" coefficient="3"/>
      <CategoricalPredictor name="color" value="red" coefficient="10"/>
    </RegressionTable>
  </RegressionModel>
</PMML>
"""


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_format("pmml", tmp_path_factory.mktemp("pmml"))


def load(path: Path) -> PmmlRuntime:
    runtime = PmmlRuntime()
    runtime.load(path, DEFAULT)
    return runtime


def write(tmp_path: Path, text: str, name: str = "model.pmml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def iris_inputs() -> dict[str, np.ndarray]:
    from sklearn.datasets import load_iris

    data = load_iris().data
    return {name: data[:, i].copy() for i, name in enumerate(IRIS)}


def test_tree_signature_names_every_field(repo: Path) -> None:
    runtime = PmmlRuntime()
    signature = runtime.load(repo / "iris-pmml" / "1" / "model.pmml", DEFAULT)
    assert [(t.name, t.datatype, t.shape) for t in signature.inputs] == [(n, "FP64", (-1,)) for n in IRIS]
    assert all(t.accepts == {"FP32"} for t in signature.inputs)
    assert [(t.name, t.datatype) for t in signature.outputs] == [
        ("predicted_species", "BYTES"),
        ("probability_setosa", "FP64"),
        ("probability_versicolor", "FP64"),
        ("probability_virginica", "FP64"),
    ]
    assert runtime.platform == "pmml" and runtime.model is not None


@pytest.mark.parametrize("model", ["iris-pmml", "iris-forest-pmml"])
def test_trees_equal_scikit_learn(repo: Path, model: str) -> None:
    from sklearn.datasets import load_iris
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.tree import DecisionTreeClassifier

    iris = load_iris()
    labels = np.array(["setosa", "versicolor", "virginica"])[iris.target]
    if model == "iris-pmml":
        fitted = DecisionTreeClassifier(max_depth=3, random_state=0).fit(iris.data, labels)
    else:
        fitted = RandomForestClassifier(n_estimators=3, max_depth=3, random_state=0).fit(iris.data, labels)
    out = load(repo / model / "1" / "model.pmml").predict(iris_inputs())
    assert [v.decode() for v in out["predicted_species"]] == fitted.predict(iris.data).tolist()
    probabilities = np.stack([out[f"probability_{c}"] for c in fitted.classes_], axis=1)
    np.testing.assert_allclose(probabilities, fitted.predict_proba(iris.data), rtol=1e-12)


def test_regression_equals_scikit_learn(repo: Path) -> None:
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import Ridge

    diabetes = load_diabetes()
    ridge = Ridge(alpha=0.1).fit(diabetes.data, diabetes.target)
    runtime = load(repo / "diabetes-pmml" / "1" / "model.pmml")
    names = [t.name for t in runtime._inputs]
    out = runtime.predict({name: diabetes.data[:, i].copy() for i, name in enumerate(names)})
    assert list(out) == ["predicted_progression"]
    np.testing.assert_allclose(out["predicted_progression"], ridge.predict(diabetes.data), rtol=1e-12)


def test_mixed_field_types_get_their_own_datatypes(tmp_path: Path) -> None:
    runtime = PmmlRuntime()
    signature = runtime.load(write(tmp_path, HEAD + MIXED), DEFAULT)
    assert {t.name: t.datatype for t in signature.inputs} == {"color": "BYTES", "count": "INT64", "x": "FP64"}
    out = runtime.predict(
        {
            "color": np.array([b"red", b"blue"], dtype=object),
            "count": np.array([2, 0], dtype=np.int64),
            "x": np.array([0.5, 1.0]),
        }
    )
    np.testing.assert_array_equal(out["y_hat"], [1 + 1 + 6 + 10, 1 + 2])
    with pytest.raises(InvalidInput, match=r"'color'.*UTF-8"):
        runtime.predict({"color": np.array([b"\xff"], dtype=object), "count": np.array([1]), "x": np.array([1.0])})


def test_nan_is_a_missing_value_and_gives_a_missing_prediction(repo: Path) -> None:
    runtime = load(repo / "iris-pmml" / "1" / "model.pmml")
    setosa = (5.1, 3.5, 1.4, 0.2)
    out = runtime.predict({name: np.array([np.nan, value]) for name, value in zip(IRIS, setosa, strict=True)})
    assert out["predicted_species"][0] == b"" and out["predicted_species"][1] == b"setosa"
    assert np.isnan(out["probability_setosa"][0]) and out["probability_setosa"][1] == 1.0


def test_empty_batch_and_uneven_columns(repo: Path) -> None:
    runtime = load(repo / "iris-pmml" / "1" / "model.pmml")
    out = runtime.predict({name: np.zeros(0) for name in IRIS})
    assert {k: (v.shape, v.dtype.kind) for k, v in out.items()}["predicted_species"] == ((0,), "O")
    uneven = {name: np.zeros(2 if name == "petal_width" else 3) for name in IRIS}
    with pytest.raises(InvalidInput, match="same number of rows"):
        runtime.predict(uneven)


def test_concurrent_predictions_are_consistent(repo: Path) -> None:
    runtime = load(repo / "iris-forest-pmml" / "1" / "model.pmml")
    inputs = iris_inputs()
    expected = runtime.predict(inputs)
    failures: list[str] = []

    def work() -> None:
        for _ in range(20):
            got = runtime.predict(inputs)
            failures.extend(k for k in expected if not np.array_equal(got[k], expected[k]))

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []


class _Recorder(BaseHTTPRequestHandler):
    paths: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        self.paths.append(self.path)
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"leaked")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def web() -> Iterator[tuple[str, list[str]]]:
    """An HTTP server on port 0 that records what is fetched from it."""
    seen: list[str] = []
    handler = type("Recorder", (_Recorder,), {"paths": seen})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", seen
    server.shutdown()
    server.server_close()


@pytest.fixture
def pypmml_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records every document handed to pypmml (the guard must refuse before that)."""
    from pypmml import Model

    calls: list[str] = []
    original = Model.fromString.__func__  # type: ignore[attr-defined]

    def spy(cls: type, text: str) -> object:
        calls.append(text)
        return original(cls, text)

    monkeypatch.setattr(Model, "fromString", classmethod(spy))
    return calls


@pytest.mark.parametrize(
    "doctype",
    [
        '<!DOCTYPE PMML [<!ENTITY e SYSTEM "file:///etc/passwd">]>',
        '<!DOCTYPE PMML [<!ENTITY e SYSTEM "{url}/entity">]>',
        '<!DOCTYPE PMML SYSTEM "{url}/dtd">',
        '<!DOCTYPE PMML [<!ENTITY % p SYSTEM "{url}/parameter"> %p;]>',
    ],
    ids=["file-entity", "url-entity", "external-dtd", "parameter-entity"],
)
def test_external_entities_are_refused_and_nothing_is_read(
    tmp_path: Path, web: tuple[str, list[str]], pypmml_calls: list[str], doctype: str
) -> None:
    url, fetched = web
    text = (
        HEAD
        + doctype.format(url=url)
        + "\n"
        + MIXED.replace("<Header/>", "<Header><Annotation>&e;</Annotation></Header>")
    )
    with pytest.raises(LoadError, match=r"DOCTYPE or entity declaration.*refused"):
        load(write(tmp_path, text))
    assert fetched == [] and pypmml_calls == []


def test_billion_laughs_is_refused_at_once(tmp_path: Path, pypmml_calls: list[str]) -> None:
    entities = ['<!ENTITY lol0 "lol">'] + [f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, 10)]
    text = HEAD + f"<!DOCTYPE PMML [{''.join(entities)}]>\n" + MIXED.replace("<Header/>", "<Header>&lol9;</Header>")
    started = time.perf_counter()
    with pytest.raises(LoadError, match="DOCTYPE"):
        load(write(tmp_path, text))
    assert time.perf_counter() - started < 1 and pypmml_calls == []


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"corrupt\x00this is not a model artifact\n", "not well-formed XML"),
        (b"\xff\xfe<PMML/>", "must be UTF-8"),
        (b'<?xml version="1.0"?><note>hello</note>', "pypmml cannot load it"),
    ],
    ids=["garbage", "not-utf8", "not-pmml"],
)
def test_bad_files_fail_with_the_reason(tmp_path: Path, content: bytes, reason: str) -> None:
    path = tmp_path / "model.pmml"
    path.write_bytes(content)
    with pytest.raises(LoadError, match=reason):
        load(path)


def test_unsupported_field_type_is_named(tmp_path: Path) -> None:
    text = MIXED.replace(
        'name="count" optype="continuous" dataType="integer"', 'name="count" optype="continuous" dataType="date"'
    )
    with pytest.raises(LoadError, match="input field 'count' has PMML dataType 'date'"):
        load(write(tmp_path, text))


def test_missing_pypmml_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pypmml", None)
    with pytest.raises(LoadError, match=r"pypmml is not installed.*modelserve\[pmml\]"):
        load(write(tmp_path, MIXED))


def test_missing_or_broken_java_says_what_is_needed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pmml.shutil, "which", lambda name: None)
    with pytest.raises(LoadError, match="Java 8 or newer on the PATH; no 'java' command"):
        pmml._launch()
    fake = tmp_path / "java"
    fake.write_text("#!/bin/sh\necho 'Error: Could not create the Java Virtual Machine.' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setattr(pmml.shutil, "which", lambda name: str(fake))
    with pytest.raises(LoadError, match=r"Java 8 or newer.*did not start: Error: Could not create"):
        pmml._launch()


def test_the_gateway_refuses_clients_without_its_token(repo: Path) -> None:
    from py4j.java_gateway import GatewayParameters, JavaGateway
    from py4j.protocol import Py4JError
    from pypmml.jvm import Py4jGateway

    load(repo / "diabetes-pmml" / "1" / "model.pmml")
    port = Py4jGateway._gateway.gateway_parameters.port
    intruder = JavaGateway(gateway_parameters=GatewayParameters(port=port))
    try:
        with pytest.raises(Py4JError):
            intruder.jvm.java.lang.System.getProperty("user.name")
    finally:
        intruder.close()


def test_a_dead_jvm_is_replaced_on_the_next_load(repo: Path) -> None:
    # in a subprocess: killing this process's JVM would break the other tests' models
    script = f"""
        import os, numpy as np
        from pathlib import Path
        from modelserve.config.model import DEFAULT
        from modelserve.runtimes import pmml
        path = Path({str(repo / "diabetes-pmml" / "1" / "model.pmml")!r})
        pmml.PmmlRuntime().load(path, DEFAULT)
        first = pmml._jvm
        first.kill(); first.wait()
        runtime = pmml.PmmlRuntime()
        runtime.load(path, DEFAULT)
        out = runtime.predict({{t.name: np.zeros(1) for t in runtime._inputs}})
        print(pmml._jvm.pid != first.pid, out["predicted_progression"].shape)
    """
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[0] == "True (1,)"


def _java_children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # the process ended while we looked
            continue
        comm, rest = text[text.index("(") + 1 : text.rindex(")")], text[text.rindex(")") + 2 :].split()
        if comm == "java" and int(rest[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    """Running, as opposed to gone or a zombie waiting for init to reap it."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc (Linux)")
def test_the_jvm_dies_with_a_killed_server(repo: Path, tmp_path: Path) -> None:
    (tmp_path / "iris-pmml").symlink_to(repo / "iris-pmml", target_is_directory=True)
    command = [sys.executable, "-m", "modelserve.cli", "serve", str(tmp_path), "--http-port", "0", "--grpc-port", "0"]
    server = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, cwd=ROOT)
    try:
        assert server.stderr is not None
        for line in server.stderr:  # the log says when the model is READY; no sleeping
            assert "FAILED" not in line, line
            if "'iris-pmml' version 1 READY" in line:
                break
        else:
            pytest.fail(f"the server exited with status {server.wait()} before the model was READY")
        [java] = _java_children(server.pid)
        assert os.getsid(java) == java, "the JVM should run in its own session (Ctrl-C reaches only the server)"
        server.kill()
        server.wait()
        deadline = time.monotonic() + 10
        while _alive(java) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(java), f"the JVM (pid {java}) outlived the killed server"
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
        assert server.stderr is not None
        server.stderr.close()
