"""Cluster lists over HTTP: filters, search, sort, pagination and stats against Python's answer over
the same stored records; the mixpeek SDK drives a filtered list."""

from __future__ import annotations

import random
import time
from typing import Any

import pytest

from tests.conftest import ADMIN_KEY, Api
from tests.e2e.test_run_history import list_all
from tests.e2e.test_sdk import sdk_kmeans_cluster
from tests.filter_oracle import oracle_select

pytestmark = pytest.mark.e2e

CLUSTER_DATES = frozenset({"created_at", "updated_at", "last_executed_at", "completed_at"})
CLUSTER_ALIASES = {"num_documents": "num_documents_clustered", "collection_ids": "input_collections"}
TEAMS = ["Search", "search", "Ads", "growth.core", None]


async def seed_clusters(api: Api, n: int = 45) -> list[dict[str, Any]]:
    """Clusters made through the API; status and counts set as finished runs would leave them."""
    rng = random.Random(3)
    col, _ = await api.make_collection()
    col2, _ = await api.make_collection(name="other-points", prefix="o")
    db = api.app.state.services.db
    for i in range(n):
        meta: dict[str, Any] = {"i": i}
        team = rng.choice(TEAMS)
        if team is not None:
            meta["team"] = team
        if rng.random() < 0.6:
            meta["score"] = round(rng.uniform(0, 10), 2)
        if rng.random() < 0.5:
            meta["tags"] = rng.sample(["prod", "beta", "nightly", "Legacy"], k=rng.randint(1, 3))
        body = {
            "cluster_name": f"{rng.choice(['Products', 'reviews', 'Support tickets'])} {i:02d}",
            "description": rng.choice(["weekly product review", "Support (EU)", None, "a.b*c("]),
            "metadata": meta,
            "collection_ids": [rng.choice([col, col2])],
            "vector_config": {
                "clustering_method": rng.choice(["kmeans", "hdbscan", "dbscan"]),
                "feature_uris": ["emb"],
            },
        }
        r = await api.client.post("/v1/clusters", json=body, headers=api.h())
        assert r.status_code == 200, r.text
        status = rng.choice(["PENDING", "COMPLETED", "COMPLETED", "FAILED", "PROCESSING"])
        fields: dict[str, Any] = {"status": status}
        if status == "COMPLETED":
            fields["num_documents_clustered"] = rng.randint(1, 900)
            fields["num_clusters"] = rng.randint(2, 9)
        await db.clusters.update_one({"cluster_id": r.json()["cluster_id"]}, {"$set": fields})
    # an ad-hoc (hidden) definition and another namespace's cluster never show up
    config = {
        "algorithm": "kmeans",
        "algorithm_params": {"n_clusters": 3},
        "feature_vector": {"vector_name": "emb"},
    }
    r = await api.client.post(
        "/v1/clusters/execute",
        json={"collection_ids": [col], "config": config},
        headers={**api.h(), "Prefer": "respond-async"},
    )
    assert r.status_code == 202, r.text
    col_b, _ = await api.make_collection(ns="team-b")
    await api.make_cluster(col_b, ns="team-b")
    ns = (await api.client.get(f"/v1/clusters/{r.json()['cluster_id']}", headers=api.h())).json()[
        "namespace_id"
    ]
    return [d async for d in db.clusters.find({"namespace_id": ns, "hidden": {"$ne": True}}, {"_id": 0})]


FILTERS: list[dict[str, Any]] = [
    {"status": "completed"},
    {"metadata.team": "SEARCH"},
    {"AND": [{"field": "metadata.team", "operator": "eq", "value": "Search", "case_sensitive": True}]},
    {"metadata.tags": ["legacy"]},
    {"AND": [{"field": "metadata.score", "operator": "gte", "value": 5}]},
    {"AND": [{"field": "num_documents", "operator": "gt", "value": 300}]},
    {"AND": [{"field": "algorithm", "operator": "nin", "value": ["kmeans"]}]},
    {"AND": [{"field": "description", "operator": "contains", "value": "B*C("}]},
    {"AND": [{"field": "cluster_name", "operator": "ends_with", "value": "5"}]},
    {"AND": [{"field": "description", "operator": "phrase", "value": "product review"}]},
    {"AND": [{"field": "created_at", "operator": "gt", "value": "2020-01-01T00:00:00Z"}]},
    {
        "OR": [
            {"AND": [{"field": "status", "operator": "eq", "value": "FAILED"}, {"metadata.team": "ads"}]},
            {"NOT": [{"field": "metadata.score", "operator": "exists", "value": True}]},
        ],
        "case_sensitive": False,
    },
    {
        "NOT": [
            {"OR": [{"field": "metadata.team", "operator": "is_null", "value": True}, {"status": "PENDING"}]}
        ]
    },
]


async def test_cluster_filters_match_python(api: Api) -> None:
    records = await seed_clusters(api)
    assert len(records) == 45
    for flt in FILTERS:
        got = await list_all(api, "/v1/clusters/list", {"filters": flt}, limit=7)
        expected = oracle_select(records, flt, datetime_fields=CLUSTER_DATES, aliases=CLUSTER_ALIASES)
        assert {c["cluster_id"] for c in got} == {c["cluster_id"] for c in expected}, flt
        r = await api.client.post("/v1/clusters/list", json={"filters": flt, "limit": 1}, headers=api.h())
        stats = r.json()["stats"]
        docs = sum(int(c.get("num_documents_clustered") or 0) for c in expected)
        by_status: dict[str, int] = {}
        for c in expected:
            by_status[c["status"]] = by_status.get(c["status"], 0) + 1
        assert stats == {
            "total_clusters": len(expected),
            "total_documents": docs,
            "avg_documents_per_cluster": pytest.approx(docs / len(expected)) if expected else 0.0,
            "clusters_by_status": by_status,
        }, flt


