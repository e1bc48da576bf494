"""POST /v1/clusters/execute: ad-hoc clustering on a worker (contract §1.2).

It stores a hidden definition plus a run, waits up to ADHOC_WAIT_S for the result and answers 200
with it; `Prefer: respond-async` or a wait that runs out answers 202 with the run handle.
"""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any

from fastapi import APIRouter, Body, Header, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from api.deps import NamespaceDep, ServicesDep
from api.errors import error_response
from api.idempotency import IdempotencyKeyDep, fingerprint, launch_once
from api.launch import admit, launch_run, run_config
from api.purge import purge_cluster
from api.routers.clusters import build_cluster_doc
from api.schemas.clusters import ClusterCreate
from api.schemas.errors import V1, error_responses
from api.schemas.runs import clean
from api.schemas.stored import StoredDict, StoredList
from core import artifacts
from core.errors import NotFound, ValidationFailed
from core.models import RunStatus
from core.preprocess import parse_steps
from core.store import clusters, executions
from core.timeutil import iso
from core.vectors import decode

router = APIRouter(responses=error_responses(*V1))


class FeatureVector(BaseModel):
    model_config = ConfigDict(extra="ignore")
    vector_name: str | None = None
    feature_address: str | None = None


class AdhocConfig(BaseModel):
    model_config = ConfigDict(extra="ignore")
    algorithm: str
    algorithm_params: StoredDict | None = None
    feature_vector: FeatureVector | None = None
    normalize_features: bool = True
    llm_labeling: StoredDict | None = None
    attribute_config: StoredDict | None = None
    description: str | None = None
    preprocessing_steps: StoredList | None = None


class AdhocAccepted(BaseModel):
    """202: the run goes on; poll the run at `Location`."""

    success: bool
    status: str
    run_id: str
    cluster_id: str
    task_id: str


class AdhocRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    collection_ids: list[str] = Field(min_length=1)
    config: AdhocConfig
    sample_size: int | None = Field(None, ge=1, le=1_000_000)
    store_results: bool = True
    include_members: bool = False
    compute_metrics: bool = True
    save_artifacts: bool = False


def _finished_body(run: dict[str, Any], members: list[dict[str, Any]] | None, save_artifacts: bool) -> dict:
    metrics = dict(run.get("metrics") or {})
    if "davies_bouldin_index" in metrics:
        metrics["davies_bouldin_score"] = metrics["davies_bouldin_index"]  # the seed's name
    dims = int(run.get("dimensions") or 0)
    body: dict[str, Any] = {
        "success": True,
        "status": run["status"],
        "algorithm": run["config"]["algorithm"],
        "num_clusters": int(run["num_clusters"]),
        "num_documents": int(run["num_points"]),
        "centroids": [
            {
                "cluster_id": c["cluster_id"],
                "centroid_vector": [float(x) for x in decode(c["centroid_vector"])]
                if c.get("centroid_vector") is not None
                else [],
                "num_members": int(c["num_members"]),
                "feature_dimensions": dims,
                "vector_name": run["config"].get("feature_name", ""),
                "label": c.get("label"),
                "keywords": c.get("keywords"),
                "summary": c.get("summary"),
            }
            for c in run.get("centroids") or []
        ],
        "execution_time_ms": int(run.get("execution_time_ms") or 0),
        "run_id": run["run_id"],
        "cluster_id": run["cluster_id"],
        "metrics": metrics,
        "parquet_path": run.get("parquet_path") if save_artifacts else None,
        "members_key": run.get("members_key") if save_artifacts else None,
        "created_at": iso(run["created_at"]),
    }
    if run.get("llm_labeling_errors"):
        body["llm_labeling_errors"] = run["llm_labeling_errors"]
    if members is not None:
        body["members"] = members
    return clean(body)  # type: ignore[no-any-return]


def _members(svc: Any, run: dict[str, Any]) -> list[dict[str, Any]]:
    table = artifacts.read_table(svc.artifacts, run["members_key"])
    return clean(table.to_pylist())  # type: ignore[no-any-return]


async def _wait(svc: Any, run_id: str, seconds: float) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    delay = 0.05
    while True:
        run = await executions.get(svc.db, run_id=run_id)
        if run is None:  # its definition was deleted while we waited
            raise NotFound(f"run '{run_id}' was deleted while waiting for it")
        if RunStatus(run["status"]).terminal or time.monotonic() >= deadline:
            return run
        await asyncio.sleep(min(delay, max(0.0, deadline - time.monotonic())))
        delay = min(delay * 1.5, 0.5)


