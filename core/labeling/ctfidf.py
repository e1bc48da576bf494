"""Offline cluster labels: class-based TF-IDF over each cluster's member texts (pure, no I/O).

As in topic models (BERTopic's c-TF-IDF), all texts of a cluster are joined into one document
per class; a term's weight in class c is its L1-normalised frequency in c times
log(1 + A / f_t), A the average number of words per class and f_t the term's frequency over all
classes. Terms frequent in one cluster and rare elsewhere rank first. Unigrams and bigrams of
English words (scikit-learn's stop list) are counted; a keyword whose words are already covered
by a higher-ranked one is dropped ("machine learning" keeps neither "machine" nor "learning").

Bounded work: callers pass at most `texts_per_cluster` texts per cluster, each cut to
`MAX_TEXT_CHARS` (core.labeling.texts does both), so 100k members in thousands of clusters count
a few MB of text into one sparse matrix.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

TOP_KEYWORDS = 8
LABEL_WORDS = 3
MAX_TEXT_CHARS = 500
TOTAL_TEXTS = 20_000  # per run, spread over the clusters (texts_per_cluster)
MAX_TEXTS_PER_CLUSTER = 100
MIN_TEXTS_PER_CLUSTER = 10
SUMMARY_EXAMPLE_CHARS = 120
# words of 2+ characters starting with a letter: numbers and ids carry no topic
WORD_PATTERN = r"(?u)\b[^\W\d_][\w'-]*\w\b"


@dataclass
class ClusterLabel:
    label: str
    keywords: list[str] = field(default_factory=list)
    summary: str | None = None


def texts_per_cluster(num_clusters: int) -> int:
    """How many member texts each cluster contributes: TOTAL_TEXTS spread over the clusters,
    between MIN_ and MAX_TEXTS_PER_CLUSTER."""
    share = TOTAL_TEXTS // max(1, num_clusters)
    return max(MIN_TEXTS_PER_CLUSTER, min(MAX_TEXTS_PER_CLUSTER, share))


def class_keywords(class_texts: Sequence[Sequence[str]], top_n: int = TOP_KEYWORDS) -> list[list[str]]:
    """Top keywords per class (c-TF-IDF), best first; [] for a class without countable words."""
    from sklearn.feature_extraction.text import CountVectorizer

    flat = [t for texts in class_texts for t in texts]
    if not any(t.strip() for t in flat):
        return [[] for _ in class_texts]
    vectorizer = CountVectorizer(
        ngram_range=(1, 2), stop_words="english", token_pattern=WORD_PATTERN, lowercase=True
    )
    try:
        per_text = vectorizer.fit_transform(flat)  # per text: no bigram spans two texts
    except ValueError:  # "empty vocabulary": nothing but stop words and numbers
        return [[] for _ in class_texts]
    counts = _sum_by_class(per_text, [len(texts) for texts in class_texts])
    vocab = vectorizer.get_feature_names_out()
    is_bigram = np.char.count(vocab.astype(str), " ") > 0
    weights = ctfidf(counts)
    out: list[list[str]] = []
    for row in range(weights.shape[0]):
        start, end = weights.indptr[row], weights.indptr[row + 1]
        cols, vals = weights.indices[start:end], weights.data[start:end]
        # a bigram seen once is an accident of word order, not a phrase of the cluster
        keep = ~is_bigram[cols] | (counts[row, cols].toarray().ravel() >= 2)
        cols, vals = cols[keep], vals[keep]
        # best first; ties by term so the same texts always give the same keywords
        order = np.lexsort((vocab[cols], -vals))
        out.append(_distinct_terms([str(vocab[cols[i]]) for i in order], top_n))
    return out


def _sum_by_class(per_text: Any, sizes: list[int]) -> Any:
    """(classes × terms) counts from (texts × terms): texts arrive grouped by class, in order."""
    import scipy.sparse as sp

    owner = np.repeat(np.arange(len(sizes)), sizes)
    indicator = sp.csr_matrix(
        (np.ones(owner.size), (owner, np.arange(owner.size))), shape=(len(sizes), owner.size)
    )
    return sp.csr_matrix(indicator @ per_text, dtype=np.float64)


def ctfidf(counts: Any) -> Any:
    """c-TF-IDF of a (classes × terms) sparse count matrix: tf (L1 per class) × log(1 + A / f_t)."""
    import scipy.sparse as sp
    from sklearn.preprocessing import normalize

    X = sp.csr_matrix(counts)
    f_t = np.asarray(X.sum(axis=0)).ravel()
    words_per_class = np.asarray(X.sum(axis=1)).ravel()
    avg = float(words_per_class.mean()) if words_per_class.size else 0.0
    idf = np.log1p(avg / np.maximum(f_t, 1.0))
    tf = normalize(X, norm="l1", axis=1)
    return sp.csr_matrix(tf.multiply(idf[None, :]))


def _distinct_terms(ranked: list[str], top_n: int) -> list[str]:
    """The first `top_n` terms without repeats: a term whose words are all chosen already adds
    nothing ("learning" after "machine learning"), and a phrase takes the place of the chosen
    words it contains ("machine learning" replaces an earlier "learning" and "machine")."""
    chosen: list[str] = []
    for term in ranked:
        words = set(term.split())
        if any(words <= set(c.split()) for c in chosen):
            continue
        inside = [i for i, c in enumerate(chosen) if set(c.split()) < words]
        if inside:
            chosen[inside[0]] = term
            chosen = [c for i, c in enumerate(chosen) if i not in inside[1:]]
        else:
            chosen.append(term)
        if len(chosen) >= top_n:
            break
    return chosen


def _label_key(label: str) -> frozenset[str]:
    """Near-duplicate test for labels: the same words whatever their order, case or punctuation."""
    return frozenset(re.findall(r"\w+", label.casefold()))


def make_labels(
    keywords: Sequence[Sequence[str]],
    examples: Sequence[str | None],
    sizes: Sequence[int],
    fallback: Sequence[str],
    *,
    label_words: int = LABEL_WORDS,
) -> list[ClusterLabel]:
    """A label (top keywords), keywords and summary per cluster, labels made distinct.

    Larger clusters pick first; a label another cluster already has (the same words) takes the
    cluster's next keyword, and when its keywords run out a ` (n)` suffix. A cluster without
    keywords gets `fallback[i]` ("Cluster <k>") and no summary."""
    out: list[ClusterLabel | None] = [None] * len(keywords)
    used: set[frozenset[str]] = set()
    for i in sorted(range(len(keywords)), key=lambda j: (-sizes[j], j)):
        words = list(keywords[i])
        if not words:
            out[i] = ClusterLabel(label=fallback[i])
            used.add(_label_key(fallback[i]))
            continue
        n = min(label_words, len(words))
        label = ", ".join(words[:n])
        while _label_key(label) in used and n < len(words):
            n += 1
            label = ", ".join(words[:n])
        base, suffix = label, 2
        while _label_key(label) in used:
            label = f"{base} ({suffix})"
            suffix += 1
        used.add(_label_key(label))
        out[i] = ClusterLabel(label=label, keywords=words, summary=summary(words, examples[i], sizes[i]))
    return [c for c in out if c is not None]


def summary(keywords: Sequence[str], example: str | None, size: int) -> str:
    """One sentence from the keywords and the member nearest the centroid."""
    top = list(keywords[:4])
    about = top[0] if len(top) == 1 else ", ".join(top[:-1]) + " and " + top[-1]
    noun = "document" if size == 1 else "documents"
    text = f"{size} {noun} about {about}."
    if example:
        snippet = " ".join(example.split())
        if len(snippet) > SUMMARY_EXAMPLE_CHARS:
            snippet = snippet[: SUMMARY_EXAMPLE_CHARS - 1].rstrip() + "…"
        text += f' Closest to the centre: "{snippet}"'
    return text
