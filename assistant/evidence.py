"""The evidence policy: which passage answers a question, or why none does.

    verdict = judge(question, passages, policy, vocabulary)
    verdict.best, verdict.reason, verdict.fired       # the chosen passage, or the refusal and its rules

Three tables, each entry a named function with one sentence of why:
- QUESTION_RULES refuse a question before any passage is read (clinical advice, instructions);
- RULES rule a passage out with a reason (another nation, another year, a figure the question
  pins that the passage lacks, ...);
- FEATURES score the passages left; the policy's weights combine them into a probability that the
  passage answers, and below `policy.accept` the question is refused as not covered.
The weights and thresholds live in one `Policy`, fitted by cross-validation (eval/fit_policy.py) and
stored in assistant/data/policy.json with how they were fitted.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from langchain_core.documents import Document

from assistant import figures
from assistant.figures import Figure
from assistant.lexicon import Vocabulary, stems
from assistant.passages import Unit
from assistant.questions import NATIONS, Question

POLICY_FILE = Path(__file__).with_name("data") / "policy.json"
NOT_COVERED = "The planning documents don't cover this."
_FIGURE_KINDS = {
    "percent": {"percent"},
    "money": {"money"},
    "duration": {"duration"},
    "count": {"count", "percent", "money"},
    "number": {"count", "percent", "money", "duration"},
    "any": {"count", "percent", "money", "duration"},
}
_NAME = re.compile(
    r"(?<![.!?]\s)(?<!^)\b[A-Z][a-z]+(?:\s+(?:[A-Z][a-z]+|&|and|of|for))*\s+[A-Z][a-z]+\b|\b[A-Z]{2,}\b"
)


@dataclass(frozen=True)
class Passage:
    """A candidate quote: one unit of a retrieved chunk, with the chunk's retrieval scores."""

    unit: Unit
    chunk: Document
    rank: int  # the chunk's place in retrieval (0 = first)
    dense: float  # cosine of the chunk with the question
    similarity: float  # cosine of the quote (with its section) with the question
    siblings: tuple[Unit, ...] = ()  # every unit of the chunk, in order (captions included)

    @property
    def text(self) -> str:
        return self.unit.text

    @functools.cached_property
    def context(self) -> str:
        """What the passage says in full: its chunk's text, section, area and document title."""
        meta = self.chunk.metadata
        parts = (
            self.chunk.page_content,
            meta.get("section"),
            meta.get("area"),
            meta.get("theme"),
            meta.get("title"),
        )
        return " ".join(str(p) for p in parts if p)

    @functools.cached_property
    def nearby(self) -> str:
        """The quote with the units just before and after it (a figure's subject is often a sentence away)."""
        texts = [u.text for u in self.siblings]
        if self.text not in texts:
            return self.text
        i = texts.index(self.text)
        return " ".join(texts[max(0, i - 1) : i + 2])

    @functools.cached_property
    def stated(self) -> tuple[Figure, ...]:
        """The figures the quote states."""
        return figures.read(self.text)

    @functools.cached_property
    def context_figures(self) -> tuple[Figure, ...]:
        """The figures its chunk states."""
        return figures.read(self.chunk.page_content)


# --- question rules: refuse before reading any passage ----------------------------------------------

CLINICAL = (
    "I can't give individual clinical advice (doses, diagnoses or treatment for a patient). "
    "Please use clinical guidance such as NICE, the BNF or your local formulary, and senior clinical advice."
)
INSTRUCTIONS = (
    "I only answer questions from the planning documents, and I don't change my instructions or show "
    "them; ask me about the documents' targets, priorities or findings."
)


@dataclass(frozen=True)
class QuestionRule:
    name: str
    why: str
    refuse: Callable[[Question], str | None]


QUESTION_RULES: tuple[QuestionRule, ...] = (
    QuestionRule(
        "clinical advice",
        "Doses and treatment for a patient belong to clinical guidance, not planning documents.",
        lambda q: CLINICAL if q.clinical else None,
    ),
    QuestionRule(
        "instructions",
        "A question that tries to change the assistant's instructions is not a question about the documents.",
        lambda q: INSTRUCTIONS if q.injection else None,
    ),
)


# --- passage rules: rule a passage out, with the reason ------------------------------------------------


