"""POST /patterns/cluster: synchronous k-means / DBSCAN on an inline matrix (contract §1.1).

Not an SDK route: errors leave as `{"error", "message"}` (never ErrorResponse), and the body is
parsed here rather than by FastAPI so that every invalid input is a 400 `invalid_request`. More
points than the method's admission limit (core.admission) is a 422 `too_many_points`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pymongo.errors import PyMongoError
from sklearn.cluster import DBSCAN, KMeans
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import euclidean_distances, silhouette_score
from starlette.requests import ClientDisconnect

from api.body_limit import BodyTooLarge
from api.deps import get_services
from api.errors import RETRY_AFTER_S, database_error
from api.schemas.errors import PatternErrorResponse, error_responses
from core import admission
from core.store import api_keys

log = logging.getLogger("clusterd.api")

router = APIRouter()

METHODS = ("kmeans", "dbscan")
DEFAULT_N_CLUSTERS, DEFAULT_EPS, DEFAULT_MIN_SAMPLES, DEFAULT_RANDOM_STATE = 3, 0.5, 5, 42
MAX_SAMPLES = 100_000
MAX_VALUES = 1_000_000
MAX_SEED = 2**32 - 1  # scikit-learn's random_state range
# DBSCAN keeps every neighbour index in memory (~15 bytes a pair at peak): a large eps over many points
# would take the whole API process down, so an estimated pair count above this answers 413.
MAX_DBSCAN_PAIRS = 25_000_000
PAIR_SAMPLE = 512
# jobs of this route running at once per app: the rest wait without holding executor threads
CONCURRENCY = 2


class PatternError(Exception):
    def __init__(self, status: int, error: str, message: str):
        super().__init__(message)
        self.status, self.error, self.message = status, error, message

    def response(self) -> JSONResponse:
        return _error(self.status, self.error, self.message)


def _error(status: int, error: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": error, "message": message}, status_code=status, headers=headers)


def _invalid(message: str) -> PatternError:
    return PatternError(400, "invalid_request", message)


def _too_large(message: str) -> PatternError:
    return PatternError(413, "payload_too_large", message)


def _kind(value: Any) -> str:
    """JSON name of a decoded value's type."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _show(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, list | dict) else _kind(value)
    return text if len(text) <= 60 else text[:60] + "…"


@dataclass(frozen=True)
class PatternRequest:
    X: np.ndarray
    method: str
    n_clusters: int
    eps: float
    min_samples: int
    random_state: int


def _reject_constant(name: str) -> Any:
    raise _invalid(f"body: {name} is not valid JSON; every number must be finite")


