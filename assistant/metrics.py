"""Evaluation metrics as pure functions: one question at a time, then aggregated over a QA set.

Matching is on `normalise`d text. `score` gives one question's values (None where the question is not
eligible for a metric); `aggregate` averages them into METRIC_KEYS, None where no question was eligible.

The IR metrics (hit@k, MRR, nDCG) are computed by hand rather than with ranx: ranx compiles its numba
kernels on first use, measured here at ~4 s to import plus ~6 s (warm numba cache) to ~60 s (cold) for
the first call, against microseconds for these few lines.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence

from assistant.answer import Answer

HIT_KS = (1, 3, 5, 10)
METRIC_KEYS = (
    "hit@1",
    "hit@3",
    "hit@5",
    "hit@10",
    "mrr@10",
    "ndcg@10",
    "fact_recall",
    "answer_accuracy",
    "citation_support",
    "citation_validity",
    "page_accuracy",
    "refusal_accuracy",
    "false_refusal_rate",
    "latency_ms_p50",
    "latency_ms_p95",
)
# What each metric means, in a sentence (the app's Evaluation page and report.html show these).
GLOSSARY = {
    "hit@k": "Share of answerable questions whose evidence is in one of the first k retrieved passages.",
    "mrr@10": "Mean of 1/rank of the first passage holding the evidence (0 when it is not in the top 10).",
    "ndcg@10": "Ranking quality of the top 10: 1.0 when every passage holding evidence comes before the rest.",
    "fact_recall": "Share of a question's expected facts (figures, dates, names) that the answer states.",
    "answer_accuracy": "Share of answerable questions whose answer states every expected fact.",
    "citation_support": "Share of answerable questions whose answer cites a passage holding the evidence.",
    "citation_validity": "Share of all citations whose quote is word for word in the passage it cites.",
    "page_accuracy": "Share of questions with expected pages whose answer cites one of those pages.",
    "refusal_accuracy": "Share of questions the documents do not cover that were declined.",
    "false_refusal_rate": "Share of answerable questions that were declined (lower is better).",
    "latency_ms_p50": "Median time to answer one question, in milliseconds.",
    "latency_ms_p95": "95th-percentile time to answer one question: 1 in 20 took longer.",
}


def describe(key: str) -> str:
    """The glossary sentence of a metric key ("hit@3" reads the "hit@k" entry).

    >>> describe("hit@3")
    'Share of answerable questions whose evidence is in one of the first 3 retrieved passages.'
    """
    if key.startswith("hit@"):
        return GLOSSARY["hit@k"].replace(" k ", f" {key[4:]} ")
    return GLOSSARY.get(key, "")


def failed(metrics: dict[str, float | int | None]) -> bool:
    """Whether a question's answer is wrong: an answerable one missing a fact (or declined), or one the
    documents do not cover that was answered.

    >>> failed({"answer_accuracy": 0.0}), failed({"answer_accuracy": 1.0}), failed({"refusal_accuracy": 0.0})
    (True, False, True)
    """
    return (
        metrics.get("answer_accuracy") == 0.0
        or metrics.get("refusal_accuracy") == 0.0
        or metrics.get("false_refusal_rate") == 1.0
    )


_DASHES = str.maketrans(
    {
        "\u2010": "-",
        "\u2011": "-",
        "\u2012": "-",
        "\u2013": "-",
        "\u2014": "-",
        "\u2015": "-",
        "\u2212": "-",
        "\u2018": "'",
        "\u2019": "'",
        "\u201a": "'",
        "\u201b": "'",
        "\u201c": '"',
        "\u201d": '"',
        "\u201e": '"',
        "\u201f": '"',
    }
)
_SPACE = re.compile(r"\s+")


def normalise(text: str) -> str:
    """Case-fold, collapse whitespace, dashes to "-" and curly quotes to straight ones.

    >>> normalise("  The\u00a0NHS \u2013 \u201cA&E\u201d\\n 4\u2011hour ")
    'the nhs - "a&e" 4-hour'
    """
    return _SPACE.sub(" ", text.translate(_DASHES).casefold()).strip()


def contains_any(text: str, needles: Iterable[str]) -> bool:
    """Whether any needle occurs in `text`, both normalised.

    >>> contains_any("Seen within 4\u00a0HOURS.", ["4 hours", "76%"])
    True
    >>> contains_any("Seen within 4 hours.", [])
    False
    """
    haystack = normalise(text)
    return any(normalise(n) and normalise(n) in haystack for n in needles)


def first_hit_rank(texts: Sequence[str], evidence: Sequence[str]) -> int | None:
    """1-based rank of the first text holding any evidence string, or None.

    >>> first_hit_rank(["no", "76% of patients", "76%"], ["76% OF patients"])
    2
    >>> first_hit_rank(["no"], ["76%"]) is None
    True
    """
    for rank, text in enumerate(texts, start=1):
        if contains_any(text, evidence):
            return rank
    return None


def hit_at(rank: int | None, k: int) -> float:
    """1.0 if the first hit is within the top k, else 0.0.

    >>> hit_at(3, 3), hit_at(4, 3), hit_at(None, 10)
    (1.0, 0.0, 0.0)
    """
    return 1.0 if rank is not None and rank <= k else 0.0


def reciprocal_rank(rank: int | None, k: int = 10) -> float:
    """1/rank of the first hit within the top k, else 0.0.

    >>> reciprocal_rank(4), reciprocal_rank(11), reciprocal_rank(None)
    (0.25, 0.0, 0.0)
    """
    return 1.0 / rank if rank is not None and rank <= k else 0.0


def ndcg_at(relevant: Sequence[bool], k: int = 10) -> float:
    """nDCG@k with binary relevance of each retrieved chunk; the ideal is those same chunks best-first.

    >>> ndcg_at([True, False])
    1.0
    >>> round(ndcg_at([False, True]), 4)  # (1/log2 3) / (1/log2 2)
    0.6309
    >>> ndcg_at([False, False])
    0.0
    """
    gains = [1.0 if r else 0.0 for r in relevant[:k]]
    ideal = sorted(gains, reverse=True)
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    if idcg == 0:
        return 0.0
    return sum(g / math.log2(i + 2) for i, g in enumerate(gains)) / idcg


def fact_recall(text: str, facts: Sequence[str]) -> float | None:
    """Share of facts found in the answer text; None when there are no facts.

    >>> fact_recall("76% within 4 hours", ["76%", "4 HOURS", "March"])
    0.6666666666666666
    >>> fact_recall("anything", []) is None
    True
    """
    if not facts:
        return None
    haystack = normalise(text)
    return sum(normalise(f) in haystack for f in facts) / len(facts)


def citation_supported(answer: Answer, evidence: Sequence[str]) -> bool:
    """Whether a non-refused answer cites a chunk that holds any evidence string.

    >>> from assistant.answer import Citation, Retrieved
    >>> a = Answer("q", "76% [1]", False, [Citation(1, "s", "t", 1, None, "76%", "c1")],
    ...            [Retrieved("c1", "s", 1, 0.9, "No less than 76% of patients")])
    >>> citation_supported(a, ["76% of patients"]), citation_supported(a, ["92%"])
    (True, False)
    """
    if answer.refused:
        return False
    texts = _chunk_texts(answer)
    return any(contains_any(texts.get(c.chunk_id, ""), evidence) for c in answer.citations)


def valid_citations(answer: Answer) -> int:
    """How many citations quote their chunk verbatim (after normalise).

    >>> from assistant.answer import Citation, Retrieved
    >>> cites = [Citation(1, "s", "t", 1, None, "76%  OF", "c1"), Citation(2, "s", "t", 1, None, "92%", "c1"),
    ...          Citation(3, "s", "t", 1, None, "76%", "gone")]
    >>> valid_citations(Answer("q", "", False, cites, [Retrieved("c1", "s", 1, 0.9, "76% of all")]))
    1
    """
    texts = _chunk_texts(answer)
    return sum(
        1
        for c in answer.citations
        if c.chunk_id in texts and normalise(c.quote) and normalise(c.quote) in normalise(texts[c.chunk_id])
    )


def page_hit(answer: Answer, pages: Sequence[int]) -> bool:
    """Whether any citation is on one of the expected pages.

    >>> from assistant.answer import Citation
    >>> a = Answer("q", "", False, [Citation(1, "s", "t", 6, None, "x", "c")])
    >>> page_hit(a, [1, 6]), page_hit(a, [2])
    (True, False)
    """
    return any(c.page in pages for c in answer.citations)


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0-100) by linear interpolation; None for no values.

    >>> percentile([10, 20, 30, 40], 50), percentile([10, 20, 30, 40], 95), percentile([], 50)
    (25.0, 38.5, None)
    """
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return float(ordered[low] + (ordered[high] - ordered[low]) * (position - low))