async def test_cluster_sort_search_and_pages(api: Api) -> None:
    records = await seed_clusters(api)
    # default: newest first, every record once across pages
    got = await list_all(api, "/v1/clusters/list", {}, limit=4)
    assert [c["cluster_id"] for c in got] == [
        c["cluster_id"]
        for c in sorted(records, key=lambda c: (c["created_at"], c["cluster_id"]), reverse=True)
    ]
    # metadata.score ascending, missing last
    got = await list_all(api, "/v1/clusters/list", {"sort": {"field": "metadata.score", "direction": "asc"}})
    scored = sorted(
        (c for c in records if "score" in c["metadata"]),
        key=lambda c: (c["metadata"]["score"], c["cluster_id"]),
    )
    rest = sorted((c for c in records if "score" not in c["metadata"]), key=lambda c: c["cluster_id"])
    assert [c["cluster_id"] for c in got] == [c["cluster_id"] for c in scored + rest]
    # GET with search (case-insensitive, across id, name, description, algorithm)
    for text in ("SUPPORT", "hdbscan", "b*c(", "support eu"):
        r = await api.client.get("/v1/clusters", params={"search": text, "limit": 100}, headers=api.h())
        terms = text.lower().split()
        expected = {
            c["cluster_id"]
            for c in records
            if all(
                any(
                    t in (c.get(f) or "").lower()
                    for f in ("cluster_id", "cluster_name", "description", "algorithm")
                )
                for t in terms
            )
        }
        assert expected and {c["cluster_id"] for c in r.json()["results"]} == expected, text
        assert r.json()["total_count"] == len(expected)
    # page numbers and include_total
    r = await api.client.post(
        "/v1/clusters/list?include_total=true", json={"page": 2, "page_size": 20}, headers=api.h()
    )
    p = r.json()["pagination"]
    assert (p["page"], p["page_size"], p["total"], p["total_pages"], p["next_page"]) == (2, 20, 45, 3, "3")
    # bad input
    r = await api.client.post(
        "/v1/clusters/list", json={"filters": {"AND": [{"operator": "eq"}]}}, headers=api.h()
    )
    assert r.status_code == 400 and "filters.AND[0]" in r.json()["error"]["message"]
    r = await api.client.post("/v1/clusters/list", json={"filters": {"namespace_id": "x"}}, headers=api.h())
    assert r.status_code == 400 and "namespace_id" in r.json()["error"]["message"]
    r = await api.client.post("/v1/clusters/list", json={"limit": "ten"}, headers=api.h())
    assert r.status_code == 422


def test_sdk_filtered_cluster_list(live_server: str) -> None:
    import httpx
    import mixpeek
    from mixpeek.models.create_collection_request import CreateCollectionRequest
    from mixpeek.models.list_cluster_executions_request import ListClusterExecutionsRequest
    from mixpeek.models.list_clusters_request import ListClustersRequest

    cfg = mixpeek.Configuration(host=live_server, access_token=ADMIN_KEY, api_key={"NamespaceHeader": "sdk"})
    client = mixpeek.ApiClient(cfg)
    cols = mixpeek.CollectionsApi(client)
    cols.create_collection(
        CreateCollectionRequest.from_dict(
            {"collection_name": "sdk-points", "source": {"type": "direct_upsert"}}
        )
    )

    docs = [{"document_id": f"d{i}", "vectors": {"emb": [float(i % 3), 1.0 + i % 2]}} for i in range(30)]
    r = httpx.post(
        f"{live_server}/v1/namespaces/sdk/documents/upsert",
        json={"collection_id": "sdk-points", "documents": docs},
        headers={"Authorization": f"Bearer {ADMIN_KEY}"},
    )
    assert r.status_code == 200, r.text
    clusters = mixpeek.ClustersApi(client)
    ids = {}
    for team in ("search", "ads", "Search"):
        created = sdk_kmeans_cluster(
            clusters, "sdk-points", name=f"c-{team}-{len(ids)}", k=2, metadata={"team": team}
        )
        ids[created.cluster_name] = created.cluster_id
    req = ListClustersRequest.from_dict(
        {"filters": {"AND": [{"field": "metadata.team", "operator": "eq", "value": "search"}]},
         "sort": {"field": "cluster_name", "direction": "asc"}}
    )  # fmt: skip
    page = clusters.list_clusters(list_clusters_request=req)
    assert [c.cluster_name for c in page.results] == ["c-Search-2", "c-search-0"]
    assert page.total_count == 2 and page.stats.total_clusters == 2
    # a filtered run list through the SDK too
    cid = ids["c-ads-1"]
    task = clusters.execute_clustering_clusters(cid)
    runs_api = mixpeek.ClusterExecutionsApi(client)
    deadline = time.monotonic() + 60
    while runs_api.get_cluster_execution(cid).status not in ("completed", "failed"):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    listed = runs_api.list_cluster_executions(
        cid,
        list_cluster_executions_request=ListClusterExecutionsRequest.from_dict(
            {"filters": {"AND": [{"field": "status", "operator": "eq", "value": "completed"}]}}
        ),
    )
    assert [r.run_id for r in listed.results] == [task.additional_data["run_id"]]
    assert listed.stats.executions_by_status == {"completed": 1}
