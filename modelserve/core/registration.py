"""Registering a model version: validate, checksum, copy into the repository, record — or change nothing.

``register`` takes an artifact (a file, or a directory laid out like a version directory) and:

1. copies it into a hidden directory beside the model's versions (``REPO/NAME/.incoming-*``, which
   neither the repository scan nor hot reload look at);
2. has ``inspect`` load that copy — in a separate process, so that a model that crashes or hangs
   its library cannot take the caller down — run its warmup samples and the sample input, and
   report the runtime, the signature and the library versions;
3. refuses known-incompatible library combinations (runtimes/provenance.py) and returns warnings
   for risky ones;
4. computes the SHA-256 of every file of the copy, and records the version in the registry (one
   transaction, with its audit row);
5. renames the copy to ``REPO/NAME/<version>``: the version appears whole, never half-copied;
6. with an artifact store (``--artifact-store``: replicas fetch from it), publishes the version there.

Any failure before the rename removes the copy, so the registry and the repository are as they
were. The version starts in stage ``none``: a ``--registry`` server serves it once promoted.

Why record first and publish last: the registry hands out the version number (two registrations
racing for one number: one gets a conflict before anything is uploaded), and a version that is
recorded but not published is harmless: it is in stage ``none``, and a replica asked to serve it
anyway reports "not published" and keeps serving what it has. Publishing first would leave bytes
under a number the registry may give to another version. A failed publish says so and is retried
with :func:`publish` (``modelserve registry publish NAME VERSION``) from ``REPO/NAME/<version>``.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelserve.errors import ConfigError, InvalidInput, ModelServeError
from modelserve.repository.artifacts import ArtifactStore, ArtifactStoreError
from modelserve.repository.checksums import digest_tree
from modelserve.repository.layout import CONFIG_FILE, MODEL_NAME, scan_one
from modelserve.repository.registry import RegisteredVersion, RegistryStore
from modelserve.runtimes.provenance import check


@dataclass(frozen=True, slots=True)
class Inspection:
    """What loading a version directory in a child process found out."""

    runtime: str  # the runtime's name in runtimes/registry.py ("onnx", "sklearn"...)
    platform: str
    artifact: str  # the artifact's file name
    signature: dict[str, Any]
    produced: dict[str, str]  # library versions the artifact says produced it
    serving: dict[str, str]  # library versions that loaded it
    warmed: int  # sample requests answered


# (version directory, model name, config.yaml text) -> Inspection
Inspector = Callable[[Path, str, str | None], Inspection]


@dataclass(frozen=True, slots=True)
class Registered:
    version: RegisteredVersion
    path: Path
    warnings: list[str] = field(default_factory=list)


def register(
    store: RegistryStore,
    repository: Path,
    artifact: Path,
    name: str,
    *,
    inspect: Inspector,
    version: int | None = None,
    config_text: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    lineage: Mapping[str, Any] | None = None,
    produced_with: Mapping[str, str] | None = None,
    actor: str,
    reason: str = "",
    artifacts: ArtifactStore | None = None,
) -> Registered:
    """Register ``artifact`` as ``name`` (version None: the next free number). See the module doc.

    ``config_text`` becomes the model's config.yaml when it has none yet; a model that has one
    keeps it (a different text is refused: one config serves every version of a model).
    ``produced_with`` declares library versions the artifact does not record itself. With
    ``artifacts``, the version is published there once registered. Raises InvalidInput or
    ConfigError (nothing registered), RegistryError / RegistryConflict, or ArtifactStoreError
    (registered, not published: the message says how to publish it).
    """
    if not MODEL_NAME.fullmatch(name) or ".." in name:
        raise InvalidInput(f"invalid model name {name!r}: use letters, digits, '_', '.', '-'")
    if not artifact.exists():
        raise InvalidInput(f"artifact {artifact} does not exist")
    model_dir = repository / name
    config_path = model_dir / CONFIG_FILE
    # bytes as they are (read_text would turn CRLF into LF): a manifest hashes the file's bytes
    existing = config_path.read_bytes().decode("utf-8") if config_path.is_file() else None
    if config_text is not None and existing is not None and config_text != existing:
        raise ConfigError(
            f"{config_path} exists and differs from the config given; every version of a model shares one "
            "config.yaml: edit it, or register without --config"
        )
    config = existing if existing is not None else config_text
    model_dir.mkdir(parents=True, exist_ok=True)
    incoming = model_dir / f".incoming-{uuid.uuid4().hex}"
    try:
        _copy(artifact, incoming)
        inspection = inspect(incoming, name, config)
        produced = {**(produced_with or {}), **inspection.produced}  # what the artifact says wins
        verdict = check(produced, inspection.serving)
        if not verdict.ok:
            raise InvalidInput(f"model {name!r}: refused, " + "; ".join(verdict.refused))
        checksums = digest_tree(incoming)
        number = version if version is not None else _next_number(store, repository, name)
        target = model_dir / str(number)
        if target.exists():
            raise InvalidInput(f"{target} already exists; register as another version")
        record = store.register(
            name,
            number,
            format=inspection.runtime,
            signature=inspection.signature,
            checksums=checksums,
            metadata=dict(metadata or {}),
            lineage={**(lineage or {}), "validated_with": inspection.serving, "artifact": inspection.artifact},
            libraries=produced,
            config=config,
            actor=actor,
            reason=reason,
        )
    except BaseException:
        shutil.rmtree(incoming, ignore_errors=True)
        raise
    if config_text is not None and existing is None:
        _write_atomically(config_path, config_text)
    os.rename(incoming, target)  # atomic on one file system: the version appears whole
    if artifacts is not None:
        _publish(artifacts, target, record)
    return Registered(record, target, list(verdict.warnings))


def publish(store: RegistryStore, repository: Path, artifacts: ArtifactStore, name: str, version: int) -> Path:
    """Publish a registered version from ``repository/name/version`` to ``artifacts`` (again: a
    version already published with the same files is left as is). Its files must match the
    registered checksums. Returns the published directory. Raises ModelNotFound / VersionNotFound
    (not registered), ArtifactStoreError."""
    record = store.get(name, version)
    source = repository / record.model / str(record.version)
    if not source.is_dir():
        raise ArtifactStoreError(f"{source} does not exist: publish from the repository the version was registered in")
    _publish(artifacts, source, record)
    return source


def _publish(artifacts: ArtifactStore, source: Path, record: RegisteredVersion) -> None:
    try:
        artifacts.publish(source, record.model, record.version, record.checksums)
    except ArtifactStoreError as exc:
        raise ArtifactStoreError(
            f"{record.model!r} version {record.version} is registered (stage {record.stage.value}) but not published "
            f"to {artifacts.url}: {exc.message}; publish it with `modelserve registry publish {record.model} "
            f"{record.version} --artifact-store {artifacts.url}` before promoting it"
        ) from None


def _next_number(store: RegistryStore, repository: Path, name: str) -> int:
    """The registry's next number, past any version directory already on disk (from before the registry)."""
    source = scan_one(repository, name)
    on_disk = max(source.versions, default=0) if source is not None else 0
    return max(store.next_version(name), on_disk + 1)


def _copy(artifact: Path, incoming: Path) -> None:
    """Copy a file into ``incoming/``, or a directory's contents as ``incoming``; no symbolic links."""
    try:
        if artifact.is_dir():
            shutil.copytree(artifact, incoming, symlinks=True)
        else:
            incoming.mkdir()
            shutil.copy2(artifact, incoming / artifact.name)
    except OSError as exc:
        raise InvalidInput(f"cannot copy {artifact} into the repository: {exc}") from None
    for path in incoming.rglob("*"):
        if path.is_symlink():
            raise InvalidInput(f"{artifact} contains a symbolic link ({path.relative_to(incoming)}); copy real files")


def _write_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    try:
        temporary.write_bytes(text.encode("utf-8"))
        os.replace(temporary, path)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise ModelServeError(f"cannot write {path}: {exc}") from None
