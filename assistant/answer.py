"""Answers and citations: the types, extractive composition and verification.

An answer is built from quotes: each quote is an exact span of a retrieved chunk, cited as [n].
`verify` enforces the promise to clinicians: a citation whose quote is not verbatim in its chunk is
dropped, and a sentence of the answer holding a number that no cited quote holds is not shown.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from langchain_core.documents import Document

NOT_COVERED = "The planning documents don't cover this."
CLINICAL = (
    "I can't give individual clinical advice (doses, diagnoses or treatment for a patient). "
    "Please use clinical guidance such as NICE, the BNF or your local formulary, and senior clinical advice."
)
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
# A sentence ends at . ! ? before a capital (not inside "£5.2" or "e.g. the"), or at a blank line;
# PDF text wraps lines mid-sentence, so a single newline is not an end.
_SENTENCE_END = re.compile(r"(?<=[.!?])[”\"')]?\s+(?=[A-Z0-9“\"(•\-–])|\n[ \t]*\n|\n(?=[•\-–] )")


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
    """Numbers as digit strings, thousands separators dropped.

    >>> sorted(numbers_in("76% within 4 hours; 26,000 roles"))
    ['26000', '4', '76']
    """
    return {m.group(0).replace(",", "").rstrip(".") for m in _NUMBER.finditer(text)}


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


def sentences(text: str) -> list[str]:
    r"""Sentences of a chunk, as exact substrings of it.

    >>> sentences("Costs are £5.2 billion by 2030. Staff grow\nby 69 per cent.")
    ['Costs are £5.2 billion by 2030.', 'Staff grow\nby 69 per cent.']
    """
    return [s.strip() for s in _SENTENCE_END.split(text) if s and len(s.strip()) > 2]


# A line of a table as PDF text gives it: numbers at its end ("Health records 12,610 12,315 -295 -2%").
_NUMBER_ROW = re.compile(r"(?:^|\s)(?:[+\-–]?[£$]?\d[\d,.]*%?\s+){1,}[+\-–]?[£$]?\d[\d,.]*%?\s*$")


def table_rows(body: str) -> list[str]:
    r"""The rows of a table in PDF text: each line of figures with the label lines above it.

    pypdf gives a table row as its label, sometimes wrapped or a blank line away, then the figures; no
    library rejoins them from text, so this does. Fewer than three lines of figures is not a table.

    >>> table_rows("Area Size Demand\nClinical coding\n \n3,560 3,101\nHealth\nrecords\n12,610 12,315\nTotal 4 5")
    ['Clinical coding\n \n3,560 3,101', 'Health\nrecords\n12,610 12,315', 'Total 4 5']
    """
    lines = body.split("\n")
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line) + 1)
    numbered = [i for i, line in enumerate(lines) if _NUMBER_ROW.search(line)]
    if len(numbered) < 3:
        return []
    rows = []
    for j, i in enumerate(numbered):
        first, taken = i, 0
        floor = numbered[j - 1] if j else -1
        # above the first row is the header, so it takes one label line; later rows up to four
        while first - 1 > floor and taken < (4 if j else 1):
            above = lines[first - 1].strip()
            if not above and taken:
                break
            first -= 1
            taken += bool(above)
        while not lines[first].strip():
            first += 1
        rows.append(body[offsets[first] : offsets[i] + len(lines[i])].strip())
    return rows


_CONTENTS_HEADING = re.compile(
    r"^\s*(?:table of )?contents|^\s*(?:list of )?(?:figures|tables)(?: and tables)?\s*$", re.I
)
_PAGE_REFERENCE = re.compile(r"(?:\.{3,}|\s)\d{1,3}\s*$")


def is_contents(chunk: Document) -> bool:
    r"""Whether a chunk is a table of contents (or list of figures): its page numbers answer nothing.

    >>> is_contents(Document("Contents\nSection 1. Background 6\nSection 2. Main findings 6"))
    True
    >>> is_contents(Document("Improve A&E waiting times so that no less than 76%"))
    False
    """
    lines = [line for line in chunk.page_content.split("\n") if line.strip()]
    heading = str(chunk.metadata.get("section") or (lines[0] if lines else ""))
    if _CONTENTS_HEADING.match(heading):
        return True
    return len(lines) >= 4 and sum(bool(_PAGE_REFERENCE.search(line)) for line in lines) >= 0.6 * len(lines)


def quote_units(chunk: Document) -> list[str]:
    """What a chunk can be quoted by: its table rows, paragraphs when it has several, else sentences."""
    lead, rows = _units(chunk)
    return lead + rows


def _units(chunk: Document) -> tuple[list[str], list[str]]:
    """A chunk's quotable units, and separately its table rows (if any)."""
    body = chunk.page_content
    section = chunk.metadata.get("section")
    if section and body.startswith(f"{section}\n"):
        body = body[len(section) + 1 :]
    if rows := table_rows(body):
        before = body[: body.index(rows[0])]
        lead = sentences(before) if before.strip() else []
        if len(lead) > 2:  # after the caption, the column headings: one unit, however pypdf broke them
            lead = [lead[0], before[before.index(lead[1]) :].strip()]
        return lead, rows
    paragraphs = [p.strip() for p in re.split(r"\n[ \t]*\n", body) if len(p.strip()) > 2]
    if len(paragraphs) > 1 and all(len(p) <= 400 for p in paragraphs):
        return paragraphs, []
    return sentences(body) or [body.strip()], []


