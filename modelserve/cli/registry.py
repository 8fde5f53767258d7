"""``modelserve registry``: register, promote, roll back, retire, list, show, history, export.

Every command opens the registry of ``--repository`` (``REPOSITORY/.modelserve/registry.db``)
unless ``--url`` names another database; every write is recorded in the audit log with
``--actor`` (default: the user and host running the command) and ``--reason``.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
import yaml

from modelserve import __version__
from modelserve.cli.options import default_actor, registry_options
from modelserve.core.registration import Inspection, publish, register
from modelserve.errors import ModelServeError
from modelserve.repository.artifacts import ArtifactStore
from modelserve.repository.registry import AuditEntry, RegisteredVersion, RegistryStore, Stage, default_url

VALIDATE_TIMEOUT_S = 600


@dataclass(frozen=True, slots=True)
class Context:
    repository: Path
    url: str
    actor: str


@click.group()
@registry_options("The model repository the registry belongs to (registered versions are copied there).")
@click.pass_context
def registry(ctx: click.Context, repository: Path, url: str | None, actor: str | None) -> None:
    """The model registry: versions, stages, checksums and an audit log."""
    ctx.obj = Context(repository, url or default_url(repository), actor or default_actor())


@contextmanager
def open_store(ctx: Context) -> Iterator[RegistryStore]:
    """The registry ``ctx`` names; its errors become click errors (exit 1, the message)."""
    try:
        with RegistryStore(ctx.url) as store:
            yield store
    except ModelServeError as exc:
        raise click.ClickException(exc.message) from None


def _pairs(values: tuple[str, ...], option: str) -> dict[str, Any]:
    """``k=v`` options as a dict; a value that parses as YAML scalar (numbers, booleans) keeps its type."""
    found: dict[str, Any] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected KEY=VALUE, got {item!r}", param_hint=option)
        parsed = yaml.safe_load(value) if value else ""
        found[key] = parsed if isinstance(parsed, (int, float, bool, str)) else value
    return found


def inspect_in_child(path: Path, name: str, config: str | None, *, trust_code: bool, sample: Path | None) -> Inspection:
    """Load ``path`` in a fresh Python process (modelserve.cli.validate). Raises ModelServeError."""
    request = {
        "path": str(path),
        "name": name,
        "config": config,
        "trust_code": trust_code,
        "sample": sample and str(sample),
    }
    try:
        done = subprocess.run(
            [sys.executable, "-m", "modelserve.cli.validate"],
            input=json.dumps(request),
            capture_output=True,
            text=True,
            timeout=VALIDATE_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise ModelServeError(
            f"validation did not finish in {VALIDATE_TIMEOUT_S} s; the model was not registered"
        ) from None
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if not lines:
        tail = done.stderr.strip().splitlines()[-5:]
        raise ModelServeError(
            f"validation process exited with status {done.returncode} and no answer: " + " | ".join(tail)
        )
    answer = json.loads(lines[-1])
    if "error" in answer:
        raise ModelServeError(f"validation failed: {answer['error']}")
    return Inspection(**answer)


def artifact_store_option(help_text: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--artifact-store URL`` (env ``MODELSERVE_ARTIFACT_STORE``)."""
    return click.option(
        "--artifact-store", "artifact_store", envvar="MODELSERVE_ARTIFACT_STORE", default=None, help=help_text
    )


def _artifacts(url: str | None) -> ArtifactStore | None:
    try:
        return ArtifactStore(url) if url else None
    except ModelServeError as exc:
        raise click.ClickException(exc.message) from None


