"""Ingest speed (issue 6): documents per second into the embedded default over real HTTP.

    python scripts/bench.py --only ingest [--quick]

The server is `clusterd serve` as a user starts it (scripts/load_server.py: the embedded store
and worker, no CLUSTERD_* settings but an admin key and a temporary data dir) on a loopback port,
in a process of its own, so client and server work in parallel as they would on two machines;
warmed up with a few small writes into a scratch collection and left to finish its own start-up
work (as a server that has been running has); each run writes into a new collection, and a full
server (ingest/binary: after each round of the four writing paths) is replaced, untimed. Its CPU
time (from /proc) is moved from the harness's "other load" into "own cores", so "other load"
stays the machine's other tenants; "docs per CPU-second" counts client and server CPU. Payloads
are built and encoded before the clock starts and sent in 1 MiB pieces (see Client.post); a run
is the time from the first request to the last response. D = 768.

- ingest/json: batches of 1000 documents (`POST /v1/namespaces/{ns}/documents/upsert`, vectors as
  JSON numbers, as a float32-aware encoder writes them), beside the same bodies through
  `json.loads` alone — what FastAPI's body parsing cost before, before any validation or write —
  and through `orjson.loads` alone.
- ingest/binary: the same documents as parquet files (`POST /v1/collections/{c}/documents/upload`,
  a fixed-size list<float32> column, ≤ 50k rows a file), as Arrow IPC streams, as parquet with
  the vectors as float32 bytes, and as base64 float32 in the JSON batch, beside
  `pyarrow.parquet.read_table` of the parquet files alone (decoding the list column is a large
  part of what a parquet upload costs). The target is judged on the fastest upload format; the
  detail names every path's rate.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import httpx
import numpy as np
import orjson
from bench_harness import CaseResult, Options, Stats, Target, round_robin

D = 768
BATCH = 1000  # CLUSTERD_MAX_BATCH_DOCUMENTS
CHUNK = 1 << 20  # request bodies are sent in pieces of this size
FILE_ROWS = 50_000  # rows per uploaded file: ~155 MB of float32 at D=768, under CLUSTERD_MAX_UPLOAD_MB
KEY = "bench-ingest-admin-key-0123456789"
NS = "bench-ingest"
JSON_TARGET = 5_000
BINARY_TARGET = 50_000


def process_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) process `pid` has used."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Client:
    """`clusterd serve` (embedded default, scripts/load_server.py); each run writes into a new
    collection, and the server is replaced by a fresh one once it holds `restart_after` documents
    (deleting them instead would take minutes: mongomock's cursor copies the rest of its results
    on every step)."""

    def __init__(self, warmup: Callable[[Client], object] | None = None, restart_after: int = 10**6) -> None:
        self.warmup = warmup  # a few small writes into a scratch collection, as a running server has had
        self.restart_after = restart_after
        self.written = 0
        self.auth = {"Authorization": f"Bearer {KEY}"}
        self.h = {**self.auth, "X-Namespace": NS}
        self.stack = contextlib.ExitStack()
        self.http = httpx.Client(timeout=600)
        self.pid = 0
        self.collection = ""

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stack.close()
        self.http.close()

    def next_run(self) -> None:
        """Untimed, before each run: a new collection, on a fresh server when the last one is full."""
        if self.pid == 0 or self.written >= self.restart_after:
            self.fresh_server()
        else:
            self.collection = self._collection(f"ingest-{time.monotonic_ns()}")

    def fresh_server(self) -> None:
        """Untimed: stop the previous run's server, start one, warm it up, create the run's
        collection."""
        from load_server import own_server

        self.stack.close()
        url, pid = self.stack.enter_context(own_server(KEY, startup_timeout=120))
        assert pid is not None
        self.pid = pid
        self.http.close()
        self.http = httpx.Client(base_url=url, timeout=600)
        if self.warmup is not None:
            self.collection = self._collection("warm-up")
            self.warmup(self)
        self.collection = self._collection("ingest")
        self.written = 0
        self._wait_idle()

    def _wait_idle(self, timeout: float = 180.0) -> None:
        """Until the server's background start-up work (the embedded worker compiles fast-hdbscan,
        ~30 s of CPU) is over: < 5% of a core over half a second."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            before = process_cpu_s(self.pid)
            time.sleep(0.5)
            if process_cpu_s(self.pid) - before < 0.025:
                return
        raise RuntimeError(f"the server did not settle within {timeout:.0f} s")

    def _collection(self, name: str) -> str:
        body = {"collection_name": name, "vector_indexes": [{"name": "emb", "dimensions": D}]}
        r = self.http.post("/v1/collections", json=body, headers=self.h)
        r.raise_for_status()
        return str(r.json()["collection_id"])

    def timed(
        self, candidates: dict[str, Callable[[], dict[str, Any] | None]]
    ) -> tuple[dict[str, Callable[[], dict[str, Any] | None]], dict[str, list[float]]]:
        """Wrap each candidate to record the server's CPU seconds during each of its runs."""
        spent: dict[str, list[float]] = {name: [] for name in candidates}

        def wrap(name: str, fn: Callable[[], dict[str, Any] | None]) -> Callable[[], dict[str, Any] | None]:
            def run() -> dict[str, Any] | None:
                before = process_cpu_s(self.pid)
                try:
                    return fn()
                finally:
                    spent[name].append(process_cpu_s(self.pid) - before)

            return run

        return {name: wrap(name, fn) for name, fn in candidates.items()}, spent

    def post(self, path: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
        """POST `body` in 1 MiB pieces with its Content-Length: httpx sends one large `bytes`
        body in time quadratic in its size (1.5 s of client CPU for 148 MB, 55 ms in pieces)."""
        pieces = (body[i : i + CHUNK] for i in range(0, len(body), CHUNK))
        return self.http.post(path, content=pieces, headers={**headers, "Content-Length": str(len(body))})

    def upsert(self, bodies: list[Callable[[str], bytes]]) -> dict[str, Any]:
        n = 0
        for make in bodies:
            r = self.post(
                f"/v1/namespaces/{NS}/documents/upsert",
                make(str(self.collection)),
                {**self.auth, "Content-Type": "application/json"},
            )
            if r.status_code != 200:
                raise RuntimeError(f"upsert: {r.status_code} {r.text[:300]}")
            n += int(r.json()["inserted"])
        self.written += n
        return {"documents": n}

    def upload(self, files: list[bytes], content_type: str) -> dict[str, Any]:
        n = 0
        for body in files:
            r = self.post(
                f"/v1/collections/{self.collection}/documents/upload",
                body,
                {**self.h, "Content-Type": content_type},
            )
            if r.status_code != 200:
                raise RuntimeError(f"upload: {r.status_code} {r.text[:300]}")
            n += int(r.json()["inserted"])
        self.written += n
        return {"documents": n}

    def count(self) -> int:
        r = self.http.get(f"/v1/collections/{self.collection}/documents/count", headers=self.h)
        r.raise_for_status()
        return int(r.json()["count"])


def count_server_as_own(rows: list[Stats], spent: dict[str, list[float]]) -> None:
    """The server is ours: its cores move from `foreign_cores` to `cores_used`, run by run."""
    for r in rows:
        for i, (wall, cpu) in enumerate(zip(r.runs, spent[r.name], strict=True)):
            r.foreign_cores[i] = max(0.0, r.foreign_cores[i] - cpu / wall)
            r.cores_used[i] += cpu / wall
        r.info["server CPU µs/doc"] = round(
            statistics.median(spent[r.name]) / max(1, r.info.get("documents", 1)) * 1e6, 1
        )


def _vectors(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, D)).astype(np.float32)


