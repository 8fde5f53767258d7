"""RegistryStore: the model registry's persistence API (versions, stages, and the audit log).

Contract:

- Every write is one transaction that also appends its audit row(s). If any part fails, nothing is
  changed and the caller gets an exception: RegistryError (database trouble, the message names the
  operation and the database's words, e.g. "database is locked"), RegistryConflict (the registry's
  state refuses the request), ModelNotFound / VersionNotFound, or InvalidInput (a malformed argument,
  checked before the database is touched).
- Writes to one model are serialized: on PostgreSQL by a row lock on the model (``SELECT ... FOR
  UPDATE``), on SQLite by ``BEGIN IMMEDIATE``. So automatic version numbers never repeat, and at
  most one version per model is in production (a unique partial index guards that too).
- Stages: every version starts in ``none``; any version may move to staging, production or
  archived, except archived to staging and except to its own stage. Promoting to production
  archives the previous production version with ``replaced_by`` set to the new one.
- Routing (``set_traffic``, ``save_routing_state``): one row per served model, registered or not,
  with a traffic policy override and its router's state. Each write is one upsert statement, so
  a state save never overwrites a policy set meanwhile. It does replace the state that a policy
  change reset to {}: a server that changes a policy must stop saving the old router's state.
- Reads see one consistent snapshot and return frozen records (``records.py``), never ORM objects.
- The audit log is append-only: no method updates or deletes it, and database triggers refuse it.
- Methods block while the database is locked by another writer, up to ``busy_timeout_ms``.
  One store may be shared by threads.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from modelserve.config import apikeys
from modelserve.errors import InvalidInput, ModelNotFound
from modelserve.repository.registry import _rows as rows
from modelserve.repository.registry import _validate as check
from modelserve.repository.registry._database import WRITE, migrate, open_engine, shown
from modelserve.repository.registry.errors import RegistryConflict, RegistryError
from modelserve.repository.registry.records import (
    EVENT_ACTIONS,
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


class RegistryStore:
    """The registry in the database at ``url`` (``sqlite:///path`` or ``postgresql+psycopg://...``).

    Opening applies pending migrations (raises RegistryError if the database is unusable,
    ConfigError if the URL is). ``busy_timeout_ms`` bounds how long an operation waits for a lock
    held by another writer: SQLite's busy_timeout, PostgreSQL's lock_timeout.
    """

    def __init__(self, url: str, *, busy_timeout_ms: int = 5000) -> None:
        if isinstance(busy_timeout_ms, bool) or not isinstance(busy_timeout_ms, int) or busy_timeout_ms < 0:
            raise InvalidInput(f"busy_timeout_ms {busy_timeout_ms!r}: expected an integer >= 0 (milliseconds)")
        self._engine = open_engine(url, busy_timeout_ms)
        self._writer = self._engine.execution_options(**{WRITE: True})
        self._closed = False
        try:
            with _database_errors(f"open registry {self.url}"):
                migrate(self._engine)
        except BaseException:
            self._engine.dispose()
            raise

    @property
    def url(self) -> str:
        """The database URL, password hidden."""
        return shown(self._engine.url)

    def close(self) -> None:
        """Close every pooled connection; later calls raise RegistryError. Idempotent."""
        self._closed = True
        self._engine.dispose()

    def __enter__(self) -> RegistryStore:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    # -- writes -------------------------------------------------------------------------------

    def register(
        self,
        name: str,
        version: int | None = None,
        *,
        format: str,
        signature: dict[str, Any],
        checksums: dict[str, str],
        metadata: dict[str, Any],
        lineage: dict[str, Any],
        libraries: dict[str, str],
        config: str | None,
        actor: str,
        reason: str = "",
    ) -> RegisteredVersion:
        """Register ``name`` ``version`` (None: the highest registered + 1, from 1) in stage ``none``.

        Creates the model on its first version. Raises RegistryConflict if the version exists.
        """
        name = check.model_name(name)
        number = None if version is None else check.version_number(version, name)
        actor, reason = check.text("actor", actor, required=True), check.text("reason", reason, required=False)
        row = VersionRow(
            model=name,
            stage=Stage.NONE.value,
            format=check.text("format", format, required=True),
            signature=check.json_object("signature", signature),
            checksums=check.checksums(checksums),
            metadata_=check.json_object("metadata", metadata),
            lineage=check.json_object("lineage", lineage),
            libraries=check.string_map("libraries", libraries),
            config=None if config is None else check.text("config", config, required=False),
            registered_by=actor,
            replaced_by=None,
            sunset_at=None,
        )
        operation = f"register model {name!r} version {number if number else '(next)'}"
        with self._transaction(operation, write=True) as session:
            now = datetime.now(UTC)
            rows.lock_model(session, name, create_at=now)
            highest = rows.highest_version(session, name)
            if number is None:
                number = highest + 1
            elif (existing := session.get(VersionRow, (name, number))) is not None:
                raise RegistryConflict(
                    f"model {name!r} version {number} is already registered (stage {existing.stage}, by "
                    f"{existing.registered_by!r}); omit the version to register the next one, {highest + 1}"
                )
            row.version, row.registered_at, row.stage_changed_at = number, now, now
            session.add(row)
            session.flush()
            rows.audit(session, now, actor, AuditAction.REGISTER, name, number, reason, to_stage=Stage.NONE)
            return rows.version_record(row)

    def set_stage(
        self, name: str, version: int, stage: Stage | str, *, actor: str, reason: str = ""
    ) -> RegisteredVersion:
        """Move a version to ``stage`` (audit ``promote``, or ``archive`` when archiving).

        Promoting to production archives the current production version (its own ``archive`` row,
        ``replaced_by`` = ``version``). Raises RegistryConflict for an illegal move (see module doc).
        """
        name = check.model_name(name)
        number = check.version_number(version, name)
        target = check.stage(stage)
        actor, reason = check.text("actor", actor, required=True), check.text("reason", reason, required=False)
        with self._transaction(f"move model {name!r} version {number} to {target}", write=True) as session:
            now = datetime.now(UTC)
            rows.lock_model(session, name)
            row = rows.version_row(session, name, number)
            rows.check_move(row, target)
            if target is Stage.PRODUCTION and (current := rows.production(session, name)) is not None:
                why = f"replaced by version {number}, promoted to production" + (f": {reason}" if reason else "")
                rows.move(session, current, Stage.ARCHIVED, now, actor, AuditAction.ARCHIVE, why, replaced_by=number)
            action = AuditAction.ARCHIVE if target is Stage.ARCHIVED else AuditAction.PROMOTE
            rows.move(session, row, target, now, actor, action, reason)
            return rows.version_record(row)

    def rollback(self, name: str, *, actor: str, reason: str = "", to_version: int | None = None) -> RegisteredVersion:
        """Put back in production the version that was there before the current one (audit ``rollback``).

        That is the version most recently put in production that is now archived, so a second
        rollback undoes the first; ``to_version`` (archived or staging) picks another. The current
        production version, if any, is archived with ``replaced_by`` = the restored version.
        Raises RegistryConflict if there is nothing to roll back to.
        """
        name = check.model_name(name)
        wanted = None if to_version is None else check.version_number(to_version, name)
        actor, reason = check.text("actor", actor, required=True), check.text("reason", reason, required=False)
        with self._transaction(f"roll back model {name!r}", write=True) as session:
            now = datetime.now(UTC)
            rows.lock_model(session, name)
            current = rows.production(session, name)
            target = rows.rollback_target(session, name, current, wanted)
            if current is not None:
                why = f"rolled back to version {target.version}" + (f": {reason}" if reason else "")
                rows.move(
                    session, current, Stage.ARCHIVED, now, actor, AuditAction.ARCHIVE, why, replaced_by=target.version
                )
            details = {"replaced": None if current is None else current.version}
            rows.move(session, target, Stage.PRODUCTION, now, actor, AuditAction.ROLLBACK, reason, details=details)
            return rows.version_record(target)

    def schedule_retirement(
        self, name: str, version: int, sunset_at: datetime, *, actor: str, reason: str = ""
    ) -> RegisteredVersion:
        """Set the version's ``sunset_at`` (timezone-aware; a later call replaces it). Audit ``deprecate``."""
        name = check.model_name(name)
        number = check.version_number(version, name)
        when = check.aware("sunset_at", sunset_at).astimezone(UTC)
        actor, reason = check.text("actor", actor, required=True), check.text("reason", reason, required=False)
        with self._transaction(f"schedule retirement of model {name!r} version {number}", write=True) as session:
            now = datetime.now(UTC)
            rows.lock_model(session, name)
            row = rows.version_row(session, name, number)
            row.sunset_at = when
            session.flush()
            details = {"sunset_at": when.isoformat()}
            rows.audit(session, now, actor, AuditAction.DEPRECATE, name, number, reason, details=details)
            return rows.version_record(row)

    def record(
        self,
        action: AuditAction | str,
        name: str,
        version: int | None,
        *,
        actor: str,
        reason: str = "",
        details: dict[str, Any] | None = None,
    ) -> AuditEntry:
        """Append a server event (``load``, ``unload``, ``load_failed``, ``canary_step`` or
        ``canary_rollback``); changes no stage.

        The model need not be registered: a server may serve models from a directory only.
        """
        kind = check.action(action)
        if kind not in EVENT_ACTIONS:
            raise InvalidInput(
                f"audit action {kind.value!r}: record() takes {', '.join(sorted(EVENT_ACTIONS))}; "
                f"{kind.value} is written by the operation it records"
            )
        name = check.model_name(name)
        number = None if version is None else check.version_number(version, name)
        actor, reason = check.text("actor", actor, required=True), check.text("reason", reason, required=False)
        extra = {} if details is None else check.json_object("details", details)
        with self._transaction(f"record {kind.value} of model {name!r} version {number}", write=True) as session:
            row = rows.audit(session, datetime.now(UTC), actor, kind, name, number, reason, details=extra)
            return rows.entry_record(row)

    def set_traffic(self, name: str, policy: dict[str, Any] | None, *, actor: str, reason: str = "") -> RoutingRecord:
        """Override the ``traffic:`` policy of model ``name`` (None: clear the override).

        Resets the model's router state to {} (a new policy starts afresh) and appends a ``traffic``
        audit row with details {"policy": policy}, in the same transaction. The model need not be
        registered. The policy is stored as given (a JSON object); judging it is the router's job.
        """
        name = check.model_name(name)
        stored = None if policy is None else check.json_object("policy", policy)
        actor, reason = check.text("actor", actor, required=True), check.text("reason", reason, required=False)
        operation = f"{'clear' if stored is None else 'set'} the traffic policy of model {name!r}"
        with self._transaction(operation, write=True) as session:
            now = datetime.now(UTC)
            values = {"model": name, "policy": stored, "state": {}, "updated_at": now, "updated_by": actor}
            rows.upsert_routing(session, values, update=("policy", "state", "updated_at", "updated_by"))
            rows.audit(session, now, actor, AuditAction.TRAFFIC, name, None, reason, details={"policy": stored})
            return rows.routing_record(session.scalars(select(RoutingRow).where(RoutingRow.model == name)).one())

    def save_routing_state(self, name: str, state: dict[str, Any]) -> None:
        """Replace the router state of model ``name`` (bandit counts, canary step); not audited.

        One short statement, meant to be called every second or so: the policy and
        ``updated_at``/``updated_by`` stay as they are (a row created here has no policy).
        """
        name = check.model_name(name)
        saved = check.json_object("state", state)
        with self._transaction(f"save the routing state of model {name!r}", write=True) as session:
            values = {"model": name, "policy": None, "state": saved, "updated_at": datetime.now(UTC), "updated_by": ""}
            rows.upsert_routing(session, values, update=("state",))

    def set_profile(
        self, name: str, version: int, profile: dict[str, Any], *, actor: str, source: str = ""
    ) -> ProfileRecord:
        """Store the reference profile of ``name`` version ``version`` (replacing any), and append a
        ``profile`` audit row, in one transaction. The version need not be registered."""
        name = check.model_name(name)
        number = check.version_number(version, name)
        document = check.json_object("profile", profile)
        actor, source = check.text("actor", actor, required=True), check.text("source", source, required=False)
        with self._transaction(f"store the profile of model {name!r} version {number}", write=True) as session:
            now = datetime.now(UTC)
            row = session.get(ProfileRow, (name, number))
            if row is None:
                row = ProfileRow(model=name, version=number)
                session.add(row)
            row.profile, row.source, row.created_at, row.created_by = document, source, now, actor
            details = {"source": source, "features": len(document.get("features", []))}
            rows.audit(session, now, actor, AuditAction.PROFILE, name, number, "", details=details)
            session.flush()
            return rows.profile_record(row)

    def create_key(
        self, name: str, role: str, *, actor: str, rate_limit: float | None = None, burst: int | None = None
    ) -> tuple[str, str]:
        """Create an API key with ``role`` (``infer`` or ``admin``) and an optional rate limit
        (requests/s; ``burst`` requests at once, default twice the rate); returns (key id, token).

        Only the salted hash is stored: the token is returned here once and never again. Audited
        (``key_created``, model "").
        """
        name, actor = check.text("key name", name, required=True), check.text("actor", actor, required=True)
        if role not in apikeys.ROLES:
            raise InvalidInput(f"key role {role!r}: expected one of {', '.join(apikeys.ROLES)}")
        try:
            rate_limit, burst = apikeys.check_limit(rate_limit, burst)
        except ValueError as exc:
            raise InvalidInput(f"key {name!r}: {exc}") from None
        key_id, token = apikeys.new_token()
        _, salt, hashed = apikeys.hash_token(token)
        with self._transaction(f"create API key {name!r}", write=True) as session:
            now = datetime.now(UTC)
            session.add(
                ApiKeyRow(
                    key_id=key_id, name=name, role=role, salt=salt, hash=hashed,
                    created_at=now, created_by=actor, revoked_at=None, rate_limit=rate_limit, burst=burst,
                )
            )  # fmt: skip
            session.flush()
            details: dict[str, Any] = {"key_id": key_id, "name": name, "role": role}
            if rate_limit is not None:
                details.update(rate_limit=rate_limit, burst=burst)
            rows.audit(session, now, actor, AuditAction.KEY_CREATED, "", None, "", details=details)
        return key_id, token

    def revoke_key(self, key_id: str, *, actor: str, reason: str = "") -> KeyRecord:
        """Revoke key ``key_id`` (audited ``key_revoked``). Raises InvalidInput for an unknown key
        and RegistryConflict for one already revoked."""
        actor, reason = check.text("actor", actor, required=True), check.text("reason", reason, required=False)
        with self._transaction(f"revoke API key {key_id!r}", write=True) as session:
            row = session.get(ApiKeyRow, key_id, with_for_update=True)
            if row is None:
                raise InvalidInput(f"API key {key_id!r} does not exist (see modelserve auth list)")
            if row.revoked_at is not None:
                raise RegistryConflict(f"API key {key_id!r} ({row.name!r}) was revoked at {row.revoked_at.isoformat()}")
            now = datetime.now(UTC)
            row.revoked_at = now
            session.flush()
            details = {"key_id": key_id, "name": row.name, "role": row.role}
            rows.audit(session, now, actor, AuditAction.KEY_REVOKED, "", None, reason, details=details)
            return rows.key_record(row)

    # -- reads --------------------------------------------------------------------------------

    def keys(self) -> list[KeyRecord]:
        """Every API key, revoked ones included, oldest first."""
        with self._transaction("read API keys") as session:
            query = select(ApiKeyRow).order_by(ApiKeyRow.created_at, ApiKeyRow.key_id)
            return [rows.key_record(row) for row in session.scalars(query)]

    def key(self, key_id: str) -> KeyRecord | None:
        """API key ``key_id``, None if there is none."""
        with self._transaction(f"read API key {key_id!r}") as session:
            row = session.get(ApiKeyRow, key_id)
            return None if row is None else rows.key_record(row)

    def profile(self, name: str, version: int) -> ProfileRecord | None:
        """The reference profile of ``name`` version ``version``, None if none was stored."""
        name = check.model_name(name)
        number = check.version_number(version, name)
        with self._transaction(f"read the profile of model {name!r} version {number}") as session:
            row = session.get(ProfileRow, (name, number))
            return None if row is None else rows.profile_record(row)

    def profiled(self) -> dict[tuple[str, int], datetime]:
        """When each stored profile was written, by (model, version): cheap to poll."""
        with self._transaction("list profiles") as session:
            query = select(ProfileRow.model, ProfileRow.version, ProfileRow.created_at)
            return {(model, version): at for model, version, at in session.execute(query)}

    def routing(self, name: str) -> RoutingRecord | None:
        """The policy override and router state of model ``name``; None if neither was ever saved."""
        name = check.model_name(name)
        with self._transaction(f"read the routing of model {name!r}") as session:
            row = session.get(RoutingRow, name)
            return None if row is None else rows.routing_record(row)

    def routings(self) -> list[RoutingRecord]:
        """Every model's routing row, by model name."""
        with self._transaction("read routing") as session:
            return [rows.routing_record(row) for row in session.scalars(select(RoutingRow).order_by(RoutingRow.model))]

    def next_version(self, name: str) -> int:
        """The number ``register(name, None)`` would take now (1 for an unknown model)."""
        name = check.model_name(name)
        with self._transaction(f"read next version of model {name!r}") as session:
            return rows.highest_version(session, name) + 1

    def get(self, name: str, version: int) -> RegisteredVersion:
        """One version. Raises ModelNotFound or VersionNotFound."""
        name = check.model_name(name)
        number = check.version_number(version, name)
        with self._transaction(f"read model {name!r} version {number}") as session:
            return rows.version_record(rows.version_row(session, name, number))

    def versions(self, name: str) -> list[RegisteredVersion]:
        """Every version of ``name``, ascending. Raises ModelNotFound."""
        name = check.model_name(name)
        with self._transaction(f"read versions of model {name!r}") as session:
            query = select(VersionRow).where(VersionRow.model == name).order_by(VersionRow.version)
            records = [rows.version_record(row) for row in session.scalars(query)]
            if not records and session.get(ModelRow, name) is None:
                raise ModelNotFound(f"model {name!r} is not registered")
            return records

    def models(self) -> list[ModelSummary]:
        """Every registered model, by name."""
        with self._transaction("read models") as session:
            versions: dict[str, list[tuple[int, str]]] = {}
            query = select(VersionRow.model, VersionRow.version, VersionRow.stage).order_by(VersionRow.version)
            for model, number, stage in session.execute(query):
                versions.setdefault(model, []).append((number, stage))
            return [
                rows.summary(model, versions.get(model.name, []))
                for model in session.scalars(select(ModelRow).order_by(ModelRow.name))
            ]

    def in_stage(self, stage: Stage | str) -> dict[str, list[int]]:
        """{model: its versions in ``stage``, ascending} for every model with at least one."""
        wanted = check.stage(stage)
        with self._transaction(f"read versions in stage {wanted}") as session:
            query = (
                select(VersionRow.model, VersionRow.version)
                .where(VersionRow.stage == wanted.value)
                .order_by(VersionRow.model, VersionRow.version)
            )
            found: dict[str, list[int]] = {}
            for model, number in session.execute(query):
                found.setdefault(model, []).append(number)
            return found

    def history(self, name: str | None = None, limit: int | None = None) -> list[AuditEntry]:
        """Audit entries, oldest first: all of them, or of model ``name``; the last ``limit`` if given."""
        if name is not None:
            name = check.model_name(name)
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
            raise InvalidInput(f"history limit {limit!r}: expected an integer >= 1 or None")
        query = select(AuditRow).order_by(AuditRow.id.desc()).limit(limit)
        if name is not None:
            query = query.where(AuditRow.model == name)
        with self._transaction("read audit history" + ("" if name is None else f" of model {name!r}")) as session:
            return [rows.entry_record(row) for row in reversed(session.scalars(query).all())]

    # -- plumbing -----------------------------------------------------------------------------

    @contextmanager
    def _transaction(self, operation: str, *, write: bool = False) -> Iterator[Session]:
        """One transaction: committed if the block returns, rolled back if it raises."""
        if self._closed:
            raise RegistryError(f"{operation}: the registry store {self.url} is closed")
        with (
            _database_errors(operation),
            Session(self._writer if write else self._engine, expire_on_commit=False) as session,
            session.begin(),
        ):
            yield session


@contextmanager
def _database_errors(operation: str) -> Iterator[None]:
    """SQLAlchemy errors → RegistryError naming the operation and the database's first line."""
    try:
        yield
    except SQLAlchemyError as exc:
        cause = getattr(exc, "orig", None) or exc
        lines = str(cause).strip().splitlines()
        problem = lines[0] if lines else type(cause).__name__
        raise RegistryError(f"{operation}: database error: {problem}") from exc
