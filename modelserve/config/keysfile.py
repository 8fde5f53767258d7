"""API keys kept in a YAML file, for deployments without a registry database (issue #12).

``serve --auth on --auth-keys-file FILE`` accepts the keys listed in FILE (as well as the
registry's when the server has one). The file is a list of entries, written by ``modelserve auth
create-key --keys-file FILE`` or by hand::

    - id: 3f9c2a81d0b4          # the token's public part: ms_<id>_<secret>
      name: ci-scorer           # the audit log's actor of its actions
      role: infer               # infer or admin
      salt: 5be0...             # hex, from apikeys.hash_token
      hash: 9a1c...             # hex HMAC-SHA256(salt, secret)
      rate_limit: 50            # optional: requests/s
      burst: 100                # optional: default 2 x rate_limit
      created_at: 2026-12-01T08:00:00+00:00   # optional
      revoked_at: 2026-12-02T09:00:00+00:00   # optional: set by modelserve auth revoke

Like the registry, the file holds no secret: only salted hashes. Every error names the file and
the entry (its position and name). ``KeysFile`` rereads the file only when its modification time,
size or inode changed, so the server's periodic refresh costs one ``stat``. Writers replace the
file atomically (a temporary file, then ``os.replace``), so a reader never sees half of it; they do
not lock it against each other, so run one ``modelserve auth`` at a time on a file.
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from modelserve.config import apikeys
from modelserve.errors import ConfigError

_FIELDS = ("id", "name", "role", "salt", "hash", "rate_limit", "burst", "created_at", "revoked_at")
_REQUIRED = ("id", "name", "role", "salt", "hash")
_HEX = re.compile(r"(?:[0-9a-f]{2})+")
_HEADER = "# modelserve API keys: salted hashes only (modelserve auth create-key --keys-file ...)\n"


@dataclass(frozen=True, slots=True)
class FileKey:
    """One entry of a keys file; shaped like the registry's KeyRecord where the server reads it."""

    key_id: str
    name: str
    role: str
    salt: str
    hash: str
    rate_limit: float | None = None
    burst: int | None = None
    created_at: datetime | None = None
    revoked_at: datetime | None = None


