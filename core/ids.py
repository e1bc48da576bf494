"""Identifier formats of the wire contract (§0.3)."""

from __future__ import annotations

import re
import secrets
import string

_ALNUM = string.ascii_lowercase + string.digits


def _alnum(n: int) -> str:
    return "".join(secrets.choice(_ALNUM) for _ in range(n))


def new_cluster_id() -> str:
    return "clust_" + _alnum(10)


def new_run_id() -> str:
    return "run_" + secrets.token_hex(8)


def new_task_id() -> str:
    return "task_" + secrets.token_hex(16)


def new_namespace_id() -> str:
    return "ns_" + _alnum(10)


def new_collection_id() -> str:
    return "col_" + _alnum(10)


def new_document_id() -> str:
    return "doc_" + secrets.token_hex(12)


def new_key_id() -> str:
    return "key_" + _alnum(10)


def default_cluster_name() -> str:
    return "cluster_" + _alnum(10)


NAMESPACE_ID_RE = re.compile(r"^ns_[a-z0-9]{10}$")
COLLECTION_ID_RE = re.compile(r"^col_[a-z0-9]{10}$")
CLUSTER_ID_RE = re.compile(r"^clust_[a-zA-Z0-9]+$")
RUN_ID_RE = re.compile(r"^run_[a-zA-Z0-9]+$")
