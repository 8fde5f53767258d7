"""The Spark engine: the local engine's scorer run inside Spark tasks (``engine="spark"``).

The driver resolves the reference, loads the version once to learn its signature and to check the
columns, stages a copy of the version directory and ships it with ``SparkContext.addFile``.
Executors find it with ``SparkFiles.get`` and load it once per Python worker (``_MODELS``, keyed by
the staged path; a worker keeps only the latest job's model). Each Arrow batch is scored by the
local engine's ``_Scorer``, so that both engines give the same scores, nulls, rejects and messages.

Why ``mapInArrow`` and not ``mapInPandas``: the scorer works on Arrow record batches, and a list
column (an output of shape [N, k]) costs a Python object per row in pandas; Arrow avoids both
conversions. The user-facing helper (``spark_udf``) is a pandas UDF, the form users combine with
``withColumn``.

Row numbers: without a key column the output has ``row``, the 0-based row number in the input, as
the local engine writes it. A first pass counts the rows of each input partition; a task numbers
its rows from the sum of the partitions before its own. This relies on a single input file being
split into partitions in file order, which Spark's file sources do (splits of one file keep their
order); the tests check it against the local engine with many partitions.

Differences from the local engine (documented in the README): the output directory is written by
Spark (``part-*.parquet`` files in input order, ``_SUCCESS``), with no ``_manifest.json`` and no
resume: an existing non-empty output is refused unless ``resume=False`` (then replaced).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from modelserve.batch import BatchResult
from modelserve.batch._local import ROW, Job, _Scorer
from modelserve.batch._sources import check_input
from modelserve.config.embedded import registry_url_from_env, repository_from_env
from modelserve.core.columns import column_map
from modelserve.core.loading import Loaded, load_version
from modelserve.core.refs import Target, resolve_ref
from modelserve.errors import ConfigError, InvalidInput, LoadError, ModelServeError
from modelserve.protocol.v2 import rest
from modelserve.types import DATATYPES, Signature

ERROR = "_error"  # the worker's column for a rejected row's message (skip mode)
_MODELS: dict[str, tuple[Target, Loaded]] = {}  # per Python worker: staged path -> loaded version
_EXTRA = "the spark engine needs pyspark: pip install 'modelserve[spark]' (and Java 17 or newer on the PATH)"


def run(job: Job, spark_master: str | None, spark_conf: Mapping[str, str] | None) -> BatchResult:
    started = time.perf_counter()
    remote = "://" in str(job.input)
    if not remote:
        check_input(job.input)
    target = _resolve(job)
    signature = _signature(target, job.trust_code)
    clash = job.key_column or ROW
    if any(spec.name == clash for spec in signature.outputs):
        raise ModelServeError(f"model {target.label} has an output named {clash!r}: choose another key column")
    output = _output_mode(job)
    spark, owned = _session(spark_master, spark_conf)
    try:
        with _Shipped(spark, target) as shipped:
            frame = _read(spark, job.input, remote)
            names = list(frame.columns)
            column_map(signature, names, job.columns, target.label)  # refuse columns that do not fit, early
            if job.key_column is not None and job.key_column not in names:
                raise InvalidInput(f"key column {job.key_column!r} is not in the data; it has {names}")
            offsets = _offsets(frame) if job.key_column is None else None
            schema = _schema(frame, signature, job.key_column, with_error=job.on_error == "skip")
            worker = _partition_scorer(shipped.token, target, job, offsets, schema)
            previous = spark.conf.get("spark.sql.execution.arrow.maxRecordsPerBatch")
            spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", str(job.batch_size))
            try:
                scored = frame.mapInArrow(worker, schema)
                rows, rejected = _write(scored, job, output)
            except Exception as exc:  # a worker's ModelServeError arrives wrapped in Py4J/Spark errors
                raise _unwrap(exc) from None
            finally:
                spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", previous or "10000")
    finally:
        if owned:
            spark.stop()
    return BatchResult(rows, rejected, time.perf_counter() - started, 0, job.output)


def spark_udf(
    ref: str | Path,
    *,
    columns: list[str] | None = None,
    version: int | None = None,
    trust_code: bool = False,
    repository: str | Path | None = None,
    registry_url: str | None = None,
    spark: Any | None = None,
) -> Any:
    """A pandas UDF that scores a struct of columns with the version ``ref`` names; see
    ``modelserve.batch.spark_udf``."""
    from pyspark.sql.pandas.functions import pandas_udf
    from pyspark.sql.types import StructField, StructType

    job = Job(
        ref=ref,
        input=Path(),
        output=Path(),
        batch_size=10_000,
        columns=columns,
        key_column=None,
        on_error="fail",
        rejects=None,
        resume=False,
        progress=False,
        version=version,
        trust_code=trust_code,
        repository=Path(repository) if repository is not None else None,
        registry_url=registry_url,
    )
    target = _resolve(job)
    signature = _signature(target, trust_code)
    session, _ = _session(None, None) if spark is None else (spark, False)
    shipped = _Shipped(session, target)  # the staged copy lives as long as the driver process
    token = shipped.token
    returns = StructType([StructField(s.name, _spark_type(s.datatype, len(s.shape) > 1)) for s in signature.outputs])

    def predict(frame: pd.DataFrame) -> pd.DataFrame:
        staged, loaded = _worker_model(token, target, trust_code)
        batch = pa.RecordBatch.from_pandas(frame, preserve_index=False)
        table, _ = _Scorer(staged, loaded, job).chunk(batch, 0)
        return table.drop_columns([ROW]).to_pandas()

    return pandas_udf(predict, returns)  # type: ignore[call-overload]


def _resolve(job: Job) -> Target:
    return resolve_ref(
        job.ref,
        version=job.version,
        repository=job.repository or repository_from_env(),
        registry_url=job.registry_url or registry_url_from_env(),
    )


def _load(target: Target, trust_code: bool) -> Loaded:
    return load_version(
        target.path,
        target.label,
        target.config,
        trust_code=trust_code,
        decode_sample=lambda body: rest.decode_infer_request(body, None),
        checksums=target.checksums,
    )


def _signature(target: Target, trust_code: bool) -> Signature:
    """The public signature, from a load on the driver (which also fails early on a bad version)."""
    loaded = _load(target, trust_code)
    try:
        return next(iter(loaded.plans.values())).signature
    finally:
        loaded.runtime.unload()


def _session(master: str | None, conf: Mapping[str, str] | None) -> tuple[Any, bool]:
    """(the active SparkSession, False), or (a new one on ``master`` or local[*], True)."""
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise ConfigError(_EXTRA) from None
    active = SparkSession.getActiveSession()
    if active is not None:
        return active, False
    builder = SparkSession.builder.master(master or "local[*]").appName("modelserve batch")
    for key, value in (conf or {}).items():
        builder = builder.config(key, value)
    return builder.getOrCreate(), True


class _Shipped:
    """A copy of the version directory, sent to executors under a name unique to this job (Spark
    refuses a second file of the same name from another path)."""

    def __init__(self, spark: Any, target: Target) -> None:
        self.token = f"modelserve-{target.name}-{target.version}-{uuid.uuid4().hex[:12]}"
        self._dir = Path(tempfile.mkdtemp(prefix="modelserve-spark-"))
        staged = self._dir / self.token
        try:
            shutil.copytree(target.path, staged, copy_function=_link_or_copy)
        except OSError as exc:
            raise LoadError(f"model {target.label}: cannot stage {target.path} for Spark: {exc}") from None
        spark.sparkContext.addFile(str(staged), recursive=True)

    def __enter__(self) -> _Shipped:
        return self

    def __exit__(self, *exc: object) -> None:
        shutil.rmtree(self._dir, ignore_errors=True)


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _worker_model(token: str, target: Target, trust_code: bool) -> tuple[Target, Loaded]:
    """On an executor: the staged version, loaded once per Python worker."""
    from pyspark import SparkFiles

    path = Path(SparkFiles.get(token))
    key = str(path)
    cached = _MODELS.get(key)
    if cached is None:
        for _, old in _MODELS.values():  # a worker runs one task at a time: an older job's model is idle
            old.runtime.unload()
        _MODELS.clear()
        staged = replace(target, path=path)
        cached = _MODELS[key] = (staged, _load(staged, trust_code))
    return cached


def _read(spark: Any, path: Path, remote: bool) -> Any:
    text = str(path) if remote else str(path.resolve())
    suffix = path.suffix.lower()
    reader = spark.read
    if suffix == ".parquet":
        return reader.parquet(text)
    if suffix == ".csv":
        return reader.option("header", True).option("inferSchema", True).csv(text)
    frame = reader.json(text)
    if not remote:  # Spark sorts JSON fields by name: restore the file's order, which the column mapping follows
        import json

        with path.open("rb") as lines:
            first = next((line for line in lines if line.strip()), b"{}")
        order = [name for name in json.loads(first) if name in frame.columns]
        frame = frame.select(*order, *[c for c in frame.columns if c not in order])
    return frame


def _offsets(frame: Any) -> dict[int, int]:
    """Partition id -> the number of input rows in the partitions before it."""
    from pyspark.sql.functions import spark_partition_id

    counts = {
        int(r["pid"]): int(r["count"])
        for r in frame.select(spark_partition_id().alias("pid")).groupBy("pid").count().collect()
    }
    offsets: dict[int, int] = {}
    total = 0
    for pid in range(frame.rdd.getNumPartitions()):
        offsets[pid] = total
        total += counts.get(pid, 0)
    return offsets


def _spark_type(datatype: str, listed: bool) -> Any:
    from pyspark.sql import types as st

    kind = DATATYPES[datatype]
    simple: dict[str, Any] = {
        "b": st.BooleanType(),
        "i1": st.ByteType(),
        "i2": st.ShortType(),
        "i4": st.IntegerType(),
        "i8": st.LongType(),
        "u1": st.ShortType(),  # Spark has no unsigned types: the next wider signed one
        "u2": st.IntegerType(),
        "u4": st.LongType(),
        "u8": st.LongType(),
        "f2": st.FloatType(),
        "f4": st.FloatType(),
        "f8": st.DoubleType(),
        "O": st.BinaryType(),
    }
    code = "O" if kind.kind == "O" else "b" if kind.kind == "b" else f"{kind.kind}{kind.itemsize}"
    base = simple[code]
    return st.ArrayType(base) if listed else base


def _schema(frame: Any, signature: Signature, key: str | None, with_error: bool) -> Any:
    from pyspark.sql import types as st

    fields = [frame.schema[key] if key is not None else st.StructField(ROW, st.LongType(), False)]
    fields += [st.StructField(s.name, _spark_type(s.datatype, len(s.shape) > 1)) for s in signature.outputs]
    if with_error:
        fields.append(st.StructField(ERROR, st.StringType()))
    return st.StructType(fields)


def _partition_scorer(
    token: str, target: Target, job: Job, offsets: dict[int, int] | None, schema: Any
) -> Callable[[Iterator[Any]], Iterator[Any]]:
    from pyspark.sql.pandas.types import to_arrow_schema

    arrow_schema = to_arrow_schema(schema)
    trust_code = job.trust_code
    keep_rejects = job.on_error == "skip"

    def score_partition(batches: Iterator[Any]) -> Iterator[Any]:
        from pyspark import TaskContext

        staged, loaded = _worker_model(token, target, trust_code)
        scorer = _Scorer(staged, loaded, job)
        context = TaskContext.get()
        start = offsets.get(context.partitionId(), 0) if offsets is not None and context is not None else 0
        for batch in batches:
            if not batch.num_rows:
                continue
            table, rejects = scorer.chunk(batch, start)
            start += batch.num_rows
            if keep_rejects:
                table = table.append_column(ERROR, pa.nulls(table.num_rows, pa.string()))
                if rejects is not None:
                    table = pa.concat_tables([table, _reject_rows(rejects, table.schema)])
            yield from _conform(table, arrow_schema).to_batches()

    return score_partition


def _reject_rows(rejects: Any, schema: Any) -> Any:
    """The rejected rows in the scored rows' schema: their key (or row), null outputs, the error."""
    columns = {}
    for field in schema:
        if field.name == ERROR:
            columns[field.name] = rejects.column("error")
        elif field.name in rejects.schema.names:
            columns[field.name] = rejects.column(field.name).cast(field.type)
        else:
            columns[field.name] = pa.nulls(rejects.num_rows, field.type)
    return pa.table(columns, schema=schema)


