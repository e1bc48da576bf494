"""The run path is warmed once per process: what the first run would otherwise load is loaded."""

from __future__ import annotations

import sys

from worker import warm


def test_warm_run_path_loads_the_run_path() -> None:
    seconds = warm.warm_run_path()
    assert seconds > 0
    assert "worker.labeling" in sys.modules and "pyarrow.parquet" in sys.modules
    from core import row_kernels

    assert all(k.signatures for k in (row_kernels._cluster_sums, row_kernels._point_pass))  # compiled
    from core.algorithms import kmeans_seeding

    assert len(kmeans_seeding.greedy_rows.signatures) >= 2  # a fresh sample and a kept (read-only) matrix


def test_start_warms_once_in_the_background(monkeypatch) -> None:
    calls: list[int] = []
    monkeypatch.setattr(warm, "_started", False)
    monkeypatch.setattr(warm, "warm_run_path", lambda: calls.append(1) or 0.0)
    threads = []
    real_thread = warm.threading.Thread

    def spy(*a, **k):
        t = real_thread(*a, **k)
        threads.append(t)
        return t

    monkeypatch.setattr(warm.threading, "Thread", spy)
    warm.start()
    warm.start()
    for t in threads:
        t.join(10)
    assert len(threads) == 1 and calls == [1]
