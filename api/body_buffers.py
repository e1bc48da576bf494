"""Receive buffers for file-upload bodies, reused from one upload to the next.

An upload arrives in ~64 KB pieces and is read as one buffer (pyarrow reads Arrow IPC in place).
Joining the pieces into a new `bytes` cost 0.55–0.9 s for a 148 MB file on these VMs — more
than reading and storing the file: every page of a fresh allocation is faulted in, zeroed, and
backed again by the host (~4 ms per MB). Writing the pieces into the buffer the previous upload
left costs a plain copy (~15 ms). Up to KEEP buffers are kept between requests (at most
CLUSTERD_MAX_UPLOAD_MB each: the body cap); a buffer something still views (an exception's
traceback holding a decoded column, say) is not reused but left to be freed.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import AsyncIterator

from starlette.requests import Request

KEEP = 1  # uploads come one at a time from `clusterd ingest`; a second at once gets its own
_idle: list[bytearray] = []
_lock = threading.Lock()


def _take(size: int) -> bytearray:
    """The smallest kept buffer holding `size` bytes, else a new one of that size."""
    with _lock:
        fits = [b for b in _idle if len(b) >= size]
        if fits:
            buf = min(fits, key=len)
            _idle.remove(buf)
            return buf
    return bytearray(size)


def _give(buf: bytearray) -> None:
    try:  # a resize fails while anything exports the buffer: then it is not ours to reuse
        buf.append(0)
        del buf[-1]
    except BufferError:
        return
    with _lock:
        _idle.append(buf)
        _idle.sort(key=len, reverse=True)
        del _idle[KEEP:]  # the largest are kept: a smaller body fits them


def kept_bytes() -> int:
    """What the kept buffers hold (for tests and diagnostics)."""
    with _lock:
        return sum(len(b) for b in _idle)


@contextlib.asynccontextmanager
async def received(request: Request, limit: int) -> AsyncIterator[memoryview]:
    """The whole body as a view into a reused buffer, valid inside the block only: everything
    made from it must be copied out (or let go) before the block ends. `limit` bounds what is
    allocated ahead from Content-Length (the body-limit middleware enforces the cap itself)."""
    length = request.headers.get("content-length", "")
    buf = _take(min(int(length), limit) if length.isdigit() else 0)
    filled = 0
    try:
        async for chunk in request.stream():
            end = filled + len(chunk)
            if end <= len(buf):
                buf[filled:end] = chunk
            else:  # longer than announced (or no Content-Length): grows, amortised by bytearray
                del buf[filled:]
                buf += chunk
            filled = end
    except BaseException:  # e.g. the body cap's 413 part way: nothing views the buffer yet
        _give(buf)
        raise
    view = memoryview(buf)[:filled]
    try:
        yield view
    finally:
        _release(view, buf)


def _release(view: memoryview, buf: bytearray) -> None:
    try:
        view.release()
    except BufferError:  # still exported: leave both to the garbage collector
        return
    _give(buf)
