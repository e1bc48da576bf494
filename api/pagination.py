"""Pagination query of the contract (§2.2) and the PaginationResponse it produces."""

from __future__ import annotations

import base64
import json
import math
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Query

from core.errors import ValidationFailed


@dataclass
class Page:
    limit: int
    offset: int
    include_total: bool

    def response(self, total: int) -> dict[str, Any]:
        page = self.offset // self.limit + 1
        has_next = self.offset + self.limit < total
        out: dict[str, Any] = {
            "page": page,
            "page_size": self.limit,
            "total": total if self.include_total else None,
            "total_pages": math.ceil(total / self.limit) if self.include_total else None,
            "next_page": str(page + 1) if has_next else None,
            "previous_page": str(page - 1) if page > 1 else None,
            "next_cursor": encode_cursor(self.offset + self.limit) if has_next else None,
        }
        return out


def encode_cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"o": offset}).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        offset = json.loads(raw)["o"]
        if not isinstance(offset, int) or isinstance(offset, bool) or not 0 <= offset <= 10**7:
            raise ValueError
        return offset
    except Exception:
        raise ValidationFailed("cursor: not a cursor this server issued") from None


def make_page(
    limit: int | None = None,
    page_size: int | None = None,
    offset: int | None = None,
    page: int | None = None,
    cursor: str | None = None,
    include_total: bool = False,
) -> Page:
    size = limit if limit is not None else page_size
    size = 10 if size is None else size
    if not 1 <= size <= 1000:
        raise ValidationFailed(f"limit: must be between 1 and 1000 (got {size})")
    if offset is None and cursor:
        # a cursor may walk past the 10,000 cap of an explicit offset: the cap is the contract's
        # guard on hand-written offsets, not a limit on how far a client can page
        return Page(limit=size, offset=decode_cursor(cursor), include_total=include_total)
    if offset is None:
        if page is not None:
            if page < 1:
                raise ValidationFailed(f"page: must be at least 1 (got {page})")
            offset = (page - 1) * size
        else:
            offset = 0
    if not 0 <= offset <= 10000:
        raise ValidationFailed(f"offset: must be between 0 and 10000 (got {offset})")
    return Page(limit=size, offset=offset, include_total=include_total)


def merge_body(page: Page, body: Any) -> Page:
    """POST list routes: pagination keys in the body win over the query's (api.schemas.lists.ListBody)."""
    if body is None:
        return page
    include_total = bool(body.include_total) or page.include_total
    if not body.paginates():
        return Page(limit=page.limit, offset=page.offset, include_total=include_total)
    return make_page(
        body.limit,
        body.page_size,
        body.offset,
        body.page,
        body.cursor or body.next_cursor or body.after,
        include_total,
    )


async def page_query(  # async: see api.deps.get_services
    limit: Annotated[int | None, Query()] = None,
    page_size: Annotated[int | None, Query()] = None,
    offset: Annotated[int | None, Query()] = None,
    page: Annotated[int | None, Query()] = None,
    cursor: Annotated[str | None, Query()] = None,
    next_cursor: Annotated[str | None, Query()] = None,
    after: Annotated[str | None, Query()] = None,
    include_total: Annotated[bool, Query()] = False,
) -> Page:
    return make_page(limit, page_size, offset, page, cursor or next_cursor or after, include_total)


PageDep = Annotated[Page, Depends(page_query)]
