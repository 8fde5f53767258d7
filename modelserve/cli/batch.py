"""``modelserve batch``: score a file of rows with a model version, in this process or on Spark
(modelserve/batch: the output is a Parquet dataset directory; an interrupted local job resumes)."""

from __future__ import annotations

from pathlib import Path

import click

from modelserve.batch import ENGINES, ON_ERROR, score
from modelserve.errors import ModelServeError


@click.command("batch")
@click.option("--model", "-m", "ref", required=True, help="A model or version directory, or registry:NAME@STAGE.")
@click.option("--version", "-v", type=click.IntRange(min=1), help="[default: the latest, or the stage's version]")
@click.option(
    "--input",
    "-i",
    "input_path",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="Rows to score: .parquet, .csv, .jsonl",
)
@click.option(
    "--output",
    "-o",
    required=True,
    type=click.Path(path_type=Path),
    help="The output: a Parquet dataset directory (part-NNNNN.parquet files).",
)
@click.option("--engine", type=click.Choice(ENGINES), default="local", show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=10_000, show_default=True, help="Rows per chunk.")
@click.option("--columns", help="Comma-separated columns that make the model's one 2-D input. [default: all]")
@click.option("--key-column", help="A column copied to the output to identify rows. [default: row, the row number]")
@click.option(
    "--on-error",
    type=click.Choice(ON_ERROR),
    default="fail",
    show_default=True,
    help="Rows that fail: stop, or set aside in OUTPUT/_rejects (and --rejects).",
)
@click.option(
    "--rejects", type=click.Path(path_type=Path, dir_okay=False), help="Also gather the rejects into this file."
)
@click.option("--resume/--no-resume", default=True, show_default=True, help="Continue an interrupted job in OUTPUT.")
@click.option("--progress/--no-progress", default=True, show_default=True)
@click.option("--trust-code", is_flag=True, help="Allow loading a model given as Python code.")
@click.option(
    "--repository",
    "-r",
    type=click.Path(path_type=Path, file_okay=False),
    envvar="MODELSERVE_REPOSITORY",
    help="The repository of a registry: reference.",
)
@click.option("--url", envvar="MODELSERVE_REGISTRY_URL", help="The registry database. [default: the repository's]")
@click.option("--spark-master", help="--engine spark: the Spark master URL. [default: local[*]]")
@click.option(
    "--spark-conf",
    multiple=True,
    metavar="KEY=VALUE",
    help="--engine spark: a Spark property (repeatable), e.g. spark.executor.memory=4g.",
)
def batch_command(
    ref: str,
    version: int | None,
    input_path: Path,
    output: Path,
    engine: str,
    batch_size: int,
    columns: str | None,
    key_column: str | None,
    on_error: str,
    rejects: Path | None,
    resume: bool,
    progress: bool,
    trust_code: bool,
    repository: Path | None,
    url: str | None,
    spark_master: str | None,
    spark_conf: tuple[str, ...],
) -> None:
    """Score every row of a file with a model version; write the predictions as Parquet."""
    conf: dict[str, str] = {}
    for item in spark_conf:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{item!r}: expected KEY=VALUE", param_hint="--spark-conf")
        conf[key.strip()] = value
    try:
        result = score(
            ref,
            input_path,
            output,
            engine=engine,
            batch_size=batch_size,
            columns=[c.strip() for c in columns.split(",")] if columns else None,
            key_column=key_column,
            on_error=on_error,
            rejects=rejects,
            resume=resume,
            progress=progress,
            version=version,
            trust_code=trust_code,
            repository=repository,
            registry_url=url,
            spark_master=spark_master,
            spark_conf=conf,
        )
    except ModelServeError as exc:
        raise click.ClickException(exc.message) from None
    resumed = f" (resumed after {result.resumed_chunks} chunk(s))" if result.resumed_chunks else ""
    click.echo(
        f"{result.rows:,} rows scored, {result.rejected:,} rejected, in {result.seconds:.1f} s{resumed}: {output}"
    )
