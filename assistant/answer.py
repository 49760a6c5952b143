"""Answers and citations: the types, extractive composition and verification.

An answer is built from quotes: each quote is an exact span of a retrieved chunk, cited as [n].
`verify` enforces the promise to clinicians: a citation whose quote is not verbatim in its chunk is
dropped, and a sentence of the answer holding a number that no cited quote holds is not shown.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

from langchain_core.documents import Document

from assistant import figures

NOT_COVERED = "The planning documents don't cover this."


@dataclass
class Citation:
    """Where a claim comes from: document, page, section/area and the exact quoted words."""

    n: int
    source: str
    title: str
    page: int | None
    section: str | None
    quote: str
    chunk_id: str
    area: str | None = None


@dataclass
class Retrieved:
    """One retrieved chunk with its fused score, for traces and evaluation."""

    chunk_id: str
    source: str
    page: int | None
    score: float
    text: str


@dataclass
class Answer:
    """The structured answer every client (CLI, app, eval) receives."""

    question: str
    text: str
    refused: bool
    citations: list[Citation] = field(default_factory=list)
    retrieved: list[Retrieved] = field(default_factory=list)
    timings_ms: dict[str, float] = field(default_factory=dict)
    trace: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape of `nhs-assistant ask --json`."""
        return {
            "question": self.question,
            "answer": self.text,
            "refused": self.refused,
            "citations": [asdict(c) for c in self.citations],
            "retrieved": [asdict(r) for r in self.retrieved],
            "timings_ms": self.timings_ms,
            "trace": self.trace,
        }


def numbers_in(text: str) -> set[str]:
    """Numbers as digit strings, thousands separators dropped (see figures.numbers)."""
    return figures.numbers(text)


def citation_for(n: int, chunk: Document, quote: str) -> Citation:
    """A citation of `quote` inside `chunk`."""
    meta = chunk.metadata
    return Citation(
        n=n,
        source=str(meta.get("source")),
        title=str(meta.get("title") or meta.get("source")),
        page=meta.get("page"),
        section=meta.get("area") or meta.get("section"),
        quote=quote,
        chunk_id=str(meta.get("chunk_id")),
        area=meta.get("area"),
    )


def verify(text: str, citations: list[Citation], chunks: dict[str, Document]) -> tuple[str, list[Citation]]:
    """Keep only citations whose quote is verbatim in their chunk, and only answer lines whose numbers
    all occur in a kept quote that the line cites. Returns the checked text and citations."""
    kept = [
        c
        for c in citations
        if c.chunk_id in chunks and c.quote and c.quote in chunks[c.chunk_id].page_content
    ]
    by_n = {c.n: c for c in kept}
    lines = []
    for line in text.split("\n"):
        cited = [int(n) for n in re.findall(r"\[(\d+)\]", line)]
        quoted = set().union(*(numbers_in(by_n[n].quote) for n in cited if n in by_n)) if cited else set()
        if any(n not in by_n for n in cited):
            continue
        claim = re.sub(r"\[\d+\]", "", line)
        if numbers_in(claim) - quoted:
            continue
        lines.append(line)
    used = {int(n) for line in lines for n in re.findall(r"\[(\d+)\]", line)}
    return "\n".join(lines).strip(), [c for c in kept if c.n in used]


def compose_list(heading: str, rows: list[tuple[dict[str, Any], Document]]) -> tuple[str, list[Citation]]:
    """A list answer over register rows, one citation per row."""
    lines = [heading]
    citations = []
    for n, (target, chunk) in enumerate(rows, start=1):
        lines.append(f"- {target['objective']} [{n}]")
        citations.append(citation_for(n, chunk, target["objective"]))
    return "\n".join(lines), citations


def refusal(reason: str, closest: list[str]) -> str:
    """The "not in the documents" answer, naming the closest topics that were found."""
    topics = "; ".join(dict.fromkeys(t for t in closest if t))
    return f"{reason} The closest topics found: {topics}." if topics else reason


def row_quote(chunk: Document, target: dict[str, Any] | None) -> str:
    """What a table-row chunk is quoted by: its objective, without the area and theme labels around it."""
    if target and target.get("objective") and target["objective"] in chunk.page_content:
        return str(target["objective"])
    return chunk.page_content.split(" — ")[-1].split("\nTheme:")[0]


def compose(
    quotes: list[tuple[Document, str]],
    target: dict[str, Any] | None = None,
    lead: str | None = None,
    first: int = 1,
) -> tuple[str, list[Citation]]:
    """An extractive answer: an optional lead ("No."), the register's target line for a table row, then
    one line per quote, each cited [n] from `first` on. Returns the text and its citations."""
    lines: list[str] = [lead] if lead else []
    citations: list[Citation] = []
    for n, (chunk, quote) in enumerate(quotes, start=first):
        if n == first and chunk.metadata.get("kind") == "row" and target:
            facts = []
            if target.get("values"):
                facts.append("**Target:** " + ", ".join(target["values"]))
            if target.get("deadline"):
                facts.append(f"**Deadline:** {target['deadline']}")
            if chunk.metadata.get("area"):
                facts.append(f"**Area:** {chunk.metadata['area']}")
            if facts:
                lines.append(" · ".join(facts) + f" [{n}]")
        # one line per quote (verify reads line by line); the citation keeps the exact, wrapped text
        lines.append(f"“{' '.join(quote.split())}” [{n}]")
        citations.append(citation_for(n, chunk, quote))
    where = quotes[0][0].metadata.get("section") if quotes else None
    if where and quotes[0][0].metadata.get("kind") != "row" and not numbers_in(str(where)):
        lines.append(f"(from “{where}”)")
    return "\n".join(lines), citations