@registry.command("register")
@click.argument("artifact", type=click.Path(path_type=Path, exists=True))
@click.option("--name", required=True, help="The model's name.")
@click.option("--version", type=click.IntRange(min=1), default=None, help="[default: the next free number]")
@click.option("--metadata", "-m", multiple=True, help="KEY=VALUE, repeatable: free-form facts about the version.")
@click.option(
    "--lineage",
    "-l",
    multiple=True,
    help="KEY=VALUE, repeatable: where it came from (training_data=..., code_revision=..., metric.auc=...).",
)
@click.option(
    "--produced-with",
    multiple=True,
    help="LIBRARY=VERSION, repeatable: libraries that produced the artifact, where it does not record them.",
)
@click.option(
    "--sample-input",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    default=None,
    help="A v2 inference request (JSON) the version must answer.",
)
@click.option(
    "--config",
    "config_file",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    default=None,
    help="config.yaml for a model registered for the first time.",
)
@click.option("--trust-code", is_flag=True, help="Allow a model given as Python code (model.py) to be loaded.")
@click.option(
    "--profile-data",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    default=None,
    help="Training data (.parquet, .csv, .jsonl): store the version's reference profile for drift monitoring.",
)
@artifact_store_option(
    "Also publish the version to this fsspec URL (file://, s3://, gs://), where replicas fetch it (serve "
    "--artifact-store). [default: none]"
)
@click.option("--reason", default="", help="Why, for the audit log.")
@click.pass_obj
def register_command(
    ctx: Context,
    artifact: Path,
    name: str,
    version: int | None,
    metadata: tuple[str, ...],
    lineage: tuple[str, ...],
    produced_with: tuple[str, ...],
    sample_input: Path | None,
    config_file: Path | None,
    trust_code: bool,
    profile_data: Path | None,
    artifact_store: str | None,
    reason: str,
) -> None:
    """Validate ARTIFACT (a file or a version directory) and register it as a new version of --name."""
    declared = {k: str(v) for k, v in _pairs(produced_with, "--produced-with").items()}
    artifacts = _artifacts(artifact_store)
    config_text = config_file.read_bytes().decode("utf-8") if config_file is not None else None
    with open_store(ctx) as store:
        try:
            done = register(
                store,
                ctx.repository,
                artifact,
                name,
                inspect=lambda path, model, config: inspect_in_child(
                    path, model, config, trust_code=trust_code, sample=sample_input
                ),
                version=version,
                config_text=config_text,
                metadata=_pairs(metadata, "--metadata"),
                lineage=_pairs(lineage, "--lineage"),
                produced_with=declared,
                actor=ctx.actor,
                reason=reason,
                artifacts=artifacts,
            )
        except ModelServeError as exc:
            raise click.ClickException(exc.message) from None
    for warning in done.warnings:
        click.echo(f"warning: {warning}", err=True)
    record = done.version
    click.echo(f"registered {record.model} version {record.version} ({record.format}) at {done.path}; stage none")
    if artifacts is not None:
        click.echo(
            f"published {record.model} version {record.version} to {artifacts.url}/{record.model}/{record.version}"
        )
    if profile_data is not None:
        _profile(ctx, record, done.path, profile_data, trust_code)
    click.echo(f"promote it with: modelserve registry promote {record.model} {record.version} --to production")


@registry.command("publish")
@click.argument("name")
@click.argument("version", type=click.IntRange(min=1))
@artifact_store_option("The fsspec URL (file://, s3://, gs://) to publish to. [required]")
@click.pass_obj
def publish_command(ctx: Context, name: str, version: int, artifact_store: str | None) -> None:
    """Publish a registered VERSION of NAME from the repository to an artifact store (again: a
    version published with the same files is left as is), verified against its registered checksums."""
    artifacts = _artifacts(artifact_store)
    if artifacts is None:
        raise click.UsageError("publish needs --artifact-store URL (or MODELSERVE_ARTIFACT_STORE)")
    with open_store(ctx) as store:
        try:
            source = publish(store, ctx.repository, artifacts, name, version)
        except ModelServeError as exc:
            raise click.ClickException(exc.message) from None
    click.echo(f"published {name} version {version} from {source} to {artifacts.url}/{name}/{version}")


def _profile(ctx: Context, record: RegisteredVersion, path: Path, data: Path, trust_code: bool) -> None:
    """Store the reference profile of a version just registered (the registration stands if this fails)."""
    from modelserve.bootstrap import decode_sample
    from modelserve.config.model import parse_model_config
    from modelserve.monitoring.profiling import profile_version, read_table

    label = f"{record.model!r} version {record.version}"
    try:
        config = parse_model_config((yaml.safe_load(record.config) if record.config else None) or {}, "config.yaml")
        built = profile_version(
            path, label, config, read_table(data), trust_code=trust_code, decode_sample=decode_sample
        )
        with open_store(ctx) as store:
            store.set_profile(record.model, record.version, built.to_dict(), actor=ctx.actor, source=data.name)
    except ModelServeError as exc:
        raise click.ClickException(
            f"{label} is registered, but its profile was not stored: {exc.message}; retry with "
            f"modelserve monitor profile --model {record.model} --version {record.version} --data {data}"
        ) from None
    click.echo(f"stored the reference profile of {label} ({built.rows} rows of {data.name})")


