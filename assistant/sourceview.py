"""Where a quote sits in its document: the PDF page drawn with the quote's lines marked, or the passage
in context, for the app's source viewer.

    view = locate(index, settings, citation.chunk_id, citation.quote)
    view.image.png          # a PDF page as PNG, the quote's lines highlighted (None for other formats)
    view.context            # (before, quote, after) from the document's text, for any format

Pages are drawn by PDFium (pypdfium2; pypdf reads text but cannot draw). The quote comes from pypdf's
text, PDFium numbers the characters of its own: the two are matched on letters and digits alone
(case-folded, NFKC), so line breaks, hyphenation spaces and ligatures do not stop a match. A quote
that is still not found whole is marked by its longest part that is; `PageImage.matched` says which.
"""

from __future__ import annotations

import io
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from assistant.config import Settings
from assistant.errors import AssistantError, DocumentError
from assistant.loaders import file_sha256, load_file

SCALE = 1.6  # pixels per PDF point: a 595-point A4 page is ~950 px wide, readable beside the chat
CONTEXT_CHARS = 700  # of the document's text on each side of a quote, for formats without pages
_MIN_PART = 24  # characters (letters and digits) of a quote's part worth marking on its own
# Characters that are neither letters, digits nor spaces, as quotes start or end with them.
_SIGNS = "£$€%.,;:!?()[]\"'“”‘’*-–—/"
_MARK = (255, 214, 0, 110)  # translucent yellow over the page
_EDGE = (214, 120, 0, 255)


@dataclass(frozen=True)
class PageImage:
    """A rendered PDF page with the quote's line boxes marked."""

    png: bytes
    width: int
    height: int
    boxes: int  # line rectangles marked
    matched: str  # "quote", "part of the quote" or "" (not found on the page)


@dataclass(frozen=True)
class SourceView:
    """What the viewer shows for one quote of one chunk."""

    source: str
    title: str
    page: int | None
    quote: str
    path: Path | None  # the document's file, when it is still there unchanged (for a download)
    note: str | None  # why the page or the file cannot be shown, in one sentence
    image: PageImage | None
    context: tuple[str, str, str]  # before, the quote (or the whole passage), after


def locate(index: Any, settings: Settings, chunk_id: str, quote: str) -> SourceView:
    """The view of `quote` in the indexed chunk `chunk_id`; raise AssistantError when the chunk is gone."""
    chunk = index.by_id.get(chunk_id)
    if chunk is None:
        raise AssistantError(
            f"The passage {chunk_id} is no longer in the index (it was re-indexed since); ask the question again."
        )
    meta = chunk.metadata
    source, page = str(meta.get("source")), meta.get("page")
    # A quote the chunk does not hold (an edited link) marks nothing; the passage is shown whole.
    quote = quote if quote and quote in chunk.page_content else ""
    path, note = _document_file(index.manifest, settings, source)
    image = None
    text = None  # the document's text around the passage; for a PDF the page image is the context
    if path is not None:
        try:
            if path.suffix.lower() == ".pdf" and page is not None:
                image = render_page(path, int(page), quote or _body(chunk))
            else:
                text = _page_text(path, page)
        except DocumentError as err:
            note, path = f"{err} The indexed passage is shown instead.", None
        except Exception as err:  # noqa: BLE001 - a page PDFium cannot draw still has its passage
            note = f"Page {page} of {source} could not be drawn ({type(err).__name__}); the passage is shown instead."
    if text is None or not (context := quote_in_context(text, quote or _body(chunk))):
        context = quote_in_context(chunk.page_content, quote) or ("", chunk.page_content, "")
    return SourceView(
        source=source,
        title=str(meta.get("title") or source),
        page=page,
        quote=quote,
        path=path,
        note=note,
        image=image,
        context=context,
    )


