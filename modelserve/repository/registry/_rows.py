"""The steps of the store's transactions: row locks, lookups, stage moves, audit rows, records.

Every function works inside the caller's session and transaction and never commits: the store
decides where a transaction begins and ends. Stage moves and audit rows are flushed at once, so a
refused statement fails at its step, and the one-production index sees the archive before the
promotion.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert as postgres_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from modelserve.errors import ModelNotFound, VersionNotFound
from modelserve.repository.registry.errors import RegistryConflict
from modelserve.repository.registry.records import (
    AuditAction,
    AuditEntry,
    KeyRecord,
    ModelSummary,
    ProfileRecord,
    RegisteredVersion,
    RoutingRecord,
    Stage,
)
from modelserve.repository.registry.schema import ApiKeyRow, AuditRow, ModelRow, ProfileRow, RoutingRow, VersionRow


def lock_model(session: Session, name: str, *, create_at: datetime | None = None) -> ModelRow:
    """Lock the model's row for this transaction (creating it first if ``create_at`` is given)."""
    if create_at is not None:
        if session.get_bind().dialect.name == "postgresql":
            session.execute(postgres_insert(ModelRow).values(name=name, created_at=create_at).on_conflict_do_nothing())
        else:
            session.execute(sqlite_insert(ModelRow).values(name=name, created_at=create_at).on_conflict_do_nothing())
    row = session.scalars(select(ModelRow).where(ModelRow.name == name).with_for_update()).one_or_none()
    if row is None:
        raise ModelNotFound(f"model {name!r} is not registered")
    return row


def highest_version(session: Session, name: str) -> int:
    return session.scalar(select(func.coalesce(func.max(VersionRow.version), 0)).where(VersionRow.model == name)) or 0


def version_row(session: Session, name: str, number: int) -> VersionRow:
    row = session.get(VersionRow, (name, number))
    if row is not None:
        return row
    if session.get(ModelRow, name) is None:
        raise ModelNotFound(f"model {name!r} is not registered")
    raise VersionNotFound(f"model {name!r} has no registered version {number}")


def production(session: Session, name: str) -> VersionRow | None:
    query = select(VersionRow).where(VersionRow.model == name, VersionRow.stage == Stage.PRODUCTION.value)
    return session.scalars(query).one_or_none()


def check_move(row: VersionRow, target: Stage) -> None:
    where = f"model {row.model!r} version {row.version}"
    if target is Stage.NONE:
        raise RegistryConflict(f"{where}: cannot move back to stage 'none'; expected staging, production or archived")
    if row.stage == target.value:
        raise RegistryConflict(f"{where} is already in {target.value}")
    if row.stage == Stage.ARCHIVED.value and target is Stage.STAGING:
        raise RegistryConflict(f"{where} is archived: it may go back to production, not to staging")


def rollback_target(session: Session, name: str, current: VersionRow | None, wanted: int | None) -> VersionRow:
    if wanted is not None:
        row = version_row(session, name, wanted)
        if row.stage not in (Stage.ARCHIVED.value, Stage.STAGING.value):
            raise RegistryConflict(
                f"model {name!r} version {wanted} is in {row.stage}: rollback restores an archived or staging version"
            )
        return row
    # the version most recently put in production that is archived now (the current one is not)
    query = (
        select(VersionRow)
        .join(AuditRow, (AuditRow.model == VersionRow.model) & (AuditRow.version == VersionRow.version))
        .where(
            VersionRow.model == name,
            VersionRow.stage == Stage.ARCHIVED.value,
            AuditRow.to_stage == Stage.PRODUCTION.value,
        )
        .order_by(AuditRow.id.desc())
        .limit(1)
    )
    found = session.scalars(query).first()
    if found is None:
        besides = "" if current is None else f" before version {current.version}"
        raise RegistryConflict(
            f"model {name!r}: nothing to roll back to: no archived version was in production{besides}; "
            "pass to_version to restore a specific archived or staging version"
        )
    return found


