"""The services' periodic loops: every() and cancel()."""

from __future__ import annotations

import asyncio
import logging

import pytest

from kumo.workers import cancel, every

log = logging.getLogger("kumo.test")


def test_a_failing_run_is_logged_and_the_next_one_comes(
        caplog: pytest.LogCaptureFixture) -> None:
    runs: list[int] = []

    def work() -> None:
        runs.append(len(runs))
        if len(runs) == 1:
            raise RuntimeError("first run fails")

    async def run() -> int:
        task = asyncio.create_task(every(0.02, work, log, "the test's pass failed"))
        while len(runs) < 3:
            await asyncio.sleep(0.01)
        await cancel(task)
        stopped_at = len(runs)
        await asyncio.sleep(0.1)
        assert task.done()
        return stopped_at

    with caplog.at_level(logging.ERROR, logger="kumo.test"):
        stopped_at = asyncio.run(run())
    assert len(runs) == stopped_at >= 3  # nothing runs after cancel()
    assert [r.getMessage() for r in caplog.records] == ["the test's pass failed"]
    assert caplog.records[0].exc_info is not None  # with its traceback
    asyncio.run(cancel(None))  # a service that never started
