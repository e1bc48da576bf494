"""Input files for `clusterd ingest`, read into batches: Arrow tables for the binary upload route
(parquet, Arrow IPC) or upsert-shaped documents for the JSON batch route (CSV, .npy, JSONL).
Every item keeps its place in the file (a line or row number) for error messages."""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from api.client import CliError, ExitCode

FORMATS = ("parquet", "arrow", "csv", "npy", "jsonl")
SUFFIXES = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".arrow": "arrow",
    ".arrows": "arrow",
    ".ipc": "arrow",
    ".feather": "arrow",
    ".csv": "csv",
    ".npy": "npy",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
}
UPLOAD_MAX_ROWS = 50_000  # upload pieces: progress every 50k rows at most
UPSERT_KEYS = ("document_id", "vectors", "metadata", "payload", "collection_id")
_F32_MAX = float(np.finfo(np.float32).max)


def bad_input(message: str) -> CliError:
    return CliError(message, ExitCode.REJECTED)


def detect_format(path: Path, fmt: str) -> str:
    if fmt != "auto":
        return fmt
    found = SUFFIXES.get(path.suffix.lower())
    if found is None:
        raise CliError(
            f"cannot tell the format of '{path.name}' from its suffix: pass --format ({'|'.join(FORMATS)})",
            ExitCode.USAGE,
        )
    return found


@dataclass
class Batch:
    """One request's worth of a file: `table` (upload) or `documents` (upsert), and the line or
    row number of each item."""

    places: list[int]
    table: pa.Table | None = None
    documents: list[dict[str, Any]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.places)


@dataclass
class Source:
    path: Path
    kind: str  # "upload" or "upsert"
    unit: str  # "line" or "row"
    total: int
    batches: Iterator[Batch]


def b64(vector: np.ndarray) -> dict[str, str]:
    return {"b64": base64.b64encode(np.ascontiguousarray(vector, dtype="<f4").tobytes()).decode("ascii")}


def open_source(
    path: Path,
    fmt: str,
    *,
    vector_field: str | None,
    id_field: str,
    batch_size: int,
    upload_bytes: int,
    ids_file: Path | None = None,
) -> Source:
    fmt = detect_format(path, fmt)
    try:
        if fmt in ("parquet", "arrow"):
            return _table_source(path, fmt, vector_field, id_field, upload_bytes)
        if fmt == "csv":
            return _csv_source(path, vector_field or "emb", id_field, batch_size)
        if fmt == "npy":
            return _npy_source(path, vector_field or "emb", batch_size, ids_file)
        return _jsonl_source(path, vector_field or "emb", id_field, batch_size)
    except (OSError, pa.ArrowException, ValueError) as exc:
        raise bad_input(f"cannot read {path} as {fmt}: {exc}") from None


# parquet / Arrow IPC -> the binary upload route, in pieces


def _read_table(path: Path, fmt: str) -> pa.Table:
    if fmt == "parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path)
    import pyarrow.ipc as ipc

    with pa.memory_map(str(path)) as f:
        try:
            return ipc.open_file(f).read_all()
        except pa.ArrowInvalid:
            f.seek(0)
            return ipc.open_stream(f).read_all()