def load(path: Path) -> list[FileKey]:
    """The entries of keys file ``path``. Raises ConfigError naming the file and the entry."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"keys file {path} does not exist (create it with: modelserve auth create-key --keys-file {path})"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"keys file {path}: cannot be read: {exc}") from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"keys file {path}: not valid YAML: {exc}") from None
    if document is None:
        return []
    if not isinstance(document, list):
        raise ConfigError(f"keys file {path}: expected a list of keys, got {type(document).__name__}")
    keys = [_entry(path, index, raw) for index, raw in enumerate(document, start=1)]
    seen: dict[str, int] = {}
    for index, key in enumerate(keys, start=1):
        if key.key_id in seen:
            raise ConfigError(
                f"keys file {path}: entry {index} ({key.name!r}): id {key.key_id} is also entry {seen[key.key_id]}"
            )
        seen[key.key_id] = index
    return keys


def _entry(path: Path, index: int, raw: Any) -> FileKey:
    where = f"keys file {path}: entry {index}"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping with {', '.join(_REQUIRED)}, got {raw!r}")
    if isinstance(raw.get("name"), str) and raw["name"].strip():
        where += f" ({raw['name']!r})"
    unknown = sorted(str(k) for k in raw if k not in _FIELDS)
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {', '.join(unknown)}; expected {', '.join(_FIELDS)}")
    missing = [field for field in _REQUIRED if raw.get(field) in (None, "")]
    if missing:
        raise ConfigError(f"{where}: missing {', '.join(missing)}")
    key_id, name, role, salt, hashed = (str(raw[field]).strip() for field in _REQUIRED)
    if not apikeys.KEY_ID.fullmatch(key_id):
        raise ConfigError(
            f"{where}: id must be 12 lower-case hex digits (the ms_<id>_ part of the token), got {key_id!r}"
        )
    if role not in apikeys.ROLES:
        raise ConfigError(f"{where}: role must be one of {', '.join(apikeys.ROLES)}, got {role!r}")
    if not _HEX.fullmatch(salt) or not 16 <= len(salt) <= 128:
        raise ConfigError(f"{where}: salt must be 16 to 128 lower-case hex digits, got {salt!r}")
    if not re.fullmatch(r"[0-9a-f]{64}", hashed):
        raise ConfigError(f"{where}: hash must be 64 lower-case hex digits (HMAC-SHA256), got {hashed!r}")
    try:
        rate_limit, burst = apikeys.check_limit(raw.get("rate_limit"), raw.get("burst"))
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    created_at = _when(where, "created_at", raw.get("created_at"))
    revoked_at = _when(where, "revoked_at", raw.get("revoked_at"))
    return FileKey(key_id, name, role, salt, hashed, rate_limit, burst, created_at, revoked_at)


def _when(where: str, field: str, value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise ConfigError(f"{where}: {field} must be an ISO 8601 time, got {value!r}") from None
    if not isinstance(value, datetime):
        raise ConfigError(f"{where}: {field} must be an ISO 8601 time, got {value!r}")
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


class KeysFile:
    """A keys file read again only when it changed (``keys`` is what the server refreshes)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._stamp: tuple[int, int, int] | None = None
        self._keys: list[FileKey] = []

    def keys(self) -> list[FileKey]:
        """Every entry, revoked ones included. Raises ConfigError (an unreadable or invalid file)."""
        try:
            info = os.stat(self.path)
        except OSError:
            return load(self.path)  # raises, saying why
        stamp = (info.st_mtime_ns, info.st_size, info.st_ino)
        if stamp != self._stamp:
            self._keys = load(self.path)
            self._stamp = stamp
        return self._keys

    def add(self, name: str, role: str, rate_limit: float | None = None, burst: int | None = None) -> tuple[str, str]:
        """Append a new key (the file is created if need be); returns (key id, token). The token
        is returned once and never stored. Raises ConfigError, ValueError for a bad name, role or limit."""
        if not name.strip():
            raise ValueError("key name must not be empty")
        if role not in apikeys.ROLES:
            raise ValueError(f"key role {role!r}: expected one of {', '.join(apikeys.ROLES)}")
        rate_limit, burst = apikeys.check_limit(rate_limit, burst)
        keys = load(self.path) if self.path.exists() else []
        key_id, token = apikeys.new_token()
        _, salt, hashed = apikeys.hash_token(token)
        keys.append(FileKey(key_id, name.strip(), role, salt, hashed, rate_limit, burst, datetime.now(UTC)))
        self._write(keys)
        return key_id, token

    def revoke(self, key_id: str) -> FileKey:
        """Mark key ``key_id`` revoked. Raises ConfigError for an unknown or already revoked key."""
        keys = load(self.path)
        for index, key in enumerate(keys):
            if key.key_id == key_id:
                if key.revoked_at is not None:
                    raise ConfigError(f"API key {key_id!r} ({key.name!r}) was revoked at {key.revoked_at.isoformat()}")
                keys[index] = replace(key, revoked_at=datetime.now(UTC))
                self._write(keys)
                return keys[index]
        raise ConfigError(f"API key {key_id!r} is not in keys file {self.path} (see modelserve auth list)")

    def _write(self, keys: list[FileKey]) -> None:
        """Replace the file atomically (owner read/write only: it says who may call the server)."""
        text = _HEADER + yaml.safe_dump([_document(key) for key in keys], sort_keys=False, default_flow_style=False)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(text)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, self.path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise


def _document(key: FileKey) -> dict[str, Any]:
    doc: dict[str, Any] = {"id": key.key_id, "name": key.name, "role": key.role, "salt": key.salt, "hash": key.hash}
    if key.rate_limit is not None:
        doc["rate_limit"] = key.rate_limit
    if key.burst is not None:
        doc["burst"] = key.burst
    for field in ("created_at", "revoked_at"):
        value = getattr(key, field)
        if value is not None:
            doc[field] = value.isoformat()
    return doc
