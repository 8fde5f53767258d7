"""Catalogs: the source of truth for which versions of a model to serve.

The repository directory holds the bytes; a catalog decides which of them serve, by what names,
and what a request for a version that no longer serves is told. Three exist:

- :class:`PolicyCatalog` (the default): config.yaml's ``version_policy`` and ``version_labels``.
- :class:`RegistryCatalog` (``serve --registry``): the registry's stage (production, or staging
  for a staging server); each version's files are verified against the checksums it was
  registered with, libraries known to be incompatible with the artifact refuse it, archived
  versions answer 410 Gone naming their replacement, and versions scheduled for retirement carry
  their sunset date. The stage is also a label (``production``, ``staging``). Server events
  (load, unload, failed load) go to the registry's audit log.
  With an artifact store (``serve --artifact-store URL``: replicas sharing one registry), the
  repository directory is a local cache: the versions the stage selects are fetched from the store
  and verified against the registered checksums before they are decided on (``sync`` on every
  poll, and ``decide`` for any still missing). A fetch that fails leaves the serving versions
  serving; the selected version is FAILED with the reason, and the fetch is retried on later polls
  (after 0.5 s, then twice as long each time, up to 30 s).
- :class:`ManifestCatalog` (``serve --manifest``): exactly the versions, checksums and configs an
  exported manifest lists, so that a served set can be reproduced elsewhere.

``decide``, ``snapshot`` and ``sync`` block (database reads, file hashing, downloads): call them
off the event loop.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import yaml

from modelserve.config.model import ModelConfig
from modelserve.core.policy import select_versions
from modelserve.errors import ConfigError, ModelNotFound, ModelServeError
from modelserve.repository.artifacts import ArtifactStore
from modelserve.repository.layout import CONFIG_FILE, ModelSource
from modelserve.repository.registry import AuditAction, RegisteredVersion, RegistryStore, Stage
from modelserve.runtimes.provenance import check, serving_versions

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Decision:
    """What to serve of one model, and what to tell requests for the rest."""

    selected: list[int]  # versions to load, ascending
    labels: Mapping[str, int] = field(default_factory=dict)
    checksums: Mapping[int, Mapping[str, str]] = field(default_factory=dict)  # verified before loading
    refused: Mapping[int, str] = field(default_factory=dict)  # selected, but FAILED at once for this reason
    retired: Mapping[int, int | None] = field(default_factory=dict)  # archived version -> its replacement
    # retirement scheduled: version -> (when it was deprecated, when it retires)
    sunset: Mapping[int, tuple[datetime, datetime]] = field(default_factory=dict)
    unserved: Mapping[int, str] = field(default_factory=dict)  # other known versions: why not served here
    error: str = ""  # why nothing can be served (when ``selected`` is empty)
    # whether ``error`` is a mistake to keep the serving versions through (a policy that selects
    # nothing) rather than a decision to stop serving (no version in production any more)
    mistake: bool = True


class Catalog(Protocol):
    def decide(self, source: ModelSource, config: ModelConfig) -> Decision:
        """What to serve of the model in ``source`` whose config.yaml parsed to ``config``. Blocks."""
        ...

    def snapshot(self) -> Hashable:
        """A value that changes when a decision may have changed (the watcher reloads then). Blocks."""
        ...

    def record(self, action: str, model: str, version: int, reason: str = "") -> None:
        """Note a server event (``load``, ``unload``, ``load_failed``) where the catalog keeps them."""
        ...

    def sync(self, repository: Path, fetch: bool = True) -> None:
        """Bring ``repository`` up to date where the catalog keeps the bytes elsewhere (an artifact
        store); ``fetch=False`` lays out the model directories only, leaving downloads to ``decide``.
        Called before the repository is scanned. Never raises for one model's failure. Blocks."""
        ...

    def close(self) -> None:
        """Release what the catalog holds (database connections). Called once, when the server stops."""
        ...


class PolicyCatalog:
    """config.yaml decides: ``version_policy`` selects, ``version_labels`` name."""

    def decide(self, source: ModelSource, config: ModelConfig) -> Decision:
        selected = select_versions(source.versions, config.version_policy)
        error = ""
        if not source.versions:
            error = f"{source.path} has no version directories (expected {source.path}/<version>/)"
        elif not selected:
            error = f"version_policy selects none of the versions {list(source.versions)}"
        return Decision(selected, labels=dict(config.version_labels), error=error)

    def snapshot(self) -> Hashable:
        return None

    def record(self, action: str, model: str, version: int, reason: str = "") -> None:
        return None

    def sync(self, repository: Path, fetch: bool = True) -> None:
        return None

    def close(self) -> None:
        return None


