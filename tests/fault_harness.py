"""Processes for the cross-process fault tier: a private redis-server (so it can be killed and
restarted without touching the shared one on 6379), worker subprocesses (tests/fault_worker.py)
and the settings the API (in-process) and the workers share (MongoDB on nx-27017, artifacts in
one local directory)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.nx_mongo import ROOT, NxServer, _answers, _free_port

FAST_RELIABILITY = {
    "heartbeat_interval_s": 0.5,
    "stale_after_s": 2.5,
    "reaper_interval_s": 0.5,
    "republish_after_s": 1.0,
    "run_time_limit_s": 10,
    "max_attempts": 3,
}


class RedisServer:
    """redis-server on a free port, no persistence (a restart loses every queued message)."""

    def __init__(self, workdir: Path):
        self.workdir, self.port = workdir, _free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is not installed (scripts/test.sh installs it)"
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(  # noqa: S603
            [binary, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "", "--appendonly", "no",
             "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        _wait_for(lambda: _answers(self.port), 10, "redis-server did not start")
        return self

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None


class Worker:
    """One `python -m tests.fault_worker` process group (Celery main process + one pool child)."""

    def __init__(self, env: dict[str, str], log: Path, fault: str = ""):
        self.env = {**os.environ, **env, "CLUSTERD_TEST_FAULT": fault, "PYTHONUNBUFFERED": "1"}
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Worker:
        out = open(self.log, "ab")  # noqa: SIM115 - owned by the child
        self.proc = subprocess.Popen(  # noqa: S603
            [sys.executable, "-m", "tests.fault_worker"],
            cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        _wait_for(lambda: bool(self.children()) or self._died(), 60, "worker pool did not start")
        assert not self._died(), self.tail()
        return self

    def _died(self) -> bool:
        return self.proc is None or self.proc.poll() is not None

    def children(self) -> list[int]:
        if self.proc is None:
            return []
        path = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        with contextlib.suppress(OSError):
            return [int(p) for p in path.read_text().split()]
        return []

    def kill_child(self) -> int:
        (child,) = self.children()
        os.kill(child, signal.SIGKILL)
        return child

    def kill_all(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill_all()
        self.proc = None

    def tail(self, n: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-n:] if self.log.exists() else ""


def shared_settings(tmp: Path, nx: NxServer, broker_url: str, queue: str) -> dict[str, Any]:
    """What the API and its workers must agree on (as Settings fields)."""
    return {
        "mongodb_url": nx.url,
        "secret_key": "fault-tier-secret-key-0123",
        "broker_url": broker_url,
        "queue_name": queue,
        "data_dir": str(tmp / "data"),
        **FAST_RELIABILITY,
    }


def as_env(fields: dict[str, Any]) -> dict[str, str]:
    return {f"CLUSTERD_{k.upper()}": str(v) for k, v in fields.items()}


def _wait_for(ok: Any, timeout: float, message: str) -> None:
    deadline = time.monotonic() + timeout
    while not ok():
        if time.monotonic() > deadline:
            raise AssertionError(message)
        time.sleep(0.05)
