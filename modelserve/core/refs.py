"""What a model reference names, for in-process use (``modelserve.load``, batch scoring).

A reference is one of:

- a model directory (``models/iris``): its latest version, or ``version``;
- a version directory (``models/iris/3``): that version; its config.yaml is the parent's;
- ``registry:NAME@STAGE`` (``registry:iris@production``): the newest version of NAME in STAGE
  in the registry of ``repository`` (``REPOSITORY/.modelserve/registry.db`` unless ``registry_url``
  says otherwise). Its files are checked against the checksums registered for it.

Graph directories (graph.yaml) are served by the server only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from modelserve.config.model import ModelConfig, load_model_config
from modelserve.errors import ConfigError
from modelserve.repository.layout import CONFIG_FILE, GRAPH_FILE, VERSION_NAME, scan_one
from modelserve.repository.registry import RegistryStore, default_url

REGISTRY_PREFIX = "registry:"


@dataclass(frozen=True, slots=True)
class Target:
    """One version directory to load, and what to check and call it."""

    name: str
    version: int
    path: Path
    config: ModelConfig
    checksums: Mapping[str, str] | None  # from the registry; None: not registered

    @property
    def label(self) -> str:
        return f"{self.name!r} version {self.version}"


def resolve_ref(
    ref: str | Path, *, version: int | None = None, repository: Path | None = None, registry_url: str | None = None
) -> Target:
    """The version ``ref`` names. Raises ConfigError saying what was looked for and where."""
    text = str(ref)
    if isinstance(ref, str) and text.startswith(REGISTRY_PREFIX):
        return _from_registry(text, version, repository, registry_url)
    path = Path(ref)
    if not path.is_dir():
        raise ConfigError(f"model {text!r}: no such directory (expected a model or version directory, or {_FORM})")
    if (path / GRAPH_FILE).is_file():
        raise ConfigError(f"{text} is an inference graph, which only the server runs; load one of its models")
    if VERSION_NAME.fullmatch(path.name) and path.parent.name:
        if version is not None and version != int(path.name):
            raise ConfigError(f"{text} is version {path.name}, and version={version} asks for another")
        name = path.resolve().parent.name
        return Target(name, int(path.name), path, load_model_config(path.parent / CONFIG_FILE), None)
    source = scan_one(path.resolve().parent, path.resolve().name)
    if source is None or not source.versions:
        raise ConfigError(f"{text} holds no version directories (1/, 2/, ...)")
    number = version if version is not None else max(source.versions)
    if number not in source.versions:
        raise ConfigError(f"model {source.name!r} has no version {number}; it has {sorted(source.versions)}")
    return Target(source.name, number, source.versions[number], load_model_config(source.config_path), None)


_FORM = "registry:NAME@STAGE"


def _from_registry(text: str, version: int | None, repository: Path | None, registry_url: str | None) -> Target:
    name, _, stage = text[len(REGISTRY_PREFIX) :].partition("@")
    if not name:
        raise ConfigError(f"model reference {text!r}: expected {_FORM} (e.g. registry:iris@production)")
    if repository is None:
        raise ConfigError(
            f"model reference {text!r} needs the model repository: pass repository= or set MODELSERVE_REPOSITORY"
        )
    with RegistryStore(registry_url or default_url(repository)) as store:
        if version is None:
            wanted = stage or "production"
            numbers = store.in_stage(wanted).get(name, [])
            if not numbers:
                raise ConfigError(f"model {name!r} has no version in stage {wanted!r} in the registry")
            version = numbers[-1]
        record = store.get(name, version)
    source = scan_one(repository, name)
    if source is None or version not in source.versions:
        raise ConfigError(
            f"model {name!r} version {version} is registered, but {repository / name / str(version)} does not exist"
        )
    return Target(name, version, source.versions[version], load_model_config(source.config_path), record.checksums)
