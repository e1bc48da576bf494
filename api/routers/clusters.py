"""Cluster definitions, execution by id, runs, and tasks."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Response

from api.deps import NamespaceDep, PrincipalDep, ServicesDep
from api.idempotency import IdempotencyKeyDep, fingerprint, launch_once
from api.launch import admit, launch_run, run_config
from api.listings import cluster_list, run_list
from api.pagination import PageDep
from api.purge import purge_cluster
from api.schemas.clusters import (
    ClusterCreate,
    ClusterPatch,
    ExecuteById,
    attribute_settings,
    check_document_filters,
    effective_params,
    normalise_llm,
    vector_settings,
)
from api.schemas.errors import V1, error_responses
from api.schemas.lists import ListBody
from api.schemas.runs import cluster_metadata, cluster_model, execution_result, task_response
from core.errors import NotFound, ValidationFailed
from core.ids import default_cluster_name, new_cluster_id
from core.models import ClusterStatus
from core.store import clusters, collections, executions, namespaces
from core.timeutil import utcnow

router = APIRouter(responses=error_responses(*V1))


async def build_cluster_doc(
    svc: Any, ns: str, body: ClusterCreate, *, hidden: bool = False
) -> dict[str, Any]:
    if body.source_cluster_ids:
        raise ValidationFailed(
            "source_cluster_ids: composite clusters are not supported yet", code="composite_not_supported"
        )
    if not body.collection_ids:
        raise ValidationFailed("collection_ids: at least one collection is required")
    ctype = body.cluster_type or (
        "attribute" if body.attribute_config and not body.vector_config else "vector"
    )
    check_document_filters(body.filters, "filters")
    if ctype == "attribute":
        if not body.attribute_config:
            raise ValidationFailed("attribute_config: required for an attribute cluster")
        kind = attribute_settings(body.attribute_config)
    else:
        if not body.vector_config:
            raise ValidationFailed("vector_config: required for a vector cluster")
        kind = vector_definition(vector_settings(body.vector_config))
    cols = await collections.resolve_many(svc.db, ns=ns, idents=body.collection_ids, field="collection_ids")
    now = utcnow()
    return {
        "cluster_id": new_cluster_id(),
        "namespace_id": ns,
        "cluster_name": body.cluster_name or default_cluster_name(),
        "description": body.description,
        "status": ClusterStatus.PENDING.value,
        "input_collections": [c["collection_id"] for c in cols],
        "filters": body.filters or {},
        "metadata": body.metadata or {},
        "llm_labeling": normalise_llm(body.llm_labeling),
        "hierarchical_vector": False,
        "enrich_source": False,
        "hierarchy_detected": False,
        "output_collection_ids": [],
        "output_collection_names": [],
        "hidden": hidden,
        "created_at": now,
        "updated_at": now,
        **kind,
    }


def vector_definition(vc: dict[str, Any]) -> dict[str, Any]:
    return {
        "cluster_type": "vector",
        "algorithm": vc["algorithm"],
        "algorithm_params": vc["algorithm_params"],
        "feature_uris": vc["feature_uris"],
        "sample_size": vc["sample_size"],
        "vector_config": vc,
        "multi_feature_strategy": vc["multi_feature_strategy"],
        "preprocessing_steps": vc["preprocessing_steps"],
        "effective_feature_method": vc["effective_feature_method"],
        "vis_n_components": vc["vis_n_components"],
        "layout_stability": vc["layout_stability"],
        "hierarchical_grouping": False,
        "hierarchical_vector": vc["hierarchical"],
        "max_hierarchy_depth": vc["max_hierarchy_depth"],
    }


@router.post("/v1/clusters", responses=error_responses(409))
async def create_cluster(
    svc: ServicesDep, ns: NamespaceDep, body: Annotated[ClusterCreate | None, Body()] = None
) -> dict[str, Any]:
    doc = await build_cluster_doc(svc, ns, body or ClusterCreate())
    return cluster_metadata(await clusters.create(svc.db, doc=doc))


@router.get("/v1/clusters")
async def list_clusters_get(
    svc: ServicesDep, ns: NamespaceDep, page: PageDep, search: Annotated[str | None, Query()] = None
) -> dict[str, Any]:
    return await cluster_list(svc, ns, page, ListBody(search=search))


@router.post("/v1/clusters/list")
async def list_clusters(
    svc: ServicesDep, ns: NamespaceDep, page: PageDep, body: Annotated[ListBody | None, Body()] = None
) -> dict[str, Any]:
    return await cluster_list(svc, ns, page, body)


@router.get("/v1/clusters/{ident}")
async def get_cluster(ident: str, svc: ServicesDep, ns: NamespaceDep) -> dict[str, Any]:
    return cluster_metadata(await clusters.get_or_raise(svc.db, ns=ns, ident=ident))


@router.patch("/v1/clusters/{ident}", responses=error_responses(409))
async def patch_cluster(
    ident: str, svc: ServicesDep, ns: NamespaceDep, body: Annotated[ClusterPatch | None, Body()] = None
) -> dict[str, Any]:
    cluster = await clusters.get_or_raise(svc.db, ns=ns, ident=ident)
    body = body or ClusterPatch()
    changes: dict[str, Any] = {}
    for k in ("cluster_name", "description", "metadata"):
        if getattr(body, k) is not None:
            changes[k] = getattr(body, k)
    if body.llm_labeling is not None:
        changes["llm_labeling"] = normalise_llm(body.llm_labeling)
    if body.filters is not None:
        check_document_filters(body.filters, "filters")
        changes["filters"] = body.filters
    if body.sample_size is not None:
        changes["sample_size"] = body.sample_size
    if cluster.get("cluster_type") == "attribute":
        if body.algorithm_params:
            raise ValidationFailed("algorithm_params: attribute clusters have no algorithm parameters")
    else:
        vc = dict(cluster["vector_config"])
        if body.sample_size is not None:
            vc["sample_size"] = body.sample_size
        if body.algorithm_params is not None:
            vc["algorithm_params"] = changes["algorithm_params"] = effective_params(
                vc["algorithm"], {"algorithm_params": body.algorithm_params}, None
            )
        if body.layout_stability is not None:
            vc["layout_stability"] = changes["layout_stability"] = body.layout_stability
        if vc != cluster["vector_config"]:
            changes["vector_config"] = vc
    doc = (
        await clusters.update(svc.db, ns=ns, cluster_id=cluster["cluster_id"], fields=changes)
        if changes
        else cluster
    )
    return cluster_model(doc)


@router.delete("/v1/clusters/{ident}")
async def delete_cluster(
    ident: str, svc: ServicesDep, ns: NamespaceDep, cascade_output_collections: bool = True
) -> dict[str, Any]:
    cluster = await clusters.get_or_raise(svc.db, ns=ns, ident=ident)
    deleted = await purge_cluster(svc, ns, cluster["cluster_id"])
    return {"success": True, "cluster_id": cluster["cluster_id"], "deleted_executions": deleted}


@router.post("/v1/clusters/{ident}/execute", responses=error_responses(503))
async def execute_cluster(
    ident: str,
    svc: ServicesDep,
    ns: NamespaceDep,
    key: IdempotencyKeyDep,
    response: Response,
    body: Annotated[ExecuteById | None, Body()] = None,
) -> dict[str, Any]:
    cluster = await clusters.get_or_raise(svc.db, ns=ns, ident=ident)
    body = body or ExecuteById()
    if body.mode != "full":
        raise ValidationFailed(f"mode: '{body.mode}' is not supported yet", code="mode_not_supported")
    overrides: dict[str, Any] = {}
    if body.filters is not None:  # this run only; the definition keeps its own
        check_document_filters(body.filters, "filters")
        overrides["filters"] = body.filters
    for k in ("vis_n_components", "layout_stability", "defer_visualization"):  # this run only
        if getattr(body, k) is not None:
            overrides[k] = getattr(body, k)
    if body.llm_labeling is not None:  # this run only, like filters
        overrides["llm_labeling"] = normalise_llm(body.llm_labeling)
    config = run_config(cluster, sample_size=body.sample_size, **overrides)

    async def launch() -> dict[str, Any]:
        await admit(svc, ns=ns, config=config)  # 422 too_many_points: nothing is queued
        return await launch_run(svc, ns=ns, cluster=cluster, config=config)

    launched = await launch_once(
        svc, ns=ns, key=key, fingerprint=fingerprint("execute", cluster["cluster_id"], body), launch=launch
    )
    response.headers.update(launched.headers())
    return task_response(launched.run)


@router.get("/v1/clusters/{ident}/executions")
async def latest_execution(
    ident: str, svc: ServicesDep, ns: NamespaceDep, include_vectors: bool = False
) -> dict[str, Any] | None:
    cluster_id = await clusters.resolve_id(svc.db, ns=ns, ident=ident)
    run = await executions.latest(svc.db, ns=ns, cluster_id=cluster_id)
    return execution_result(run, include_vectors=include_vectors) if run else None


@router.get("/v1/clusters/{ident}/executions/{run_id}")
async def get_execution(
    ident: str, run_id: str, svc: ServicesDep, ns: NamespaceDep, include_vectors: bool = False
) -> dict[str, Any]:
    cluster_id = await clusters.resolve_id(svc.db, ns=ns, ident=ident)
    run = await executions.get_or_raise(svc.db, ns=ns, cluster_id=cluster_id, run_id=run_id)
    return execution_result(run, include_vectors=include_vectors)


@router.post("/v1/clusters/{ident}/executions/list")
async def list_executions(
    ident: str,
    svc: ServicesDep,
    ns: NamespaceDep,
    page: PageDep,
    body: Annotated[ListBody | None, Body()] = None,
) -> dict[str, Any]:
    cluster_id = await clusters.resolve_id(svc.db, ns=ns, ident=ident)
    return await run_list(svc, ns, cluster_id, page, body)


@router.get("/v1/tasks/{task_id}")
async def get_task(task_id: str, svc: ServicesDep, principal: PrincipalDep) -> dict[str, Any]:
    run = await executions.by_task_id(svc.db, task_id=task_id)
    if run is not None:
        ns = await namespaces.find(svc.db, ident=run["namespace_id"])
        if ns is None or not principal.may_use(ns):
            run = None
    if run is None:
        raise NotFound(f"task '{task_id}' not found")
    return task_response(run)