def score(
    answer: Answer,
    *,
    answerable: bool,
    facts: Sequence[str],
    evidence: Sequence[str],
    pages: Sequence[int] | None = None,
) -> dict[str, float | int | None]:
    """One question's values: the per-question metrics plus `rank`, citation counts and `latency_ms`.

    >>> from assistant.answer import Retrieved
    >>> s = score(Answer("q", "I can't say.", True, retrieved=[Retrieved("c", "s", 1, 1.0, "92% or below")],
    ...           timings_ms={"total": 12.0}), answerable=True, facts=["92%"], evidence=["92% or below"])
    >>> s["hit@1"], s["fact_recall"], s["false_refusal_rate"], s["refusal_accuracy"], s["page_accuracy"]
    (1.0, 0.0, 1.0, None, None)
    """
    eligible = answerable and bool(evidence)
    texts = [r.text for r in answer.retrieved]
    rank = first_hit_rank(texts, evidence) if eligible else None
    values: dict[str, float | int | None] = {
        f"hit@{k}": hit_at(rank, k) if eligible else None for k in HIT_KS
    }
    values["mrr@10"] = reciprocal_rank(rank) if eligible else None
    values["ndcg@10"] = ndcg_at([contains_any(t, evidence) for t in texts]) if eligible else None
    recall = fact_recall(answer.text, facts) if answerable else None
    values["fact_recall"] = recall
    values["answer_accuracy"] = None if recall is None else float(recall == 1.0)
    values["citation_support"] = float(citation_supported(answer, evidence)) if eligible else None
    values["citation_validity"] = (
        valid_citations(answer) / len(answer.citations) if answer.citations else None
    )
    values["page_accuracy"] = float(page_hit(answer, pages)) if pages else None
    values["refusal_accuracy"] = None if answerable else float(answer.refused)
    values["false_refusal_rate"] = float(answer.refused) if answerable else None
    values["rank"] = rank
    values["citations"] = len(answer.citations)
    values["valid_citations"] = valid_citations(answer)
    values["latency_ms"] = answer.timings_ms.get("total")
    return values


