"""Cascading deletes (cluster -> runs -> artifacts; collection -> documents; namespace -> all)."""

from __future__ import annotations

import asyncio
from typing import Any

from core import artifacts
from core.store import api_keys, clusters, collections, documents, executions, idempotency, namespaces
from core.store import labeling as label_store


async def purge_cluster(svc: Any, ns: str, cluster_id: str) -> int:
    """Cancel in-flight runs (the worker's fence then drops their writes), remove runs, artifacts
    and idempotency keys. A run already saving (`finalizing`) is canceled too: its uploads may
    land after the prefix is removed here, and the worker deletes them when its completion fence
    fails (worker.execution._discard_artifacts)."""
    await executions.cancel_active(svc.db, ns=ns, cluster_id=cluster_id)
    deleted = await executions.delete_for_cluster(svc.db, ns=ns, cluster_id=cluster_id)
    await asyncio.to_thread(svc.artifacts.delete_prefix, artifacts.cluster_prefix(ns, cluster_id))
    await idempotency.delete_for_cluster(svc.db, ns=ns, cluster_id=cluster_id)
    await clusters.delete(svc.db, ns=ns, cluster_id=cluster_id)
    return deleted


async def purge_collection(svc: Any, ns: str, collection_id: str) -> int:
    deleted = await documents.delete_collection(svc.db, ns=ns, collection_id=collection_id)
    await collections.delete(svc.db, ns=ns, collection_id=collection_id)
    return deleted


async def purge_namespace(svc: Any, ns: str) -> dict[str, int]:
    cluster_ids = await clusters.ids_in_namespace(svc.db, ns=ns)
    runs = 0
    for cid in cluster_ids:
        runs += await purge_cluster(svc, ns, cid)
    docs = 0
    cols = [c async for c in svc.db.collections.find({"namespace_id": ns}, {"_id": 0, "collection_id": 1})]
    for col in cols:
        docs += await purge_collection(svc, ns, col["collection_id"])
    await asyncio.to_thread(svc.artifacts.delete_prefix, artifacts.namespace_prefix(ns))
    await idempotency.delete_for_namespace(svc.db, ns=ns)
    await label_store.delete_for_namespace(svc.db, ns=ns)
    await api_keys.drop_namespace(svc.db, namespace_id=ns)
    await namespaces.delete(svc.db, namespace_id=ns)
    return {"deleted_clusters": len(cluster_ids), "deleted_executions": runs, "deleted_documents": docs}
