"""Files -> LangChain Documents: one per PDF page (1-based `page`), one per text/MD/DOCX/HTML file.

Every Document carries `source` (file name), `title`, `page` (None where a format has no pages) and
`sha256` of the file. A file that cannot be read raises DocumentError naming the reason (whatever the
parser raised); `load_corpus` turns those into skipped entries and goes on with the rest. Folders are
scanned without following symbolic links, and NUL bytes never reach a Document.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from langchain_core.documents import Document

from assistant.errors import DocumentError

SUPPORTED = (".pdf", ".txt", ".md", ".docx", ".html", ".htm")
TEXT_ENCODINGS = ("utf-8", "cp1252", "latin-1")
_LINK_REASON = "a symbolic link; links are not followed, so copy the file itself into the folder"

# pypdf logs every malformed object it skips; one warning per bad file is ours to give instead.
logging.getLogger("pypdf").setLevel(logging.ERROR)


@dataclass(frozen=True)
class Skipped:
    """A file that was not indexed, and why."""

    path: Path
    reason: str

    def __str__(self) -> str:
        return f"{self.path.name}: {self.reason}"


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def find_files(paths: Iterable[Path]) -> tuple[list[Path], list[Skipped]]:
    """Expand folders into the files below them (sorted; hidden files and folders left out).

    Symbolic links below a folder are not followed: a link in the corpus could point anywhere on the
    machine (`notes.txt -> /etc/passwd`), so each is returned as Skipped instead. The paths given are
    taken as they are, links or not: naming a path is choosing it.
    """
    found: list[Path] = []
    skipped: list[Skipped] = []
    for path in paths:
        if not path.is_dir():
            found.append(path)
            continue
        below: list[Path] = []
        for folder, dirs, names in os.walk(path):  # os.walk does not descend into linked folders
            here = Path(folder)
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in [*dirs]:
                if (here / name).is_symlink():
                    dirs.remove(name)
                    skipped.append(Skipped(here / name, _LINK_REASON))
            for name in sorted(names):
                if name.startswith("."):
                    continue
                if (here / name).is_symlink():
                    skipped.append(Skipped(here / name, _LINK_REASON))
                else:
                    below.append(here / name)
        found += sorted(below)
    return found, skipped


def load_file(path: Path, max_bytes: int | None = None) -> list[Document]:
    """Load one file into Documents, or raise DocumentError saying why it cannot be read.

    A file over `max_bytes` is refused by its size before any of it is read. Whatever a parser raises
    on a malformed file becomes a DocumentError: one bad file must never stop an ingest.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    check_file(path, max_bytes)
    try:
        sha = file_sha256(path)
        if suffix == ".pdf":
            docs = _load_pdf(path)
        elif suffix == ".docx":
            docs = _load_docx(path)
        elif suffix in (".html", ".htm"):
            docs = _load_html(path)
        else:
            docs = _load_text(path, markdown=suffix == ".md")
    except DocumentError:
        raise
    except OSError as err:
        raise DocumentError(path, f"cannot read file ({err.strerror or type(err).__name__})") from None
    except Exception as err:  # parsers raise many types on malformed input (lxml, zipfile, bs4, ...)
        raise DocumentError(
            path, f"unreadable {suffix[1:].upper()} ({type(err).__name__}); re-save or re-export it"
        ) from None
    for doc in docs:
        # A NUL is never text: the binary check reads only the first 8 KB, and PDFs can hold them anywhere.
        doc.page_content = doc.page_content.replace("\x00", "")
        doc.metadata.update(
            source=path.name, sha256=sha, title=str(doc.metadata["title"]).replace("\x00", "")
        )
    docs = [doc for doc in docs if doc.page_content.strip()]
    if not docs:
        raise DocumentError(path, "no text in file")
    return docs


def check_file(path: Path, max_bytes: int | None) -> None:
    """Raise DocumentError when `path` is of an unsupported type, missing, not a regular file, empty or
    over `max_bytes`. Only its name and size are looked at: nothing of a file over the limit is read."""
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED:
        raise DocumentError(path, f"unsupported file type {suffix or '(none)'}; use {', '.join(SUPPORTED)}")
    if not path.exists():
        raise DocumentError(path, "file not found")
    if not path.is_file():
        raise DocumentError(path, "not a regular file (a folder, pipe or device); only files are indexed")
    size = path.stat().st_size
    if size == 0:
        raise DocumentError(path, "empty file (0 bytes)")
    if max_bytes is not None and size > max_bytes:
        raise DocumentError(
            path,
            f"{size / 2**20:.0f} MB is over the {max_bytes / 2**20:.0f} MB limit (ASSISTANT_MAX_UPLOAD_MB)",
        )