def render_page(path: Path, page: int, quote: str, scale: float = SCALE) -> PageImage:
    """Page `page` (1-based) of the PDF at `path` as PNG, with the lines of `quote` highlighted."""
    import pypdfium2 as pdfium
    from PIL import Image, ImageDraw

    pdf = pdfium.PdfDocument(str(path))
    try:
        if not 1 <= page <= len(pdf):
            raise DocumentError(path, f"has no page {page} (it has {len(pdf)}); re-index it")
        sheet = pdf[page - 1]
        textpage = sheet.get_textpage()
        text = textpage.get_text_range(0, textpage.count_chars())
        span, matched = find_quote(text, quote)
        rects = []
        if span is not None:
            start, end = span
            rects = [textpage.get_rect(i) for i in range(textpage.count_rects(start, end - start))]
        left, _, _, top = sheet.get_cropbox()
        image = sheet.render(scale=scale).to_pil().convert("RGBA")
    finally:
        pdf.close()
    overlay = Image.new("RGBA", image.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    for x0, y0, x1, y1 in rects:  # PDF points, origin bottom-left -> pixels, origin top-left
        box = (
            (x0 - left) * scale - 2,
            (top - y1) * scale - 2,
            (x1 - left) * scale + 2,
            (top - y0) * scale + 2,
        )
        draw.rectangle(box, fill=_MARK, outline=_EDGE, width=1)
    out = io.BytesIO()
    Image.alpha_composite(image, overlay).convert("RGB").save(out, format="PNG", optimize=True)
    return PageImage(out.getvalue(), image.width, image.height, len(rects), matched if rects else "")


def find_quote(text: str, quote: str) -> tuple[tuple[int, int] | None, str]:
    """The span of `quote` in `text` matched on letters and digits, or of its longest part that matches.

    >>> find_quote("no less than 76%\\r\\nof patients are seen", "than 76% of patients")
    ((8, 29), 'quote')
    >>> find_quote("A plan\\nfor beds.", "nothing alike at all here, really nothing")
    (None, '')
    """
    letters, positions = _letters(text)
    wanted, _ = _letters(quote)
    if not wanted:
        return None, ""
    at = letters.find(wanted)
    if at >= 0:
        return _widen(text, quote, positions[at], positions[at + len(wanted) - 1] + 1), "quote"
    # The longest part of the quote (from its start, or up to its end) that the page has.
    for size in range(len(wanted) - 1, _MIN_PART - 1, -max(1, len(wanted) // 12)):
        for part in (wanted[:size], wanted[-size:]):
            at = letters.find(part)
            if at >= 0:
                return (positions[at], positions[at + size - 1] + 1), "part of the quote"
    return None, ""


def _widen(text: str, quote: str, start: int, end: int) -> tuple[int, int]:
    """The span grown over the signs the quote starts or ends with ("£", "%", "."), where the text has them."""
    lead = len(quote) - len(quote.lstrip(_SIGNS))
    trail = len(quote) - len(quote.rstrip(_SIGNS))
    while lead and start > 0 and text[start - 1] in _SIGNS:
        start, lead = start - 1, lead - 1
    while trail and end < len(text) and text[end] in _SIGNS:
        end, trail = end + 1, trail - 1
    return start, end


def quote_in_context(text: str, quote: str, chars: int = CONTEXT_CHARS) -> tuple[str, str, str] | None:
    """(before, quote as the text writes it, after) around the first match of `quote`, or None.

    >>> quote_in_context("Intro. The target is 76% by March. Outro.", "target is 76%", chars=9)
    ('…tro. The ', 'target is 76%', ' by March…')
    """
    span, _ = find_quote(text, quote)
    if span is None or not quote:
        return None
    start, end = span
    before = text[max(0, start - chars) : start]
    after = text[end : end + chars]
    return (
        ("…" if start > chars else "") + before,
        text[start:end],
        after + ("…" if end + chars < len(text) else ""),
    )


def _letters(text: str) -> tuple[str, list[int]]:
    """The letters and digits of `text`, case-folded, with the index in `text` each came from."""
    out: list[str] = []
    positions: list[int] = []
    for i, char in enumerate(text):
        for c in unicodedata.normalize("NFKC", char).casefold():
            if c.isalnum():
                out.append(c)
                positions.append(i)
    return "".join(out), positions


def _document_file(
    manifest: dict[str, Any], settings: Settings, source: str
) -> tuple[Path | None, str | None]:
    """The indexed file of `source`, when it is still there with the bytes that were indexed."""
    meta = manifest.get("files", {}).get(source) or {}
    candidates = [Path(meta["path"])] if meta.get("path") else []
    candidates.append(settings.corpus_dir / source)
    for path in candidates:
        if path.is_file() and not path.is_symlink():
            if meta.get("sha256") and file_sha256(path) != meta["sha256"]:
                return (
                    None,
                    f"{source} changed since it was indexed; re-index it to see the page. The indexed passage is shown.",
                )
            return path, None
    return None, f"{source} is no longer in the corpus folder; the indexed passage is shown."


def _page_text(path: Path, page: int | None) -> str | None:
    """The text of page `page` of the document (its whole text when it has no pages), as indexed."""
    for doc in load_file(path):
        if doc.metadata.get("page") == page:
            return doc.page_content
    return None


def _body(chunk: Any) -> str:
    """The chunk's own text, without the section heading the chunker put before it."""
    section = chunk.metadata.get("section")
    text = str(chunk.page_content)
    return text[len(section) + 1 :] if section and text.startswith(f"{section}\n") else text
