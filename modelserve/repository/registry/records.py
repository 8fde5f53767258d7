"""What the registry hands out: frozen records, never ORM objects, and the stage and action names.

Records are snapshots read in one transaction: changing the registry afterwards does not change a
record already returned. Their dict fields are fresh copies decoded from the database, so callers may
keep or serialize them (``json.dumps`` accepts them as they are; the enums are ``str``). Timestamps
are timezone-aware UTC.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Any


class Stage(enum.StrEnum):
    """Where a version is in its life. Every version starts in NONE; at most one is PRODUCTION."""

    NONE = "none"
    STAGING = "staging"
    PRODUCTION = "production"
    ARCHIVED = "archived"


class AuditAction(enum.StrEnum):
    """What an audit row records.

    The first five change stages; LOAD, UNLOAD and LOAD_FAILED are server events; TRAFFIC is a
    traffic policy override set or cleared (``details["policy"]``, None when cleared);
    CANARY_STEP and CANARY_ROLLBACK are server events of a canary rollout (with ``details``).
    """

    REGISTER = "register"
    PROMOTE = "promote"
    ROLLBACK = "rollback"
    ARCHIVE = "archive"
    DEPRECATE = "deprecate"
    LOAD = "load"
    UNLOAD = "unload"
    LOAD_FAILED = "load_failed"
    TRAFFIC = "traffic"
    CANARY_STEP = "canary_step"
    CANARY_ROLLBACK = "canary_rollback"
    PROFILE = "profile"  # a reference profile stored for a version (drift and outlier detection)
    KEY_CREATED = "key_created"  # an API key created (model "", details: key_id, name, role)
    KEY_REVOKED = "key_revoked"  # an API key revoked (model "", details: key_id, name, role)


# the actions RegistryStore.record accepts; the others are written by the operation they describe
EVENT_ACTIONS = frozenset(
    {
        AuditAction.LOAD,
        AuditAction.UNLOAD,
        AuditAction.LOAD_FAILED,
        AuditAction.CANARY_STEP,
        AuditAction.CANARY_ROLLBACK,
    }
)


@dataclass(frozen=True, slots=True)
class RegisteredVersion:
    """One registered version of a model, as stored.

    ``checksums`` maps each artifact file (relative POSIX path) to its SHA-256 hex digest;
    ``libraries`` maps each library that produced the artifact to its version string; ``config`` is
    the model's config.yaml text at registration (None if it had none). ``replaced_by`` is the
    version whose promotion (or rollback) archived this one, None otherwise; ``sunset_at`` is the
    scheduled retirement, None if none is scheduled.
    """

    model: str
    version: int
    stage: Stage
    format: str
    signature: dict[str, Any]
    checksums: dict[str, str]
    metadata: dict[str, Any]
    lineage: dict[str, Any]
    libraries: dict[str, str]
    config: str | None
    registered_by: str
    registered_at: datetime
    stage_changed_at: datetime
    replaced_by: int | None
    sunset_at: datetime | None


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One row of the append-only audit log. ``id`` grows with time: sort by it, not by ``at``.

    ``from_stage``/``to_stage`` are set by stage changes (``from_stage`` is None for REGISTER) and
    None for the other actions; ``version`` is None for events about a whole model.
    """

    id: int
    at: datetime
    actor: str
    action: AuditAction
    model: str
    version: int | None
    from_stage: Stage | None
    to_stage: Stage | None
    reason: str
    details: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ModelSummary:
    """One model: how many versions it has, which one is in production (if any), which in staging."""

    name: str
    created_at: datetime
    version_count: int
    latest_version: int | None
    production: int | None
    staging: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class ProfileRecord:
    """A model version's reference profile (modelserve/monitoring/profile.py's document), what it
    was built from (``source``: a data file's name, say), and who stored it when."""

    model: str
    version: int
    profile: dict[str, Any]
    source: str
    created_at: datetime
    created_by: str


@dataclass(frozen=True, slots=True)
class RoutingRecord:
    """A served model's traffic policy override and router state, as stored.

    ``policy`` replaces the ``traffic:`` section of the model's config.yaml; None means no
    override (config.yaml applies). ``state`` is what the model's router saved (bandit counts,
    canary step; {} when none). ``updated_at``/``updated_by`` are the last ``set_traffic``: when,
    and who set or cleared the override; for a row only ``save_routing_state`` has written, the
    time of its first save and "".
    """

    model: str
    policy: dict[str, Any] | None
    state: dict[str, Any]
    updated_at: datetime
    updated_by: str


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """An API key as stored: its public id, name, role (``infer`` or ``admin``), the salted hash of
    its secret (``modelserve/config/apikeys.py``), and when it was created and revoked (None: live);
    its rate limit in requests/s and burst (None: unlimited; burst None: twice the rate)."""

    key_id: str
    name: str
    role: str
    salt: str
    hash: str
    created_at: datetime
    created_by: str
    revoked_at: datetime | None
    rate_limit: float | None = None
    burst: int | None = None