def _ids(start: int, stop: int) -> list[str]:
    return [f"doc-{i:08d}" for i in range(start, stop)]


def _json_batches(X: np.ndarray, *, b64: bool) -> list[Callable[[str], bytes]]:
    """One body per batch of 1000, encoded now; the collection id is spliced in at send time."""
    out: list[Callable[[str], bytes]] = []
    for start in range(0, len(X), BATCH):
        stop = min(len(X), start + BATCH)
        docs = [
            {
                "document_id": doc_id,
                "vectors": {"emb": {"b64": base64.b64encode(X[i].tobytes()).decode()} if b64 else X[i]},
                "metadata": {"i": i, "group": f"g{i % 7}"},
            }
            for doc_id, i in zip(_ids(start, stop), range(start, stop), strict=True)
        ]
        encoded = orjson.dumps(
            {"collection_id": "@@COLLECTION@@", "documents": docs}, option=orjson.OPT_SERIALIZE_NUMPY
        )
        head, tail = encoded.split(b"@@COLLECTION@@")
        out.append(_Splice(head, tail))
    return out


class _Splice:
    """A body with the collection id left open until the run's collection exists."""

    def __init__(self, head: bytes, tail: bytes):
        self.head, self.tail = head, tail

    def __call__(self, collection_id: str) -> bytes:
        return self.head + collection_id.encode() + self.tail