def _conform(table: Any, schema: Any) -> Any:
    """Cast to the schema Spark was promised (list child names, unsigned and half types)."""
    return table.rename_columns(schema.names).cast(schema)


def _output_mode(job: Job) -> str:
    text = str(job.output)
    if "://" in text:
        return "errorifexists" if job.resume else "overwrite"
    path = job.output
    if path.exists() and not path.is_dir():
        raise ConfigError(f"output {path} exists and is not a directory (the output is a Parquet dataset)")
    if path.is_dir() and any(path.iterdir()) and job.resume:
        raise ConfigError(
            f"output {path} is not empty, and the spark engine does not resume: "
            "choose another output, or replace it with --no-resume (resume=False)"
        )
    return "overwrite"


def _write(scored: Any, job: Job, mode: str) -> tuple[int, int]:
    from pyspark.sql.functions import col

    target = str(job.output) if "://" in str(job.output) else str(job.output.resolve())
    if job.on_error != "skip":
        scored.write.mode(mode).parquet(target)
        rows = scored.sparkSession.read.parquet(target).count()  # from the Parquet footers
        return int(rows), 0
    scored = scored.persist()
    try:
        good = scored.filter(col(ERROR).isNull()).drop(ERROR)
        good.write.mode(mode).parquet(target)
        kept = [c for c in (ROW, job.key_column) if c is not None and c in scored.columns]
        bad = scored.filter(col(ERROR).isNotNull()).select(*kept, col(ERROR).alias("error"))
        bad = bad.select(*([col(ROW)] if ROW in bad.columns else []), *[c for c in bad.columns if c != ROW])
        bad.write.mode("overwrite").parquet(f"{target}/_rejects")
        rejected = int(bad.count())
        rows = int(good.count())
        if job.rejects is not None:
            bad.toPandas().to_parquet(job.rejects, index=False)
        return rows, rejected
    finally:
        scored.unpersist()


_RAISED = re.compile(r"modelserve\.errors\.(\w+): (.+)")


def _unwrap(exc: Exception) -> Exception:
    """A worker's ModelServeError as itself (its message, without the Java and Python traces)."""
    import modelserve.errors as errors

    if isinstance(exc, ModelServeError):
        return exc
    found = _RAISED.findall(str(exc))
    if found:
        name, message = found[-1]
        kind = getattr(errors, name, None)
        if isinstance(kind, type) and issubclass(kind, ModelServeError):
            return kind(message)
    if "PATH_ALREADY_EXISTS" in str(exc) or "already exists" in str(exc):
        return ConfigError(f"output {_existing(exc)} already exists: replace it with --no-resume")
    return exc


def _existing(exc: Exception) -> str:
    found = re.search(r"[Pp]ath (\S+) already exists", str(exc))
    return found.group(1) if found else "(the given path)"


__all__ = ["run", "spark_udf"]
