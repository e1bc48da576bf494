"""The Celery task: thin. It receives only a run id; everything else is in the database."""

from __future__ import annotations

import logging

from celery.exceptions import SoftTimeLimitExceeded

log = logging.getLogger("clusterd.worker")


def run_execution(run_id: str) -> str:
    from worker.execution import execute_run, fail_run
    from worker.runtime import get_runtime

    rt = get_runtime()
    try:
        return rt.run(execute_run(rt, run_id))
    except SoftTimeLimitExceeded:
        limit = rt.settings.run_time_limit_s
        rt.run(fail_run(rt, run_id, message=f"run exceeded its time limit ({limit} s)", category="timeout"))
        return "failed"
