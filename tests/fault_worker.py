"""The production worker (`clusterd worker`'s Celery app, prefork pool) with one injected fault,
for the cross-process fault tests: `python -m tests.fault_worker` with the CLUSTERD_* settings
in the environment and CLUSTERD_TEST_FAULT naming the fault:

- `slow:<s>`         the clustering stage first sleeps <s> seconds (progress stage `fault-slow`),
                     so a test can kill the worker mid-run;
- `poison`           the clustering stage SIGKILLs its own process, every attempt;
- `hog:<mb>`          the clustering stage allocates <mb> MB at once;
- `deaf:<s>`         as slow, but the process ignores Celery's soft-limit signal first (a long C
                     call does the same), so only the hard time limit can end it.

Everything else (claim, heartbeat, fences, artifacts, time limits, signals) is the real code.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from typing import Any


def _faulty(real: Any, fault: str) -> Any:
    kind, _, arg = fault.partition(":")

    def run_pipeline(X: Any, config: Any, progress: Any = None, *more: Any) -> Any:
        if kind == "poison":
            os.kill(os.getpid(), signal.SIGKILL)
        if kind == "hog":  # more than the test's memory limit, less than this machine's RAM
            import numpy as np

            np.ones((int(arg) * 1024 * 1024 // 8,), dtype=np.float64)
        if kind == "deaf":
            from worker.runtime import current

            rt = current()
            assert rt is not None
            # signal.signal only works on the main thread: the runtime's loop runs there
            rt.loop.call_soon_threadsafe(signal.signal, signal.SIGUSR1, signal.SIG_IGN)
        if kind in ("slow", "deaf"):
            if progress is not None:
                progress("fault-slow", 0.0)
            deadline = time.monotonic() + float(arg)
            while time.monotonic() < deadline:
                time.sleep(0.05)
        return real(X, config, progress, *more)

    return run_pipeline


def main() -> None:
    from core.settings import get_settings
    from worker import vector_run
    from worker.app import make_celery

    fault = os.environ.get("CLUSTERD_TEST_FAULT", "")
    if fault:
        vector_run.run_pipeline = _faulty(vector_run.run_pipeline, fault)  # type: ignore[assignment]
    settings = get_settings()
    app = make_celery(settings)
    app.worker_main(
        [
            "worker", "-Q", settings.queue_name, "-c", "1", "-P", "prefork", "--loglevel=INFO",
            "--without-gossip", "--without-mingle", "--without-heartbeat", "-n", f"fault-{os.getpid()}@%h",
        ]
    )  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
