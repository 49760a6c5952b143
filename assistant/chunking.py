"""Documents -> chunks that keep the document's structure, plus the targets register.

Tables (tab-separated columns, as the national objectives table) become one chunk per row, with the
row's labels (`area`, `theme`) in metadata and in the text. Prose is split on headings, then by size
with overlap by LangChain's RecursiveCharacterTextSplitter, keeping the heading as `section`.

Every chunk carries `chunk_id` (a hash of source, page and text), `page`, `start`/`end` (its character
span within the page text), `section`, `area`, `theme` and `kind` ("row" or "prose").
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import asdict, dataclass, field

from langchain_core.documents import Document
from langchain_text_splitters import RecursiveCharacterTextSplitter

# Bump when chunk text, boundaries or quotable units change (loaders and passages included): an index built by another version is rebuilt, not reused.
CHUNKER_VERSION = 8

MONTHS = "january february march april may june july august september october november december".split()
# Words after which a wrapped table cell must go on: the next line continues the same cell.
_CONNECTORS = set(
    "a an and as at between by for from in into of on or per so than that the to towards under until "
    "with within without more less no over".split()
) | set(MONTHS)
_HEADING_MAX_WORDS = 14


@dataclass
class Target:
    """One objective of a table: what the targets register (index/targets.json) holds."""

    area: str | None
    theme: str | None
    objective: str
    values: list[str]
    deadline: str | None
    source: str
    page: int | None
    chunk_id: str
    title: str = ""


@dataclass
class _Row:
    lines: list[int] = field(default_factory=list)
    parts: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return " ".join(" ".join(self.parts).split())


def chunk_id(source: str, page: int | None, text: str) -> str:
    """Stable id: the same text of the same file and page always gets the same id."""
    return hashlib.sha256(f"{source}\x00{page}\x00{text}".encode()).hexdigest()[:20]


def chunk_documents(
    docs: list[Document], chunk_size: int = 800, chunk_overlap: int = 120
) -> tuple[list[Document], list[Target]]:
    """Split page Documents into structure-aware chunks; also return the table rows as Targets."""
    splitter = RecursiveCharacterTextSplitter(
        chunk_size=chunk_size,
        chunk_overlap=chunk_overlap,
        # Sentence ends before line breaks: PDF text breaks every line mid-sentence, and a chunk that ends
        # mid-sentence cannot quote that sentence whole (measured: see docs/QUALITY.md).
        separators=["\n\n", ". ", "? ", "! ", "; ", "\n", ", ", " ", ""],
        keep_separator="end",
        add_start_index=True,
    )
    chunks: list[Document] = []
    targets: list[Target] = []
    seen: set[str] = set()
    for doc in docs:
        for chunk in _chunk_page(doc, splitter, targets):
            if chunk.metadata["chunk_id"] not in seen:
                seen.add(chunk.metadata["chunk_id"])
                chunks.append(chunk)
    return chunks, targets


def _chunk_page(
    doc: Document, splitter: RecursiveCharacterTextSplitter, targets: list[Target]
) -> list[Document]:
    text = doc.page_content
    lines = text.split("\n")
    offsets = [0]
    for line in lines[:-1]:
        offsets.append(offsets[-1] + len(line) + 1)
    out: list[Document] = []
    section = None
    i = 0
    while i < len(lines):
        j = i
        while j < len(lines) and "\t" in lines[j]:
            j += 1
        if j - i >= 2:  # a table block: two or more consecutive tab-separated lines
            out += _table_chunks(doc, lines[i:j], offsets[i:j], section, targets)
            i = j
            continue
        # a prose block runs until the next table block
        k = max(j, i + 1)
        while k < len(lines) and not ("\t" in lines[k] and k + 1 < len(lines) and "\t" in lines[k + 1]):
            k += 1
        block_start = offsets[i]
        block_end = offsets[k - 1] + len(lines[k - 1])
        pieces, section = _sections(text, block_start, block_end, section, final=k >= len(lines))
        for heading, start, end in pieces:
            out += _prose_chunks(doc, splitter, text, start, end, heading)
        i = k
    return out


def _sections(
    text: str, start: int, end: int, current: str | None, final: bool = True
) -> tuple[list[tuple[str | None, int, int]], str | None]:
    """Cut [start, end) of the page at heading lines; each piece keeps its heading. Also the last heading.

    A heading with no text under it is kept as a piece of its own (nothing is lost), except the last
    one of a block that a table follows: that heading names the table and is carried into its rows.
    """
    pieces: list[tuple[str | None, int, int]] = []
    heading, body_start, pos = current, start, start
    bare: tuple[int, int] | None = None  # span of a heading line that has no body yet
    lines = text[start:end].split("\n")
    for n, line in enumerate(lines):
        blank_before = n == 0 or not lines[n - 1].strip()
        blank_after = n == len(lines) - 1 or not lines[n + 1].strip()
        if _is_heading(line, blank_before=blank_before, blank_after=blank_after):
            if text[body_start:pos].strip():
                pieces.append((heading, body_start, pos))
            elif bare:
                pieces.append((None, *bare))
            heading = line.strip().lstrip("#").strip()
            bare = (pos, pos + len(line))
            body_start = pos + len(line)
        pos += len(line) + 1
    if text[body_start:end].strip():
        pieces.append((heading, body_start, end))
    elif bare and final:
        pieces.append((None, *bare))
    return pieces, heading


def _is_heading(line: str, *, blank_before: bool, blank_after: bool) -> bool:
    stripped = line.strip()
    if re.match(r"^#{1,6}\s+\S", stripped):
        return True
    if not stripped or not (blank_before and blank_after):
        return False
    words = stripped.split()
    return (
        len(words) <= _HEADING_MAX_WORDS
        and len(stripped) <= 100
        and stripped[0].isupper()
        and stripped[-1] not in ".:;,?!"
    )


def _prose_chunks(
    doc: Document,
    splitter: RecursiveCharacterTextSplitter,
    text: str,
    start: int,
    end: int,
    section: str | None,
) -> list[Document]:
    body = text[start:end]
    lead = len(body) - len(body.lstrip())
    body = body.strip()
    if not body:
        return []
    out = []
    for piece in splitter.create_documents([body]):
        content = piece.page_content.strip()
        if not content:
            continue
        s = (
            start
            + lead
            + piece.metadata["start_index"]
            + (len(piece.page_content) - len(piece.page_content.lstrip()))
        )
        page_content = f"{section}\n{content}" if section and section != content else content
        out.append(_make_chunk(doc, page_content, s, s + len(content), kind="prose", section=section))
    return out


def _make_chunk(doc: Document, page_content: str, start: int, end: int, **extra: object) -> Document:
    meta = {
        "source": doc.metadata.get("source"),
        "title": doc.metadata.get("title"),
        "page": doc.metadata.get("page"),
        "sha256": doc.metadata.get("sha256"),
        "start": start,
        "end": end,
        "section": None,
        "area": None,
        "theme": None,
    }
    meta.update(extra)
    meta["chunk_id"] = chunk_id(str(meta["source"]), meta["page"], page_content)
    return Document(page_content=page_content, metadata=meta, id=meta["chunk_id"])


# --- tables -------------------------------------------------------------------------------------


def _table_chunks(
    doc: Document, lines: list[str], offsets: list[int], section: str | None, targets: list[Target]
) -> list[Document]:
    """One chunk per row of a tab-separated table whose last column holds the items.

    Written by hand because no kept library reads text tables whose cells wrap over lines and whose
    labels sit on any line of their block (PDF-to-text output): we detect the columns, join wrapped
    cells, and carry labels forward.
    """
    cells = [line.split("\t") for line in lines]
    ncols = max(len(c) for c in cells)
    cells = [
        c[: ncols - 1] + ["\t".join(c[ncols - 1 :])] if len(c) >= ncols else c + [""] * (ncols - len(c))
        for c in cells
    ]
    header = cells[0] if _looks_like_header(cells[0]) else None
    body = cells[1:] if header else cells
    first = 1 if header else 0
    names = _column_names(header, ncols)

    rows: list[_Row] = []
    for n, row_cells in enumerate(body, start=first):
        item = row_cells[-1].strip()
        if not item:
            continue
        if rows and _continues(rows[-1].text, item):
            rows[-1].lines.append(n)
            rows[-1].parts.append(item)
        else:
            rows.append(_Row([n], [item]))
    if not rows:
        return []

    labels: dict[str, list[str | None]] = {}
    for col, name in enumerate(names[:-1]):
        fragments = {n: cells[n][col].strip() for n in range(first, len(cells)) if cells[n][col].strip()}
        if header is not None and not header[col].strip():
            labels[name] = _side_labels(rows, fragments)
        else:
            labels[name] = _block_labels(rows, fragments)

    out = []
    for r, row in enumerate(rows):
        meta: dict[str, object] = {name: values[r] for name, values in labels.items()}
        area = meta.get("area")
        prefix = " — ".join(str(v) for k, v in meta.items() if v and k != "theme")
        content = f"{prefix} — {row.text}" if prefix else row.text
        # The row's context (theme, and the table's heading) is in its text too, so that a question
        # about "the national objectives" meets every row, and the area decides among them.
        context = [str(x) for x in (meta.get("theme"), section) if x]
        if context:
            content = f"{content} ({'; '.join(context)})"
        start = offsets[row.lines[0]]
        end = offsets[row.lines[-1]] + len(lines[row.lines[-1]])
        chunk = _make_chunk(doc, content, start, end, kind="row", section=section, **meta)
        out.append(chunk)
        targets.append(
            Target(
                area=str(area) if area else None,
                theme=str(meta["theme"]) if meta.get("theme") else None,
                objective=row.text,
                values=extract_values(row.text),
                deadline=extract_deadline(row.text),
                source=str(doc.metadata.get("source")),
                page=doc.metadata.get("page"),
                chunk_id=chunk.metadata["chunk_id"],
                title=str(doc.metadata.get("title") or ""),
            )
        )
    return out


def _looks_like_header(cells: list[str]) -> bool:
    filled = [c.strip() for c in cells if c.strip()]
    return (
        len(filled) >= 2
        and all(len(c.split()) <= 3 and not re.search(r"\d", c) for c in filled)
        and bool(cells[-1].strip())
    )


def _column_names(header: list[str] | None, ncols: int) -> list[str]:
    names = []
    for col in range(ncols):
        name = header[col].strip().lower() if header else ""
        if not name:
            name = (
                "theme" if col == 0 and ncols >= 3 else ("area" if col == ncols - 2 else f"column{col + 1}")
            )
        names.append(re.sub(r"\W+", "_", name).strip("_"))
    return names


def _continues(previous: str, line: str) -> bool:
    """Whether `line` is the wrapped continuation of the cell text `previous`."""
    if line[0].islower():
        return True
    if previous.count("(") > previous.count(")"):
        return True
    last = re.sub(r"\W+$", "", previous.rsplit(None, 1)[-1]).lower()
    return last in _CONNECTORS or previous.endswith(("-", "–", ","))


def _clean_label(text: str) -> str:
    return " ".join(text.replace("*", " ").split())


def _block_labels(rows: list[_Row], fragments: dict[int, str]) -> list[str | None]:
    """Labels of a named column: a label may sit on any line of its rows and wrap over lines."""
    row_of = {n: r for r, row in enumerate(rows) for n in row.lines}
    groups: list[list[str]] = []
    group_rows: list[set[int]] = []
    last_line = last_row = None
    for n in sorted(fragments):
        fragment = fragments[n]
        r = row_of.get(n, last_row)
        joins = (
            groups
            and last_line == n - 1
            and (
                fragment[0].islower()
                or r == last_row  # one row has one label: a second fragment on it wraps the first
                or groups[-1][-1].rsplit(None, 1)[-1].lower() in _CONNECTORS
            )
        )
        if joins:
            groups[-1].append(fragment)
        else:
            groups.append([fragment])
            group_rows.append(set())
        if r is not None:
            group_rows[-1].add(r)
        last_line, last_row = n, r
    label_of_row: dict[int, str] = {}
    for parts, members in zip(groups, group_rows, strict=True):
        label = _join_label(parts)
        for r in members:
            label_of_row.setdefault(r, label)
    out: list[str | None] = []
    current = label_of_row[min(label_of_row)] if label_of_row else None  # rows above the first label
    for r in range(len(rows)):
        current = label_of_row.get(r, current)
        out.append(current)
    return out


def _join_label(parts: list[str]) -> str:
    words: list[str] = []
    for part in parts:
        part_words = _clean_label(part).split()
        # PDF text often repeats the last word of a wrapped label on the next line ("services Services").
        if words and [w.lower() for w in words[-len(part_words) :]] == [w.lower() for w in part_words]:
            continue
        words += part_words
    return " ".join(words)


def _side_labels(rows: list[_Row], fragments: dict[int, str]) -> list[str | None]:
    """Labels of an unnamed side column (rotated text): only real phrases count; each row takes the nearest."""
    phrases = {n: _clean_label(f) for n, f in fragments.items() if len(re.findall(r"[A-Za-z]{2,}", f)) >= 3}
    out: list[str | None] = []
    for row in rows:
        if not phrases:
            out.append(None)
            continue
        nearest = min(phrases, key=lambda n: (min(abs(n - x) for x in row.lines), n))
        out.append(phrases[nearest])
    return out


# --- figures and deadlines ------------------------------------------------------------------------

_NUMBER_WORDS = "one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|eighteen|twenty|thirty"
_UNITS = r"hours?|minutes?|days?|weeks?|months?|years?"
_VALUE = re.compile(
    r"£\s?\d[\d,.]*(?:\s?(?:billion|million|bn|m|k)\b)?"  # money
    rf"|\b\d[\d,.]*(?:\s?[–-]\s?\d[\d,.]*)?(?:\s?(?:%|per ?cent\b|percent\b|(?:million|billion)\b)|[\s-](?:{_UNITS})\b)"
    rf"|\b(?:{_NUMBER_WORDS})[\s-](?:{_UNITS})\b"
    r"|\b\d{1,3}(?:,\d{3})+\b"  # 26,000
    r"|\b\d+(?:\.\d+)?\s?[–-]\s?\d+(?:\.\d+)?\b"  # ranges: 12–15
    r"|\b\d+(?:\.\d+)?\b",
    re.I,
)
# Years and financial years are deadlines, not figures: blanked out before figures are read.
_YEARS = re.compile(r"\b(?:19|20)\d\d(?:/\d\d)?\b")
_MONTH_YEAR = re.compile(rf"\b((?:{'|'.join(MONTHS)})\s+(?:19|20)\d\d)\b", re.I)
_FISCAL = re.compile(r"\b((?:19|20)\d\d/\d\d)\b")
_BY_YEAR = re.compile(r"\b(?:by|in|until|from)\s+((?:19|20)\d\d)\b(?!/)", re.I)


def extract_values(text: str) -> list[str]:
    """Figures as written, in order; years and single-digit labels ("category 2") are left out.

    >>> extract_values("no less than 76% of patients are seen within 4 hours by March 2024, and in 2024/25")
    ['76%', '4 hours']
    >>> extract_values("funding of £1 billion to create an additional 5,000 hospital beds")
    ['£1 billion', '5,000']
    """
    blanked = _YEARS.sub(lambda m: " " * len(m.group(0)), text)
    values: list[str] = []
    for match in _VALUE.finditer(blanked):
        value = match.group(0).strip().rstrip(".,")
        if re.fullmatch(r"\d", value):  # a bare digit names things ("category 2", "stages 1 and 2")
            continue
        if value and value not in values:
            values.append(value)
    return values


def extract_deadline(text: str) -> str | None:
    """The deadline as written: a month and year, else a year after "by", else a financial year.

    >>> extract_deadline("seen within 4 hours by March 2024 with further improvement in 2024/25")
    'March 2024'
    >>> extract_deadline("an average of 30 minutes across 2023/24")
    '2023/24'
    """
    for pattern in (_MONTH_YEAR, _BY_YEAR, _FISCAL):
        match = pattern.search(text)
        if match:
            return match.group(1)
    return None


def targets_to_json(targets: list[Target]) -> list[dict[str, object]]:
    """The register as JSON-ready dicts."""
    return [asdict(t) for t in targets]
