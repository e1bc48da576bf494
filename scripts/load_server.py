"""The embedded clusterd that scripts/load.py starts when no --url is given."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# cProfile on the main thread's CPU clock (the event loop: time spent waiting for a core on a busy
# machine is not charged to whatever was running). uvicorn re-raises the SIGTERM that stopped it
# once it has shut down: as SystemExit, so the stats still get written.
PROFILED = """
import cProfile, signal, sys, time
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
sys.argv = ["clusterd", *{args!r}]
from api.cli import main
profile = cProfile.Profile(time.thread_time)
try:
    profile.runcall(main)
except SystemExit:
    pass
finally:
    profile.dump_stats({out!r})
"""


@contextlib.contextmanager
def own_server(
    key: str, startup_timeout: float, *, profile_to: Path | None = None
) -> Iterator[tuple[str, int | None]]:
    """`python -m api.cli serve` (embedded store and worker) from this checkout on a free loopback
    port, with a temporary data dir and `key` as its admin key; stopped (SIGTERM, then SIGKILL) on exit.
    With `profile_to` it runs under cProfile (the main thread: the event loop), which writes its
    stats there when the server stops."""
    with tempfile.TemporaryDirectory(prefix="clusterd-load-") as tmp:
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("CLUSTERD_")}
        env |= {"CLUSTERD_API_KEYS": key, "CLUSTERD_DATA_DIR": str(Path(tmp) / "data")}
        env.setdefault("GLIBC_TUNABLES", "glibc.malloc.hugetlb=1")  # as scripts/run.sh and the Dockerfile
        log_path = Path(tmp) / "server.log"
        args = ["serve", "--host", "127.0.0.1", "--port", str(port)]
        cmd = [sys.executable, "-m", "api.cli", *args]
        if profile_to is not None:
            cmd = [sys.executable, "-c", PROFILED.format(args=args, out=str(profile_to))]
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)  # noqa: S603
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + startup_timeout
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(
                        f"server exited with {proc.returncode}:\n{log_path.read_text()[-2000:]}"
                    )
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"{url}/v1/health", timeout=2).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"server not up after {startup_timeout:g}s:\n{log_path.read_text()[-2000:]}"
                    )
                time.sleep(0.1)
            yield url, proc.pid
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
