"""Batch scoring: the output equals in-process scoring, survives a SIGKILL and a resume with every
row exactly once, sets failing rows aside with their row numbers, and refuses another job's output."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

import modelserve
from modelserve.batch import score
from modelserve.cli.main import main
from modelserve.errors import ConfigError, InvalidInput

FEATURES = ["a", "b", "c", "d"]


def table(rows: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(3.0, 2.0, (rows, 4)).astype(np.float32), columns=FEATURES)
    frame.insert(0, "id", np.arange(rows, dtype=np.int64) * 10)
    return frame


def expected(repo: Path, frame: pd.DataFrame) -> dict[str, np.ndarray]:
    with modelserve.load(repo / "iris") as model:
        return model.predict(frame[FEATURES].to_numpy())


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".jsonl"])
def test_batch_equals_in_process(repo: Path, tmp_path: Path, suffix: str) -> None:
    frame = table(2500)
    source = tmp_path / f"in{suffix}"
    {
        ".parquet": frame.to_parquet,
        ".csv": lambda p: frame.to_csv(p, index=False),
        ".jsonl": lambda p: frame.to_json(p, orient="records", lines=True),
    }[suffix](source)
    result = score(repo / "iris", source, tmp_path / "out", batch_size=1000, columns=FEATURES, progress=False)
    assert (result.rows, result.rejected) == (2500, 0)
    out = pd.read_parquet(tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").glob("part-*")) == [f"part-0000{i}.parquet" for i in range(3)]
    want = expected(repo, frame)
    np.testing.assert_array_equal(out["row"].to_numpy(), np.arange(2500))
    np.testing.assert_array_equal(out["label"].to_numpy(), want["label"])
    np.testing.assert_allclose(np.stack(out["probabilities"].to_numpy()), want["probabilities"], rtol=1e-6)


def test_batch_million_rows_with_key(repo: Path, tmp_path: Path) -> None:
    frame = table(1_000_000)
    frame.to_parquet(tmp_path / "big.parquet")
    started = time.perf_counter()
    result = score(
        repo / "iris",
        tmp_path / "big.parquet",
        tmp_path / "out",
        key_column="id",
        columns=FEATURES,
        batch_size=50_000,
        progress=False,
    )
    print(f"1e6 rows in {time.perf_counter() - started:.1f} s")
    assert result.rows == 1_000_000
    out = pd.read_parquet(tmp_path / "out")
    np.testing.assert_array_equal(out["id"].to_numpy(), frame["id"].to_numpy())
    np.testing.assert_array_equal(out["label"].to_numpy(), expected(repo, frame)["label"])


def test_batch_resumes_after_sigkill(repo: Path, tmp_path: Path) -> None:
    frame = table(400_000, seed=1)
    frame.to_parquet(tmp_path / "in.parquet")
    out = tmp_path / "out"
    argv = [
        sys.executable,
        "-c",
        "from modelserve.cli.main import main; main()",
        "batch",
        "-m",
        str(repo / "iris"),
        "-i",
        str(tmp_path / "in.parquet"),
        "-o",
        str(out),
        "--batch-size",
        "2000",
        "--columns",
        "a,b,c,d",
        "--no-progress",
    ]
    child = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while len(list(out.glob("part-*.parquet"))) < 5 and time.monotonic() < deadline and child.poll() is None:
        time.sleep(0.01)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    done = len(list(out.glob("part-*.parquet")))
    assert 5 <= done < 200, done  # interrupted part-way
    result = CliRunner().invoke(main, argv[3:])
    assert result.exit_code == 0, result.output
    assert "resumed after" in result.output
    clean = score(
        repo / "iris", tmp_path / "in.parquet", tmp_path / "clean", batch_size=2000, columns=FEATURES, progress=False
    )
    resumed, fresh = pd.read_parquet(out), pd.read_parquet(tmp_path / "clean")
    assert clean.rows == len(resumed) == 400_000
    np.testing.assert_array_equal(resumed["row"].to_numpy(), np.arange(400_000))
    pd.testing.assert_frame_equal(resumed, fresh)


def test_skip_mode_rejects_rows(repo: Path, tmp_path: Path) -> None:
    frame = table(50).astype({"b": object})
    frame.loc[7, "a"] = np.nan
    frame.loc[31, "b"] = "not a number"
    frame.to_json(tmp_path / "in.jsonl", orient="records", lines=True)
    with pytest.raises(InvalidInput, match=r"row 7: column 'a' is empty"):
        score(repo / "iris", tmp_path / "in.jsonl", tmp_path / "fail", columns=FEATURES, batch_size=20, progress=False)
    result = score(
        repo / "iris",
        tmp_path / "in.jsonl",
        tmp_path / "out",
        columns=FEATURES,
        key_column="id",
        batch_size=20,
        on_error="skip",
        rejects=tmp_path / "rejects.parquet",
        progress=False,
    )
    assert (result.rows, result.rejected) == (48, 2)
    rejects = pd.read_parquet(tmp_path / "rejects.parquet")
    assert rejects["row"].tolist() == [7, 31] and rejects["id"].tolist() == [70, 310]
    assert "not a number" in rejects["error"][1] or "could not convert" in rejects["error"][1]
    out = pd.read_parquet(tmp_path / "out")
    assert 70 not in out["id"].tolist() and len(out) == 48


def test_other_job_refused(repo: Path, tmp_path: Path) -> None:
    table(100).to_parquet(tmp_path / "in.parquet")
    score(repo / "iris", tmp_path / "in.parquet", tmp_path / "out", columns=FEATURES, progress=False)
    with pytest.raises(ConfigError, match="another job"):
        score(repo / "iris", tmp_path / "in.parquet", tmp_path / "out", columns=FEATURES, batch_size=7, progress=False)
