"""A multi-feature vector run (vector_config.feature_uris with 2+ features; core.multifeature):
pull every feature's vectors of the documents that have all of them -> combine (concatenate /
weighted) or cluster each feature (independent) -> centroid records and artifacts.

Also the preprocessor artifact of any run with explicit preprocessing steps (`save_preprocessor`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from core import artifacts, multifeature, preprocess
from core.algorithms import get_algorithm, validate_params
from core.errors import RunDataError
from core.layout import Layout
from core.pipeline import PipelineConfig, PipelineResult, reduce_for_fit, run_pipeline
from core.store.multi_vectors import iter_multi_vector_batches
from core.vectors import VectorRows, resolve_vector_name
from worker import layout_stage
from worker.labeling import label_clusters
from worker.runtime import Runtime
from worker.stages import Progress, initial_rows, pipeline_config, pull_scope, sample_cap, sample_indices
from worker.vector_run import _centroid_records

PREPROCESSOR_NAME = "preprocessor.pkl"


@dataclass
class MultiPulled:
    """Aligned rows: rows[f][r] is feature f of document r (one VectorRows per feature)."""

    names: list[str]  # the requested feature URIs
    document_ids: list[str] = field(default_factory=list)
    collection_ids: list[str] = field(default_factory=list)
    rows: list[VectorRows] | None = None
    dimensions: list[int] | None = None
    source_documents: int = 0

    def arrange(
        self, *, sample_size: int | None, cap: int, seed: int
    ) -> tuple[list[np.ndarray], np.ndarray, np.ndarray, dict[str, Any] | None]:
        """As Pulled.arrange (worker/vector_run.py), for every feature's rows alike."""
        doc_ids = np.asarray(self.document_ids, dtype=object)
        col_ids = np.asarray(self.collection_ids, dtype=object)
        rows = self.rows or [VectorRows(d) for d in self.dimensions or [0] * len(self.names)]
        self.rows, self.document_ids, self.collection_ids = None, [], []
        order = np.lexsort((col_ids.astype(str), doc_ids.astype(str)))
        if not np.array_equal(order, np.arange(order.size)):
            for r in rows:
                r.reorder(order)
            doc_ids, col_ids = doc_ids[order], col_ids[order]
        keep, sampling = sample_indices(len(doc_ids), sample_size, cap, seed)
        if keep is not None:
            for r in rows:
                r.keep(keep)
            doc_ids, col_ids = doc_ids[keep], col_ids[keep]
        return [r.take() for r in rows], doc_ids, col_ids, sampling


async def pull_multi(rt: Runtime, run: dict[str, Any], progress: Progress) -> MultiPulled:
    cfg = run["config"]
    ns = run["namespace_id"]
    out = MultiPulled(names=list(cfg["feature_names"]))
    match, out.source_documents, scope, _ = await pull_scope(rt, run)
    seen = 0
    for cid, dims_by_name in scope:
        names = [resolve_vector_name(u, set(dims_by_name)) for u in out.names]
        if any(n is None for n in names):
            continue  # a feature is missing from this whole collection: all of it is index gap
        resolved = [str(n) for n in names]
        dims = [dims_by_name[n] for n in resolved]
        if out.dimensions is not None and dims != out.dimensions:
            f = next(i for i, (a, b) in enumerate(zip(dims, out.dimensions, strict=True)) if a != b)
            raise RunDataError(
                f"mixed dimensions: vector '{resolved[f]}' has {dims[f]} dimensions in collection "
                f"'{cid}' but {out.dimensions[f]} elsewhere"
            )
        out.dimensions = dims
        if out.rows is None:
            capacity = initial_rows(out.source_documents, seen, rt.settings.pull_batch_size)
            out.rows = [VectorRows(d, capacity) for d in dims]
        async for ids, blobs, skipped in iter_multi_vector_batches(
            rt.db,
            ns=ns,
            collection_id=cid,
            vector_names=resolved,
            dimensions=dims,
            batch_size=rt.settings.pull_batch_size,
            match=match,
        ):
            for rows, feature_blobs in zip(out.rows, blobs, strict=True):
                rows.extend(feature_blobs)
            out.document_ids.extend(ids)
            out.collection_ids.extend([cid] * len(ids))
            seen += len(ids) + skipped
            await progress.checkpoint("pulling", 0.02 + 0.28 * min(1.0, seen / max(1, out.source_documents)))
    return out


