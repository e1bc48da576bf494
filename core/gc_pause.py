"""Hold Python's cyclic garbage collector while a bulk write builds its documents.

A 1000-document JSON batch or a 100k-row upload creates a few containers per document (the
parsed objects, the record, its vectors map, its metadata). With the collector on, every 700 new
containers start a collection, and the survivors are traversed again each time they move up a
generation: measured at ~20 µs per uploaded document, more than the write itself. Nothing a bulk
write creates is cyclic garbage, so the collector waits until the last such request in the
process has finished and then resumes at its normal thresholds (no collection is forced).
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

_holders = 0
_we_disabled = False


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """For the event loop's thread (requests may overlap; the last one to leave resumes it)."""
    global _holders, _we_disabled
    if _holders == 0 and gc.isenabled():
        gc.disable()
        _we_disabled = True
    _holders += 1
    try:
        yield
    finally:
        _holders -= 1
        if _holders == 0 and _we_disabled:
            _we_disabled = False
            gc.enable()
