"""Adaptive batching: every caller gets exactly its own rows back, whatever it was merged with.

The batcher runs on a real event loop with a real thread pool; the "runtime" is a plain function
that records the batches it was given, so that merging itself can be checked.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
import pytest

from modelserve.core.batching import Batcher, BatchPolicy
from modelserve.core.pool import Pool
from modelserve.errors import DeadlineExceeded

Raw = dict[str, np.ndarray]


class Model:
    """y = 2x, and an echo of each row's id; records every call's row count; optionally slow."""

    def __init__(self, delay: float = 0.0, poison: float | None = None) -> None:
        self.calls: list[int] = []
        self.delay = delay
        self.poison = poison
        self.lock = threading.Lock()

    def __call__(self, feeds: Raw, requested: list[str] | None, signature: str | None) -> Raw:
        x = feeds["x"]
        with self.lock:
            self.calls.append(len(x))
        if self.delay:
            time.sleep(self.delay)
        if self.poison is not None and (x == self.poison).any():
            raise ValueError("poisoned row")
        out = {"y": x * 2, "id": feeds["id"].copy()}
        return {k: v for k, v in out.items() if requested is None or k in requested}


def run(scenario: Callable[[Batcher, Model], Awaitable[Any]], model: Model, **policy: Any) -> Any:
    pool = Pool(2)
    pins: list[int] = [0]

    async def main() -> Any:
        batcher = Batcher(
            pool,
            model,
            BatchPolicy(**{"instances": 1, **policy}),
            "'m' version 1",
            pin=lambda: pins.__setitem__(0, pins[0] + 1),
            unpin=lambda: pins.__setitem__(0, pins[0] - 1),
        )
        result = await scenario(batcher, model)
        assert pins[0] == 0, "every call unpinned the version"
        return result

    try:
        return asyncio.run(main())
    finally:
        pool.shutdown()


def request(first_id: int, rows: int, width: int = 3) -> Raw:
    ids = np.arange(first_id, first_id + rows, dtype=np.int64)
    return {"x": np.repeat(ids[:, None], width, axis=1).astype(np.float32), "id": ids}


def test_concurrent_callers_with_mixed_sizes_get_their_own_rows_in_order() -> None:
    rng = np.random.default_rng(7)
    sizes = [int(n) for n in rng.integers(1, 8, size=200)]
    starts = np.cumsum([0, *sizes[:-1]])

    async def scenario(batcher: Batcher, model: Model) -> None:
        async def one(start: int, rows: int) -> None:
            await asyncio.sleep(float(rng.random()) * 0.01)
            feeds = request(start, rows)
            out = await batcher.predict(feeds, None, None, None)
            np.testing.assert_array_equal(out["id"], feeds["id"])
            np.testing.assert_array_equal(out["y"], feeds["x"] * 2)

        await asyncio.gather(*(one(int(s), n) for s, n in zip(starts, sizes, strict=True)))

    model = Model(delay=0.002)
    run(scenario, model, max_batch_size=16)
    assert sum(model.calls) == sum(sizes)
    assert max(model.calls) <= 16
    assert len(model.calls) < len(sizes) / 2, f"requests were not merged: {len(model.calls)} calls"


def test_a_request_larger_than_the_batch_runs_alone_and_whole() -> None:
    async def scenario(batcher: Batcher, model: Model) -> None:
        big, small = request(0, 40), request(100, 2)
        outs = await asyncio.gather(batcher.predict(big, None, None, None), batcher.predict(small, None, None, None))
        np.testing.assert_array_equal(outs[0]["id"], big["id"])
        np.testing.assert_array_equal(outs[1]["id"], small["id"])

    model = Model()
    run(scenario, model, max_batch_size=8)
    assert sorted(model.calls) == [2, 40]


def test_one_bad_request_fails_alone() -> None:
    async def scenario(batcher: Batcher, model: Model) -> list[object]:
        calls = [batcher.predict(request(i * 10, 2), None, None, None) for i in range(6)]
        return await asyncio.gather(*calls, return_exceptions=True)

    model = Model(delay=0.01, poison=30.0)  # rows 30, 31: the fourth request
    outcomes = run(scenario, model)
    assert [isinstance(o, ValueError) for o in outcomes] == [False, False, False, True, False, False]
    assert any(n > 2 for n in model.calls), "the first attempt was merged"


def test_requests_that_cannot_share_a_call_are_not_merged() -> None:
    async def scenario(batcher: Batcher, model: Model) -> None:
        a = batcher.predict(request(0, 2), ["y"], None, None)
        b = batcher.predict(request(10, 2), None, None, None)
        c = batcher.predict(request(20, 2, width=5), None, None, None)  # other trailing dimensions
        out_a, out_b, out_c = await asyncio.gather(a, b, c)
        assert set(out_a) == {"y"} and set(out_b) == {"y", "id"} and out_c["y"].shape == (2, 5)

    model = Model(delay=0.01)
    run(scenario, model)
    assert model.calls == [2, 2, 2]


def test_outputs_that_do_not_split_by_rows_turn_batching_off() -> None:
    def summary(feeds: Raw, requested: list[str] | None, signature: str | None) -> Raw:
        time.sleep(0.005)
        return {"total": np.array(feeds["x"].sum())}

    async def scenario(batcher: Batcher, model: Model) -> list[float]:
        first = await asyncio.gather(*(batcher.predict(request(i, 1), None, None, None) for i in range(4)))
        again = await asyncio.gather(*(batcher.predict(request(i, 1), None, None, None) for i in range(4)))
        assert batcher.stats.split_fallbacks == 1
        return [float(o["total"]) for o in first + again]

    pool = Pool(2)
    try:

        async def main() -> list[float]:
            batcher = Batcher(pool, summary, BatchPolicy(instances=1), "m", pin=lambda: None, unpin=lambda: None)
            return await scenario(batcher, Model())

        totals = asyncio.run(main())
    finally:
        pool.shutdown()
    assert totals == [3.0 * i for i in range(4)] * 2  # each got its own sum, never the batch's


def test_a_request_whose_deadline_passes_in_the_queue_is_not_run() -> None:
    async def scenario(batcher: Batcher, model: Model) -> None:
        busy = asyncio.ensure_future(batcher.predict(request(0, 1), None, None, None))
        await asyncio.sleep(0.01)  # the only instance is busy for 0.2 s
        with pytest.raises(DeadlineExceeded, match="not run"):
            await batcher.predict(request(10, 1), None, time.monotonic() + 0.05, None)
        await busy

    model = Model(delay=0.2)
    run(scenario, model)
    assert model.calls == [1]


def test_a_cancelled_caller_is_dropped_before_it_runs() -> None:
    async def scenario(batcher: Batcher, model: Model) -> None:
        busy = asyncio.ensure_future(batcher.predict(request(0, 1), None, None, None))
        await asyncio.sleep(0.01)
        gone = asyncio.ensure_future(batcher.predict(request(10, 5), None, None, None))
        await asyncio.sleep(0.01)
        gone.cancel()
        await busy
        await batcher.predict(request(20, 1), None, None, None)

    model = Model(delay=0.1)
    run(scenario, model)
    assert model.calls == [1, 1]  # the five cancelled rows never reached the model


def test_max_delay_waits_for_a_fuller_batch_and_preferred_sizes_go_early() -> None:
    async def scenario(batcher: Batcher, model: Model) -> float:
        started = time.monotonic()
        first = asyncio.ensure_future(batcher.predict(request(0, 1), None, None, None))
        await asyncio.sleep(0.02)
        await asyncio.gather(first, batcher.predict(request(1, 1), None, None, None))
        waited = time.monotonic() - started
        # a preferred size is reached at once: no waiting
        quick = time.monotonic()
        await asyncio.gather(*(batcher.predict(request(10 + i, 1), None, None, None) for i in range(4)))
        assert time.monotonic() - quick < 0.15
        return waited

    model = Model()
    waited = run(scenario, model, max_batch_size=64, max_delay_ms=200, preferred_batch_sizes=(4,))
    assert model.calls == [2, 4]  # the two requests 20 ms apart went together
    assert 0.15 < waited < 1.0


def test_without_delay_a_lone_request_is_not_held_back() -> None:
    """The default (max_delay_ms 0) runs a lone request at once; a delay holds it for company."""

    async def scenario(batcher: Batcher, model: Model) -> float:
        started = time.monotonic()
        for i in range(5):
            await batcher.predict(request(i, 1), None, None, None)
        return (time.monotonic() - started) / 5

    eager = run(scenario, Model())
    patient = run(scenario, Model(), max_delay_ms=100)
    assert patient >= 0.09 and eager < patient / 5, (eager, patient)
