"""Batch scoring: a model version over a file of rows, in this process (``modelserve batch``).

``score(ref, input, output)`` reads ``input`` (.parquet, .csv, .jsonl) in chunks of
``batch_size`` rows, scores each with the version ``ref`` names (anything ``modelserve.load``
accepts), with the server's validation, and writes the output as a Parquet dataset directory:

```
OUTPUT/part-00000.parquet ...   one per chunk, in input order: the key column, one per model output
OUTPUT/_manifest.json           the job (input path, size, mtime; model and version; options)
OUTPUT/_rejects/part-NNNNN.parquet   rows that failed (skip mode): row, key, error
OUTPUT/_SUCCESS                 written last: rows scored and rejected
```

Readers (pandas.read_parquet, pyarrow.dataset, Spark) skip the ``_`` files. Why parts and not one
file: a part is written to a hidden temporary file, fsynced, then renamed, so a part either exists
whole or not at all; chunk i always holds input rows [i*batch_size, (i+1)*batch_size), so an
interrupted job restarts after its last complete part and never writes a row twice. A rerun with
a different input file or options refuses to mix its rows into the old ones (ConfigError).

Columns become inputs as in core/columns.py; the key column (``key_column``, else ``row``: the
0-based row number in the input) is copied through. Outputs of shape [N, k, ...] become list
columns (the trailing dimensions flattened). Rows that fail (a null or unconvertible value, an
input the model refuses) stop the job (``on_error="fail"``: InvalidInput naming their row
numbers) or are written to the rejects (``"skip"``).

Engines: ``local`` (this process); ``spark`` (Apache Spark, ``pip install 'modelserve[spark]'``):
the same scorer in Spark tasks over ``mapInArrow``, the version shipped to executors and loaded once
per Python worker, on ``spark_master`` (default local[*]) or the active SparkSession. Its output is
the same rows and columns, written by Spark, without resume (see _spark.py). ``spark_udf`` scores a
DataFrame a user already has.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelserve.errors import ConfigError

ENGINES = ("local", "spark")
ON_ERROR = ("fail", "skip")


@dataclass(frozen=True, slots=True)
class BatchResult:
    """``rows``: rows scored (with the parts of an earlier, interrupted run); ``rejected``: rows
    refused; ``seconds``: this run's time; ``resumed_chunks``: chunks an earlier run had done."""

    rows: int
    rejected: int
    seconds: float
    resumed_chunks: int = 0
    output: Path | None = None


def score(
    ref: str | Path,
    input: str | Path,
    output: str | Path,
    *,
    engine: str = "local",
    batch_size: int = 10_000,
    columns: Sequence[str] | None = None,
    key_column: str | None = None,
    on_error: str = "fail",
    rejects: str | Path | None = None,
    resume: bool = True,
    progress: bool = True,
    version: int | None = None,
    trust_code: bool = False,
    repository: str | Path | None = None,
    registry_url: str | None = None,
    spark_master: str | None = None,
    spark_conf: Mapping[str, str] | None = None,
) -> BatchResult:
    """Score every row of ``input`` into the dataset directory ``output`` (see the module doc).
    ``rejects``: also gather the rejected rows into this one Parquet file. ``resume=False``
    discards what an earlier run left in ``output``. Blocks until done. Raises ConfigError (bad
    options, unreadable input, another job's output), InvalidInput (rows that fail, in fail mode;
    columns that do not fit the model), LoadError. Spark engine: ``spark_master`` and ``spark_conf``
    (Spark properties) configure the session it starts, and stops, when none is active; the input
    and output may then be any path Spark reads (hdfs://, s3a://); ``resume`` only says whether an
    existing non-empty output may be replaced."""
    if engine not in ENGINES:
        raise ConfigError(f"engine {engine!r}: expected one of {list(ENGINES)}")
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    if on_error not in ON_ERROR:
        raise ConfigError(f"on_error {on_error!r}: expected one of {list(ON_ERROR)}")
    from modelserve.batch._local import Job, run  # pyarrow: imported only when scoring

    job = Job(
        ref=ref,
        input=Path(input),
        output=Path(output),
        batch_size=batch_size,
        columns=list(columns) if columns else None,
        key_column=key_column,
        on_error=on_error,
        rejects=Path(rejects) if rejects is not None else None,
        resume=resume,
        progress=progress,
        version=version,
        trust_code=trust_code,
        repository=Path(repository) if repository is not None else None,
        registry_url=registry_url,
    )
    if engine == "spark":
        from modelserve.batch import _spark

        return _spark.run(job, spark_master, spark_conf)
    return run(job)


def spark_udf(
    ref: str | Path,
    *,
    columns: Sequence[str] | None = None,
    version: int | None = None,
    trust_code: bool = False,
    repository: str | Path | None = None,
    registry_url: str | None = None,
    spark: Any | None = None,
) -> Any:
    """A pandas UDF scoring rows of a Spark DataFrame with the version ``ref`` names. It takes one
    struct column (the input columns, mapped to the model's inputs as in ``score``; ``columns``
    picks and orders them) and returns a struct with one field per model output (arrays for
    multi-valued outputs)::

        predict = spark_udf("models/iris", columns=["a", "b", "c", "d"])
        scored = df.withColumn("pred", predict(struct("a", "b", "c", "d")))
        scored.select("id", "pred.label", "pred.probabilities")

    The version is loaded on the driver (to learn its outputs), shipped with addFile to the
    session's executors (``spark``, else the active or a new local session) and loaded once per
    Python worker. A row with a null input fails the task with InvalidInput. Raises ConfigError
    (bad reference, pyspark missing), LoadError."""
    from modelserve.batch import _spark

    return _spark.spark_udf(
        ref,
        columns=list(columns) if columns else None,
        version=version,
        trust_code=trust_code,
        repository=repository,
        registry_url=registry_url,
        spark=spark,
    )


__all__ = ["ENGINES", "BatchResult", "score", "spark_udf"]
