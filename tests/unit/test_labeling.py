"""Offline labels (c-TF-IDF), member selection, text extraction, options and the LLM reply/prompt."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from core.errors import ValidationFailed
from core.labeling import ctfidf, llm, members, texts
from core.labeling.options import parse_options
from core.labeling.texts import InputMapping

SPORT = [
    "the football match ended with a late goal",
    "a penalty goal in the football cup final",
    "the striker scored a goal in the match",
]
BAKING = [
    "the bread recipe needs flour and yeast",
    "bake the bread dough with flour",
    "a recipe for sourdough bread",
]


def test_ctfidf_weights_follow_the_formula() -> None:
    counts = sp.csr_matrix(np.array([[3, 1, 0], [0, 1, 4]], dtype=np.float64))
    w = ctfidf.ctfidf(counts).toarray()
    avg = counts.sum() / 2  # A: average words per class = 4.5
    f_t = np.array([3, 2, 4])
    tf = counts.toarray() / counts.toarray().sum(axis=1, keepdims=True)
    np.testing.assert_allclose(w, tf * np.log1p(avg / f_t))


def test_class_keywords_of_a_known_corpus() -> None:
    kw = ctfidf.class_keywords([SPORT, BAKING, ["nothing but the"], []])
    assert kw[0][:3] == ["goal", "football", "match"]  # 3, 2, 2 occurrences, then by term
    assert kw[1][:3] == ["bread", "flour", "recipe"]
    assert kw[2] == [] and kw[3] == []  # stop words only / no text
    assert not set(kw[0]) & set(kw[1])
    assert "ended late" not in kw[0]  # a bigram seen once is no phrase


def test_bigrams_that_repeat_replace_their_words() -> None:
    texts_ = ["machine learning models", "machine learning at scale", "learning machine learning"]
    kw = ctfidf.class_keywords([texts_, ["cooking pasta at home"]])
    assert kw[0] == ["machine learning", "models", "scale"]


def test_numbers_and_ids_are_not_keywords() -> None:
    kw = ctfidf.class_keywords([["order 12345 shipped 2024", "order 999 shipped"], ["refund 12345 issued"]])
    assert all(not any(ch.isdigit() for ch in k) for k in kw[0] + kw[1])
    assert kw[0][0] == "order shipped"  # the phrase replaces its two words


def test_labels_are_distinct_and_fall_back() -> None:
    kw = [["apple", "pie", "tart", "crust"], ["pie", "apple", "cider", "orchard"], [], ["apple", "pie"]]
    out = ctfidf.make_labels(
        kw, ["an apple pie", None, None, None], [10, 5, 3, 1], ["C0", "C1", "C2", "C3"], label_words=2
    )
    assert [o.label for o in out] == ["apple, pie", "pie, apple, cider", "C2", "apple, pie (2)"]
    assert (
        out[0].summary
        == '10 documents about apple, pie, tart and crust. Closest to the centre: "an apple pie"'
    )
    assert out[2].keywords == [] and out[2].summary is None


def test_texts_per_cluster_bounds() -> None:
    assert ctfidf.texts_per_cluster(1) == ctfidf.MAX_TEXTS_PER_CLUSTER
    assert ctfidf.texts_per_cluster(5000) == ctfidf.MIN_TEXTS_PER_CLUSTER
    assert ctfidf.texts_per_cluster(400) == 50


def test_many_clusters_stay_fast() -> None:
    """2,000 clusters × 10 texts (20k texts, the run budget) in one pass."""
    import time

    rng = np.random.default_rng(0)
    vocab = np.array([f"w{chr(97 + i % 26)}{chr(97 + i // 26 % 26)}x" for i in range(3000)])
    class_texts = [[" ".join(rng.choice(vocab[c : c + 40], 12)) for _ in range(10)] for c in range(2000)]
    t0 = time.perf_counter()
    kw = ctfidf.class_keywords(class_texts)
    labels = ctfidf.make_labels(kw, [None] * 2000, [10] * 2000, [f"Cluster {i}" for i in range(2000)])
    assert time.perf_counter() - t0 < 30  # a generous bound on a shared machine; ~2 s here
    assert len({lab.label for lab in labels}) == 2000


def test_ranked_members_spread_and_representatives() -> None:
    labels = np.array([1, 0, 1, -1, 1, 0, 1, 1])
    dist = np.array([0.5, 0.2, 0.1, np.nan, 0.3, 0.1, 0.9, 0.7], dtype=np.float32)
    r0, r1 = members.ranked_members(labels, dist, [0, 1])
    assert r0.tolist() == [5, 1] and r1.tolist() == [2, 4, 0, 7, 6]
    assert members.spread(r1, 3).tolist() == [2, 0, 6]  # nearest, middle, edge
    assert members.representatives(r1, 2).tolist() == [2, 4]
    assert members.representatives(r1, 3, "representative").tolist() == [2, 4, 6]


def test_text_from_mappings_and_default() -> None:
    doc = {
        "document_id": "d1",
        "collection_id": "col_x",
        "source_type": "direct_upsert",
        "title": "Red apples",
        "tags": ["fruit", "autumn"],
        "metadata": {"body": "Crisp and sweet", "n": 3, "deep": {"note": "picked early"}},
    }
    maps = [
        InputMapping("t", "payload", "title"),
        InputMapping("b", "payload", "body"),  # found under metadata
        InputMapping("x", "payload", "payload.tags"),  # envelope accepted
        InputMapping("c", "literal", value="Fruit catalogue"),
        InputMapping("v", "vector", "emb"),
        InputMapping("m", "payload", "missing"),
    ]
    parts = texts.mapped_inputs(doc, maps)
    assert parts == [
        ("t", "Red apples", False),
        ("b", "Crisp and sweet", False),
        ("x", "fruit autumn", False),
        ("c", "Fruit catalogue", True),
    ]
    assert texts.document_text(parts) == "Red apples Crisp and sweet fruit autumn"  # no literal
    assert texts.sample_text(parts, 50) == "t: Red apples | b: Crisp and sweet | x: fruit aut…"
    default = texts.mapped_inputs(doc, [])
    assert [k for k, _, _ in default] == ["title", "tags", "tags", "metadata.body", "metadata.deep.note"]
    assert texts.projection(maps) == {"document_id": 1, "title": 1, "metadata.title": 1, "body": 1,
                                      "metadata.body": 1, "tags": 1, "metadata.tags": 1, "payload.tags": 1,
                                      "missing": 1, "metadata.missing": 1}  # fmt: skip
    nested = [InputMapping("a", "payload", "metadata"), InputMapping("b", "payload", "metadata.x")]
    assert texts.projection(nested) == {"document_id": 1, "metadata": 1}  # no path collision


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"max_samples_per_cluster": 0}, "llm_labeling.max_samples_per_cluster"),
        ({"sample_text_max_length": 40}, "llm_labeling.sample_text_max_length"),
        ({"labeling_context": "x" * 2001}, "llm_labeling.labeling_context"),
        ({"provider": "acme"}, "llm_labeling.provider"),
        ({"enabled": "yes"}, "llm_labeling.enabled"),
        ({"sample_selection_strategy": "random"}, "llm_labeling.sample_selection_strategy"),
        ({"candidate_labels": [1, 2]}, "llm_labeling.candidate_labels"),
        ({"labeling_inputs": {"input_mappings": []}}, "llm_labeling.labeling_inputs.input_mappings"),
        ({"labeling_inputs": {"input_mappings": [{"source_type": "payload", "path": "a"}]}}, "[0].input_key"),
        (
            {"labeling_inputs": {"input_mappings": [{"input_key": "a", "source_type": "web"}]}},
            "[0].source_type",
        ),
        (
            {"labeling_inputs": {"input_mappings": [{"input_key": "a", "source_type": "literal"}]}},
            "[0].override",
        ),
    ],
)
def test_bad_options_name_the_field(raw: dict, field: str) -> None:
    with pytest.raises(ValidationFailed) as exc:
        parse_options(raw)
    assert field in exc.value.message


def test_options_defaults_and_candidates() -> None:
    o = parse_options(
        {
            "enabled": True,
            "candidate_labels": {"Sport": "games", "Food": ""},
            "parameters": {"temperature": 0, "json_output": True},
        }
    )
    assert o.enabled and o.max_samples == 8 and o.sample_max_chars == 200 and o.cache_ttl_s == 604_800
    assert o.candidates == {"Sport": "games", "Food": ""} and o.parameters == {"temperature": 0}
    lit = parse_options(
        {
            "labeling_inputs": {
                "input_mappings": [{"input_key": "k", "source_type": "literal", "override": "Ads"}]
            }
        }
    )
    assert lit.mappings[0].value == "Ads"


def test_parse_reply() -> None:
    opts = parse_options({"enabled": True})
    got = llm.parse_reply(
        '```json\n{"label": "  Home   Baking ", "summary": "Bread.", "keywords": ["bread", 3]}\n```', opts
    )
    assert (got.label, got.summary, got.keywords) == ("Home Baking", "Bread.", ["bread"])
    for bad, message in [
        ("no json", "not JSON"),
        ("[1]", "not a JSON object"),
        ('{"label": ""}', "no label"),
    ]:
        with pytest.raises(llm.LLMError, match=message):
            llm.parse_reply(bad, opts)
    cand = parse_options({"candidate_labels": ["Sport", "Food"]})
    assert llm.parse_reply('{"label": "sport"}', cand).label == "Sport"
    with pytest.raises(llm.LLMError, match="not one of the candidate labels"):
        llm.parse_reply('{"label": "Cars"}', cand)
    no_extras = parse_options({"include_summary": False, "include_keywords": False})
    got = llm.parse_reply('{"label": "A", "summary": "s", "keywords": ["k"]}', no_extras)
    assert got.summary is None and got.keywords == []


def test_messages_and_cache_key() -> None:
    opts = parse_options(
        {
            "labeling_context": "TV ads",
            "candidate_labels": {"Pharma": "drug ads"},
            "custom_prompt": "Name it.",
        }
    )
    prompt = llm.ClusterPrompt("cl_3", 12, ["a pill", "a doctor"], ["pill", "doctor"])
    system, user = llm.build_messages(prompt, opts)
    assert system == {"role": "system", "content": "Name it."}
    text = user["content"]
    assert "Domain context provided by the user:\n<<<\nTV ads\n>>>" in text
    assert "- Pharma: drug ads" in text and "1. a pill\n2. a doctor" in text
    assert "Distinctive words of this cluster: pill, doctor" in text and '"label": string' in text
    key = llm.cache_key("ns_a", opts, [system, user])
    assert key == llm.cache_key("ns_a", opts, [system, user])
    assert key != llm.cache_key("ns_b", opts, [system, user])
    other = llm.build_messages(llm.ClusterPrompt("cl_3", 12, ["a pill", "a nurse"], ["pill"]), opts)
    assert key != llm.cache_key("ns_a", opts, other)


def test_distinct_llm_labels() -> None:
    out = llm.distinct_labels(
        ["Sports News", "sports news", "Cooking", "News: Sports", "Sports News"],
        [["sports"], ["football", "goal"], ["bread"], ["news", "sports"], []],
        0.8,
    )
    assert out == ["Sports News", "sports news (football)", "Cooking", "News: Sports (2)", "Sports News (3)"]
    assert llm.similarity("Home Baking", "home-baking") == 1.0
    assert llm.similarity("Home Baking", "Baking") == 0.5


def test_llm_settings_are_checked() -> None:
    from pydantic import ValidationError

    from core.settings import Settings

    with pytest.raises(ValidationError, match="CLUSTERD_LLM_BASE_URL must be an http"):
        Settings(llm_base_url="localhost:8080/v1")
    with pytest.raises(ValidationError):
        Settings(llm_concurrency=0)
    s = Settings(llm_base_url="https://llm.internal/v1", llm_api_key="k" * 20)
    assert s.llm_timeout_s == 30 and s.llm_max_retries == 2 and s.llm_max_clusters == 100
    assert "k" * 20 not in repr(s)  # the key is a secret


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_ranked_members_one_key_sort_equals_the_lexsort(dtype: type) -> None:
    rng = np.random.default_rng(3)
    labels = np.array([-7, 3, 40, 1000, 5, -1])[rng.integers(0, 6, 5000)]
    dist = rng.choice([0.0, -0.0, 0.5, 1.5, np.inf, np.nan], 5000).astype(dtype)  # many ties
    dist[::7] = rng.random(dist[::7].size)
    values = [-7, 3, 40, 1000, 5, 99]
    key = np.nan_to_num(dist.astype(np.float64), nan=np.inf)
    order = np.lexsort((np.arange(5000), key, labels))
    want = [order[labels[order] == v] for v in values]
    got = members.ranked_members(labels, dist, values)
    assert [g.tolist() for g in got] == [w.tolist() for w in want]
