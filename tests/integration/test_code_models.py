"""Models given as code (model.py): refused without --trust-code, without running a line of them;
served with it, where their failures stay theirs."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from modelserve import testing
from modelserve.config.server import ServerConfig

SIGNATURE = """\
    signature = {
        "inputs": [{"name": "x", "datatype": "FP64", "shape": [-1]}],
        "outputs": [{"name": "y", "datatype": "FP64", "shape": [-1]}],
    }
"""
MODELS = {
    # importing it leaves a marker file: the proof that the server ran it
    "code-ok": f"""\
from pathlib import Path

(Path(__file__).parent / "imported.marker").touch()

class Model:
{SIGNATURE}
    def predict(self, inputs):
        return {{"y": inputs["x"] + 1}}
""",
    "code-predict-raises": f"""\
class Model:
{SIGNATURE}
    def predict(self, inputs):
        raise RuntimeError("kaput")
""",
    "code-load-raises": f"""\
class Model:
{SIGNATURE}
    def load(self, path):
        raise OSError(f"weights.bin is missing from {{path.name}}")

    def predict(self, inputs):
        return inputs
""",
}
REQUEST = {"id": "r1", "inputs": [{"name": "x", "datatype": "FP64", "shape": [2], "data": [1.0, 2.5]}]}


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    for name, source in MODELS.items():
        version_dir = tmp_path / name / "1"
        version_dir.mkdir(parents=True)
        (version_dir / "model.py").write_text(source)
    return tmp_path


MARKER = Path("code-ok") / "1" / "imported.marker"


def test_without_trust_code_the_model_fails_naming_the_flag_and_never_runs(repo: Path) -> None:
    with testing.run(repo) as srv, httpx.Client(base_url=srv.http_url) as client:
        index = {e["name"]: e for e in client.post("/v2/repository/index", json={}).json()}
        ready = client.get("/v2/models/code-ok/ready")
        infer = client.post("/v2/models/code-ok/infer", json=REQUEST)
    for name in MODELS:
        assert index[name]["state"] == "FAILED" and "--trust-code" in index[name]["reason"]
    assert ready.status_code == 503 and "--trust-code" in ready.json()["error"]
    assert infer.status_code == 503
    assert not (repo / MARKER).exists(), "model.py ran on a server without --trust-code"


def test_with_trust_code_models_serve_and_their_failures_stay_theirs(repo: Path) -> None:
    with testing.run(repo, trust_code=True) as srv, httpx.Client(base_url=srv.http_url) as client:
        assert (repo / MARKER).exists()
        ok = client.post("/v2/models/code-ok/infer", json=REQUEST)
        assert ok.status_code == 200, ok.text
        assert ok.json()["outputs"][0]["data"] == [2.0, 3.5]

        raised = client.post("/v2/models/code-predict-raises/infer", json=REQUEST)
        assert raised.status_code == 500
        assert "internal error (request id " in raised.json()["error"]
        assert "kaput" not in raised.text  # the exception's text stays in the server's log

        assert client.post("/v2/models/code-ok/infer", json=REQUEST).status_code == 200
        assert client.get("/v2/health/live").status_code == 200

        failed = client.get("/v2/models/code-load-raises/ready")
        assert failed.status_code == 503
        assert "model.py: load failed: OSError: weights.bin is missing from 1" in failed.json()["error"]


def test_the_environment_turns_trust_code_on(tmp_path: Path) -> None:
    assert ServerConfig.load(tmp_path, env={"MODELSERVE_TRUST_CODE": "on"}).trust_code is True
    assert ServerConfig.load(tmp_path, env={}).trust_code is False
