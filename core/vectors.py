"""Vector validation and the float32 wire/storage format (little-endian bytes, decoded with frombuffer)."""

from __future__ import annotations

import base64
import binascii
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from core.errors import ValidationFailed
from core.json_numbers import check_float

VECTOR_NAME_RE = re.compile(r"^[A-Za-z0-9_\-]{1,100}$")
_URI_RE = re.compile(r"^mixpeek://(?P<extractor>[^@/]+)@(?P<version>[^/]+)/(?P<output>[^/]+)$")
DTYPE = np.dtype("<f4")
_F32_MAX = float(np.finfo(np.float32).max)


def parse_feature_uri(uri: str) -> tuple[str, str, str] | None:
    """`mixpeek://{extractor}@{version}/{output}` -> (extractor, version, output), else None."""
    m = _URI_RE.match(uri)
    return (m["extractor"], m["version"], m["output"]) if m else None


def storage_name(key: str) -> str:
    """A vector key is a bare name or a feature URI; vectors are stored under the URI's output name."""
    parsed = parse_feature_uri(key)
    return parsed[2] if parsed else key


def default_feature_uri(name: str) -> str:
    return f"mixpeek://direct@v1/{name}"


def resolve_vector_name(requested: str, available: set[str]) -> str | None:
    """Contract §1.9: exact key, else the URI's output, else `{extractor}_{version}_{output}`."""
    if requested in available:
        return requested
    parsed = parse_feature_uri(requested)
    if parsed is None:
        return None
    extractor, version, output = parsed
    for candidate in (output, f"{extractor}_{version}_{output}"):
        if candidate in available:
            return candidate
    return None


def to_float32(value: Any, *, loc: str, max_dimensions: int) -> np.ndarray:
    """Check one dense vector strictly (JSON numbers only, finite in float32) and return it.

    `{"b64": "<base64 of little-endian float32>"}` is the binary form of the same vector.
    A plain list is converted by numpy in one call; anything that call cannot vouch for (a
    non-numeric element, a bool, a value out of float32 range, ...) goes through the element loop,
    which names the first bad position.
    """
    if isinstance(value, dict) and "b64" in value:
        if len(value) != 1:
            raise ValidationFailed(f'{loc}: a binary vector is exactly {{"b64": "<base64 float32>"}}')
        return from_base64(value["b64"], loc=loc, max_dimensions=max_dimensions)
    if not isinstance(value, list):
        raise ValidationFailed(f"{loc}: must be a list of numbers, got {type(value).__name__}")
    if not value:
        raise ValidationFailed(f"{loc}: must not be empty")
    if len(value) > max_dimensions:
        raise ValidationFailed(f"{loc}: {len(value)} dimensions exceeds the limit of {max_dimensions}")
    fast = convert_many([value])[0]
    return fast if fast is not None else _to_float32_checked(value, loc=loc)


def convert_many(values: list[list[Any]]) -> list[np.ndarray | None]:
    """The float32 arrays of lists of JSON numbers of one length, converted by one numpy call (a
    batch's vectors): per list its array, or None where to_float32's element loop must judge it
    (and name what is wrong).

    numpy's own type discovery rejects strings, None, objects, nested and ragged lists and integers
    beyond 64 bits (the result is not a 2-d int/float array). It does turn a bool into 0 or 1, so
    elements equal to 0 or 1 are checked for being bools one by one (rare in real embeddings).
    """
    none: list[np.ndarray | None] = [None] * len(values)
    try:
        m = np.array(values)
    except (ValueError, TypeError, OverflowError):
        return none
    if m.ndim != 2 or m.dtype.kind not in "iuf":
        return none
    if m.dtype.kind != "f":
        m = m.astype(np.float64)  # as the element loop converts: int -> float64 -> float32
    ok = np.logical_and((m <= _F32_MAX).all(axis=1), (m >= -_F32_MAX).all(axis=1))  # false for NaN
    zero_or_one = (m == 0.0) | (m == 1.0)
    for r in np.flatnonzero(zero_or_one.any(axis=1) & ok).tolist():
        row = values[r]
        if any(type(row[c]) is bool for c in np.flatnonzero(zero_or_one[r]).tolist()):
            ok[r] = False
    if not ok.any():
        return none
    rows = np.flatnonzero(ok)
    converted = (m if rows.size == len(values) else m[rows]).astype(DTYPE)
    out: list[np.ndarray | None] = [None] * len(values)
    for k, r in enumerate(rows.tolist()):
        out[r] = converted[k]
    return out