def _vector_create(body: AdhocRequest, feature: str) -> ClusterCreate:
    cfg = body.config
    return ClusterCreate(
        collection_ids=body.collection_ids,
        cluster_type="vector",
        description=cfg.description,
        llm_labeling=cfg.llm_labeling,
        vector_config={
            "clustering_method": cfg.algorithm,
            "feature_uris": [feature],
            "algorithm_params": cfg.algorithm_params or {},
            "normalize_features": cfg.normalize_features,
            "preprocessing_steps": cfg.preprocessing_steps or [],
        },
    )


@router.post(
    "/v1/clusters/execute",
    response_model=None,
    responses={
        202: {"model": AdhocAccepted, "description": "Prefer: respond-async, or the wait ran out"},
        # a failed run answers with its error: 422 for bad input data, else 500
        **error_responses(500, 503),
    },
)
async def execute_adhoc(
    svc: ServicesDep,
    ns: NamespaceDep,
    body: Annotated[AdhocRequest, Body()],
    key: IdempotencyKeyDep,
    response: Response,
    prefer: Annotated[str | None, Header()] = None,
) -> dict[str, Any] | JSONResponse:
    cfg = body.config
    fv = cfg.feature_vector
    feature = (fv.vector_name or fv.feature_address) if fv else None
    if cfg.algorithm == "attribute_based":
        if not cfg.attribute_config:
            raise ValidationFailed(
                "config.attribute_config: required when config.algorithm is attribute_based"
            )
        create = ClusterCreate(
            collection_ids=body.collection_ids,
            cluster_type="attribute",
            description=cfg.description,
            attribute_config=cfg.attribute_config,
        )
    elif not feature:
        raise ValidationFailed("config.feature_vector: vector_name or feature_address is required")
    else:
        parse_steps(cfg.preprocessing_steps, "config.preprocessing_steps")  # named as this request has it
        create = _vector_create(body, feature)

    async def launch() -> dict[str, Any]:
        doc = await build_cluster_doc(svc, ns, create, hidden=True)
        doc["adhoc"] = True
        config = run_config(
            doc,
            sample_size=body.sample_size,
            compute_metrics=body.compute_metrics,
            save_artifacts=body.save_artifacts or body.include_members,
        )
        await admit(svc, ns=ns, config=config)  # before the hidden definition is stored
        cluster = await clusters.create(svc.db, doc=doc)
        return await launch_run(svc, ns=ns, cluster=cluster, config=config)

    # a replay answers from the same run: finished, still running (202) or failed
    launched = await launch_once(
        svc, ns=ns, key=key, fingerprint=fingerprint("adhoc", "", body), launch=launch
    )
    run, replay_headers = launched.run, launched.headers()
    response.headers.update(replay_headers)
    wants_async = prefer is not None and "respond-async" in prefer.lower()
    if not wants_async:
        run = await _wait(svc, run["run_id"], svc.settings.adhoc_wait_s)
    status = RunStatus(run["status"])
    if not status.terminal:
        location = f"/v1/clusters/{run['cluster_id']}/executions/{run['run_id']}"
        return JSONResponse(
            {
                "success": True,
                "status": status.value,
                "run_id": run["run_id"],
                "cluster_id": run["cluster_id"],
                "task_id": run["task_id"],
            },
            status_code=202,
            headers={"Location": location, **replay_headers}
            | ({"Preference-Applied": "respond-async"} if wants_async else {}),
        )
    if status != RunStatus.COMPLETED:
        if not body.store_results:
            await purge_cluster(svc, ns, run["cluster_id"])
        category = run.get("failure_category") or "unknown"
        code = 422 if category == "validation" else 500
        return error_response(
            code,
            run.get("error_message") or f"run {status.value}",
            code=f"run_{status.value}",
            details={"run_id": run["run_id"], "cluster_id": run["cluster_id"], "failure_category": category},
            headers=replay_headers or None,
        )
    members = await asyncio.to_thread(_members, svc, run) if body.include_members else None
    out = _finished_body(run, members, body.save_artifacts)
    if not body.store_results:
        await purge_cluster(svc, ns, run["cluster_id"])
    return out
