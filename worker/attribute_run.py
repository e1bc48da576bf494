"""An attribute run's stages: pull document fields -> group by attribute values -> records, artifacts."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import numpy as np

from core import artifacts
from core.attributes import AttributeGrouping, group, parse_attribute_config, value_of
from core.errors import RunDataError
from core.store import documents
from worker.runtime import Runtime
from worker.stages import Progress, document_filter, sample_indices

MAX_POINTS = 1_000_000  # grouping is linear; the cap only bounds memory
REPRESENTATIVES = 5


async def run_attribute(
    rt: Runtime, run: dict[str, Any], progress: Progress, started: float
) -> dict[str, Any]:
    cfg = run["config"]
    ac = parse_attribute_config(cfg["attribute_config"])
    await progress.checkpoint("pulling", 0.02)
    ids, cols, values = [], [], []
    match = document_filter(cfg)
    total = await documents.count_matching(
        rt.db, ns=run["namespace_id"], collection_ids=cfg["collection_ids"], match=match
    )
    async for doc in documents.iter_fields(
        rt.db,
        ns=run["namespace_id"],
        collection_ids=cfg["collection_ids"],
        batch_size=rt.settings.pull_batch_size,
        match=match,
    ):
        ids.append(doc["document_id"])
        cols.append(doc["collection_id"])
        values.append(tuple(value_of(doc, path, ac.aggregation_method) for path in ac.attributes))
        if len(ids) % rt.settings.pull_batch_size == 0:
            await progress.checkpoint("pulling", 0.02 + 0.5 * len(ids) / max(1, total))
    if not ids:
        scope = "no document matches the filters" if cfg.get("filters") else "the collections are empty"
        raise RunDataError(f"no documents to group: {scope}")
    doc_ids, col_ids = np.asarray(ids, dtype=object), np.asarray(cols, dtype=object)
    keep, sampling = sample_indices(len(ids), cfg.get("sample_size"), MAX_POINTS, int(cfg["seed"]))
    if keep is not None:
        doc_ids, col_ids = doc_ids[keep], col_ids[keep]
        values = [values[i] for i in keep]
    await progress.checkpoint("grouping", 0.6)
    grouping: AttributeGrouping = await asyncio.to_thread(group, values, ac)
    await progress.checkpoint("artifacts", 0.9)
    await progress.finalize()
    n = len(values)
    fields: dict[str, Any] = {
        "num_clusters": len(grouping.clusters),
        "num_points": n,
        "metrics": grouping.metrics if cfg.get("compute_metrics", True) else {},
        "centroids": _records(grouping, doc_ids, col_ids),
        "source_documents": int(total),
        "vectors_retrieved": len(ids),
        "vectors_clustered": n,
        "index_gap": int(total - len(ids)),
        "pipeline_drop": 0,
        "noise_points": 0,
        "sampling": sampling,
        "hierarchy_relationships": grouping.relationships,
        "dimensions": 0,
    }
    if cfg.get("save_artifacts", True):
        fields.update(await asyncio.to_thread(_write, rt, run, grouping, doc_ids, col_ids))
    fields["execution_time_ms"] = int((time.perf_counter() - started) * 1000)
    return fields


def _records(g: AttributeGrouping, doc_ids: np.ndarray, col_ids: np.ndarray) -> list[dict[str, Any]]:
    members: dict[str, list[int]] = {}
    parents = {c.cluster_id: c.parent_id for c in g.clusters}
    for i, leaf in enumerate(g.assignments):
        members.setdefault(str(leaf), []).append(i)
        parent = parents.get(str(leaf))
        if parent:
            members.setdefault(parent, []).append(i)
    return [
        {
            "cluster_id": c.cluster_id,
            "num_members": int(c.num_members),
            "label": c.label,
            "parent_cluster_id": c.parent_id,
            "representative_ids": [
                {"document_id": str(doc_ids[i]), "collection_id": str(col_ids[i])}
                for i in members.get(c.cluster_id, [])[:REPRESENTATIVES]
            ],
        }
        for c in g.clusters
    ]


def _write(
    rt: Runtime, run: dict[str, Any], g: AttributeGrouping, doc_ids: np.ndarray, col_ids: np.ndarray
) -> dict[str, Any]:
    prefix = artifacts.attempt_prefix(run["namespace_id"], run["cluster_id"], run["run_id"], run["attempts"])
    ctable = artifacts.clusters_table(
        [c.cluster_id for c in g.clusters],
        [c.label for c in g.clusters],
        [int(c.num_members) for c in g.clusters],
        np.zeros((len(g.clusters), 0), dtype=np.float32),
    )
    mtable = artifacts.members_table(
        [str(d) for d in doc_ids],
        [str(c) for c in col_ids],
        [str(a) for a in g.assignments],
        np.full(len(doc_ids), np.nan, dtype=np.float32),
    )
    keys = {"parquet_path": prefix + "clusters.parquet", "members_key": prefix + "members.parquet"}
    artifacts.write_table(rt.artifacts, keys["parquet_path"], ctable)
    artifacts.write_table(rt.artifacts, keys["members_key"], mtable)
    return keys
