"""What every request pays for: no dependency runs in the thread pool, and the NaN scrub of
response bodies."""

from __future__ import annotations

import importlib
import inspect
import math
import pkgutil
from typing import Any

from fastapi import APIRouter
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

import api.routers
from api.schemas.runs import clean


def dependencies(dependant: Dependant) -> list[Any]:
    out = []
    for sub in dependant.dependencies:
        out.append(sub.call)
        out += dependencies(sub)
    return out


def api_routes() -> list[APIRoute]:
    """Every route of every router in api.routers."""
    routes = []
    for info in pkgutil.iter_modules(api.routers.__path__):
        module = importlib.import_module(f"api.routers.{info.name}")
        for router in vars(module).values():
            if isinstance(router, APIRouter):
                routes += [r for r in router.routes if isinstance(r, APIRoute)]
    return routes


def test_no_route_dependency_is_a_plain_function() -> None:
    # FastAPI runs a plain `def` dependency in its thread pool: a thread hop on every request
    # (it doubled the run poll's latency on a busy machine)
    routes = api_routes()
    assert len(routes) > 40
    sync = {
        f"{r.path} {getattr(call, '__name__', call)}"
        for r in routes
        for call in dependencies(r.dependant)
        if not inspect.iscoroutinefunction(call)
    }
    assert not sync, sorted(sync)
    assert not [r.path for r in routes if not inspect.iscoroutinefunction(r.endpoint)]


def test_clean_drops_non_finite_floats_anywhere_and_keeps_everything_else() -> None:
    body = {
        "run_id": "run_1",
        "num": 3,
        "ok": True,
        "none": None,
        "score": 0.5,
        "nan": math.nan,
        "metrics": {"inf": math.inf, "neg": -math.inf, "x": 1.25, "flag": False},
        "centroids": [{"cluster_id": "cl_0", "m": math.nan, "ids": [{"d": "a"}, 2, 2.5, math.inf]}],
    }
    assert clean(body) == {
        "run_id": "run_1",
        "num": 3,
        "ok": True,
        "none": None,
        "score": 0.5,
        "nan": None,
        "metrics": {"inf": None, "neg": None, "x": 1.25, "flag": False},
        "centroids": [{"cluster_id": "cl_0", "m": None, "ids": [{"d": "a"}, 2, 2.5, None]}],
    }
    assert clean(math.nan) is None and clean("s") == "s" and clean([math.inf]) == [None]