def aggregate(scores: Sequence[dict[str, float | int | None]]) -> dict[str, float | None]:
    """Mean of each metric over the questions eligible for it (None if none were); citation validity
    is pooled over all citations, latency given as p50/p95.

    >>> agg = aggregate([{"hit@1": 1.0, "citations": 2, "valid_citations": 1, "latency_ms": 10.0},
    ...                  {"hit@1": None, "citations": 2, "valid_citations": 2, "latency_ms": 30.0}])
    >>> agg["hit@1"], agg["hit@3"], agg["citation_validity"], agg["latency_ms_p50"]
    (1.0, None, 0.75, 20.0)
    """
    result: dict[str, float | None] = {}
    for key in METRIC_KEYS:
        present = [float(v) for s in scores if (v := s.get(key)) is not None]
        result[key] = sum(present) / len(present) if present else None
    cited = sum(int(s.get("citations") or 0) for s in scores)
    valid = sum(int(s.get("valid_citations") or 0) for s in scores)
    result["citation_validity"] = valid / cited if cited else None
    latencies = [float(v) for s in scores if (v := s.get("latency_ms")) is not None]
    result["latency_ms_p50"] = percentile(latencies, 50)
    result["latency_ms_p95"] = percentile(latencies, 95)
    return result


def _chunk_texts(answer: Answer) -> dict[str, str]:
    # The cited chunk's text is the retrieved entry with the same id; answers list every cited chunk.
    return {r.chunk_id: r.text for r in answer.retrieved}
