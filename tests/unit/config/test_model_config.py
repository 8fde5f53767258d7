from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from modelserve.config.model import DEFAULT, Batching, VersionPolicy, Warmup, load_model_config
from modelserve.config.server import ServerConfig
from modelserve.errors import ConfigError


def _load(tmp_path: Path, text: str):
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return load_model_config(path)


def test_missing_file_gives_defaults(tmp_path: Path) -> None:
    assert load_model_config(tmp_path / "config.yaml") == DEFAULT


def test_full_config_parses(tmp_path: Path) -> None:
    config = _load(
        tmp_path,
        """
runtime: onnx
artifact: net.onnx
default_version: 2
version_policy: {specific: [3, 1, 3]}
threads: 2
signature:
  inputs: [{name: features, datatype: FP64, shape: [-1, 4]}]
  outputs: [{name: label}]
metadata: {owner: team-a}
version_labels: {stable: 1, canary: 3}
""",
    )
    assert config.version_labels == {"stable": 1, "canary": 3}
    assert _load(tmp_path, "warmup: off") == replace(DEFAULT, warmup=Warmup(samples=False))
    assert _load(tmp_path, "warmup: {generate: 2}").warmup == Warmup(samples=True, generate=2)
    assert _load(tmp_path, "batching: off").batching == Batching(enabled=False)
    assert _load(
        tmp_path, "batching: {max_batch_size: 32, max_delay_ms: 2, preferred_batch_sizes: [16, 8]}"
    ).batching == (Batching(True, 32, 2.0, (8, 16)))
    assert config.runtime == "onnx" and config.artifact == "net.onnx" and config.threads == 2
    assert config.version_policy == VersionPolicy(kind="specific", specific=(1, 3))
    assert config.signature is not None and config.signature.inputs[0].shape == (-1, 4)
    assert config.metadata == {"owner": "team-a"}


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("runtim: onnx", ["unknown key", "'runtim'"]),
        ("threads: 0", ["threads", ">= 1", "0"]),
        ("trusted: yes please", ["trusted", "'yes please'"]),
        ("version_policy: {latest: 0}", ["version_policy.latest", "0"]),
        ("version_policy: newest", ["version_policy", "'newest'"]),
        ("version_policy: {specific: []}", ["version_policy.specific"]),
        ("signature: {inputs: [{name: x, datatype: FLOAT}]}", ["signature.inputs[0].datatype", "'FLOAT'"]),
        ("signature: {inputs: [{name: x, shape: [-2]}]}", ["signature.inputs[0].shape", "[-2]"]),
        ("signature: {inputs: [{datatype: FP32}]}", ["signature.inputs[0].name"]),
        ("metadata: [1, 2]", ["metadata must be a mapping"]),
        ("version_labels: {stable: two}", ["version_labels.stable", "'two'"]),
        ("version_labels: {'42': 1}", ["version label '42'", "not a number"]),
        ("version_labels: {'a/b': 1}", ["version label 'a/b'"]),
        ("version_labels: [stable]", ["version_labels must be a mapping"]),
        ("warmup: {generate: -1}", ["generate", ">= 0", "-1"]),
        ("warmup: {generate: 5000}", ["warmup.generate", "at most 1000"]),
        ("warmup: {samples: maybe}", ["samples", "'maybe'"]),
        ("warmup: {count: 3}", ["warmup has unknown key", "'count'"]),
        ("batching: {max_batch_size: 0}", ["max_batch_size", ">= 1"]),
        ("batching: {max_delay_ms: -1}", ["batching.max_delay_ms", "-1"]),
        ("batching: {max_batch_size: 8, preferred_batch_sizes: [4, 16]}", ["preferred_batch_sizes", "(8)"]),
        ("batching: {size: 8}", ["batching has unknown key", "'size'"]),
        ("instances: 0", ["instances", ">= 1"]),
        ("device: gpu", ["device must be cpu, cuda or cuda:N", "'gpu'"]),
        ("payload_log: {sample: 2}", ["payload_log.sample", "from 0 to 1", "2"]),
        ("payload_log: {redact: x}", ["payload_log.redact", "list of strings"]),
        ("payload_log: {rate: 1}", ["payload_log has unknown key", "'rate'"]),
        ("[unclosed", ["not valid YAML"]),
        ("- a list", ["must be a mapping"]),
    ],
)
def test_errors_quote_the_file_and_the_value(tmp_path: Path, text: str, words: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, text)
    assert str(tmp_path / "config.yaml") in info.value.message
    for word in words:
        assert word in info.value.message


def test_server_config_layers_env_then_overrides(tmp_path: Path) -> None:
    env = {"MODELSERVE_HTTP_PORT": "9000", "MODELSERVE_HOST": "0.0.0.0"}
    config = ServerConfig.load(tmp_path, {"http_port": 0, "host": None}, env=env)
    assert config.http_port == 0 and config.host == "0.0.0.0"
    with pytest.raises(ConfigError, match="MODELSERVE_HTTP_PORT must be an integer"):
        ServerConfig.load(tmp_path, env={"MODELSERVE_HTTP_PORT": "eighty"})
    with pytest.raises(ConfigError, match="http_port"):
        ServerConfig.load(tmp_path, {"http_port": 70000}, env={})
