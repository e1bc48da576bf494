"""Run history over HTTP: filters, search, sort, pagination and stats on thousands of seeded runs,
each answer checked against the subset computed independently in Python (tests/filter_oracle.py)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
import pytest_asyncio

from core.settings import Settings
from core.vectors import encode
from tests.conftest import ADMIN_KEY, Api, serve_asgi
from tests.filter_oracle import oracle_select

# one seeded store for the module: the API answers from it, no worker is needed
pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

BASE = datetime(2026, 6, 1, tzinfo=UTC)
RUN_DATES = frozenset({"created_at", "completed_at", "started_at"})
RUN_ALIASES = {"algorithm": "config.algorithm"}
NAMES = ["Baseline July", "tuning #3", "BASELINE august", "nightly (auto)", "a.b*c(", "Sports & news"]
LABELS = ["Sports", "Politics", "tech reviews", "Gadget Reviews", "misc.", "sport shoes"]
ERRORS = [
    "MemoryError: out of memory",
    "n_clusters=5 exceeds the 3 points",
    "worker lost (orphaned)",
    "S3 bucket missing",
]


def make_runs(ns: str, cluster_id: str, n: int, seed: int = 7) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    runs = []
    for i in range(n):
        status = rng.choice(["completed"] * 5 + ["failed", "failed", "canceled", "pending", "processing"])
        created = BASE + timedelta(minutes=7 * i + rng.randint(0, 5))
        run: dict[str, Any] = {
            "run_id": f"run_{i:016x}",
            "task_id": f"task_{i:032x}",
            "namespace_id": ns,
            "cluster_id": cluster_id,
            "status": status,
            "mode": "full",
            "attempts": rng.randint(0, 3),
            "created_at": created,
            "num_clusters": 0,
            "num_points": 0,
            "config": {"algorithm": rng.choice(["kmeans", "hdbscan", "dbscan"])},
            "progress": {"stage": status, "fraction": 1.0},
        }
        if rng.random() < 0.4:
            run["run_name"] = rng.choice(NAMES)
        if status in ("completed", "failed", "canceled"):
            run["started_at"] = created + timedelta(seconds=1)
            run["completed_at"] = created + timedelta(seconds=rng.randint(2, 600))
        if status == "completed":
            k = rng.randint(1, 6)
            run["num_clusters"] = k
            run["num_points"] = rng.randint(10, 5000)
            run["execution_time_ms"] = rng.randint(50, 90_000)
            if rng.random() < 0.8:
                run["metrics"] = {"silhouette_score": round(rng.uniform(-0.2, 0.95), 4)}
            else:
                run["metrics"] = {}
            run["centroids"] = [
                {
                    "cluster_id": f"cl_{j}",
                    "num_members": rng.randint(1, 500),
                    "label": rng.choice(LABELS),
                    "centroid_vector": encode(np.ones(4, np.float32) * j),
                }
                for j in range(k)
            ]
        if status == "failed":
            run["error_message"] = rng.choice(ERRORS)
            run["error_traceback"] = "Traceback (most recent call last): ..."
            run["failure_category"] = rng.choice(["validation", "infrastructure", "orphaned"])
            run["execution_time_ms"] = rng.randint(5, 2000)
        runs.append(run)
    return runs


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def api(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The real app on an in-memory store, without a worker (the runs here are seeded)."""
    settings = Settings(api_keys=[ADMIN_KEY], data_dir=tmp_path_factory.mktemp("data"), embedded_worker=False)
    async with serve_asgi(settings) as a:
        yield a


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def history(api: Api) -> dict[str, Any]:
    """2,000 runs of one cluster, plus runs of another cluster and of another namespace that must
    never show up."""
    col, _ = await api.make_collection()
    cid = await api.make_cluster(col)
    other = await api.make_cluster(col)
    col_b, _ = await api.make_collection(ns="team-b")
    foreign = await api.make_cluster(col_b, ns="team-b")
    ns_a = (await api.client.get(f"/v1/clusters/{cid}", headers=api.h())).json()["namespace_id"]
    ns_b = (await api.client.get(f"/v1/clusters/{foreign}", headers=api.h("team-b"))).json()["namespace_id"]
    runs = make_runs(ns_a, cid, 2000)
    noise = [
        {**r, "run_id": r["run_id"].replace("run_", "run_f"), "cluster_id": other}
        for r in make_runs(ns_a, other, 50, seed=8)
    ] + [
        {**r, "run_id": r["run_id"].replace("run_", "run_e"), "namespace_id": ns_b, "cluster_id": foreign}
        for r in make_runs(ns_b, foreign, 50, seed=9)
    ]
    db = api.app.state.services.db
    await db.cluster_executions.insert_many([dict(r) for r in runs + noise])
    return {"cluster": cid, "runs": runs}


