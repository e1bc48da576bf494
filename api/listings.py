"""Cluster and run lists: a list body -> filter + search + sort + page -> results, pagination, stats.

Filters, search and sort are validated before any query runs, so a bad one is a 400 naming the
field; stats are aggregated by the database over every match, never by loading the matches.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from api.pagination import Page, merge_body
from api.schemas.documents import document_out
from api.schemas.lists import ListBody
from api.schemas.runs import cluster_metadata, execution_result
from core.errors import BadRequest
from core.filters import CLUSTER_SCHEMA, DOCUMENT_SCHEMA, EXECUTION_SCHEMA, Schema, combine, compile_filter
from core.listing import SortKey, parse_sort, resolve_path, search_query
from core.store import clusters, documents, executions

CLUSTER_SEARCH = ("cluster_id", "cluster_name", "description", "algorithm")
RUN_SEARCH = ("run_id", "run_name", "error_message", "centroids.label", "centroids.summary")
NEWEST_FIRST = [SortKey("created_at", True)]
BY_DOCUMENT_ID = [SortKey("document_id", False)]
DOCUMENT_SEARCH = ("document_id",)
MAX_SELECT = 100


@dataclass(frozen=True)
class ListQuery:
    """A validated list body: the page, the scoped match and the sort keys."""

    page: Page
    match: dict[str, Any]
    keys: list[SortKey]


def list_query(
    page: Page,
    body: ListBody,
    *,
    scope: dict[str, Any],
    schema: Schema,
    search: tuple[str, ...],
    default: list[SortKey],
) -> ListQuery:
    """What the three lists share: body pagination, filters + search ANDed with the scope, sort."""
    match = combine(
        scope,
        compile_filter(body.filters, schema=schema, where="filters"),
        search_query(body.search, search),
    )
    keys = parse_sort(body.sort, body.sorts, schema=schema, default=default)
    return ListQuery(merge_body(page, body), match, keys)


async def cluster_list(svc: Any, ns: str, page: Page, body: ListBody | None) -> dict[str, Any]:
    q = list_query(
        page,
        body or ListBody(),
        scope={"namespace_id": ns, "hidden": {"$ne": True}},
        schema=CLUSTER_SCHEMA,
        search=CLUSTER_SEARCH,
        default=NEWEST_FIRST,
    )
    docs, total = await clusters.list_page(
        svc.db, match=q.match, keys=q.keys, offset=q.page.offset, limit=q.page.limit
    )
    return {
        "results": [cluster_metadata(d) for d in docs],
        "pagination": q.page.response(total),
        "total_count": total,
        "stats": await clusters.list_stats(svc.db, match=q.match),
    }


async def run_list(svc: Any, ns: str, cluster_id: str, page: Page, body: ListBody | None) -> dict[str, Any]:
    q = list_query(
        page,
        body or ListBody(),
        scope={"namespace_id": ns, "cluster_id": cluster_id},
        schema=EXECUTION_SCHEMA,
        search=RUN_SEARCH,
        default=NEWEST_FIRST,
    )
    runs, total = await executions.list_page(
        svc.db, match=q.match, keys=q.keys, offset=q.page.offset, limit=q.page.limit
    )
    return {
        "results": [execution_result(r, full=False) for r in runs],
        "pagination": q.page.response(total),
        "total_count": total,
        "stats": await executions.list_stats(svc.db, match=q.match),
    }


async def document_list(
    svc: Any, ns: str, collection_id: str, page: Page, body: ListBody | None
) -> dict[str, Any]:
    """Documents by ascending document_id (or `sort`); `select` limits the returned fields."""
    body = body or ListBody()
    q = list_query(
        page,
        body,
        scope={"namespace_id": ns, "collection_id": collection_id},
        schema=DOCUMENT_SCHEMA,
        search=DOCUMENT_SEARCH,
        default=BY_DOCUMENT_ID,
    )
    docs, total = await documents.list_page(
        svc.db,
        match=q.match,
        keys=q.keys,
        offset=q.page.offset,
        limit=q.page.limit,
        projection=_document_projection(body),
    )
    return {
        "results": [document_out(d, with_vectors=body.return_vectors) for d in docs],
        "pagination": q.page.response(total),
        "total_documents": total,
        "total_count": total,
    }


def _document_projection(body: ListBody) -> dict[str, int]:
    if body.select is None:
        return {} if body.return_vectors else {"vectors": 0}
    if len(body.select) > MAX_SELECT:
        raise BadRequest(f"select: at most {MAX_SELECT} fields", code="invalid_select")
    fields = {resolve_path(DOCUMENT_SCHEMA, f, f"select[{i}]") for i, f in enumerate(body.select)}
    keep = {"document_id", "collection_id", *fields}
    if body.return_vectors:
        keep.add("vectors")
    # a path and its parent cannot both be projected (MongoDB rejects the collision)
    paths = sorted(keep)
    kept = [p for p in paths if not any(p.startswith(q + ".") for q in paths if q != p)]
    return dict.fromkeys(kept, 1)