@dataclass(frozen=True)
class Rule:
    name: str
    why: str
    rejects: Callable[[Question, Passage], str | None]
    # a scope rule's reason explains a refusal even when other passages were merely weak
    scope: bool = False


def _other_nation(q: Question, p: Passage) -> str | None:
    text = p.context.lower()
    missing = [
        n
        for n in sorted(q.nations)
        if not any(re.search(rf"\b{re.escape(v)}\b", text) for v in NATIONS[n] if v != "ni")
    ]
    return f"the documents don't give this for {', '.join(m.title() for m in missing)}" if missing else None


def _year_span(year: str) -> set[str]:
    """A year with the financial years it may fall in, and a financial year with its two calendar years."""
    if "/" in year:
        first = year[:4]
        return {year, first, str(int(first) + 1)}
    y = int(year)
    return {year, f"{y - 1}/{str(y)[2:]}", f"{y}/{str(y + 1)[2:]}"}


def _date_span(date: str) -> set[str]:
    """A month and year with its financial year (April to March): "march 2025" -> 2025, 2024/25."""
    month, year = date.split()
    y = int(year)
    first = y - 1 if figures.MONTHS.index(month) < 3 else y
    return {year, f"{first}/{str(first + 1)[2:]}"}


def _other_year(q: Question, p: Passage) -> str | None:
    if not q.years:
        return None
    dated = figures.dates(p.context)
    stated = figures.years(figures.MONTH_YEAR.sub(" ", p.context))
    if not stated and not dated:
        return None  # a passage that names no year does not say which year it is about
    covered = set().union(set(), *(_year_span(y) for y in stated), *(_date_span(d) for d in dated))
    missing = sorted(y for y in q.years if y not in covered)
    return f"the documents don't give this for {', '.join(missing)}" if missing else None


def _other_date(q: Question, p: Passage) -> str | None:
    if not q.dates or q.claims:
        return None  # "that's due in June 2025, right?" is checked against the passage, not required of it
    stated = figures.dates(p.context)
    if not stated or q.dates & stated:
        return None
    return f"the documents don't give this for {', '.join(d.title() for d in sorted(q.dates))}"


def _other_label(q: Question, p: Passage) -> str | None:
    named = figures.labels(p.context)
    kinds = {label.rsplit(" ", 1)[0] for label in named}
    # a passage naming another of the same kind ("category 2" for "category 1") answers something else;
    # one naming none may take its label from the section it is in
    missing = sorted(label for label in q.labels - named if label.rsplit(" ", 1)[0] in kinds)
    return f"the documents don't state this for {', '.join(missing)}" if missing else None


def _stated_figure_absent(q: Question, p: Passage) -> str | None:
    if q.claims:
        return None  # "is it 12 new wards?" is checked against the passage, not required of it
    have = p.context_figures
    missing = [f for f in q.figures if not any(f.same(h) for h in have)]
    return f"the documents don't state this for {', '.join(f.text for f in missing)}" if missing else None


def _wanted_figure_absent(q: Question, p: Passage) -> str | None:
    kinds = _FIGURE_KINDS.get(q.wants or "")
    if not kinds or q.wants == "any":
        return None
    if q.kind in ("yesno", "list", "comparison"):
        return None
    if any(f.kind in kinds for f in p.context_figures):
        return None
    return "the documents don't give a figure for this"


def _wanted_date_absent(q: Question, p: Passage) -> str | None:
    if q.wants != "date" or q.kind == "yesno":
        return None
    if figures.years(p.chunk.page_content) or figures.dates(p.chunk.page_content):
        return None
    return "the documents don't give a date for this"


def _excluded(q: Question, p: Passage) -> str | None:
    said = set(stems(p.text))
    # a quote about what is left out, and nothing else the question asks about
    if any(set(item) <= said for item in q.excluded) and not said & set(q.topic):
        return "it is what the question leaves out"
    return None


def _furniture(q: Question, p: Passage) -> str | None:
    return "a caption or column heading, not an answer" if p.unit.caption else None