async def run_multi_vector(
    rt: Runtime, run: dict[str, Any], progress: Progress, started: float
) -> dict[str, Any]:
    cfg = run["config"]
    await progress.checkpoint("pulling", 0.02)
    pulled = await pull_multi(rt, run, progress)
    retrieved = len(pulled.document_ids)
    if retrieved == 0:
        scope = "matching the filters " if cfg.get("filters") else ""
        wanted = ", ".join(f"'{n}'" for n in pulled.names)
        raise RunDataError(
            f"no usable vectors: none of the {pulled.source_documents} documents {scope}has all of "
            f"the vectors {wanted}"
        )
    params = validate_params(cfg["algorithm"], cfg.get("algorithm_params"))
    cap = sample_cap(rt, cfg, params, int(sum(pulled.dimensions or [0])), retrieved)
    seed = int(cfg["seed"])
    blocks, doc_ids, col_ids, sampling = pulled.arrange(
        sample_size=cfg.get("sample_size"), cap=cap, seed=seed
    )
    normalize = bool(cfg.get("normalize_features", True))
    # multi-feature runs stay flat: the hierarchy is built for single-feature runs only
    pconf = dataclasses.replace(pipeline_config(rt, cfg, params), hierarchical=False)
    strategy = cfg.get("multi_feature_strategy") or "concatenate"
    lost = progress.stopped

    def scaled(lo: float, hi: float) -> Any:
        return lambda stage, fraction: progress.from_thread(stage, lo + (hi - lo) * fraction)

    extra: dict[str, Any] = {
        "multi_feature_strategy": strategy,
        "feature_dimensions": {u: int(b.shape[1]) for u, b in zip(pulled.names, blocks, strict=True)},
    }
    layout: Layout | None = None
    if strategy == "independent":
        results = []
        step = 0.6 / len(blocks)
        for i, block in enumerate(blocks):
            fconf = PipelineConfig(**{**pconf.__dict__})
            bar = scaled(0.3 + i * step, 0.3 + (i + 1) * step)
            r = await asyncio.to_thread(run_pipeline, block, fconf, bar, lost)
            for c in r.clusters:
                c.cluster_id = multifeature.feature_prefix(i) + c.cluster_id
            results.append(r)
        prefixes = [multifeature.feature_prefix(i) for i in range(len(results))]
        relationships = multifeature.hierarchy([r.labels for r in results], prefixes)
        for rel in relationships:  # name the features too, not only their positions
            rel["parent_feature"] = pulled.names[rel["parent_feature_index"]]
            rel["child_feature"] = pulled.names[rel["child_feature_index"]]
        extra["hierarchy_relationships"] = relationships
        extra["per_feature"] = {
            u: {"num_clusters": int(r.num_clusters), "metrics": r.metrics, "reduction": r.reduction}
            for u, r in zip(pulled.names, results, strict=True)
        }
        primary = results[0]
    else:
        weights = list(cfg.get("feature_weights") or [1.0] * len(blocks))
        learning = cfg.get("weight_learning") if strategy == "weighted" else None
        if learning:
            await progress.checkpoint("learning_weights", 0.3)
            learned = await asyncio.to_thread(_learn, blocks, pconf, learning, normalize)
            weights = list(learned.weights)
            extra["learned_weights"] = {u: float(w) for u, w in zip(pulled.names, weights, strict=True)}
            extra["learning_quality_score"] = learned.score
            extra["weight_learning"] = {
                **learning,
                "candidates": learned.candidates,
                "sample_size_used": learned.sample_size,
            }
        used = multifeature.normalised_weights(weights)
        extra["feature_weights_used"] = {u: float(w) for u, w in zip(pulled.names, used, strict=True)}
        X = multifeature.combine(blocks, weights, normalize=normalize)
        del blocks
        pconf.normalize = False  # the blocks are normalised (and weighted) already
        # the scatter of the combined space, beside the fit (independent runs: none drawn)
        overlapped = layout_stage.Overlapped(await layout_stage.prepare(rt, run), doc_ids)
        bar = scaled(0.4 if learning else 0.3, 0.9)
        primary = await asyncio.to_thread(run_pipeline, X, pconf, bar, lost, overlapped.start)
        results = [primary]
        layout = await overlapped.result(progress)
    run_labels = [await label_clusters(rt, run, r, doc_ids, col_ids, progress) for r in results]
    await progress.checkpoint("artifacts", 0.92)
    await progress.finalize()
    centroids: list[dict[str, Any]] = []
    for i, (r, lab) in enumerate(zip(results, run_labels, strict=True)):
        records = _centroid_records(r)
        if strategy == "independent":  # the feature in the label keeps them apart across features
            lab.labels = [f"{label} ({pulled.names[i]})" for label in lab.labels]
        lab.apply(records)
        centroids.extend(records)
    labels = np.concatenate([r.labels for r in results])
    num_points = int(primary.num_points)
    clustered = int((primary.labels >= 0).sum())
    fields: dict[str, Any] = {
        "num_clusters": int(sum(r.num_clusters for r in results)),
        "num_points": num_points,
        "metrics": primary.metrics,
        "centroids": centroids,
        "source_documents": pulled.source_documents,
        "vectors_retrieved": int(retrieved),
        "vectors_clustered": clustered,
        "index_gap": int(pulled.source_documents - retrieved),
        "pipeline_drop": int(num_points - clustered),
        "dimensions": int(sum(extra["feature_dimensions"].values())),
        "noise_points": int((labels < 0).sum()),
        "params_used": {**params.model_dump(mode="json"), **primary.params_used},
        "sampling": sampling,
        "reduction": primary.reduction,
        **extra,
        **layout_stage.run_fields(cfg, layout, primary),
    }
    errors = list(dict.fromkeys(e for lab in run_labels for e in lab.errors))
    if errors:
        fields["llm_labeling_errors"] = errors
    if cfg.get("save_artifacts", True):
        names = [label for lab in run_labels for label in lab.labels]
        fields.update(
            await asyncio.to_thread(_write_artifacts, rt, run, results, doc_ids, col_ids, names, layout)
        )
        fitted = [r.preprocessor for r in results]
        if any(f is not None for f in fitted):
            keep = fitted if strategy == "independent" else fitted[0]
            fields.update(await asyncio.to_thread(save_preprocessor, rt, run, keep))
    fields["execution_time_ms"] = int((time.perf_counter() - started) * 1000)
    return fields