def move(
    session: Session,
    row: VersionRow,
    target: Stage,
    now: datetime,
    actor: str,
    action: AuditAction,
    reason: str,
    *,
    replaced_by: int | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    """Change a version's stage and log it; flushed at once so the one-production index sees order."""
    source = Stage(row.stage)
    row.stage, row.stage_changed_at = target.value, now
    row.replaced_by = replaced_by if target is Stage.ARCHIVED else None
    session.flush()
    audit(session, now, actor, action, row.model, row.version, reason, source, target, details)


def audit(
    session: Session,
    now: datetime,
    actor: str,
    action: AuditAction,
    name: str,
    version: int | None,
    reason: str,
    from_stage: Stage | None = None,
    to_stage: Stage | None = None,
    details: dict[str, Any] | None = None,
) -> AuditRow:
    row = AuditRow(
        at=now,
        actor=actor,
        action=action.value,
        model=name,
        version=version,
        from_stage=None if from_stage is None else from_stage.value,
        to_stage=None if to_stage is None else to_stage.value,
        reason=reason,
        details=details or {},
    )
    session.add(row)
    session.flush()  # assigns the id, and fails here (not at commit) if the database refuses
    return row


def version_record(row: VersionRow) -> RegisteredVersion:
    return RegisteredVersion(
        model=row.model,
        version=row.version,
        stage=Stage(row.stage),
        format=row.format,
        signature=dict(row.signature),
        checksums=dict(row.checksums),
        metadata=dict(row.metadata_),
        lineage=dict(row.lineage),
        libraries=dict(row.libraries),
        config=row.config,
        registered_by=row.registered_by,
        registered_at=row.registered_at,
        stage_changed_at=row.stage_changed_at,
        replaced_by=row.replaced_by,
        sunset_at=row.sunset_at,
    )


def upsert_routing(session: Session, values: dict[str, Any], update: Sequence[str]) -> None:
    """Insert the routing row ``values`` describes or, if the model has one, set its ``update`` columns.

    One statement (INSERT ... ON CONFLICT DO UPDATE), atomic against concurrent writers on both
    databases: columns outside ``update`` keep whatever another transaction committed.
    """
    if session.get_bind().dialect.name == "postgresql":
        on_postgres = postgres_insert(RoutingRow).values(**values)
        changes = {column: on_postgres.excluded[column] for column in update}
        session.execute(on_postgres.on_conflict_do_update(index_elements=[RoutingRow.model], set_=changes))
    else:
        on_sqlite = sqlite_insert(RoutingRow).values(**values)
        changes = {column: on_sqlite.excluded[column] for column in update}
        session.execute(on_sqlite.on_conflict_do_update(index_elements=[RoutingRow.model], set_=changes))


def routing_record(row: RoutingRow) -> RoutingRecord:
    return RoutingRecord(
        model=row.model,
        policy=None if row.policy is None else dict(row.policy),
        state=dict(row.state),
        updated_at=row.updated_at,
        updated_by=row.updated_by,
    )


def entry_record(row: AuditRow) -> AuditEntry:
    return AuditEntry(
        id=row.id,
        at=row.at,
        actor=row.actor,
        action=AuditAction(row.action),
        model=row.model,
        version=row.version,
        from_stage=None if row.from_stage is None else Stage(row.from_stage),
        to_stage=None if row.to_stage is None else Stage(row.to_stage),
        reason=row.reason,
        details=dict(row.details),
    )


def summary(model: ModelRow, versions: list[tuple[int, str]]) -> ModelSummary:
    production = [number for number, stage in versions if stage == Stage.PRODUCTION.value]
    return ModelSummary(
        name=model.name,
        created_at=model.created_at,
        version_count=len(versions),
        latest_version=versions[-1][0] if versions else None,
        production=production[0] if production else None,
        staging=tuple(number for number, stage in versions if stage == Stage.STAGING.value),
    )


def profile_record(row: ProfileRow) -> ProfileRecord:
    return ProfileRecord(
        model=row.model,
        version=row.version,
        profile=dict(row.profile),
        source=row.source,
        created_at=row.created_at,
        created_by=row.created_by,
    )


def key_record(row: ApiKeyRow) -> KeyRecord:
    return KeyRecord(
        key_id=row.key_id,
        name=row.name,
        role=row.role,
        salt=row.salt,
        hash=row.hash,
        created_at=row.created_at,
        created_by=row.created_by,
        revoked_at=row.revoked_at,
        rate_limit=row.rate_limit,
        burst=row.burst,
    )
