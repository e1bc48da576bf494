"""Request dependencies: services, the authenticated key, and the namespace in scope."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from celery import Celery
from fastapi import Depends, Header, Request

from core.artifacts import ArtifactStore
from core.errors import BadRequest, Forbidden, Unauthorized
from core.settings import Settings
from core.store import api_keys, namespaces
from core.store.db import Database


@dataclass
class Services:
    settings: Settings
    db: Database
    artifacts: ArtifactStore
    celery: Celery
    pepper: bytes


# Dependencies are `async def` even when they never await: FastAPI runs a plain `def` dependency
# in its thread pool, a thread hop (and GIL handoff) per request that cost the run poll more than
# its store lookups on a busy machine.
async def get_services(request: Request) -> Services:
    return request.app.state.services  # type: ignore[no-any-return]


ServicesDep = Annotated[Services, Depends(get_services)]


@dataclass
class Principal:
    key: dict[str, Any]

    @property
    def admin(self) -> bool:
        return bool(self.key.get("admin"))

    def may_use(self, namespace: dict[str, Any]) -> bool:
        allowed = self.key.get("namespaces") or []
        return api_keys.ALL_NAMESPACES in allowed or namespace["namespace_id"] in allowed


async def get_principal(svc: ServicesDep, authorization: Annotated[str | None, Header()] = None) -> Principal:
    # one message for missing, malformed, unknown and revoked keys: nothing to probe
    denied = Unauthorized("missing or invalid API key (Authorization: Bearer <key>)")
    if not authorization:
        raise denied
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise denied
    key = await api_keys.authenticate(svc.db, pepper=svc.pepper, key=token.strip())
    if key is None:
        raise denied
    return Principal(key)


PrincipalDep = Annotated[Principal, Depends(get_principal)]


async def require_admin(principal: PrincipalDep) -> Principal:
    if not principal.admin:
        raise Forbidden("this key may not manage namespaces or API keys", code="forbidden")
    return principal


AdminDep = Annotated[Principal, Depends(require_admin)]


async def resolve_namespace(svc: Services, principal: Principal, ident: str) -> dict[str, Any]:
    """Id or name; an unknown name is created for admin keys (unless strict_namespaces)."""
    ns = await namespaces.find(svc.db, ident=ident)
    if ns is None:
        if not principal.admin:
            raise Forbidden(f"X-Namespace: this key may not use namespace '{ident}'", code="forbidden")
        ns = await namespaces.get_or_create(
            svc.db, ident=ident, create_missing=not svc.settings.strict_namespaces
        )
    if not principal.may_use(ns):
        raise Forbidden(f"X-Namespace: this key may not use namespace '{ident}'", code="forbidden")
    return ns


async def get_namespace(
    svc: ServicesDep, principal: PrincipalDep, x_namespace: Annotated[str | None, Header()] = None
) -> str:
    if not x_namespace or not x_namespace.strip():
        raise BadRequest("X-Namespace header is required (namespace id or name)", code="namespace_required")
    ns = await resolve_namespace(svc, principal, x_namespace.strip())
    return str(ns["namespace_id"])


NamespaceDep = Annotated[str, Depends(get_namespace)]
