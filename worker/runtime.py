"""What a task needs to reach the stores: settings, database, artifact store and the event loop
that owns the database client.

Production worker processes build their own runtime (one loop and one motor client per process;
a client must never be reused across loops). The API in embedded mode, and tests, install theirs:
tasks then run their I/O on that loop (`run_coroutine_threadsafe`), so the in-process
mongomock store is only ever touched from one thread.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

from core.artifacts import ArtifactStore, make_artifact_store
from core.settings import Settings, get_settings
from core.store.db import Database, connect, ensure_indexes

T = TypeVar("T")
IDLE_LOOP_WAIT_S = 120.0


@dataclass
class Runtime:
    settings: Settings
    db: Database
    artifacts: ArtifactStore
    loop: asyncio.AbstractEventLoop
    client: Any = None
    pid: int = field(default_factory=os.getpid)
    thread: int = field(default_factory=threading.get_ident)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run `coro` on this runtime's loop from a thread that is not running it.

        Only the thread that built the runtime may drive its loop itself; any other thread
        (the embedded worker's) hands the coroutine over even when the loop is idle for a
        moment: driving someone else's loop from here broke it ("already running") for its owner.
        """
        if self.loop.is_running():
            return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)
        if threading.get_ident() != self.thread:  # idle for a moment; bounded in case it never runs again
            return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout or IDLE_LOOP_WAIT_S)
        return self.loop.run_until_complete(coro)


_current: Runtime | None = None
_lock = threading.Lock()


def install(rt: Runtime | None) -> None:
    global _current
    _current = rt


def current() -> Runtime | None:
    return _current


def get_runtime() -> Runtime:
    """The installed runtime, else a process-local one built from settings."""
    global _current
    with _lock:
        if _current is None or _current.pid != os.getpid():  # a forked pool child builds its own
            settings = get_settings()
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            client, db = connect(settings)
            loop.run_until_complete(ensure_indexes(db, embedded=settings.embedded_store))
            _current = Runtime(settings, db, make_artifact_store(settings), loop, client)
        return _current
