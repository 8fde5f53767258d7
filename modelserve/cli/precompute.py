"""``modelserve precompute``: score a table of keys and features with a model version and store
the outputs by key in a SQL table (a new generation, switched in at the end).

Refresh: ``--every 1h`` reruns in this process (or schedule a plain run from cron, e.g.
``0 * * * * modelserve precompute -m churn --input rows.parquet --key-column id --db URL --table T``);
``--on-promote`` watches the registry and reruns whenever the model's production version changes.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

import click

from modelserve.bootstrap import decode_sample
from modelserve.cli.options import repository_option
from modelserve.config.model import load_model_config
from modelserve.errors import ModelServeError
from modelserve.monitoring.profiling import read_table
from modelserve.precompute.job import Result, every, parse_interval, precompute, watch_production
from modelserve.protocol.names import check_model_name
from modelserve.repository.layout import CONFIG_FILE, scan_one
from modelserve.repository.precomputed import PrecomputedTable
from modelserve.repository.registry import RegistryStore, default_url


@click.command(name="precompute")
@click.option("--model", "-m", "name", required=True, help="The model (a directory of the repository).")
@click.option("--version", "-v", "version", type=click.IntRange(min=1), help="[default: the latest version]")
@click.option(
    "--input",
    "data",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="Keys and features: .parquet, .csv, .jsonl",
)
@click.option("--key-column", required=True, help="The column holding each row's key.")
@click.option(
    "--db", "db", help="Database URL (sqlite:///path or postgresql+psycopg://...). [default: REPOSITORY/precomputed.db]"
)
@click.option("--table", required=True, help="Table name (letters, digits, _).")
@click.option(
    "--columns", help="Comma-separated columns that make the model's one 2-D input. [default: all but the key]"
)
@click.option("--batch-rows", default=5000, show_default=True, type=click.IntRange(min=1), help="Rows per transaction.")
@click.option("--every", "interval", help="Recompute on this interval (30m, 1h, 1d) until stopped.")
@click.option("--on-promote", is_flag=True, help="Recompute whenever the registry's production version changes.")
@click.option(
    "--registry-url", envvar="MODELSERVE_REGISTRY_URL", help="The registry database. [default: the repository's]"
)
@click.option("--poll", default=10.0, show_default=True, help="Seconds between registry polls (--on-promote).")
@click.option("--trust-code", is_flag=True, help="Allow loading a model given as Python code.")
@repository_option("The model repository.")
def precompute_command(
    name: str,
    version: int | None,
    data: Path,
    key_column: str,
    db: str | None,
    table: str,
    columns: str | None,
    batch_rows: int,
    interval: str | None,
    on_promote: bool,
    registry_url: str | None,
    poll: float,
    trust_code: bool,
    repository: Path,
) -> None:
    """Score every row of --input and store the outputs by key for lookups."""
    if interval and on_promote:
        raise click.UsageError("--every and --on-promote exclude each other")
    try:
        check_model_name(name)
        target = PrecomputedTable(db or f"sqlite:///{(repository / 'precomputed.db').resolve()}", table)
        chosen = [c.strip() for c in columns.split(",")] if columns else None

        def run(number: int | None) -> Result:
            source = scan_one(repository, name)
            if source is None or not source.versions:
                raise click.ClickException(f"no model {name!r} with versions under {repository}")
            picked = number if number is not None else max(source.versions)
            if picked not in source.versions:
                raise click.ClickException(f"model {name!r} has no version {picked}; it has {sorted(source.versions)}")
            result = precompute(
                source.versions[picked],
                name,
                picked,
                load_model_config(source.path / CONFIG_FILE),
                read_table(data),
                key_column,
                target,
                columns=chosen,
                batch_rows=batch_rows,
                trust_code=trust_code,
                decode_sample=decode_sample,
            )
            click.echo(
                f"{name} version {picked}: {result.rows} rows stored in {target.where} "
                f"generation {result.generation} ({result.seconds:.1f} s)"
            )
            return result

        try:
            _refresh(run, version, interval, on_promote, registry_url or default_url(repository), poll, name)
        finally:
            target.close()
    except ModelServeError as exc:
        raise click.ClickException(exc.message) from None


def _refresh(
    run: Callable[[int | None], Result],
    version: int | None,
    interval: str | None,
    on_promote: bool,
    registry_url: str,
    poll: float,
    name: str,
) -> None:
    """Run once, or keep running on the interval or on promotion until interrupted."""
    if not interval and not on_promote:
        run(version)
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    stop = threading.Event()
    try:
        if interval:
            every(parse_interval(interval), lambda: run(version), stop)
        else:
            with RegistryStore(registry_url) as store:

                def production() -> int | None:
                    versions = store.in_stage("production").get(name)
                    return max(versions) if versions else None

                watch_production(production, run, stop, poll_s=poll)
    except KeyboardInterrupt:
        stop.set()
