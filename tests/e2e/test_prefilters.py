"""Document pre-filters select what a run clusters (stored on the cluster, or overridden for one
run), and the document list answers the same filter language."""

from __future__ import annotations

import io
from typing import Any

import pyarrow.parquet as pq
import pytest

from tests.conftest import Api, blobs
from tests.e2e.test_run_history import list_all
from tests.filter_oracle import oracle_select

pytestmark = pytest.mark.e2e

GROUPS = ["alpha", "Beta", "gamma"]


async def grouped_collection(api: Api) -> tuple[str, list[dict[str, Any]]]:
    """90 documents, three blobs of 30; each blob's documents carry its group name."""
    X = blobs(n_per=30)
    r = await api.client.post("/v1/collections", json={"collection_name": "grouped"}, headers=api.h())
    col = r.json()["collection_id"]
    docs = [
        {
            "document_id": f"d{i:03d}",
            "vectors": {"emb": x.tolist()},
            "metadata": {"group": GROUPS[i // 30], "i": i, **({"even": True} if i % 2 == 0 else {})},
            "title": f"Doc {i} of {GROUPS[i // 30]}",
        }
        for i, x in enumerate(X)
    ]
    await api.upsert(col, docs)
    return col, docs


async def members(api: Api, run: dict[str, Any]) -> list[str]:
    table = pq.read_table(io.BytesIO(api.app.state.services.artifacts.get_bytes(run["members_key"])))
    return sorted(table.column("document_id").to_pylist())


async def test_stored_filters_and_one_run_overrides(api: Api) -> None:
    col, docs = await grouped_collection(api)
    stored = {"metadata.group": ["ALPHA", "beta"]}  # shorthand `in`, case-insensitive
    cid = await api.make_cluster(col, k=2, filters=stored)
    run = await api.execute(cid)
    assert run["status"] == "completed", run
    expected = [d["document_id"] for d in docs if d["metadata"]["group"] in ("alpha", "Beta")]
    assert run["num_points"] == run["source_documents"] == 60 and run["num_clusters"] == 2
    assert await members(api, run) == expected
    # two well separated blobs: each cluster holds one group
    sizes = sorted(c["num_members"] for c in run["centroids"])
    assert sizes == [30, 30]

    # one run with other filters and a sample; the definition keeps its own
    override = {"AND": [{"field": "metadata.group", "operator": "eq", "value": "gamma"},
                        {"field": "metadata.even", "operator": "exists", "value": True}]}  # fmt: skip
    r = await api.client.post(
        f"/v1/clusters/{cid}/execute", json={"filters": override, "sample_size": 10}, headers=api.h()
    )
    assert r.status_code == 200, r.text
    run2 = await api.wait_run(cid, r.json()["additional_data"]["run_id"])
    assert run2["status"] == "completed", run2
    gamma_even = [
        d["document_id"] for d in docs if d["metadata"]["group"] == "gamma" and d["metadata"]["i"] % 2 == 0
    ]
    assert run2["source_documents"] == len(gamma_even) == 15 and run2["num_points"] == 10
    assert set(await members(api, run2)) <= set(gamma_even)
    cluster = (await api.client.get(f"/v1/clusters/{cid}", headers=api.h())).json()
    assert cluster["filters"] == stored
    run3 = await api.execute(cid)
    assert run3["num_points"] == 60

    # PATCH replaces the stored filters; the next run follows them
    r = await api.client.patch(
        f"/v1/clusters/{cid}", json={"filters": {"metadata.i": [0, 1, 2, 89]}}, headers=api.h()
    )
    assert r.status_code == 200, r.text
    run4 = await api.execute(cid)
    assert await members(api, run4) == ["d000", "d001", "d002", "d089"]


async def test_filters_that_match_nothing_fail_the_run_as_validation(api: Api) -> None:
    col, _ = await grouped_collection(api)
    cid = await api.make_cluster(col, k=2, filters={"metadata.group": "delta"})
    run = await api.execute(cid)
    assert run["status"] == "failed" and run["failure_category"] == "validation"
    assert "matching the filters" in run["error_message"]


async def test_attribute_runs_honour_filters(api: Api) -> None:
    col, docs = await grouped_collection(api)
    body = {
        "collection_ids": [col],
        "cluster_type": "attribute",
        "attribute_config": {"attributes": ["metadata.group"]},
        "filters": {"NOT": [{"field": "metadata.group", "operator": "eq", "value": "beta"}]},
    }
    r = await api.client.post("/v1/clusters", json=body, headers=api.h())
    assert r.status_code == 200, r.text
    run = await api.execute(r.json()["cluster_id"])
    assert run["status"] == "completed", run
    assert run["num_points"] == 60 and sorted(c["label"] for c in run["centroids"]) == ["alpha", "gamma"]


def cond(field: str, operator: str, value: Any) -> dict[str, Any]:
    return {"field": field, "operator": operator, "value": value}


@pytest.mark.parametrize(
    ("method", "path", "body", "where"),
    [
        ("post", "/v1/clusters", {"filters": {"AND": [cond("x", "nope", 1)]}}, "filters.AND[0].operator"),
        ("post", "/v1/clusters", {"filters": {"vectors.emb": 1}}, "filters.vectors.emb"),
        ("patch", "/v1/clusters/{cid}", {"filters": {"OR": "x"}}, "filters.OR"),
        ("post", "/v1/clusters/{cid}/execute", {"filters": {"metadata.a": {"$gt": 1}}}, "filters.metadata.a"),
    ],
)  # fmt: skip
async def test_bad_prefilters_are_400s_and_change_nothing(
    api: Api, method: str, path: str, body: dict[str, Any], where: str
) -> None:
    col, _ = await grouped_collection(api)
    cid = await api.make_cluster(col, k=2)
    if path == "/v1/clusters":
        body = {
            **body,
            "collection_ids": [col],
            "vector_config": {"clustering_method": "kmeans", "feature_uris": ["emb"]},
        }
    r = await getattr(api.client, method)(path.format(cid=cid), json=body, headers=api.h())
    assert r.status_code == 400, r.text
    assert where in r.json()["error"]["message"]
    listed = (await api.client.get("/v1/clusters", headers=api.h())).json()
    assert listed["total_count"] == 1 and listed["results"][0]["filters"] == {}
    assert (await api.client.get(f"/v1/clusters/{cid}/executions", headers=api.h())).json() is None


DOC_FILTERS: list[dict[str, Any]] = [
    {"metadata.group": "BETA"},
    {"AND": [cond("metadata.i", "lt", 10), cond("metadata.even", "is_null", True)]},
    {"OR": [cond("title", "words", "gamma 70"), cond("document_id", "ends_with", "00")]},
    {"NOT": [cond("metadata.group", "in", ["alpha", "gamma"])], "metadata.even": True},
]


async def test_document_list_filters_sort_select(api: Api) -> None:
    col, _ = await grouped_collection(api)
    stored = [
        d
        async for d in api.app.state.services.db.documents.find(
            {"collection_id": col}, {"_id": 0, "vectors": 0}
        )
    ]
    path = f"/v1/collections/{col}/documents/list"
    for flt in DOC_FILTERS:
        got = await list_all(api, path, {"filters": flt}, limit=9)
        expected = oracle_select(stored, flt, datetime_fields=frozenset({"created_at", "updated_at"}))
        assert expected and [d["document_id"] for d in got] == sorted(d["document_id"] for d in expected), flt
    r = await api.client.post(
        path,
        json={"sort": {"field": "metadata.i", "direction": "desc"}, "limit": 3, "select": ["metadata.group"]},
        headers=api.h(),
    )
    assert r.status_code == 200, r.text
    assert r.json()["results"] == [
        {"document_id": f"d{i:03d}", "collection_id": col, "metadata": {"group": "gamma"}}
        for i in (89, 88, 87)
    ]
    r = await api.client.post(path, json={"search": "d01", "limit": 100}, headers=api.h())
    assert [d["document_id"] for d in r.json()["results"]] == [f"d{i:03d}" for i in range(10, 20)]
    forbidden = {"AND": [{"field": "_id", "operator": "exists", "value": True}]}
    r = await api.client.post(path, json={"filters": forbidden}, headers=api.h())
    assert r.status_code == 400 and "_id" in r.json()["error"]["message"]
    r = await api.client.post(path, json={"select": ["vectors.emb"]}, headers=api.h())
    assert r.status_code == 400 and "select[0]" in r.json()["error"]["message"]
