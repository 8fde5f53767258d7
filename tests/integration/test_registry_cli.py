"""``modelserve registry``: registration validates in a child process and changes nothing when it
fails; promote, rollback, list, show, history and export as a user runs them."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import orjson
import pytest
import yaml
from click.testing import CliRunner, Result

from modelserve.cli.main import main
from modelserve.cli.registry import inspect_in_child
from modelserve.core.registration import Inspection, register
from modelserve.errors import InvalidInput
from modelserve.repository.checksums import digest_tree
from modelserve.repository.registry import RegistryError, RegistryStore, Stage, default_url
from tests.fixtures.models import _save_onnx, adder_model

SAMPLE = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 3], "data": [1, 2, 3]}]}


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    (tmp_path / "models").mkdir()
    return tmp_path / "models"


@pytest.fixture
def artifact(tmp_path: Path) -> Path:
    """A version directory as a data scientist hands it over: the model and a warmup sample."""
    version = tmp_path / "build" / "adder"
    _save_onnx(version / "model.onnx", adder_model(1.0))
    (version / "warmup").mkdir()
    (version / "warmup" / "000.json").write_bytes(orjson.dumps(SAMPLE))
    return version


def cli(repo: Path, *args: str, ok: bool = True) -> Result:
    result = CliRunner().invoke(main, ["registry", "--repository", str(repo), "--actor", "alice@ci", *args])
    if ok:
        assert result.exit_code == 0, result.output
    return result


@pytest.fixture
def store(repo: Path) -> Iterator[RegistryStore]:
    with RegistryStore(default_url(repo)) as opened:
        yield opened


def test_register_promote_rollback_as_a_user_does(repo: Path, artifact: Path, store: RegistryStore) -> None:
    out = cli(
        repo, "register", str(artifact), "--name", "adder", "-l", "training_data=s3://b/train.csv",
        "-l", "metric.rmse=0.25", "-m", "owner=team-a", "--reason", "first cut",
    ).output  # fmt: skip
    assert "registered adder version 1 (onnx)" in out
    record = store.get("adder", 1)
    assert record.stage is Stage.NONE and record.registered_by == "alice@ci"
    assert record.checksums == digest_tree(repo / "adder" / "1") and "warmup/000.json" in record.checksums
    assert record.lineage["training_data"] == "s3://b/train.csv" and record.lineage["metric.rmse"] == 0.25
    assert record.lineage["validated_with"]["onnxruntime"]
    assert record.libraries["onnx_opset"]  # read from the artifact itself
    assert record.metadata == {"owner": "team-a"}
    assert record.signature["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 3]}]

    _save_onnx(artifact / "model.onnx", adder_model(2.0))
    assert "registered adder version 2" in cli(repo, "register", str(artifact), "--name", "adder").output
    assert "now in production" in cli(repo, "promote", "adder", "1", "--reason", "go live").output
    assert "(version 1 archived)" in cli(repo, "promote", "adder", "2").output
    assert "production is version 1 again (was 2)" in cli(repo, "rollback", "adder", "--reason", "bad").output

    listed = json.loads(cli(repo, "list", "adder", "--json").output)
    assert [(row["version"], row["stage"]) for row in listed] == [(1, "production"), (2, "archived")]
    shown = json.loads(cli(repo, "show", "adder", "2").output)
    assert shown["replaced_by"] == 1 and shown["stage"] == "archived"
    history = json.loads(cli(repo, "history", "adder", "--json").output)
    assert [row["action"] for row in history] == [
        "register", "register", "promote", "archive", "promote", "archive", "rollback",
    ]  # fmt: skip
    assert history[-1]["reason"] == "bad" and {row["actor"] for row in history} == {"alice@ci"}
    table = cli(repo, "history", "adder").output
    assert table.splitlines()[0].split()[:4] == ["AT", "ACTOR", "ACTION", "MODEL"]

    manifest = yaml.safe_load(cli(repo, "export", "--stage", "production").output)
    (entry,) = manifest["models"]
    assert (entry["name"], entry["version"]) == ("adder", 1) and entry["checksums"] == record.checksums


def _nothing_registered(repo: Path, store: RegistryStore) -> None:
    assert store.models() == [] and store.history() == []
    assert [p.name for p in (repo / "adder").iterdir()] == [] if (repo / "adder").exists() else True


@pytest.mark.parametrize(
    ("break_it", "words"),
    [
        (lambda a: (a / "model.onnx").write_bytes(b"not onnx"), ["validation failed", "model.onnx: not an ONNX model"]),
        (lambda a: (a / "warmup" / "000.json").write_text("{"), ["warmup/000.json is not a valid"]),
        (lambda a: (a / "model.onnx").unlink(), ["validation failed", "no model artifact"]),
    ],
)
def test_a_failed_validation_registers_nothing(
    repo: Path, artifact: Path, store: RegistryStore, break_it: object, words: list[str]
) -> None:
    break_it(artifact)  # type: ignore[operator]
    result = cli(repo, "register", str(artifact), "--name", "adder", ok=False)
    assert result.exit_code == 1
    for word in words:
        assert word in result.output
    _nothing_registered(repo, store)


def test_the_sample_input_must_be_answered(repo: Path, artifact: Path, tmp_path: Path, store: RegistryStore) -> None:
    sample = tmp_path / "sample.json"
    sample.write_bytes(orjson.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 2], "data": [1, 2]}]}))
    result = cli(repo, "register", str(artifact), "--name", "adder", "--sample-input", str(sample), ok=False)
    assert "sample input sample.json failed" in result.output and "shape" in result.output
    _nothing_registered(repo, store)
    sample.write_bytes(orjson.dumps(SAMPLE))
    cli(repo, "register", str(artifact), "--name", "adder", "--sample-input", str(sample))


def test_code_models_need_trust(repo: Path, tmp_path: Path, store: RegistryStore) -> None:
    code = tmp_path / "code"
    code.mkdir()
    (code / "model.py").write_text(
        "import numpy as np\nclass Model:\n"
        "    signature = {'inputs': [{'name': 'x', 'datatype': 'FP32', 'shape': [-1]}],\n"
        "                 'outputs': [{'name': 'y', 'datatype': 'FP32', 'shape': [-1]}]}\n"
        "    def load(self, path): pass\n"
        "    def predict(self, inputs): return {'y': inputs['x']}\n"
    )
    result = cli(repo, "register", str(code), "--name", "echo", ok=False)
    assert "--trust-code" in result.output
    assert store.models() == []
    assert (
        "registered echo version 1 (python)"
        in cli(repo, "register", str(code), "--name", "echo", "--trust-code").output
    )


def test_known_incompatible_libraries_are_refused(repo: Path, tmp_path: Path, store: RegistryStore) -> None:
    """An XGBoost model saved by a future major version: XGBoost itself loads it, silently."""
    xgb = pytest.importorskip("xgboost")
    booster = xgb.train({}, xgb.DMatrix(np.random.default_rng(0).random((10, 2)), label=np.arange(10) % 2), 2)
    booster.save_model(tmp_path / "model.json")
    doc = json.loads((tmp_path / "model.json").read_text())
    doc["version"] = [99, 0, 0]
    (tmp_path / "future").mkdir()
    (tmp_path / "future" / "model.json").write_text(json.dumps(doc))
    result = cli(repo, "register", str(tmp_path / "future"), "--name", "gbm", ok=False)
    assert "refused" in result.output and "xgboost 99.0.0 produced the artifact" in result.output
    assert store.models() == []


def test_declared_library_versions_are_recorded_and_checked(repo: Path, artifact: Path, store: RegistryStore) -> None:
    out = cli(repo, "register", str(artifact), "--name", "adder", "--produced-with", "onnxruntime=0.1.0")
    assert "warning: onnxruntime 0.1.0 produced the artifact" in out.output
    assert store.get("adder", 1).libraries["onnxruntime"] == "0.1.0"


def test_versions_already_on_disk_keep_their_numbers(repo: Path, artifact: Path, store: RegistryStore) -> None:
    _save_onnx(repo / "adder" / "3" / "model.onnx", adder_model(3.0))  # from before the registry
    assert "registered adder version 4" in cli(repo, "register", str(artifact), "--name", "adder").output
    result = cli(repo, "register", str(artifact), "--name", "adder", "--version", "3", ok=False)
    assert "already exists" in result.output
    assert [r.version for r in store.versions("adder")] == [4]


def test_a_config_is_installed_once_and_never_overwritten(repo: Path, artifact: Path, tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("metadata: {owner: team-a}\n")
    cli(repo, "register", str(artifact), "--name", "adder", "--config", str(config))
    assert (repo / "adder" / "config.yaml").read_text() == config.read_text()
    config.write_text("metadata: {owner: team-b}\n")
    result = cli(repo, "register", str(artifact), "--name", "adder", "--config", str(config), ok=False)
    assert "differs from the config given" in result.output


def _inspect(path: Path, name: str, config: str | None) -> Inspection:
    return inspect_in_child(path, name, config, trust_code=False, sample=None)


def test_a_config_is_recorded_byte_for_byte(repo: Path, artifact: Path, store: RegistryStore) -> None:
    """A manifest hashes config.yaml's bytes, so the recorded text must keep CRLF line ends."""
    (repo / "adder").mkdir()
    (repo / "adder" / "config.yaml").write_bytes(b"version_policy: all\r\n")
    cli(repo, "register", str(artifact), "--name", "adder")
    assert store.get("adder", 1).config == "version_policy: all\r\n"


def test_a_locked_database_leaves_registry_and_repository_unchanged(repo: Path, artifact: Path) -> None:
    url = default_url(repo)
    with RegistryStore(url, busy_timeout_ms=100) as store:
        locker = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
        locker.execute("BEGIN EXCLUSIVE")
        try:
            with pytest.raises(RegistryError, match="locked"):
                register(store, repo, artifact, "adder", actor="alice@ci", inspect=_inspect)
        finally:
            locker.execute("ROLLBACK")
            locker.close()
        assert store.models() == [] and store.history() == []
    assert list((repo / "adder").iterdir()) == []  # no version, no half-copied .incoming directory


def test_bad_names_and_missing_artifacts_are_refused(repo: Path, tmp_path: Path, artifact: Path) -> None:
    with RegistryStore(default_url(repo)) as store, pytest.raises(InvalidInput, match="invalid model name"):
        register(store, repo, artifact, "../evil", actor="a", inspect=lambda *_: pytest.fail("not reached"))
    result = cli(repo, "register", str(tmp_path / "nope"), "--name", "adder", ok=False)
    assert result.exit_code == 2 and "does not exist" in result.output
    result = cli(repo, "promote", "adder", "1", ok=False)
    assert result.exit_code == 1 and "adder" in result.output
