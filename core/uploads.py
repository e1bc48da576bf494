"""Validation of a document upload: a parquet (or Arrow IPC) file, one row per document, checked
column by column rather than document by document.

Columns: `document_id` (string, required, the same rules as JSON), one column per vector, named
like a `vectors` key — a list or fixed-size list of floats or integers, or a binary /
fixed-size binary column of little-endian float32 bytes; a null cell means the row has no such
vector — and any number of scalar columns (string, integer, floating point, boolean, all null),
stored as `metadata.<column>`. Vectors get the JSON path's guarantees: finite in float32, the
dimension of the collection's index, no unknown names in a collection that declared its indexes.
Errors name the row as `documents[i]`, like the JSON batch, or the column; nothing is written
unless the whole file passes.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from core.documents import check_document_id, not_utf8
from core.errors import PayloadTooLarge, ValidationFailed
from core.vectors import DTYPE, VECTOR_NAME_RE, storage_name

MAX_ERRORS = 20
PARQUET_MAGIC = b"PAR1"
ARROW_FILE_MAGIC = b"ARROW1"
ARROW_STREAM_MAGIC = b"\xff\xff\xff\xff"  # the continuation marker that starts every IPC message
# what Python's str.strip() removes from an ASCII document_id
_ASCII_SPACE = "".join(c for c in map(chr, range(128)) if c.isspace())
# a parquet file may decode to far more than its size (dictionary or run-length encoded columns);
# the decoded data may be this many times the upload limit
DECODED_FACTOR = 4
READ_BATCH_ROWS = 16_384
_F32_MAX = float(np.finfo(np.float32).max)
_INT64_MAX = 2**63 - 1
_INT64_MESSAGE = "integer does not fit in 64 bits (MongoDB's largest integer)"


@dataclass
class VectorColumn:
    name: str  # storage name
    matrix: np.ndarray  # (rows that have it, dimensions) float32, C order
    present: np.ndarray | None  # bool per row, None when every row has it


@dataclass
class Upload:
    document_ids: list[str]
    metadata: list[dict[str, Any]]
    vectors: list[VectorColumn] = field(default_factory=list)
    new_indexes: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.document_ids)


class _Errors:
    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []

    def add(self, loc: list[Any], msg: str) -> None:
        if len(self.items) < MAX_ERRORS:
            self.items.append({"loc": loc, "msg": msg, "type": "value_error"})

    def row(self, i: int, msg: str) -> None:
        self.add(["documents", i], msg)

    def column(self, name: str, msg: str) -> None:
        self.add(["columns", name], f"column '{name}': {msg}")

    @property
    def full(self) -> bool:
        return len(self.items) >= MAX_ERRORS

    def raise_any(self) -> None:
        if not self.items:
            return
        n = len(self.items)
        more = (
            f" (and {n - 1} more; the upload was not written)" if n > 1 else " (the upload was not written)"
        )
        raise ValidationFailed(self.items[0]["msg"] + more, details={"validation_errors": self.items})


def read_table(
    body: bytes | memoryview,
    *,
    known_dimensions: dict[str, int],
    declared_only: bool,
    max_dimensions: int,
    max_decoded_bytes: int,
) -> Upload:
    """Validate a whole upload (see the module doc); raise ValidationFailed listing up to 20 bad
    rows or columns, PayloadTooLarge when it would decode to more than `max_decoded_bytes`."""
    table = _open(body, max_decoded_bytes)
    errors = _Errors()
    names = table.column_names
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        errors.column(dup, "appears twice")
        errors.raise_any()
    if "document_id" not in names:
        raise ValidationFailed(
            "document_id: the file needs a string column 'document_id' (one id per row)",
            details={"validation_errors": [_missing_id()]},
        )
    if table.num_rows == 0:
        raise ValidationFailed("documents: the file must contain at least one row")

    vector_columns: list[tuple[str, str, pa.ChunkedArray]] = []
    scalar_columns: list[tuple[str, pa.ChunkedArray]] = []
    for name in names:
        col = table.column(name)
        if name == "document_id":
            continue
        if _is_list(col.type) or _is_binary(col.type):
            vector_columns.append((name, storage_name(name), col))
        elif _is_scalar(col.type):
            scalar_columns.append((name, col))
        else:
            errors.column(
                name,
                f"type {col.type} is not supported (vectors: list<float> or float32 bytes; "
                "metadata: string, integer, floating point or boolean)",
            )
    ids = _document_ids(table.column("document_id"), errors)
    known = dict(known_dimensions)
    upload = Upload(document_ids=ids, metadata=[])
    seen_names: set[str] = set()
    for column_name, name, col in vector_columns:
        if not VECTOR_NAME_RE.match(name):
            errors.column(column_name, "vector names use letters, digits, '_' and '-' (1-100 characters)")
            continue
        if name in seen_names:
            errors.column(column_name, f"vector '{name}' given twice")
            continue
        seen_names.add(name)
        if name not in known and declared_only:
            listed = ", ".join(sorted(known)) or "none"
            errors.column(column_name, f"unknown vector name '{name}' (known indexes: {listed})")
            continue
        vc = _vectors(column_name, name, col, known, max_dimensions, errors)
        if vc is not None:
            upload.vectors.append(vc)
            if name not in known:
                known[name] = upload.new_indexes[name] = int(vc.matrix.shape[1])
    for name, _ in scalar_columns:
        if (problem := _metadata_name_error(name)) is not None:
            errors.column(name, problem)
    errors.raise_any()
    upload.metadata = _metadata(scalar_columns, table.num_rows, errors)
    errors.raise_any()
    return upload


def _missing_id() -> dict[str, Any]:
    return {"loc": ["columns", "document_id"], "msg": "column 'document_id': missing", "type": "value_error"}


def _open(body: bytes | memoryview, max_decoded_bytes: int) -> pa.Table:
    """The table in a parquet file, an Arrow IPC file or an Arrow IPC stream (by magic bytes)."""
    is_parquet = len(body) >= 12 and body[:4] == PARQUET_MAGIC and body[-4:] == PARQUET_MAGIC
    is_arrow = body[:6] == ARROW_FILE_MAGIC or body[:4] == ARROW_STREAM_MAGIC
    if not (is_parquet or is_arrow):
        raise ValidationFailed(
            "body: not a parquet or Arrow IPC file (send the file's bytes, "
            "Content-Type: application/vnd.apache.parquet)"
        )
    too_large = PayloadTooLarge(
        f"body: the file decodes to more than {max_decoded_bytes // 2**20} MB "
        f"({DECODED_FACTOR} x CLUSTERD_MAX_UPLOAD_MB)"
    )
    try:
        batches: Iterator[pa.RecordBatch]
        if is_parquet:
            reader = pq.ParquetFile(pa.BufferReader(body))
            meta = reader.metadata
            if sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups)) > max_decoded_bytes:
                raise too_large
            batches, schema = reader.iter_batches(batch_size=READ_BATCH_ROWS), reader.schema_arrow
        elif body[:6] == ARROW_FILE_MAGIC:
            file = ipc.open_file(pa.BufferReader(body))
            batches = (file.get_batch(i) for i in range(file.num_record_batches))
            schema = file.schema
        else:
            stream = ipc.open_stream(pa.BufferReader(body))
            batches, schema = iter(stream), stream.schema
        kept, size = [], 0
        for batch in batches:  # decoded batch by batch: stop before a small file fills the memory
            size += batch.nbytes
            if size > max_decoded_bytes:
                raise too_large
            kept.append(batch)
        return pa.Table.from_batches(kept, schema=schema)
    except (pa.ArrowException, OSError, ValueError) as exc:
        kind = "parquet" if is_parquet else "Arrow IPC"
        detail = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise ValidationFailed(f"body: not a readable {kind} file ({detail})") from None


def _is_list(t: pa.DataType) -> bool:
    return bool(pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t))


def _is_binary(t: pa.DataType) -> bool:
    return bool(pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t))


def _is_scalar(t: pa.DataType) -> bool:
    if pa.types.is_dictionary(t):
        return _is_scalar(t.value_type)
    return bool(
        pa.types.is_string(t)
        or pa.types.is_large_string(t)
        or pa.types.is_integer(t)
        or pa.types.is_floating(t)
        or pa.types.is_boolean(t)
        or pa.types.is_null(t)
    )


def _decoded(col: pa.ChunkedArray) -> pa.ChunkedArray:
    return col.cast(col.type.value_type) if pa.types.is_dictionary(col.type) else col


def _document_ids(col: pa.ChunkedArray, errors: _Errors) -> list[str]:
    col = _decoded(col)
    if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
        errors.column("document_id", f"must hold strings, got {col.type}")
        return []
    ids: list[str] = col.to_pylist()
    if _plain_ids(col):  # the usual file: ASCII ids, 1-200 characters, unpadded, all distinct
        return ids
    out: list[str] = []
    seen: dict[str, int] = {}
    for i, raw in enumerate(ids):  # the same checks one by one, for their messages
        loc = f"documents[{i}].document_id"
        try:
            if raw is None:
                raise ValidationFailed(f"{loc}: required for upload (null)")
            check_document_id(raw, loc=loc)
            doc_id = raw.strip()
            if doc_id in seen:
                raise ValidationFailed(f"{loc}: '{doc_id}' repeats documents[{seen[doc_id]}]")
        except ValidationFailed as exc:
            errors.row(i, exc.message)
            if errors.full:
                break
            out.append("")
            continue
        seen[doc_id] = i
        out.append(doc_id)
    return out


def _plain_ids(col: pa.ChunkedArray) -> bool:
    """True when every id passes `check_document_id` unchanged by strip() and none repeats."""
    if col.null_count or not pc.all(pc.string_is_ascii(col)).as_py():
        return False
    lengths = pc.min_max(pc.utf8_length(col)).as_py()
    if not (1 <= lengths["min"] and lengths["max"] <= 200):
        return False
    if not pc.all(pc.equal(pc.ascii_trim(col, characters=_ASCII_SPACE), col)).as_py():
        return False
    return bool(pc.count_distinct(col).as_py() == len(col))


def _vectors(
    column_name: str,
    name: str,
    col: pa.ChunkedArray,
    known: dict[str, int],
    max_dimensions: int,
    errors: _Errors,
) -> VectorColumn | None:
    arr = col.combine_chunks()
    binary = _is_binary(arr.type)
    if not binary and not (
        pa.types.is_floating(arr.type.value_type) or pa.types.is_integer(arr.type.value_type)
    ):
        errors.column(column_name, f"a vector column holds lists of numbers or float32 bytes, got {arr.type}")
        return None
    nulls = arr.is_null().to_numpy(zero_copy_only=False)
    present = None if not nulls.any() else ~nulls
    if present is not None:
        arr = arr.filter(pa.array(present))
    rows = np.arange(len(nulls)) if present is None else np.flatnonzero(present)
    if rows.size == 0:
        errors.column(column_name, "every row is null")
        return None
    loc = f"vectors.{column_name}"
    lengths = _lengths(arr)  # elements per row (bytes for a binary column)
    if binary:
        odd = np.flatnonzero(lengths % 4)
        for k in odd[:MAX_ERRORS].tolist():
            i = int(rows[k])
            errors.row(
                i,
                f"documents[{i}].{loc}: {int(lengths[k])} bytes is not a whole number of float32 "
                "values (4 bytes each)",
            )
        if odd.size:
            return None
        lengths //= 4
    expected = known.get(name)
    filled = np.flatnonzero(lengths)
    dims = expected if expected is not None else int(lengths[filled[0]]) if filled.size else 0
    first = int(rows[filled[0]]) if filled.size else 0
    wrong = np.flatnonzero(lengths != dims)
    for k in wrong[:MAX_ERRORS].tolist():
        i, got = int(rows[k]), int(lengths[k])
        if got == 0:
            errors.row(i, f"documents[{i}].{loc}: must not be empty")
        elif expected is None:
            errors.row(
                i, f"documents[{i}].{loc}: expected {dims} dimensions (as documents[{first}]), got {got}"
            )
        else:
            listed = ", ".join(f"{n} ({d})" for n, d in sorted(known.items()))
            errors.row(
                i,
                f"documents[{i}].{loc}: expected {expected} dimensions, got {got} (known indexes: {listed})",
            )
    if wrong.size:
        return None
    if dims > max_dimensions:
        errors.column(column_name, f"{dims} dimensions exceeds the limit of {max_dimensions}")
        return None
    if binary:
        raw = _binary_values(arr, rows.size * dims * 4).view(DTYPE).reshape(rows.size, dims)
    else:
        values = arr.flatten()  # the rows' values, in row order
        if values.null_count:
            flat = int(np.argmax(values.is_null().to_numpy(zero_copy_only=False)))
            i, j = int(rows[flat // dims]), flat % dims
            errors.row(i, f"documents[{i}].{loc}[{j}]: must be a number, got null")
            return None
        raw = values.to_numpy(zero_copy_only=False).reshape(rows.size, dims)
    matrix = _checked_float32(raw, rows, loc, errors)
    if matrix is None:
        return None
    return VectorColumn(name=name, matrix=matrix, present=present)


def _lengths(arr: pa.Array) -> np.ndarray:
    if pa.types.is_fixed_size_list(arr.type):
        return np.full(len(arr), arr.type.list_size, dtype=np.int64)
    if pa.types.is_fixed_size_binary(arr.type):
        return np.full(len(arr), arr.type.byte_width, dtype=np.int64)
    length = pc.binary_length if _is_binary(arr.type) else pc.list_value_length
    return np.asarray(length(arr).to_numpy(zero_copy_only=False), dtype=np.int64)


def _binary_values(arr: pa.Array, size: int) -> np.ndarray:
    """The bytes of a binary column without nulls whose rows all have one length, as one buffer."""
    data = np.frombuffer(arr.buffers()[-1], dtype=np.uint8)
    if pa.types.is_fixed_size_binary(arr.type):
        start = arr.offset * arr.type.byte_width
    else:
        offsets = np.frombuffer(
            arr.buffers()[1], dtype=np.int64 if pa.types.is_large_binary(arr.type) else np.int32
        )
        start = int(offsets[arr.offset])
    out = data[start : start + size]
    return out if out.ctypes.data % DTYPE.alignment == 0 else out.copy()


def _checked_float32(raw: np.ndarray, rows: np.ndarray, loc: str, errors: _Errors) -> np.ndarray | None:
    """float32 (C order) of `raw` if every value is finite and fits in float32, else None with
    the bad rows reported (first bad position of each)."""
    if raw.dtype.kind in "iu":  # 64-bit integers all fit in float32's range
        return np.ascontiguousarray(raw.astype(np.float64).astype(DTYPE))
    bad = ~np.isfinite(raw)
    overflow = False
    if not bad.any() and raw.dtype.itemsize > 4:
        bad = np.abs(raw) > _F32_MAX
        overflow = True
    if not bad.any():
        return np.ascontiguousarray(raw, dtype=DTYPE)
    for k in np.flatnonzero(bad.any(axis=1))[:MAX_ERRORS].tolist():
        j = int(np.argmax(bad[k]))
        i, x = int(rows[k]), float(raw[k, j])
        reason = f"{x} overflows float32" if overflow else f"must be finite, got {x}"
        errors.row(i, f"documents[{i}].{loc}[{j}]: {reason}")
    return None


def _metadata_name_error(name: str) -> str | None:
    if not name or name.startswith("$") or "." in name or "\x00" in name or not_utf8(name):
        return "metadata names may not be empty, start with '$' or contain '.' or NUL"
    return None


def _metadata(columns: list[tuple[str, pa.ChunkedArray]], n: int, errors: _Errors) -> list[dict[str, Any]]:
    if not columns:
        return [{} for _ in range(n)]
    values: list[list[Any]] = []
    for name, col in columns:
        col = _decoded(col)
        if pa.types.is_floating(col.type):
            values.append(_floats(name, col, errors))
        elif pa.types.is_unsigned_integer(col.type) and col.type.bit_width == 64:
            big = pc.greater(col, pa.scalar(_INT64_MAX, col.type)).to_numpy(zero_copy_only=False)
            for i in np.flatnonzero(np.asarray(big, dtype=bool))[:MAX_ERRORS].tolist():
                errors.row(i, f"documents[{i}].metadata.{name}: {_INT64_MESSAGE}")
            values.append(col.to_pylist())
        else:
            try:
                values.append(col.to_pylist())
            except UnicodeDecodeError:
                errors.column(name, "holds text that is not valid UTF-8")
                values.append([None] * n)
    names = [name for name, _ in columns]
    return [dict(zip(names, row, strict=True)) for row in zip(*values, strict=True)]


def _floats(name: str, col: pa.ChunkedArray, errors: _Errors) -> list[Any]:
    """NaN is what pandas writes for a missing float: stored as null. Infinities are refused."""
    out = col.to_pylist()
    x = col.to_numpy()  # nulls come back as NaN
    inf = np.flatnonzero(np.isinf(x))
    for i in inf[:MAX_ERRORS].tolist():
        errors.row(i, f"documents[{i}].metadata.{name}: must be finite, got {float(x[i])}")
    for i in np.flatnonzero(np.isnan(x)).tolist():
        out[i] = None
    return out
