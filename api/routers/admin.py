"""Namespaces and API keys (admin keys only), and health."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field
from pymongo.errors import PyMongoError

from api.deps import AdminDep, ServicesDep
from api.errors import DB_UNAVAILABLE_MESSAGE
from api.pagination import PageDep
from api.purge import purge_namespace
from api.schemas.errors import V1, error_responses
from core.errors import NotFound, ValidationFailed
from core.store import api_keys, namespaces
from core.store.db import ping
from core.timeutil import iso

log = logging.getLogger("clusterd.api")

router = APIRouter(responses=error_responses(*V1))
health_router = APIRouter()  # no auth, no error statuses of its own


class NamespaceCreate(BaseModel):
    model_config = ConfigDict(extra="ignore")
    namespace_name: str = Field(min_length=3, max_length=100)


class ApiKeyCreate(BaseModel):
    model_config = ConfigDict(extra="ignore")
    name: str = Field(min_length=1, max_length=200)
    namespaces: list[str] = Field(min_length=1)


def _ns_out(doc: dict[str, Any]) -> dict[str, Any]:
    return {
        "namespace_id": doc["namespace_id"],
        "namespace_name": doc["namespace_name"],
        "created_at": iso(doc["created_at"]),
    }


def _key_out(doc: dict[str, Any]) -> dict[str, Any]:
    return {
        "key_id": doc["key_id"],
        "name": doc["name"],
        "namespaces": doc["namespaces"],
        "admin": bool(doc.get("admin")),
        "revoked": bool(doc.get("revoked")),
        "created_at": iso(doc["created_at"]),
    }


@health_router.get("/v1/health")
async def health(svc: ServicesDep) -> dict[str, Any]:
    """No auth. `status` is `ok` only when MongoDB, the broker and the artifact store answer."""
    checks: dict[str, Any] = {}
    try:
        await asyncio.wait_for(ping(svc.db), 5)
        checks["mongodb"] = {"status": "ok"}
    except (PyMongoError, TimeoutError) as exc:  # no auth here: no host names or server messages
        log.warning("health: database check failed: %s: %s", type(exc).__name__, exc)
        checks["mongodb"] = {"status": "error", "error": DB_UNAVAILABLE_MESSAGE}
    except Exception as exc:
        checks["mongodb"] = _failed("mongodb", exc)

    def broker() -> None:
        with svc.celery.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=3)

    for name, check in (("broker", broker), ("artifact_store", svc.artifacts.check)):
        try:
            await asyncio.wait_for(asyncio.to_thread(check), 10)
            checks[name] = {"status": "ok"}
        except Exception as exc:
            checks[name] = _failed(name, exc)
    ok = all(c["status"] == "ok" for c in checks.values())
    return {
        "status": "ok" if ok else "degraded",
        "checks": checks,
        "mode": "embedded" if svc.settings.embedded_store else "production",
    }


def _failed(name: str, exc: Exception) -> dict[str, str]:
    """Health answers without auth: the exception type only (texts carry hosts, endpoints and
    bucket names); the whole error goes to the log."""
    log.warning("health: %s check failed: %s: %s", name, type(exc).__name__, exc)
    return {"status": "error", "error": f"{name} unavailable ({type(exc).__name__})"}


@router.post("/v1/namespaces", responses=error_responses(409))
async def create_namespace(body: NamespaceCreate, svc: ServicesDep, _: AdminDep) -> dict[str, Any]:
    return _ns_out(await namespaces.create(svc.db, name=body.namespace_name))


@router.get("/v1/namespaces")
async def list_namespaces(svc: ServicesDep, _: AdminDep, page: PageDep) -> dict[str, Any]:
    docs, total = await namespaces.list_page(svc.db, offset=page.offset, limit=page.limit)
    return {"results": [_ns_out(d) for d in docs], "pagination": page.response(total), "total_count": total}


@router.get("/v1/namespaces/{ident}")
async def get_namespace(ident: str, svc: ServicesDep, _: AdminDep) -> dict[str, Any]:
    return _ns_out(await namespaces.get_or_raise(svc.db, ident=ident))


@router.delete("/v1/namespaces/{ident}")
async def delete_namespace(ident: str, svc: ServicesDep, _: AdminDep) -> dict[str, Any]:
    ns = await namespaces.get_or_raise(svc.db, ident=ident)
    counts = await purge_namespace(svc, ns["namespace_id"])
    return {"success": True, "namespace_id": ns["namespace_id"], **counts}


@router.post("/v1/api-keys")
async def create_api_key(body: ApiKeyCreate, svc: ServicesDep, _: AdminDep) -> dict[str, Any]:
    allowed: list[str] = []
    for i, ident in enumerate(body.namespaces):
        if ident == api_keys.ALL_NAMESPACES:
            allowed.append(ident)
            continue
        ns = await namespaces.find(svc.db, ident=ident)
        if ns is None:
            raise ValidationFailed(f"namespaces[{i}]: namespace '{ident}' not found")
        allowed.append(ns["namespace_id"])
    doc, key = await api_keys.create(
        svc.db, pepper=svc.pepper, name=body.name, namespaces=allowed, admin=False
    )
    return {**_key_out(doc), "key": key}


@router.get("/v1/api-keys")
async def list_api_keys(svc: ServicesDep, _: AdminDep, page: PageDep) -> dict[str, Any]:
    docs, total = await api_keys.list_page(svc.db, offset=page.offset, limit=page.limit)
    return {"results": [_key_out(d) for d in docs], "pagination": page.response(total), "total_count": total}


@router.get("/v1/api-keys/{key_id}")
async def get_api_key(key_id: str, svc: ServicesDep, _: AdminDep) -> dict[str, Any]:
    doc = await api_keys.get(svc.db, key_id=key_id)
    if doc is None:
        raise NotFound(f"API key '{key_id}' not found")
    return _key_out(doc)


@router.delete("/v1/api-keys/{key_id}")
async def revoke_api_key(key_id: str, svc: ServicesDep, _: AdminDep) -> dict[str, Any]:
    if not await api_keys.revoke(svc.db, key_id=key_id):
        raise NotFound(f"API key '{key_id}' not found")
    return {"success": True, "key_id": key_id, "revoked": True}