class RegistryCatalog:
    """The registry's ``stage`` decides (see the module docstring)."""

    def __init__(
        self, store: RegistryStore, stage: Stage = Stage.PRODUCTION, artifacts: ArtifactStore | None = None
    ) -> None:
        """``artifacts``: fetch the selected versions from this store into the repository directory,
        a local cache (see the module docstring)."""
        if stage not in (Stage.PRODUCTION, Stage.STAGING):
            raise ConfigError(f"a server serves the production or the staging stage, not {stage.value!r}")
        self._store = store
        self._stage = stage
        self._artifacts = artifacts
        self._actor = f"server@{socket.gethostname()}"
        self._fetching = threading.Lock()  # sync (the watcher) and decide (loads) may fetch at once
        self._failed: dict[tuple[str, int], _FetchFailure] = {}  # fetches to retry, not before retry_at

    def decide(self, source: ModelSource, config: ModelConfig) -> Decision:
        try:
            registered = self._store.versions(source.name)
        except ModelNotFound:
            return Decision(
                [], error=f"model {source.name!r} is not registered; register it with `modelserve registry register`"
            )
        stage = {r.version: r.stage for r in registered}
        selected = sorted(v for v, s in stage.items() if s is self._stage)
        labels = dict(config.version_labels)
        if selected:
            labels[self._stage.value] = selected[-1]
        refused = {}
        for record in registered:
            if record.version not in selected:
                continue
            if (missing := self._missing(source, record)) is not None:
                refused[record.version] = missing
                continue
            verdict = check(record.libraries, serving_versions(record.format))
            for warning in verdict.warnings:
                log.warning("model %r version %s: %s", source.name, record.version, warning)
            if not verdict.ok:
                refused[record.version] = "incompatible libraries: " + "; ".join(verdict.refused)
        serves = self._stage.value
        return Decision(
            selected,
            labels=labels,
            checksums={r.version: r.checksums for r in registered if r.version in selected},
            refused=refused,
            retired={r.version: r.replaced_by for r in registered if r.stage is Stage.ARCHIVED},
            sunset=self._sunsets(source.name, [r for r in registered if r.version in selected]),
            unserved={v: f"in stage {s.value}; this server serves {serves}" for v, s in stage.items() if s != serves},
            error="" if selected else f"no version of {source.name!r} is in stage {serves}",
            mistake=False,
        )

    def _missing(self, source: ModelSource, record: RegisteredVersion) -> str | None:
        """None when the version's directory is there (fetched now if need be), else why not."""
        path = source.path / str(record.version)
        if record.version in source.versions or path.is_dir():
            return None
        if self._artifacts is None:
            return f"registered, but {path} is missing"
        failure = self._fetch(source.path.parent, record)
        return None if failure is None else f"cannot fetch it from the artifact store: {failure}"

    def sync(self, repository: Path, fetch: bool = True) -> None:
        """With an artifact store: for every model with versions in the stage, its directory and
        config.yaml (the registered one) in ``repository``, and with ``fetch`` its selected versions
        fetched and verified. A failed fetch is logged and retried later; a registry that cannot be
        read is logged (the cache stays as it is). Blocks."""
        if self._artifacts is None:
            return
        try:
            repository.mkdir(parents=True, exist_ok=True)  # the cache is ours: a new replica starts without one
        except OSError as exc:
            log.error("cannot create the local cache %s: %s", repository, exc)
            return
        try:
            chosen = self._store.in_stage(self._stage)
            records = {name: self._store.versions(name) for name in chosen}
        except ModelServeError as exc:
            log.error("cannot read the registry to update the local cache %s: %s", repository, exc.message)
            return
        for name, versions in sorted(chosen.items()):
            selected = [r for r in records[name] if r.version in versions]
            try:
                _write_config(repository / name, selected[-1].config)
            except OSError as exc:
                log.error("cannot write the config.yaml of model %r in %s: %s", name, repository, exc)
                continue
            if fetch:
                for record in selected:
                    if not (repository / name / str(record.version)).is_dir():
                        self._fetch(repository, record)

    def _fetch(self, repository: Path, record: RegisteredVersion) -> str | None:
        """Fetch one version into ``repository`` unless a recent failure says wait; None on success,
        else the reason (logged when it is a new attempt)."""
        assert self._artifacts is not None
        key = (record.model, record.version)
        with self._fetching:
            if (repository / record.model / str(record.version)).is_dir():
                return None
            failure = self._failed.get(key)
            if failure is not None and time.monotonic() < failure.retry_at:
                return failure.reason
            started = time.perf_counter()
            try:
                self._artifacts.fetch(record.model, record.version, repository, record.checksums)
            except ModelServeError as exc:
                attempts = failure.attempts + 1 if failure is not None else 1
                delay = min(RETRY_FIRST_S * 2 ** (attempts - 1), RETRY_MAX_S)
                self._failed[key] = _FetchFailure(exc.message, attempts, time.monotonic() + delay)
                log.error(
                    "model %r version %s: fetch failed (attempt %d, next in %.1f s): %s",
                    record.model, record.version, attempts, delay, exc.message,
                )  # fmt: skip
                return exc.message
            self._failed.pop(key, None)
            log.info(
                "model %r version %s fetched from %s and verified in %.2f s",
                record.model, record.version, self._artifacts.url, time.perf_counter() - started,
            )  # fmt: skip
            return None

    def _sunsets(self, name: str, records: list[RegisteredVersion]) -> dict[int, tuple[datetime, datetime]]:
        scheduled = {r.version: r.sunset_at for r in records if r.sunset_at is not None}
        if not scheduled:
            return {}
        deprecated: dict[int, datetime] = {}
        for entry in self._store.history(name):  # the latest deprecate row of each version says when
            if entry.action is AuditAction.DEPRECATE and entry.version in scheduled:
                deprecated[entry.version] = entry.at
        return {v: (deprecated.get(v, when), when) for v, when in scheduled.items()}

    def snapshot(self) -> Hashable:
        return tuple(
            (m.name, tuple((r.version, r.stage.value, r.sunset_at) for r in self._store.versions(m.name)))
            for m in self._store.models()
        )

    def record(self, action: str, model: str, version: int, reason: str = "") -> None:
        try:
            self._store.record(
                AuditAction(action), model, version, actor=self._actor, reason=reason, details={"pid": os.getpid()}
            )
        except ModelServeError as exc:  # the audit log must not take serving down with it
            log.error("could not record %s of model %r version %s in the registry: %s", action, model, version, exc)

    def close(self) -> None:
        self._store.close()