@registry.command()
@click.argument("name")
@click.argument("version", type=click.IntRange(min=1))
@click.option(
    "--to", "stage", type=click.Choice(["staging", "production", "archived"]), default="production", show_default=True
)
@click.option("--reason", default="", help="Why, for the audit log.")
@click.pass_obj
def promote(ctx: Context, name: str, version: int, stage: str, reason: str) -> None:
    """Move VERSION of NAME to a stage; promoting to production archives the current production version."""
    with open_store(ctx) as store:
        before = _production(store, name)
        try:
            record = store.set_stage(name, version, Stage(stage), actor=ctx.actor, reason=reason)
        except ModelServeError as exc:
            raise click.ClickException(exc.message) from None
    replaced = f" (version {before} archived)" if stage == "production" and before not in (None, version) else ""
    click.echo(f"{record.model} version {record.version} is now in {record.stage.value}{replaced}")


@registry.command()
@click.argument("name")
@click.option("--to-version", type=click.IntRange(min=1), default=None, help="[default: the previous production one]")
@click.option("--reason", default="", help="Why, for the audit log.")
@click.pass_obj
def rollback(ctx: Context, name: str, to_version: int | None, reason: str) -> None:
    """Put the previous production version of NAME back in production."""
    with open_store(ctx) as store:
        before = _production(store, name)
        try:
            record = store.rollback(name, actor=ctx.actor, reason=reason, to_version=to_version)
        except ModelServeError as exc:
            raise click.ClickException(exc.message) from None
    click.echo(f"{record.model}: production is version {record.version} again (was {before})")


@registry.command()
@click.argument("name")
@click.argument("version", type=click.IntRange(min=1))
@click.option(
    "--sunset",
    required=True,
    type=click.DateTime(["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S"]),
    help="When it retires (UTC): until then, its responses carry Deprecation and Sunset headers.",
)
@click.option("--reason", default="", help="Why, for the audit log.")
@click.pass_obj
def deprecate(ctx: Context, name: str, version: int, sunset: datetime, reason: str) -> None:
    """Schedule the retirement of VERSION of NAME."""
    with open_store(ctx) as store:
        try:
            record = store.schedule_retirement(
                name, version, sunset.replace(tzinfo=UTC), actor=ctx.actor, reason=reason
            )
        except ModelServeError as exc:
            raise click.ClickException(exc.message) from None
    assert record.sunset_at is not None
    click.echo(f"{record.model} version {record.version} retires at {record.sunset_at.isoformat()}")


@registry.command("list")
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def list_command(ctx: Context, name: str | None, as_json: bool) -> None:
    """Every model (or every version of NAME) with its stages."""
    with open_store(ctx) as store:
        try:
            if name is None:
                models = store.models()
                rows = [
                    {
                        "name": m.name,
                        "versions": m.version_count,
                        "latest": m.latest_version,
                        "production": m.production,
                        "staging": list(m.staging),
                    }
                    for m in models
                ]
            else:
                rows = [_summary(r) for r in store.versions(name)]
        except ModelServeError as exc:
            raise click.ClickException(exc.message) from None
    if as_json:
        click.echo(json.dumps(rows, indent=2, default=str))
    else:
        _table(rows)


@registry.command()
@click.argument("name")
@click.argument("version", type=click.IntRange(min=1))
@click.pass_obj
def show(ctx: Context, name: str, version: int) -> None:
    """Everything recorded about VERSION of NAME (JSON)."""
    with open_store(ctx) as store:
        try:
            record = store.get(name, version)
        except ModelServeError as exc:
            raise click.ClickException(exc.message) from None
    click.echo(json.dumps(_full(record), indent=2, default=str))