def _load(raw: bytes) -> dict[str, Any]:
    if not raw.strip():
        raise _invalid("body: a JSON object is required")
    try:
        body = json.loads(raw, parse_constant=_reject_constant)
    except PatternError:
        raise
    except RecursionError:
        raise _invalid("body: JSON nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        raise _invalid(f"body: malformed JSON ({exc})") from None
    if not isinstance(body, dict):
        raise _invalid(f"body: must be a JSON object, got {_kind(body)}")
    return body


def _is_number(value: Any) -> bool:
    return type(value) is int or type(value) is float  # bool is a subclass of int: excluded


def _matrix(data: Any) -> np.ndarray:
    """The `data` field as a finite float64 (N, D) array; 1-D input becomes N×1."""
    if data is None:
        raise _invalid("data: required (a list of numbers or a list of equal-length rows of numbers)")
    if not isinstance(data, list):
        raise _invalid(f"data: must be a list of numbers or a list of rows, got {_kind(data)}")
    n = len(data)
    if n == 0:
        raise _invalid("data: must not be empty")
    two_d = isinstance(data[0], list)
    d = len(data[0]) if two_d else 1
    if n > MAX_SAMPLES:
        raise _too_large(f"data: {n} samples exceed the limit of {MAX_SAMPLES:,}")
    if n * d > MAX_VALUES:
        raise _too_large(f"data: {n}×{d} = {n * d:,} values exceed the limit of {MAX_VALUES:,}")
    if n < 2:
        raise _invalid(f"data: at least 2 samples are required, got {n}")
    if two_d:
        if d == 0:
            raise _invalid("data[0]: a row must hold at least one number")
        for i, row in enumerate(data):
            if not isinstance(row, list):
                raise _invalid(f"data[{i}]: expected a row (a list of {d} numbers), got {_kind(row)}")
            if len(row) != d:
                raise _invalid(
                    f"data[{i}]: row has {len(row)} values, expected {d} (rows must be equal length)"
                )
            if not all(map(_is_number, row)):
                j = next(j for j, v in enumerate(row) if not _is_number(v))
                raise _invalid(f"data[{i}][{j}]: must be a number, got {_kind(row[j])}")
    elif not all(map(_is_number, data)):
        i = next(i for i, v in enumerate(data) if not _is_number(v))
        hint = " (mixing numbers and rows)" if isinstance(data[i], list) else ""
        raise _invalid(f"data[{i}]: must be a number{hint}, got {_kind(data[i])}")
    try:
        X = np.array(data, dtype=np.float64)
    except OverflowError:
        raise _invalid("data: a value is too large for a 64-bit float") from None
    X = X.reshape(n, d)
    if not np.isfinite(X).all():
        at = tuple(int(k) for k in np.argwhere(~np.isfinite(X))[0])
        where = f"data[{at[0]}][{at[1]}]" if two_d else f"data[{at[0]}]"
        raise _invalid(f"{where}: must be a finite number")
    return X


def _int_field(body: dict[str, Any], name: str, default: int) -> int:
    value = body.get(name)
    if value is None:
        return default
    if type(value) is not int:
        raise _invalid(f"{name}: must be an integer, got {_kind(value)} {_show(value)}")
    return value


def _number_field(body: dict[str, Any], name: str, default: float) -> float:
    value = body.get(name)
    if value is None:
        return default
    if not _is_number(value):
        raise _invalid(f"{name}: must be a number, got {_kind(value)} {_show(value)}")
    try:
        number = float(value)
    except OverflowError:
        raise _invalid(f"{name}: must be a finite number") from None
    if not math.isfinite(number):  # 1e999 decodes to inf
        raise _invalid(f"{name}: must be a finite number")
    return number


def parse(raw: bytes) -> PatternRequest:
    """Check a request body against §1.1. Types are checked for every field; ranges for the fields
    the chosen method uses."""
    body = _load(raw)
    method = body.get("method", "kmeans")
    if not isinstance(method, str) or method not in METHODS:
        raise _invalid(f"method: must be 'kmeans' or 'dbscan', got {_show(method)}")
    n_clusters = _int_field(body, "n_clusters", DEFAULT_N_CLUSTERS)
    eps = _number_field(body, "eps", DEFAULT_EPS)
    min_samples = _int_field(body, "min_samples", DEFAULT_MIN_SAMPLES)
    random_state = _int_field(body, "random_state", DEFAULT_RANDOM_STATE)
    if "data" not in body:
        raise _invalid("data: required (a list of numbers or a list of equal-length rows of numbers)")
    X = _matrix(body["data"])
    n = X.shape[0]
    if method == "kmeans":
        if not 1 <= n_clusters <= n:
            raise _invalid(f"n_clusters: must be between 1 and the number of samples ({n}), got {n_clusters}")
        if not 0 <= random_state <= MAX_SEED:
            raise _invalid(f"random_state: must be between 0 and {MAX_SEED}, got {random_state}")
    else:
        if eps <= 0:
            raise _invalid(f"eps: must be greater than 0, got {_show(body.get('eps'))}")
        if min_samples < 1:
            raise _invalid(f"min_samples: must be at least 1, got {min_samples}")
    return PatternRequest(X, method, n_clusters, eps, min_samples, random_state)


def _float(value: Any) -> float:
    out = float(value)
    if not math.isfinite(out):
        raise _invalid("data: values are too large in magnitude to cluster (the computation overflowed)")
    return out


def _silhouette(X: np.ndarray, labels: np.ndarray) -> float | None:
    distinct = int(np.unique(labels).size)
    if not 2 <= distinct <= X.shape[0] - 1:  # sklearn's own precondition
        return None
    return _float(silhouette_score(X, labels))


def _kmeans(req: PatternRequest) -> dict[str, Any]:
    X, k = req.X, req.n_clusters
    model = KMeans(n_clusters=k, n_init=10, random_state=req.random_state)
    labels = np.asarray(model.fit_predict(X), dtype=np.int64)
    score = _silhouette(X, labels) if 2 <= k <= X.shape[0] - 1 else None
    return {
        "labels": labels.tolist(),
        "n_clusters": k,
        "silhouette_score": score,
        "centroids": [[_float(v) for v in row] for row in model.cluster_centers_],
        "inertia": _float(model.inertia_),
        "eps": None,
        "min_samples": None,
        "noise_points": None,
    }


def _dbscan_pairs(X: np.ndarray, eps: float) -> float:
    """Estimated neighbour pairs (self included) DBSCAN would hold, from a seeded sample of points."""
    n = X.shape[0]
    if n * n <= MAX_DBSCAN_PAIRS:
        return float(n * n)
    rows = np.random.default_rng(0).choice(n, size=min(n, PAIR_SAMPLE), replace=False)
    hits = 0
    for chunk in np.array_split(rows, max(1, len(rows) // 32)):
        hits += int((euclidean_distances(X[chunk], X) <= eps).sum())
    return hits * n / len(rows)


def _dbscan(req: PatternRequest) -> dict[str, Any]:
    X, n = req.X, req.X.shape[0]
    pairs = _dbscan_pairs(X, req.eps)
    if pairs > MAX_DBSCAN_PAIRS:
        raise _too_large(
            f"eps: {req.eps:g} links about {pairs:,.0f} neighbour pairs across {n} samples, above the "
            f"limit of {MAX_DBSCAN_PAIRS:,}; use a smaller eps or fewer samples"
        )
    # a point has at most n neighbours, so any larger min_samples behaves like n + 1
    model = DBSCAN(eps=req.eps, min_samples=min(req.min_samples, n + 1))
    labels = np.asarray(model.fit_predict(X), dtype=np.int64)
    clustered = labels >= 0
    n_clusters = int(np.unique(labels[clustered]).size)
    score = None
    if n_clusters >= 2 and int(clustered.sum()) > n_clusters:
        score = _silhouette(X[clustered], labels[clustered])
    return {
        "labels": labels.tolist(),
        "n_clusters": n_clusters,
        "silhouette_score": score,
        "centroids": None,
        "inertia": None,
        "eps": req.eps,
        "min_samples": req.min_samples,
        "noise_points": int((~clustered).sum()),
    }


def admit(req: PatternRequest, scale: float = 1.0) -> None:
    """The run's admission limit (core.admission, the points bound: this route runs in the API
    process, whose memory N×D ≤ MAX_VALUES already bounds): 422 `too_many_points` above it."""
    try:
        admission.check(
            req.method,
            None,
            int(req.X.shape[0]),
            int(req.X.shape[1]),
            scale=scale,
            field="data",
            remedy="send at most {max} rows of data, or use POST /v1/clusters/execute (it samples)",
        )
    except admission.TooManyPoints as exc:
        raise PatternError(422, "too_many_points", exc.message) from None


def cluster(raw: bytes, scale: float = 1.0) -> dict[str, Any]:
    """Parse, validate and cluster one request body; the 11-key response (CPU-bound: runs in a thread).
    `scale` is CLUSTERD_ADMISSION_SCALE."""
    req = parse(raw)
    admit(req, scale)
    with warnings.catch_warnings():
        # too few distinct points for k, or overflow on huge values (caught by _float): not errors here
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        result = _kmeans(req) if req.method == "kmeans" else _dbscan(req)
    return {
        "method": req.method,
        "sample_size": int(req.X.shape[0]),
        "feature_count": int(req.X.shape[1]),
        **result,
    }


def _slots(request: Request) -> asyncio.Semaphore:
    slots: asyncio.Semaphore | None = getattr(request.app.state, "pattern_slots", None)
    if slots is None:  # no await since the lookup: no other request can race this assignment
        slots = request.app.state.pattern_slots = asyncio.Semaphore(CONCURRENCY)
    return slots


async def _authenticated(request: Request) -> bool:
    scheme, _, token = (request.headers.get("authorization") or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return False
    svc = await get_services(request)
    return await api_keys.authenticate(svc.db, pepper=svc.pepper, key=token.strip()) is not None


# the body is parsed by hand (every invalid input is a 400, not FastAPI's 422): describe it for /docs
REQUEST_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["data"],
    "properties": {
        "data": {
            "description": "N×D rows (or N numbers, read as N×1); N ≥ 2, N ≤ 100,000, N×D ≤ 1,000,000",
            "oneOf": [
                {"type": "array", "items": {"type": "number"}},
                {"type": "array", "items": {"type": "array", "items": {"type": "number"}}},
            ],
        },
        "method": {"type": "string", "enum": list(METHODS), "default": "kmeans"},
        "n_clusters": {"type": ["integer", "null"], "minimum": 1, "default": DEFAULT_N_CLUSTERS},
        "eps": {"type": ["number", "null"], "exclusiveMinimum": 0, "default": DEFAULT_EPS},
        "min_samples": {"type": ["integer", "null"], "minimum": 1, "default": DEFAULT_MIN_SAMPLES},
        "random_state": {
            "type": ["integer", "null"],
            "minimum": 0,
            "maximum": MAX_SEED,
            "default": DEFAULT_RANDOM_STATE,
        },
    },
}


@router.post(
    "/patterns/cluster",
    tags=["patterns"],
    summary="Cluster an inline matrix (kmeans or dbscan)",
    responses=error_responses(400, 401, 413, 422, 500, model=PatternErrorResponse),
    openapi_extra={
        "requestBody": {"required": True, "content": {"application/json": {"schema": REQUEST_SCHEMA}}}
    },
)
async def cluster_patterns(request: Request) -> JSONResponse:
    try:
        if not await _authenticated(request):
            return _error(
                401,
                "unauthorized",
                "missing or invalid API key (Authorization: Bearer <key>)",
                headers={"WWW-Authenticate": "Bearer"},
            )
        try:
            raw = await request.body()
        except BodyTooLarge as exc:  # a streamed body over CLUSTERD_MAX_BODY_MB (api.body_limit)
            return _error(413, "payload_too_large", str(exc.detail))
        async with _slots(request):
            scale = (await get_services(request)).settings.admission_scale
            body = await asyncio.to_thread(cluster, raw, scale)
        return JSONResponse(body)
    except PatternError as exc:
        return exc.response()
    except ClientDisconnect:
        return _error(400, "invalid_request", "body: the client disconnected before sending it")
    except PyMongoError as exc:  # the key check reads the key store
        status, message = database_error(exc)
        if status == 503:
            return _error(503, "service_unavailable", message, headers={"Retry-After": str(RETRY_AFTER_S)})
        return _error(500, "internal_error", message)
    except Exception as exc:
        log.exception("POST /patterns/cluster failed")
        return _error(500, "internal_error", f"internal error while clustering ({type(exc).__name__})")
