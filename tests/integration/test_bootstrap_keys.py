"""With no key configured the server makes one admin key and hands it out once."""

from __future__ import annotations

import pytest

from core.store import api_keys
from tests.conftest import serve_asgi

pytestmark = pytest.mark.integration


async def test_generated_key_works_and_is_stored_hashed(make_settings) -> None:  # type: ignore[no-untyped-def]
    async with serve_asgi(make_settings(api_keys=[], embedded_worker=False)) as a:
        key = a.app.state.generated_key
        assert key and key.startswith("cd_")
        r = await a.client.get("/v1/namespaces", headers={"Authorization": f"Bearer {key}"})
        assert r.status_code == 200
        svc = a.app.state.services
        stored = [d async for d in svc.db.api_keys.find({}, {"_id": 0})]
        assert len(stored) == 1 and key not in str(stored)
        # a restart against the same store finds an admin key and prints nothing new
        assert await api_keys.ensure_bootstrap(svc.db, pepper=svc.pepper, keys=[]) is None


async def test_configured_keys_suppress_generation(make_settings) -> None:  # type: ignore[no-untyped-def]
    async with serve_asgi(make_settings(embedded_worker=False)) as a:
        assert a.app.state.generated_key is None


def test_short_bootstrap_keys_are_refused(make_settings) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="at least 16"):
        make_settings(api_keys=["short"])
