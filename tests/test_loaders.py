"""Loaders on real fixture files: pages, titles, encodings, and one clear reason per bad file."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from assistant.errors import DocumentError
from assistant.loaders import load_corpus, load_file

FIXTURES = Path(__file__).parent / "fixtures"


def test_pdf_gives_one_document_per_page_with_1_based_page_numbers() -> None:
    docs = load_file(FIXTURES / "real-3-pages.pdf")
    expected = json.loads((FIXTURES / "real-3-pages.expected.json").read_text())
    assert [d.metadata["page"] for d in docs] == [1, 2, 3]
    for doc in docs:
        assert expected[str(doc.metadata["page"])] in doc.page_content
        assert doc.metadata["source"] == "real-3-pages.pdf"
        assert len(doc.metadata["sha256"]) == 64
        assert doc.metadata["title"]


def test_pdf_pages_lose_their_printed_number_and_take_the_running_header_as_title() -> None:
    report = (
        Path(__file__).parents[1]
        / "eval"
        / "pdfs"
        / "Data Driven Healthcare in 2030 - Summary report - Mar 21.pdf"
    )
    docs = load_file(report)
    # the file's metadata title is "Report template"; every page is headed with the report's name
    assert {d.metadata["title"] for d in docs} == {
        "HEE Digital Readiness Programme Summary and Recommendations"
    }
    page_7 = next(d for d in docs if d.metadata["page"] == 7).page_content
    assert "\nFigure 1: Supply projection" in page_7 and "\n7 \n" not in page_7


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("truncated.pdf", "corrupt or truncated PDF"),
        ("encrypted-password.pdf", "encrypted PDF with a password"),
        ("image-only.pdf", "no text layer"),
        ("empty.txt", "empty file"),
        ("empty.pdf", "empty file"),
        ("binary-named.txt", "binary content"),
        ("unsupported.xyz", "unsupported file type .xyz"),
    ],
)
def test_bad_file_raises_one_reason_naming_the_file(name: str, reason: str) -> None:
    with pytest.raises(DocumentError) as caught:
        load_file(FIXTURES / name)
    assert reason in str(caught.value)
    assert str(caught.value).startswith(name)


def test_pdf_encrypted_with_empty_password_is_read() -> None:
    docs = load_file(FIXTURES / "encrypted-empty-password.pdf")
    assert len(docs) == 3 and docs[0].page_content.strip()


@pytest.mark.parametrize(("name", "text"), [("cp1252-notes.txt", "£"), ("latin1-notes.txt", "ü")])
def test_non_utf8_text_is_decoded_not_dropped(name: str, text: str) -> None:
    (doc,) = load_file(FIXTURES / name)
    assert text in doc.page_content
    assert doc.metadata["page"] is None


def test_cp1252_smart_quotes_survive() -> None:
    (doc,) = load_file(FIXTURES / "cp1252-notes.txt")
    assert "–" in doc.page_content or "“" in doc.page_content


def test_deeply_nested_html_keeps_text_and_drops_script_and_style() -> None:
    (doc,) = load_file(FIXTURES / "nested.html")
    assert "1,234 patients" in doc.page_content
    assert "SCRIPT_SHOULD_NOT_APPEAR" not in doc.page_content
    assert "STYLE_SHOULD_NOT_APPEAR" not in doc.page_content
    assert doc.metadata["title"]


def test_docx_table_rows_become_tab_separated_lines() -> None:
    (doc,) = load_file(FIXTURES / "tables.docx")
    assert "Stroke care\tIncrease thrombolysis rates to 20% by March 2025" in doc.page_content


def test_markdown_title_is_first_heading() -> None:
    (doc,) = load_file(FIXTURES / "notes.md")
    assert doc.metadata["title"] == "Heading"


def test_awkward_file_names_load() -> None:
    for name, number in [("plan with spaces.txt", "4,317"), ("plan, with commas.txt", "2,648")]:
        (doc,) = load_file(FIXTURES / name)
        assert number in doc.page_content and doc.metadata["source"] == name
    (doc,) = [d for d in load_corpus([FIXTURES])[0] if "8,913" in d.page_content]
    assert doc.metadata["source"].startswith("pl")


def test_load_corpus_skips_bad_files_and_keeps_the_rest() -> None:
    docs, skipped = load_corpus([FIXTURES])
    skipped_names = {s.path.name for s in skipped}
    assert {
        "truncated.pdf",
        "image-only.pdf",
        "empty.txt",
        "binary-named.txt",
        "unsupported.xyz",
    } <= skipped_names
    assert {"real-3-pages.pdf", "tables.docx", "cp1252-notes.txt"} <= {d.metadata["source"] for d in docs}


def test_text_title_is_the_line_the_file_is_named_after() -> None:
    root = Path(__file__).resolve().parents[1] / "corpus"
    (plan,) = load_file(root / "nhs-business-plan-2023-24-breakdown.txt")
    assert plan.metadata["title"] == "Our Breakdown of the NHS Business Plan 2023/24"
    (objectives,) = load_file(root / "nhs-national-objectives-2023-24.txt")
    assert objectives.metadata["title"] == "National NHS objectives 2023/24"


def _docx_with_broken_xml(path: Path) -> Path:
    """tables.docx with its word/document.xml cut in half (a zip that opens, XML that does not parse)."""
    import zipfile

    with zipfile.ZipFile(FIXTURES / "tables.docx") as good, zipfile.ZipFile(path, "w") as bad:
        for item in good.infolist():
            data = good.read(item)
            bad.writestr(item, data[: len(data) // 2] if item.filename == "word/document.xml" else data)
    return path


@pytest.mark.parametrize("kind", ["random bytes", "broken document.xml"])
def test_malformed_docx_is_a_document_error_not_a_crash(tmp_path: Path, kind: str) -> None:
    # issue 12 finding 1: PackageNotFoundError / XMLSyntaxError escaped and stopped the whole ingest
    if kind == "random bytes":
        path = tmp_path / "random.docx"
        path.write_bytes(bytes(range(256)) * 40)
    else:
        path = _docx_with_broken_xml(tmp_path / "broken.docx")
    with pytest.raises(DocumentError) as caught:
        load_file(path)
    assert str(caught.value).startswith(path.name) and "corrupt DOCX" in caught.value.reason


def test_symbolic_links_below_a_folder_are_skipped_not_followed(tmp_path: Path) -> None:
    # issue 12 finding 3: `notes.txt -> /etc/passwd` in the corpus was indexed
    secret = tmp_path / "outside" / "secret.txt"
    secret.parent.mkdir()
    secret.write_text("root:x:0:0:root:/root:/bin/bash\n")
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "plan.txt").write_text("Plan\n\nOpen 12 beds.\n")
    (corpus / "notes.txt").symlink_to(secret)
    (corpus / "linked-folder").symlink_to(secret.parent, target_is_directory=True)
    docs, skipped = load_corpus([corpus])
    assert [d.metadata["source"] for d in docs] == ["plan.txt"]
    assert not any("root:x" in d.page_content for d in docs)
    reasons = {s.path.name: s.reason for s in skipped}
    assert set(reasons) == {"notes.txt", "linked-folder"}
    assert all("symbolic link" in r and "not followed" in r for r in reasons.values())


def test_a_pipe_named_like_a_document_is_refused_without_reading_it(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "notes.txt")  # opening it to read would wait for a writer forever
    with pytest.raises(DocumentError, match="not a regular file"):
        load_file(tmp_path / "notes.txt")


def test_hidden_folders_are_not_scanned(tmp_path: Path) -> None:
    (tmp_path / ".trash" / "x").mkdir(parents=True)
    (tmp_path / ".trash" / "x" / "removed.txt").write_text("Removed\n\nA removed document.\n")
    (tmp_path / "kept.txt").write_text("Kept\n\nA kept document.\n")
    docs, skipped = load_corpus([tmp_path])
    assert [d.metadata["source"] for d in docs] == ["kept.txt"] and not skipped


@pytest.mark.parametrize("suffix", [".txt", ".md", ".html"])
def test_nul_bytes_anywhere_in_text_are_stripped(tmp_path: Path, suffix: str) -> None:
    # issue 12 finding 9: the binary check reads 8 KB, so NULs after it reached the chunks
    path = tmp_path / f"late-nul{suffix}"
    path.write_bytes(b"Plan\n\n" + b"Open beds. " * 1000 + b"Target\x00 of 76%\x00.\n")
    (doc,) = load_file(path)
    assert "\x00" not in doc.page_content and "Target of 76%." in doc.page_content
