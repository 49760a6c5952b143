"""The feedback store: ratings from many writers at once are all kept; corrections become QA candidates."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from assistant.answer import Answer, Citation
from assistant.evaluation import load_qa
from assistant.feedback import qa_candidates, read_feedback, record_feedback, set_correction

ROOT = Path(__file__).resolve().parents[1]

# One writer process: `count` ratings, each in its own connection, as the app's sessions write them.
_WRITER = """
import sys
from pathlib import Path
from assistant.answer import Answer
from assistant.feedback import record_feedback

db, who, count = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
for n in range(count):
    record_feedback(db, Answer(question=f"{who}-{n}", text="76% [1]", refused=False), score=n % 2)
"""


def test_a_rating_keeps_the_answer_its_citations_and_timings(tmp_path: Path) -> None:
    db = tmp_path / "feedback.sqlite3"
    cited = Citation(1, "plan.txt", "Plan", None, "A&E", "76% within 4 hours", "c1")
    answer = Answer("What is the A&E target?", "76% [1]", False, [cited], timings_ms={"total": 12.5})
    assert record_feedback(db, answer, score=1) == 1
    (row,) = read_feedback(db)
    assert (row["question"], row["score"], row["refused"]) == ("What is the A&E target?", 1, 0)
    assert '"76% within 4 hours"' in row["citations"] and '"total": 12.5' in row["timings"]
    assert read_feedback(tmp_path / "none.sqlite3") == []


def test_twelve_processes_writing_at_once_lose_no_rating(tmp_path: Path) -> None:
    # issue 12 finding 8: 2/1200 and 5/2400 ratings were lost to "database is locked"
    db, writers, each = tmp_path / "feedback.sqlite3", 12, 200
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(db), f"w{w}", str(each)],
            cwd=ROOT,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in range(writers)
    ]
    errors = [proc.communicate(timeout=600)[1] for proc in procs]
    assert [proc.returncode for proc in procs] == [0] * writers, [e for e in errors if e][:1]
    rows = read_feedback(db)
    assert len(rows) == writers * each
    assert {r["question"] for r in rows} == {f"w{w}-{n}" for w in range(writers) for n in range(each)}


def _thumbs_down(db: Path, question: str, correction: str) -> int:
    cited = Citation(1, "riverside-plan.pdf", "Riverside plan", 2, None, "12 new MRI scanners", "c1")
    row_id = record_feedback(db, Answer(question, "It opens 10 scanners. [1]", False, [cited]), score=0)
    set_correction(db, row_id, correction)
    return row_id


def test_a_thumbs_down_with_a_correction_becomes_a_qa_line_an_evaluation_reads(tmp_path: Path) -> None:
    db = tmp_path / "feedback.sqlite3"
    _thumbs_down(db, "How many MRI scanners will open?", "  12 new MRI scanners by October 2024.  ")
    _thumbs_down(db, "What about beds?", "")  # no correction typed: nothing to test against yet
    record_feedback(db, Answer("What is the A&E target?", "76% [1]", False), score=1)
    rows = read_feedback(db)
    assert [r["correction"] for r in rows] == ["12 new MRI scanners by October 2024.", "", ""]
    qa = tmp_path / "candidates.jsonl"
    qa.write_text("".join(json.dumps(c) + "\n" for c in qa_candidates(rows)), encoding="utf-8")
    [item] = load_qa(qa)
    assert (item.id, item.question, item.reference) == (
        "feedback-1",
        "How many MRI scanners will open?",
        "12 new MRI scanners by October 2024.",
    )
    assert (item.facts, item.sources, item.tags, item.evidence) == (
        ["12"],
        ["riverside-plan"],
        ["feedback"],
        [],
    )


def test_a_feedback_file_from_before_corrections_keeps_its_ratings(tmp_path: Path) -> None:
    db = tmp_path / "feedback.sqlite3"
    with sqlite3.connect(db) as old:  # the schema before the correction column
        old.execute(
            "CREATE TABLE feedback (id INTEGER PRIMARY KEY AUTOINCREMENT, created_at TEXT NOT NULL, "
            "question TEXT NOT NULL, answer TEXT NOT NULL, refused INTEGER NOT NULL, score INTEGER NOT NULL, "
            "citations TEXT NOT NULL, timings TEXT NOT NULL)"
        )
        old.execute(
            "INSERT INTO feedback VALUES (1, '2026-01-01T00:00:00+00:00', 'q', 'a', 0, 0, '[]', '{}')"
        )
    _thumbs_down(db, "How many MRI scanners will open?", "12 new MRI scanners.")
    rows = read_feedback(db)
    assert [(r["question"], r["correction"]) for r in rows] == [
        ("q", ""),
        ("How many MRI scanners will open?", "12 new MRI scanners."),
    ]


def test_feedback_export_prints_or_writes_the_candidates(tmp_path: Path) -> None:
    db = tmp_path / "feedback.sqlite3"
    _thumbs_down(db, "How many MRI scanners will open?", "12 new MRI scanners.")
    env = {**os.environ, "ASSISTANT_FEEDBACK_DB": str(db), "PYTHONPATH": str(ROOT)}
    cli = [sys.executable, "-m", "assistant", "feedback", "export"]
    printed = subprocess.run(cli, capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert printed.returncode == 0 and json.loads(printed.stdout)["reference"] == "12 new MRI scanners."
    out = tmp_path / "qa-candidates.jsonl"
    written = subprocess.run(
        [*cli, "--out", str(out)], capture_output=True, text=True, env=env, cwd=ROOT, timeout=120
    )
    assert written.returncode == 0 and "1 QA candidates from 1 ratings written" in written.stderr
    assert len(load_qa(out)) == 1
    bad = subprocess.run(
        [*cli, "--out", str(tmp_path / "no" / "such" / "dir" / "x.jsonl")],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=120,
    )
    assert bad.returncode == 1 and "pass --out a writable path" in bad.stderr
