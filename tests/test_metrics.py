"""Metrics on tiny hand-checked cases."""

from __future__ import annotations

import doctest

import pytest

import assistant.metrics
from assistant.answer import Answer, Citation, Retrieved
from assistant.metrics import METRIC_KEYS, aggregate, ndcg_at, normalise, percentile, score


def _answer(
    text: str = "", refused: bool = False, chunks: tuple[str, ...] = (), cites=(), total=None
) -> Answer:
    retrieved = [Retrieved(f"c{i}", "doc.pdf", i, 1.0 - i / 10, t) for i, t in enumerate(chunks, start=1)]
    citations = [
        Citation(n, "doc.pdf", "Doc", page, None, quote, cid) for n, (cid, page, quote) in enumerate(cites, 1)
    ]
    return Answer("q", text, refused, citations, retrieved, {"total": total} if total is not None else {})


def test_doctests_pass() -> None:
    assert doctest.testmod(assistant.metrics).failed == 0


def test_normalise_dashes_quotes_case_and_space() -> None:
    assert normalise("2\u20133 \u201cBeds\u201d  \u2018ok\u2019\n") == "2-3 \"beds\" 'ok'"


def test_retrieval_metrics_use_first_chunk_with_evidence() -> None:
    a = _answer(chunks=("nothing", "also nothing", "No less than 76% of patients"))
    s = score(a, answerable=True, facts=[], evidence=["76% OF PATIENTS", "absent"])
    assert s["rank"] == 3
    assert (s["hit@1"], s["hit@3"], s["hit@5"], s["hit@10"]) == (0.0, 1.0, 1.0, 1.0)
    assert s["mrr@10"] == pytest.approx(1 / 3)
    assert s["ndcg@10"] == pytest.approx(0.5)  # (1/log2 4) / (1/log2 2)


def test_ndcg_counts_every_relevant_chunk() -> None:
    # gains 1,0,1 -> dcg 1 + 1/2; ideal 1,1,0 -> 1 + 1/log2(3)
    assert ndcg_at([True, False, True]) == pytest.approx(1.5 / (1 + 1 / 1.584962500721156))


def test_hit_beyond_ten_is_a_miss() -> None:
    a = _answer(chunks=tuple(["x"] * 10 + ["76%"]))
    s = score(a, answerable=True, facts=[], evidence=["76%"])
    assert (s["rank"], s["hit@10"], s["mrr@10"], s["ndcg@10"]) == (11, 0.0, 0.0, 0.0)


def test_fact_recall_and_answer_accuracy() -> None:
    s = score(
        _answer("At least 76\u00a0% ... 76% within 4 HOURS"),
        answerable=True,
        facts=["76%", "4 hours", "March"],
        evidence=["x"],
    )
    assert s["fact_recall"] == pytest.approx(2 / 3)
    assert s["answer_accuracy"] == 0.0
    s = score(
        _answer("76% within 4 hours by March"),
        answerable=True,
        facts=["76%", "4 hours", "march"],
        evidence=[],
    )
    assert (s["fact_recall"], s["answer_accuracy"]) == (1.0, 1.0)


def test_citation_support_validity_and_page() -> None:
    a = _answer(
        "76% [1] [2]",
        chunks=("No less than 76% of patients", "92% or below"),
        cites=(("c1", 1, "76%  of PATIENTS"), ("c2", 2, "not in the chunk"), ("missing", 6, "76%")),
    )
    s = score(a, answerable=True, facts=["76%"], evidence=["76% of patients"], pages=[6])
    assert s["citation_support"] == 1.0
    assert (s["citations"], s["valid_citations"]) == (3, 1)
    assert s["citation_validity"] == pytest.approx(1 / 3)
    assert s["page_accuracy"] == 1.0
    assert score(a, answerable=True, facts=[], evidence=["92% or below"], pages=[3])["page_accuracy"] == 0.0
    assert score(a, answerable=True, facts=[], evidence=["nowhere"])["citation_support"] == 0.0


def test_refused_answer_is_not_support_even_with_a_good_citation() -> None:
    a = _answer(refused=True, chunks=("76% of patients",), cites=(("c1", 1, "76%"),))
    s = score(a, answerable=True, facts=["76%"], evidence=["76% of patients"])
    assert (s["citation_support"], s["false_refusal_rate"], s["refusal_accuracy"]) == (0.0, 1.0, None)


def test_unanswerable_questions_score_refusal_only() -> None:
    s = score(_answer(refused=True), answerable=False, facts=[], evidence=[])
    assert s["refusal_accuracy"] == 1.0
    for key in (
        "hit@1",
        "mrr@10",
        "ndcg@10",
        "fact_recall",
        "answer_accuracy",
        "citation_support",
        "false_refusal_rate",
        "page_accuracy",
        "citation_validity",
    ):
        assert s[key] is None, key
    assert score(_answer("a guess"), answerable=False, facts=[], evidence=[])["refusal_accuracy"] == 0.0


def test_aggregate_averages_eligible_questions_and_gives_none_otherwise() -> None:
    answerable = score(
        _answer("76%", chunks=("76%",), cites=(("c1", 1, "76%"),), total=10.0),
        answerable=True,
        facts=["76%"],
        evidence=["76%"],
    )
    refused = score(_answer(refused=True, total=30.0), answerable=True, facts=["76%"], evidence=["76%"])
    agg = aggregate([answerable, refused])
    assert set(agg) == set(METRIC_KEYS)
    assert agg["hit@1"] == 0.5
    assert agg["fact_recall"] == 0.5
    assert agg["false_refusal_rate"] == 0.5
    assert agg["citation_validity"] == 1.0
    assert agg["refusal_accuracy"] is None
    assert agg["page_accuracy"] is None
    assert agg["latency_ms_p50"] == 20.0
    assert agg["latency_ms_p95"] == pytest.approx(29.0)


def test_aggregate_of_nothing_is_all_none() -> None:
    assert all(v is None for v in aggregate([]).values())


def test_percentile_single_value() -> None:
    assert percentile([7.0], 95) == 7.0
