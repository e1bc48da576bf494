"""Views of a completed run: its groups (clusters with members) and its scatter plot."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from fastapi import APIRouter, Query

from api.deps import NamespaceDep, ServicesDep
from api.schemas.errors import V1, error_responses
from core import exports, groups, scatter
from core.artifacts import COORDINATE_COLUMNS, ArtifactStore
from core.errors import NotFound
from core.store import clusters, completed_runs

router = APIRouter(responses=error_responses(*V1))

MAX_POINTS = 1_000_000
DEFAULT_POINTS = 10_000


async def _run(svc: Any, ns: str, ident: str, run_id: str | None) -> dict[str, Any]:
    cluster_id = await clusters.resolve_id(svc.db, ns=ns, ident=ident)
    if run_id:
        return await completed_runs.one(svc.db, ns=ns, cluster_id=cluster_id, run_id=run_id)
    return await completed_runs.newest(svc.db, ns=ns, cluster_id=cluster_id)


def _read_members(store: ArtifactStore, run: dict[str, Any], columns: list[str]) -> pa.Table:
    key = run.get("members_key")
    if not key:
        raise NotFound(
            f"run '{run['run_id']}' kept no artifacts (ad-hoc runs keep them only with save_artifacts=true)",
            code="no_artifacts",
        )
    try:
        data = store.get_bytes(str(key))
    except NotFound:
        raise NotFound(
            f"run '{run['run_id']}': its members artifact (members.parquet) is no longer in the "
            "artifact store"
        ) from None
    return pq.read_table(pa.BufferReader(data), columns=columns)


@router.get("/v1/clusters/{ident}/groups")
async def get_groups(
    ident: str,
    svc: ServicesDep,
    ns: NamespaceDep,
    limit: Annotated[int | None, Query(ge=1, le=1000, description="groups per page (default: all)")] = None,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    members_limit: Annotated[int, Query(ge=0, le=1000, description="member ids listed per group")] = 10,
    members_offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    run_id: str | None = None,
) -> dict[str, Any]:
    """ClusterGroupsResponse of the newest completed run (or `run_id`). Beyond the SDK model, each
    group lists `members` (`members_limit` of them from `members_offset`, nearest to the centroid
    first) and hierarchical children their `parent_cluster_id`."""
    run = await _run(svc, ns, ident, run_id)
    every = groups.group_records(run, exports.current_labels(run))
    page = every[offset : offset + limit if limit is not None else None]
    if members_limit and page and run.get("members_key"):
        table = await asyncio.to_thread(
            _read_members,
            svc.artifacts,
            run,
            ["document_id", "collection_id", "cluster_id", "distance_to_centroid"],
        )
        listed = groups.members_of(
            table, every, [g["cluster_id"] for g in page], offset=members_offset, limit=members_limit
        )
        for g in page:
            g["members"] = listed[g["cluster_id"]]
    out: dict[str, Any] = {
        "cluster_id": run["cluster_id"],
        "run_id": run["run_id"],
        "total_groups": len(every),
        "total_documents": int(run.get("num_points") or 0),
        "noise_documents": int(run.get("noise_points") or 0),
        "offset": offset,
        "limit": limit,
        "groups": page,
    }
    if run.get("member_counts_stale") is True:
        out["member_counts_stale"] = True
    return out


def _layout_or_raise(run: dict[str, Any]) -> dict[str, Any]:
    layout = run.get("layout")
    if layout and run.get("members_key"):
        return dict(layout)
    run_id, cfg = run["run_id"], run.get("config") or {}
    if cfg.get("algorithm") == "attribute_based":
        why = "it is an attribute run: attribute clusters have no vector space to lay out (see …/groups)"
    elif cfg.get("defer_visualization"):
        why = "it was executed with defer_visualization=true: execute again without it for coordinates"
    elif not run.get("members_key"):
        why = "it kept no artifacts (ad-hoc runs keep them only with save_artifacts=true)"
    elif run.get("multi_feature_strategy") == "independent":
        why = "it clustered each feature on its own (independent): there is no one space to lay out"
    else:
        why = "it was computed before layouts existed: execute the cluster again"
    raise NotFound(f"run '{run_id}' has no visualization coordinates: {why}", code="no_visualization")


def _centroids(run: dict[str, Any], layout: dict[str, Any]) -> list[dict[str, Any]]:
    labels = exports.current_labels(run)
    coords = layout.get("centroids") or {}
    out = []
    for c in run.get("centroids") or []:
        cid = str(c["cluster_id"])
        xyz = coords.get(cid)
        if xyz is None:
            continue
        item: dict[str, Any] = {"cluster_id": cid, "cluster_label": labels.get(cid) or None}
        item.update({axis: float(v) for axis, v in zip(COORDINATE_COLUMNS, xyz, strict=False)})
        item["num_members"] = int(c.get("num_members") or 0)
        out.append(item)
    return out


def _points(
    store: ArtifactStore, run: dict[str, Any], k: int, max_points: int, compact: bool
) -> tuple[Any, int, int]:
    """(points payload, points in the run, points returned)."""
    axes = list(COORDINATE_COLUMNS[:k])
    table = _read_members(store, run, ["document_id", "cluster_id", *axes])
    total = table.num_rows
    cluster_col = table.column("cluster_id")
    encoded = cluster_col.combine_chunks().dictionary_encode() if total else None
    keep = None
    if encoded is not None and total > max_points:
        codes = encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64) + 1  # 0: noise
        seed = int((run.get("config") or {}).get("seed", 42))
        keep = scatter.stratified_sample(codes, max_points, seed=seed)
    if keep is not None:
        table = table.take(pa.array(keep))
    coords = np.column_stack([table.column(a).to_numpy(zero_copy_only=False) for a in axes]) if total else (
        np.zeros((0, k), np.float32)
    )
    doc_ids, cluster_ids = table.column("document_id").to_pylist(), table.column("cluster_id").to_pylist()
    payload = scatter.points_payload(doc_ids, cluster_ids, coords, compact=compact)
    return payload, total, table.num_rows


@router.get("/v1/clusters/{ident}/visualization")
async def get_visualization(
    ident: str,
    svc: ServicesDep,
    ns: NamespaceDep,
    max_points: Annotated[int, Query(ge=1, le=MAX_POINTS, description="member points returned at most")] = (
        DEFAULT_POINTS
    ),
    centroids_only: bool = False,
    compact: bool = False,
    run_id: str | None = None,
) -> dict[str, Any]:
    """Centroids and (a cluster-stratified seeded sample of at most `max_points`) member points
    of the newest completed run, or of `run_id`, in its 2-D / 3-D layout."""
    run = await _run(svc, ns, ident, run_id)
    layout = _layout_or_raise(run)
    k = int(layout.get("n_components") or 2)
    out: dict[str, Any] = {
        "cluster_id": run["cluster_id"],
        "run_id": run["run_id"],
        "n_components": k,
        "layout_stability_applied": run.get("layout_stability_applied"),
        "centroids": _centroids(run, layout),
    }
    if centroids_only:
        out.update(points=[], total_points=int(run.get("num_points") or 0), returned_points=0, sampled=False)
        return out
    points, total, returned = await asyncio.to_thread(_points, svc.artifacts, run, k, max_points, compact)
    out.update(points=points, total_points=total, returned_points=returned, sampled=returned < total)
    return out
