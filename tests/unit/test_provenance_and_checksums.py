"""Library compatibility rules and checksum verification: pure functions, checked case by case."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelserve.repository.checksums import digest_tree, mismatch
from modelserve.runtimes.provenance import check


@pytest.mark.parametrize(
    ("produced", "serving", "refused", "warned"),
    [
        ({"scikit-learn": "1.5.2"}, {"scikit-learn": "1.5.0"}, [], []),
        ({"scikit-learn": "1.4.2"}, {"scikit-learn": "1.5.0"}, [], ["scikit-learn 1.4.2 produced"]),
        ({"scikit-learn": "0.24.2"}, {"scikit-learn": "1.5.0"}, ["another major version"], []),
        ({"xgboost": "3.1.0"}, {"xgboost": "2.1.0"}, ["older major version cannot read"], []),
        ({"xgboost": "1.7.6"}, {"xgboost": "2.1.0"}, [], ["check the predictions"]),
        ({"xgboost": "2.1.3"}, {"xgboost": "2.1.0"}, [], []),
        ({"lightgbm": "4.6.0"}, {"lightgbm": "4.3.0"}, [], ["lightgbm 4.6.0"]),
        ({"torch": "2.3.0"}, {"torch": "2.5.1"}, [], ["torch 2.3.0"]),
        ({"onnx_opset": "99", "onnx_producer": "skl2onnx"}, {"onnxruntime": "1.20.0"}, [], []),  # recorded only
        ({"keras": "3.0"}, {"scikit-learn": "1.5.0"}, [], []),  # not installed here: nothing to compare
    ],
)
def test_compatibility_rules(
    produced: dict[str, str], serving: dict[str, str], refused: list[str], warned: list[str]
) -> None:
    verdict = check(produced, serving)
    assert len(verdict.refused) == len(refused) and verdict.ok == (not refused)
    assert len(verdict.warnings) == len(warned)
    for got, want in zip([*verdict.refused, *verdict.warnings], [*refused, *warned], strict=True):
        assert want in got


def test_checksums_name_changed_missing_and_unregistered_files(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "model.onnx").write_bytes(b"graph")
    (tmp_path / "sub" / "vocab.txt").write_text("a\nb\n")
    (tmp_path / ".partial").write_text("ignored: hidden")
    recorded = digest_tree(tmp_path)
    assert sorted(recorded) == ["model.onnx", "sub/vocab.txt"]
    assert mismatch(tmp_path, recorded) is None

    (tmp_path / "model.onnx").write_bytes(b"grapH")
    (tmp_path / "sub" / "vocab.txt").unlink()
    (tmp_path / "model.py").write_text("import os")
    problem = mismatch(tmp_path, recorded)
    assert problem is not None and problem.startswith("checksum mismatch: ")
    for part in ("model.onnx changed", "sub/vocab.txt is missing", "model.py was not registered"):
        assert part in problem


def test_symbolic_links_are_not_checksummed(tmp_path: Path) -> None:
    (tmp_path / "model.onnx").symlink_to("/etc/passwd")
    problem = mismatch(tmp_path, {})
    assert problem is not None and "symbolic link" in problem