@registry.command()
@click.argument("name", required=False)
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Only the last N entries.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def history(ctx: Context, name: str | None, limit: int | None, as_json: bool) -> None:
    """The audit log (of NAME, or of every model), oldest first."""
    with open_store(ctx) as store:
        try:
            entries = store.history(name, limit)
        except ModelServeError as exc:
            raise click.ClickException(exc.message) from None
    rows = [_entry(e) for e in entries]
    if as_json:
        click.echo(json.dumps(rows, indent=2, default=str))
    else:
        _table([{k: v for k, v in row.items() if k != "details"} for row in rows])


@registry.command()
@click.option("--stage", type=click.Choice(["production", "staging"]), default="production", show_default=True)
@click.option("--output", "-o", type=click.Path(path_type=Path, dir_okay=False), default=None, help="[default: stdout]")
@click.pass_obj
def export(ctx: Context, stage: str, output: Path | None) -> None:
    """Write a deployment manifest of the versions in --stage (serve it with `modelserve serve --manifest`)."""
    with open_store(ctx) as store:
        try:
            chosen = store.in_stage(Stage(stage))
            records = [store.get(name, v) for name, versions in sorted(chosen.items()) for v in versions]
        except ModelServeError as exc:
            raise click.ClickException(exc.message) from None
    manifest = {
        "modelserve": __version__,
        "exported_at": datetime.now(UTC).isoformat(),
        "stage": stage,
        "registry": store.url,
        "python": ".".join(map(str, sys.version_info[:3])),
        "models": [
            {
                "name": r.model,
                "version": r.version,
                "format": r.format,
                "checksums": r.checksums,
                "config_sha256": None if r.config is None else hashlib.sha256(r.config.encode()).hexdigest(),
                "libraries": r.libraries,
                "validated_with": r.lineage.get("validated_with", {}),
                "registered_by": r.registered_by,
                "registered_at": r.registered_at.isoformat(),
            }
            for r in records
        ],
    }
    text = yaml.safe_dump(manifest, sort_keys=False)
    if output is None:
        click.echo(text, nl=False)
        return
    temporary = output.with_name(f".{output.name}.partial")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, output)
    click.echo(f"wrote {len(records)} model(s) in {stage} to {output}", err=True)


def _production(store: RegistryStore, name: str) -> int | None:
    try:
        return next((r.version for r in store.versions(name) if r.stage is Stage.PRODUCTION), None)
    except ModelServeError:
        return None


def _summary(record: RegisteredVersion) -> dict[str, Any]:
    return {
        "name": record.model,
        "version": record.version,
        "stage": record.stage.value,
        "format": record.format,
        "registered_by": record.registered_by,
        "registered_at": record.registered_at.strftime("%Y-%m-%d %H:%M:%S"),
        "sunset": record.sunset_at.strftime("%Y-%m-%d %H:%M") if record.sunset_at else "",
    }


def _full(record: RegisteredVersion) -> dict[str, Any]:
    return {
        "name": record.model,
        "version": record.version,
        "stage": record.stage.value,
        "format": record.format,
        "signature": record.signature,
        "checksums": record.checksums,
        "metadata": record.metadata,
        "lineage": record.lineage,
        "libraries": record.libraries,
        "config": record.config,
        "registered_by": record.registered_by,
        "registered_at": record.registered_at.isoformat(),
        "stage_changed_at": record.stage_changed_at.isoformat(),
        "replaced_by": record.replaced_by,
        "sunset_at": record.sunset_at.isoformat() if record.sunset_at else None,
    }


def _entry(entry: AuditEntry) -> dict[str, Any]:
    return {
        "at": entry.at.strftime("%Y-%m-%d %H:%M:%S"),
        "actor": entry.actor,
        "action": entry.action.value,
        "model": entry.model,
        "version": entry.version,
        "stage": f"{entry.from_stage.value if entry.from_stage else ''}->{entry.to_stage.value}"
        if entry.to_stage
        else "",
        "reason": entry.reason,
        "details": entry.details,
    }


def _table(rows: list[dict[str, Any]]) -> None:
    if not rows:
        click.echo("(nothing)")
        return
    columns = list(rows[0])
    cells = [[("" if row[c] is None else str(row[c])) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    click.echo("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
    for row in cells:
        click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
