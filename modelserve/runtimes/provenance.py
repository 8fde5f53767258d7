"""Which library versions produced an artifact, which ones serve it, and whether they fit together.

Serialization incompatibilities are the classic silent failure of model serving: a scikit-learn
estimator pickled under 1.3 and loaded under 1.5 may load and predict differently; an XGBoost model
saved by a newer major version may not load at all. So a registered version records

- ``produced``: the library versions that made the artifact, read from the artifact where it says
  (a ``.skops`` file's ``_sklearn_version``, an XGBoost JSON model's ``version``, an ONNX model's
  opset and producer) and otherwise as declared by whoever registers it;
- ``serving``: the versions installed where it was validated.

:func:`check` compares ``produced`` with the serving environment by the rules below: a known
incompatible pair is refused, a risky one warned about.

| library | incompatible | risky |
| --- | --- | --- |
| scikit-learn | another major version | another minor version |
| xgboost, lightgbm | produced by a newer major version | another major, or a newer minor version |
| anything else declared | — | another major.minor version |
"""

from __future__ import annotations

import importlib.metadata
import json
import re
import sys
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# the distributions whose versions matter to each runtime, in the serving environment
_DISTRIBUTIONS: Mapping[str, tuple[str, ...]] = {
    "onnx": ("onnxruntime", "onnx"),
    "sklearn": ("scikit-learn", "skops", "numpy"),
    "xgboost": ("xgboost", "xgboost-cpu"),
    "lightgbm": ("lightgbm",),
    "pmml": ("pypmml",),
    "pfa": ("titus2",),
    "tensorflow": ("tensorflow", "tensorflow-cpu"),
    "torch": ("torch",),
    "python": ("numpy",),
}
# a distribution's name where another one provides the same module
_LIBRARY = {"xgboost-cpu": "xgboost", "tensorflow-cpu": "tensorflow"}
# recorded for the record, not compared: an opset that onnxruntime cannot run fails the load itself
_INFORMATIVE = frozenset({"onnx_opset", "onnx_producer"})


@dataclass(frozen=True, slots=True)
class Verdict:
    refused: tuple[str, ...] = ()  # known incompatible: registration refuses, the server will not load it
    warnings: tuple[str, ...] = ()  # risky: said out loud, allowed

    @property
    def ok(self) -> bool:
        return not self.refused


@dataclass(frozen=True, slots=True)
class Provenance:
    produced: Mapping[str, str] = field(default_factory=dict)
    serving: Mapping[str, str] = field(default_factory=dict)


def serving_versions(runtime: str) -> dict[str, str]:
    """Installed versions of the libraries ``runtime`` uses, plus Python's."""
    found = {"python": ".".join(map(str, sys.version_info[:3]))}
    for distribution in _DISTRIBUTIONS.get(runtime, ()):
        try:
            found[_LIBRARY.get(distribution, distribution)] = importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


def produced_versions(runtime: str, artifact: Path) -> dict[str, str]:
    """What the artifact says about the libraries that made it; {} where it says nothing.

    Reads only metadata (a zip's schema, a JSON header, the ONNX model proto); never raises for
    a file it cannot read: the runtime's own load reports damaged files."""
    try:
        if runtime == "sklearn" and artifact.suffix == ".skops":
            return _skops(artifact)
        if runtime == "xgboost" and artifact.suffix == ".json":
            return _xgboost_json(artifact)
        if runtime == "onnx":
            return _onnx(artifact)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        return {}
    return {}


def check(produced: Mapping[str, str], serving: Mapping[str, str]) -> Verdict:
    """Compare what produced an artifact with what serves it (see the module's table)."""
    refused: list[str] = []
    warnings: list[str] = []
    for library, made in sorted(produced.items()):
        if library in _INFORMATIVE:
            continue
        have = serving.get(library)
        if have is None:
            continue
        old, new = _version(made), _version(have)
        if old is None or new is None or old == new:
            continue
        said = f"{library} {made} produced the artifact; {have} serves it"
        if library == "scikit-learn":
            if old[0] != new[0]:
                refused.append(f"{said}: another major version cannot read its estimators reliably")
            elif old[:2] != new[:2]:
                warnings.append(f"{said}: estimators may behave differently across minor versions")
        elif library in ("xgboost", "lightgbm"):
            if old[0] > new[0]:
                refused.append(f"{said}: an older major version cannot read a newer one's models")
            elif old[0] != new[0] or old[:2] > new[:2]:
                warnings.append(f"{said}: check the predictions against the original")
        elif old[:2] != new[:2]:
            warnings.append(f"{said}")
    return Verdict(tuple(refused), tuple(warnings))


def _version(text: str) -> tuple[int, ...] | None:
    match = re.match(r"v?(\d+)(?:\.(\d+))?(?:\.(\d+))?", text)
    if match is None:
        return None
    return tuple(int(part) for part in match.groups() if part is not None)


def _skops(artifact: Path) -> dict[str, str]:
    with zipfile.ZipFile(artifact) as archive:
        schema = json.loads(archive.read("schema.json"))
    version = next(_values(schema, "_sklearn_version"), None)
    return {"scikit-learn": version} if isinstance(version, str) else {}


def _values(doc: Any, key: str) -> Iterator[Any]:
    """Every value of ``key`` in a skops schema, depth first; a state holds it as a JSON string."""
    if isinstance(doc, dict):
        for k, v in doc.items():
            if k == key:
                yield _content(v)
            else:
                yield from _values(v, key)
    elif isinstance(doc, list):
        for item in doc:
            yield from _values(item, key)


def _content(value: Any) -> Any:
    """A skops state entry ``{"__class__": "str", "content": "\"1.5.0\""...}`` holds its value as JSON."""
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        try:
            return json.loads(value["content"])
        except ValueError:
            return value["content"]
    return value


def _xgboost_json(artifact: Path) -> dict[str, str]:
    with artifact.open("rb") as file:
        doc = json.loads(file.read())
    version = doc.get("version") if isinstance(doc, dict) else None
    if isinstance(version, list) and all(isinstance(p, int) for p in version):
        return {"xgboost": ".".join(map(str, version))}
    return {}


def _onnx(artifact: Path) -> dict[str, str]:
    try:
        import onnx
    except ImportError:  # the onnx package is optional: onnxruntime alone serves
        return {}
    model = onnx.load(str(artifact), load_external_data=False)
    found = {}
    for opset in model.opset_import:
        if opset.domain in ("", "ai.onnx"):
            found["onnx_opset"] = str(opset.version)
    if model.producer_name:
        found["onnx_producer"] = f"{model.producer_name} {model.producer_version}".strip()
    return found
