"""Local batch scoring (modelserve.batch.score) against a bare onnxruntime loop over the same
Parquet file and batch size (read a batch, stack the columns, run, write the outputs as Parquet),
in rows/s. Target: a ratio of at least 0.8. With pyspark installed, also the Spark engine on
local[2] (a session started before the runs: the JVM start-up is reported apart; the best of the
repeats excludes the first Python workers' start and model load).

    python benchmarks/batch.py [--rows 1000000] [--batch-size 10000] [--no-spark]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from modelserve.batch import score
from tests.fixtures.models import build_examples

FEATURES = ["a", "b", "c", "d"]


def bare(model: Path, source: Path, out: Path, batch_size: int) -> None:
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    writer = None
    for batch in pq.ParquetFile(source).iter_batches(batch_size=batch_size, columns=FEATURES):
        x = np.stack([batch.column(c).to_numpy() for c in FEATURES], axis=1).astype(np.float32)
        label, probabilities = session.run(None, {name: x})
        flat = pa.array(np.ascontiguousarray(probabilities).reshape(-1))
        offsets = pa.array(np.arange(0, len(x) * 3 + 1, 3, dtype=np.int32))
        table = pa.table({"label": label, "probabilities": pa.ListArray.from_arrays(offsets, flat)})
        writer = writer or pq.ParquetWriter(out, table.schema)
        writer.write_table(table)
    assert writer is not None
    writer.close()


def best(fn: object, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batch-size", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-spark", action="store_true", help="skip the Spark local[2] row")
    args = parser.parse_args()
    spark_rows: tuple[float, float] | None = None
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        build_examples(root / "models")
        rng = np.random.default_rng(0)
        frame = pd.DataFrame(rng.normal(3.0, 2.0, (args.rows, 4)).astype(np.float32), columns=FEATURES)
        frame.to_parquet(root / "in.parquet")
        model = root / "models" / "iris"
        t_bare = best(
            lambda: bare(model / "1" / "model.onnx", root / "in.parquet", root / "bare.parquet", args.batch_size),
            args.repeats,
        )
        t_batch = best(
            lambda: score(
                model, root / "in.parquet", root / "out", batch_size=args.batch_size, resume=False, progress=False
            ),
            args.repeats,
        )
        if not args.no_spark:
            spark_rows = spark_timing(model, root, args.batch_size, args.repeats)
    rows = args.rows
    print(f"iris (ONNX), {rows:,} rows, batch size {args.batch_size:,}, best of {args.repeats}")
    print(f"{'runner':<40} {'seconds':>8} {'rows/s':>12} {'ratio':>6}")
    print(f"{'bare onnxruntime loop':<40} {t_bare:>8.2f} {rows / t_bare:>12,.0f} {1.0:>6.2f}")
    print(f"{'modelserve.batch.score (local)':<40} {t_batch:>8.2f} {rows / t_batch:>12,.0f} {t_bare / t_batch:>6.2f}")
    if spark_rows is not None:
        startup, t_spark = spark_rows
        label = "modelserve.batch.score (spark local[2])"
        print(f"{label:<40} {t_spark:>8.2f} {rows / t_spark:>12,.0f} {t_bare / t_spark:>6.2f}")
        print(f"(Spark session start-up, not counted: {startup:.1f} s)")


def spark_timing(model: Path, root: Path, batch_size: int, repeats: int) -> tuple[float, float] | None:
    """(session start-up s, best job s) for the Spark engine on local[2], or None without pyspark."""
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        print("pyspark is not installed: no Spark row (pip install 'modelserve[spark]')")
        return None
    started = time.perf_counter()
    spark = (
        SparkSession.builder.master("local[2]")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    startup = time.perf_counter() - started
    try:
        seconds = best(
            lambda: score(
                model,
                root / "in.parquet",
                root / "spark",
                engine="spark",
                batch_size=batch_size,
                resume=False,
                progress=False,
            ),
            repeats,
        )
    finally:
        spark.stop()
    return startup, seconds


if __name__ == "__main__":
    main()
