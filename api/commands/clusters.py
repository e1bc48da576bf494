"""`clusterd clusters create|list`: cluster definitions, enough to go from a file to a run."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.table import Table

from api.commands.common import (
    NAMESPACE_DEFAULT,
    URL_DEFAULT,
    JsonOpt,
    KeyOpt,
    NamespaceOpt,
    UrlOpt,
    client,
    err,
    exits_on_error,
    out,
    print_json,
)

app = typer.Typer(no_args_is_help=True, help="cluster definitions: create, list")


def parse_params(text: str) -> dict[str, Any]:
    try:
        params = json.loads(text)
    except ValueError as exc:
        raise typer.BadParameter(f"not JSON: {exc}", param_hint="--params") from None
    if not isinstance(params, dict):
        raise typer.BadParameter("must be a JSON object, e.g. '{\"n_clusters\": 5}'", param_hint="--params")
    return params


@app.command("create")
@exits_on_error
def create(
    name: Annotated[str, typer.Argument(help="cluster name (unique in the namespace)")],
    collection: Annotated[
        list[str], typer.Option("--collection", "-c", help="collection id or name (repeatable)")
    ],
    algorithm: Annotated[str, typer.Option(help="clustering_method: kmeans, hdbscan, dbscan, …")] = "kmeans",
    params: Annotated[str, typer.Option(help="algorithm_params as a JSON object")] = "{}",
    feature: Annotated[
        list[str] | None,
        typer.Option("--feature", "-f", help="vector name to cluster (repeatable; default emb)"),
    ] = None,
    description: Annotated[str | None, typer.Option(help="free text")] = None,
    url: UrlOpt = URL_DEFAULT,
    key: KeyOpt = None,
    namespace: NamespaceOpt = NAMESPACE_DEFAULT,
    as_json: JsonOpt = False,
) -> None:
    """Create a vector cluster definition; prints its id."""
    body: dict[str, Any] = {
        "cluster_name": name,
        "collection_ids": list(collection),
        "vector_config": {
            "clustering_method": algorithm,
            "feature_uris": list(feature or ["emb"]),
            "algorithm_params": parse_params(params),
        },
    }
    if description is not None:
        body["description"] = description
    with client(url, key, namespace) as c:
        made = c.json("POST", "/v1/clusters", json=body)
    if as_json:
        print_json(made)
        return
    features = ", ".join(body["vector_config"]["feature_uris"])
    err().print(f"created cluster {name}: {algorithm} over {features}")
    typer.echo(made["cluster_id"])


@app.command("list")
@exits_on_error
def list_(
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 50,
    url: UrlOpt = URL_DEFAULT,
    key: KeyOpt = None,
    namespace: NamespaceOpt = NAMESPACE_DEFAULT,
    as_json: JsonOpt = False,
) -> None:
    """The namespace's cluster definitions, newest first."""
    with client(url, key, namespace) as c:
        page = c.json("GET", "/v1/clusters", params={"limit": limit})
    rows = page.get("results") or []
    if as_json:
        print_json(rows)
        return
    table = Table(title=f"clusters in {namespace} ({page.get('total_count', len(rows))})")
    for col in ("cluster id", "name", "algorithm", "status", "documents", "created"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            str(r.get("cluster_id")),
            str(r.get("cluster_name") or ""),
            str(r.get("algorithm") or (r.get("vector_config") or {}).get("clustering_method") or ""),
            str(r.get("status") or ""),
            str(r.get("num_documents_clustered") or r.get("num_documents") or 0),
            str(r.get("created_at") or "")[:19],
        )
    out().print(table)
