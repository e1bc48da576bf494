"""The vector pull (issue 6): decoding stored vectors, and the whole pull from the embedded store.

Data: 100,000 vectors x 768 float32 (`--quick`: 10,000), stored as clusterd stores them
(`core.vectors.encode`: little-endian float32 bytes under `vectors.emb`).

- pull/decode, on the same list of blobs: numpy's per-row `frombuffer` + `stack` (the reference),
  `b"".join` + one `frombuffer` (what `decode_many` did before), and clusterd's `decode_many`
  (each blob copied once into its row of a preallocated matrix, `core.vectors.VectorRows`).
- pull/store: an embedded store built as the app builds it (`core.store.db.connect` with no
  MongoDB URL, `ensure_indexes(embedded=True)`), one collection filled untimed; then clusterd's pull
  — the worker's own `_pull` (count, collection lookup, `iter_vector_batches` into `VectorRows`)
  and `Pulled.arrange` (run order, no sample), progress writes stubbed out — next to a bare
  mongomock `find(...).sort("document_id")` over the same collection drained and decoded with
  frombuffer + stack: what the pull did before. mongomock's cursor slices its whole result list
  for every document it returns, so that reference is quadratic (minutes at full size).

Targets: decode >= 500k vectors/s and pull >= 100k vectors/s at full size (`--quick` reports the
rates only); the pull's peak added memory <= 2x the matrix (the store's own copy of the blobs is
there before and not counted).

    python scripts/bench.py --only pull [--quick] [--repeats 3]
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench_harness import CaseResult, Options, Stats, Target, peak_rss_delta_mb, round_robin, timed  # noqa: E402

from core.artifacts import make_artifact_store  # noqa: E402
from core.settings import Settings  # noqa: E402
from core.store import collections, documents  # noqa: E402
from core.store.db import connect, ensure_indexes  # noqa: E402
from core.vectors import DTYPE, decode_many, encode  # noqa: E402
from worker.runtime import Runtime  # noqa: E402
from worker.stages import Progress  # noqa: E402
from worker.vector_run import _pull  # noqa: E402

FULL, QUICK = 100_000, 10_000
REFERENCE_ROWS = 20_000  # the bare mongomock reference reads this many (its cursor is quadratic)
D = 768
DECODE_TARGET = 500_000  # vectors/s
PULL_TARGET = 100_000  # vectors/s
PULL_MEMORY_TARGET = 2.0  # x the matrix


def data(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, D), dtype=np.float32)


def rate(stats: Stats, n: int) -> float:
    return n / stats.median


def rate_target(res: CaseResult, opts: Options, target: Target) -> None:
    """Throughput targets hold at full size; `--quick` (10k rows, where fixed costs and the other
    tenants weigh more) reports the figure only, as a note."""
    if opts.quick:
        res.notes.append(f"{target.name} (full size only; quick: {target.detail})")
    else:
        res.targets.append(target)


def table(rows: list[Stats], n: int) -> list[dict[str, Any]]:
    """Vectors per wall second, and per second of this process's CPU: on a shared machine the
    second says what the code costs when other tenants take the cores (`other load`)."""
    return [
        {
            "candidate": r.name,
            "vectors/s": round(rate(r, n)),
            "vectors/CPU-s": round(n / r.cpu_seconds),
            "other load": round(r.foreign, 2),
        }
        for r in rows
    ]


# ---- pull/decode ---------------------------------------------------------------------------------


def numpy_stack(blobs: list[bytes]) -> np.ndarray:
    return np.stack([np.frombuffer(b, dtype=DTYPE) for b in blobs])


def numpy_join(blobs: list[bytes]) -> np.ndarray:
    return np.frombuffer(b"".join(blobs), dtype=DTYPE).reshape(len(blobs), D)


def decode_case(opts: Options) -> CaseResult:
    n = QUICK if opts.quick else FULL
    X = data(n, opts.seed)
    blobs = [encode(x) for x in X]
    for fn in (numpy_stack, numpy_join):
        assert np.array_equal(fn(blobs), X)
    assert np.array_equal(decode_many(blobs, D), X)
    rows = round_robin(
        {
            "numpy frombuffer+stack": lambda: {"rows": len(numpy_stack(blobs))},
            "numpy join+frombuffer (old)": lambda: {"rows": len(numpy_join(blobs))},
            "clusterd decode_many": lambda: {"rows": len(decode_many(blobs, D))},
        },
        opts.repeats,
    )
    res = CaseResult(
        "pull/decode",
        f"{n:,} stored vectors x {D} -> float32 matrix",
        rows=rows,
        baseline=rows[0].name,
    )
    res.table = table(rows, n)
    ours = rows[-1]
    rate_target(
        res,
        opts,
        Target(
            f"decode >= {DECODE_TARGET // 1000}k vectors/s (D={D})",
            rate(ours, n) >= DECODE_TARGET,
            f"{rate(ours, n):,.0f}/s, {res.ratio(ours.name):.2f}x numpy's stack, "
            f"other load {ours.foreign:.2f} cores",
        ),
    )
    return res


# ---- pull/store ----------------------------------------------------------------------------------


class _QuietProgress(Progress):
    """`_pull` reports its fraction each batch; here nothing records it."""

    def __init__(self) -> None:
        self.lost = False

    async def checkpoint(self, stage: str, fraction: float) -> None:
        return None


async def _fill(db: Any, X: np.ndarray) -> str:
    await ensure_indexes(db, embedded=True)
    col = await collections.create(
        db, ns="bench", name="pull", description=None, source={}, metadata={}, enabled=True,
        vector_indexes=[{"name": "emb", "dimensions": D, "feature_uri": "mixpeek://direct@v1/emb"}],
    )  # fmt: skip
    cid = str(col["collection_id"])
    for start in range(0, len(X), 1000):
        records = [
            documents.to_record(
                ns="bench",
                collection_id=cid,
                document_id=f"doc-{i:07d}",
                fields={"metadata": {"i": i}},
                vectors={"emb": X[i]},
            )  # fmt: skip
            for i in range(start, min(len(X), start + 1000))
        ]
        await db.documents.insert_many(records)
    return cid


def store_case(opts: Options) -> CaseResult:
    import mongomock

    n = QUICK if opts.quick else FULL
    X = data(n, opts.seed)
    matrix_mb = X.nbytes / 2**20
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp))
        loop = asyncio.new_event_loop()
        shared: Any = mongomock.MongoClient()  # the app's embedded store, reachable bare for the reference
        client, db = connect(settings, shared_mock=shared)
        cid = loop.run_until_complete(_fill(db, X))
        rt = Runtime(settings, db, make_artifact_store(settings), loop, client)
        run = {"namespace_id": "bench", "config": {"collection_ids": [cid], "feature_name": "emb"}}
        bare = shared[settings.mongodb_database]["documents"]
        query = {"namespace_id": "bench", "collection_id": cid}
        projection = {"_id": 0, "document_id": 1, "vectors.emb": 1}

        def clusterd() -> dict[str, Any]:
            pulled = loop.run_until_complete(_pull(rt, run, _QuietProgress()))
            M, ids, _, _ = pulled.arrange(sample_size=None, cap=n, seed=0)
            return {"rows": len(M), "first": str(ids[0]), "skipped": pulled.skipped}

        ref_n = min(n, REFERENCE_ROWS)
        ref_query = {**query, "document_id": {"$lt": f"doc-{ref_n:07d}"}}

        def reference() -> dict[str, Any]:
            docs = list(bare.find(ref_query, projection).sort("document_id", 1))
            M = np.stack([np.frombuffer(d["vectors"]["emb"], dtype=DTYPE) for d in docs])
            return {"rows": len(M), "first": docs[0]["document_id"]}

        pulled = loop.run_until_complete(_pull(rt, run, _QuietProgress()))
        M, _, _, _ = pulled.arrange(sample_size=None, cap=n, seed=0)
        assert np.array_equal(M, X), "the pull must return the stored matrix in document_id order"
        del M, pulled
        peak_mb, _ = peak_rss_delta_mb(clusterd)
        rows = round_robin({"clusterd _pull": clusterd}, opts.repeats)
        # mongomock's cursor is O(n²) (~150 s per 100k): the reference reads a prefix, once
        ref_wall, ref_foreign, _, ref_info = timed(reference)
        loop.close()
    res = CaseResult(
        "pull/store",
        f"{n:,} documents x {D} from the embedded store -> float32 matrix",
        rows=rows,
    )
    ours = rows[-1]
    ref_rate = ref_info["rows"] / ref_wall
    res.notes.append(
        f"bare mongomock find+sort over the first {ref_info['rows']:,} documents (once; its cursor is "
        f"quadratic, ~150 s per 100k): {ref_rate:,.0f} vectors/s, other load {ref_foreign:.2f} — "
        f"clusterd's pull is {rate(ours, n) / ref_rate:,.0f}x that rate"
    )
    ratio = peak_mb / matrix_mb
    res.table = table(rows, n)
    res.notes.append(
        f"clusterd's pull adds {peak_mb:.0f} MB at its peak for a {matrix_mb:.0f} MB matrix ({ratio:.2f}x)"
    )
    rate_target(
        res,
        opts,
        Target(
            f"pull >= {PULL_TARGET // 1000}k vectors/s ({n:,} x {D})",
            rate(ours, n) >= PULL_TARGET,
            f"{rate(ours, n):,.0f}/s, other load {ours.foreign:.2f} cores",
        ),
    )
    res.targets += [
        Target(
            f"pull peak memory <= {PULL_MEMORY_TARGET:g}x the matrix",
            ratio <= PULL_MEMORY_TARGET,
            f"{peak_mb:.0f} MB added for {matrix_mb:.0f} MB ({ratio:.2f}x)",
        ),
    ]
    return res


CASES = {"pull/decode": decode_case, "pull/store": store_case}
