"""A cluster's `llm_labeling` object (contract §1.5.5) checked and read into typed options.

The API stores the object as sent (model names mapped to dated ids); `parse_options` checks the
fields labeling uses, with messages naming them (`llm_labeling.max_samples_per_cluster: ...`), so
a bad value is refused when it is stored and the worker never meets one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from core.errors import ValidationFailed
from core.labeling.texts import InputMapping

DEFAULT_MODEL = "gpt-4o-mini-2024-07-18"
DEFAULT_SAMPLES = 8  # representatives per cluster in the prompt when max_samples_per_cluster is unset
DEFAULT_CACHE_TTL_S = 604_800  # 7 days, the SDK's default
MAX_CANDIDATES = 255
SOURCE_TYPES = ("payload", "literal", "vector", "blob")
PROVIDERS = ("openai", "google", "anthropic", "typesafe")
# request keys `parameters` may set; others (json_output, top_k, ...) are not chat-completions keys
FORWARDED_PARAMETERS = ("temperature", "top_p", "max_tokens", "seed", "presence_penalty", "frequency_penalty")


@dataclass(frozen=True)
class LabelingOptions:
    enabled: bool = False
    mappings: tuple[InputMapping, ...] = ()
    provider: str | None = None
    model_name: str = DEFAULT_MODEL
    include_summary: bool = True
    include_keywords: bool = True
    max_samples: int = DEFAULT_SAMPLES
    sample_max_chars: int = 200
    strategy: str = "nearest"
    similarity_threshold: float = 0.8
    cache_ttl_s: int = DEFAULT_CACHE_TTL_S
    context: str | None = None
    custom_prompt: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    candidates: dict[str, str] | None = None  # label -> description ("" when given as a list)


def _int(raw: dict[str, Any], key: str, default: int, lo: int, hi: int) -> int:
    v = raw.get(key)
    if v is None:
        return default
    if type(v) is not int or not lo <= v <= hi:
        raise ValidationFailed(f"llm_labeling.{key}: must be an integer between {lo} and {hi} (got {v!r})")
    return v


def _bool(raw: dict[str, Any], key: str, default: bool) -> bool:
    v = raw.get(key)
    if v is None:
        return default
    if not isinstance(v, bool):
        raise ValidationFailed(f"llm_labeling.{key}: must be a boolean (got {v!r})")
    return v


def _str(raw: dict[str, Any], key: str, max_len: int | None = None) -> str | None:
    v = raw.get(key)
    if v is None:
        return None
    if not isinstance(v, str):
        raise ValidationFailed(f"llm_labeling.{key}: must be a string")
    if max_len is not None and len(v) > max_len:
        raise ValidationFailed(f"llm_labeling.{key}: at most {max_len} characters (got {len(v)})")
    return v.strip() or None


def _mappings(raw: dict[str, Any]) -> tuple[InputMapping, ...]:
    inputs = raw.get("labeling_inputs")
    if inputs is None:
        return ()
    where = "llm_labeling.labeling_inputs"
    if not isinstance(inputs, dict):
        raise ValidationFailed(f"{where}: must be an object with input_mappings")
    items = inputs.get("input_mappings")
    if isinstance(items, dict):  # the SDK's InputMappings also allows an object: {input_key: path}
        items = [{"input_key": k, "source_type": "payload", "path": v} for k, v in items.items()]
    if not isinstance(items, list) or not items:
        raise ValidationFailed(f"{where}.input_mappings: must be a non-empty list")
    out = []
    for i, m in enumerate(items):
        loc = f"{where}.input_mappings[{i}]"
        if not isinstance(m, dict):
            raise ValidationFailed(f"{loc}: must be an object")
        key = m.get("input_key")
        if not isinstance(key, str) or not key:
            raise ValidationFailed(f"{loc}.input_key: field required (a non-empty string)")
        source = m.get("source_type") or "payload"
        if source not in SOURCE_TYPES:
            raise ValidationFailed(
                f"{loc}.source_type: must be one of {', '.join(SOURCE_TYPES)} (got {source!r})"
            )
        path = m.get("path")
        if path is not None and not isinstance(path, str):
            raise ValidationFailed(f"{loc}.path: must be a string")
        value = None
        if source == "literal":
            literal = next((m[k] for k in ("override", "value") if m.get(k) is not None), path)
            if literal is None or isinstance(literal, dict | list):
                raise ValidationFailed(f"{loc}.override: a literal mapping needs a text value")
            value = str(literal)
        elif source == "payload" and not path:
            raise ValidationFailed(f"{loc}.path: required for source_type payload")
        out.append(InputMapping(input_key=key, source_type=source, path=path, value=value))
    return tuple(out)


def _candidates(raw: dict[str, Any]) -> dict[str, str] | None:
    c = raw.get("candidate_labels")
    if c is None:
        return None
    where = "llm_labeling.candidate_labels"
    if isinstance(c, list) and all(isinstance(x, str) for x in c):
        out = {x.strip(): "" for x in c if x.strip()}
    elif isinstance(c, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in c.items()):
        out = {k.strip(): v.strip() for k, v in c.items() if k.strip()}
    else:
        raise ValidationFailed(f"{where}: must be a list of labels or an object of label -> description")
    if not out or len(out) > MAX_CANDIDATES:
        raise ValidationFailed(f"{where}: between 1 and {MAX_CANDIDATES} labels (got {len(out)})")
    return out


def parse_options(raw: dict[str, Any] | None) -> LabelingOptions:
    """Typed options of a stored (or requested) `llm_labeling` object; ValidationFailed names the field."""
    if not raw:
        return LabelingOptions()
    if not isinstance(raw, dict):
        raise ValidationFailed("llm_labeling: must be an object")
    provider = raw.get("provider")
    if provider is not None and provider not in PROVIDERS:
        raise ValidationFailed(
            f"llm_labeling.provider: must be one of {', '.join(PROVIDERS)} (got {provider!r})"
        )
    strategy = raw.get("sample_selection_strategy") or "nearest"
    if strategy not in ("nearest", "representative"):
        raise ValidationFailed("llm_labeling.sample_selection_strategy: must be nearest or representative")
    threshold = raw.get("embedding_similarity_threshold")
    if threshold is None:
        threshold = 0.8
    if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not 0.5 <= threshold <= 1:
        raise ValidationFailed(
            "llm_labeling.embedding_similarity_threshold: must be a number between 0.5 and 1"
        )
    params = raw.get("parameters") or {}
    if not isinstance(params, dict):
        raise ValidationFailed("llm_labeling.parameters: must be an object")
    return LabelingOptions(
        enabled=_bool(raw, "enabled", False),
        mappings=_mappings(raw),
        provider=provider,
        model_name=_str(raw, "model_name") or DEFAULT_MODEL,
        include_summary=_bool(raw, "include_summary", True),
        include_keywords=_bool(raw, "include_keywords", True),
        max_samples=_int(raw, "max_samples_per_cluster", DEFAULT_SAMPLES, 1, 20),
        sample_max_chars=_int(raw, "sample_text_max_length", 200, 50, 500),
        strategy=strategy,
        similarity_threshold=float(threshold),
        cache_ttl_s=_int(raw, "cache_ttl_seconds", DEFAULT_CACHE_TTL_S, 0, 2_592_000),
        context=_str(raw, "labeling_context", 2000),
        custom_prompt=_str(raw, "custom_prompt"),
        parameters={k: params[k] for k in FORWARDED_PARAMETERS if k in params},
        candidates=_candidates(raw),
    )
