"""``modelserve stream``: score records from a message broker with one model, answers to a stream
(modelserve/stream: consumer groups, at-least-once, hot reload; exits 0 on SIGTERM)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import click

from modelserve.errors import ModelServeError
from modelserve.stream import StreamConfig, default_consumer, run_until_signal
from modelserve.telemetry import logs


@click.command("stream")
@click.argument("repository", type=click.Path(path_type=Path, file_okay=False, exists=True))
@click.option(
    "--broker",
    required=True,
    envvar="MODELSERVE_BROKER_URL",
    help="redis://host:port/db, rediss://..., unix:///path.sock (Redis Streams) or kafka://host:port[,host:port]. "
    "Logs show it without its password; set it in MODELSERVE_BROKER_URL to keep it off the command line.",
)
@click.option("--input", "-i", "input_stream", required=True, help="The stream (Kafka: topic) to read records from.")
@click.option("--output", "-o", required=True, help="The stream (topic) the answers go to.")
@click.option("--model", "-m", required=True, help="The model of REPOSITORY that scores the records.")
@click.option("--group", default="modelserve", show_default=True, help="The consumer group.")
@click.option(
    "--consumer", help="This consumer's name in the group; keep it stable across restarts. [default: HOST-PID]"
)
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True, help="Records per read.")
@click.option(
    "--block-ms",
    type=click.IntRange(min=1),
    default=1000,
    show_default=True,
    help="How long a read waits for records (and so the longest a stop waits).",
)
@click.option(
    "--claim-idle-ms",
    type=click.IntRange(min=1),
    default=60_000,
    show_default=True,
    help="Redo records another consumer left unacknowledged this long (it died).",
)
@click.option(
    "--max-deliveries",
    type=click.IntRange(min=1),
    default=5,
    show_default=True,
    help="Answer a record handed out more often than this (consumers crashed on it) with an error.",
)
@click.option("--dead-letter", help="Send the answers of records that fail here. [default: the output]")
@click.option("--columns", help="Comma-separated fields that make the model's one 2-D input. [default: all, in order]")
@click.option("--trust-code", is_flag=True, help="Allow loading a model given as Python code.")
@click.option(
    "--watch-interval",
    type=click.FloatRange(min=0),
    default=2.0,
    show_default=True,
    help="Seconds between polls of the repository for new versions; 0: no hot reload.",
)
@click.option(
    "--registry", is_flag=True, help="Score with the version the model registry has in --stage, and follow it."
)
@click.option("--registry-url", help="The registry's database (implies --registry). [default: the repository's]")
@click.option("--stage", type=click.Choice(["production", "staging"]), default="production", show_default=True)
@click.option("--threads", type=click.IntRange(min=0), default=0, help="Inference threads. [default: one per CPU]")
@click.option("--log-format", type=click.Choice(["auto", "json", "console"]), default="auto", show_default=True)
@click.option(
    "--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="info", show_default=True
)
def stream_command(
    repository: Path,
    broker: str,
    input_stream: str,
    output: str,
    model: str,
    group: str,
    consumer: str | None,
    batch_size: int,
    block_ms: int,
    claim_idle_ms: int,
    max_deliveries: int,
    dead_letter: str | None,
    columns: str | None,
    trust_code: bool,
    watch_interval: float,
    registry: bool,
    registry_url: str | None,
    stage: str,
    threads: int,
    log_format: str,
    log_level: str,
) -> None:
    """Score the records of a broker stream with a model of REPOSITORY; write the answers to --output."""
    try:
        config = StreamConfig(
            repository=repository,
            broker=broker,
            input=input_stream,
            output=output,
            model=model,
            group=group,
            consumer=consumer or default_consumer(),
            batch_size=batch_size,
            block_ms=block_ms,
            claim_idle_ms=claim_idle_ms,
            max_deliveries=max_deliveries,
            dead_letter=dead_letter,
            columns=tuple(c.strip() for c in columns.split(",")) if columns else None,
            trust_code=trust_code,
            watch_interval=watch_interval,
            registry=registry,
            registry_url=registry_url,
            stage=stage,
            threads=threads,
        )
    except ModelServeError as exc:
        raise click.UsageError(exc.message) from None
    logs.configure(log_level, log_format)
    try:
        stats = asyncio.run(run_until_signal(config))
    except ModelServeError as exc:
        click.echo(f"Error: {exc.message}", err=True)
        sys.exit(1)
    click.echo(
        f"{stats.records_in:,} records read, {stats.records_out:,} answered, {stats.records_failed:,} failed "
        f"({stats.reclaimed:,} taken over from other consumers)",
        err=True,
    )
