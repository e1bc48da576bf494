"""All configuration: one pydantic-settings class, env prefix CLUSTERD_. Nothing else reads os.environ."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Settings(BaseSettings):
    """With nothing set, the embedded default is wired: in-process MongoDB (mongomock-motor),
    an in-process Celery worker on the memory transport, and artifacts in a local directory."""

    model_config = SettingsConfigDict(env_prefix="CLUSTERD_", extra="ignore")

    # stores
    mongodb_url: str | None = Field(None, description="`mongodb://…`; unset = embedded in-process store")
    mongodb_database: str = Field("clusterd", description="database name")
    broker_url: str | None = Field(
        None, description="`redis://…`; unset = in-process worker on the Celery memory transport"
    )
    queue_name: str = Field("clusterd", description="Celery queue the API publishes to and workers consume")
    s3_bucket: str | None = Field(
        None,
        description="artifact bucket (must already exist); unset = artifacts under `<data_dir>/artifacts`",
    )
    s3_endpoint_url: str | None = Field(
        None, description="S3 endpoint (MinIO); when set, path-style addressing is used"
    )
    s3_region: str = Field("us-east-1", description="S3 region")
    s3_access_key_id: str | None = Field(
        None,
        description="S3 access key; unset = boto3's default credential chain (instance role, `~/.aws`, …)",
    )
    s3_secret_access_key: SecretStr | None = Field(None, description="S3 secret key (with the access key)")
    data_dir: Path = Field(
        default_factory=lambda: Path.home() / ".clusterd",
        description="local artifacts go to `<data_dir>/artifacts` (`/var/lib/clusterd` in the Docker image)",
    )

    # server
    host: str = Field("127.0.0.1", description="bind address of `clusterd serve` (its `--host` wins)")
    port: int = Field(8000, ge=1, le=65535, description="port of `clusterd serve` (its `--port` wins)")
    embedded_worker: bool | None = Field(
        None,
        description="run a worker thread inside the API; unset = on exactly when `CLUSTERD_BROKER_URL` is "
        "unset",
    )

    # auth
    api_keys: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="comma-separated admin keys (16+ characters each), registered at every start; if no "
        "admin key exists at all, one is generated and printed once",
    )
    secret_key: SecretStr | None = Field(
        None,
        description="HMAC secret for stored key hashes (16+ characters); required with "
        "`CLUSTERD_MONGODB_URL`. Keep it stable (see below)",
    )
    strict_namespaces: bool = Field(
        False,
        description="when true, an unknown `X-Namespace` name is 404 instead of being created for admin "
        "keys",
    )

    # limits
    max_body_mb: int = Field(32, ge=1, description="request body cap (413 above it)")
    max_upload_mb: int = Field(
        256,
        ge=1,
        description="body cap of the file upload (`POST /v1/collections/{ident}/documents/upload`); the file "
        "may decode to 4× this. An upload holds up to about 3× its size in memory while it is written",
    )
    max_batch_documents: int = Field(1000, ge=1, description="documents per upsert batch")
    max_vector_dimensions: int = Field(
        16384, ge=1, description="longest accepted vector (declared indexes are also capped at 16,384)"
    )
    adhoc_wait_s: float = Field(
        60.0, ge=0, description="how long `POST /v1/clusters/execute` waits for the run before answering 202"
    )
    run_time_limit_s: int = Field(
        3600,
        ge=10,
        description="hard time limit of a run; the soft limit is `max(limit − 30, 0.95 × limit)` s. Give the "
        "API and every worker the same value",
    )
    heartbeat_interval_s: float = Field(
        10.0, gt=0, description="how often a worker refreshes a run's `heartbeat_at`"
    )
    stale_after_s: float = Field(
        120.0,
        gt=0,
        description="a `processing` run without a heartbeat this long has lost its worker and is re-queued "
        "(must exceed 2 × the heartbeat interval)",
    )
    reaper_interval_s: float = Field(
        30.0, gt=0, description="how often each API process looks for lost and unpublished runs"
    )
    max_attempts: int = Field(
        3,
        ge=1,
        description="claims of one run before a lost run fails as `orphaned` instead of being re-queued",
    )
    republish_after_s: float = Field(
        60.0,
        gt=0,
        description="a `pending` run whose message Redis no longer holds is published again after this many "
        "seconds",
    )
    worker_memory_limit_mb: int | None = Field(
        None,
        ge=512,
        description="address-space cap per worker pool process (`RLIMIT_AS`): a run that needs more fails "
        "with a MemoryError message instead of getting its process OOM-killed, redelivered and finally "
        "`orphaned`. Leave room for the libraries (~1–2 GB of address space before any data). Set it on the "
        "API too: the API then refuses (422 `too_many_points`) runs whose estimated peak does not fit it "
        "less 1,024 MB, and workers sample down to what fits (see docs/algorithms.md)",
    )
    warm_up: bool = Field(
        True,
        description="compile fast-hdbscan when a worker starts (~30 s, once per `clusterd worker` before the "
        "pool forks; in a background thread for the embedded worker); until it has, HDBSCAN runs use the "
        "`hdbscan` package",
    )
    worker_concurrency: int = Field(
        2, ge=1, description="pool processes of `clusterd worker`, each running one run at a time "
        "(`--concurrency` overrides)"
    )
    run_threads: int | None = Field(
        None,
        ge=1,
        description="BLAS/OpenMP, oneDAL and numba threads per pool process; unset = cores / "
        "`CLUSTERD_WORKER_CONCURRENCY`",
    )
    admission_scale: float = Field(
        1.0,
        gt=0,
        allow_inf_nan=False,
        description="multiplies every algorithm's admission limit (agglomerative 30,000 points, hdbscan "
        "500,000, …; measured for a 2-core worker and ~60 s per run, table in docs/algorithms.md): the API "
        "refuses larger runs with 422 `too_many_points` and workers sample down to the limit. Raise it for "
        "bigger workers or longer runs (2 for a 2× faster worker); give the API and every worker the same "
        "value",
    )
    pull_batch_size: int = Field(
        2000,
        ge=1,
        description="documents read from MongoDB per batch when pulling vectors (each batch is copied into "
        "the run's one preallocated matrix; see docs/concepts.md)",
    )
    pull_cache_mb: int = Field(
        1024,
        ge=0,
        description="embedded store only: memory a worker may keep of recent pulls (the vector matrix "
        "and ids of a run's scope) to serve a later run of the same scope, brought up to date with the "
        "documents written since (core.store.pull_cache, pull_refresh); least recently used first out, "
        "0 turns it off",
    )
    metrics_sample_size: int = Field(
        2048,  # core.metrics.SILHOUETTE_SAMPLE: its distances fit beside a k-means fit (core.pipeline)
        ge=100,
        description="points (a seeded sample) the silhouette is computed on; Davies–Bouldin and "
        "Calinski–Harabasz use every clustered point. The default's distances (0.07 s of one core at "
        "D = 768) are computed while k-means++ seeding leaves a core idle; its error is measured in "
        "docs/algorithms.md (sampling error shrinks as 1/√size). 10000 reproduces scikit-learn's "
        "`silhouette_score(sample_size=10000, random_state=seed)` at ~24× the cost",
    )
    # LLM cluster labels (core.labeling.llm): an OpenAI-compatible chat-completions endpoint
    llm_base_url: str | None = Field(
        None,
        description="base URL of an OpenAI-compatible API, up to and including its version (`https://…/v1`; "
        "the worker POSTs `<base>/chat/completions`). Unset: `llm_labeling.enabled` runs keep their offline "
        "labels and say so in `llm_labeling_errors`. Every `provider` goes to this one endpoint (a gateway "
        "that speaks the OpenAI protocol for Gemini or Claude works)",
    )
    llm_api_key: SecretStr | None = Field(
        None, description="bearer key sent to `CLUSTERD_LLM_BASE_URL` (never logged or stored in run errors)"
    )
    llm_timeout_s: float = Field(30.0, gt=0, description="per LLM request")
    llm_max_retries: int = Field(
        2,
        ge=0,
        le=10,
        description="retries of a timeout, connection error, 429 or 5xx (exponential back-off from 0.2 s, "
        "at most 2 s); other answers are not retried",
    )
    llm_max_clusters: int = Field(
        100,
        ge=1,
        description="clusters per run the LLM labels (the largest first); the others keep offline labels "
        "and the run says so in `llm_labeling_errors`",
    )
    llm_concurrency: int = Field(4, ge=1, le=64, description="LLM requests in flight per run")
    idempotency_ttl_s: int = Field(
        86_400,
        ge=1,
        description="how long an `Idempotency-Key` is remembered (MongoDB collection `idempotency_keys`, TTL "
        "index on `expires_at`); after it the key may be reused",
    )

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_keys(cls, v: object) -> object:
        if isinstance(v, str):
            return [k.strip() for k in v.split(",") if k.strip()]
        return v

    @field_validator("llm_base_url")
    @classmethod
    def _http_url(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("http://", "https://")):
            raise ValueError("CLUSTERD_LLM_BASE_URL must be an http:// or https:// URL")
        return v

    @model_validator(mode="after")
    def _production_needs_secret(self) -> Settings:
        if self.mongodb_url and self.secret_key is None:
            raise ValueError(
                "CLUSTERD_SECRET_KEY must be set when CLUSTERD_MONGODB_URL is: "
                "stored API-key hashes would not verify after a restart"
            )
        if self.secret_key is not None and len(self.secret_key.get_secret_value()) < 16:
            raise ValueError("CLUSTERD_SECRET_KEY must be at least 16 characters")
        if self.stale_after_s <= 2 * self.heartbeat_interval_s:
            raise ValueError("CLUSTERD_STALE_AFTER_S must exceed twice CLUSTERD_HEARTBEAT_INTERVAL_S")
        for key in self.api_keys:
            if len(key) < 16:
                raise ValueError("every key in CLUSTERD_API_KEYS must be at least 16 characters")
        return self

    @property
    def embedded_store(self) -> bool:
        return self.mongodb_url is None

    @property
    def run_worker_in_process(self) -> bool:
        return self.embedded_worker if self.embedded_worker is not None else self.broker_url is None

    @property
    def effective_broker_url(self) -> str:
        return self.broker_url or "memory://localhost/"

    @property
    def artifact_dir(self) -> Path:
        return self.data_dir / "artifacts"

    @property
    def threads_per_run(self) -> int:
        import os

        return self.run_threads or max(1, (os.cpu_count() or 1) // self.worker_concurrency)

    @property
    def soft_time_limit_s(self) -> int:
        return max(self.run_time_limit_s - 30, int(self.run_time_limit_s * 0.95))


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
