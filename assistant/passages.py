"""A chunk's quotable units (sentences, table rows, bullet items), with page furniture set aside.

    furniture = Furniture.from_chunks(index.chunks)     # running headers/footers, per document
    for unit in units(chunk, furniture): print(unit.text)

A quote is always an exact span of a chunk. Furniture is never quoted: running headers and footers,
contents lines, figure captions and "Base: n=..." notes, web addresses and print timestamps, and runs of
chart numbers or broken chart labels.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from langchain_core.documents import Document

# A sentence ends at . ! ? before a capital (not inside "£5.2" or "e.g. the"), or at a blank line;
# PDF text wraps lines mid-sentence, so a single newline is not an end; a bullet starts a new unit.
_SENTENCE_END = re.compile(r"(?<=[.!?])[”\"')]?\s+(?=[A-Z0-9“\"(•\-–])|\n[ \t]*\n|\n(?=\s*[•\-–▪●○] )")
# A line of a table as PDF text gives it: numbers at its end ("Health records 12,610 12,315 -295 -2%").
_NUMBER_ROW = re.compile(r"(?:^|\s)(?:[+\-–]?[£$]?\d[\d,.]*%?\s+){1,}[+\-–]?[£$]?\d[\d,.]*%?\s*$")
_CONTENTS_HEADING = re.compile(
    r"^\s*(?:table of )?contents|^\s*(?:list of )?(?:figures|tables)(?: and tables)?\s*$", re.I
)
_PAGE_REFERENCE = re.compile(r"(?:\.{3,}|\s)\d{1,3}\s*$")
_DOT_LEADER = re.compile(r"\.{4,}\s*\d{1,3}\s*$")
_CAPTION = re.compile(
    r"^\s*(?:figure|fig\.|chart|graph|source|base|note|notes)\s*\d*\s*[:.]"
    # survey-chart furniture: the base of a chart's percentages, a slide footer, an axis title
    r"|\bbase:\s*n\s*=|\bprivate (?:&|and) confidential\b|^\s*%\s+of\s+respondents\b",
    re.I,
)
_PROSE_WORDS = 8  # words outside its links that make a line prose, however many links it has
_WEB_SPAN = re.compile(
    r"(?:https?://|www\.)\S+|\b\d{1,2}/\d{1,2}/\d{2,4},\s*\d{1,2}:\d{2}\s*(?:[AP]M)?.*|\(mailto:\S+|\S+@\S+\.\S+",
    re.I,
)


def sentences(text: str) -> list[str]:
    r"""Sentences of a text, as exact substrings of it.

    >>> sentences("Costs are £5.2 billion by 2030. Staff grow\nby 69 per cent.")
    ['Costs are £5.2 billion by 2030.', 'Staff grow\nby 69 per cent.']
    """
    return [s.strip() for s in _SENTENCE_END.split(text) if s and len(s.strip()) > 2]


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


def _shape(line: str) -> str:
    """A line with its digits blanked, so "1/10" and "2/10" footers are the same line."""
    return re.sub(r"\d+", "#", " ".join(line.split())).lower()


@dataclass
class Furniture:
    """Lines a document repeats on most of its pages (running headers and footers), by source."""

    lines: dict[str, set[str]] = field(default_factory=dict)

    @classmethod
    def from_chunks(cls, chunks: Iterable[Document], share: float = 0.5) -> Furniture:
        """Lines (digits aside) found on at least `share` of a document's pages, for documents of 3+ pages."""
        pages: dict[str, set[object]] = defaultdict(set)
        seen: dict[str, Counter[str]] = defaultdict(Counter)
        by_page: dict[tuple[str, object], set[str]] = defaultdict(set)
        for chunk in chunks:
            source, page = str(chunk.metadata.get("source")), chunk.metadata.get("page")
            if page is None:
                continue
            pages[source].add(page)
            by_page[(source, page)] |= {
                _shape(line) for line in chunk.page_content.split("\n") if len(line.strip()) > 3
            }
        for (source, _), shapes in by_page.items():
            seen[source].update(shapes)
        return cls(
            {
                source: {line for line, n in seen[source].items() if n >= max(3, share * len(pages[source]))}
                for source in pages
                if len(pages[source]) >= 3
            }
        )

    def holds(self, chunk: Document, line: str) -> bool:
        return _shape(line) in self.lines.get(str(chunk.metadata.get("source")), set())


