"""LLM cluster labels from a local OpenAI-compatible server over real HTTP (tests/fake_llm.py):
the prompt it receives, the cache and its expiry, candidate labels, distinct labels, failures
falling back to the offline labels, cancel during labeling, a real Celery worker."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.conftest import Api, serve_asgi
from tests.e2e.run_helpers import get_cluster, get_run, start, wait_status
from tests.e2e.test_labels import TOPICS, text_collection, topic_of
from tests.fake_llm import FakeLLM, fake_llm

pytestmark = pytest.mark.e2e


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