def _learn(
    blocks: list[np.ndarray], pconf: PipelineConfig, learning: dict[str, Any], normalize: bool
) -> multifeature.LearnedWeights:
    """Weight learning as the run clusters: the algorithm and params, with the automatic PCA for
    density algorithms; explicit preprocessing steps are not refitted per candidate (umap per
    candidate would cost minutes), so candidates are compared before those steps."""
    spec = get_algorithm(pconf.algorithm)

    def fit(X: np.ndarray) -> np.ndarray:
        Z, _ = reduce_for_fit(X, spec.reduces_high_dim, pconf)
        return spec.fit(Z, pconf.params, pconf.seed).labels

    return multifeature.learn_weights(
        blocks,
        fit,
        normalize=normalize,
        metric=learning.get("metric") or "silhouette",
        max_iterations=int(learning.get("max_iterations") or 20),
        sample_size=learning.get("sample_size"),
        seed=int(learning.get("random_state", pconf.seed)),
    )


def _write_artifacts(
    rt: Runtime,
    run: dict[str, Any],
    results: list[PipelineResult],
    doc_ids: np.ndarray,
    col_ids: np.ndarray,
    labels: list[str],
    layout: Layout | None = None,
) -> dict[str, Any]:
    """clusters.parquet (one row per cluster of every feature: centroids of each feature's own
    length) and members.parquet (one row per document, and per feature for independent runs,
    feature by feature)."""
    prefix = artifacts.attempt_prefix(run["namespace_id"], run["cluster_id"], run["run_id"], run["attempts"])
    clusters = [c for r in results for c in r.clusters]
    ctable = pa.Table.from_arrays(
        [
            pa.array([c.cluster_id for c in clusters], type=pa.string()),
            pa.array(labels, type=pa.string()),  # worker.labeling, as in the centroid records
            pa.array([int(c.num_members) for c in clusters], type=pa.int64()),
            pa.array([np.asarray(c.centroid, np.float32) for c in clusters], type=pa.list_(pa.float32())),
        ],
        schema=artifacts.CLUSTERS_SCHEMA,
    )
    member_ids: list[str | None] = []
    for r in results:
        label_to_id = {c.label_value: c.cluster_id for c in r.clusters}
        member_ids.extend(label_to_id.get(int(lab)) for lab in r.labels)
    repeat = len(results)
    mtable = artifacts.members_table(
        [str(d) for d in doc_ids] * repeat,
        [str(c) for c in col_ids] * repeat,
        member_ids,
        np.concatenate([r.distances for r in results]),
        coordinates=layout_stage.coordinates(layout),  # one row per document when there is a layout
    )
    clusters_key, members_key = prefix + "clusters.parquet", prefix + "members.parquet"
    artifacts.write_table(rt.artifacts, clusters_key, ctable)
    artifacts.write_table(rt.artifacts, members_key, mtable)
    return {
        "parquet_path": clusters_key,
        "members_key": members_key,
        **layout_stage.write_projection(rt.artifacts, prefix, layout),
    }


def save_preprocessor(rt: Runtime, run: dict[str, Any], fitted: Any) -> dict[str, Any]:
    """Store a run's fitted preprocessing steps (core.preprocess.FittedSteps; a list of them, one
    per feature, for an independent run) under the attempt's prefix; returns {preprocessor_key}."""
    if fitted is None:
        return {}
    prefix = artifacts.attempt_prefix(run["namespace_id"], run["cluster_id"], run["run_id"], run["attempts"])
    key = prefix + PREPROCESSOR_NAME
    one = isinstance(fitted, preprocess.FittedSteps)
    data = preprocess.dumps(fitted) if one else preprocess.dumps_many(fitted)
    rt.artifacts.put_bytes(key, data, "application/octet-stream")
    return {"preprocessor_key": key}