@dataclass(frozen=True)
class Unit:
    """One quotable span of a chunk: its text (exact), where it starts, and whether it is a table row."""

    text: str
    start: int
    row: bool = False
    caption: bool = False  # a table's caption or column headings: quoted with a row, never alone


def units(chunk: Document, furniture: Furniture | None = None) -> list[Unit]:
    """The quotable units of a chunk in text order: a table-row chunk is one unit; prose is cut at
    furniture lines and blank lines into sentences (or short paragraphs); furniture is left out."""
    body = chunk.page_content
    if chunk.metadata.get("kind") == "row":
        return [Unit(body, 0, row=True)]
    section = chunk.metadata.get("section")
    skip = len(section) + 1 if section and body.startswith(f"{section}\n") else 0
    out: list[Unit] = []
    for start, end in _segments(body, skip, chunk, furniture):
        segment = body[start:end]
        if rows := table_rows(segment):
            head = segment[: segment.index(rows[0])]
            for s in sentences(head):
                out.append(Unit(s, start + segment.index(s), caption=True))
            cursor = start + len(head)
            for r in rows:
                at = body.index(r, cursor)
                out.append(Unit(r, at, row=True))
                cursor = at + len(r)
            continue
        cursor = start
        for s in sentences(segment):
            at = body.index(s, cursor)
            cursor = at + len(s)
            if not is_furniture(s):
                out.append(Unit(s, at, caption=bool(_CAPTION.search(s))))
    return out


def _segments(body: str, start: int, chunk: Document, furniture: Furniture | None) -> list[tuple[int, int]]:
    """Spans of the body between furniture lines (running lines, web addresses, contents lines)."""
    spans: list[tuple[int, int]] = []
    pos, seg = start, start
    for line in body[start:].split("\n"):
        end = pos + len(line)
        if (furniture and furniture.holds(chunk, line)) or _web_line(line) or _DOT_LEADER.search(line):
            if body[seg:pos].strip():
                spans.append((seg, pos))
            seg = end + 1
        pos = end + 1
    if body[seg:].strip():
        spans.append((seg, len(body)))
    return spans


def is_furniture(text: str) -> bool:
    """Whether a unit is chart or page furniture rather than prose: mostly numbers, or broken words.

    >>> is_furniture("1 1 of respondents 12 45 3"), is_furniture("Over three quarters (76%) supported a move.")
    (True, False)
    """
    tokens = text.split()
    if not tokens:
        return True
    numeric = sum(bool(re.fullmatch(r"[\d.,%()+\-–£$]+", t)) for t in tokens)
    if numeric / len(tokens) > 0.4:
        return True
    return _web_line(text)


def _web_line(text: str) -> bool:
    """Whether a line is a web address, a print timestamp or an e-mail link more than it is prose (the
    footer a browser prints on every page), not prose that mentions a link.

    >>> _web_line("https://www.example.nhs.uk/report/?utm_source=x 1/10"), _web_line("See [the plan](http://x.uk) for more on it.")
    (True, False)
    >>> _web_line("The clinic [map](https://www.example.org/map.png) lists nine new sites across the county [list](https://www.example.org/l)")
    False
    """
    found = sum(len(m.group(0)) for m in _WEB_SPAN.finditer(text))
    # A sentence that carries several links still has a sentence's words beside them; a footer has none.
    prose = re.findall(r"[A-Za-z]{2,}", _WEB_SPAN.sub(" ", text))
    return found > 0.4 * len(text.strip()) and len(prose) < _PROSE_WORDS


_ANAPHORA = re.compile(r"(?:they|this|these|those|it|its|their|such|he|she|his|her)\b", re.I)


def antecedent(unit: Unit, siblings: Sequence[Unit]) -> Unit | None:
    """The sentence a prose unit points back to when it opens with a pronoun ("They decide ..."): the
    prose unit just before it in the same chunk, so a quote never leaves its reader asking who "they" are.

    >>> first, second = Unit("Data controllers hold the records.", 0), Unit("They decide who sees them.", 35)
    >>> antecedent(second, [first, second]) == first, antecedent(first, [first, second])
    (True, None)
    """
    if unit.row or unit.caption or not _ANAPHORA.match(unit.text):
        return None
    before = [u for u in siblings if u.start + len(u.text) <= unit.start and not (u.row or u.caption)]
    return before[-1] if before else None


def quote_units(chunk: Document, furniture: Furniture | None = None) -> list[str]:
    """The texts of a chunk's quotable units."""
    return [u.text for u in units(chunk, furniture)]
