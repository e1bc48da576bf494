"""A MongoDB shared between processes for the cross-process fault tier: nx-27017 (a MongoDB
wire-protocol server over SQLite) started on a free loopback port.

No MongoDB server can run here. nx-27017 serves motor/pymongo for real, but two of its defects
would give silently wrong answers to queries real MongoDB answers correctly, so the server is
started through this module (`python -m tests.nx_mongo --port P ...`) with two fixes applied:
- its SQL fast path for updates binds a top-level `$set` datetime as a *string* (a heartbeat
  stored that way never compares with a datetime): updates take its Python path instead;
- its Python update path cannot serialise `bytes` inside arrays (centroid vectors): they are
  wrapped as its own Binary first, as its insert path does;
- a nested include projection (`{"vectors.emb": 1}`) comes back with flat dotted keys: the
  results are nested again, as MongoDB returns them.
Known remaining gaps: wildcard indexes (the store skips them where a server lacks them), `$ne`
guards on array paths inside updates (the store adds vector indexes by a revision
compare-and-set instead), datetimes in aggregate `$match` (analytics are not used in this tier).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def available() -> bool:
    try:
        import nx_27017  # noqa: F401
    except ImportError:
        return False
    return True


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _answers(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
        return True
    return False


class NxServer:
    """One nx-27017 process; `stop()` / `start()` again on the same port and database file."""

    def __init__(self, workdir: Path, *, port: int | None = None, durable: bool = False):
        self.workdir = workdir
        self.port = port or _free_port()
        self.db_path = str(workdir / "nx.db") if durable else "memory"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/?serverSelectionTimeoutMS=3000&connectTimeoutMS=2000"

    def start(self) -> NxServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = open(self.workdir / "nx.out", "ab")  # noqa: SIM115 - owned by the child
        self.proc = subprocess.Popen(  # noqa: S603
            [
                sys.executable, "-m", "tests.nx_mongo", "--host", "127.0.0.1", "-p", str(self.port),
                "--db", self.db_path, "--log-file", str(self.workdir / "nx.log"),
                "--pid-file", str(self.workdir / "nx.pid"),
            ],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + 20
        while not _answers(self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"nx-27017 did not start: {(self.workdir / 'nx.out').read_text()[-2000:]}")
            time.sleep(0.05)
        return self

    def stop(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            self.proc.wait(10)
        self.proc = None


@contextlib.contextmanager
def nx_server(workdir: Path, *, durable: bool = False) -> Iterator[NxServer]:
    server = NxServer(workdir, durable=durable).start()
    try:
        yield server
    finally:
        server.stop()


def _unflatten(doc: dict[str, Any]) -> dict[str, Any]:
    """{"vectors.emb": v} -> {"vectors": {"emb": v}}: what MongoDB answers to a nested include."""
    out: dict[str, Any] = {}
    for key, value in doc.items():
        *parents, leaf = key.split(".")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


def _serve() -> int:
    from neosqlite.binary import Binary
    from neosqlite.collection import json_helpers
    from neosqlite.collection.query_helper.utils import set_force_fallback

    set_force_fallback(True)
    encode = json_helpers.NeoSQLiteJSONEncoder.default

    def default(self: json_helpers.NeoSQLiteJSONEncoder, o: object) -> object:
        if isinstance(o, bytes) and not isinstance(o, Binary):
            o = Binary(o)
        return encode(self, o)

    json_helpers.NeoSQLiteJSONEncoder.default = default  # type: ignore[method-assign]

    from neosqlite.collection.cursor import Cursor

    project = Cursor._apply_projection

    def nested(self: Cursor, docs: Any) -> list[dict[str, Any]]:
        return [_unflatten(d) for d in project(self, docs)]

    Cursor._apply_projection = nested  # type: ignore[method-assign]
    from nx_27017.nx_27017 import main

    main()
    return 0


if __name__ == "__main__":
    sys.exit(_serve())
