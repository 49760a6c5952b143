"""Fit the evidence policy (assistant/data/policy.json) by cross-validation over pooled QA sets.

    python eval/fit_policy.py                       # fit on the tuning sets, write policy.json, print CV scores
    python eval/fit_policy.py --dry-run --report    # only print the cross-validated scores

What is fitted, in two stages: first the fusion of dense and BM25 rankings (its dense weight and rank
constant, chosen to maximise how often a passage holding the answer is among the candidates the policy
judges, pooled over the tuning sets); then the feature weights of evidence.FEATURES (an L2-regularised logistic regression of
"this passage holds the answer's facts" over the passages that pass evidence.RULES), the regularisation
strength, and the acceptance threshold (the probability below which a question is refused). Folds are
by question (GroupKFold), pooled over every tuning set, so no threshold is fitted to one question or one
set. eval/qa/blind.jsonl is never read here: it is kept for reporting.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402

from assistant import evidence  # noqa: E402
from assistant.chain import Chain  # noqa: E402
from assistant.config import Settings  # noqa: E402
from assistant.evaluation import load_qa  # noqa: E402
from assistant.metrics import contains_any, normalise  # noqa: E402
from assistant.store import build_index  # noqa: E402

# (QA set, corpus folders): every tuning set, on the corpus it was written for.
TUNING = [
    ("eval/qa/objectives.jsonl", ["corpus"]),
    ("eval/qa/heldout.jsonl", ["corpus"]),
    ("eval/qa/pdf.jsonl", ["eval/pdfs"]),
    ("eval/qa/dev.jsonl", ["corpus", "eval/pdfs"]),
]
NAMES = [f.name for f in evidence.FEATURES] + list(evidence.RELATIVE)


@dataclass
class Example:
    """One question: its candidate passages' features and labels (1 = holds a fact of the answer)."""

    set: str
    id: str
    answerable: bool
    X: np.ndarray
    y: np.ndarray
    decided: str | None  # refused or answered before scoring (question rules, register list, no passage)


def _chains(index_root: Path, policy: evidence.Policy) -> list[tuple[str, Chain]]:
    out = []
    for qa, corpora in TUNING:
        index_dir = index_root / "-".join(Path(c).name for c in corpora)
        settings = Settings(index_dir=index_dir)
        if not (index_dir / "manifest.json").exists():
            build_index([ROOT / c for c in corpora], settings)
        out.append((qa, Chain(settings, policy=policy)))
    return out


def fit_fusion(index_root: Path, policy: evidence.Policy) -> tuple[float, int, float]:
    """The (dense weight, rank constant) under which the evidence is most often among the candidates."""
    items = []
    for qa, chain in _chains(index_root, policy):
        for item in load_qa(ROOT / qa):
            if item.answerable and item.evidence:
                items.append((chain, chain.understand(item.question, item.history), item))
    best = (-1.0, 0.0, 0)
    for dense in (0.2, 0.3, 0.4, 0.5, 0.6):
        for c in (5, 10, 30):
            found = 0
            for chain, q, item in items:
                retriever = chain._loaded().retriever
                retriever.fusion.weights, retriever.fusion.c = [dense, 1 - dense], c
                hits, _, _ = chain.passages(q)
                found += any(
                    contains_any(h.chunk.page_content, item.evidence) for h in hits[: policy.candidates]
                )
            recall = found / len(items)
            if recall > best[0]:
                best = (recall, dense, c)
    return best[1], best[2], round(best[0], 3)


def collect(index_root: Path, policy: evidence.Policy) -> list[Example]:
    examples = []
    for qa, chain in _chains(index_root, policy):
        for item in load_qa(ROOT / qa):
            q = chain.understand(item.question, item.history)
            _, passages, _ = chain.passages(q)
            decided = None
            if evidence.refusal_before_reading(q):
                decided = "question rule"
            kept = [p for p in passages if not any(r.rejects(q, p) for r in evidence.RULES)]
            if not kept and decided is None:
                decided = "no passage"
            facts = [normalise(f) for f in item.facts]
            values = evidence.features(q, kept, chain._loaded().vocabulary)
            X = np.array([[v[n] for n in NAMES] for v in values]).reshape(-1, len(NAMES))
            y = np.array(
                [
                    int(
                        item.answerable
                        and any(f in normalise(p.text) for f in facts)
                        and (not item.evidence or contains_any(p.chunk.page_content, item.evidence))
                    )
                    for p in kept
                ]
            )
            examples.append(Example(Path(qa).stem, item.id, item.answerable, X, y, decided))
    return examples


def outcome(ex: Example, probs: np.ndarray | None, accept: float, second: float = 1.0, most: int = 3) -> str:
    """right / wrong / refused-right / refused-wrong for one question under a threshold; an answer is
    right when its best passage, or another of the `most` it quotes (those scoring `second` of the
    best), holds a fact."""
    if ex.decided == "question rule" or probs is None or not len(probs) or probs.max() < accept:
        return "refused-right" if not ex.answerable else "refused-wrong"
    if not ex.answerable:
        return "wrong"
    order = np.argsort(-probs)
    shown = [order[0]] + [i for i in order[1:most] if probs[i] >= second * probs[order[0]]]
    return "right" if any(ex.y[i] for i in shown) else "wrong"