def load_corpus(paths: Iterable[Path]) -> tuple[list[Document], list[Skipped]]:
    """Load every supported file below `paths`; unreadable files are returned as Skipped, not raised."""
    docs: list[Document] = []
    files, skipped = find_files(paths)
    for path in files:
        try:
            docs += load_file(path)
        except DocumentError as err:
            skipped.append(Skipped(path, err.reason))
    return docs, skipped


def decode_text(data: bytes, path: Path) -> str:
    """Decode text bytes as UTF-8, falling back to cp1252 then latin-1; refuse binary content."""
    if b"\x00" in data[:8192] or _control_ratio(data[:8192]) > 0.1:
        raise DocumentError(
            path, "binary content in a text file; save it as plain text or use its real extension"
        )
    for encoding in TEXT_ENCODINGS:
        try:
            return data.decode(encoding).lstrip("\ufeff")
        except UnicodeDecodeError:
            continue
    raise AssertionError("latin-1 decodes every byte")  # pragma: no cover


def _control_ratio(data: bytes) -> float:
    if not data:
        return 0.0
    controls = sum(1 for b in data if b < 32 and b not in (9, 10, 12, 13))
    return controls / len(data)


def _load_text(path: Path, *, markdown: bool) -> list[Document]:
    text = decode_text(path.read_bytes(), path).replace("\r\n", "\n").replace("\r", "\n")
    if not text.strip():
        raise DocumentError(path, "no text in file")
    heading = re.search(r"^#{1,6}\s+(.+)$", text, re.M) if markdown else None
    title = heading.group(1).strip() if heading else _named_line(text, path) or _first_line(text) or path.stem
    return [Document(page_content=text, metadata={"title": title, "page": None})]


def _named_line(text: str, path: Path) -> str | None:
    """The first short line sharing two words with the file name: text saved from a web page often
    starts with site furniture ("This site is intended for...") before its real title."""
    named = {w for w in re.findall(r"[a-z]{3,}", path.stem.lower())}
    for line in text.splitlines()[:60]:
        words = set(re.findall(r"[a-z]{3,}", line.lower()))
        if 0 < len(line.strip()) <= 120 and len(words & named) >= 2:
            return line.strip()
    return None


def _first_line(text: str) -> str | None:
    for line in text.splitlines():
        line = line.strip()
        if line:
            return line[:120]
    return None


def _load_pdf(path: Path) -> list[Document]:
    from pypdf import PdfReader
    from pypdf.errors import FileNotDecryptedError, PdfReadError

    try:
        reader = PdfReader(path)
        if reader.is_encrypted and not reader.decrypt(""):
            raise DocumentError(path, "encrypted PDF with a password; save an unprotected copy")
        pages = [page.extract_text() or "" for page in reader.pages]
        meta_title = (reader.metadata.title if reader.metadata else None) or ""
    except DocumentError:
        raise
    except FileNotDecryptedError:
        raise DocumentError(path, "encrypted PDF with a password; save an unprotected copy") from None
    except (PdfReadError, ValueError, KeyError, TypeError, OSError, AttributeError) as err:
        raise DocumentError(path, f"corrupt or truncated PDF ({type(err).__name__}); re-export it") from None
    except Exception as err:  # pypdf raises many internal types on broken files; none may stop a run
        raise DocumentError(path, f"unreadable PDF ({type(err).__name__}); re-export it") from None
    if not any(p.strip() for p in pages):
        raise DocumentError(path, "no text layer (image-only or scanned PDF); run OCR on it first")
    running = _running_lines(pages)
    title = str(meta_title).strip()
    # A title the running header does not repeat ("Report template") loses to the running header,
    # which is what every page calls the document.
    if running and not any(title and title in line for line in running):
        title = max(running, key=len)
    title = title or _first_line(next(p for p in pages if p.strip())) or path.stem
    return [
        Document(page_content=_without_page_number(text, number), metadata={"title": title, "page": number})
        for number, text in enumerate(pages, start=1)
        if text.strip()
    ]


