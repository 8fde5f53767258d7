"""``modelserve monitor profile|status``: reference profiles, and a running server's drift report.

``profile`` builds a version's reference profile from its training data (monitoring/profiling.py)
and stores it in the registry database (audited as ``profile``); a running server picks it up
within seconds. ``status`` asks a running server (``GET /v2/models/{m}/monitoring``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

import click
import httpx

from modelserve.bootstrap import decode_sample
from modelserve.cli.options import default_actor, repository_option
from modelserve.cli.traffic import DEFAULT_URL, Failed
from modelserve.config.model import load_model_config
from modelserve.errors import ModelServeError
from modelserve.monitoring.profiling import profile_version, read_table
from modelserve.protocol.names import check_model_name
from modelserve.repository.layout import CONFIG_FILE, scan_one
from modelserve.repository.registry import RegistryStore, default_url

TIMEOUT_S = 30.0


@click.group()
def monitor() -> None:
    """Drift and outlier monitoring: reference profiles, and what a running server sees."""


@monitor.command()
@click.option("--model", "-m", "name", required=True, help="The model (a directory of the repository).")
@click.option("--version", "-v", "version", type=click.IntRange(min=1), help="[default: the latest version]")
@click.option(
    "--data",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="Training data: .parquet, .csv, .jsonl",
)
@click.option("--columns", help="Comma-separated columns that make the model's one 2-D input. [default: all]")
@click.option("--categorical", default="", help="Comma-separated features to treat as categorical.")
@click.option("--trust-code", is_flag=True, help="Allow loading a model given as Python code.")
@click.option("--seed", default=0, show_default=True, help="Seed of the samples the profile keeps.")
@click.option("--url", envvar="MODELSERVE_REGISTRY_URL", help="The registry database. [default: the repository's]")
@click.option("--actor", help="Who to record in the audit log. [default: user@host]")
@repository_option("The model repository.")
def profile(
    name: str,
    version: int | None,
    data: Path,
    columns: str | None,
    categorical: str,
    trust_code: bool,
    seed: int,
    url: str | None,
    actor: str | None,
    repository: Path,
) -> None:
    """Build the reference profile of a model version from its training data, and store it."""
    try:
        check_model_name(name)
        source = scan_one(repository, name)
        if source is None or not source.versions:
            raise click.ClickException(f"no model {name!r} with versions under {repository}")
        number = version if version is not None else max(source.versions)
        if number not in source.versions:
            raise click.ClickException(f"model {name!r} has no version {number}; it has {sorted(source.versions)}")
        config = load_model_config(source.path / CONFIG_FILE)
        table = read_table(data)
        built = profile_version(
            source.versions[number],
            f"{name!r} version {number}",
            config,
            table,
            columns=[c.strip() for c in columns.split(",")] if columns else None,
            categorical={c.strip() for c in categorical.split(",") if c.strip()},
            trust_code=trust_code,
            decode_sample=decode_sample,
            seed=seed,
        )
        with RegistryStore(url or default_url(repository)) as store:
            store.set_profile(name, number, built.to_dict(), actor=actor or default_actor(), source=data.name)
    except ModelServeError as exc:
        raise click.ClickException(exc.message) from None
    names = ", ".join(built.feature_names)
    click.echo(
        f"{name} version {number}: profile of {built.rows} rows stored ({len(built.feature_names)} features: {names})"
    )


@monitor.command()
@click.argument("name")
@click.option("--version", "-v", "version", type=click.IntRange(min=1), help="[default: every monitored version]")
@click.option("--url", envvar="MODELSERVE_URL", default=DEFAULT_URL, show_default=True, help="The server's address.")
@click.option("--json", "as_json", is_flag=True, help="The server's answer as is.")
def status(name: str, version: int | None, url: str, as_json: bool) -> None:
    """What a running server sees of NAME's live traffic: rows, outliers, drift per feature."""
    path = f"/v2/models/{quote(name, safe='')}" + (f"/versions/{version}" if version else "") + "/monitoring"
    try:
        reply = httpx.get(url.rstrip("/") + path, timeout=TIMEOUT_S)
    except httpx.HTTPError as exc:
        raise Failed(f"cannot reach the server at {url}: {exc}") from None
    if reply.status_code != 200:
        try:
            message = reply.json()["error"]
        except (ValueError, KeyError, TypeError):
            message = reply.text or f"HTTP {reply.status_code}"
        raise Failed(str(message))
    doc = reply.json()
    if as_json:
        click.echo(json.dumps(doc, indent=2))
        return
    if not doc["versions"]:
        click.echo(f"{name}: not monitored (no version has a reference profile: modelserve monitor profile)")
        return
    for watched in doc["versions"]:
        click.echo(_summary(name, watched))


def _summary(name: str, watched: dict[str, Any]) -> str:
    state = "DRIFT" if watched["drift"] else "ok"
    lines = [
        f"{name} version {watched['version']}: {state}; {watched['rows']} rows seen, {watched['outliers']} outliers, "
        f"{watched['checks']} checks"
    ]
    report = watched.get("report")
    if report is None:
        lines.append("  no check yet (waiting for enough rows)")
        return "\n".join(lines)
    lines.append(f"  {'feature':<24} {'test':<5} {'p-value':>10} {'psi':>8}  drifted")
    for section, prefix in (("features", ""), ("outputs", "output ")):
        for feature, figures in (report.get(section) or {}).items():
            psi = figures.get("psi")
            lines.append(
                f"  {prefix + feature:<24} {figures['test']:<5} {figures['adjusted_p_value']:>10.3g} "
                f"{'' if psi is None else format(psi, '.3f'):>8}  {'yes' if figures['drifted'] else ''}"
            )
    multivariate = report.get("multivariate")
    if multivariate:
        lines.append(
            f"  multivariate: AUC {multivariate['auc']:.3f}, p-value {multivariate['p_value']:.3g}"
            + ("  drifted" if multivariate["drifted"] else "")
        )
    return "\n".join(lines)
