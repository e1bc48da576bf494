"""A vector run's stages: pull vectors -> pipeline -> centroid records and parquet artifacts."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from core import artifacts
from core.algorithms import validate_params
from core.centroids import positions_in
from core.errors import RunDataError
from core.layout import Layout
from core.pipeline import PipelineResult, run_pipeline
from core.store import documents, embedded, pull_cache, pull_refresh
from core.vectors import VectorRows, encode, resolve_vector_name
from worker import layout_stage
from worker.labeling import label_clusters
from worker.runtime import Runtime
from worker.stages import (
    Progress,
    Scope,
    collection_scope,
    document_filter,
    initial_rows,
    pipeline_config,
    pull_scope,
    sample_cap,
    sample_indices,
)


@dataclass
class Pulled:
    """What `_pull` read: the rows in one preallocated buffer, their ids, and the counts."""

    document_ids: list[str] = field(default_factory=list)
    collection_ids: list[str] = field(default_factory=list)
    rows: VectorRows | None = None
    source_documents: int = 0
    skipped: int = 0
    dimensions: int | None = None
    keys: list[Any] | None = None  # each row's stored _id (embedded store, kept matrix on)
    gap: list[Any] | None = None  # the _ids of the documents counted without a row
    row_keys: np.ndarray | None = None  # `keys` in run order, set by `arrange`

    def arrange(
        self, *, sample_size: int | None, cap: int, seed: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any] | None]:
        """(X, document ids, collection ids, sampling report) in run order: ascending document_id,
        then collection id, then the seeded sample (`sample_indices`). Each collection arrives
        sorted, so a one-collection run is in order already; rows of several are interleaved and
        sampled in place in the one buffer, never through a second matrix. Pulled lets go of all."""
        doc_ids = np.asarray(self.document_ids, dtype=object)
        col_ids = np.asarray(self.collection_ids, dtype=object)
        keys = np.asarray(self.keys, dtype=object) if self.keys is not None else None
        rows, self.rows, self.document_ids, self.collection_ids = self.rows, None, [], []
        if rows is None:
            rows = VectorRows(self.dimensions or 0)
        if len(set(col_ids.tolist())) > 1:  # one collection's rows are in order already
            order = np.lexsort((col_ids.astype(str), doc_ids.astype(str)))
            if not np.array_equal(order, np.arange(order.size)):
                rows.reorder(order)
                doc_ids, col_ids = doc_ids[order], col_ids[order]
                keys = keys[order] if keys is not None else None
        keep, sampling = sample_indices(len(rows), sample_size, cap, seed)
        if keep is not None:
            rows.keep(keep)
            doc_ids, col_ids, keys = doc_ids[keep], col_ids[keep], None
        self.row_keys = keys
        return rows.take(), doc_ids, col_ids, sampling


async def run_vector(rt: Runtime, run: dict[str, Any], progress: Progress, started: float) -> dict[str, Any]:
    await progress.checkpoint("pulling", 0.02)
    reuse = await _Reuse.find(rt, run)
    try:
        return await _run_vector(rt, run, progress, started, reuse)
    finally:
        if reuse is not None:
            reuse.release()


async def _run_vector(
    rt: Runtime, run: dict[str, Any], progress: Progress, started: float, reuse: _Reuse | None
) -> dict[str, Any]:
    cfg = run["config"]
    params = validate_params(cfg["algorithm"], cfg.get("algorithm_params"))
    seed = int(cfg["seed"])
    if reuse is not None and reuse.entry is not None:  # the same scope, as of now (refreshed if written)
        entry = reuse.entry
        source_documents, retrieved = entry.source_documents, len(entry.document_ids)
        cap = sample_cap(rt, cfg, params, int(entry.matrix.shape[1]), retrieved)
        keep, sampling = sample_indices(retrieved, cfg.get("sample_size"), cap, seed)
        X, doc_ids, col_ids = entry.matrix, entry.document_ids, entry.collection_ids
        if keep is not None:
            X, doc_ids, col_ids = X[keep], doc_ids[keep], col_ids[keep]
    else:
        pulled = await _pull(rt, run, progress, reuse)
        source_documents, retrieved = pulled.source_documents, len(pulled.document_ids)
        if retrieved == 0:
            scope = "matching the filters " if cfg.get("filters") else ""
            raise RunDataError(
                f"no usable vectors: none of the {pulled.source_documents} documents {scope}has vector "
                f"'{cfg['feature_name']}'"
            )
        cap = sample_cap(rt, cfg, params, int(pulled.dimensions or 0), retrieved)
        X, doc_ids, col_ids, sampling = pulled.arrange(sample_size=cfg.get("sample_size"), cap=cap, seed=seed)
    pconf = pipeline_config(rt, cfg, params)
    pconf.prepared = reuse is not None and reuse.entry is not None
    fitted: list[np.ndarray] = []  # the matrix the algorithm saw, kept for the next run

    def scaled(stage: str, fraction: float) -> None:  # pipeline owns 30%..90% of the bar
        progress.from_thread(stage, 0.3 + 0.6 * fraction)

    # the layout needs no labels: it is computed beside the fit (worker.layout_stage.Overlapped)
    overlapped = layout_stage.Overlapped(await layout_stage.prepare(rt, run), doc_ids)

    def normalized(Xn: np.ndarray) -> None:
        fitted.append(Xn)
        overlapped.start(Xn)

    result: PipelineResult = await asyncio.to_thread(
        run_pipeline, X, pconf, scaled, progress.stopped, normalized
    )
    if reuse is not None and reuse.entry is None and sampling is None and fitted:
        reuse.keep(source_documents, doc_ids, col_ids, fitted[0], pulled.row_keys, pulled.gap)
    layout = await overlapped.result(progress)
    save = bool(cfg.get("save_artifacts", True))
    # the centroid records and members.parquet's bytes need no labels: made in a thread while the
    # labels are; nothing is stored before the commit point (progress.finalize)
    prepared = asyncio.get_running_loop().run_in_executor(  # submitted now, not at the next yield
        None, _prepare_outputs, result, doc_ids, col_ids, layout if save else None, save
    )
    try:
        labels = await label_clusters(rt, run, result, doc_ids, col_ids, progress)  # worker.labeling
    finally:
        centroids, members_bytes = await prepared
    await progress.checkpoint("artifacts", 0.92)
    await progress.finalize()
    labels.apply(centroids)
    fields: dict[str, Any] = {
        "num_clusters": int(result.num_clusters),
        "num_points": int(result.num_points),
        "metrics": result.metrics,
        "centroids": centroids,
        "source_documents": source_documents,
        "vectors_retrieved": int(retrieved),
        "vectors_clustered": int((result.labels >= 0).sum()),
        "index_gap": int(source_documents - retrieved),
        "pipeline_drop": int(result.num_points - (result.labels >= 0).sum()),
        "dimensions": int(X.shape[1]),
        "noise_points": int((result.labels < 0).sum()),
        "params_used": {**params.model_dump(mode="json"), **result.params_used},
        "sampling": sampling,
        "reduction": result.reduction,
        **layout_stage.run_fields(cfg, layout, result),
    }
    if labels.errors:
        fields["llm_labeling_errors"] = labels.errors
    if result.hierarchy is not None:  # the attribute hierarchies' shape (contract §1.9)
        fields["hierarchy_relationships"] = result.hierarchy.relationships
        fields["hierarchy"] = result.hierarchy.report
    if save:
        assert members_bytes is not None
        fields.update(
            await asyncio.to_thread(_write_artifacts, rt, run, result, members_bytes, layout, labels.labels)
        )
        if result.preprocessor is not None:
            from worker.multi_run import save_preprocessor

            fields.update(await asyncio.to_thread(save_preprocessor, rt, run, result.preprocessor))
    fields["execution_time_ms"] = int((time.perf_counter() - started) * 1000)
    return fields


@dataclass
class _Reuse:
    """A run's place in core.store.pull_cache (embedded store only): its key, the store's write
    count read before anything of the run's documents, and the entry found for them, if any
    (brought up to date with the documents written since: core.store.pull_refresh). The entry
    the run clusters is lent to it until `release`."""

    rt: Runtime
    cache: pull_cache.PullCache
    scope: Scope  # worker.stages.collection_scope, read for the key (a miss's pull reuses it)
    match: dict[str, Any]  # worker.stages.document_filter, likewise
    key: tuple[Any, ...]
    version: int
    entry: pull_cache.Prepared | None
    lent: pull_cache.Prepared | None = None

    @classmethod
    async def find(cls, rt: Runtime, run: dict[str, Any]) -> _Reuse | None:
        version = embedded.version(rt.db.documents)  # first: a write after it makes a miss
        cache = pull_cache.of(rt.db.documents) if rt.settings.pull_cache_mb else None
        if cache is None or version is None:
            return None
        cfg = run["config"]
        scope = await collection_scope(rt, run)
        match = document_filter(cfg)
        normalize = bool(cfg.get("normalize_features", True))
        key = (
            run["namespace_id"],
            cfg["feature_name"],
            tuple((cid, tuple(sorted(dims.items()))) for cid, dims in scope),
            repr(match),
            normalize,
        )
        parts = []
        for cid, dims in scope:
            name = resolve_vector_name(cfg["feature_name"], set(dims))
            parts.append(pull_refresh.Part(cid, name, int(dims[name]) if name is not None else 0))
        collection = rt.db.documents

        def refresh(entry: pull_cache.Prepared, in_place: bool) -> pull_cache.Prepared | None:
            return pull_refresh.refresh(
                collection,
                entry,
                ns=run["namespace_id"],
                parts=parts,
                match=match,
                normalize=normalize,
                version=version,
                in_place=in_place,
            )

        entry = cache.get(key, version, refresh, lend=True)
        return cls(rt, cache, scope, match, key, version, entry, lent=entry)

    def keep(
        self,
        source_documents: int,
        doc_ids: np.ndarray,
        col_ids: np.ndarray,
        X: np.ndarray,
        keys: np.ndarray | None,
        gap: list[Any] | None,
    ) -> None:
        """Offer a run's whole (unsampled) fitted matrix to the cache; refused if the store was
        written since `version` was read. It stays lent to this run."""
        entry = pull_cache.Prepared(
            self.version, source_documents, doc_ids, col_ids, X, keys, tuple(gap) if gap is not None else None
        )
        budget = self.rt.settings.pull_cache_mb << 20
        if self.cache.put(self.key, entry, budget, embedded.version(self.rt.db.documents), lend=True):
            self.lent = entry

    def release(self) -> None:
        if self.lent is not None:
            self.cache.release(self.lent)
            self.lent = None


async def _pull(rt: Runtime, run: dict[str, Any], progress: Progress, reuse: _Reuse | None = None) -> Pulled:
    """The run's vectors; with `reuse` (a kept-matrix miss) from the scope and filter it read, and
    also each row's stored `_id` and the gap's, for the matrix it will keep."""
    cfg = run["config"]
    ns = run["namespace_id"]
    out = Pulled()
    known_scope, known_match = (reuse.scope, reuse.match) if reuse is not None else (None, None)
    match, out.source_documents, scope, prefetched = await pull_scope(rt, run, known_scope, known_match)
    if reuse is not None and prefetched is not None:
        out.keys, out.gap = [], []
    seen = 0
    for cid, dims_by_name in scope:
        name = resolve_vector_name(cfg["feature_name"], set(dims_by_name))
        if name is None:
            out.gap = None  # which documents those are is not read
            continue  # nothing in this collection has that vector: all of it is index gap
        dims = dims_by_name[name]
        if out.dimensions is not None and dims != out.dimensions:
            raise RunDataError(
                f"mixed dimensions: vector '{name}' has {dims} dimensions in collection '{cid}' "
                f"but {out.dimensions} elsewhere"
            )
        out.dimensions = dims
        if out.rows is None:  # sized by the count
            out.rows = VectorRows(dims, initial_rows(out.source_documents, seen, rt.settings.pull_batch_size))
        async for ids, blobs, skipped in documents.iter_vector_batches(
            rt.db,
            ns=ns,
            collection_id=cid,
            vector_name=name,
            dimensions=dims,
            batch_size=rt.settings.pull_batch_size,
            match=match,
            documents=prefetched[cid] if prefetched is not None else None,
            keys=out.keys,
            gap=out.gap,
        ):
            out.rows.extend(blobs)  # grows if documents arrived since the count
            out.document_ids.extend(ids)
            out.collection_ids.extend([cid] * len(ids))
            out.skipped += skipped
            seen += len(ids) + skipped
            await progress.checkpoint("pulling", 0.02 + 0.28 * min(1.0, seen / max(1, out.source_documents)))
    return out


def _centroid_records(result: PipelineResult) -> list[dict[str, Any]]:
    """One record per cluster, in pipeline order. `label` is the default and `representative_ids`
    empty: worker.labeling's RunLabels.apply writes both (its representatives are the members
    nearest the centroid, ties by position, as the API promises), so they are not ranked twice."""
    return [
        {
            "cluster_id": c.cluster_id,
            "num_members": int(c.num_members),
            "label": c.default_label,
            "mean_cosine_similarity": c.mean_cosine_similarity,
            "min_cosine_similarity": c.min_cosine_similarity,
            "centroid_vector": encode(c.centroid),
            "representative_ids": [],
            **({"parent_cluster_id": c.parent_cluster_id} if c.parent_cluster_id else {}),
        }
        for c in result.clusters
    ]


def _prepare_outputs(
    result: PipelineResult, doc_ids: np.ndarray, col_ids: np.ndarray, layout: Layout | None, save: bool
) -> tuple[list[dict[str, Any]], bytes | None]:
    """(The centroid records, members.parquet's bytes when artifacts are saved): pure CPU."""
    records = _centroid_records(result)
    if not save:
        return records, None
    return records, artifacts.table_to_parquet_bytes(_members(result, doc_ids, col_ids, layout))


def _members(result: PipelineResult, doc_ids: np.ndarray, col_ids: np.ndarray, layout: Layout | None) -> Any:
    # each member's cluster id as a dictionary over the clusters' ids (null for noise), cast to
    # strings by members_table: no Python string per row (hierarchical nodes need not be in label
    # order)
    values = np.array([c.label_value for c in result.clusters], dtype=np.int64)
    pos = positions_in(result.labels, values)
    names = pa.array([c.cluster_id for c in result.clusters], type=pa.string())
    cluster_ids = pa.DictionaryArray.from_arrays(pa.array(pos.astype(np.int32), mask=pos < 0), names)
    return artifacts.members_table(
        doc_ids, col_ids, cluster_ids, result.distances, coordinates=layout_stage.coordinates(layout)
    )


def _write_artifacts(
    rt: Runtime,
    run: dict[str, Any],
    result: PipelineResult,
    members_bytes: bytes,  # _prepare_outputs
    layout: Layout | None = None,
    labels: list[str] | None = None,  # worker.labeling; None: `Cluster <k>`
) -> dict[str, Any]:
    prefix = artifacts.attempt_prefix(run["namespace_id"], run["cluster_id"], run["run_id"], run["attempts"])
    centroids = (
        np.stack([c.centroid for c in result.clusters]) if result.clusters else np.empty((0, 0), np.float32)
    )
    ctable = artifacts.clusters_table(
        [c.cluster_id for c in result.clusters],
        labels if labels is not None else [c.default_label for c in result.clusters],
        [int(c.num_members) for c in result.clusters],
        centroids,
    )
    clusters_key, members_key = prefix + "clusters.parquet", prefix + "members.parquet"
    artifacts.write_table(rt.artifacts, clusters_key, ctable)
    rt.artifacts.put_bytes(members_key, members_bytes, artifacts.PARQUET_CONTENT_TYPE)
    return {
        "parquet_path": clusters_key,
        "members_key": members_key,
        **layout_stage.write_projection(rt.artifacts, prefix, layout),
    }
