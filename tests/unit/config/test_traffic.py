from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelserve.config.model import load_model_config, parse_model_config
from modelserve.config.traffic import Canary, Shadow, Sticky, Target, TrafficPolicy, Variant, parse_traffic
from modelserve.errors import ConfigError

WHERE = "models/iris/config.yaml"

VALID = [
    """
policy: split
variants:
  - {name: control, version: 1, weight: 90}
  - {name: treatment, version: 2, weight: 10}
sticky: {header: X-User-Id}
""",
    """
policy: split
variants: [{name: only, label: stable}, {name: dark, model: other-model, version: 3, weight: 0}]
sticky: {parameter: user_id}
shadow: {target: 4, share: 0.5}
""",
    "policy: epsilon_greedy\nvariants: [{name: a, version: 1}, {name: b, version: 2}]\nepsilon: 0.2",
    "policy: thompson\nvariants: [{name: a, version: 1}, {name: b, model: m}, {name: c, label: canary}]",
    """
policy: canary
canary:
  stable: 1
  candidate: {label: canary}
  steps: [0.1, 1]
  window_s: 30
  min_requests: 5
  max_error_rate_increase: 0
  max_p99_ratio: 1.5
  min_p99_s: 0
  promote_after_s: 0
sticky: {header: x-user-id, parameter: user_id}
""",
    "policy: canary\ncanary: {stable: {model: m, version: 3}, candidate: {model: m, version: 4}}",
    "shadow: {target: {version: 3}, rtol: 0.001, atol: 0}",
    "policy: none\nshadow: {target: {model: m2}}",
]


def _doc(text: str) -> Any:
    return yaml.safe_load(text)


@pytest.mark.parametrize("text", VALID)
def test_valid_documents_round_trip_through_to_dict_and_json(text: str) -> None:
    policy = parse_traffic(_doc(text), WHERE)
    assert parse_traffic(policy.to_dict(), WHERE) == policy
    assert parse_traffic(json.loads(json.dumps(policy.to_dict())), "admin API") == policy


def test_split_fields() -> None:
    policy = parse_traffic(_doc(VALID[0]), WHERE)
    assert policy == TrafficPolicy(
        kind="split",
        variants=(Variant("control", Target(version=1), 90.0), Variant("treatment", Target(version=2), 10.0)),
        sticky=Sticky(header="x-user-id"),  # stored lower case
    )


def test_canary_defaults_and_derived_variants() -> None:
    policy = parse_traffic({"policy": "canary", "canary": {"stable": 1, "candidate": 2}}, WHERE)
    canary = Canary(stable=Target(version=1), candidate=Target(version=2))
    assert policy.canary == canary
    assert canary.steps == (0.05, 0.25, 0.5, 1.0) and canary.window_s == 60.0 and canary.min_requests == 20
    assert [v.name for v in policy.variants] == ["stable", "candidate"]
    assert policy.variants[1].target == Target(version=2)
    assert TrafficPolicy(kind="canary", canary=canary) == policy  # derived however it is built


def test_shadow_only_is_kind_none() -> None:
    policy = parse_traffic({"shadow": {"target": 3}}, WHERE)
    assert policy == TrafficPolicy(kind="none", shadow=Shadow(Target(version=3)))
    assert policy.to_dict() == {
        "policy": "none",
        "shadow": {"target": {"version": 3}, "share": 1.0, "rtol": 1e-5, "atol": 1e-8},
    }


