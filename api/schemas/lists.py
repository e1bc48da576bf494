"""List request bodies (ListClustersRequest, ListClusterExecutionsRequest, ListDocumentsRequest)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, StrictInt


class ListBody(BaseModel):
    """Every list body: pagination keys (body wins over the query), filters, sort, search."""

    model_config = ConfigDict(extra="ignore")
    limit: StrictInt | None = None
    page_size: StrictInt | None = None
    offset: StrictInt | None = None
    page: StrictInt | None = None
    cursor: str | None = None
    next_cursor: str | None = None
    after: str | None = None
    include_total: bool | None = None
    filters: dict[str, Any] | None = None
    sort: dict[str, Any] | None = None
    sorts: list[Any] | None = None
    search: str | None = None
    # documents only
    return_vectors: bool = False
    select: list[str] | None = None

    def paginates(self) -> bool:
        keys = (self.limit, self.page_size, self.offset, self.page, self.cursor, self.next_cursor, self.after)
        return any(v is not None for v in keys)