def _tables(X: np.ndarray, vector_type: str) -> list[Any]:
    import pyarrow as pa

    tables = []
    for start in range(0, len(X), FILE_ROWS):
        part = X[start : start + FILE_ROWS]
        if vector_type == "list":
            emb = pa.FixedSizeListArray.from_arrays(pa.array(part.ravel()), D)
        else:
            emb = pa.FixedSizeBinaryArray.from_buffers(
                pa.binary(4 * D), len(part), [None, pa.py_buffer(part.tobytes())]
            )
        stop = start + len(part)
        tables.append(
            pa.table(
                {
                    "document_id": _ids(start, stop),
                    "emb": emb,
                    "i": np.arange(start, stop),
                    "group": [f"g{i % 7}" for i in range(start, stop)],
                }
            )
        )
    return tables


def _parquet(tables: list[Any]) -> list[bytes]:
    import pyarrow.parquet as pq

    out = []
    for t in tables:
        buf = io.BytesIO()
        pq.write_table(t, buf)
        out.append(buf.getvalue())
    return out


def _arrow(tables: list[Any]) -> list[bytes]:
    import pyarrow as pa
    import pyarrow.ipc as ipc

    out = []
    for t in tables:
        sink = pa.BufferOutputStream()
        with ipc.new_stream(sink, t.schema) as w:
            w.write_table(t)
        out.append(sink.getvalue().to_pybytes())
    return out


def _rate(stats: Stats, n: int) -> float:
    return n / stats.median


def _note_rates(result: CaseResult, n: int) -> None:
    """Rates per row; docs per CPU-second (this process: server and client) is what the machine's
    other tenants cannot take away, wall-clock docs/s is what a client saw."""
    result.table = [
        {
            "candidate": r.name,
            "docs/s (median run)": round(_rate(r, n)),
            "docs/s (best run)": round(n / r.min),
            "docs per CPU-second": round(n / r.cpu_seconds),
            "other load (cores)": round(r.foreign, 2),
        }
        for r in result.rows
    ]


def _checked(client: Client, n: int) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def check(info: dict[str, Any]) -> dict[str, Any]:
        if info["documents"] != n:
            raise RuntimeError(f"wrote {info['documents']} documents, expected {n}")
        return info

    return check


def ingest_json(opts: Options) -> CaseResult:
    n = 5_000 if opts.quick else 50_000
    X = _vectors(n, opts.seed)
    bodies = _json_batches(X, b64=False)
    raw = [make("col_bench000000") for make in bodies]
    result = CaseResult(
        case="ingest/json",
        title=f"JSON batch upsert, {n:,} documents × {D} floats, batches of {BATCH}, over HTTP",
        baseline="stdlib json.loads alone (what FastAPI's parsing cost)",
    )
    warm = _json_batches(_vectors(2 * BATCH, opts.seed + 1), b64=False)
    with Client(warmup=lambda c: c.upsert(warm)) as client:
        check = _checked(client, n)
        candidates: dict[str, Callable[[], dict[str, Any] | None]] = {
            "stdlib json.loads alone (what FastAPI's parsing cost)": lambda: {
                "documents": n,
                "bodies": len([json.loads(b) for b in raw]),
            },
            "orjson.loads alone": lambda: {"documents": n, "bodies": len([orjson.loads(b) for b in raw])},
            "clusterd POST …/documents/upsert": lambda: check(client.upsert(bodies)),
        }
        candidates, spent = client.timed(candidates)
        result.rows = round_robin(candidates, opts.repeats, before=client.next_run)
        stored = client.count()
    count_server_as_own(result.rows, spent)
    by = {r.name: r for r in result.rows}
    api = by["clusterd POST …/documents/upsert"]
    rate = _rate(api, n)
    for r in result.rows:
        r.info["docs/s"] = round(_rate(r, n))
    _note_rates(result, n)
    mb = sum(map(len, raw)) / 2**20
    result.notes.append(
        f"the reference rows parse the {len(raw)} bodies of {BATCH} documents ({mb:.0f} MB) and validate "
        f"or store nothing; the last run's collection held {stored:,} documents"
    )
    result.targets.append(
        Target(
            name=f"JSON batch ≥ {JSON_TARGET // 1000}k docs/s",
            met=rate >= JSON_TARGET,
            detail=f"{rate:,.0f} docs/s (median of {opts.repeats}; other load {api.foreign:.2f} cores)",
        )
    )
    return result


