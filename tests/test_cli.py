"""The CLI: exit codes and one-sentence messages (run as a real subprocess)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
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
