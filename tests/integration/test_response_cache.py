"""The response cache through the server: repeated requests skip the model; a new version, or the
same version reloaded from changed files, never answers with the old one's cached outputs."""

from __future__ import annotations

import textwrap
from pathlib import Path

import httpx

from modelserve import testing

# y = x * factor, and how many times predict ran: a cached answer repeats the count
COUNTING = """\
import numpy as np

class Model:
    signature = {
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1]}],
        "outputs": [
            {"name": "y", "datatype": "FP32", "shape": [-1]},
            {"name": "calls", "datatype": "INT64", "shape": [-1]},
        ],
    }

    def load(self, path):
        self.factor = float((path / "factor.txt").read_text())
        self.calls = 0

    def predict(self, inputs):
        self.calls += 1
        x = inputs["x"]
        return {"y": x * self.factor, "calls": np.full(len(x), self.calls, dtype=np.int64)}
"""


def _version(root: Path, version: int, factor: float) -> None:
    directory = root / "counting" / str(version)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "model.py").write_text(textwrap.dedent(COUNTING))
    (directory / "factor.txt").write_text(str(factor))


def _ask(client: httpx.Client, x: list[float]) -> tuple[str, list[float], int]:
    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [len(x)], "data": x}]}
    doc = client.post("/v2/models/counting/infer", json=body).json()
    outputs = {o["name"]: o["data"] for o in doc["outputs"]}
    return doc["model_version"], outputs["y"], outputs["calls"][0]


def test_repeated_requests_are_answered_from_the_cache(tmp_path: Path) -> None:
    _version(tmp_path, 1, 2.0)
    (tmp_path / "counting" / "config.yaml").write_text("cache: {max_entries: 100}\nwarmup: off\n")
    with testing.run(tmp_path, trust_code=True) as srv, httpx.Client(base_url=srv.http_url) as client:
        assert _ask(client, [1, 2]) == ("1", [2, 4], 1)
        assert _ask(client, [1, 2]) == ("1", [2, 4], 1)  # not run again
        assert _ask(client, [1, 3]) == ("1", [2, 6], 2)
        assert _ask(client, [1, 2]) == ("1", [2, 4], 1)
        cache = srv.server.manager.model("counting").versions[1].cache
        assert cache is not None and (cache.stats.hits, cache.stats.misses) == (2, 2)

        _version(tmp_path, 2, 10.0)  # a new version: its own, empty cache
        srv.call(srv.server.manager.load_model("counting"))
        assert _ask(client, [1, 2]) == ("2", [10, 20], 1)

        (tmp_path / "counting" / "2" / "factor.txt").write_text("100")  # version 2 changed in place
        srv.call(srv.server.manager.load_model("counting"))
        assert _ask(client, [1, 2]) == ("2", [100, 200], 1)


def test_the_cache_is_off_by_default(tmp_path: Path) -> None:
    _version(tmp_path, 1, 2.0)
    with testing.run(tmp_path, trust_code=True) as srv, httpx.Client(base_url=srv.http_url) as client:
        assert [_ask(client, [1, 2])[2] for _ in range(3)] == [1, 2, 3]
        assert srv.server.manager.model("counting").versions[1].cache is None
