"""``modelserve stream`` as a user runs it (a subprocess), against a real Redis server.

Each test has its own streams (a random key prefix) and its own copy of the iris model.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import pytest
import redis
from click.testing import CliRunner
from sklearn.datasets import load_iris

import modelserve
from modelserve.cli.main import main
from tests.fixtures.models import _save_onnx, adder_model
from tests.fixtures.redis import redis_prefix, redis_url  # noqa: F401  (fixtures)

WAIT_S = 30.0
GROUP = "scorers"


@pytest.fixture
def models(repo: Path, tmp_path: Path) -> Path:
    """A repository holding only iris version 1 (tests add versions to it)."""
    out = tmp_path / "models"
    shutil.copytree(repo / "iris", out / "iris")
    return out


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:  # noqa: F811
    with redis.Redis.from_url(redis_url) as c:
        yield c


class Stream:
    """``modelserve stream`` in a subprocess; its stderr goes to a file (shown when a test fails)."""

    def __init__(self, models: Path, url: str, prefix: str, *options: str, consumer: str = "c1") -> None:
        self.log = models.parent / f"stream-{consumer}-{time.monotonic_ns()}.log"
        command = [sys.executable, "-m", "modelserve.cli", "stream", str(models), "--broker", url]
        command += ["--input", f"{prefix}:in", "--output", f"{prefix}:out", "--group", GROUP]
        if "--model" not in options:
            command += ["--model", "iris"]
        command += ["--consumer", consumer, "--block-ms", "100", "--log-format", "console", "--threads", "2", *options]
        with self.log.open("wb") as sink:
            self.process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def stop(self) -> int:
        """SIGTERM, and the exit status."""
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(WAIT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise AssertionError("the stream did not stop on SIGTERM:\n" + self.output()) from None

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        if exc is not None:
            print(self.output())


def rows(n: int) -> list[dict[str, float]]:
    data = load_iris().data
    names = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    return [dict(zip(names, map(float, data[i % len(data)]), strict=True)) for i in range(n)]


def send(client: redis.Redis, stream: str, values: list[Any]) -> list[str]:
    with client.pipeline(transaction=False) as pipe:
        for value in values:
            pipe.xadd(stream, {"value": value if isinstance(value, bytes) else json.dumps(value)})
        return [entry_id.decode() for entry_id in pipe.execute()]


def answers(client: redis.Redis, stream: str) -> list[dict[str, Any]]:
    return [json.loads(fields[b"value"]) for _, fields in client.xrange(stream)]


def wait_for(condition: Any, what: str, stream: Stream | None = None, timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if stream is not None and stream.process.poll() is not None:
            raise AssertionError(f"the stream exited with {stream.process.returncode}:\n{stream.output()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}" + (f":\n{stream.output()}" if stream else ""))
        time.sleep(0.02)


def pending(client: redis.Redis, stream: str) -> int:
    return int(client.xpending(stream, GROUP)["pending"])


def test_answers_equal_the_model_in_process(
    models: Path,
    client: redis.Redis,
    redis_url: str,  # noqa: F811
    redis_prefix: str,  # noqa: F811
) -> None:
    sent = rows(150)
    request = {"id": "req-7", "inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [6, 3, 5, 2]}]}
    ids = send(client, f"{redis_prefix}:in", [*sent, request])
    ids.append(client.xadd(f"{redis_prefix}:in", sent[0]).decode())  # a row written as fields
    with Stream(models, redis_url, redis_prefix, "--batch-size", "64") as stream:
        wait_for(lambda: client.xlen(f"{redis_prefix}:out") >= len(ids), "every answer", stream)
        assert stream.stop() == 0
    got = {a["id"]: a for a in answers(client, f"{redis_prefix}:out")}
    assert sorted(got) == sorted(ids) and pending(client, f"{redis_prefix}:in") == 0
    with modelserve.load(models / "iris") as model:
        want = model.predict(np.array([list(r.values()) for r in sent], dtype=np.float32))
        single = model.predict(np.array([[6, 3, 5, 2]], dtype=np.float32))
    labels = [got[i]["outputs"]["label"] for i in ids[: len(sent)]]
    probabilities = np.array([got[i]["outputs"]["probabilities"] for i in ids[: len(sent)]])
    assert labels == want["label"].tolist()
    np.testing.assert_allclose(probabilities, want["probabilities"], rtol=1e-5, atol=1e-6)
    assert {got[i]["model_name"] for i in ids} == {"iris"} and {got[i]["model_version"] for i in ids} == {"1"}
    assert got[ids[-1]]["outputs"] == got[ids[0]]["outputs"]
    v2 = got[ids[-2]]
    assert v2["request_id"] == "req-7" and [o["name"] for o in v2["outputs"]] == ["label", "probabilities"]
    assert v2["outputs"][0]["data"] == single["label"].tolist()


def test_a_killed_consumer_loses_nothing(
    models: Path,
    client: redis.Redis,
    redis_url: str,  # noqa: F811
    redis_prefix: str,  # noqa: F811
) -> None:
    inp, out = f"{redis_prefix}:in", f"{redis_prefix}:out"
    ids = send(client, inp, rows(5000))
    with Stream(models, redis_url, redis_prefix, "--batch-size", "16", "--claim-idle-ms", "300") as first:
        wait_for(lambda: client.xlen(out) >= 200, "some answers", first)
        first.process.send_signal(signal.SIGKILL)
        first.process.wait()
    assert client.xlen(out) < len(ids), "the first consumer finished before it was killed"
    # another consumer that read 10 records and died before answering them: pending for sure
    client.xreadgroup(GROUP, "ghost", {inp: ">"}, count=10)
    assert pending(client, inp) >= 10
    with Stream(models, redis_url, redis_prefix, "--claim-idle-ms", "300", consumer="c2") as second:
        wait_for(lambda: {a["id"] for a in answers(client, out)} >= set(ids), "an answer for every record", second)
        wait_for(lambda: pending(client, inp) == 0, "nothing pending", second)
        assert second.stop() == 0
    got = answers(client, out)
    assert {a["id"] for a in got} == set(ids) and all("outputs" in a for a in got)
    assert len(got) == len(ids)  # and none twice: Redis writes the answers and the acks in one transaction
    taken = re.search(r"\(([\d,]+) taken over from other consumers\)", second.output())
    assert taken and int(taken[1].replace(",", "")) >= 10, second.output()


def test_a_malformed_record_is_answered_with_an_error(
    models: Path,
    client: redis.Redis,
    redis_url: str,  # noqa: F811
    redis_prefix: str,  # noqa: F811
) -> None:
    inp, out, dead = f"{redis_prefix}:in", f"{redis_prefix}:out", f"{redis_prefix}:dead"
    good = rows(3)
    bad: list[Any] = [
        b"{not json",
        [1, 2, 3],
        {**good[0], "petal_width": None},
        {**good[0], "petal_width": "wide"},
        {"sepal_length": 1.0},
        {"inputs": [{"name": "input", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]},
    ]
    ids = send(client, inp, [good[0], *bad, good[1], good[2]])
    with Stream(models, redis_url, redis_prefix, "--dead-letter", dead) as stream:
        wait_for(lambda: client.xlen(out) + client.xlen(dead) >= len(ids), "every answer", stream)
        ids += send(client, inp, rows(2))  # the stream goes on after the bad ones
        wait_for(lambda: client.xlen(out) >= 5, "the later answers", stream)
        assert stream.stop() == 0
    ok, errors = answers(client, out), answers(client, dead)
    assert [a["id"] for a in ok] == [ids[0], ids[7], ids[8], ids[9], ids[10]]
    assert [e["id"] for e in errors] == ids[1:7] and all("outputs" not in e for e in errors)
    messages = [e["error"] for e in errors]
    assert "not JSON" in messages[0] and "expected a JSON object" in messages[1]
    assert "'petal_width' is null" in messages[2] and "wide" in messages[3]
    assert "takes 4 columns" in messages[4] and "input" in messages[5]
    assert pending(client, inp) == 0


def test_a_record_consumers_keep_crashing_on_is_answered_with_an_error(
    models: Path,
    client: redis.Redis,
    redis_url: str,  # noqa: F811
    redis_prefix: str,  # noqa: F811
) -> None:
    inp, out = f"{redis_prefix}:in", f"{redis_prefix}:out"
    ids = send(client, inp, rows(3))
    client.xgroup_create(inp, GROUP, id="0")
    client.xreadgroup(GROUP, "ghost", {inp: ">"}, count=2)
    client.xclaim(inp, GROUP, "ghost", 0, [ids[0]], retrycount=5)  # as if 5 consumers had died on it
    with Stream(models, redis_url, redis_prefix, "--claim-idle-ms", "1", "--max-deliveries", "5") as stream:
        wait_for(lambda: client.xlen(out) >= 3, "every answer", stream)
        assert stream.stop() == 0
    got = {a["id"]: a for a in answers(client, out)}
    assert "handed out 6 times without being answered" in got[ids[0]]["error"]
    assert "outputs" in got[ids[1]] and "outputs" in got[ids[2]] and pending(client, inp) == 0


def test_a_new_version_is_picked_up_without_restart(
    models: Path,
    client: redis.Redis,
    redis_url: str,  # noqa: F811
    redis_prefix: str,  # noqa: F811
) -> None:
    inp, out = f"{redis_prefix}:in", f"{redis_prefix}:out"
    send(client, inp, rows(5))
    with Stream(models, redis_url, redis_prefix, "--watch-interval", "0.2") as stream:
        wait_for(lambda: client.xlen(out) >= 5, "answers from version 1", stream)
        staging = models / "iris" / ".staging-2"
        shutil.copytree(models / "iris" / "1", staging)
        published = time.monotonic()
        staging.rename(models / "iris" / "2")

        def switched() -> bool:
            send(client, inp, rows(1))
            return answers(client, out)[-1]["model_version"] == "2"

        wait_for(switched, "answers from version 2", stream)
        print(f"version 2 answered {time.monotonic() - published:.2f} s after it was published")
        assert stream.stop() == 0
    versions = [a["model_version"] for a in answers(client, out)]
    first_two = versions.index("2")
    assert set(versions[:first_two]) == {"1"} and set(versions[first_two:]) == {"2"}
    assert pending(client, inp) == 0


def test_a_promotion_in_the_registry_is_followed_without_restart(
    tmp_path: Path,
    client: redis.Redis,
    redis_url: str,  # noqa: F811
    redis_prefix: str,  # noqa: F811
) -> None:
    inp, out = f"{redis_prefix}:in", f"{redis_prefix}:out"
    models = tmp_path / "registered"
    for k in (1, 2):  # adder version k answers x + k
        _save_onnx(tmp_path / f"adds-{k}" / "model.onnx", adder_model(float(k)))
        registry(models, "register", str(tmp_path / f"adds-{k}" / "model.onnx"), "--name", "adder")
    registry(models, "promote", "adder", "1", "--to", "production")
    send(client, inp, [{"a": 1, "b": 2, "c": 3}])
    options = ("--model", "adder", "--registry", "--watch-interval", "0.2")
    with Stream(models, redis_url, redis_prefix, *options) as stream:
        wait_for(lambda: client.xlen(out) >= 1, "an answer from version 1", stream)
        registry(models, "promote", "adder", "2", "--to", "production")

        def switched() -> bool:
            send(client, inp, [{"a": 1, "b": 2, "c": 3}])
            return answers(client, out)[-1]["model_version"] == "2"

        wait_for(switched, "answers from version 2", stream)
        assert stream.stop() == 0
    got = answers(client, out)
    assert got[0]["outputs"] == {"y": [2.0, 3.0, 4.0]} and got[-1]["outputs"] == {"y": [3.0, 4.0, 5.0]}
    assert pending(client, inp) == 0


def registry(models: Path, *args: str) -> None:
    result = CliRunner().invoke(main, ["registry", "--repository", str(models), "--actor", "ci", *args])
    assert result.exit_code == 0, result.output


def test_sigterm_finishes_the_read_in_hand_and_exits_0(
    models: Path,
    client: redis.Redis,
    redis_url: str,  # noqa: F811
    redis_prefix: str,  # noqa: F811
) -> None:
    inp, out = f"{redis_prefix}:in", f"{redis_prefix}:out"
    ids = send(client, inp, rows(20_000))
    with Stream(models, redis_url, redis_prefix, "--batch-size", "32") as stream:
        wait_for(lambda: client.xlen(out) >= 100, "some answers", stream)
        assert stream.stop() == 0
        assert "stream stopped" in stream.output()
    answered = [a["id"] for a in answers(client, out)]
    assert pending(client, inp) == 0 and len(answered) < len(ids)
    assert answered == ids[: len(answered)]  # in order, each once, nothing skipped
    (group,) = client.xinfo_groups(inp)
    assert group["last-delivered-id"].decode() == answered[-1]  # nothing read and left unanswered
