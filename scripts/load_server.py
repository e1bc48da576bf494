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


@contextlib.contextmanager
def own_server(key: str, startup_timeout: float) -> Iterator[tuple[str, int | None]]:
    """`python -m api.cli serve` (embedded store and worker) from this checkout on a free loopback
    port, with a temporary data dir and `key` as its admin key; stopped (SIGTERM, then SIGKILL) on exit."""
    with tempfile.TemporaryDirectory(prefix="clusterd-load-") as tmp:
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("CLUSTERD_")}
        env |= {"CLUSTERD_API_KEYS": key, "CLUSTERD_DATA_DIR": str(Path(tmp) / "data")}
        log_path = Path(tmp) / "server.log"
        cmd = [sys.executable, "-m", "api.cli", "serve", "--host", "127.0.0.1", "--port", str(port)]
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