async def list_all(api: Api, path: str, body: dict[str, Any], limit: int = 1000) -> list[dict[str, Any]]:
    """Walk every page through next_cursor; asserts pages never repeat a record."""
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    cursor = None
    while True:
        page_body = {**body, "limit": limit, **({"cursor": cursor} if cursor else {})}
        r = await api.client.post(path, json=page_body, headers=api.h())
        assert r.status_code == 200, r.text
        data = r.json()
        for item in data["results"]:
            key = item.get("run_id") or item.get("cluster_id") or item.get("document_id")
            assert key not in seen, f"{key} on two pages"
            seen.add(key)
        out.extend(data["results"])
        cursor = data["pagination"]["next_cursor"]
        if not cursor:
            assert len(out) == data["total_count"]
            return out


FILTERS: list[dict[str, Any]] = [
    {"AND": [{"field": "status", "operator": "eq", "value": "COMPLETED", "case_sensitive": False}]},
    {"status": ["failed", "canceled"]},
    {"AND": [{"field": "created_at", "operator": "gte", "value": "2026-06-05T00:00:00Z"}]},
    {"AND": [{"field": "completed_at", "operator": "lt", "value": "2026-06-03T12:00:00Z"}]},
    {
        "OR": [
            {"field": "metrics.silhouette_score", "operator": "gt", "value": 0.5},
            {"field": "num_clusters", "operator": "lte", "value": 1},
        ]
    },
    {"NOT": [{"field": "run_name", "operator": "exists", "value": True}]},
    {"AND": [{"field": "centroids.label", "operator": "contains", "value": "SPORT"}]},
    {"AND": [{"field": "run_name", "operator": "starts_with", "value": "baseline"}]},
    {"AND": [{"field": "run_name", "operator": "eq", "value": "a.b*c(", "case_sensitive": True}]},
    {"AND": [{"field": "error_message", "operator": "regex", "value": "^(memory|s3)"}]},
    {"AND": [{"field": "run_name", "operator": "words", "value": "news sports"}]},
    {"AND": [{"field": "algorithm", "operator": "in", "value": ["HDBSCAN", "dbscan"]}]},
    {"AND": [{"field": "metrics.silhouette_score", "operator": "is_null", "value": True}]},
    {
        "AND": [
            {"field": "status", "operator": "ne", "value": "pending"},
            {
                "OR": [
                    {"NOT": [{"field": "num_points", "operator": "gte", "value": 1000}]},
                    {
                        "AND": [
                            {"field": "failure_category", "operator": "in", "value": ["orphaned"]},
                            {"field": "error_message", "operator": "text", "value": "LOST"},
                        ]
                    },
                ]
            },
        ],
        "mode": "full",
    },
]


@pytest.mark.parametrize("flt", FILTERS, ids=[str(i) for i in range(len(FILTERS))])
async def test_run_filters_match_python(api: Api, history: dict[str, Any], flt: dict[str, Any]) -> None:
    cid = history["cluster"]
    got = await list_all(api, f"/v1/clusters/{cid}/executions/list", {"filters": flt})
    expected = oracle_select(history["runs"], flt, datetime_fields=RUN_DATES, aliases=RUN_ALIASES)
    assert expected, "every filter here selects something"
    assert len(expected) < len(history["runs"]) or flt.get("mode")
    assert {r["run_id"] for r in got} == {r["run_id"] for r in expected}
    # newest first by default
    created = [r["created_at"] for r in got]
    assert created == sorted(created, reverse=True)


