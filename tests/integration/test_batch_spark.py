"""The Spark engine on local[2]: the same rows and scores as the local engine (with and without a
key column, from each input format, over many input partitions), the UDF helper, rejects, errors."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from modelserve.batch import score, spark_udf
from modelserve.cli.main import main
from modelserve.errors import ConfigError, InvalidInput
from tests.integration.test_batch import FEATURES, expected, table

pyspark = pytest.importorskip("pyspark", reason="the spark extra: pip install 'modelserve[spark]'")

ROWS = 20_000


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    from pyspark.sql import SparkSession

    session = (
        SparkSession.builder.master("local[2]")
        .appName("modelserve tests")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.driver.memory", "512m")
        .config("spark.sql.files.maxPartitionBytes", "65536")  # many input partitions: row numbering across them
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


def write(frame: pd.DataFrame, path: Path) -> Path:
    if path.suffix == ".parquet":
        frame.to_parquet(path, row_group_size=2000)
    elif path.suffix == ".csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_json(path, orient="records", lines=True)
    return path


def same(spark_out: pd.DataFrame, local_out: pd.DataFrame, key: str) -> None:
    assert len(spark_out) == len(local_out)
    spark_out = spark_out.sort_values(key, ignore_index=True)
    local_out = local_out.sort_values(key, ignore_index=True)
    np.testing.assert_array_equal(spark_out[key].to_numpy(), local_out[key].to_numpy())
    np.testing.assert_array_equal(spark_out["label"].to_numpy(), local_out["label"].to_numpy())
    # onnxruntime's float32 sums may differ in the last bit between batch sizes (partitions differ)
    np.testing.assert_allclose(
        np.stack(spark_out["probabilities"].to_numpy()), np.stack(local_out["probabilities"].to_numpy()), rtol=1e-6
    )


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".jsonl"])
def test_spark_equals_local_row_numbers(spark: Any, repo: Path, tmp_path: Path, suffix: str) -> None:
    source = write(table(ROWS), tmp_path / f"in{suffix}")
    result = score(repo / "iris", source, tmp_path / "spark", engine="spark", columns=FEATURES, progress=False)
    assert (result.rows, result.rejected) == (ROWS, 0)
    score(repo / "iris", source, tmp_path / "local", columns=FEATURES, progress=False)
    out = pd.read_parquet(tmp_path / "spark")
    assert list(out.columns) == ["row", "label", "probabilities"]
    np.testing.assert_array_equal(out["row"].to_numpy(), np.arange(ROWS))  # in input order, as read back
    same(out, pd.read_parquet(tmp_path / "local"), "row")


def test_spark_equals_local_with_key(spark: Any, repo: Path, tmp_path: Path) -> None:
    frame = table(ROWS, seed=3)
    source = write(frame, tmp_path / "in.parquet")
    score(repo / "iris", source, tmp_path / "spark", engine="spark", key_column="id", columns=FEATURES, progress=False)
    score(repo / "iris", source, tmp_path / "local", key_column="id", columns=FEATURES, progress=False)
    out = pd.read_parquet(tmp_path / "spark")
    assert list(out.columns) == ["id", "label", "probabilities"]
    same(out, pd.read_parquet(tmp_path / "local"), "id")
    np.testing.assert_array_equal(out["label"].to_numpy(), expected(repo, frame)["label"])


def test_spark_udf_gives_the_same_scores(spark: Any, repo: Path) -> None:
    from pyspark.sql.functions import struct

    frame = table(5000, seed=4)
    predict = spark_udf(repo / "iris", columns=FEATURES)
    scored = spark.createDataFrame(frame).withColumn("pred", predict(struct(*FEATURES)))
    out = scored.select("id", "pred.label", "pred.probabilities").toPandas().sort_values("id", ignore_index=True)
    want = expected(repo, frame)
    np.testing.assert_array_equal(out["id"].to_numpy(), frame["id"].to_numpy())
    np.testing.assert_array_equal(out["label"].to_numpy(), want["label"])
    np.testing.assert_allclose(np.stack(out["probabilities"].to_numpy()), want["probabilities"], rtol=1e-6)


def test_spark_rejects_and_errors(spark: Any, repo: Path, tmp_path: Path) -> None:
    frame = table(50)
    frame.loc[7, "a"] = np.nan
    frame.loc[31, "b"] = np.nan
    source = tmp_path / "in.parquet"
    frame.to_parquet(source)
    with pytest.raises(InvalidInput, match=r"row 7: column 'a' is empty"):
        score(repo / "iris", source, tmp_path / "fail", engine="spark", columns=FEATURES, progress=False)
    result = score(
        repo / "iris",
        source,
        tmp_path / "out",
        engine="spark",
        columns=FEATURES,
        on_error="skip",
        rejects=tmp_path / "rejects.parquet",
        progress=False,
    )
    assert (result.rows, result.rejected) == (48, 2)
    rejects = pd.read_parquet(tmp_path / "rejects.parquet").sort_values("row")
    assert rejects["row"].tolist() == [7, 31] and "'b' is empty" in rejects["error"].iloc[1]
    assert pd.read_parquet(tmp_path / "out" / "_rejects").shape[0] == 2
    out = pd.read_parquet(tmp_path / "out")
    assert len(out) == 48 and 7 not in out["row"].tolist()
    with pytest.raises(ConfigError, match="no such directory"):
        score(repo / "nope", source, tmp_path / "x", engine="spark")
    with pytest.raises(ConfigError, match="does not resume"):
        score(repo / "iris", source, tmp_path / "out", engine="spark", columns=FEATURES)
    with pytest.raises(InvalidInput, match="key column 'nope'"):
        score(repo / "iris", source, tmp_path / "y", engine="spark", columns=FEATURES, key_column="nope")


def test_cli_engine_spark(spark: Any, repo: Path, tmp_path: Path) -> None:
    source = write(table(1000), tmp_path / "in.parquet")
    argv = ["batch", "-m", str(repo / "iris"), "-i", str(source), "-o", str(tmp_path / "out"), "--engine", "spark"]
    argv += ["--columns", "a,b,c,d", "--spark-master", "local[2]", "--spark-conf", "spark.ui.enabled=false"]
    result = CliRunner().invoke(main, argv)
    assert result.exit_code == 0, result.output
    assert "1,000 rows scored" in result.output
    assert len(pd.read_parquet(tmp_path / "out")) == 1000
