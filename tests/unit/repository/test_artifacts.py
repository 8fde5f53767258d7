"""The artifact store (repository/artifacts.py) on a real ``file://`` directory: publish, fetch,
and every way a stored version can differ from what the registry recorded."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from modelserve.repository.artifacts import MARKER, ArtifactStore, ArtifactStoreError
from modelserve.repository.checksums import digest_tree


@pytest.fixture
def version_dir(tmp_path: Path) -> Path:
    """A version directory as registered: an artifact and a nested warmup request."""
    root = tmp_path / "build" / "1"
    (root / "warmup").mkdir(parents=True)
    (root / "model.onnx").write_bytes(b"\x08\x07onnx bytes")
    (root / "warmup" / "000.json").write_text('{"inputs": []}')
    return root


@pytest.fixture
def bucket(tmp_path: Path) -> Path:
    return tmp_path / "bucket"


@pytest.fixture
def store(bucket: Path) -> ArtifactStore:
    return ArtifactStore(f"file://{bucket}")


def _left_behind(cache: Path) -> list[str]:
    return sorted(p.relative_to(cache).as_posix() for p in cache.rglob("*")) if cache.exists() else []


def test_a_published_version_is_fetched_whole_and_verified(
    store: ArtifactStore, version_dir: Path, bucket: Path, tmp_path: Path
) -> None:
    checksums = digest_tree(version_dir)
    store.publish(version_dir, "iris", 3, checksums)
    assert (bucket / "iris" / "3" / MARKER).is_file()
    assert store.published("iris", 3) == checksums

    cache = tmp_path / "cache"
    path = store.fetch("iris", 3, cache, checksums)
    assert path == cache / "iris" / "3"
    assert digest_tree(path) == checksums
    assert _left_behind(cache) == ["iris", "iris/3", "iris/3/model.onnx", "iris/3/warmup", "iris/3/warmup/000.json"]
    assert store.fetch("iris", 3, cache, checksums) == path  # already in the cache: nothing downloaded


def test_publishing_again_is_a_no_op_and_other_bytes_are_refused(
    store: ArtifactStore, version_dir: Path, tmp_path: Path
) -> None:
    store.publish(version_dir, "iris", 1)
    store.publish(version_dir, "iris", 1)  # the same files: nothing to do
    (version_dir / "model.onnx").write_bytes(b"retrained")
    with pytest.raises(ArtifactStoreError, match="already published with other files; a published version is never"):
        store.publish(version_dir, "iris", 1)


def test_publish_refuses_a_directory_that_differs_from_the_registered_checksums(
    store: ArtifactStore, version_dir: Path, bucket: Path
) -> None:
    checksums = digest_tree(version_dir)
    (version_dir / "model.onnx").write_bytes(b"changed after registration")
    with pytest.raises(ArtifactStoreError, match=r"will not publish .*checksum mismatch: model.onnx changed"):
        store.publish(version_dir, "iris", 1, checksums)
    assert not (bucket / "iris").exists()


def test_a_half_published_version_is_not_fetched_and_publishing_again_completes_it(
    store: ArtifactStore, version_dir: Path, bucket: Path, tmp_path: Path
) -> None:
    checksums = digest_tree(version_dir)
    (bucket / "iris" / "1").mkdir(parents=True)
    (bucket / "iris" / "1" / "model.onnx").write_bytes(b"\x08\x07onn")  # an upload cut short: no marker
    cache = tmp_path / "cache"
    with pytest.raises(ArtifactStoreError, match=r"iris/1 is not published \(no .modelserve-published.json"):
        store.fetch("iris", 1, cache, checksums)
    assert _left_behind(cache) == []

    store.publish(version_dir, "iris", 1, checksums)
    assert digest_tree(store.fetch("iris", 1, cache, checksums)) == checksums


def test_a_corrupted_file_is_refused_by_checksum_and_nothing_is_left(
    store: ArtifactStore, version_dir: Path, bucket: Path, tmp_path: Path
) -> None:
    checksums = digest_tree(version_dir)
    store.publish(version_dir, "iris", 1, checksums)
    (bucket / "iris" / "1" / "model.onnx").write_bytes(b"\x08\x07onnx bytez")  # same size, other bytes
    cache = tmp_path / "cache"
    with pytest.raises(ArtifactStoreError) as info:
        store.fetch("iris", 1, cache, checksums)
    assert "checksum mismatch: model.onnx changed" in info.value.message
    assert "nothing was fetched" in info.value.message
    assert _left_behind(cache) == ["iris"]  # no version directory, no .incoming-* either


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ("add", "extra.py was not registered"),
        ("remove", "warmup/000.json is missing"),
    ],
)
def test_files_the_registry_does_not_list_or_lacks_are_refused(
    store: ArtifactStore, version_dir: Path, bucket: Path, tmp_path: Path, change: str, expected: str
) -> None:
    checksums = digest_tree(version_dir)
    store.publish(version_dir, "iris", 1, checksums)
    if change == "add":
        (bucket / "iris" / "1" / "extra.py").write_text("import os")
    else:
        (bucket / "iris" / "1" / "warmup" / "000.json").unlink()
    cache = tmp_path / "cache"
    with pytest.raises(ArtifactStoreError, match=expected):
        store.fetch("iris", 1, cache, checksums)
    assert _left_behind(cache) == []


@pytest.mark.parametrize(
    ("name", "version", "files", "expected"),
    [
        ("../etc", 1, {"model.onnx": "0"}, "invalid model name"),
        ("a..b", 1, {"model.onnx": "0"}, "invalid model name"),
        ("iris", 0, {"model.onnx": "0"}, "invalid version 0"),
        ("iris", 1, {"../../escape": "0"}, "refusing the file name '../../escape'"),
        ("iris", 1, {"/etc/passwd": "0"}, "refusing the file name '/etc/passwd'"),
        ("iris", 1, {"a/./b": "0"}, "refusing the file name"),
        ("iris", 1, {".hidden": "0"}, "refusing the file name '.hidden'"),
        ("iris", 1, {}, "lists no files"),
    ],
)
def test_paths_are_validated_before_any_io(
    store: ArtifactStore, tmp_path: Path, name: str, version: int, files: dict[str, str], expected: str
) -> None:
    with pytest.raises(ArtifactStoreError, match=expected):
        store.fetch(name, version, tmp_path / "cache", files)
    assert not (tmp_path / "cache").exists()


@pytest.mark.skipif(importlib.util.find_spec("s3fs") is not None, reason="s3fs is installed")
def test_a_url_whose_library_is_missing_names_the_extra() -> None:
    with pytest.raises(ArtifactStoreError, match=r"pip install 'modelserve\[s3\]'"):
        ArtifactStore("s3://bucket/models")