def _to_float32_checked(value: list[Any], *, loc: str) -> np.ndarray:
    """The element loop: the first bad element's position and reason, else the float32 array."""
    for i, x in enumerate(value):
        # bool is an int subclass; strings and nested lists are not numbers either
        if type(x) is not float and type(x) is not int:
            kind = "a nested list (ragged or multi-vector input)" if isinstance(x, list) else type(x).__name__
            raise ValidationFailed(f"{loc}[{i}]: must be a number, got {kind}")
        if type(x) is float and not math.isfinite(x):
            raise ValidationFailed(f"{loc}[{i}]: must be finite, got {x}")
        if type(x) is int and abs(x) > _F32_MAX:  # also keeps 400-digit ints away from numpy
            raise ValidationFailed(f"{loc}[{i}]: integer overflows float32")
    arr = np.asarray(value, dtype=np.float64)
    too_big = np.abs(arr) > _F32_MAX  # checked before the cast, which would only warn
    if too_big.any():
        bad = int(np.argmax(too_big))
        check_float(value[bad])  # an integer literal, as orjson reads it? Its message differs
        raise ValidationFailed(f"{loc}[{bad}]: {value[bad]} overflows float32")
    return arr.astype(DTYPE)


def from_base64(data: Any, *, loc: str, max_dimensions: int) -> np.ndarray:
    """`{"b64": ...}`: standard base64 of the vector's little-endian float32 bytes."""
    if not isinstance(data, str):
        raise ValidationFailed(f"{loc}.b64: must be a base64 string, got {type(data).__name__}")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise ValidationFailed(f"{loc}.b64: not valid base64") from None
    if not raw:
        raise ValidationFailed(f"{loc}: must not be empty")
    if len(raw) % 4:
        raise ValidationFailed(
            f"{loc}.b64: {len(raw)} bytes is not a whole number of float32 values (4 bytes each)"
        )
    if len(raw) // 4 > max_dimensions:
        raise ValidationFailed(f"{loc}: {len(raw) // 4} dimensions exceeds the limit of {max_dimensions}")
    arr = np.frombuffer(raw, dtype=DTYPE)
    bad = first_non_finite(arr)
    if bad is not None:
        raise ValidationFailed(f"{loc}[{bad}]: must be finite, got {float(arr[bad])}")
    return arr


def first_non_finite(arr: np.ndarray) -> int | None:
    """Index of the first NaN or infinity in a 1-d float array, else None."""
    finite = np.isfinite(arr)
    return None if finite.all() else int(np.argmin(finite))


def encode(vec: np.ndarray) -> bytes:
    return np.ascontiguousarray(vec, dtype=DTYPE).tobytes()


def decode(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype=DTYPE)


def decode_many(chunks: Sequence[bytes], dimensions: int) -> np.ndarray:
    """Decode equal-length float32 blobs into a writable (n, dimensions) array, one row copy each."""
    rows = VectorRows(dimensions, len(chunks))
    rows.extend(chunks)
    return rows.take()


_MOVE_BYTES = 8 << 20  # rows gathered per step when compacting in place (~8 MB of temporary)