def yes_or_no(
    claimed: list[figures.Figure], dates: set[str], quoted: str, claim: str | None = None
) -> str | None:
    """ "Yes." or "No." for a question stating a figure or date, checked against the quote; None when the
    quote states nothing of that kind to check against.

    >>> yes_or_no([figures.Figure(80, "percent")], set(), "patients with hypertension treated to NICE guidance to 77%")
    'No.'
    >>> yes_or_no([figures.Figure(77, "percent")], set(), "patients with hypertension treated to NICE guidance to 77%")
    'Yes.'
    >>> yes_or_no([], {"march 2024"}, "in line with the March 2025 ambition of 95%")
    'No.'
    >>> yes_or_no([figures.Figure(50, "percent")], set(), "61% of staff completed the survey", ">")
    'Yes.'
    """
    stated = figures.read(quoted)
    checked = [f for f in claimed if any(s.kind == f.kind and s.unit == f.unit for s in stated)]
    if checked and claim:
        holds = {">": lambda s, f: s.value > f.value, "<": lambda s, f: s.value < f.value}[claim]
        same_kind = [s for s in stated if s.kind == checked[0].kind and s.unit == checked[0].unit]
        return "Yes." if holds(same_kind[0], checked[0]) else "No."
    if checked:
        return "Yes." if all(any(f.same(s) for s in stated) for f in checked) else "No."
    if dates and figures.dates(quoted):
        return "Yes." if dates & figures.dates(quoted) else "No."
    return None


def compare(labels: list[str], quoted: list[str]) -> str | None:
    """Which side of a comparison states the larger figure, when both state one of the same kind.

    >>> compare(["the stroke standard", "the cancer standard"], ["meet the 80% stroke standard", "no less than 85%"])
    'The cancer standard is higher (85% against 80%).'
    """
    firsts = [next((f for f in figures.read(q) if f.kind != "duration"), None) for q in quoted]
    a, b = firsts
    if a is None or b is None or a.kind != b.kind or a.value == b.value:
        return "Both state the same figure." if a and b and a.kind == b.kind else None
    high, low, label = (a, b, labels[0]) if a.value > b.value else (b, a, labels[1])
    return f"{label[0].upper()}{label[1:]} is higher ({high.text} against {low.text})."


# Words that qualify a figure ("no less than 76%", "an average of 30 minutes", "92% or below"): a generated
# sentence that drops or swaps them changes what the figure means.
_BEFORE = re.compile(
    r"(?:no (?:less|more|fewer) than|at (?:least|most)|up to|(?:more|less|fewer) than|over|under|below|above|"
    r"within|an average of|on average|average of|around|about|approximately|nearly|almost|towards|by|to|from)\s*$",
    re.I,
)
_AFTER = re.compile(r"^\s*(?:or (?:below|above|less|more|fewer|lower|higher|over|under))\b", re.I)


def meaning_changes(text: str, citations: list[Citation]) -> list[str]:
    """Figures a generated answer states without the qualifying words their cited quote gives them.

    >>> c = [Citation(1, "s", "t", None, None, "reduce waits to an average of 18 weeks", "c")]
    >>> meaning_changes("Waits should fall by 18 weeks [1]", c)
    ['18 weeks: the quote says "an average of 18 weeks"']
    >>> meaning_changes("Waits should come down to an average of 18 weeks [1]", c)
    []
    """
    by_n = {c.n: c for c in citations}
    changes = []
    for line in text.split("\n"):
        quotes = [by_n[int(n)].quote for n in re.findall(r"\[(\d+)\]", line) if int(n) in by_n]
        said = " ".join(re.sub(r"\[\d+\]", " ", line).split())
        for figure in figures.read(said):
            for quote in quotes:
                flat = " ".join(quote.split())
                wanted = _qualifiers(flat, figure)
                if wanted is not None and wanted.lower() not in said.lower():
                    changes.append(f'{figure.text}: the quote says "{wanted}"')
                    break
    return changes


def _qualifiers(quote: str, figure: figures.Figure) -> str | None:
    """The figure as the quote states it with its qualifying words ("no less than 76%"), or None when
    the quote states it with none (or not at all)."""
    for match in re.finditer(re.escape(figure.text), quote):
        before = _BEFORE.search(quote[: match.start()])
        after = _AFTER.match(quote[match.end() :])
        if before or after:
            start = before.start() if before else match.start()
            end = match.end() + (after.end() if after else 0)
            return quote[start:end].strip()
        return None
    return None
