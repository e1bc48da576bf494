"""Offline cluster labels end to end: c-TF-IDF labels, keywords and summaries from the members'
text (labeling_inputs or every string field), `Cluster <k>` without text, overrides and exports,
ad-hoc and multi-feature runs. LLM labels: test_llm_labels.py."""

from __future__ import annotations

import csv
import io
from typing import Any

import numpy as np
import pytest

from core import artifacts
from tests.conftest import Api, blobs
from tests.e2e.run_helpers import assert_error

pytestmark = pytest.mark.e2e

TOPICS = {
    0: ["football", "goal", "striker", "league", "match", "penalty", "coach"],
    1: ["bread", "flour", "oven", "dough", "recipe", "yeast", "baking"],
    2: ["galaxy", "telescope", "planet", "orbit", "comet", "nebula", "astronomer"],
}
FILLER = ["the", "a", "today", "with", "and", "new", "very", "we", "saw"]


def topic_docs(X: np.ndarray, n_per: int, seed: int = 0, field: str = "title") -> list[dict[str, Any]]:
    """Documents whose `field` text is drawn from the words of their blob's topic."""
    rng = np.random.default_rng(seed)
    docs = []
    for i, x in enumerate(X):
        words = list(rng.choice(TOPICS[i // n_per], 4)) + list(rng.choice(FILLER, 3))
        rng.shuffle(words)
        docs.append(
            {
                "document_id": f"d{i:05d}",
                "vectors": {"emb": x.tolist()},
                field: " ".join(words),
                "metadata": {"i": i, "topic": i // n_per},
            }
        )
    return docs


async def text_collection(api: Api, name: str = "texts", n_per: int = 30, **kw: Any) -> str:
    r = await api.client.post("/v1/collections", json={"collection_name": name}, headers=api.h())
    assert r.status_code == 200, r.text
    cid = str(r.json()["collection_id"])
    await api.upsert(cid, topic_docs(blobs(n_per=n_per), n_per, **kw))
    return cid


def topic_of(centroid: dict[str, Any]) -> int:
    """The topic whose words the centroid's keywords are."""
    hits = {t: len(set(centroid["keywords"]) & set(words)) for t, words in TOPICS.items()}
    return max(hits, key=lambda t: hits[t])


async def test_offline_labels_name_each_topic(api: Api) -> None:
    cid = await text_collection(api)
    cluster = await api.make_cluster(cid, k=3)
    run = await api.execute(cluster)
    assert run["status"] == "completed", run
    assert "llm_labeling_errors" not in run
    seen = set()
    for c in run["centroids"]:
        t = topic_of(c)
        seen.add(t)
        words = set(TOPICS[t])
        assert len(c["keywords"]) >= 3 and set(c["keywords"][:3]) <= words, c
        assert c["label"] == ", ".join(c["keywords"][:3])  # three top keywords
        assert not set(c["label"].split(", ")) & set(FILLER)  # stop words never label
        assert c["summary"].startswith(f"{c['num_members']} documents about {c['keywords'][0]}")
        assert len(c["representative_ids"]) == 5 and all(
            r["collection_id"] == cid for r in c["representative_ids"]
        )
    assert seen == {0, 1, 2}
    assert len({c["label"] for c in run["centroids"]}) == 3
    # the artifact and the export carry the same labels
    r = await api.client.get(f"/v1/clusters/{cluster}/executions/{run['run_id']}", headers=api.h())
    table = artifacts.read_table(api.app.state.services.artifacts, r.json()["parquet_path"])
    assert dict(
        zip(table.column("cluster_id").to_pylist(), table.column("label").to_pylist(), strict=True)
    ) == {c["cluster_id"]: c["label"] for c in run["centroids"]}
    # search over centroids.label finds the run by a topic word
    r = await api.client.post(
        f"/v1/clusters/{cluster}/executions/list", headers=api.h(), json={"search": "telescope"}
    )
    assert r.status_code == 200 and r.json()["total_count"] == 1


async def test_overrides_apply_over_new_labels_and_export(api: Api) -> None:
    cid = await text_collection(api)
    cluster = await api.make_cluster(cid, k=3)
    run = await api.execute(cluster)
    rid = run["run_id"]
    machine = {c["cluster_id"]: c["label"] for c in run["centroids"]}
    r = await api.client.patch(
        f"/v1/clusters/{cluster}/executions/{rid}/labels", headers=api.h(), json={"labels": {"cl_0": "Mine"}}
    )
    assert r.status_code == 200, r.text
    r = await api.client.get(f"/v1/clusters/{cluster}/executions/{rid}", headers=api.h())
    by_id = {c["cluster_id"]: c for c in r.json()["centroids"]}
    assert by_id["cl_0"]["label"] == "Mine" and by_id["cl_0"]["original_label"] == machine["cl_0"]
    assert by_id["cl_1"]["label"] == machine["cl_1"] and by_id["cl_1"]["keywords"]
    r = await api.client.get(
        f"/v1/clusters/{cluster}/executions/{rid}/export",
        params={"format": "csv", "cluster_label": machine["cl_1"]},
        headers=api.h(),
    )
    assert r.status_code == 200, r.text
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert len(rows) == by_id["cl_1"]["num_members"]
    assert {(row["cluster_id"], row["cluster_label"]) for row in rows} == {("cl_1", machine["cl_1"])}
    r = await api.client.get(
        f"/v1/clusters/{cluster}/executions/{rid}/export", params={"format": "csv"}, headers=api.h()
    )
    labels = {row["cluster_id"]: row["cluster_label"] for row in csv.DictReader(io.StringIO(r.text))}
    assert labels == {**machine, "cl_0": "Mine"}


async def test_no_text_gives_cluster_k(api: Api) -> None:
    cid, _ = await api.make_collection()  # metadata {"i": n} only: no strings
    run = await api.execute(await api.make_cluster(cid, k=3))
    assert run["status"] == "completed"
    assert sorted(c["label"] for c in run["centroids"]) == ["Cluster 0", "Cluster 1", "Cluster 2"]
    assert all("keywords" not in c and "summary" not in c for c in run["centroids"])


async def test_representatives_are_the_members_nearest_the_centroid(api: Api) -> None:
    """representative_ids are each cluster's five members nearest its centroid per
    members.parquet, ties by run order (the labelling stage ranks them; the records do not)."""
    cid, _ = await api.make_collection()
    run = await api.execute(await api.make_cluster(cid, k=3))
    assert run["status"] == "completed", run
    members = artifacts.read_table(api.app.state.services.artifacts, run["members_key"]).to_pylist()
    for c in run["centroids"]:
        mine = [
            (m["distance_to_centroid"], i, m["document_id"])
            for i, m in enumerate(members)
            if m["cluster_id"] == c["cluster_id"]
        ]
        nearest = [d for _, _, d in sorted(mine)[:5]]
        assert [r["document_id"] for r in c["representative_ids"]] == nearest, c["cluster_id"]
        assert all(r["collection_id"] == cid for r in c["representative_ids"])


async def test_labeling_inputs_choose_the_field(api: Api) -> None:
    r = await api.client.post("/v1/collections", json={"collection_name": "two-fields"}, headers=api.h())
    cid = r.json()["collection_id"]
    docs = topic_docs(blobs(n_per=30), 30, field="body")
    for d in docs:  # a misleading second field, the same for everybody
        d["title"] = "quarterly report draft"
    await api.upsert(cid, docs)
    mapping = {"input_mappings": [{"input_key": "text", "source_type": "payload", "path": "body"}]}
    cluster = await api.make_cluster(cid, k=3, llm_labeling={"labeling_inputs": mapping})
    run = await api.execute(cluster)
    for c in run["centroids"]:
        assert set(c["keywords"][:3]) <= set(TOPICS[topic_of(c)])
        assert "quarterly" not in c["keywords"]
    # a path under metadata resolves too (metadata.topic is a number: text "0", "1", "2" -> no words)
    bad = {"input_mappings": [{"input_key": "t", "source_type": "payload"}]}
    r = await api.client.post(
        "/v1/clusters",
        headers=api.h(),
        json={
            "collection_ids": [cid],
            "vector_config": {"clustering_method": "kmeans", "feature_uris": ["emb"]},
            "llm_labeling": {"labeling_inputs": bad},
        },
    )
    err = assert_error(r, 422, "validation_error")
    assert "llm_labeling.labeling_inputs.input_mappings[0].path" in err["message"]
    r = await api.client.post(
        f"/v1/clusters/{cluster}/execute",
        headers=api.h(),
        json={"llm_labeling": {"max_samples_per_cluster": 50}},
    )
    assert "llm_labeling.max_samples_per_cluster" in assert_error(r, 422, "validation_error")["message"]


async def test_adhoc_run_is_labelled(api: Api) -> None:
    cid = await text_collection(api)
    r = await api.client.post(
        "/v1/clusters/execute",
        headers=api.h(),
        json={
            "collection_ids": [cid],
            "config": {
                "algorithm": "kmeans",
                "algorithm_params": {"n_clusters": 3},
                "feature_vector": {"vector_name": "emb"},
                "llm_labeling": {"enabled": True},
            },
        },
    )
    assert r.status_code == 200, r.text
    body = r.json()
    for c in body["centroids"]:
        assert set(c["keywords"][:3]) <= set(TOPICS[topic_of(c)]) and c["label"] and c["summary"]
    assert body["llm_labeling_errors"][0].startswith("llm_labeling: no LLM endpoint is configured")
    r = await api.client.post(
        "/v1/clusters/execute",
        headers=api.h(),
        json={
            "collection_ids": [cid],
            "config": {
                "algorithm": "kmeans",
                "feature_vector": {"vector_name": "emb"},
                "llm_labeling": {"provider": "x"},
            },
        },
    )
    assert "llm_labeling.provider" in assert_error(r, 422, "validation_error")["message"]


async def test_independent_multi_feature_runs_are_labelled(api: Api) -> None:
    """Each feature's clusters get offline labels; the feature's name keeps them apart."""
    r = await api.client.post("/v1/collections", json={"collection_name": "multi-texts"}, headers=api.h())
    cid = r.json()["collection_id"]
    X = blobs(n_per=30)
    docs = topic_docs(X, 30)
    for d, x in zip(docs, X[::-1], strict=True):  # feature b groups the same documents
        d["vectors"]["b"] = x.tolist()
    await api.upsert(cid, docs)
    body = {
        "collection_ids": [cid],
        "vector_config": {
            "clustering_method": "kmeans",
            "feature_uris": ["emb", "b"],
            "multi_feature_strategy": "independent",
            "algorithm_params": {"n_clusters": 3},
        },
    }
    r = await api.client.post("/v1/clusters", json=body, headers=api.h())
    assert r.status_code == 200, r.text
    run = await api.execute(r.json()["cluster_id"])
    assert run["status"] == "completed", run
    assert len(run["centroids"]) == 6
    for c in run["centroids"]:
        assert set(c["keywords"][:3]) <= set(TOPICS[topic_of(c)])
        assert c["label"].startswith(", ".join(c["keywords"][:3]) + " (")
    assert len({c["label"] for c in run["centroids"]}) == 6
    table = artifacts.read_table(api.app.state.services.artifacts, run["parquet_path"])
    assert sorted(table.column("label").to_pylist()) == sorted(c["label"] for c in run["centroids"])
