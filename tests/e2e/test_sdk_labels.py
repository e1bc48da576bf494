"""The mixpeek SDK parses labelled runs and clusters (label, keywords, summary, representative_ids,
llm_labeling_errors) from a live clusterd whose LLM is a local fake server."""

from __future__ import annotations

import time
from typing import Any

import mixpeek
import pytest
from mixpeek.models.byo_upsert_request import BYOUpsertRequest
from mixpeek.models.create_collection_request import CreateCollectionRequest
from mixpeek.models.execute_cluster_by_id_request import ExecuteClusterByIdRequest

from tests.conftest import blobs, free_port, serve_uvicorn
from tests.e2e.test_labels import TOPICS, topic_docs
from tests.e2e.test_llm_labels import LLM_ON, by_topic
from tests.e2e.test_sdk import sdk, sdk_kmeans_cluster
from tests.fake_llm import fake_llm

pytestmark = pytest.mark.e2e


def sdk_docs() -> list[dict[str, Any]]:
    """The topic documents as the SDK's BYO model carries free fields: under `payload`."""
    docs = topic_docs(blobs(n_per=30), 30)
    return [{**{k: v for k, v in d.items() if k != "title"}, "payload": {"title": d["title"]}} for d in docs]


def wait(runs: mixpeek.ClusterExecutionsApi, cluster_id: str, run_id: str) -> Any:
    deadline = time.monotonic() + 60
    while True:
        run = runs.get_cluster_execution_by_run(cluster_id, run_id)
        if run.status in ("completed", "failed", "canceled"):
            return run
        assert time.monotonic() < deadline, run.status
        time.sleep(0.05)


def test_sdk_parses_labels_and_labeling_errors(make_settings: Any) -> None:
    with fake_llm(by_topic) as fake:
        settings = make_settings(port=free_port(), llm_base_url=fake.url, llm_max_retries=0)
        with serve_uvicorn(settings) as (url, _):
            client = sdk(url)
            col = mixpeek.CollectionsApi(client).create_collection(
                CreateCollectionRequest.from_dict(
                    {"collection_name": "sdk-texts", "source": {"type": "direct_upsert"}}
                )
            )
            mixpeek.BYODocumentsApi(client).upsert_documents_byo_namespaces(
                "sdk-ns",
                BYOUpsertRequest.from_dict({"collection_id": col.collection_id, "documents": sdk_docs()}),
            )
            clusters = mixpeek.ClustersApi(client)
            runs = mixpeek.ClusterExecutionsApi(client)
            # offline first: the SDK's CreateClusterRequest carries its llm_labeling defaults
            meta = sdk_kmeans_cluster(clusters, col.collection_id, name="sdk-labels", k=3, llm_labeling={})
            run_id = clusters.execute_clustering_clusters(meta.cluster_id).additional_data["run_id"]
            run = wait(runs, meta.cluster_id, run_id)
            assert run.status == "completed" and run.llm_labeling_errors is None
            for c in run.centroids:
                assert c.keywords and c.label == ", ".join(c.keywords[:3]) and c.summary
                assert c.representative_ids[0].collection_id == col.collection_id
                assert set(c.keywords[:3]) <= set().union(*TOPICS.values())

            # LLM labels for one run (execute override), through the SDK's own request model
            body = ExecuteClusterByIdRequest.from_dict(
                {"llm_labeling": {**LLM_ON, "model_name": "gpt-4o-mini-2024-07-18", "cache_ttl_seconds": 0}}
            )
            run_id = clusters.execute_clustering_clusters(meta.cluster_id, body).additional_data["run_id"]
            run = wait(runs, meta.cluster_id, run_id)
            assert {c.label for c in run.centroids} == {"Football Matches", "Home Baking", "Astronomy"}
            assert fake.requests and fake.requests[-1]["model"] == "gpt-4o-mini-2024-07-18"

            # the endpoint fails: offline labels, errors on the run and on the cluster
            fake.status = 503
            run_id = clusters.execute_clustering_clusters(meta.cluster_id, body).additional_data["run_id"]
            run = wait(runs, meta.cluster_id, run_id)
            assert run.status == "completed"
            assert run.llm_labeling_errors and run.llm_labeling_errors[0].startswith(
                "LLM endpoint answered HTTP 503"
            )
            assert all(c.label == ", ".join(c.keywords[:3]) for c in run.centroids)
            got = clusters.get_cluster(meta.cluster_id)
            assert got.llm_labeling_errors == run.llm_labeling_errors
            listed = runs.list_cluster_executions(meta.cluster_id)
            assert listed.results[0].llm_labeling_errors == run.llm_labeling_errors
