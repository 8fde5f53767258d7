"""An artifact store: registered versions kept in shared storage, fetched into a local cache.

Replicas share one registry (which versions, their checksums) and one artifact store (the bytes),
addressed by an fsspec URL: ``file:///srv/artifacts``, ``s3://bucket/models`` (``pip install
'modelserve[s3]'``), ``gs://bucket/models`` (``modelserve[gcs]``). The layout is the repository's:
``<url>/<name>/<version>/<files>``.

- **Publishing** uploads every file of a version, then writes ``<version>/.modelserve-published.json``
  (the checksums) last. A version without that marker is not published (yet): readers never act on
  a half-written one, on object stores too, where there is no atomic rename. A published version is
  never replaced: publishing it again with the same files does nothing, with other files is refused.
- **Fetching** downloads exactly the files the registry lists into ``DEST/<name>/.incoming-*``
  (hidden: the repository scan and hot reload skip it), verifies every SHA-256 against the
  registry's checksums, then renames it to ``DEST/<name>/<version>``. A file the registry does not
  list, a missing one or a checksum mismatch raises ArtifactStoreError naming the file and leaves
  nothing behind. The store is not trusted: only the registry's checksums are.

Blocking I/O throughout: call it off the event loop.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from modelserve.errors import ErrorCode, ModelServeError
from modelserve.repository.checksums import digest_tree, mismatch
from modelserve.repository.layout import MODEL_NAME

MARKER = ".modelserve-published.json"  # written last: its presence means the version is whole
_EXTRAS = {"s3": "s3", "s3a": "s3", "gs": "gcs", "gcs": "gcs"}


class ArtifactStoreError(ModelServeError):
    """The artifact store cannot be reached, lacks a version, or holds bytes other than registered."""

    code = ErrorCode.UNAVAILABLE


class ArtifactStore:
    """Versions under an fsspec URL (see the module docstring). The constructor only parses the URL."""

    def __init__(self, url: str) -> None:
        """Raises ArtifactStoreError for a URL fsspec cannot open (naming the extra for s3://, gs://)."""
        import fsspec.core  # type: ignore[import-untyped]  # fsspec ships no type information

        self.url = url.rstrip("/")
        try:
            self._fs, root = fsspec.core.url_to_fs(self.url)
        except ImportError as exc:
            scheme = self.url.partition("://")[0]
            extra = _EXTRAS.get(scheme)
            hint = f": pip install 'modelserve[{extra}]'" if extra else ""
            raise ArtifactStoreError(
                f"artifact store {self.url!r} needs a library that is missing{hint} ({exc})"
            ) from None
        except (ValueError, OSError) as exc:
            raise ArtifactStoreError(f"artifact store {self.url!r}: not a usable fsspec URL: {exc}") from None
        self._root = str(root).rstrip("/")

    def __repr__(self) -> str:
        return f"ArtifactStore({self.url!r})"

    def _prefix(self, name: str, version: int) -> str:
        if not MODEL_NAME.fullmatch(name) or ".." in name:
            raise ArtifactStoreError(f"invalid model name {name!r}: use letters, digits, '_', '.', '-'")
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise ArtifactStoreError(f"invalid version {version!r} of model {name!r}: versions are integers >= 1")
        return f"{self._root}/{name}/{version}"

    def published(self, name: str, version: int) -> dict[str, str] | None:
        """The checksums ``name`` ``version`` was published with; None if it is not (completely) published."""
        marker = f"{self._prefix(name, version)}/{MARKER}"
        try:
            if not self._fs.exists(marker):
                return None
            doc: Any = json.loads(self._fs.cat_file(marker))
        except FileNotFoundError:
            return None
        except Exception as exc:  # any backend's error (botocore, google-auth...): say where and what
            raise ArtifactStoreError(f"cannot read {self.url}/{name}/{version}/{MARKER}: {exc!r}") from None
        checksums = doc.get("checksums") if isinstance(doc, dict) else None
        if not isinstance(checksums, dict):
            raise ArtifactStoreError(f"{self.url}/{name}/{version}/{MARKER} is not a publication marker")
        return {str(k): str(v) for k, v in checksums.items()}

    def publish(self, version_dir: Path, name: str, version: int, checksums: Mapping[str, str] | None = None) -> None:
        """Upload ``version_dir`` as ``name`` ``version``; the marker goes last (see the module doc).

        With ``checksums`` (the registry's), the directory must hold exactly those files with those
        sums. Publishing a version again with the same files does nothing. Raises
        ArtifactStoreError (other files already published, a mismatch, the store failing); a failed
        upload leaves no marker, so no reader takes it, and publishing again starts over."""
        prefix = self._prefix(name, version)
        where = f"{self.url}/{name}/{version}"
        if checksums is None:
            checksums = digest_tree(version_dir)
        elif (problem := mismatch(version_dir, checksums)) is not None:
            raise ArtifactStoreError(f"will not publish {version_dir} as {where}: {problem}")
        files = {rel: _relative(rel, where) for rel in checksums}
        existing = self.published(name, version)
        if existing is not None:
            if existing == dict(checksums):
                return
            raise ArtifactStoreError(
                f"{where} is already published with other files; a published version is never replaced: "
                "register a new version"
            )
        try:
            if self._fs.exists(prefix):  # an upload that failed half-way: start over
                self._fs.rm(prefix, recursive=True)
            for rel, parts in files.items():
                self._fs.makedirs("/".join([prefix, *parts[:-1]]), exist_ok=True)
                self._fs.put_file(str(version_dir.joinpath(*parts)), f"{prefix}/{rel}")
            marker = json.dumps({"name": name, "version": version, "checksums": dict(checksums)}, sort_keys=True)
            self._fs.pipe_file(f"{prefix}/{MARKER}", marker.encode())
        except Exception as exc:
            raise ArtifactStoreError(f"cannot publish {version_dir} to {where}: {exc!r}") from None

    def fetch(self, name: str, version: int, dest_repository: Path, checksums: Mapping[str, str]) -> Path:
        """Download ``name`` ``version`` into ``dest_repository/name/version``, verified against
        ``checksums`` (the registry's), and return that path; an existing one is returned as is.

        Raises ArtifactStoreError naming the file (not published, unregistered or missing files,
        checksum mismatch, the store failing); then nothing is left in ``dest_repository``."""
        prefix = self._prefix(name, version)
        where = f"{self.url}/{name}/{version}"
        files = {rel: _relative(rel, where) for rel in checksums}
        if not files:
            raise ArtifactStoreError(f"{name!r} version {version}: the registry lists no files to fetch")
        target = dest_repository / name / str(version)
        if target.is_dir():
            return target
        if self.published(name, version) is None:
            raise ArtifactStoreError(f"{where} is not published (no {MARKER}: never published, or still uploading)")
        self._check_listing(prefix, where, files)
        target.parent.mkdir(parents=True, exist_ok=True)
        incoming = target.parent / f".incoming-{uuid.uuid4().hex}"
        try:
            for rel, parts in files.items():
                local = incoming.joinpath(*parts)
                local.parent.mkdir(parents=True, exist_ok=True)
                self._fs.get_file(f"{prefix}/{rel}", str(local))
            if (problem := mismatch(incoming, checksums)) is not None:
                raise ArtifactStoreError(f"{where} refused: {problem}; nothing was fetched")
            try:
                os.rename(incoming, target)  # atomic: the version appears whole
            except OSError:
                if not target.is_dir():
                    raise
                shutil.rmtree(incoming, ignore_errors=True)  # another process fetched it meanwhile
        except ArtifactStoreError:
            shutil.rmtree(incoming, ignore_errors=True)
            raise
        except Exception as exc:
            shutil.rmtree(incoming, ignore_errors=True)
            raise ArtifactStoreError(f"cannot fetch {where} into {target}: {exc!r}") from None
        return target

    def _check_listing(self, prefix: str, where: str, files: Mapping[str, tuple[str, ...]]) -> None:
        """Refuse a version whose stored files are not exactly the registered ones, before downloading."""
        try:
            found = {path.removeprefix(prefix + "/") for path in self._fs.find(prefix)}
        except Exception as exc:
            raise ArtifactStoreError(f"cannot list {where}: {exc!r}") from None
        found.discard(MARKER)
        unregistered = sorted(found - set(files))
        missing = sorted(set(files) - found)
        if unregistered:
            raise ArtifactStoreError(f"{where} refused: {', '.join(unregistered[:3])} was not registered")
        if missing:
            raise ArtifactStoreError(f"{where} refused: {', '.join(missing[:3])} is missing")


def _relative(rel: str, where: str) -> tuple[str, ...]:
    """The parts of a checksummed file's relative POSIX path; anything that could leave the version
    directory (absolute, ``..``, empty or hidden parts, backslashes) is refused."""
    path = PurePosixPath(rel)
    parts = path.parts
    if (
        not parts
        or path.is_absolute()
        or "\\" in rel
        or any(p in ("", ".", "..") or p.startswith(".") for p in parts)
        or path.as_posix() != rel
    ):
        raise ArtifactStoreError(f"{where}: refusing the file name {rel!r} (not a plain relative path)")
    return parts