RULES: tuple[Rule, ...] = (
    Rule(
        "furniture", "A figure caption or column heading names a table; it answers nothing alone.", _furniture
    ),
    Rule(
        "other nation",
        "The documents are about the NHS in England; a question about Scotland, Wales or Northern Ireland is "
        "answered only by a passage that names that nation.",
        _other_nation,
        scope=True,
    ),
    Rule(
        "other year",
        "A passage dated to other years than the question names does not answer it (2024/25 is not 2025/26).",
        _other_year,
        scope=True,
    ),
    Rule(
        "other date",
        "A month and year is a deadline: a passage giving another deadline ('by March 2024') does not answer "
        "a question about a different one ('by March 2025').",
        _other_date,
        scope=True,
    ),
    Rule(
        "other label",
        "A labelled number names a different thing: band 6 is not band 7, Tier 3 is not Tier 1.",
        _other_label,
        scope=True,
    ),
    Rule(
        "stated figure absent",
        "A figure the question pins down ('the 6-week standard') must be in the passage it is answered from.",
        _stated_figure_absent,
    ),
    Rule(
        "wanted figure absent",
        "A question asking how many, how much, how long or what percentage is answered only by a passage "
        "that states a figure of that kind.",
        _wanted_figure_absent,
    ),
    Rule(
        "wanted date absent",
        "A 'by when' question is answered only by a passage that gives a date.",
        _wanted_date_absent,
    ),
    Rule("excluded", "An 'apart from X' question is not answered by the passage about X.", _excluded),
)


# --- features: how well a passage answers ---------------------------------------------------------------


@dataclass(frozen=True)
class Feature:
    name: str
    why: str
    value: Callable[[Question, Passage, Vocabulary], float]


def _share(wanted: tuple[str, ...], text: str, vocabulary: Vocabulary) -> float:
    """IDF-weighted share of `wanted` stems found in `text` (0 when nothing is wanted)."""
    if not wanted:
        return 0.0
    have = set(stems(text))
    total = sum(vocabulary.idf(w) for w in wanted)
    return sum(vocabulary.idf(w) for w in wanted if w in have) / total if total else 0.0


def _unknown(q: Question, vocabulary: Vocabulary) -> float:
    """IDF-weighted share of the question's topic that no passage of the corpus uses."""
    if not q.topic:
        return 0.0
    total = sum(vocabulary.idf(w) for w in q.topic)
    return sum(vocabulary.idf(w) for w in q.topic if w not in vocabulary.doc_freq) / total if total else 0.0


def _pairs_share(wanted: tuple[str, ...], text: str) -> float:
    pairs = set(zip(wanted, wanted[1:], strict=False))
    if not pairs:
        return 0.0
    have = stems(text)
    return len(pairs & set(zip(have, have[1:], strict=False))) / len(pairs)


def _figure_fit(q: Question, p: Passage, _: Vocabulary) -> float:
    kinds = _FIGURE_KINDS.get(q.wants or "")
    if not kinds:
        return 0.0
    return 1.0 if any(f.kind in kinds for f in p.stated) else -1.0


def _measure_near_figure(q: Question, p: Passage, _: Vocabulary) -> float:
    if not q.measure or not p.stated:
        return 0.0
    words = re.findall(r"[\w&%£.,-]+", figures.digits(p.text).lower())
    near = set()
    for i, w in enumerate(words):
        if re.match(r"[£$]?\d", w):  # what a figure counts follows it: "300 more nurses"
            near |= set(stems(" ".join(words[i + 1 : i + 5])))
    return len(set(q.measure) & near) / len(set(q.measure))


def _date_fit(q: Question, p: Passage, _: Vocabulary) -> float:
    if q.wants != "date" and not q.wants_date:
        return 0.0
    return 1.0 if figures.years(p.text) or figures.dates(p.text) else -1.0


_HEADED = re.compile(r"^\W*([A-Z][^:.!?\n]{2,80}?)\s*:\s+\S")


def _heading_named(q: Question, p: Passage, v: Vocabulary) -> float:
    """Share of the words of the heading a quote opens with ("Maximising Diagnostic Capacity: ...",
    "Recommendation 5: ...") that the question asks about: a passage headed by what is asked is about it."""
    match = _HEADED.match(p.text)
    heading = set(stems(match.group(1))) if match and len(match.group(1).split()) <= 10 else set()
    return len(heading & set(q.topic)) / len(heading) if heading else 0.0


def _label_named(q: Question, p: Passage, _: Vocabulary) -> float:
    if not q.labels:
        return 0.0
    return 1.0 if q.labels <= figures.labels(p.nearby) else -1.0


