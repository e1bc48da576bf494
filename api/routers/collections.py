"""Collections (C1-C3 + lists) and their documents (D1-D4 + get/delete)."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Request
from pydantic import BaseModel, ConfigDict, Field, model_validator

from api import body_buffers
from api.body_limit import UPLOAD_PATH
from api.deps import NamespaceDep, PrincipalDep, ServicesDep, resolve_namespace
from api.fast_json import FastJSONRoute
from api.listings import document_list
from api.pagination import PageDep, merge_body
from api.purge import purge_collection
from api.schemas.documents import document_out
from api.schemas.errors import V1, error_responses
from api.schemas.lists import ListBody
from api.schemas.stored import Metadata
from api.schemas.stored import check as _check_stored
from core import documents as docval
from core import uploads
from core.errors import NotFound, ValidationFailed
from core.ids import new_document_id
from core.store import collections, documents
from core.timeutil import iso, utcnow
from core.vectors import VECTOR_NAME_RE, default_feature_uri, storage_name

router = APIRouter(responses=error_responses(*V1))

SOURCE_TYPES = {"bucket", "collection", "taxonomy", "cluster", "direct_upsert", "signals", "none"}
SUPPORTED_SOURCES = {"direct_upsert", "none"}
FEATURE_EXTRACTOR = {"feature_extractor_name": "direct", "version": "v1", "feature_extractor_id": "direct_v1"}


class VectorIndexIn(BaseModel):
    model_config = ConfigDict(extra="ignore")
    name: str
    dimensions: int = Field(ge=1, le=16384, strict=True)
    feature_uri: str | None = None


class SourceIn(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str = "direct_upsert"

    @model_validator(mode="after")
    def _storable(self) -> SourceIn:
        _check_stored(self.model_extra or {})  # the extra keys are stored with the collection
        return self


class CollectionCreate(BaseModel):
    model_config = ConfigDict(extra="ignore")
    collection_name: str = Field(min_length=3, max_length=100)
    description: str | None = None
    source: SourceIn = Field(default_factory=SourceIn)
    metadata: Metadata = Field(default_factory=dict)
    enabled: bool = True
    vector_indexes: list[VectorIndexIn] = Field(default_factory=list, max_length=32)


class UpsertBody(BaseModel):
    model_config = ConfigDict(extra="ignore")
    collection_id: str | None = None
    documents: list[Any]
    options: dict[str, Any] | None = None


def collection_out(doc: dict[str, Any], count: int) -> dict[str, Any]:
    return {
        "collection_id": doc["collection_id"],
        "collection_name": doc["collection_name"],
        "description": doc.get("description"),
        "namespace_id": doc["namespace_id"],
        "source": doc.get("source") or {"type": "direct_upsert"},
        "feature_extractor": FEATURE_EXTRACTOR,
        "vector_indexes": [
            {
                "name": ix["name"],
                "feature_uri": ix.get("feature_uri") or default_feature_uri(ix["name"]),
                "type": "dense",
                "index": {"dimensions": int(ix["dimensions"]), "distance": "cosine"},
            }
            for ix in doc.get("vector_indexes", [])
        ],
        "metadata": doc.get("metadata") or {},
        "enabled": bool(doc.get("enabled", True)),
        "document_count": count,
        "created_at": iso(doc["created_at"]),
        "updated_at": iso(doc["updated_at"]),
    }


@router.post("/v1/collections", responses=error_responses(409))
async def create_collection(body: CollectionCreate, svc: ServicesDep, ns: NamespaceDep) -> dict[str, Any]:
    if body.source.type not in SOURCE_TYPES:
        raise ValidationFailed(
            f"source.type: must be one of {sorted(SOURCE_TYPES)} (got '{body.source.type}')"
        )
    if body.source.type not in SUPPORTED_SOURCES:
        raise ValidationFailed(
            f"source.type: '{body.source.type}' is not supported here; use 'direct_upsert'",
            code="source_not_supported",
        )
    indexes: list[dict[str, Any]] = []
    for i, ix in enumerate(body.vector_indexes):
        name = storage_name(ix.name)
        if not VECTOR_NAME_RE.match(name):
            raise ValidationFailed(
                f"vector_indexes[{i}].name: letters, digits, '_' and '-' only (got '{ix.name}')"
            )
        if any(x["name"] == name for x in indexes):
            raise ValidationFailed(f"vector_indexes[{i}].name: '{name}' is declared twice")
        if ix.dimensions > svc.settings.max_vector_dimensions:
            raise ValidationFailed(
                f"vector_indexes[{i}].dimensions: exceeds {svc.settings.max_vector_dimensions}"
            )
        indexes.append(
            {
                "name": name,
                "dimensions": ix.dimensions,
                "feature_uri": ix.feature_uri or default_feature_uri(name),
            }
        )
    doc = await collections.create(
        svc.db,
        ns=ns,
        name=body.collection_name,
        description=body.description,
        source=body.source.model_dump(),
        metadata=body.metadata,
        enabled=body.enabled,
        vector_indexes=indexes,
    )
    return collection_out(doc, 0)


async def _list_collections(svc: Any, ns: str, page: Any) -> dict[str, Any]:
    docs, total = await collections.list_page(svc.db, ns=ns, offset=page.offset, limit=page.limit)
    results = [
        collection_out(d, await documents.count(svc.db, ns=ns, collection_id=d["collection_id"]))
        for d in docs
    ]
    return {"results": results, "pagination": page.response(total), "total_count": total}


@router.get("/v1/collections")
async def list_collections(svc: ServicesDep, ns: NamespaceDep, page: PageDep) -> dict[str, Any]:
    return await _list_collections(svc, ns, page)


@router.post("/v1/collections/list")
async def list_collections_post(
    svc: ServicesDep, ns: NamespaceDep, page: PageDep, body: Annotated[ListBody | None, Body()] = None
) -> dict[str, Any]:
    return await _list_collections(svc, ns, merge_body(page, body))


@router.get("/v1/collections/{ident}")
async def get_collection(ident: str, svc: ServicesDep, ns: NamespaceDep) -> dict[str, Any]:
    doc = await collections.get_or_raise(svc.db, ns=ns, ident=ident)
    return collection_out(doc, await documents.count(svc.db, ns=ns, collection_id=doc["collection_id"]))


@router.delete("/v1/collections/{ident}")
async def delete_collection(ident: str, svc: ServicesDep, ns: NamespaceDep) -> dict[str, Any]:
    doc = await collections.get_or_raise(svc.db, ns=ns, ident=ident)
    deleted = await purge_collection(svc, ns, doc["collection_id"])
    return {"success": True, "collection_id": doc["collection_id"], "deleted_documents": deleted}


# document writes take bulk JSON: their bodies are parsed with orjson (api/fast_json.py)
writes = APIRouter(route_class=FastJSONRoute)


@writes.post("/v1/collections/{ident}/documents", responses=error_responses(409))
async def create_document(
    ident: str, svc: ServicesDep, ns: NamespaceDep, body: Annotated[dict[str, Any], Body()]
) -> dict[str, Any]:
    col = await collections.get_or_raise(svc.db, ns=ns, ident=ident)
    prepared, new = docval.prepare_batch(
        [body],
        known_dimensions=collections.dimensions_of(col),
        declared_only=col.get("indexes_declared", False),
        max_dimensions=svc.settings.max_vector_dimensions,
        max_documents=1,
        single=True,
    )
    doc = prepared[0]
    if doc.document_id is not None:  # refuse before indexing new vector names: a 409 changes nothing
        await documents.ensure_absent(
            svc.db, ns=ns, collection_id=col["collection_id"], document_id=doc.document_id
        )
    if new:
        await collections.add_vector_indexes(svc.db, collection=col, new=new)
    record = documents.to_record(
        ns=ns,
        collection_id=col["collection_id"],
        document_id=doc.document_id or new_document_id(),
        fields=doc.fields,
        vectors=doc.vectors,
    )
    await documents.insert_one(svc.db, record)
    return document_out(record, with_vectors=False)


@writes.post("/v1/namespaces/{namespace}/documents/upsert")
async def upsert_documents(
    namespace: str, body: UpsertBody, svc: ServicesDep, principal: PrincipalDep
) -> dict[str, Any]:
    """Batch write (≤ CLUSTERD_MAX_BATCH_DOCUMENTS). All-or-nothing: one bad document rejects the
    whole batch with every bad position listed, and nothing is written. A vector may be a list of
    numbers or `{"b64": "<base64 of its little-endian float32 bytes>"}`."""
    ns = (await resolve_namespace(svc, principal, namespace))["namespace_id"]
    if not body.collection_id:
        raise ValidationFailed("collection_id: required (id or name of the target collection)")
    col = await collections.get_or_raise(svc.db, ns=ns, ident=body.collection_id, field="collection_id")
    prepared, new = docval.prepare_batch(
        body.documents,
        known_dimensions=collections.dimensions_of(col),
        declared_only=col.get("indexes_declared", False),
        max_dimensions=svc.settings.max_vector_dimensions,
        max_documents=svc.settings.max_batch_documents,
        extra_field_key="payload",
    )
    missing = [i for i, d in enumerate(prepared) if d.document_id is None]
    if missing:
        raise ValidationFailed(f"documents[{missing[0]}].document_id: required for upsert")
    if new:
        await collections.add_vector_indexes(svc.db, collection=col, new=new)
    now = utcnow()
    records = [
        documents.to_record(
            ns=ns,
            collection_id=col["collection_id"],
            document_id=str(d.document_id),
            fields=d.fields,
            vectors=d.vectors,
            now=now,
        )
        for d in prepared
    ]
    ids = [r["document_id"] for r in records]
    await documents.upsert_many(svc.db, ns=ns, collection_id=col["collection_id"], records=records)
    return {"inserted": len(ids), "document_ids": ids}


# the file's own magic bytes tell parquet from Arrow IPC: any Content-Type is accepted
# (application/vnd.apache.parquet, application/vnd.apache.arrow.stream, ...); the schema names
# the generic one
_FILE_BODY = {
    "required": True,
    "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
}


@writes.post(UPLOAD_PATH, responses=error_responses(413), openapi_extra={"requestBody": _FILE_BODY})
async def upload_documents(
    ident: str, request: Request, svc: ServicesDep, ns: NamespaceDep
) -> dict[str, Any]:
    """Bulk write from a parquet or Arrow IPC file (the request body, up to CLUSTERD_MAX_UPLOAD_MB):
    one row per document with a string `document_id` column, one column per vector (list<float>,
    fixed-size list, or float32 bytes) and scalar columns stored as `metadata.<column>`
    (core/uploads.py). Same id replaces; all-or-nothing like the JSON batch, with errors naming
    `documents[row]` or the column."""
    col = await collections.get_or_raise(svc.db, ns=ns, ident=ident)
    limit = svc.settings.max_upload_mb * 1024 * 1024
    async with body_buffers.received(request, limit) as body:  # the records copy out of it
        upload = await asyncio.to_thread(
            uploads.read_table,
            body,
            known_dimensions=collections.dimensions_of(col),
            declared_only=col.get("indexes_declared", False),
            max_dimensions=svc.settings.max_vector_dimensions,
            max_decoded_bytes=uploads.DECODED_FACTOR * limit,
        )
        if upload.new_indexes:
            await collections.add_vector_indexes(svc.db, collection=col, new=upload.new_indexes)
        records = documents.to_records(
            ns=ns,
            collection_id=col["collection_id"],
            document_ids=upload.document_ids,
            fields=[{"metadata": m, "source_type": "direct_upsert"} for m in upload.metadata],
            vectors=[(v.name, v.matrix, v.present) for v in upload.vectors],
        )
        del upload  # Arrow IPC columns view the body
    replaced = await documents.upsert_many(svc.db, ns=ns, collection_id=col["collection_id"], records=records)
    return {"collection_id": col["collection_id"], "inserted": len(records), "replaced": replaced}


router.include_router(writes)  # here, so the routes keep their place in the OpenAPI document


@router.get("/v1/collections/{ident}/documents/count")
async def count_documents(ident: str, svc: ServicesDep, ns: NamespaceDep) -> dict[str, Any]:
    col = await collections.get_or_raise(svc.db, ns=ns, ident=ident)
    return {
        "collection_id": col["collection_id"],
        "count": await documents.count(svc.db, ns=ns, collection_id=col["collection_id"]),
    }


@router.post("/v1/collections/{ident}/documents/list")
async def list_documents(
    ident: str,
    svc: ServicesDep,
    ns: NamespaceDep,
    page: PageDep,
    body: Annotated[ListBody | None, Body()] = None,
) -> dict[str, Any]:
    col = await collections.get_or_raise(svc.db, ns=ns, ident=ident)
    return await document_list(svc, ns, col["collection_id"], page, body)


@router.get("/v1/collections/{ident}/documents")
async def list_documents_get(
    ident: str,
    svc: ServicesDep,
    ns: NamespaceDep,
    page: PageDep,
    return_vectors: Annotated[bool, Query()] = False,
) -> dict[str, Any]:
    col = await collections.get_or_raise(svc.db, ns=ns, ident=ident)
    return await document_list(svc, ns, col["collection_id"], page, ListBody(return_vectors=return_vectors))


@router.get("/v1/collections/{ident}/documents/{document_id}")
async def get_document(
    ident: str,
    document_id: str,
    svc: ServicesDep,
    ns: NamespaceDep,
    return_vectors: Annotated[bool, Query()] = False,
) -> dict[str, Any]:
    col = await collections.get_or_raise(svc.db, ns=ns, ident=ident)
    doc = await documents.get_or_raise(
        svc.db, ns=ns, collection_id=col["collection_id"], document_id=document_id
    )
    return document_out(doc, with_vectors=return_vectors)


@router.delete("/v1/collections/{ident}/documents/{document_id}")
async def delete_document(ident: str, document_id: str, svc: ServicesDep, ns: NamespaceDep) -> dict[str, Any]:
    col = await collections.get_or_raise(svc.db, ns=ns, ident=ident)
    if not await documents.delete_one(
        svc.db, ns=ns, collection_id=col["collection_id"], document_id=document_id
    ):
        raise NotFound(f"document '{document_id}' not found")
    return {"success": True, "document_id": document_id}
