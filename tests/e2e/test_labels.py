"""Cluster labels end to end: offline c-TF-IDF labels from the members' text, and LLM labels from a
local OpenAI-compatible server over real HTTP (cache, candidates, failures falling back)."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import time
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest

from core import artifacts
from tests.conftest import Api, blobs, serve_asgi
from tests.e2e.run_helpers import assert_error, get_cluster, get_run, start, wait_status
from tests.fake_llm import FakeLLM, fake_llm

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


# --- LLM labels ---------------------------------------------------------------------------------


def by_topic(body: dict[str, Any]) -> dict[str, Any]:
    """The fake LLM's answer: it names the topic whose words the prompt's samples use most."""
    prompt = body["messages"][-1]["content"].split("Samples nearest its centre:")[1]
    samples = prompt.split("Distinctive words")[0]
    counts = {t: sum(samples.count(w) for w in words) for t, words in TOPICS.items()}
    t = max(counts, key=lambda k: counts[k])
    name = {0: "Football Matches", 1: "Home Baking", 2: "Astronomy"}[t]
    return {"label": name, "summary": f"Documents about {name.lower()}.", "keywords": [name.lower(), "llm"]}


@contextlib.asynccontextmanager
async def llm_api(make_settings: Any, fake: FakeLLM, **kw: Any) -> AsyncIterator[Api]:
    base = {
        "llm_base_url": fake.url,
        "llm_api_key": "sk-test-key-123",
        "llm_timeout_s": 2.0,
        "llm_max_retries": 1,
    }
    settings = make_settings(**(base | kw))
    async with serve_asgi(settings) as a:
        yield a


LLM_ON = {
    "enabled": True,
    "model_name": "gpt-4o-mini",  # mapped to the dated id
    "labeling_context": "Posts from a hobby forum",
    "max_samples_per_cluster": 4,
    "labeling_inputs": {
        "input_mappings": [{"input_key": "title", "source_type": "payload", "path": "title"}]
    },
}


async def test_llm_labels_prompt_and_cache(make_settings: Any) -> None:
    with fake_llm(by_topic) as fake:
        async with llm_api(make_settings, fake) as api:
            cid = await text_collection(api)
            cluster = await api.make_cluster(cid, k=3, llm_labeling=LLM_ON)
            run = await api.execute(cluster)
            assert run["status"] == "completed", run
            assert "llm_labeling_errors" not in run
            labels = {c["label"] for c in run["centroids"]}
            assert labels == {"Football Matches", "Home Baking", "Astronomy"}
            for c in run["centroids"]:
                assert c["summary"] == f"Documents about {c['label'].lower()}."
                assert c["keywords"] == [c["label"].lower(), "llm"]
                assert len(c["representative_ids"]) == 5  # max(5, max_samples_per_cluster)
            assert len(fake.requests) == 3
            req = fake.requests[0]
            assert req["model"] == "gpt-4o-mini-2024-07-18"
            assert req["response_format"] == {"type": "json_object"}
            assert fake.headers[0]["Authorization"] == "Bearer sk-test-key-123"
            prompt = fake.prompt(0)
            assert "Posts from a hobby forum" in prompt and "Distinctive words of this cluster:" in prompt
            samples = prompt.split("Samples nearest its centre:\n")[1].split("\n\n")[0].splitlines()
            assert len(samples) == 4 and all(s.split(". ", 1)[0].isdigit() for s in samples)
            # the same representatives again: every label comes from the cache, no request
            again = await api.execute(cluster)
            assert {c["label"] for c in again["centroids"]} == labels
            assert len(fake.requests) == 3
            # expired entries are not used (the TTL monitor may not have run yet)
            await api.app.state.services.db.llm_label_cache.update_many({}, {"$set": {"expires_at": _past()}})
            third = await api.execute(cluster)
            assert {c["label"] for c in third["centroids"]} == labels and len(fake.requests) == 6


def _past() -> Any:
    from datetime import timedelta

    from core.timeutil import utcnow

    return utcnow() - timedelta(seconds=1)


async def test_llm_candidates_and_distinct_labels(make_settings: Any) -> None:
    same = {"label": "Hobby Posts", "summary": "x", "keywords": ["hobby"]}
    with fake_llm(lambda body: same) as fake:
        async with llm_api(make_settings, fake) as api:
            cid = await text_collection(api)
            cluster = await api.make_cluster(cid, k=3, llm_labeling={**LLM_ON, "cache_ttl_seconds": 0})
            run = await api.execute(cluster)
            labels = [c["label"] for c in run["centroids"]]
            # near-duplicates made distinct: the first keeps it, the others take a keyword
            assert len(set(labels)) == 3 and sum(lab == "Hobby Posts" for lab in labels) == 1
            assert all(lab.startswith("Hobby Posts") for lab in labels)
            candidates = ["sport", "food", "space"]
            fake.reply = lambda body: {
                "label": {"Football Matches": "Sport", "Home Baking": "food"}.get(
                    by_topic(body)["label"], "other"
                )
            }
            opts = {**LLM_ON, "cache_ttl_seconds": 0, "candidate_labels": candidates}
            r = await api.client.post(
                f"/v1/clusters/{cluster}/execute", headers=api.h(), json={"llm_labeling": opts}
            )
            assert r.status_code == 200, r.text
            run = await api.wait_run(cluster, r.json()["additional_data"]["run_id"])
            assert (
                "The label must be exactly one of these candidate labels:\n- sport\n- food\n- space"
                in fake.prompt()
            )
            got = {topic_of_label(c): c["label"] for c in run["centroids"]}
            assert got[0] == "sport" and got[1] == "food"  # the candidate's own spelling
            assert got[2] not in candidates  # "other" is refused: the offline label stays
            refused = "LLM label 'other' is not one of the candidate labels"
            assert run["llm_labeling_errors"] == [f"{refused} (offline label kept for {cl_of(run, 2)})"]


def topic_of_label(c: dict[str, Any]) -> int:
    return {"sport": 0, "food": 1}.get(c["label"], 2)


def cl_of(run: dict[str, Any], topic: int) -> str:
    return next(c["cluster_id"] for c in run["centroids"] if topic_of_label(c) == topic)


@pytest.mark.parametrize("failure", ["status_500", "timeout", "malformed"])
async def test_llm_failure_falls_back_to_offline_labels(make_settings: Any, failure: str) -> None:
    with fake_llm(by_topic) as fake:
        if failure == "status_500":
            fake.status = 500
        elif failure == "timeout":
            fake.delay_s = 3.0  # > llm_timeout_s
        else:
            fake.content = "Sure! The label is: Football"
        async with llm_api(make_settings, fake, llm_max_retries=1 if failure == "status_500" else 0) as api:
            cid = await text_collection(api)
            cluster = await api.make_cluster(cid, k=3, llm_labeling=LLM_ON)
            run = await api.execute(cluster)
            assert run["status"] == "completed", run
            for c in run["centroids"]:  # offline labels, from the topic's words
                assert c["label"] == ", ".join(c["keywords"][:3]) and set(c["keywords"][:3]) <= set(
                    TOPICS[topic_of(c)]
                )
            [error] = run["llm_labeling_errors"]
            expected = {
                "status_500": "LLM endpoint answered HTTP 500",
                "timeout": "LLM request timed out after 2 s",
                "malformed": "LLM reply is not JSON",
            }[failure]
            assert error.startswith(expected) and error.endswith(
                "(offline label kept for cl_0, cl_1, cl_2)"
            ), error
            assert "sk-test" not in error and "127.0.0.1" not in error
            assert len(fake.requests) == (6 if failure == "status_500" else 3)  # one retry of a 500
            meta = await get_cluster(api, cluster)
            assert meta["llm_labeling_errors"] == run["llm_labeling_errors"]


async def test_llm_enabled_without_endpoint(api: Api) -> None:
    cid = await text_collection(api)
    run = await api.execute(await api.make_cluster(cid, k=3, llm_labeling={"enabled": True}))
    assert run["status"] == "completed"
    assert run["llm_labeling_errors"] == [
        "llm_labeling: no LLM endpoint is configured (CLUSTERD_LLM_BASE_URL); offline labels were kept"
    ]
    assert all(c["keywords"] for c in run["centroids"])


async def test_cancel_while_the_llm_labels(make_settings: Any) -> None:
    with fake_llm(by_topic) as fake:
        fake.delay_s = 0.4
        async with llm_api(make_settings, fake, llm_concurrency=1, llm_timeout_s=5.0) as api:
            cid = await text_collection(api)
            cluster = await api.make_cluster(cid, k=3, llm_labeling=LLM_ON)
            rid = await start(api, cluster)
            run = await wait_status(api, cluster, rid, {"completed", "failed", "canceled"} | {"processing"})
            deadline = time.monotonic() + 60
            while run["status"] == "processing" and run["progress"]["stage"] != "labeling":
                assert time.monotonic() < deadline, run
                await asyncio.sleep(0.02)
                run = await get_run(api, cluster, rid)
            assert run["progress"]["stage"] == "labeling", run
            r = await api.client.post(f"/v1/clusters/{cluster}/executions/{rid}/cancel", headers=api.h())
            assert r.status_code == 200, r.text
            # the worker stops after the call in flight: a later run completes once it has returned
            small = await api.make_cluster(cid, k=2)
            assert (await api.execute(small))["status"] == "completed"
            run = await get_run(api, cluster, rid)
            assert run["status"] == "canceled" and "centroids" not in run
            assert len(fake.requests) < 3


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


async def test_llm_without_summary_or_keywords(make_settings: Any) -> None:
    with fake_llm(by_topic) as fake:
        async with llm_api(make_settings, fake) as api:
            cid = await text_collection(api)
            opts = {
                **LLM_ON,
                "include_summary": False,
                "include_keywords": False,
                "sample_selection_strategy": "representative",
            }
            run = await api.execute(await api.make_cluster(cid, k=3, llm_labeling=opts))
            assert {c["label"] for c in run["centroids"]} == {"Football Matches", "Home Baking", "Astronomy"}
            assert all("summary" not in c and "keywords" not in c for c in run["centroids"])
            assert '"summary"' not in fake.prompt() and '"keywords"' not in fake.prompt()


@pytest.mark.redis
async def test_llm_labels_on_a_celery_worker(make_settings: Any, s3_settings: dict[str, Any]) -> None:
    """The production topology: a Celery worker (its own event loop and store client) calls the LLM."""
    from celery.contrib.testing.worker import start_worker

    from tests.conftest import redis_settings

    with fake_llm(by_topic) as fake:
        settings = redis_settings(make_settings, s3_settings, llm_base_url=fake.url, llm_max_retries=0)
        async with serve_asgi(settings) as api:
            cm = start_worker(
                api.app.state.services.celery,
                pool="solo",
                concurrency=1,
                perform_ping_check=False,
                shutdown_timeout=30,
            )
            await asyncio.to_thread(cm.__enter__)
            try:
                cid = await text_collection(api)
                run = await api.execute(await api.make_cluster(cid, k=3, llm_labeling=LLM_ON))
            finally:
                await asyncio.to_thread(cm.__exit__, None, None, None)
            assert run["status"] == "completed", run
            assert {c["label"] for c in run["centroids"]} == {"Football Matches", "Home Baking", "Astronomy"}
            assert len(fake.requests) == 3


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