def ingest_binary(opts: Options) -> CaseResult:
    n = 20_000 if opts.quick else 200_000
    X = _vectors(n, opts.seed)
    lists = _tables(X, "list")
    parquet = _parquet(lists)
    arrow = _arrow(lists)
    parquet_bytes = _parquet(_tables(X, "bytes"))
    del lists
    b64 = _json_batches(X, b64=True)
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = {
        "parquet": "clusterd upload, parquet fixed_size_list<float32>",
        "arrow": "clusterd upload, Arrow IPC stream",
        "parquet-bytes": "clusterd upload, parquet float32 bytes column",
        "b64": "clusterd JSON upsert, base64 float32 vectors",
        "read": "pyarrow.parquet.read_table alone (the parquet files)",
    }
    result = CaseResult(
        case="ingest/binary",
        title=f"binary ingest, {n:,} documents × {D} float32, files of ≤ {FILE_ROWS:,} rows, over HTTP",
        baseline=rows["read"],
    )
    # pyarrow's first decode of a big parquet file in a process costs ~15 µs/row more (its memory
    # pool grows): the warm-up sends one file of the measured size, as a running server has seen
    Y = _vectors(min(n, FILE_ROWS), opts.seed + 1)
    small = Y[:5_000]
    warm_files = [
        *_parquet(_tables(Y, "list")),
        *_arrow(_tables(small, "list")),
        *_parquet(_tables(small, "bytes")),
    ]
    warm_json = _json_batches(small[:BATCH], b64=True)

    def warmup(c: Client) -> None:
        c.upload(warm_files, "application/octet-stream")
        c.upsert(warm_json)

    with Client(warmup=warmup, restart_after=4 * n) as client:  # one server per round
        check = _checked(client, n)
        candidates: dict[str, Callable[[], dict[str, Any] | None]] = {
            rows["parquet"]: lambda: check(client.upload(parquet, "application/vnd.apache.parquet")),
            rows["arrow"]: lambda: check(client.upload(arrow, "application/vnd.apache.arrow.stream")),
            rows["parquet-bytes"]: lambda: check(
                client.upload(parquet_bytes, "application/vnd.apache.parquet")
            ),
            rows["b64"]: lambda: check(client.upsert(b64)),
            rows["read"]: lambda: {
                "documents": sum(pq.read_table(pa.BufferReader(b)).num_rows for b in parquet)
            },
        }
        candidates, spent = client.timed(candidates)
        result.rows = round_robin(candidates, opts.repeats, before=client.next_run)
    count_server_as_own(result.rows, spent)
    for r in result.rows:
        r.info["docs/s"] = round(_rate(r, n))
    _note_rates(result, n)
    by = {r.name: r for r in result.rows}
    rates = {k: _rate(by[v], n) for k, v in rows.items()}
    result.notes.append(
        f"{len(parquet)} parquet file(s) of {sum(map(len, parquet)) / len(parquet) / 2**20:.0f} MB each; "
        "JSON base64 in batches of "
        f"{BATCH}"
    )
    best = max(("parquet", "arrow", "parquet-bytes"), key=lambda k: rates[k])
    result.notes.append(
        "parquet list columns cost pyarrow ~6 µs/row to decode (the reference row) and the HTTP "
        "body ~7 µs/row to receive with h11 (it copies each chunk; httptools, installed now, much "
        "less); Arrow IPC is read in place"
    )
    result.targets.append(
        Target(
            name=f"binary ≥ {BINARY_TARGET // 1000}k docs/s (fastest upload format)",
            met=rates[best] >= BINARY_TARGET,
            detail=(
                f"{rows[best]}: {rates[best]:,.0f} docs/s; parquet fixed_size_list<float32> "
                f"{rates['parquet']:,.0f}, Arrow IPC {rates['arrow']:,.0f}, parquet float32 bytes "
                f"{rates['parquet-bytes']:,.0f}, JSON base64 {rates['b64']:,.0f} "
                f"(medians of {opts.repeats}; other load {by[rows[best]].foreign:.2f} cores)"
            ),
        )
    )
    return result


CASES = {"ingest/json": ingest_json, "ingest/binary": ingest_binary}
