"""The feedback store: ratings from many writers at once are all kept."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from assistant.answer import Answer, Citation
from assistant.feedback import read_feedback, record_feedback

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
