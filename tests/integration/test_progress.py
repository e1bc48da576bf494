"""Progress written from the pipeline's thread is not waited for, yet nothing it reports is lost:
a lost fence stops the run at the next stage boundary and a failed write fails it there."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from core.errors import ServiceUnavailable
from core.store import executions
from worker.stages import Progress

pytestmark = pytest.mark.integration


async def reported(progress: Progress, outcome: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    async def report_progress(*_a: Any, **_k: Any) -> bool:
        if isinstance(outcome, BaseException):
            raise outcome
        return bool(outcome)

    monkeypatch.setattr(executions, "report_progress", report_progress)
    await asyncio.to_thread(progress.from_thread, "fit", 0.5)  # returns before the write is done
    for _ in range(100):  # the loop runs the write
        await asyncio.sleep(0.01)
        if progress.lost or progress._failed is not None:
            break


async def test_a_write_that_finds_the_fence_lost_stops_at_the_next_check(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    progress = Progress(SimpleNamespace(db=None, loop=asyncio.get_running_loop()), "run_x", 1)  # type: ignore[arg-type]
    await reported(progress, True, monkeypatch)
    assert progress.stopped() is False
    await reported(progress, False, monkeypatch)
    assert progress.stopped() is True


async def test_a_failed_write_fails_the_run_at_the_next_check(monkeypatch: pytest.MonkeyPatch) -> None:
    progress = Progress(SimpleNamespace(db=None, loop=asyncio.get_running_loop()), "run_x", 1)  # type: ignore[arg-type]
    await reported(progress, ServiceUnavailable("database unavailable"), monkeypatch)
    with pytest.raises(ServiceUnavailable):
        progress.stopped()
    with pytest.raises(ServiceUnavailable):
        progress.check("metrics")