def _named(q: Question, p: Passage, _: Vocabulary) -> float:
    if q.kind != "who":
        return 0.0
    return 1.0 if _NAME.search(p.text) else -1.0


FEATURES: tuple[Feature, ...] = (
    Feature(
        "first retrieved",
        "Retrieval ranks the passage's chunk; earlier is likelier.",
        lambda q, p, v: 1 / (1 + p.rank),
    ),
    Feature(
        "meaning",
        "Cosine of the question with the passage's chunk: it carries paraphrases.",
        lambda q, p, v: p.dense,
    ),
    Feature(
        "meaning of quote",
        "Cosine of the question with the quote itself: which sentence of the chunk says it.",
        lambda q, p, v: p.similarity,
    ),
    Feature(
        "topic in quote",
        "The quote names what the question is about (rare words weigh more).",
        lambda q, p, v: _share(q.topic, p.text, v),
    ),
    Feature(
        "topic near quote",
        "The quote or the sentence either side of it names what the question is about.",
        lambda q, p, v: _share(q.topic, p.nearby, v),
    ),
    Feature(
        "topic in passage",
        "Its chunk, section, area or document name what the question is about.",
        lambda q, p, v: _share(q.topic, p.context, v),
    ),
    Feature(
        "earlier topic in passage",
        "For a follow-up, the passage is about the earlier question's topic too.",
        lambda q, p, v: _share(q.context, p.context, v),
    ),
    Feature(
        "unknown words",
        "Words of the question the documents never use (after spelling and glossary) name something they lack.",
        lambda q, p, v: _unknown(q, v),
    ),
    Feature(
        "phrase in passage",
        "Words of the question that stand together stand together in the passage.",
        lambda q, p, v: _pairs_share(q.topic, p.context),
    ),
    Feature(
        "figure fit",
        "A question asking for a figure is answered by a quote stating one of that kind.",
        _figure_fit,
    ),
    Feature(
        "measure near figure",
        "The quote's figure is of the thing asked about ('50 million more appointments').",
        _measure_near_figure,
    ),
    Feature(
        "heading names the topic",
        "A quote that opens with a heading naming what is asked ('Maximising Diagnostic Capacity: ...') is about it.",
        _heading_named,
    ),
    Feature(
        "names the label",
        "A question about 'Recommendation 1' or 'Tier 3' is answered by the passage that names it.",
        _label_named,
    ),
    Feature("date fit", "A question asking by when is answered by a quote giving a date.", _date_fit),
    Feature("names someone", "A 'who' question is answered by a quote naming a person or body.", _named),
    Feature(
        "short",
        "A very short quote ('• Patient choice') is a heading or fragment more often than an answer.",
        lambda q, p, v: 1.0 if len(p.text.split()) < 6 else 0.0,
    ),
    Feature(
        "lead-in",
        "A quote ending in ':' introduces an answer rather than giving it.",
        lambda q, p, v: 1.0 if p.text.rstrip().endswith(":") else 0.0,
    ),
)


# --- the policy -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Policy:
    """Every weight and threshold of the answer step, with how they were fitted (see eval/fit_policy.py)."""

    weights: dict[str, float]
    bias: float
    accept: float  # answer when the best passage's probability is at least this
    candidates: int = 10  # retrieved chunks whose units are judged
    second_quote: float = 0.5  # further quotes (up to max_quotes) when they score this share of the best
    max_quotes: int = 3
    list_items: int = 6  # most quotes in a list answer
    fusion_dense: float = 0.3  # weight of the dense ranking in reciprocal rank fusion (BM25 has the rest)
    fusion_c: int = 10  # the fusion's rank constant

    @property
    def fusion_weights(self) -> tuple[float, float]:
        return (self.fusion_dense, round(1 - self.fusion_dense, 4))

    fitted: dict[str, Any] = field(default_factory=dict)

    def probability(self, values: dict[str, float]) -> float:
        z = self.bias + sum(self.weights.get(name, 0.0) * v for name, v in values.items())
        return 1 / (1 + math.exp(-z))

    @classmethod
    def load(cls, path: Path = POLICY_FILE) -> Policy:
        data = json.loads(path.read_text(encoding="utf-8"))
        return cls(**data)

    def to_json(self) -> str:
        return json.dumps(self.__dict__, indent=1, ensure_ascii=False)