async def test_run_list_pages_stats_and_shape(api: Api, history: dict[str, Any]) -> None:
    from mixpeek.models.list_cluster_executions_response import ListClusterExecutionsResponse

    cid, runs = history["cluster"], history["runs"]
    path = f"/v1/clusters/{cid}/executions/list"
    every = await list_all(api, path, {}, limit=333)
    assert sorted(r["run_id"] for r in every) == sorted(r["run_id"] for r in runs)
    r = await api.client.post(path + "?include_total=true", json={"limit": 25, "page": 3}, headers=api.h())
    body = r.json()
    ListClusterExecutionsResponse.from_dict(body)  # the SDK's strict model parses it
    assert body["pagination"] == {
        "page": 3,
        "page_size": 25,
        "total": 2000,
        "total_pages": 80,
        "next_page": "4",
        "previous_page": "2",
        "next_cursor": body["pagination"]["next_cursor"],
    }
    newest = sorted(runs, key=lambda x: x["created_at"], reverse=True)
    assert [x["run_id"] for x in body["results"]] == [x["run_id"] for x in newest[50:75]]
    for item in body["results"]:
        assert "error_traceback" not in item
        assert all("centroid_vector" not in c for c in item.get("centroids", []))
    stats = body["stats"]
    by_status: dict[str, int] = {}
    for x in runs:
        by_status[x["status"]] = by_status.get(x["status"], 0) + 1
    timed = [x["execution_time_ms"] for x in runs if "execution_time_ms" in x]
    assert stats["total_executions"] == 2000 and stats["executions_by_status"] == by_status
    assert stats["total_documents_clustered"] == sum(x["num_points"] for x in runs)
    assert stats["avg_execution_time_ms"] == pytest.approx(sum(timed) / len(timed))
    assert stats["avg_num_clusters"] == pytest.approx(sum(x["num_clusters"] for x in runs) / 2000)
    # stats follow the filter, over every match rather than the page
    r = await api.client.post(path, json={"limit": 1, "filters": {"status": "failed"}}, headers=api.h())
    failed = [x for x in runs if x["status"] == "failed"]
    assert r.json()["total_count"] == len(failed) == r.json()["stats"]["total_executions"]
    assert r.json()["stats"]["executions_by_status"] == {"failed": len(failed)}


async def test_run_sort_and_search(api: Api, history: dict[str, Any]) -> None:
    cid, runs = history["cluster"], history["runs"]
    path = f"/v1/clusters/{cid}/executions/list"
    # ascending silhouette: missing values last, then run_id breaks ties
    got = await list_all(api, path, {"sort": {"field": "metrics.silhouette_score", "direction": "asc"}})

    def score(x: dict[str, Any]) -> Any:
        return (x.get("metrics") or {}).get("silhouette_score")

    have = [x for x in runs if score(x) is not None]
    expected = sorted(have, key=lambda x: (score(x), x["run_id"]))
    expected += sorted([x for x in runs if score(x) is None], key=lambda x: x["run_id"])
    assert [x["run_id"] for x in got] == [x["run_id"] for x in expected]
    # `sorts` wins over `sort`; no direction means descending
    got = await list_all(
        api, path, {"sort": {"field": "created_at"}, "sorts": [{"field": "num_points"}, {"field": "run_id"}]}
    )
    expected = sorted(runs, key=lambda x: (x["num_points"], x["run_id"]), reverse=True)
    assert [x["run_id"] for x in got] == [x["run_id"] for x in expected]
    # search: case-insensitive substring in run_id, run_name, error_message, centroid labels; terms ANDed
    for text in ("baseline", "REVIEWS", "run_00000000000000a", "memory", "sports news"):
        got = await list_all(api, path, {"search": text})
        terms = text.lower().split()

        def hit(x: dict[str, Any], t: str) -> bool:
            fields = [x["run_id"], x.get("run_name") or "", x.get("error_message") or ""]
            fields += [c["label"] for c in x.get("centroids") or []]
            return any(t in f.lower() for f in fields)

        expected = [x for x in runs if all(hit(x, t) for t in terms)]
        assert expected and {x["run_id"] for x in got} == {x["run_id"] for x in expected}, text


def one(field: str, operator: str, value: Any) -> dict[str, Any]:
    return {"filters": {"AND": [{"field": field, "operator": operator, "value": value}]}}


@pytest.mark.parametrize(
    ("body", "where"),
    [
        (one("status", "like", "x"), "filters.AND[0].operator"),
        (one("num_points", "in", 3), "filters.AND[0].value"),
        (one("run_name", "regex", "(unclosed"), "filters.AND[0]"),
        ({"filters": {"status": {"$ne": "failed"}}}, "filters.status"),
        (one("error_traceback", "exists", True), "error_traceback"),
        (one("created_at", "gt", "yesterday"), "filters.AND[0].value"),
        ({"sort": {"field": "no_such_field", "direction": "asc"}}, "sort.field"),
        ({"sort": {"field": "created_at", "direction": "sideways"}}, "sort.direction"),
        ({"sorts": [{"direction": "asc"}]}, "sorts[0].field"),
    ],
)
async def test_bad_queries_are_400s_naming_the_field(
    api: Api, history: dict[str, Any], body: dict[str, Any], where: str
) -> None:
    r = await api.client.post(
        f"/v1/clusters/{history['cluster']}/executions/list", json=body, headers=api.h()
    )
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["type"] == "bad_request" and where in err["message"], err


async def test_latest_run_is_the_newest(api: Api, history: dict[str, Any]) -> None:
    r = await api.client.get(f"/v1/clusters/{history['cluster']}/executions", headers=api.h())
    newest = max(history["runs"], key=lambda x: x["created_at"])
    assert r.json()["run_id"] == newest["run_id"]