BAD = [
    ({"policy": "random"}, ["traffic.policy", "'random'"]),
    ({"variants": [{"name": "a"}]}, ["traffic.policy is required"]),
    ({"policy": "split", "variant": []}, ["unknown key", "'variant'"]),
    ({"policy": "split"}, ["traffic.variants"]),
    ({"policy": "split", "variants": []}, ["traffic.variants", "at least 1", "[]"]),
    ({"policy": "thompson", "variants": [{"name": "a"}]}, ["traffic.variants", "at least 2"]),
    (
        {"policy": "split", "variants": [{"name": "a", "version": 1}, {"name": "b", "version": 2, "weight": -1}]},
        ["traffic.variants[1].weight must be a number >= 0, got -1"],
    ),
    ({"policy": "split", "variants": [{"name": "a", "weight": True}]}, ["traffic.variants[0].weight", "True"]),
    ({"policy": "split", "variants": [{"name": "a", "weight": 0}]}, ["at least one weight must be > 0"]),
    ({"policy": "split", "variants": [{"name": "a"}, {"name": "a"}]}, ["traffic.variants[1].name", "'a'"]),
    ({"policy": "split", "variants": [{"name": "a b"}]}, ["traffic.variants[0].name", "'a b'"]),
    ({"policy": "split", "variants": [{"version": 1}]}, ["traffic.variants[0].name", "None"]),
    ({"policy": "split", "variants": [{"name": False}]}, ["traffic.variants[0].name", "False", "quote"]),
    ({"policy": "split", "variants": [{"name": "a", "version": 0}]}, ["traffic.variants[0].version", ">= 1", "0"]),
    ({"policy": "split", "variants": [{"name": "a", "version": "2"}]}, ["traffic.variants[0].version", "'2'"]),
    ({"policy": "split", "variants": [{"name": "a", "version": 1, "label": "x"}]}, ["traffic.variants[0]", "both"]),
    ({"policy": "split", "variants": [{"name": "a", "label": "42"}]}, ["traffic.variants[0].label", "'42'"]),
    ({"policy": "split", "variants": [{"name": "a", "model": "../x"}]}, ["traffic.variants[0].model", "'../x'"]),
    ({"policy": "split", "variants": [{"name": "a", "colour": 1}]}, ["traffic.variants[0]", "unknown", "'colour'"]),
    (
        {"policy": "thompson", "variants": [{"name": "a", "weight": 2}, {"name": "b"}]},
        ["traffic.variants[0]", "unknown", "'weight'"],
    ),
    ({"policy": "split", "variants": [{"name": "a"}], "epsilon": 0.1}, ["traffic.epsilon", "'split'"]),
    ({"policy": "split", "variants": [{"name": "a"}], "canary": {}}, ["traffic.canary", "'split'"]),
    ({"policy": "thompson", "variants": [{"name": "a"}, {"name": "b"}], "sticky": {"header": "x"}}, ["traffic.sticky"]),
    (
        {"policy": "epsilon_greedy", "variants": [{"name": "a"}, {"name": "b"}], "epsilon": 1.5},
        ["traffic.epsilon", "from 0 to 1", "1.5"],
    ),
    ({"policy": "epsilon_greedy", "variants": [{"name": "a"}, {"name": "b"}], "epsilon": False}, ["epsilon", "False"]),
    ({"policy": "split", "variants": [{"name": "a"}], "sticky": {}}, ["traffic.sticky", "header and/or"]),
    ({"policy": "split", "variants": [{"name": "a"}], "sticky": {"header": "x user"}}, ["sticky.header", "'x user'"]),
    ({"policy": "split", "variants": [{"name": "a"}], "sticky": {"header": "k-bin"}}, ["sticky.header", "'k-bin'"]),
    ({"policy": "split", "variants": [{"name": "a"}], "sticky": {"parameter": 3}}, ["sticky.parameter", "3"]),
    ({"policy": "canary"}, ["requires traffic.canary"]),
    ({"policy": "canary", "canary": {"stable": 1, "candidate": 2}, "variants": []}, ["traffic.variants", "'canary'"]),
    ({"policy": "canary", "canary": {"stable": 1}}, ["traffic.canary.candidate is required"]),
    ({"policy": "canary", "canary": {"stable": 1, "candidate": 1}}, ["traffic.canary.candidate", "differ"]),
    ({"policy": "canary", "canary": {"stable": "v1", "candidate": 2}}, ["traffic.canary.stable", "'v1'"]),
    ({"policy": "canary", "canary": {"stable": True, "candidate": 2}}, ["traffic.canary.stable", "True"]),
    ({"policy": "canary", "canary": {"stable": 1, "candidate": 2, "step": [1]}}, ["traffic.canary", "'step'"]),
    (
        {"policy": "canary", "canary": {"stable": 1, "candidate": 2, "steps": [0.5, 0.25]}},
        ["traffic.canary.steps", "strictly increasing", "[0.5, 0.25]"],
    ),
    (
        {"policy": "canary", "canary": {"stable": 1, "candidate": 2, "steps": [0.5, 0.5]}},
        ["traffic.canary.steps", "strictly increasing"],
    ),
    ({"policy": "canary", "canary": {"stable": 1, "candidate": 2, "steps": [0, 1]}}, ["traffic.canary.steps[0]", "0"]),
    ({"policy": "canary", "canary": {"stable": 1, "candidate": 2, "steps": [1.5]}}, ["traffic.canary.steps[0]", "1.5"]),
    ({"policy": "canary", "canary": {"stable": 1, "candidate": 2, "steps": []}}, ["traffic.canary.steps", "[]"]),
    ({"policy": "canary", "canary": {"stable": 1, "candidate": 2, "window_s": 0}}, ["traffic.canary.window_s", "> 0"]),
    (
        {"policy": "canary", "canary": {"stable": 1, "candidate": 2, "window_s": float("inf")}},
        ["traffic.canary.window_s", "inf"],
    ),
    (
        {"policy": "canary", "canary": {"stable": 1, "candidate": 2, "min_requests": 0}},
        ["traffic.canary.min_requests", "from 1 to 50000", "0"],
    ),
    (
        {"policy": "canary", "canary": {"stable": 1, "candidate": 2, "min_requests": 2.5}},
        ["traffic.canary.min_requests", "2.5"],
    ),
    (
        {"policy": "canary", "canary": {"stable": 1, "candidate": 2, "max_error_rate_increase": 2}},
        ["traffic.canary.max_error_rate_increase", "2"],
    ),
    (
        {"policy": "canary", "canary": {"stable": 1, "candidate": 2, "max_p99_ratio": 0.5}},
        ["traffic.canary.max_p99_ratio", ">= 1", "0.5"],
    ),
    (
        {"policy": "canary", "canary": {"stable": 1, "candidate": 2, "promote_after_s": -1}},
        ["traffic.canary.promote_after_s", "-1"],
    ),
    ({"policy": "canary", "canary": {"stable": 1, "candidate": 2, "min_p99_s": "1ms"}}, ["min_p99_s", "'1ms'"]),
    ({"shadow": {"share": 1}}, ["traffic.shadow.target is required"]),
    ({"shadow": {"target": 0}}, ["traffic.shadow.target", "0"]),
    ({"shadow": {"target": 3, "share": 1.5}}, ["traffic.shadow.share", "from 0 to 1", "1.5"]),
    ({"shadow": {"target": 3, "rtol": -1}}, ["traffic.shadow.rtol", "-1"]),
    ({"shadow": {"target": 3, "mode": "x"}}, ["traffic.shadow", "'mode'"]),
    ({"shadow": {"target": 3}, "sticky": {"header": "x"}}, ["traffic.sticky", "'none'"]),
    ({"policy": "none"}, ["requires traffic.shadow"]),
    ([1, 2], ["traffic must be a mapping", "[1, 2]"]),
    ({"policy": "split", "variants": [{"name": "a", "weight": 10**400}]}, ["traffic.variants[0].weight"]),
]


@pytest.mark.parametrize(("doc", "words"), BAD)
def test_bad_documents_name_the_key_and_value(doc: object, words: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        parse_traffic(doc, WHERE)
    assert info.value.message.startswith(f"{WHERE}: ")
    for word in words:
        assert word in info.value.message


def test_model_config_yaml_with_traffic(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(
        """
runtime: onnx
version_labels: {stable: 1, canary: 2}
traffic:
  policy: split
  variants:
    - {name: control, label: stable, weight: 90}
    - {name: treatment, label: canary, weight: 10}
  shadow: {target: 3}
"""
    )
    config = load_model_config(path)
    assert config.traffic is not None and config.traffic.kind == "split"
    assert [v.target.label for v in config.traffic.variants] == ["stable", "canary"]
    assert config.traffic.shadow == Shadow(Target(version=3))
    assert parse_model_config({"runtime": "onnx"}, WHERE).traffic is None
    assert parse_model_config({"traffic": None}, WHERE).traffic is None

    path.write_text("traffic:\n  policy: split\n  variants: [{name: a, weight: -1}]\n")
    with pytest.raises(ConfigError) as info:
        load_model_config(path)
    assert info.value.message == f"{path}: traffic.variants[0].weight must be a number >= 0, got -1"
