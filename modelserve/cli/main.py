"""The ``modelserve`` command line."""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path

import click

from modelserve import __version__
from modelserve.bootstrap import build_server
from modelserve.cli.auth import auth
from modelserve.cli.batch import batch_command
from modelserve.cli.logs import logs as logs_command
from modelserve.cli.monitor import monitor
from modelserve.cli.precompute import precompute_command
from modelserve.cli.registry import registry
from modelserve.cli.stream import stream_command
from modelserve.cli.traffic import traffic
from modelserve.config.server import ServerConfig
from modelserve.errors import ModelServeError
from modelserve.server.supervisor import Supervisor, worker_argv
from modelserve.telemetry import logs


@click.group()
@click.version_option(__version__, prog_name="modelserve")
def main() -> None:
    """modelserve: a model server for the Open Inference Protocol v2 and the TF Serving REST API."""


@main.command()
@click.argument("repository", type=click.Path(path_type=Path, file_okay=False))
@click.option("--host", default=None, help="Address to bind. [default: 127.0.0.1]")
@click.option("--http-port", type=int, default=None, help="REST port; 0 picks a free one. [default: 8080]")
@click.option("--grpc-port", type=int, default=None, help="gRPC port; 0 picks a free one. [default: 8081]")
@click.option(
    "--control-api",
    type=click.Choice(["on", "off"]),
    default=None,
    help="Allow loading and unloading models through the repository API (admin). [default: off]",
)
@click.option(
    "--trust-code",
    is_flag=True,
    default=None,
    help="Load models given as Python code (model.py); their code runs with the server's rights. [default: off]",
)
@click.option(
    "--watch-interval",
    type=float,
    default=None,
    help="Seconds between polls of the repository for changed, new and removed models; 0: no hot reload. [default: 2]",
)
@click.option(
    "--registry",
    is_flag=True,
    default=None,
    help="Serve the versions the model registry has in --stage, verified by checksum, instead of each "
    "config.yaml's version policy.",
)
@click.option(
    "--registry-url",
    default=None,
    help="The registry's database (implies --registry). [default: sqlite:///REPOSITORY/.modelserve/registry.db]",
)
@click.option(
    "--artifact-store",
    default=None,
    help="Fetch the registered versions from this fsspec URL (file://, s3://, gs://), verified by checksum; "
    "REPOSITORY is then a local cache. Needs --registry or --registry-url. [default: none]",
)
@click.option(
    "--stage",
    type=click.Choice(["production", "staging"]),
    default=None,
    help="The registry stage this server serves. [default: production]",
)
@click.option(
    "--manifest",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    default=None,
    help="Serve exactly the versions a manifest (modelserve registry export) lists, checksums verified.",
)
@click.option("--lazy-load", is_flag=True, default=None, help="Load each model on its first request, not at start-up.")
@click.option(
    "--idle-unload",
    "idle_unload_s",
    type=click.FloatRange(min=0),
    default=None,
    help="Unload a model version unused for this many seconds; its next request loads it again. [default: 0, never]",
)
@click.option(
    "--memory-budget",
    "memory_budget_mb",
    type=click.IntRange(min=0),
    default=None,
    help="MiB the loaded models may hold; least recently used ones are unloaded to stay under it. [default: 0, none]",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="Server processes sharing the ports (SO_REUSEPORT), each with every model loaded. [default: 1]",
)
@click.option(
    "--metrics",
    type=click.Choice(["on", "off"]),
    default=None,
    help="Per-request figures for /metrics and /v2/models/{m}/stats. [default: on]",
)
@click.option(
    "--log-format",
    type=click.Choice(["auto", "json", "console"]),
    default=None,
    help="JSON lines, or a line for people; auto: console on a terminal, JSON otherwise. [default: auto]",
)
@click.option(
    "--access-log",
    type=click.Choice(["on", "off"]),
    default=None,
    help="One structured record per inference request (logger modelserve.access). [default: off]",
)
@click.option(
    "--tracing",
    type=click.Choice(["on", "off"]),
    default=None,
    help="OpenTelemetry spans per inference request, exported as the OTEL_* variables say. [default: off]",
)
@click.option(
    "--payload-log-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Where models with payload_log on write their requests and responses. "
    "[default: REPOSITORY/.modelserve/payloads]",
)
@click.option(
    "--payload-log-sink",
    type=click.Choice(["files", "registry"]),
    default=None,
    help="Where the payload log goes: JSON Lines files (--payload-log-dir), or the payloads table of the "
    "registry database (--registry-url, else REPOSITORY/.modelserve/registry.db). [default: files]",
)
@click.option(
    "--tls-cert",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="PEM certificate (chain) for REST and gRPC over TLS; needs --tls-key. [default: no TLS]",
)
@click.option("--tls-key", type=click.Path(path_type=Path, dir_okay=False), default=None, help="Its PEM private key.")
@click.option(
    "--tls-client-ca",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="PEM CA certificates: clients must present a certificate one of them signed (mutual TLS).",
)
@click.option(
    "--auth",
    type=click.Choice(["on", "off"]),
    default=None,
    help="Require an API key (modelserve auth create-key) on every request but the health probes. [default: off]",
)
@click.option(
    "--auth-keys-file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="With --auth on, also accept the keys listed in this YAML file (modelserve auth create-key --keys-file); "
    "with it and no --registry/--registry-url, no registry database is needed. [default: none]",
)
@click.option(
    "--auth-metrics",
    type=click.Choice(["on", "off"]),
    default=None,
    help="With --auth on, /metrics needs a key too; off lets a scraper in without one. [default: on]",
)
@click.option(
    "--allow-unauthenticated-admin",
    is_flag=True,
    default=None,
    help="Start with the control API on and auth off even on a non-loopback --host (anyone reaching it is admin).",
)
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default=None)
def serve(
    repository: Path,
    host: str | None,
    http_port: int | None,
    grpc_port: int | None,
    control_api: str | None,
    trust_code: bool | None,
    watch_interval: float | None,
    registry: bool | None,
    registry_url: str | None,
    artifact_store: str | None,
    stage: str | None,
    manifest: Path | None,
    lazy_load: bool | None,
    idle_unload_s: float | None,
    memory_budget_mb: int | None,
    workers: int | None,
    metrics: str | None,
    log_format: str | None,
    access_log: str | None,
    tracing: str | None,
    payload_log_dir: Path | None,
    payload_log_sink: str | None,
    tls_cert: Path | None,
    tls_key: Path | None,
    tls_client_ca: Path | None,
    log_level: str | None,
    auth: str | None,
    auth_keys_file: Path | None,
    auth_metrics: str | None,
    allow_unauthenticated_admin: bool | None,
) -> None:
    """Serve every model under REPOSITORY (REPOSITORY/<model>/<version>/<artifact>)."""
    overrides = {
        "host": host,
        "http_port": http_port,
        "grpc_port": grpc_port,
        "control_api": None if control_api is None else control_api == "on",
        "trust_code": trust_code,
        "watch_interval": watch_interval,
        "registry": registry,
        "registry_url": registry_url,
        "artifact_store": artifact_store,
        "stage": stage,
        "manifest": None if manifest is None else str(manifest),
        "lazy_load": lazy_load,
        "idle_unload_s": idle_unload_s,
        "memory_budget_mb": memory_budget_mb,
        "workers": workers,
        "metrics": None if metrics is None else metrics == "on",
        "log_format": log_format,
        "access_log": None if access_log is None else access_log == "on",
        "tracing": None if tracing is None else tracing == "on",
        "payload_log_dir": None if payload_log_dir is None else str(payload_log_dir),
        "payload_log_sink": payload_log_sink,
        "tls_cert": None if tls_cert is None else str(tls_cert),
        "tls_key": None if tls_key is None else str(tls_key),
        "tls_client_ca": None if tls_client_ca is None else str(tls_client_ca),
        "log_level": log_level,
        "auth": None if auth is None else auth == "on",
        "auth_keys_file": None if auth_keys_file is None else str(auth_keys_file),
        "auth_metrics": None if auth_metrics is None else auth_metrics == "on",
        "allow_unauthenticated_admin": allow_unauthenticated_admin,
    }
    try:
        config = ServerConfig.load(repository, overrides)
    except ModelServeError as exc:
        raise click.UsageError(exc.message) from None
    logs.configure(config.log_level, config.log_format)
    if config.workers > 1:
        sys.exit(Supervisor(config, worker_argv(sys.argv[1:])).run())
    try:
        server = build_server(config)
    except ModelServeError as exc:
        raise click.UsageError(exc.message) from None
    try:
        _run(server.run_until_signal())
    except (ModelServeError, OSError) as exc:
        message = exc.message if isinstance(exc, ModelServeError) else str(exc)
        logging.getLogger("modelserve").error("%s", message)
        sys.exit(1)


def _run(coro: object) -> None:
    try:
        import uvloop
    except ImportError:  # uvloop does not exist on Windows
        asyncio.run(coro)  # type: ignore[arg-type]
    else:
        uvloop.run(coro)  # type: ignore[arg-type]


main.add_command(registry)
main.add_command(traffic)
main.add_command(logs_command)
main.add_command(monitor)
main.add_command(precompute_command)
main.add_command(batch_command)
main.add_command(auth)
main.add_command(stream_command)