def best_quotes(
    question: str,
    chunk: Document,
    weight: Callable[[str], float] = lambda _: 1.0,
    most: int = 2,
    favour: Callable[[str], bool] | None = None,
) -> list[str]:
    """The units of a prose chunk that best match the question, rare words weighing more (text order).

    When no chosen unit is one `favour` accepts (one holding a figure, for a question asking for one),
    the unit right after the best one is added if it is: the sentence that gives the figure of the
    one before ("The greatest growth ... will be in X and Y. An additional 7,850 staff in X ...").
    """
    from assistant.retrieval import stems

    lead, rows = _units(chunk)
    units = lead + rows
    wanted = set(stems(question))
    words = [wanted & set(stems(u)) for u in units]
    # A word in every unit (the chunk's topic, "maternity") tells them apart less than a word in one.
    spread = {w: sum(w in ws for ws in words) for w in wanted}
    scores = [sum(weight(w) * math.log(1 + len(units) / spread[w]) for w in ws) for ws in words]
    # A lead-in ("... focuses on two main priorities:") introduces the answer rather than giving it.
    scores = [s / 2 if u.rstrip().endswith(":") else s for s, u in zip(scores, units, strict=True)]
    if rows and max(scores[len(lead) :]) > 0:
        # A table answers with its best row, under its column headings (the lead's last unit) and the
        # lead unit that best matches the question (usually the caption).
        picks = {max(range(len(lead), len(units)), key=lambda i: scores[i])}
        if lead:
            picks.add(len(lead) - 1)
            if max(scores[: len(lead)]) > 0:
                picks.add(max(range(len(lead)), key=lambda i: scores[i]))
        return [units[i] for i in sorted(picks)]
    best = max(scores)
    ranked = sorted(range(len(units)), key=lambda i: (-scores[i], i))
    chosen = [i for i in ranked[:most] if best > 0 and scores[i] >= 0.6 * best] or ranked[:1]
    after = ranked[0] + 1
    if favour and not any(favour(units[i]) for i in chosen) and after < len(units) and favour(units[after]):
        chosen = [ranked[0], after]
    return [units[i] for i in sorted(chosen)]


def compose(
    question: str,
    chunk: Document,
    target: dict[str, Any] | None,
    weight: Callable[[str], float] = lambda _: 1.0,
    favour: Callable[[str], bool] | None = None,
) -> tuple[str, list[Citation]]:
    """An extractive answer from one chunk: the target first (value, deadline, area), then the quote."""
    if chunk.metadata.get("kind") == "row":
        quote = target["objective"] if target else chunk.page_content.split(" — ")[-1].split("\nTheme:")[0]
        lead = []
        if target and target.get("values"):
            lead.append("**Target:** " + ", ".join(target["values"]))
        if target and target.get("deadline"):
            lead.append(f"**Deadline:** {target['deadline']}")
        if chunk.metadata.get("area"):
            lead.append(f"**Area:** {chunk.metadata['area']}")
        text = (" · ".join(lead) + " [1]\n" if lead else "") + f"“{quote}” [1]"
    else:
        quotes = best_quotes(question, chunk, weight, favour=favour)
        where = chunk.metadata.get("section") or chunk.metadata.get("title")
        # One line per quote (verify reads line by line); the citation keeps the exact, wrapped text.
        lines = [f"“{' '.join(q.split())}” [{n}]" for n, q in enumerate(quotes, start=1)]
        if where and not numbers_in(str(where)):
            lines.append(f"(from “{where}”)")
        return "\n".join(lines), [citation_for(n, chunk, q) for n, q in enumerate(quotes, start=1)]
    return text, [citation_for(1, chunk, quote)]


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
