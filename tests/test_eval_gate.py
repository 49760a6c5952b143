"""The CI gate (issue 4): the bundled objectives set, on the default corpus, through the real CLI.

The issue's floor was hit@5 >= 0.95, fact_recall >= 0.9, refusal_accuracy >= 0.8; tightened as the
system improved, now to the answer issue's targets (measured 2026-11-24: hit@1 0.982, MRR 0.988,
fact_recall 0.982, refusal 1.0, false refusals 0; later 1.0 on each). The held-out set (written blind,
measured 0.938 / 0.969 / 0.938 / 1.0 / 0) and the PDF set (hit@1 0.85, fact_recall 0.75, refusal 1.0,
false refusals 0.10) have gates a little under their measured levels. Thresholds only ever tighten.

The two sets written blind for the answer issue (issue 11) run on the two planning documents plus the
three reports in eval/pdfs: dev.jsonl (tuning data for the evidence policy) and blind.jsonl (never tuned
on). Their gates sit a little under the levels measured when the evidence policy landed (docs/QUALITY.md);
they guard against regressions and are not the issue's targets, which are not all met.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GATE = {"hit@1": 0.95, "mrr@10": 0.97, "hit@5": 0.95, "fact_recall": 0.97, "refusal_accuracy": 0.9}
MAX_FALSE_REFUSALS = 0.03
HELDOUT_GATE = {"hit@1": 0.9, "mrr@10": 0.95, "fact_recall": 0.9, "refusal_accuracy": 0.9}
PDF_GATE = {"hit@1": 0.8, "fact_recall": 0.7, "refusal_accuracy": 0.66}
PDF_MAX_FALSE_REFUSALS = 0.1
# Regression floors for the blind-written sets: what each set measured when the rebuilt answer path was
# first scored on it (docs/QUALITY.md), less 0.05 of noise. Issue 11's targets (0.90) are not met yet;
# these catch a change that makes answers worse, they do not say the answers are good enough.
BLIND_GATE = {
    "blind": {"hit@1": 0.72, "fact_recall": 0.66, "page_accuracy": 0.66, "refusal_accuracy": 0.80},
    "dev": {"hit@1": 0.73, "fact_recall": 0.69, "page_accuracy": 0.75, "refusal_accuracy": 0.70},
}
BLIND_MAX_FALSE_REFUSALS = {"blind": 0.11, "dev": 0.10}


def _eval(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "assistant", "eval", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=900,
    )


@pytest.mark.slow
def test_objectives_set_passes_the_gate_and_beats_the_baseline(corpus_index: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = _eval(
        "eval/qa/objectives.jsonl", "--index", str(corpus_index / "index"), "--out", str(out), "--json"
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert set(report) == {"metrics", "baseline", "per_tag", "baseline_per_tag", "n"} and report["n"] == 71
    metrics, baseline = report["metrics"], report["baseline"]
    for key, floor in GATE.items():
        assert metrics[key] >= floor, f"{key} {metrics[key]:.3f} is below the gate {floor}"
    assert metrics["false_refusal_rate"] <= MAX_FALSE_REFUSALS
    assert metrics["hit@1"] > baseline["hit@1"] and metrics["fact_recall"] > baseline["fact_recall"]
    assert metrics["citation_validity"] == 1.0
    html = (out / "report.html").read_text(encoding="utf-8")
    assert html.count("data:image/png;base64,") >= 3
    lines = (out / "results.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 71


@pytest.mark.slow
def test_heldout_set_passes_its_gate(corpus_index: Path) -> None:
    result = _eval("eval/qa/heldout.jsonl", "--index", str(corpus_index / "index"), "--no-baseline", "--json")
    assert result.returncode == 0, result.stderr
    metrics = json.loads(result.stdout)["metrics"]
    for key, floor in HELDOUT_GATE.items():
        assert metrics[key] >= floor, f"{key} {metrics[key]:.3f} is below the gate {floor}"
    assert metrics["false_refusal_rate"] <= MAX_FALSE_REFUSALS


@pytest.mark.slow
def test_pdf_set_passes_its_gate(tmp_path: Path) -> None:
    result = _eval(
        "eval/qa/pdf.jsonl",
        "--corpus",
        "eval/pdfs",
        "--index",
        str(tmp_path / "index"),
        "--no-baseline",
        "--json",
    )
    assert result.returncode == 0, result.stderr
    metrics = json.loads(result.stdout)["metrics"]
    for key, floor in PDF_GATE.items():
        assert metrics[key] >= floor, f"{key} {metrics[key]:.3f} is below the gate {floor}"
    assert metrics["false_refusal_rate"] <= PDF_MAX_FALSE_REFUSALS
    assert metrics["citation_validity"] == 1.0


@pytest.mark.slow
def test_eval_from_a_corpus_folder_leaves_index_untouched(tmp_path: Path) -> None:
    qa = tmp_path / "two.jsonl"
    rows = [
        {
            "id": "a",
            "question": "What's the ARRS recruitment target?",
            "reference": "26,000 ARRS roles",
            "facts": ["26,000"],
            "evidence": ["Continue to recruit 26,000"],
            "sources": ["nhs-national-objectives-2023-24"],
            "answerable": True,
            "tags": ["primary-care"],
        },
        {
            "id": "b",
            "question": "What's the capital of France?",
            "reference": "not covered",
            "facts": [],
            "evidence": [],
            "sources": [],
            "answerable": False,
            "tags": ["unanswerable"],
        },
    ]
    qa.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    index = tmp_path / "index"
    result = _eval(str(qa), "--corpus", "corpus", "--index", str(index), "--no-baseline", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["n"] == 2 and report["baseline"] is None
    assert report["metrics"]["fact_recall"] == 1.0 and report["metrics"]["refusal_accuracy"] == 1.0
    assert not index.exists()


def test_bad_qa_file_names_the_line_and_exits_1(tmp_path: Path) -> None:
    qa = tmp_path / "bad.jsonl"
    qa.write_text('{"id": "a"}\n', encoding="utf-8")
    result = _eval(str(qa), "--out", str(tmp_path / "out"))
    assert result.returncode == 1
    assert "bad.jsonl line 1" in result.stderr
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def documents_and_reports(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One index of corpus/ and eval/pdfs/, the corpus the blind-written sets were written for."""
    index = tmp_path_factory.mktemp("blind") / "index"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(
        [sys.executable, "-m", "assistant", "ingest", "corpus", "eval/pdfs", "--index", str(index)],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        timeout=900,
    )
    return index


@pytest.mark.slow
@pytest.mark.parametrize("name", ["blind", "dev"])
def test_blind_written_sets_pass_their_gate(documents_and_reports: Path, name: str) -> None:
    result = _eval(f"eval/qa/{name}.jsonl", "--index", str(documents_and_reports), "--no-baseline", "--json")
    assert result.returncode == 0, result.stderr
    metrics = json.loads(result.stdout)["metrics"]
    for key, floor in BLIND_GATE[name].items():
        assert metrics[key] >= floor, f"{name}: {key} {metrics[key]:.3f} is below the gate {floor}"
    assert metrics["false_refusal_rate"] <= BLIND_MAX_FALSE_REFUSALS[name]
    assert metrics["citation_validity"] == 1.0
