"""Managing one run: cancel, export (parquet / csv), label overrides, run name."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from api.deps import NamespaceDep, Services, ServicesDep
from api.schemas.errors import V1, error_responses
from api.schemas.run_actions import LabelsPatch, RunNamePatch
from core import artifacts, exports
from core.errors import BadRequest, NotFound, PayloadTooLarge, ValidationFailed
from core.models import RunStatus
from core.store import clusters, executions, run_state

log = logging.getLogger("clusterd.api")

router = APIRouter(responses=error_responses(*V1))

RUN = "/v1/clusters/{ident}/executions/{run_id}"
CSV_MAX_ROWS = 100_000
EXPORT_URL_TTL_S = 3600
REVOKE_TIMEOUT_S = 3.0
FORMATS = ("parquet", "csv")


async def _cluster_id(svc: Services, ns: str, ident: str) -> str:
    return await clusters.resolve_id(svc.db, ns=ns, ident=ident)


@router.post(RUN + "/cancel")
async def cancel_execution(ident: str, run_id: str, svc: ServicesDep, ns: NamespaceDep) -> dict[str, Any]:
    cluster_id = await _cluster_id(svc, ns, ident)
    run = await executions.cancel(svc.db, ns=ns, cluster_id=cluster_id, run_id=run_id)
    if run is None:
        current = await executions.get_light_or_raise(svc.db, ns=ns, cluster_id=cluster_id, run_id=run_id)
        status = current["status"]
        saving = " and already saving its results" if current.get("finalizing") else ""
        raise BadRequest(
            f"run '{run_id}' is {status}{saving}: only pending or processing runs can be canceled",
            code="invalid_state",
            details={"status": status},
        )
    await run_state.mirror(svc.db, run, RunStatus.CANCELED)
    await _revoke(svc, run_id)
    return {"success": True, "run_id": run_id, "status": RunStatus.CANCELED.value}


async def _revoke(svc: Services, run_id: str) -> None:
    """Best effort: drop the queued message (the Celery task id is the run id). The claim's CAS
    refuses a canceled run anyway, so a broker that is down never fails the cancel. The in-process
    memory transport is skipped: its worker is ours and the CAS is all it needs."""
    if svc.settings.broker_url is None:
        return
    try:
        await asyncio.wait_for(asyncio.to_thread(svc.celery.control.revoke, run_id), REVOKE_TIMEOUT_S)
    except Exception as exc:  # noqa: BLE001 - never fail a cancel on the broker
        log.warning(
            "revoke of %s failed (the run is canceled anyway): %s: %s", run_id, type(exc).__name__, exc
        )


def _members_key(run: dict[str, Any]) -> str:
    run_id, status = run["run_id"], run["status"]
    if status != RunStatus.COMPLETED.value:
        raise NotFound(f"run '{run_id}' is {status}: only a completed run has data to export")
    key = run.get("members_key")
    if not key:
        raise NotFound(
            f"run '{run_id}' has no artifacts to export (ad-hoc runs keep them only with save_artifacts=true)"
        )
    return str(key)


def _load_members(store: artifacts.ArtifactStore, run: dict[str, Any]) -> Any:
    key = _members_key(run)
    try:
        return artifacts.read_table(store, key)
    except NotFound:
        raise NotFound(
            f"run '{run['run_id']}': its members artifact (members.parquet) "
            "is no longer in the artifact store"
        ) from None


def _export_key(run: dict[str, Any]) -> str:
    return artifacts.run_prefix(run["namespace_id"], run["cluster_id"], run["run_id"]) + exports.EXPORT_NAME


def _write_parquet(store: artifacts.ArtifactStore, run: dict[str, Any]) -> str:
    table = exports.export_table(_load_members(store, run), exports.current_labels(run))
    key = _export_key(run)
    artifacts.write_table(store, key, table)
    return key


def _csv(store: artifacts.ArtifactStore, run: dict[str, Any], cluster_label: str | None) -> str:
    labels = exports.current_labels(run)
    table = exports.export_table(_load_members(store, run), labels)
    if cluster_label is not None:
        chosen = exports.select_clusters(run.get("centroids") or [], labels, cluster_label)
        if not chosen:
            raise ValidationFailed(
                f"cluster_label: '{cluster_label}' is neither a cluster id nor a current label "
                f"of run '{run['run_id']}'"
            )
        table = exports.filter_clusters(table, chosen)
    if table.num_rows > CSV_MAX_ROWS:
        raise PayloadTooLarge(
            f"run '{run['run_id']}' has {table.num_rows} rows to export, above the CSV limit of "
            f"{CSV_MAX_ROWS}: use format=parquet",
            details={"rows": table.num_rows, "max_rows": CSV_MAX_ROWS, "format": "parquet"},
        )
    return exports.to_csv(table)


@router.get(
    RUN + "/export",
    response_model=None,
    responses={
        200: {
            "description": "parquet: a download link (JSON); csv: the rows",
            "content": {"text/csv": {"schema": {"type": "string"}}},
        },
        **error_responses(503),
    },
)
async def export_execution(
    ident: str,
    run_id: str,
    request: Request,
    svc: ServicesDep,
    ns: NamespaceDep,
    format: str = "parquet",
    cluster_label: str | None = None,
) -> dict[str, Any] | Response:
    fmt = format.strip().lower()
    if fmt not in FORMATS:
        raise ValidationFailed(
            f"format: '{format}' is not supported (parquet or csv)",
            details={
                "validation_errors": [
                    {"loc": ["query", "format"], "msg": "must be 'parquet' or 'csv'", "type": "value_error"}
                ]
            },
        )
    cluster_id = await _cluster_id(svc, ns, ident)
    run = await executions.get_light_or_raise(svc.db, ns=ns, cluster_id=cluster_id, run_id=run_id)
    if fmt == "csv":
        body = await asyncio.to_thread(_csv, svc.artifacts, run, cluster_label)
        return Response(
            body,
            media_type="text/csv",
            headers={"Content-Disposition": f'attachment; filename="{run_id}.csv"'},
        )
    if cluster_label is not None:
        raise ValidationFailed("cluster_label: only applies to format=csv (parquet exports every row)")
    key = await asyncio.to_thread(_write_parquet, svc.artifacts, run)
    url = svc.artifacts.download_url(key, EXPORT_URL_TTL_S)
    if url.startswith("file:"):  # the local store: a file:// URL is useless over HTTP
        url = str(request.url_for("export_execution_file", ident=cluster_id, run_id=run_id))
    return {"format": "parquet", "run_id": run_id, "download_url": url, "expires_in": EXPORT_URL_TTL_S}


@router.get(
    RUN + "/export/file",
    name="export_execution_file",
    response_model=None,
    response_class=Response,
    responses={
        200: {
            "description": "the parquet file",
            "content": {artifacts.PARQUET_CONTENT_TYPE: {"schema": {"type": "string", "format": "binary"}}},
        },
        **error_responses(503),
    },
)
async def export_execution_file(ident: str, run_id: str, svc: ServicesDep, ns: NamespaceDep) -> Response:
    """The parquet written by the last `…/export?format=parquet` of this run."""
    cluster_id = await _cluster_id(svc, ns, ident)
    run = await executions.get_light_or_raise(svc.db, ns=ns, cluster_id=cluster_id, run_id=run_id)
    try:
        data = await asyncio.to_thread(svc.artifacts.get_bytes, _export_key(run))
    except NotFound:
        raise NotFound(
            f"run '{run_id}' has no parquet export yet: request …/executions/{run_id}/export first"
        ) from None
    return Response(
        data,
        media_type=artifacts.PARQUET_CONTENT_TYPE,
        headers={"Content-Disposition": f'attachment; filename="{exports.EXPORT_NAME}"'},
    )


@router.patch(RUN + "/labels", responses=error_responses(409))
async def patch_labels(
    ident: str, run_id: str, body: LabelsPatch, svc: ServicesDep, ns: NamespaceDep
) -> dict[str, Any]:
    cluster_id = await _cluster_id(svc, ns, ident)
    overrides = await executions.set_labels(
        svc.db, ns=ns, cluster_id=cluster_id, run_id=run_id, labels=body.labels
    )
    return {"cluster_id": cluster_id, "run_id": run_id, "label_overrides": overrides}


@router.patch(RUN + "/name")
async def patch_run_name(
    ident: str, run_id: str, body: RunNamePatch, svc: ServicesDep, ns: NamespaceDep
) -> dict[str, Any]:
    cluster_id = await _cluster_id(svc, ns, ident)
    name = body.run_name or None
    await executions.set_run_name(svc.db, ns=ns, cluster_id=cluster_id, run_id=run_id, run_name=name)
    return {"cluster_id": cluster_id, "run_id": run_id, "run_name": name}
