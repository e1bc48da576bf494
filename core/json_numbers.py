"""When a JSON body was read by orjson, some numbers need the stdlib's reading to be judged.

orjson reads an integer literal beyond 64 bits (`1180591620717411303424`) as a float, where the
stdlib keeps the exact int that the validators refuse ("does not fit in 64 bits") or name
("integer overflows float32"). api/fast_json.py sets FLOATS_MAY_BE_INTEGERS while a body orjson
read is validated; a validator that meets an integral float outside the 64-bit range raises
NeedsExactJSON, and the request is validated again from the stdlib's reading. Such values are
rare, so a normal body is read once.
"""

from __future__ import annotations

from contextvars import ContextVar

FLOATS_MAY_BE_INTEGERS: ContextVar[bool] = ContextVar("floats_may_be_integers", default=False)
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


class NeedsExactJSON(Exception):  # noqa: N818 - a signal, not an error a client sees
    """A number whose JSON spelling decides its validity: read the body again with the stdlib."""


def check_float(x: float) -> None:
    """Raise NeedsExactJSON for an integral float outside int64 read by orjson."""
    if FLOATS_MAY_BE_INTEGERS.get() and not _INT64_MIN <= x <= _INT64_MAX and x.is_integer():
        raise NeedsExactJSON
