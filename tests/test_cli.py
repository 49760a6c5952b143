"""The CLI: exit codes and one-sentence messages (run as a real subprocess)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, **(env or {}), "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "assistant", *args],
        capture_output=True,
        text=True,
        env=full,
        cwd=ROOT,
        timeout=600,
    )


def test_import_assistant_keeps_streamlit_and_torch_out() -> None:
    code = "import sys, assistant, assistant.chain, assistant.cli; print('streamlit' in sys.modules, 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_ask_without_an_index_says_to_ingest(tmp_path: Path) -> None:
    result = _run("ask", "what is the A&E target?", "--index", str(tmp_path / "none"))
    assert result.returncode == 1
    assert "run `nhs-assistant ingest`" in result.stderr


@pytest.mark.slow
def test_ingest_bad_inputs_warns_per_file_and_indexes_the_rest(tmp_path: Path) -> None:
    corpus = tmp_path / "my corpus"
    shutil.copytree(ROOT / "corpus", corpus)
    for name in [
        "truncated.pdf",
        "encrypted-password.pdf",
        "image-only.pdf",
        "empty.txt",
        "binary-named.txt",
        "cp1252-notes.txt",
        "plan with spaces.txt",
        "plän-ñoñó.txt",
        "unsupported.xyz",
    ]:
        shutil.copy(FIXTURES / name, corpus / name)
    index = tmp_path / "index"
    result = _run("ingest", "--corpus", str(corpus), "--index", str(index))
    assert result.returncode == 0, result.stderr
    for name in [
        "truncated.pdf",
        "encrypted-password.pdf",
        "image-only.pdf",
        "empty.txt",
        "binary-named.txt",
        "unsupported.xyz",
    ]:
        assert f"Skipped {name}:" in result.stderr
    assert "Indexed 5 files" in result.stdout
    again = _run("ingest", "--corpus", str(corpus), "--index", str(index))
    assert "embedded 0 chunks" in again.stdout
    answer = _run("ask", "What's the ARRS recruitment target?", "--index", str(index), "--json")
    assert answer.returncode == 0, answer.stderr
    data = json.loads(answer.stdout)
    assert set(data) >= {"question", "answer", "refused", "citations", "retrieved", "timings_ms"}
    assert (
        "26,000" in data["answer"] and data["citations"][0]["source"] == "nhs-national-objectives-2023-24.txt"
    )


def test_ingest_with_nothing_indexable_exits_1(tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    shutil.copy(FIXTURES / "empty.txt", bad / "empty.txt")
    result = _run("ingest", str(bad), "--index", str(tmp_path / "index"))
    assert result.returncode == 1
    assert "Nothing was indexed (empty.txt: empty file (0 bytes))" in result.stderr


def _corpus_copy(index_env: Callable[[str], dict[str, str]], name: str) -> tuple[Path, Path]:
    """A copy of the session's real corpus and index: (corpus folder, index folder)."""
    env = index_env(name)
    return Path(env["ASSISTANT_CORPUS_DIR"]), Path(env["ASSISTANT_INDEX_DIR"])


@pytest.mark.slow
def test_ingest_skips_malformed_docx_and_exits_0(index_env: Callable[[str], dict[str, str]]) -> None:
    # issue 12 finding 1: a random-bytes or broken-XML .docx made `ingest` exit 1 with a traceback
    from langchain_core.embeddings import DeterministicFakeEmbedding

    from assistant.config import Settings
    from assistant.store import load_index

    corpus, index = _corpus_copy(index_env, "cli-docx")
    (corpus / "random.docx").write_bytes(os.urandom(5000))
    (corpus / "[bold]odd.docx").write_bytes(os.urandom(500))  # a name with Rich markup in it
    with (
        zipfile.ZipFile(FIXTURES / "tables.docx") as good,
        zipfile.ZipFile(corpus / "broken.docx", "w") as bad,
    ):
        for item in good.infolist():
            data = good.read(item)
            bad.writestr(item, data[:-200] if item.filename == "word/document.xml" else data)
    result = _run("ingest", "--corpus", str(corpus), "--index", str(index))
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "Skipped random.docx: corrupt DOCX" in result.stderr
    assert "Skipped broken.docx: corrupt DOCX" in result.stderr
    assert "Skipped [bold]odd.docx: corrupt DOCX" in result.stderr
    assert "Indexed 2 files" in result.stdout
    loaded = load_index(Settings(index_dir=index), DeterministicFakeEmbedding(size=384))
    assert set(loaded.manifest["files"]) == {p.name for p in (ROOT / "corpus").iterdir()}


