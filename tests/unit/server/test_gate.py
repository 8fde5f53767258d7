"""The shutdown gate (server/gate.py)."""

from __future__ import annotations

import asyncio

import pytest

from modelserve.server.gate import Gate, ShuttingDown


def test_closed_gate_refuses_with_503_headers_and_drains() -> None:
    async def scenario() -> None:
        gate = Gate()
        gate.enter()
        gate.close()
        with pytest.raises(ShuttingDown) as refused:
            gate.enter()
        assert ("retry-after", "1") in refused.value.response_headers
        assert not await gate.drained(0.05)  # one still in
        asyncio.get_running_loop().call_later(0.05, gate.leave)
        assert await gate.drained(5)

    asyncio.run(scenario())


def test_abort_cancels_the_requests_still_running() -> None:
    async def scenario() -> None:
        gate = Gate()
        outcomes: list[str] = []

        async def request() -> None:
            gate.enter()
            try:
                await asyncio.sleep(30)
                outcomes.append("finished")
            except asyncio.CancelledError:
                outcomes.append("aborted" if gate.aborting else "cancelled")
                raise
            finally:
                gate.leave()

        tasks = [asyncio.create_task(request()) for _ in range(3)]
        await asyncio.sleep(0.01)
        gate.close()
        assert await gate.abort() == 3
        assert outcomes == ["aborted"] * 3 and gate.inflight == 0
        assert all(t.cancelled() for t in tasks)

    asyncio.run(scenario())