def _table_source(
    path: Path, fmt: str, vector_field: str | None, id_field: str, upload_bytes: int
) -> Source:
    table = _read_table(path, fmt)
    names = table.column_names
    if id_field not in names:
        raise bad_input(f"{path.name}: no id column '{id_field}' ({', '.join(names)}); see --id-field")
    if id_field != "document_id":
        if "document_id" in names:
            raise bad_input(f"{path.name}: has both '{id_field}' and 'document_id' columns")
        table = table.rename_columns(["document_id" if n == id_field else n for n in names])
    if vector_field is not None and vector_field not in names:
        raise bad_input(f"{path.name}: no vector column '{vector_field}' (columns: {', '.join(names)})")
    per_row = max(1, table.nbytes // max(1, table.num_rows))
    rows = max(1, min(UPLOAD_MAX_ROWS, upload_bytes // per_row))

    def batches() -> Iterator[Batch]:
        for start in range(0, table.num_rows, rows):
            piece = table.slice(start, rows)
            yield Batch(places=list(range(start + 1, start + piece.num_rows + 1)), table=piece)

    return Source(path, "upload", "row", table.num_rows, batches())


def ipc_bytes(table: pa.Table) -> bytes:
    import pyarrow.ipc as ipc

    sink = pa.BufferOutputStream()
    with ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue().to_pybytes())


# CSV, .npy, JSONL -> the JSON batch route with base64 vectors


def _chunks(n: int, size: int) -> Iterator[tuple[int, int]]:
    for start in range(0, n, size):
        yield start, min(n, start + size)


def _csv_source(path: Path, vector_field: str, id_field: str, batch_size: int) -> Source:
    """A header line, then one document per line. The vector is either one column holding a JSON
    list (`emb` = "[0.1, 0.2]") or columns `emb_0 … emb_<D-1>`; every other column is metadata."""
    import pyarrow.csv as pcsv

    table = pcsv.read_csv(path)
    text = {f.name: pa.string() for f in table.schema if not _json_native(f.type)}
    if text:  # dates, times, decimals: kept as the text of the file
        table = pcsv.read_csv(path, convert_options=pcsv.ConvertOptions(column_types=text))
    names = table.column_names
    if id_field not in names:
        raise bad_input(f"{path.name}: no id column '{id_field}' ({', '.join(names)}); see --id-field")
    parts = [n for n in names if n.startswith(vector_field + "_") and n[len(vector_field) + 1 :].isdigit()]
    parts.sort(key=lambda n: int(n[len(vector_field) + 1 :]))
    if vector_field in names:
        vec_cols = [vector_field]
    elif parts:
        vec_cols = parts
    else:
        raise bad_input(
            f"{path.name}: no vector column '{vector_field}' (a JSON list) or '{vector_field}_0' … "
            f"(one number per column); see --vector-field"
        )
    meta_cols = [n for n in names if n != id_field and n not in vec_cols]

    def vectors(start: int, stop: int) -> list[np.ndarray]:
        piece = table.slice(start, stop - start)
        if len(vec_cols) > 1:
            try:
                m = np.column_stack([piece.column(c).to_numpy(zero_copy_only=False) for c in vec_cols])
                return list(m.astype(np.float64))
            except (ValueError, TypeError, pa.ArrowException) as exc:
                raise bad_input(f"{path.name}: columns {vector_field}_*: not all numbers ({exc})") from None
        out = []
        for i, cell in enumerate(piece.column(vector_field).to_pylist()):
            try:
                v = json.loads(cell) if isinstance(cell, str) else cell
                arr = np.asarray(v, dtype=np.float64)
                if arr.ndim != 1 or arr.size == 0:
                    raise ValueError("not a non-empty list")
            except (ValueError, TypeError) as exc:
                raise bad_input(
                    f"line {start + i + 2} of {path.name}: column '{vector_field}': "
                    f"not a JSON list of numbers ({exc})"
                ) from None
            out.append(arr)
        return out

    def batches() -> Iterator[Batch]:
        for start, stop in _chunks(table.num_rows, batch_size):
            piece = table.slice(start, stop - start)
            ids = piece.column(id_field).to_pylist()
            meta = piece.select(meta_cols).to_pylist() if meta_cols else [{} for _ in ids]
            docs = []
            for doc_id, v, m in zip(ids, vectors(start, stop), meta, strict=True):
                docs.append(
                    {
                        "document_id": "" if doc_id is None else str(doc_id),
                        "vectors": {vector_field: _wire(v)},
                        "metadata": {k: _finite_or_none(x) for k, x in m.items()},
                    }
                )
            yield Batch(places=list(range(start + 2, stop + 2)), documents=docs)

    return Source(path, "upsert", "line", table.num_rows, batches())


def _json_native(t: pa.DataType) -> bool:
    return bool(
        pa.types.is_string(t)
        or pa.types.is_large_string(t)
        or pa.types.is_integer(t)
        or pa.types.is_floating(t)
        or pa.types.is_boolean(t)
        or pa.types.is_null(t)
    )


def _finite_or_none(x: Any) -> Any:
    return None if isinstance(x, float) and not math.isfinite(x) else x


def _wire(v: Any) -> Any:
    """Base64 float32 when the numbers are plainly finite float32 values; else as given, so the
    server's validation names the problem."""
    try:
        arr = np.asarray(v, dtype=np.float64)
    except (ValueError, TypeError):
        return v
    if arr.ndim != 1 or arr.size == 0 or not np.all(np.isfinite(arr)) or np.abs(arr).max() > _F32_MAX:
        return v.tolist() if isinstance(v, np.ndarray) else v
    return b64(arr)


def _npy_source(path: Path, vector_field: str, batch_size: int, ids_file: Path | None) -> Source:
    """An N×D array; ids from --ids (one per line) or generated doc_000001, doc_000002, …"""
    X = np.load(path, mmap_mode="r", allow_pickle=False)
    if X.ndim != 2 or X.shape[0] == 0 or X.shape[1] == 0:
        raise bad_input(f"{path.name}: expected a non-empty N×D array, got shape {X.shape}")
    if not np.issubdtype(X.dtype, np.number) or np.issubdtype(X.dtype, np.complexfloating):
        raise bad_input(f"{path.name}: expected numbers, got dtype {X.dtype}")
    n = int(X.shape[0])
    if ids_file is not None:
        ids = [ln.strip() for ln in ids_file.read_text(encoding="utf-8").splitlines() if ln.strip()]
        if len(ids) != n:
            raise bad_input(f"{ids_file.name}: {len(ids)} ids for {n} rows of {path.name}")
    else:
        width = max(6, len(str(n)))
        ids = [f"doc_{i:0{width}d}" for i in range(1, n + 1)]

    def batches() -> Iterator[Batch]:
        for start, stop in _chunks(n, batch_size):
            block = np.asarray(X[start:stop], dtype=np.float64)
            docs = [
                {"document_id": ids[start + j], "vectors": {vector_field: _wire(row)}}
                for j, row in enumerate(block)
            ]
            yield Batch(places=list(range(start + 1, stop + 1)), documents=docs)

    return Source(path, "upsert", "row", n, batches())


def _jsonl_source(path: Path, vector_field: str, id_field: str, batch_size: int) -> Source:
    """One document per line in the upsert shape ({document_id, vectors, metadata, …}), or flat:
    `id_field`, `vector_field` (a list) and other keys as metadata. Blank lines are skipped."""
    with path.open("rb") as f:
        total = sum(1 for line in f if line.strip())

    def document(line_no: int, text: bytes) -> dict[str, Any]:
        try:
            doc = json.loads(text)
        except ValueError as exc:
            raise bad_input(f"line {line_no} of {path.name}: not JSON ({exc})") from None
        if not isinstance(doc, dict):
            raise bad_input(f"line {line_no} of {path.name}: expected a JSON object")
        if "document_id" not in doc and id_field in doc:
            doc["document_id"] = doc.pop(id_field)
        if "vectors" not in doc and vector_field in doc:
            doc["vectors"] = {vector_field: doc.pop(vector_field)}
            extra = {k: doc.pop(k) for k in list(doc) if k not in UPSERT_KEYS}
            if extra:
                doc["metadata"] = {**(doc.get("metadata") or {}), **extra}
        if isinstance(doc.get("vectors"), dict):
            doc["vectors"] = {k: _wire(v) if isinstance(v, list) else v for k, v in doc["vectors"].items()}
        return doc

    def batches() -> Iterator[Batch]:
        places: list[int] = []
        docs: list[dict[str, Any]] = []
        with path.open("rb") as f:
            for line_no, text in enumerate(f, start=1):
                if not text.strip():
                    continue
                places.append(line_no)
                docs.append(document(line_no, text))
                if len(docs) == batch_size:
                    yield Batch(places=places, documents=docs)
                    places, docs = [], []
        if docs:
            yield Batch(places=places, documents=docs)

    return Source(path, "upsert", "line", total, batches())