@pytest.fixture(scope="module")
def markup_ingest(
    index_env: Callable[[str], dict[str, str]],
) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """The real corpus indexed, then `ingest new-folder/` of one document full of Rich markup."""
    corpus, index = _corpus_copy(index_env, "cli-markup")
    new = corpus.parent / "new-folder"
    new.mkdir()
    (new / "bulletin.md").write_text(MARKUP_DOCUMENT, encoding="utf-8")
    return index, _run("ingest", str(new), "--index", str(index))


MARKUP_DOCUMENT = (
    "# Riverside [bold]bulletin[/bold]\n\n"
    "The Riverside [/bold] bulletin says [link=http://evil.example/]the new ward[/link] will open "
    "14 community beds by March 2025 [red]urgently[/red] \x1b]8;;http://evil.example/\x1b\\here\x1b]8;;\x1b\\.\n"
)


@pytest.mark.slow
def test_ingest_of_a_new_folder_keeps_the_other_documents(
    markup_ingest: tuple[Path, subprocess.CompletedProcess[str]], tmp_path: Path
) -> None:
    # issue 12 finding 10: `ingest new-folder/` removed every other document ("3 removed")
    index, result = markup_ingest
    assert result.returncode == 0, result.stderr
    assert "Indexed 3 files" in result.stdout
    assert "2 kept from earlier runs though not in PATHS (use --prune to remove them)" in result.stdout
    pruned_index = tmp_path / "index"
    shutil.copytree(index, pruned_index)
    new = next(p for p in index.parent.iterdir() if p.name == "new-folder")
    pruned = _run("ingest", str(new), "--index", str(pruned_index), "--prune")
    assert pruned.returncode == 0, pruned.stderr
    assert "Indexed 1 files" in pruned.stdout and "2 removed as not in PATHS (--prune)" in pruned.stdout


@pytest.mark.slow
def test_ask_prints_document_markup_literally(
    markup_ingest: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    # issue 12 finding 6: "[/bold]" in a document crashed `ask` with MarkupError; "[link=...]" became a link
    index, ingest = markup_ingest
    assert ingest.returncode == 0, ingest.stderr
    result = _run("ask", "How many community beds will the Riverside bulletin open?", "--index", str(index))
    assert result.returncode == 0, result.stderr
    assert "MarkupError" not in result.stderr
    assert "[/bold]" in result.stdout and "[link=http://evil.example/]the new ward[/link]" in result.stdout
    assert "\x1b" not in result.stdout  # the document's own escape sequence (a hyperlink) is not passed on


def test_ingest_waits_for_another_writer_or_fails_clearly_with_no_wait(tmp_path: Path) -> None:
    from filelock import FileLock

    from assistant.store import LOCK_NAME

    index = tmp_path / "index"
    index.mkdir()
    lock = FileLock(index / LOCK_NAME)
    with lock:  # another ingest is writing
        busy = _run("ingest", str(FIXTURES / "notes.md"), "--index", str(index), "--no-wait")
        assert busy.returncode == 1
        assert "Another ingest is writing" in busy.stderr and "Traceback" not in busy.stderr
        waiting = subprocess.Popen(
            [sys.executable, "-m", "assistant", "ingest", str(FIXTURES / "empty.txt"), "--index", str(index)],
            cwd=ROOT,
            env={**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(3)
        assert waiting.poll() is None  # still waiting for the lock
    _, stderr = waiting.communicate(timeout=120)
    assert "waiting for it to finish" in stderr
    assert "Nothing was indexed (empty.txt: empty file (0 bytes))" in stderr  # it ran once the lock was free


@pytest.mark.slow
def test_ask_renders_its_labels_and_json_lists_passages_best_first(
    index_env: Callable[[str], dict[str, str]],
) -> None:
    env = index_env("cli-render")
    shown = _run("ask", "what is the A&E 4-hour target?", env=env)
    assert shown.returncode == 0, shown.stderr
    assert "Target: 76%" in shown.stdout and "**" not in shown.stdout  # Markdown rendered, not printed
    as_json = _run("ask", "what is the A&E 4-hour target?", "--json", env=env)
    scores = [r["score"] for r in json.loads(as_json.stdout)["retrieved"]]
    assert len(scores) > 1 and scores == sorted(scores, reverse=True)
