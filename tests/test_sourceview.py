"""The source viewer: the cited PDF page drawn with the quote's lines marked, other formats in context."""

from __future__ import annotations

import io
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from langchain_core.documents import Document
from PIL import Image

from assistant.config import Settings
from assistant.errors import AssistantError, DocumentError
from assistant.loaders import file_sha256
from assistant.sourceview import locate, render_page

FIXTURES = Path(__file__).resolve().parent / "fixtures"
PDF = FIXTURES / "riverside-plan.pdf"
QUOTE = "The Riverside community diagnostic centre will open 12 new MRI scanners by October 2024"


def _marked_pixels(png: bytes) -> int:
    """Pixels of the translucent yellow mark over white paper."""
    r, g, b = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int).transpose(2, 0, 1)
    return int(((r > 240) & (g > 215) & (g < 250) & (b > 120) & (b < 180)).sum())


def test_the_quote_s_lines_are_marked_on_the_drawn_page() -> None:
    page = render_page(PDF, 2, QUOTE)
    assert page.matched == "quote" and page.boxes == 2  # the quote runs over two lines of the page
    image = Image.open(io.BytesIO(page.png))
    assert image.size == (page.width, page.height) and page.width > 800
    one_line = render_page(PDF, 2, "12 new MRI scanners by October 2024")
    assert one_line.boxes == 1
    assert 0 < _marked_pixels(one_line.png) < _marked_pixels(page.png)


def test_a_quote_the_page_lacks_marks_nothing() -> None:
    page = render_page(PDF, 1, QUOTE)  # the quote is on page 2
    assert (page.boxes, page.matched) == (0, "")
    assert _marked_pixels(page.png) == 0


def test_a_page_the_pdf_lacks_is_one_sentence() -> None:
    with pytest.raises(DocumentError, match=r"has no page 3 \(it has 2\); re-index it"):
        render_page(PDF, 3, QUOTE)


def _index(corpus: Path, name: str, page: int | None, text: str) -> SimpleNamespace:
    """The two things locate reads of an index: chunks by id, and the manifest's files."""
    chunk = Document(
        text, metadata={"source": name, "page": page, "title": "Riverside plan", "chunk_id": "c1"}
    )
    manifest = {"files": {name: {"path": str(corpus / name), "sha256": file_sha256(corpus / name)}}}
    return SimpleNamespace(by_id={"c1": chunk}, manifest=manifest)


def test_a_cited_pdf_page_is_drawn_and_offered_for_download(tmp_path: Path) -> None:
    shutil.copy(PDF, tmp_path / "riverside-plan.pdf")
    quote = QUOTE.replace("open 12", "open\n12")  # as pypdf's text, which the chunk holds, breaks the lines
    text = f"Community diagnostics\n{quote}, funded from the"
    view = locate(_index(tmp_path, "riverside-plan.pdf", 2, text), Settings(corpus_dir=tmp_path), "c1", quote)
    assert view.note is None and view.path == tmp_path / "riverside-plan.pdf"
    assert view.image is not None and view.image.matched == "quote" and view.image.boxes == 2


def test_a_pdf_changed_since_indexing_shows_the_passage_and_says_why(tmp_path: Path) -> None:
    shutil.copy(PDF, tmp_path / "riverside-plan.pdf")
    index = _index(tmp_path, "riverside-plan.pdf", 2, QUOTE)
    (tmp_path / "riverside-plan.pdf").write_bytes(PDF.read_bytes() + b"\n% edited\n")
    view = locate(index, Settings(corpus_dir=tmp_path), "c1", QUOTE)
    assert view.image is None and view.path is None
    assert view.note is not None and "changed since it was indexed; re-index it" in view.note
    assert view.context == ("", QUOTE, "")  # the indexed passage, the quote marked


def test_a_text_source_shows_the_quote_in_its_document(tmp_path: Path) -> None:
    body = "Intro.\n\n" + "Earlier text. " * 80 + "The target is 76% by March 2024. " + "Later text. " * 80
    (tmp_path / "plan.txt").write_text(body, encoding="utf-8")
    view = locate(
        _index(tmp_path, "plan.txt", None, "The target is 76% by March 2024."),
        Settings(corpus_dir=tmp_path),
        "c1",
        "76% by March 2024",
    )
    before, quote, after = view.context
    assert quote == "76% by March 2024" and view.image is None and view.path == tmp_path / "plan.txt"
    assert before.startswith("…") and before.endswith("The target is ") and after.startswith(". Later text.")


def test_a_passage_no_longer_indexed_says_to_ask_again(tmp_path: Path) -> None:
    (tmp_path / "plan.txt").write_text("x", encoding="utf-8")
    with pytest.raises(AssistantError, match="no longer in the index .* ask the question again"):
        locate(_index(tmp_path, "plan.txt", None, "x"), Settings(corpus_dir=tmp_path), "gone", "x")