class VectorRows:
    """A float32 (n, dimensions) matrix filled from stored blobs, each copied once into its row.

    The buffer is allocated for `capacity` rows up front (rows never written cost address space but
    no memory) and grows by a quarter when more arrive (the one moment two copies are alive).
    `reorder` and `keep` work in place, `take` trims the unused tail in place and hands the matrix
    over. No view or buffer export of the buffer escapes before `take`, which is what makes the
    in-place resizes safe.
    """

    def __init__(self, dimensions: int, capacity: int = 0) -> None:
        self.dimensions = dimensions
        self._width = dimensions * DTYPE.itemsize
        self._buf = np.empty((max(0, capacity), dimensions), DTYPE)
        self._n = 0

    def __len__(self) -> int:
        return self._n

    @property
    def capacity(self) -> int:
        return int(self._buf.shape[0])

    def extend(self, chunks: Sequence[bytes]) -> None:
        """Append one row per blob; each must hold exactly `dimensions` little-endian float32."""
        if not chunks:
            return
        need = self._n + len(chunks)
        if need > self.capacity:
            self._grow(need)
        w, start = self._width, self._n * self._width
        with self._buf.data.cast("B") as mv:
            for chunk in chunks:  # a blob of another length raises (the slice is one row long)
                mv[start : start + w] = chunk
                start += w
        self._n = need

    def _grow(self, need: int) -> None:
        bigger = np.empty((max(need, self.capacity + self.capacity // 4), self.dimensions), DTYPE)
        bigger[: self._n] = self._buf[: self._n]
        self._buf = bigger

    def reorder(self, order: np.ndarray) -> None:
        """Rows become `rows[order]` (a permutation of range(len(self))), moved in place cycle by
        cycle instead of gathered into a second matrix."""
        n = self._n
        perm = np.asarray(order, dtype=np.intp)
        if perm.shape != (n,) or not np.array_equal(np.sort(perm), np.arange(n)):
            raise ValueError("order must be a permutation of the rows")  # else a cycle never closes
        moved = np.flatnonzero(perm != np.arange(n))
        if moved.size == 0:
            return
        src, done, buf = perm.tolist(), bytearray(n), self._buf
        for start in moved.tolist():
            if done[start]:
                continue
            held = buf[start].copy()
            i = start
            while True:
                done[i] = 1
                j = src[i]
                if j == start:
                    buf[i] = held
                    break
                buf[i] = buf[j]
                i = j

    def keep(self, indices: np.ndarray) -> None:
        """Keep only the rows at `indices` (strictly increasing), compacted to the front in place:
        row i comes from indices[i] >= i, so a step never overwrites a row a later step reads."""
        idx = np.asarray(indices, dtype=np.intp)
        if idx.size and (idx[0] < 0 or idx[-1] >= self._n or (idx.size > 1 and np.any(np.diff(idx) <= 0))):
            raise ValueError("indices must be strictly increasing row numbers")
        step = max(1, _MOVE_BYTES // max(1, self._width))
        for s in range(0, idx.size, step):
            part = idx[s : s + step]
            self._buf[s : s + part.size] = self._buf[part]  # the gather copies before the write
        self._n = int(idx.size)

    def take(self) -> np.ndarray:
        """The (len(self), dimensions) matrix; this buffer starts over empty."""
        buf, n = self._buf, self._n
        self._buf, self._n = np.empty((0, self.dimensions), DTYPE), 0
        if n < buf.shape[0]:
            buf.resize((n, self.dimensions), refcheck=False)  # in place: no view of buf exists
        return buf


def validate_vectors(
    vectors: Any,
    *,
    loc: str,
    known_dimensions: Mapping[str, int],
    max_dimensions: int,
    declared_only: bool = False,
    converted: Mapping[str, np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """Validate a document's `vectors` map against the collection's indexes.

    Returns {storage_name: float32 array}. A known name must match its fixed dimension. A name not
    yet indexed is rejected when the collection declared its indexes (`declared_only`), else it is
    accepted and will be indexed with its dimension. `converted` holds arrays `convert_many`
    already made of some of the lists (by key).
    """
    if vectors is None:
        return {}
    if not isinstance(vectors, dict):
        raise ValidationFailed(f"{loc}: must be an object of name -> list of numbers")
    out: dict[str, np.ndarray] = {}
    for key, value in vectors.items():
        name = storage_name(str(key))
        if not VECTOR_NAME_RE.match(name):
            raise ValidationFailed(
                f"{loc}.{key}: vector names use letters, digits, '_' and '-' (1-100 characters)"
            )
        if name in out:
            raise ValidationFailed(f"{loc}.{key}: vector '{name}' given twice")
        arr = converted.get(key) if converted else None
        if arr is None:
            arr = to_float32(value, loc=f"{loc}.{key}", max_dimensions=max_dimensions)
        expected = known_dimensions.get(name)
        if expected is None and declared_only:
            known = ", ".join(sorted(known_dimensions)) or "none"
            raise ValidationFailed(f"{loc}.{key}: unknown vector name '{name}' (known indexes: {known})")
        if expected is not None and arr.shape[0] != expected:
            known = ", ".join(f"{n} ({d})" for n, d in sorted(known_dimensions.items()))
            raise ValidationFailed(
                f"{loc}.{key}: expected {expected} dimensions, got {arr.shape[0]} (known indexes: {known})"
            )
        out[name] = arr
    return out