def _running_lines(pages: list[str]) -> set[str]:
    r"""Running headers and footers: lines at the top or bottom of most pages.

    Kept in the text (measured: removing them lowered hit@1 on eval/qa/pdf.jsonl from 0.85 to 0.70, as
    they carry the document's name into each chunk), they name the document when its metadata does not.

    >>> sorted(_running_lines(["Annual report\nIntro", "Annual report\nBody", "Annual report\nEnd", "Cover"]))
    ['Annual report']
    """
    if len(pages) < 3:
        return set()
    counts: Counter[str] = Counter()
    for page in pages:
        lines = [line.strip() for line in page.split("\n") if line.strip()]
        counts.update(set(lines[:2] + lines[-2:]))
    return {line for line, n in counts.items() if n >= 0.6 * len(pages) and len(line) > 3}


def _without_page_number(text: str, page: int) -> str:
    r"""The page's text without its printed page number (a line of just that number near the top or
    bottom), which otherwise joins the next sentence ("7 Figure 1: ...") as a figure.

    >>> _without_page_number("Running header\n 7 \nFigure 1: Supply", 7)
    'Running header\nFigure 1: Supply'
    """
    lines = text.split("\n")
    near = [i for i in range(len(lines)) if i < 4 or i >= len(lines) - 4]
    # printed numbers may be offset from the PDF's page index by a cover or contents pages
    drop = {i for i in near if lines[i].strip().isdigit() and abs(int(lines[i].strip()) - page) <= 4}
    kept = "\n".join(line for i, line in enumerate(lines) if i not in drop)
    return kept if kept.strip() else text


def _load_docx(path: Path) -> list[Document]:
    import docx

    try:
        document = docx.Document(str(path))
    except Exception as err:  # python-docx: BadZipFile, PackageNotFoundError, lxml's XMLSyntaxError, ...
        raise DocumentError(path, f"corrupt DOCX ({type(err).__name__}); re-save it from Word") from None
    lines: list[str] = []
    title = (document.core_properties.title or "").strip()
    # Walk the body in order so tables stay where they were; a table row becomes one tab-separated
    # line, which the chunker's table reader turns into one chunk per row.
    for block in document.element.body.iterchildren():
        tag = block.tag.rsplit("}", 1)[-1]
        if tag == "p":
            paragraph = docx.text.paragraph.Paragraph(block, document)
            text = paragraph.text.strip()
            style = (paragraph.style.name if paragraph.style is not None else "") or ""
            if text and style.startswith("Heading"):
                title = title or text
                level = style.removeprefix("Heading").strip()
                text = "#" * (int(level) if level.isdigit() else 1) + " " + text
            lines.append(text)
        elif tag == "tbl":
            table = docx.table.Table(block, document)
            lines.append("")
            for row in table.rows:
                lines.append("\t".join(" ".join(cell.text.split()) for cell in row.cells))
            lines.append("")
    text = "\n".join(lines).strip()
    if not text:
        raise DocumentError(path, "no text in DOCX")
    return [Document(page_content=text, metadata={"title": title or path.stem, "page": None})]


def _load_html(path: Path) -> list[Document]:
    from bs4 import BeautifulSoup

    raw = decode_text(path.read_bytes(), path)
    soup = BeautifulSoup(raw, "html.parser")
    for tag in soup(["script", "style", "noscript", "template"]):
        tag.decompose()
    title_tag = soup.title.get_text(" ", strip=True) if soup.title else ""
    heading = soup.find(["h1", "h2"])
    blocks = []
    for element in soup.find_all(["h1", "h2", "h3", "h4"]):
        level = int(element.name[1])
        element.insert_before(f"\n\n{'#' * level} ")
        element.insert_after("\n\n")
    text = soup.get_text("\n")
    for line in text.splitlines():
        blocks.append(" ".join(line.split()))
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(blocks)).strip()
    if not text:
        raise DocumentError(path, "no text in HTML")
    title = title_tag or (heading.get_text(" ", strip=True) if heading else "") or path.stem
    return [Document(page_content=text, metadata={"title": title, "page": None})]