RETRY_FIRST_S = 0.5  # a failed fetch is retried after this long, then twice as long each time
RETRY_MAX_S = 30.0


@dataclass(frozen=True, slots=True)
class _FetchFailure:
    reason: str
    attempts: int
    retry_at: float  # time.monotonic()


def _write_config(model_dir: Path, text: str | None) -> None:
    """Make ``model_dir/config.yaml`` hold ``text`` (None: no config.yaml), atomically; unchanged
    when it already does, so that hot reload sees no change. Raises OSError."""
    model_dir.mkdir(parents=True, exist_ok=True)
    path = model_dir / CONFIG_FILE
    current = path.read_bytes() if path.is_file() else None
    wanted = None if text is None else text.encode("utf-8")
    if current == wanted:
        return
    if wanted is None:
        path.unlink(missing_ok=True)
        return
    temporary = model_dir / f".{CONFIG_FILE}.{uuid.uuid4().hex}"
    try:
        temporary.write_bytes(wanted)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


@dataclass(frozen=True, slots=True)
class ManifestEntry:
    version: int
    checksums: Mapping[str, str]
    config_sha256: str | None  # of the model's config.yaml; None: the model had none
    format: str = ""  # the runtime's name, to check ``libraries`` against what serves here
    libraries: Mapping[str, str] = field(default_factory=dict)  # what produced the artifact


class ManifestCatalog:
    """Serve exactly what a deployment manifest (``modelserve registry export``) lists."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._entries = _read_manifest(path)

    @property
    def models(self) -> list[str]:
        return sorted(self._entries)

    def decide(self, source: ModelSource, config: ModelConfig) -> Decision:
        entry = self._entries.get(source.name)
        if entry is None:
            return Decision([], error=f"model {source.name!r} is not in the manifest {self.path}")
        refused = {}
        if entry.version not in source.versions:
            refused[entry.version] = f"listed in the manifest, but {source.path / str(entry.version)} is missing"
        found = _sha256(source.config_path)
        if found != entry.config_sha256:
            refused[entry.version] = (
                f"{source.config_path} differs from the one the manifest was exported with "
                f"(sha256 {found or 'absent'}, manifest {entry.config_sha256 or 'absent'})"
            )
        verdict = check(entry.libraries, serving_versions(entry.format))
        for warning in verdict.warnings:
            log.warning("model %r version %s: %s", source.name, entry.version, warning)
        if not verdict.ok:
            refused[entry.version] = "incompatible libraries: " + "; ".join(verdict.refused)
        return Decision([entry.version], checksums={entry.version: entry.checksums}, refused=refused)

    def snapshot(self) -> Hashable:
        return None

    def record(self, action: str, model: str, version: int, reason: str = "") -> None:
        return None

    def sync(self, repository: Path, fetch: bool = True) -> None:
        return None

    def close(self) -> None:
        return None


def _sha256(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except FileNotFoundError:
        return None


def _read_manifest(path: Path) -> dict[str, ManifestEntry]:
    try:
        doc: Any = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the manifest {path}: {exc}") from None
    models = doc.get("models") if isinstance(doc, dict) else None
    if not isinstance(models, list):
        raise ConfigError(f"{path}: not a modelserve manifest (expected a 'models' list)")
    entries = {}
    for i, item in enumerate(models):
        try:
            name, version, checksums = item["name"], item["version"], item["checksums"]
            config = item.get("config_sha256")
        except (TypeError, KeyError) as exc:
            raise ConfigError(f"{path}: models[{i}] lacks {exc}") from None
        if not isinstance(version, int) or not isinstance(checksums, dict) or name in entries:
            raise ConfigError(f"{path}: models[{i}] ({name!r}) needs a unique name, an integer version and checksums")
        libraries = item.get("libraries") or {}
        entries[str(name)] = ManifestEntry(
            version,
            {str(k): str(v) for k, v in checksums.items()},
            config,
            str(item.get("format", "")),
            {str(k): str(v) for k, v in libraries.items()} if isinstance(libraries, dict) else {},
        )
    return entries
