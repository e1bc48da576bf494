"""GET /v1/clusters/{id}/groups and /visualization over HTTP, with the embedded worker: layouts in
members.parquet, downsampling, compact, 3-D, label overrides, csv export and layout stability."""

from __future__ import annotations

import csv
import io
from typing import Any

import numpy as np
import pytest

from tests.conftest import Api, blobs
from tests.e2e.run_helpers import assert_error

pytestmark = pytest.mark.e2e


async def run_with(api: Api, cluster_id: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    r = await api.client.post(f"/v1/clusters/{cluster_id}/execute", json=body or {}, headers=api.h())
    assert r.status_code == 200, r.text
    run = await api.wait_run(cluster_id, r.json()["additional_data"]["run_id"])
    assert run["status"] == "completed", run
    return run


async def get(api: Api, path: str, status: int = 200) -> Any:
    r = await api.client.get(path, headers=api.h())
    assert r.status_code == status, r.text
    return r.json()


async def export_rows(api: Api, cluster_id: str, run_id: str) -> list[dict[str, str]]:
    r = await api.client.get(
        f"/v1/clusters/{cluster_id}/executions/{run_id}/export?format=csv", headers=api.h()
    )
    assert r.status_code == 200, r.text
    return list(csv.DictReader(io.StringIO(r.text)))


def coords_by_doc(viz: dict[str, Any]) -> dict[str, np.ndarray]:
    axes = ("x", "y", "z")[: viz["n_components"]]
    return {p["document_id"]: np.asarray([p[a] for a in axes]) for p in viz["points"]}


async def test_groups_and_visualization_of_a_run(api: Api) -> None:
    col, _ = await api.make_collection(X=blobs(n_per=40, dims=8, centers=3))
    cid = await api.make_cluster(col, k=3)
    run = await run_with(api, cid)
    assert run["layout_stability_applied"] == "none" and "layout_stability_reason" not in run
    rows = await export_rows(api, cid, run["run_id"])
    assert set(rows[0]) >= {"x", "y"} and "z" not in rows[0]
    truth = {r["document_id"]: r["cluster_id"] for r in rows}

    groups = await get(api, f"/v1/clusters/{cid}/groups")
    assert groups["cluster_id"] == cid and groups["run_id"] == run["run_id"]
    assert groups["total_groups"] == 3 and groups["total_documents"] == 120
    assert [g["cluster_id"] for g in groups["groups"]] == ["cl_0", "cl_1", "cl_2"]
    assert sum(g["member_count"] for g in groups["groups"]) == 120
    by_cluster = {c: sorted(d for d, t in truth.items() if t == c) for c in ("cl_0", "cl_1", "cl_2")}
    distance = {r["document_id"]: float(r["distance_to_centroid"]) for r in rows}
    for g in groups["groups"]:
        assert g["member_count"] == len(by_cluster[g["cluster_id"]]) == 40
        assert g["label"] == f"Cluster {g['cluster_id'][3:]}"
        members = [m["document_id"] for m in g["members"]]
        assert len(members) == 10 and all(truth[m] == g["cluster_id"] for m in members)
        assert all(m["collection_id"] == col for m in g["members"])
        # nearest to the centroid first: the 10 smallest distances of the cluster
        nearest = sorted(by_cluster[g["cluster_id"]], key=lambda d: (distance[d], d))[:10]
        assert members == nearest

    page = await get(api, f"/v1/clusters/{cid}/groups?limit=1&offset=1&members_limit=5&members_offset=35")
    assert page["total_groups"] == 3 and [g["cluster_id"] for g in page["groups"]] == ["cl_1"]
    ordered = sorted(by_cluster["cl_1"], key=lambda d: (distance[d], d))
    assert [m["document_id"] for m in page["groups"][0]["members"]] == ordered[35:]
    bare = await get(api, f"/v1/clusters/{cid}/groups?members_limit=0&offset=2")
    assert [g["cluster_id"] for g in bare["groups"]] == ["cl_2"] and "members" not in bare["groups"][0]
    beyond = await get(api, f"/v1/clusters/{cid}/groups?offset=5")
    assert beyond["groups"] == [] and beyond["total_groups"] == 3

    viz = await get(api, f"/v1/clusters/{cid}/visualization")
    assert viz["cluster_id"] == cid and viz["run_id"] == run["run_id"] and viz["n_components"] == 2
    assert viz["total_points"] == viz["returned_points"] == 120 and viz["sampled"] is False
    points = coords_by_doc(viz)
    assert {p["document_id"]: p["cluster_id"] for p in viz["points"]} == truth
    xy = np.stack(list(points.values()))
    assert np.abs(xy).max() == pytest.approx(1.0, abs=1e-5)
    for r in rows:  # the export carries the same coordinates
        np.testing.assert_allclose([float(r["x"]), float(r["y"])], points[r["document_id"]], atol=1e-5)
    centroids = {c["cluster_id"]: c for c in viz["centroids"]}
    assert set(centroids) == {"cl_0", "cl_1", "cl_2"}
    for c, members in by_cluster.items():
        mean = np.mean([points[d] for d in members], axis=0)
        np.testing.assert_allclose([centroids[c]["x"], centroids[c]["y"]], mean, atol=1e-4)
        assert centroids[c]["num_members"] == 40 and centroids[c]["cluster_label"] == f"Cluster {c[3:]}"
    # three well separated blobs stay apart in the picture: every point is nearest its own centroid
    centre = {c: np.asarray([v["x"], v["y"]]) for c, v in centroids.items()}
    for doc, p in points.items():
        assert min(centre, key=lambda c: float(np.linalg.norm(p - centre[c]))) == truth[doc]

    small = await get(api, f"/v1/clusters/{cid}/visualization?max_points=30")
    assert small["returned_points"] == len(small["points"]) == 30 and small["sampled"] is True
    assert {p["cluster_id"] for p in small["points"]} == {"cl_0", "cl_1", "cl_2"}
    assert len(small["centroids"]) == 3
    for p in small["points"]:
        np.testing.assert_allclose([p["x"], p["y"]], points[p["document_id"]])
    assert await get(api, f"/v1/clusters/{cid}/visualization?max_points=30") == small  # seeded
    tiny = await get(api, f"/v1/clusters/{cid}/visualization?max_points=2")
    assert len(tiny["points"]) == 2

    compact = await get(api, f"/v1/clusters/{cid}/visualization?compact=true&max_points=30")
    assert set(compact["points"]) == {"x", "y", "cluster_ids", "document_ids"}
    assert compact["points"]["document_ids"] == [p["document_id"] for p in small["points"]]
    assert compact["points"]["cluster_ids"] == [p["cluster_id"] for p in small["points"]]
    assert compact["points"]["x"] == [p["x"] for p in small["points"]]
    assert compact["centroids"] == small["centroids"]
    only = await get(api, f"/v1/clusters/{cid}/visualization?centroids_only=true")
    assert only["points"] == [] and only["centroids"] == viz["centroids"]

    # label overrides reach groups and the visualization
    r = await api.client.patch(
        f"/v1/clusters/{cid}/executions/{run['run_id']}/labels",
        json={"labels": {"cl_1": "Beta"}},
        headers=api.h(),
    )
    assert r.status_code == 200, r.text
    groups = await get(api, f"/v1/clusters/{cid}/groups?members_limit=0")
    assert [g["label"] for g in groups["groups"]] == ["Cluster 0", "Beta", "Cluster 2"]
    only = await get(api, f"/v1/clusters/{cid}/visualization?centroids_only=true")
    assert [c["cluster_label"] for c in only["centroids"]] == ["Cluster 0", "Beta", "Cluster 2"]


async def test_query_validation_and_404s(api: Api) -> None:
    col, _ = await api.make_collection(X=blobs(n_per=10, dims=4))
    cid = await api.make_cluster(col, k=3)
    for path in (f"/v1/clusters/{cid}/groups", f"/v1/clusters/{cid}/visualization"):
        err = assert_error(await api.client.get(path, headers=api.h()), 404, "not_found")
        assert "no completed run" in err["message"]
    r = await api.client.get("/v1/clusters/clust_nope000000/groups", headers=api.h())
    assert_error(r, 404, "not_found")
    run = await run_with(api, cid)
    for query, field in (
        ("max_points=0", "max_points"),
        ("max_points=1000001", "max_points"),
        ("max_points=lots", "max_points"),
        ("compact=maybe", "compact"),
    ):
        r = await api.client.get(f"/v1/clusters/{cid}/visualization?{query}", headers=api.h())
        err = assert_error(r, 422, "validation_error")
        assert field in err["message"], err
    for query in ("limit=0", "limit=1001", "offset=-1", "members_limit=1001", "members_offset=-2"):
        r = await api.client.get(f"/v1/clusters/{cid}/groups?{query}", headers=api.h())
        err = assert_error(r, 422, "validation_error")
        assert query.split("=")[0] in err["message"], err
    assert (await get(api, f"/v1/clusters/{cid}/visualization?max_points=1000000"))["returned_points"] == 30
    r = await api.client.get(f"/v1/clusters/{cid}/visualization?run_id=run_0000000000000000", headers=api.h())
    assert_error(r, 404, "not_found")
    # by name, and a run by id
    name = (await get(api, f"/v1/clusters/{cid}"))["cluster_name"]
    assert (await get(api, f"/v1/clusters/{name}/groups"))["run_id"] == run["run_id"]
    by_run = await get(api, f"/v1/clusters/{cid}/visualization?run_id={run['run_id']}")
    assert by_run["run_id"] == run["run_id"]


async def test_three_components_and_deferred_visualization(api: Api) -> None:
    col, _ = await api.make_collection(X=blobs(n_per=20, dims=8, centers=4))
    cid = await api.make_cluster(
        col,
        k=4,
        vector_config={
            "clustering_method": "kmeans",
            "feature_uris": ["emb"],
            "algorithm_params": {"n_clusters": 4},
            "vis_n_components": 3,
        },
    )
    run3 = await run_with(api, cid)
    viz = await get(api, f"/v1/clusters/{cid}/visualization?compact=true")
    assert viz["n_components"] == 3 and set(viz["points"]) == {"x", "y", "z", "cluster_ids", "document_ids"}
    assert len(viz["points"]["z"]) == 80 and np.std(viz["points"]["z"]) > 0.05
    assert all({"x", "y", "z"} <= set(c) for c in viz["centroids"])
    rows = await export_rows(api, cid, run3["run_id"])
    assert {"x", "y", "z"} <= set(rows[0])

    # an execute override: 2-D for this run only
    run2 = await run_with(api, cid, {"vis_n_components": 2})
    viz2 = await get(api, f"/v1/clusters/{cid}/visualization")
    assert viz2["run_id"] == run2["run_id"] and viz2["n_components"] == 2 and "z" not in viz2["points"][0]
    assert (await get(api, f"/v1/clusters/{cid}/visualization?run_id={run3['run_id']}"))["n_components"] == 3

    deferred = await run_with(api, cid, {"defer_visualization": True})
    assert deferred["layout_stability_applied"] == "none"
    assert "defer_visualization" in deferred["layout_stability_reason"]
    r = await api.client.get(f"/v1/clusters/{cid}/visualization", headers=api.h())
    err = assert_error(r, 404, "not_found", "no_visualization")
    assert "defer_visualization" in err["message"]
    assert "x" not in (await export_rows(api, cid, deferred["run_id"]))[0]
    groups = await get(api, f"/v1/clusters/{cid}/groups")  # groups need no layout
    assert groups["run_id"] == deferred["run_id"] and groups["total_documents"] == 80


async def test_attribute_runs_have_groups_but_no_coordinates(api: Api) -> None:
    r = await api.client.post("/v1/collections", json={"collection_name": "shop"}, headers=api.h())
    col = r.json()["collection_id"]
    docs = [
        {"document_id": f"s{i:02d}", "metadata": {"cat": ["toys", "food"][i % 2], "brand": f"b{i % 3}"}}
        for i in range(12)
    ]
    await api.upsert(col, docs)
    cluster = await api.make_attribute_cluster(col, ["cat", "brand"], hierarchical=True)
    cid = cluster["cluster_id"]
    await run_with(api, cid)
    groups = await get(api, f"/v1/clusters/{cid}/groups?members_limit=100")
    assert groups["total_groups"] == 2 + 6 and groups["total_documents"] == 12
    by_id = {g["cluster_id"]: g for g in groups["groups"]}
    toys = by_id["cl_toys"]
    assert toys["label"] == "toys" and toys["member_count"] == 6 and "parent_cluster_id" not in toys
    assert sorted(m["document_id"] for m in toys["members"]) == [f"s{i:02d}" for i in range(0, 12, 2)]
    leaf = by_id["cl_toys_b0"]
    assert leaf["parent_cluster_id"] == "cl_toys"
    assert [m["document_id"] for m in leaf["members"]] == ["s00", "s06"]
    r = await api.client.get(f"/v1/clusters/{cid}/visualization", headers=api.h())
    err = assert_error(r, 404, "not_found", "no_visualization")
    assert "attribute" in err["message"]


async def test_layout_stability_across_re_runs(api: Api) -> None:
    X = blobs(n_per=40, dims=8, centers=3)
    col, _ = await api.make_collection(X=X)
    cid = await api.make_cluster(
        col,
        k=3,
        vector_config={
            "clustering_method": "kmeans",
            "feature_uris": ["emb"],
            "algorithm_params": {"n_clusters": 3},
            "layout_stability": "transform",
        },
    )
    first = await run_with(api, cid)
    assert first["layout_stability_applied"] == "none"
    assert "no previous completed run" in first["layout_stability_reason"]
    v1 = coords_by_doc(await get(api, f"/v1/clusters/{cid}/visualization"))

    # new documents, skewed towards one blob: a fresh PCA would move the frame
    rng = np.random.default_rng(5)
    extra = (np.eye(8)[0] * 10 + np.eye(8)[3] * 6 + rng.normal(0, 0.3, (30, 8))).astype(np.float32)
    await api.upsert(
        col, [{"document_id": f"n{i:03d}", "vectors": {"emb": x.tolist()}} for i, x in enumerate(extra)]
    )

    second = await run_with(api, cid)
    assert second["layout_stability_applied"] == "transform" and "layout_stability_reason" not in second
    v2 = coords_by_doc(await get(api, f"/v1/clusters/{cid}/visualization"))
    assert len(v2) == 150
    for doc, p in v1.items():  # the same documents land exactly where they were
        np.testing.assert_allclose(v2[doc], p, atol=1e-5)

    # align onto the transform-frame run: a fresh PCA of the grown data, rotated/scaled/shifted
    # onto run 2's picture of the shared documents
    aligned = await run_with(api, cid, {"layout_stability": "align"})
    assert aligned["layout_stability_applied"] == "aligned", aligned
    v_aligned = coords_by_doc(await get(api, f"/v1/clusters/{cid}/visualization"))
    fresh = await run_with(api, cid, {"layout_stability": "none"})
    assert fresh["layout_stability_applied"] == "none" and "layout_stability_reason" not in fresh
    v_fresh = coords_by_doc(await get(api, f"/v1/clusters/{cid}/visualization"))

    def sse(a: dict[str, np.ndarray]) -> float:
        return float(sum(np.sum((a[d] - v2[d]) ** 2) for d in v2))

    # least squares over similarity transforms: never worse than the unaligned fresh layout
    assert sse(v_aligned) < 0.25 * sse(v_fresh), (sse(v_aligned), sse(v_fresh))
    assert sse(v_aligned) / len(v2) < 0.01

    # the definition switched to align; the previous run (the fresh one) has the same data, so the
    # aligned layout coincides with it
    r = await api.client.patch(f"/v1/clusters/{cid}", json={"layout_stability": "align"}, headers=api.h())
    assert r.status_code == 200 and r.json()["layout_stability"] == "align"
    again = await run_with(api, cid)
    assert again["layout_stability_applied"] == "aligned"
    v_again = coords_by_doc(await get(api, f"/v1/clusters/{cid}/visualization"))
    assert max(float(np.linalg.norm(v_again[d] - v_fresh[d])) for d in v_fresh) < 1e-4
    # an older run's points come from its own artifact
    v_old = coords_by_doc(await get(api, f"/v1/clusters/{cid}/visualization?run_id={second['run_id']}"))
    assert all(np.array_equal(v_old[d], v2[d]) for d in v2)


async def test_stability_falls_back_to_a_fresh_layout_with_a_reason(api: Api) -> None:
    col, _ = await api.make_collection(X=blobs(n_per=40, dims=8, centers=3))
    cid = await api.make_cluster(col, k=3)
    low = {"AND": [{"field": "metadata.i", "operator": "lt", "value": 60}]}
    high = {"AND": [{"field": "metadata.i", "operator": "gte", "value": 60}]}
    first = await run_with(api, cid, {"filters": low})
    assert first["layout_stability_applied"] == "none" and "layout_stability_reason" not in first
    # no document in common with the previous run: nothing to align on
    disjoint = await run_with(api, cid, {"filters": high, "layout_stability": "align"})
    assert disjoint["layout_stability_applied"] == "none"
    assert f"previous run '{first['run_id']}' shares 0 documents" in disjoint["layout_stability_reason"]
    # a 3-D run cannot reuse a 2-D frame
    wider = await run_with(api, cid, {"layout_stability": "transform", "vis_n_components": 3})
    assert wider["layout_stability_applied"] == "none" and "2-D layout" in wider["layout_stability_reason"]
    # the previous run's projection artifact is gone: a fresh layout, and the reason says so
    store = api.app.state.services.artifacts
    raw = await api.client.get(f"/v1/clusters/{cid}/executions/{wider['run_id']}", headers=api.h())
    members_key = raw.json()["members_key"]
    layout_key = members_key.rsplit("/", 1)[0] + "/layout.npz"
    assert store.exists(layout_key)
    assert store.delete_prefix(layout_key) == 1
    lost = await run_with(api, cid, {"layout_stability": "transform", "vis_n_components": 3})
    assert lost["layout_stability_applied"] == "none"
    assert f"previous run '{wider['run_id']}' has no stored projection" in lost["layout_stability_reason"]
    viz = await get(api, f"/v1/clusters/{cid}/visualization")
    assert viz["run_id"] == lost["run_id"] and viz["n_components"] == 3 and len(viz["points"]) == 120
