"""Just enough of libpcre2-8 (through ctypes) to check that a `$regex` means the same to PCRE as to
Python's `re`: MongoDB 6.1+ evaluates `$regex` with PCRE2 in UTF mode (older servers with PCRE,
same syntax for what the filters emit). `PCRE2 is None` when the library is not installed."""

from __future__ import annotations

import ctypes
import ctypes.util
from functools import lru_cache
from typing import Any

UTF = 0x00080000
CASELESS = 0x00000008
NOMATCH = -1


def _load() -> Any:
    for name in (ctypes.util.find_library("pcre2-8"), "libpcre2-8.so.0"):
        if not name:
            continue
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        lib.pcre2_compile_8.restype = ctypes.c_void_p
        lib.pcre2_compile_8.argtypes = [
            ctypes.c_char_p,
            ctypes.c_size_t,
            ctypes.c_uint32,
            ctypes.POINTER(ctypes.c_int),
            ctypes.POINTER(ctypes.c_size_t),
            ctypes.c_void_p,
        ]
        lib.pcre2_match_data_create_from_pattern_8.restype = ctypes.c_void_p
        lib.pcre2_match_data_create_from_pattern_8.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
        lib.pcre2_match_8.restype = ctypes.c_int
        lib.pcre2_match_8.argtypes = [
            ctypes.c_void_p,
            ctypes.c_char_p,
            ctypes.c_size_t,
            ctypes.c_size_t,
            ctypes.c_uint32,
            ctypes.c_void_p,
            ctypes.c_void_p,
        ]
        return lib
    return None


PCRE2 = _load()


class PcreError(ValueError):
    pass


@lru_cache(maxsize=4096)
def _compiled(pattern: str, caseless: bool) -> tuple[int, int]:
    raw = pattern.encode("utf-8")
    err, off = ctypes.c_int(), ctypes.c_size_t()
    code = PCRE2.pcre2_compile_8(
        raw, len(raw), UTF | (CASELESS if caseless else 0), ctypes.byref(err), ctypes.byref(off), None
    )
    if not code:
        raise PcreError(f"PCRE2 rejects {pattern!r} (error {err.value} at {off.value})")
    return code, PCRE2.pcre2_match_data_create_from_pattern_8(code, None)  # freed at exit


def pcre_search(pattern: str, subject: str, *, caseless: bool) -> bool:
    code, md = _compiled(pattern, caseless)
    raw = subject.encode("utf-8")
    rc = PCRE2.pcre2_match_8(code, raw, len(raw), 0, 0, md, None)
    if rc < NOMATCH or rc == 0:
        raise PcreError(f"PCRE2 match error {rc} for {pattern!r}")
    return rc > 0
