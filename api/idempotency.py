"""`Idempotency-Key` on the routes that launch a run: a retried request gets the run the first
one started instead of a second run.

The key is scoped to the namespace and bound to a fingerprint of the request (route, cluster
and the validated body as canonical JSON): the same key with another request is a 409
`idempotency_key_reused`. A request that finds the key claimed by one still launching waits for
that run; if the launch fails (broker down: 503) the key is released and a retry launches.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Any

from fastapi import Depends, Header
from pydantic import BaseModel

from api.deps import Services
from core.errors import BadRequest, Conflict
from core.store import executions, idempotency
from core.timeutil import aware, utcnow

log = logging.getLogger("clusterd.api")

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
MAX_LENGTH = 255
# how long a request waits for a concurrent one with the same key to record its run
WAIT_S = 30.0
# a `launching` record older than this lost its owner (a launch gives up on the broker after 15 s)
LEASE_S = 60.0


def check_key(value: str | None) -> str | None:
    if value is None:
        return None
    if not 1 <= len(value) <= MAX_LENGTH or not all(" " <= c <= "~" for c in value):
        raise BadRequest(
            f"{HEADER}: must be 1 to {MAX_LENGTH} printable ASCII characters", code="invalid_idempotency_key"
        )
    return value


async def idempotency_key(key: Annotated[str | None, Header(alias=HEADER)] = None) -> str | None:
    return check_key(key)


IdempotencyKeyDep = Annotated[str | None, Depends(idempotency_key)]


def fingerprint(route: str, target: str, body: BaseModel) -> str:
    """What makes two requests "the same": the route, its target and the validated body (so an
    omitted body and the SDK's `{"mode":"full",…}` defaults are equal)."""
    canonical = json.dumps(
        {"route": route, "target": target, "body": body.model_dump(mode="json")},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=True,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass
class Launch:
    run: dict[str, Any]
    replayed: bool

    def headers(self) -> dict[str, str]:
        return {REPLAYED_HEADER: "true"} if self.replayed else {}


async def launch_once(
    svc: Services,
    *,
    ns: str,
    key: str | None,
    fingerprint: str,
    launch: Callable[[], Awaitable[dict[str, Any]]],
) -> Launch:
    """Run `launch` (which returns the new run) at most once per (namespace, key)."""
    if key is None:
        return Launch(await launch(), replayed=False)
    token = secrets.token_hex(16)
    deadline = time.monotonic() + WAIT_S
    delay = 0.02
    while True:
        held = await idempotency.claim(
            svc.db, ns=ns, key=key, fingerprint=fingerprint, token=token, ttl_s=svc.settings.idempotency_ttl_s
        )
        if held is None:
            return Launch(await _launch_owned(svc, ns, key, token, launch), replayed=False)
        expires = aware(held["expires_at"])
        if expires is not None and expires <= utcnow():
            await idempotency.drop_expired(svc.db, ns=ns, key=key)
            continue
        if held["fingerprint"] != fingerprint:
            raise Conflict(
                f"{HEADER}: '{key}' was already used with a different request in this namespace",
                code="idempotency_key_reused",
            )
        if held["state"] == idempotency.LAUNCHED:
            run = await executions.get(svc.db, run_id=held["run_id"])
            if run is not None and run["namespace_id"] == ns:
                return Launch(run, replayed=True)
            await idempotency.forget_run(svc.db, ns=ns, key=key, run_id=held["run_id"])
            continue
        stale = utcnow() - timedelta(seconds=LEASE_S)
        if await idempotency.take_over(svc.db, ns=ns, key=key, token=token, claimed_before=stale):
            log.warning("%s %r: the request launching it went silent; taking over", HEADER, key)
            return Launch(await _launch_owned(svc, ns, key, token, launch), replayed=False)
        if time.monotonic() >= deadline:
            raise Conflict(
                f"{HEADER}: a request with '{key}' is still being processed; retry later",
                code="idempotency_key_in_progress",
            )
        await asyncio.sleep(delay)
        delay = min(delay * 1.5, 0.25)


async def _launch_owned(
    svc: Services, ns: str, key: str, token: str, launch: Callable[[], Awaitable[dict[str, Any]]]
) -> dict[str, Any]:
    try:
        run = await launch()
    except BaseException:
        try:
            await idempotency.release(svc.db, ns=ns, key=key, token=token)
        except Exception:  # the record then waits out its lease, and a later retry takes it over
            log.exception("could not release %s %r", HEADER, key)
        raise
    try:
        if not await idempotency.record_run(
            svc.db, ns=ns, key=key, token=token, run_id=run["run_id"], cluster_id=run["cluster_id"]
        ):
            log.warning("%s %r: lease lost before run %s was recorded", HEADER, key, run["run_id"])
    except Exception:  # the run is queued: answer with it rather than invite a second one
        log.exception("could not record run %s for %s %r", run["run_id"], HEADER, key)
    return run
