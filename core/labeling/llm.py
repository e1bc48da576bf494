"""LLM cluster labels over an OpenAI-compatible chat-completions endpoint.

The pure parts build the prompt (`build_messages`), the cache key (`cache_key`), read the reply
(`parse_reply`) and make near-duplicate labels distinct (`distinct_labels`); `ChatClient` is the
one HTTP adapter (httpx, a bounded tenacity retry on timeouts, transport errors, 429 and 5xx).
Every failure is an `LLMError` whose message names what went wrong without the key or URL; the
worker keeps the offline label for that cluster and records the message in llm_labeling_errors.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential

from core.labeling.options import LabelingOptions

MAX_LABEL_CHARS = 120
MAX_SUMMARY_CHARS = 1000
MAX_KEYWORDS = 10

DEFAULT_INSTRUCTIONS = (
    "You name clusters of documents. Read the sample documents of one cluster and write a short, "
    "specific label (2 to 5 words) saying what they have in common and what sets them apart; avoid "
    "generic labels such as 'Miscellaneous' or 'Documents'."
)


class LLMError(Exception):
    """A labeling call that gave no usable label; the message is safe to store and show."""

    def __init__(self, message: str, *, retryable: bool = False):
        super().__init__(message)
        self.message = message
        self.retryable = retryable


@dataclass(frozen=True)
class ClusterPrompt:
    cluster_id: str
    size: int
    samples: Sequence[str]
    keywords: Sequence[str] = ()  # the offline keywords, as hints


@dataclass
class LLMLabel:
    label: str
    summary: str | None = None
    keywords: list[str] = field(default_factory=list)


def _reply_format(opts: LabelingOptions) -> str:
    keys = ['"label": string']
    if opts.include_summary:
        keys.append('"summary": one or two sentences')
    if opts.include_keywords:
        keys.append('"keywords": a list of 3 to 6 short strings')
    return "Answer with one JSON object and nothing else: {" + ", ".join(keys) + "}."


def build_messages(prompt: ClusterPrompt, opts: LabelingOptions) -> list[dict[str, str]]:
    """System: the instructions (`custom_prompt` replaces the default ones). User: the domain
    context, the candidate labels, the cluster's samples and hints, and the reply format, which
    is always asked for so the reply can be read whatever the custom prompt says."""
    system = opts.custom_prompt or DEFAULT_INSTRUCTIONS
    parts = []
    if opts.context:
        parts.append(f"Domain context provided by the user:\n<<<\n{opts.context}\n>>>")
    if opts.candidates:
        lines = [f"- {label}" + (f": {desc}" if desc else "") for label, desc in opts.candidates.items()]
        parts.append("The label must be exactly one of these candidate labels:\n" + "\n".join(lines))
    samples = "\n".join(f"{i + 1}. {s}" for i, s in enumerate(prompt.samples))
    parts.append(
        f"Cluster {prompt.cluster_id} has {prompt.size} documents. Samples nearest its centre:\n{samples}"
    )
    if prompt.keywords:
        parts.append("Distinctive words of this cluster: " + ", ".join(prompt.keywords))
    parts.append(_reply_format(opts))
    return [{"role": "system", "content": system}, {"role": "user", "content": "\n\n".join(parts)}]


def cache_key(ns: str, opts: LabelingOptions, messages: Sequence[dict[str, str]]) -> str:
    """Same namespace, model, parameters and prompt (which holds the representatives' texts,
    context and candidates) => the same label."""
    blob = json.dumps(
        {"ns": ns, "model": opts.model_name, "params": opts.parameters, "messages": list(messages)},
        sort_keys=True,
        ensure_ascii=False,
    )
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


_FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.DOTALL)


def parse_reply(content: str, opts: LabelingOptions) -> LLMLabel:
    """The reply's JSON object as a label; LLMError when it is not one (or, with candidate
    labels, names none of them)."""
    m = _FENCE.match(content)
    text = m.group(1) if m else content.strip()
    try:
        obj = json.loads(text)
    except ValueError:
        raise LLMError(f"LLM reply is not JSON: {content[:80]!r}") from None
    if not isinstance(obj, dict):
        raise LLMError("LLM reply is not a JSON object")
    label = obj.get("label")
    if not isinstance(label, str) or not label.strip():
        raise LLMError("LLM reply has no label (a non-empty string)")
    label = " ".join(label.split())[:MAX_LABEL_CHARS]
    if opts.candidates:
        match = next((c for c in opts.candidates if c.casefold() == label.casefold()), None)
        if match is None:
            raise LLMError(f"LLM label {label!r} is not one of the candidate labels")
        label = match
    summary = obj.get("summary") if opts.include_summary else None
    summary = " ".join(summary.split())[:MAX_SUMMARY_CHARS] or None if isinstance(summary, str) else None
    raw_kw = obj.get("keywords") if opts.include_keywords else None
    keywords = (
        [" ".join(k.split()) for k in raw_kw if isinstance(k, str) and k.strip()][:MAX_KEYWORDS]
        if isinstance(raw_kw, list)
        else []
    )
    return LLMLabel(label=label, summary=summary, keywords=keywords)


def _words(label: str) -> set[str]:
    return set(re.findall(r"\w+", label.casefold()))


def similarity(a: str, b: str) -> float:
    """Word-set Jaccard of two labels (1.0: the same words whatever case, order, punctuation)."""
    wa, wb = _words(a), _words(b)
    if not wa and not wb:
        return 1.0
    return len(wa & wb) / len(wa | wb)


def distinct_labels(labels: Sequence[str], hints: Sequence[Sequence[str]], threshold: float) -> list[str]:
    """Labels in order; one as similar as `threshold` (word Jaccard) to an earlier one gets the
    first of its `hints` (the cluster's offline keywords) not already in it, in parentheses,
    else a number: "Sports" and "sports" become "Sports" and "sports (football)"."""
    out: list[str] = []
    for label, hint in zip(labels, hints, strict=True):
        if any(similarity(label, prev) >= threshold for prev in out):
            extra = next((h for h in hint if not _words(h) <= _words(label)), None)
            candidate = f"{label} ({extra})" if extra else label
            n = 2
            while any(similarity(candidate, prev) >= 1.0 for prev in out) or candidate == label:
                candidate = f"{label} ({n})"
                n += 1
            label = candidate
        out.append(label)
    return out


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, LLMError) and exc.retryable


class ChatClient:
    """POST {base_url}/chat/completions with a bearer key; `complete` returns the reply text."""

    def __init__(self, base_url: str, api_key: str | None, *, timeout_s: float, max_retries: int):
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self._client = httpx.AsyncClient(timeout=timeout_s, headers=self.headers)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def complete(self, messages: Sequence[dict[str, str]], opts: LabelingOptions) -> str:
        body: dict[str, Any] = {
            "model": opts.model_name,
            "messages": list(messages),
            "response_format": {"type": "json_object"},
            **opts.parameters,
        }
        retrying = AsyncRetrying(
            stop=stop_after_attempt(1 + self.max_retries),
            wait=wait_exponential(multiplier=0.2, max=2.0),
            retry=retry_if_exception(_retryable),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                return await self._post(body)
        raise AssertionError("unreachable: tenacity re-raises the last error")  # pragma: no cover

    async def _post(self, body: dict[str, Any]) -> str:
        try:
            r = await self._client.post(self.url, json=body)
        except httpx.TimeoutException:
            raise LLMError(f"LLM request timed out after {self.timeout_s:g} s", retryable=True) from None
        except httpx.HTTPError as exc:
            raise LLMError(f"LLM endpoint unreachable: {type(exc).__name__}", retryable=True) from None
        if r.status_code >= 400:
            retryable = r.status_code == 429 or r.status_code >= 500
            raise LLMError(f"LLM endpoint answered HTTP {r.status_code}: {r.text[:120]}", retryable=retryable)
        try:
            content = r.json()["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise LLMError("LLM response is not a chat completion (no choices[0].message.content)") from None
        if not isinstance(content, str):
            raise LLMError("LLM response content is not text")
        return content
