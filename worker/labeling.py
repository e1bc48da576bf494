"""The labeling stage of a vector run: members' texts -> offline labels -> LLM labels (optional).

Runs after the pipeline and before the run's commit point (worker.stages.Progress.finalize), so
a cancel still stops it between LLM calls. Reads only the members it uses: per cluster up to
core.labeling.ctfidf.texts_per_cluster texts spread over the distance ranks, plus the
representatives (nearest the centroid, or the `representative` mix) for the LLM prompt.
Any LLM problem keeps that cluster's offline label and adds a line to `errors`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from core.errors import ClusterdError
from core.labeling import ctfidf, llm, members, texts
from core.labeling.options import LabelingOptions, parse_options
from core.pipeline import PipelineResult, RunCanceled
from core.store import labeling as label_store
from worker.runtime import Runtime
from worker.stages import Progress

REPRESENTATIVES = 5  # representative_ids of a run without LLM labeling
MAX_ERROR_IDS = 10


@dataclass
class RunLabels:
    """Per cluster (pipeline order): label, keywords, summary, representatives; the errors."""

    labels: list[str]
    keywords: list[list[str]]
    summaries: list[str | None]
    representatives: list[list[dict[str, str]]]
    errors: list[str] = field(default_factory=list)

    def apply(self, records: list[dict[str, Any]]) -> None:
        """Write into the centroid records (built in the same order)."""
        for i, rec in enumerate(records):
            rec["label"] = self.labels[i]
            rec["representative_ids"] = self.representatives[i]
            if self.keywords[i]:
                rec["keywords"] = self.keywords[i]
            if self.summaries[i]:
                rec["summary"] = self.summaries[i]


def _nearest_first(positions: np.ndarray, distances: np.ndarray | None) -> np.ndarray:
    """`positions` nearest the centroid first (ties by position), as members.ranked_members."""
    dist = np.nan_to_num(np.asarray(distances, dtype=np.float64), nan=np.inf)
    return positions[np.lexsort((positions, dist))]


async def label_clusters(
    rt: Runtime,
    run: dict[str, Any],
    result: PipelineResult,
    doc_ids: np.ndarray,
    col_ids: np.ndarray,
    progress: Progress,
) -> RunLabels:
    await progress.checkpoint("labeling", 0.9)
    errors: list[str] = []
    try:
        opts = parse_options(run["config"].get("llm_labeling"))
    except ClusterdError as exc:  # stored before validation existed: label offline
        opts, errors = LabelingOptions(), [exc.message]
    k = len(result.clusters)
    ranked = members.ranked_members(result.labels, result.distances, [c.label_value for c in result.clusters])
    ranked = [  # a hierarchical node carries its members (a parent's are its descendants')
        r if c.members is None else _nearest_first(c.members, c.member_distances)
        for c, r in zip(result.clusters, ranked, strict=True)
    ]
    per_cluster = ctfidf.texts_per_cluster(k)
    n_reps = max(REPRESENTATIVES, opts.max_samples) if opts.enabled else REPRESENTATIVES
    text_idx = [members.spread(r, per_cluster) for r in ranked]
    rep_idx = [
        members.representatives(r, n_reps, opts.strategy if opts.enabled else "nearest") for r in ranked
    ]
    inputs = await _member_inputs(rt, run, doc_ids, col_ids, [*text_idx, *rep_idx], opts)

    class_texts = [[t for i in idx if (t := texts.document_text(inputs.get(int(i), [])))] for idx in text_idx]
    # the summary quotes the member nearest the centroid that has text
    examples = [
        next((texts.document_text(inputs[int(i)]) for i in r if int(i) in inputs), None) for r in rep_idx
    ]
    keywords = await asyncio.to_thread(ctfidf.class_keywords, class_texts)
    sizes = [int(c.num_members) for c in result.clusters]
    offline = ctfidf.make_labels(
        keywords, examples, sizes, [c.default_label for c in result.clusters]
    )
    out = RunLabels(
        labels=[o.label for o in offline],
        keywords=[o.keywords for o in offline],
        summaries=[o.summary for o in offline],
        representatives=[
            [{"document_id": str(doc_ids[i]), "collection_id": str(col_ids[i])} for i in idx]
            for idx in rep_idx
        ],
        errors=errors,
    )
    if opts.enabled and k:
        await _llm_labels(rt, run, result, opts, inputs, rep_idx, out, progress)
    if opts.enabled and not opts.include_summary:  # asked for none, from either labeller
        out.summaries = [None] * k
    if opts.enabled and not opts.include_keywords:
        out.keywords = [[] for _ in range(k)]
    return out


async def _member_inputs(
    rt: Runtime,
    run: dict[str, Any],
    doc_ids: np.ndarray,
    col_ids: np.ndarray,
    groups: Sequence[np.ndarray],
    opts: LabelingOptions,
) -> dict[int, list[tuple[str, str, bool]]]:
    """Member position -> its (input_key, text, is_literal) parts, for the members in `groups`."""
    wanted = np.unique(np.concatenate([g for g in groups if g.size] or [np.empty(0, np.int64)]))
    by_collection: dict[str, list[int]] = {}
    for i in wanted.tolist():
        by_collection.setdefault(str(col_ids[i]), []).append(i)
    projection = texts.projection(opts.mappings)
    out: dict[int, list[tuple[str, str, bool]]] = {}
    for cid, positions in by_collection.items():
        docs = await label_store.member_fields(
            rt.db,
            ns=run["namespace_id"],
            collection_id=cid,
            document_ids=[str(doc_ids[i]) for i in positions],
            projection=projection,
        )
        for i in positions:
            doc = docs.get(str(doc_ids[i]))
            if doc is not None and (parts := texts.mapped_inputs(doc, opts.mappings)):
                out[i] = parts
    return out


async def _llm_labels(
    rt: Runtime,
    run: dict[str, Any],
    result: PipelineResult,
    opts: LabelingOptions,
    inputs: dict[int, list[tuple[str, str, bool]]],
    rep_idx: list[np.ndarray],
    out: RunLabels,
    progress: Progress,
) -> None:
    s = rt.settings
    if not s.llm_base_url:
        out.errors.append(
            "llm_labeling: no LLM endpoint is configured (CLUSTERD_LLM_BASE_URL); offline labels were kept"
        )
        return
    ns = run["namespace_id"]
    order = sorted(range(len(result.clusters)), key=lambda j: (-result.clusters[j].num_members, j))
    chosen, skipped = order[: s.llm_max_clusters], order[s.llm_max_clusters :]
    if skipped:
        out.errors.append(
            f"llm_labeling: only the {len(chosen)} largest clusters are labelled by the LLM "
            f"(CLUSTERD_LLM_MAX_CLUSTERS); {len(skipped)} kept offline labels"
        )
    failures: dict[str, list[int]] = {}  # message -> cluster positions
    new: dict[int, llm.LLMLabel] = {}
    key = s.llm_api_key.get_secret_value() if s.llm_api_key else None
    client = llm.ChatClient(s.llm_base_url, key, timeout_s=s.llm_timeout_s, max_retries=s.llm_max_retries)
    gate = asyncio.Semaphore(s.llm_concurrency)
    done = [0]

    async def one(j: int) -> None:
        c = result.clusters[j]
        samples = [
            texts.sample_text(inputs[int(i)], opts.sample_max_chars) for i in rep_idx[j] if int(i) in inputs
        ][: opts.max_samples]
        if not samples:
            failures.setdefault("no member text to label from (labeling_inputs)", []).append(j)
            return
        prompt = llm.ClusterPrompt(c.cluster_id, int(c.num_members), samples, out.keywords[j][:8])
        messages = llm.build_messages(prompt, opts)
        cache_key = llm.cache_key(ns, opts, messages)
        if opts.cache_ttl_s and (hit := await label_store.cached_label(rt.db, key=cache_key)) is not None:
            new[j] = llm.LLMLabel(hit["label"], hit.get("summary"), list(hit.get("keywords") or []))
            return
        async with gate:
            if progress.lost:
                return
            try:
                reply = await client.complete(messages, opts)
                label = llm.parse_reply(reply, opts)
            except llm.LLMError as exc:
                failures.setdefault(exc.message, []).append(j)
                return
            finally:  # the fenced write also learns of a cancel between calls
                done[0] += 1
                await progress.report("labeling", 0.9 + 0.02 * done[0] / len(chosen))
        new[j] = label
        if opts.cache_ttl_s:
            value = {"label": label.label, "summary": label.summary, "keywords": label.keywords}
            await label_store.cache_label(rt.db, ns=ns, key=cache_key, value=value, ttl_s=opts.cache_ttl_s)

    try:
        await asyncio.gather(*(one(j) for j in chosen))
    finally:
        await client.aclose()
    if progress.lost:
        raise RunCanceled("labeling")
    for message, positions in failures.items():
        ids = [result.clusters[j].cluster_id for j in sorted(positions)]
        more = f" and {len(ids) - MAX_ERROR_IDS} more" if len(ids) > MAX_ERROR_IDS else ""
        out.errors.append(f"{message} (offline label kept for {', '.join(ids[:MAX_ERROR_IDS])}{more})")
    _merge(out, new, opts)


def _merge(out: RunLabels, new: dict[int, llm.LLMLabel], opts: LabelingOptions) -> None:
    """LLM labels over the offline ones; near-duplicates among the final labels made distinct
    (not with candidate_labels: several clusters may well belong under one candidate)."""
    for j, lab in new.items():
        out.labels[j] = lab.label
        if opts.include_summary:
            out.summaries[j] = lab.summary or out.summaries[j]
        if opts.include_keywords and lab.keywords:
            out.keywords[j] = lab.keywords
    if opts.candidates or not new:
        return
    order = sorted(new)
    distinct = llm.distinct_labels(
        [out.labels[j] for j in order], [out.keywords[j] for j in order], opts.similarity_threshold
    )
    for j, label in zip(order, distinct, strict=True):
        out.labels[j] = label