@functools.cache
def default_policy() -> Policy:
    """The fitted policy shipped with the package."""
    return Policy.load()


@dataclass
class Scored:
    """A passage that passed every rule, with its feature values and probability of answering."""

    passage: Passage
    values: dict[str, float]
    probability: float


@dataclass
class Verdict:
    """The judgement on a question: the passages that may answer it, best first, or why none does."""

    accepted: list[Scored]
    reason: str | None  # why the question is refused; None when it is answered
    fired: list[str]  # names of the rules and checks that decided it
    rejected: dict[str, int] = field(default_factory=dict)  # rule name -> passages it ruled out

    @property
    def best(self) -> Scored | None:
        return self.accepted[0] if self.accepted and self.reason is None else None


# Features read against the question's other candidates: how far a passage is behind the best of them
# (the best scores 0). They let the weights rank passages within a question, not only across questions.
RELATIVE = {
    "meaning of quote, behind the best": "meaning of quote",
    "topic in quote, behind the best": "topic in quote",
}


def features(q: Question, passages: list[Passage], vocabulary: Vocabulary) -> list[dict[str, float]]:
    """Every feature's value for each passage (the relative ones against the others in `passages`)."""
    values = [{f.name: float(f.value(q, p, vocabulary)) for f in FEATURES} for p in passages]
    for name, base in RELATIVE.items():
        best = max((v[base] for v in values), default=0.0)
        for v in values:
            v[name] = v[base] - best
    return values


def refusal_before_reading(q: Question) -> tuple[str, str] | None:
    """(rule name, message) of the first question rule that refuses, else None."""
    for rule in QUESTION_RULES:
        message = rule.refuse(q)
        if message:
            return rule.name, message
    return None


def judge(q: Question, passages: list[Passage], policy: Policy, vocabulary: Vocabulary) -> Verdict:
    """Apply the rules, score what is left, and accept the best passage or refuse with a reason."""
    fired: list[str] = []
    rejected: dict[str, int] = {}
    reasons: dict[str, str] = {}
    kept: list[Passage] = []
    for p in passages:
        for rule in RULES:
            reason = rule.rejects(q, p)
            if reason:
                rejected[rule.name] = rejected.get(rule.name, 0) + 1
                reasons.setdefault(rule.name, reason)
                break
        else:
            kept.append(p)
    scored = sorted(
        (
            Scored(p, v, policy.probability(v))
            for p, v in zip(kept, features(q, kept, vocabulary), strict=True)
        ),
        key=lambda s: (-s.probability, s.passage.rank, s.passage.unit.start),
    )
    scope = next((r for r in RULES if r.scope and r.name in rejected), None)
    if not scored or scored[0].probability < policy.accept:
        if scope:
            fired.append(scope.name)
            return Verdict(scored, _sentence(reasons[scope.name]), fired, rejected)
        if not scored:
            first = next((r for r in RULES if r.name in rejected), None)
            fired.append(first.name if first else "nothing retrieved")
            reason = reasons[first.name] if first and first.name != "furniture" else NOT_COVERED
            return Verdict([], _sentence(reason), fired, rejected)
        fired.append("weak evidence")
        return Verdict(scored, NOT_COVERED, fired, rejected)
    fired.append("answered")
    return Verdict(scored, None, fired, rejected)


def _sentence(reason: str) -> str:
    text = reason[0].upper() + reason[1:]
    return text if text.endswith(".") else text + "."


def disagreement(verdict: Verdict, policy: Policy) -> Scored | None:
    """A passage from another document that answers about as well but states a different figure of the
    same kind ("76%" in one document, "10%" in another): both are shown, never one silently preferred."""
    best = verdict.best
    if best is None or not best.passage.stated:
        return None
    source = best.passage.chunk.metadata.get("source")
    for other in verdict.accepted[1:]:
        if other.passage.chunk.metadata.get("source") == source or other.probability < policy.accept:
            continue
        if other.values.get("topic in quote", 0) < 0.8 * best.values.get("topic in quote", 0):
            continue
        for mine in best.passage.stated:
            theirs = [f for f in other.passage.stated if f.kind == mine.kind and f.unit == mine.unit]
            if theirs and not any(mine.same(f) for f in theirs):
                return other
    return None