def utility(outcomes: list[str]) -> float:
    """Right answers and right refusals count 1; a wrong answer costs 1 more (a wrong number is worse
    than no answer); a refused answerable question counts 0."""
    return sum({"right": 1, "refused-right": 1, "wrong": -1, "refused-wrong": 0}[o] for o in outcomes) / len(
        outcomes
    )


def fit(examples: list[Example], c: float) -> tuple[np.ndarray, float]:
    from sklearn.linear_model import LogisticRegression

    X = np.vstack([e.X for e in examples if len(e.X)])
    y = np.concatenate([e.y for e in examples if len(e.X)])
    # fitted on standardised features (so one C regularises each alike), returned for the raw ones
    mean, scale = X.mean(axis=0), X.std(axis=0)
    scale[scale == 0] = 1.0
    model = LogisticRegression(C=c, max_iter=2000)
    model.fit((X - mean) / scale, y)
    w = model.coef_[0] / scale
    return w, float(model.intercept_[0] - (mean * w).sum())


def probs(ex: Example, w: np.ndarray, b: float) -> np.ndarray:
    return 1 / (1 + np.exp(-(ex.X @ w + b))) if len(ex.X) else np.array([])


def cross_validate(
    examples: list[Example], cs: list[float], thresholds: np.ndarray, second: float, folds: int = 5
):
    from sklearn.model_selection import GroupKFold

    groups = [f"{e.set}/{e.id}" for e in examples]
    results = {}
    for c in cs:
        held: list[tuple[Example, np.ndarray]] = []
        for train, test in GroupKFold(n_splits=folds).split(examples, groups=groups):
            w, b = fit([examples[i] for i in train], c)
            held += [(examples[i], probs(examples[i], w, b)) for i in test]
        for t in thresholds:
            outs = [outcome(e, p, t, second) for e, p in held]
            results[(c, round(float(t), 3))] = (utility(outs), outs, held)
    return results


def summary(examples: list[Example], outs: list[str]) -> dict[str, dict[str, float]]:
    by_set: dict[str, list[tuple[Example, str]]] = {}
    for e, o in zip(examples, outs, strict=True):
        by_set.setdefault(e.set, []).append((e, o))
        by_set.setdefault("pooled", []).append((e, o))
    table = {}
    for name, rows in by_set.items():
        ans = [o for e, o in rows if e.answerable]
        un = [o for e, o in rows if not e.answerable]
        table[name] = {
            "questions": len(rows),
            "answered right": round(sum(o == "right" for o in ans) / max(1, len(ans)), 3),
            "answerable refused": round(sum(o == "refused-wrong" for o in ans) / max(1, len(ans)), 3),
            "unanswerable refused": round(sum(o == "refused-right" for o in un) / max(1, len(un)), 3),
        }
    return table


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index-root", type=Path, default=Path(tempfile.gettempdir()) / "nhs-fit-indexes")
    parser.add_argument(
        "--dry-run", action="store_true", help="print the CV scores, do not write policy.json"
    )
    args = parser.parse_args()
    current = evidence.default_policy()
    dense, c_fusion, recall = fit_fusion(args.index_root, current)
    current = replace(current, fusion_dense=dense, fusion_c=c_fusion)
    print(f"fusion: dense weight {dense}, rank constant {c_fusion}, evidence among the candidates {recall}")
    examples = collect(args.index_root, current)
    cs = [0.03, 0.1, 0.3, 1.0, 3.0]
    thresholds = np.round(np.arange(0.02, 0.9, 0.02), 3)
    results = cross_validate(examples, cs, thresholds, current.second_quote)
    (c, t), (best, outs, held) = max(results.items(), key=lambda kv: kv[1][0])
    table = summary([e for e, _ in held], outs)
    w, b = fit(examples, c)
    policy = replace(
        current,
        weights={n: round(float(v), 4) for n, v in zip(NAMES, w, strict=True)},
        bias=round(b, 4),
        accept=t,
        fitted={
            "how": "eval/fit_policy.py: logistic regression of 'passage holds a fact of the answer' over the passages "
            "that pass evidence.RULES; C and the acceptance threshold chosen by 5-fold GroupKFold (by question) "
            "cross-validation over the pooled tuning sets, maximising right answers + right refusals - wrong answers - half the refused answerable ones",
            "sets": [qa for qa, _ in TUNING],
            "questions": len(examples),
            "C": c,
            "fusion_recall_at_candidates": recall,
            "cv_utility": round(best, 3),
            "cv": table,
            "date": datetime.now(UTC).date().isoformat(),
        },
    )
    print(json.dumps({"C": c, "accept": t, "cv_utility": round(best, 3), "cv": table}, indent=1))
    print(json.dumps(policy.weights, indent=1))
    if not args.dry_run:
        evidence.POLICY_FILE.write_text(policy.to_json() + "\n", encoding="utf-8")
        print(f"wrote {evidence.POLICY_FILE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
