"""The demo client: plain HTTP against a clusterd, with a rich progress bar and result table."""

from __future__ import annotations

import time

import httpx
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table


def run_demo(url: str, key: str, n_clusters: int, namespace: str = "demo") -> None:
    from sklearn.datasets import load_digits

    console = Console()
    digits = load_digits()
    X, y = digits.data, digits.target
    auth = {"Authorization": f"Bearer {key}"}
    h = {**auth, "X-Namespace": namespace}
    with httpx.Client(base_url=url, timeout=120) as c:
        name = f"digits-{int(time.time())}"
        col = _ok(c.post("/v1/collections", json={"collection_name": name}, headers=h))["collection_id"]
        docs = [
            {
                "document_id": f"digit-{i:04d}",
                "vectors": {"pixels": x.tolist()},
                "metadata": {"label": int(t)},
            }
            for i, (x, t) in enumerate(zip(X, y, strict=True))
        ]
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            console=console,
        ) as bar:
            task = bar.add_task("ingesting", total=len(docs))
            for start in range(0, len(docs), 500):
                chunk = docs[start : start + 500]
                _ok(
                    c.post(
                        f"/v1/namespaces/{namespace}/documents/upsert",
                        json={"collection_id": col, "documents": chunk},
                        headers=auth,
                    )
                )
                bar.advance(task, len(chunk))
        cluster = _ok(
            c.post(
                "/v1/clusters",
                headers=h,
                json={
                    "cluster_name": name,
                    "collection_ids": [col],
                    "vector_config": {
                        "clustering_method": "kmeans",
                        "feature_uris": ["pixels"],
                        "algorithm_params": {"n_clusters": n_clusters},
                    },
                },
            )
        )["cluster_id"]
        run_id = _ok(c.post(f"/v1/clusters/{cluster}/execute", headers=h))["additional_data"]["run_id"]
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.percentage:>3.0f}%"),
            TimeElapsedColumn(),
            console=console,
        ) as bar:
            task = bar.add_task("clustering", total=1.0)
            while True:
                run = _ok(c.get(f"/v1/clusters/{cluster}/executions/{run_id}", headers=h))
                p = run.get("progress") or {}
                bar.update(
                    task,
                    completed=float(p.get("fraction", 0)),
                    description=f"clustering [{run['status']}: {p.get('stage', '')}]",
                )
                if run["status"] in ("completed", "failed", "canceled"):
                    break
                time.sleep(0.2)
    if run["status"] != "completed":
        console.print(f"[red]run {run_id} {run['status']}: {run.get('error_message')}")
        raise SystemExit(1)
    table = Table(title=f"run {run_id}: {run['num_clusters']} clusters over {run['num_points']} digits")
    for col_name in ("cluster", "members", "mean cosine", "nearest documents"):
        table.add_column(col_name)
    for cen in run["centroids"]:
        reps = ", ".join(r["document_id"] for r in cen.get("representative_ids", [])[:3])
        table.add_row(
            cen["cluster_id"], str(cen["num_members"]), f"{cen.get('mean_cosine_similarity', 0):.3f}", reps
        )
    console.print(table)
    m = run["metrics"]
    console.print(
        f"silhouette {m.get('silhouette_score'):.3f}  davies-bouldin {m.get('davies_bouldin_index'):.3f}  "
        f"calinski-harabasz {m.get('calinski_harabasz_score'):.1f}  time {run.get('execution_time_ms')} ms"
    )
    console.print(f"members: {run.get('members_key')}")


def _ok(r: httpx.Response) -> dict:
    if r.status_code >= 400:
        raise SystemExit(f"{r.request.method} {r.request.url.path} -> {r.status_code}: {r.text}")
    return r.json()  # type: ignore[no-any-return]
