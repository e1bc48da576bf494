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
    mongodb_url: str | None = Field(None, description="mongodb://…; unset = embedded in-process store")
    mongodb_database: str = "clusterd"
    broker_url: str | None = Field(
        None, description="redis://…; unset = in-process worker (memory transport)"
    )
    queue_name: str = "clusterd"
    s3_bucket: str | None = Field(None, description="unset = artifacts under data_dir/artifacts")
    s3_endpoint_url: str | None = None
    s3_region: str = "us-east-1"
    s3_access_key_id: str | None = None
    s3_secret_access_key: SecretStr | None = None
    data_dir: Path = Field(default_factory=lambda: Path.home() / ".clusterd")

    # server
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    embedded_worker: bool | None = Field(
        None, description="run a worker thread inside the API; default: on when broker_url is unset"
    )

    # auth
    api_keys: Annotated[list[str], NoDecode] = Field(default_factory=list, description="bootstrap admin keys")
    secret_key: SecretStr | None = Field(None, description="HMAC pepper for stored key hashes")
    strict_namespaces: bool = False

    # limits
    max_body_mb: int = Field(32, ge=1)
    max_upload_mb: int = Field(
        256, ge=1, description="body cap of the parquet upload route (POST …/documents/upload)"
    )
    max_batch_documents: int = Field(1000, ge=1)
    max_vector_dimensions: int = Field(16384, ge=1)
    adhoc_wait_s: float = Field(60.0, ge=0)
    run_time_limit_s: int = Field(3600, ge=10)
    heartbeat_interval_s: float = Field(10.0, gt=0)
    stale_after_s: float = Field(
        120.0, gt=0, description="a processing run silent this long has lost its worker"
    )
    reaper_interval_s: float = Field(30.0, gt=0)
    max_attempts: int = Field(3, ge=1, description="deliveries of one run before it fails as orphaned")
    republish_after_s: float = Field(
        60.0, gt=0, description="re-publish a pending run the broker lost after this many seconds"
    )
    worker_memory_limit_mb: int | None = Field(
        None, ge=512, description="address-space cap per worker pool process (unset: none)"
    )
    warm_up: bool = Field(
        True, description="compile fast-hdbscan when a worker starts (~30 s; until then hdbscan runs)"
    )
    worker_concurrency: int = Field(2, ge=1, description="pool processes of `clusterd worker`")
    run_threads: int | None = Field(
        None, ge=1, description="threads per run in a pool process (unset: cores / worker_concurrency)"
    )
    admission_scale: float = Field(
        1.0,
        gt=0,
        allow_inf_nan=False,
        description="multiplies every algorithm's point limit (core.admission) for larger workers",
    )
    pull_batch_size: int = Field(2000, ge=1)
    metrics_sample_size: int = Field(
        4096,  # core.metrics.SILHOUETTE_SAMPLE: within issue 6's 1 s for all metrics at 100k x 768
        ge=100,
        description="points (seeded sample) the silhouette is computed on; the other scores use all",
    )
    # LLM cluster labels (core.labeling.llm): an OpenAI-compatible chat-completions endpoint
    llm_base_url: str | None = Field(
        None, description="base URL of an OpenAI-compatible API (…/v1); unset = offline labels only"
    )
    llm_api_key: SecretStr | None = Field(None, description="bearer key sent to llm_base_url")
    llm_timeout_s: float = Field(30.0, gt=0, description="per LLM request")
    llm_max_retries: int = Field(2, ge=0, le=10, description="retries of a timeout, 429 or 5xx")
    llm_max_clusters: int = Field(
        100, ge=1, description="clusters per run the LLM labels (the largest); the rest keep offline labels"
    )
    llm_concurrency: int = Field(4, ge=1, le=64, description="LLM requests in flight per run")
    idempotency_ttl_s: int = Field(
        86_400, ge=1, description="how long an Idempotency-Key is remembered (then it may be reused)"
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
