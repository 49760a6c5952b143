"""Thumbs up/down on answers, and (when ASSISTANT_QUERY_LOG=1) the query log, in a local SQLite file
(ASSISTANT_FEEDBACK_DB).

record_feedback(Path("feedback.sqlite3"), answer, score=0, correction="It is 76% by March 2024.")
rows = read_feedback(Path("feedback.sqlite3"))
lines = qa_candidates(rows)       # thumbs-down answers as QA JSONL lines an evaluator completes and accepts
log_query(Path("feedback.sqlite3"), answer)   # question, answer, refused, latency, time: nothing on who asked

Many app sessions (and processes) write at once: the file is in WAL mode (readers never block the
writer), each write waits up to BUSY_TIMEOUT_S for the lock, and a write that still finds the file
locked is retried with backoff, so no rating is lost to "database is locked".
"""

from __future__ import annotations

import json
import random
import sqlite3
import time
from collections.abc import Callable
from contextlib import closing
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from assistant.answer import Answer

BUSY_TIMEOUT_S = 30.0
RETRIES = 8
_T = TypeVar("_T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS feedback (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at TEXT NOT NULL,
    question TEXT NOT NULL,
    answer TEXT NOT NULL,
    refused INTEGER NOT NULL,
    score INTEGER NOT NULL,
    citations TEXT NOT NULL,
    timings TEXT NOT NULL,
    correction TEXT NOT NULL DEFAULT ''
)
"""
# The query log holds what was asked and answered, never who asked: no user, session or address field.
_QUERIES = """
CREATE TABLE IF NOT EXISTS queries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at TEXT NOT NULL,
    question TEXT NOT NULL,
    answer TEXT NOT NULL,
    refused INTEGER NOT NULL,
    latency_ms REAL
)
"""
# Files written before corrections were kept get the column on first use; their rows have none.
_MIGRATIONS = ("ALTER TABLE feedback ADD COLUMN correction TEXT NOT NULL DEFAULT ''",)
CANDIDATE_TAG = "feedback"  # the tag of every QA candidate, so an evaluator can find them in a set


def record_feedback(db_path: Path, answer: Answer, score: int, correction: str = "") -> int:
    """Store one rating of `answer` (1 helpful, 0 not), with the user's correction, and return its row id."""
    db_path = _make_parent(db_path)
    row = (
        *_asked(answer),
        int(score),
        json.dumps([asdict(c) for c in answer.citations], ensure_ascii=False),
        json.dumps(answer.timings_ms),
        correction.strip(),
    )

    def insert(db: sqlite3.Connection) -> int:
        # BEGIN IMMEDIATE takes the write lock up front, so the busy timeout applies to it; a deferred
        # transaction that upgrades from reading to writing fails at once instead of waiting.
        db.execute("BEGIN IMMEDIATE")
        try:
            cursor = db.execute(
                "INSERT INTO feedback (created_at, question, answer, refused, score, citations, timings, correction) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                row,
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return int(cursor.lastrowid or 0)

    return _with_retry(db_path, insert)


def read_feedback(db_path: Path) -> list[dict[str, Any]]:
    """Every stored rating, oldest first (empty when nothing was recorded yet)."""
    return _rows(db_path, "feedback")


def log_query(db_path: Path, answer: Answer) -> int:
    """Add `answer` (its question, text, whether it was refused, its latency) to the query log."""
    db_path = _make_parent(db_path)
    row = (*_asked(answer), answer.timings_ms.get("total"))

    def insert(db: sqlite3.Connection) -> int:
        cursor = db.execute(
            "INSERT INTO queries (created_at, question, answer, refused, latency_ms) VALUES (?, ?, ?, ?, ?)",
            row,
        )
        return int(cursor.lastrowid or 0)

    return _with_retry(db_path, insert)


def read_queries(db_path: Path) -> list[dict[str, Any]]:
    """The query log, oldest first (empty when nothing was logged)."""
    return _rows(db_path, "queries")


def set_correction(db_path: Path, row_id: int, correction: str) -> None:
    """Keep the user's correction of the rated answer `row_id` (a thumbs-down is rated before it is typed)."""

    def update(db: sqlite3.Connection) -> None:
        db.execute("UPDATE feedback SET correction = ? WHERE id = ?", (correction.strip(), row_id))

    _with_retry(Path(db_path), update)


def qa_candidates(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The thumbs-down answers with a correction as QA lines (evaluation.load_qa reads them).

    The correction is the reference and its figures the facts; the evidence (a phrase of the document
    that answers) is left for the evaluator to add before accepting the line into a set, so a candidate
    scores fact recall at once and retrieval once completed. Its sources are the ones the rated answer
    cited, for the evaluator to confirm.

    >>> row = {"id": 7, "score": 0, "question": "A&E target?", "correction": "76% within 4 hours",
    ...        "citations": '[{"source": "plan.txt"}]'}
    >>> qa_candidates([row])[0]["facts"], qa_candidates([row])[0]["sources"]
    (['76%', '4 hours'], ['plan'])
    """
    from assistant import figures

    out = []
    for row in rows:
        correction = str(row.get("correction") or "").strip()
        if row["score"] != 0 or not correction:
            continue
        sources = {Path(str(c.get("source", ""))).stem for c in json.loads(row.get("citations") or "[]")}
        out.append(
            {
                "id": f"feedback-{row['id']}",
                "question": row["question"],
                "reference": correction,
                "facts": [f.text for f in figures.read(correction) if f.text],
                "evidence": [],
                "sources": sorted(s for s in sources if s),
                "answerable": True,
                "tags": [CANDIDATE_TAG],
            }
        )
    return out


def _asked(answer: Answer) -> tuple[str, str, str, int]:
    """The columns both tables start with: time, question, answer text, refused."""
    return datetime.now(UTC).isoformat(timespec="seconds"), answer.question, answer.text, int(answer.refused)


def _make_parent(db_path: Path) -> Path:
    db_path = Path(db_path)
    db_path.parent.mkdir(parents=True, exist_ok=True)
    return db_path


def _rows(db_path: Path, table: str) -> list[dict[str, Any]]:
    """Every row of `table` (one of ours: never a user's string), oldest first; none when there is no file."""
    if not Path(db_path).is_file():
        return []

    def select(db: sqlite3.Connection) -> list[dict[str, Any]]:
        db.row_factory = sqlite3.Row
        return [dict(row) for row in db.execute(f"SELECT * FROM {table} ORDER BY id")]  # noqa: S608

    return _with_retry(Path(db_path), select)


def _with_retry(db_path: Path, work: Callable[[sqlite3.Connection], _T]) -> _T:
    """Run `work` on a fresh connection, retrying with backoff while the file is locked or busy."""
    for attempt in range(RETRIES):
        try:
            # isolation_level=None: transactions are ours (BEGIN IMMEDIATE above), not the module's.
            with closing(sqlite3.connect(db_path, timeout=BUSY_TIMEOUT_S, isolation_level=None)) as db:
                db.execute("PRAGMA journal_mode=WAL")
                db.execute(_SCHEMA)
                db.execute(_QUERIES)
                _migrate(db)
                return work(db)
        except sqlite3.OperationalError as err:
            busy = "locked" in str(err) or "busy" in str(err)
            if not busy or attempt + 1 == RETRIES:
                raise
            time.sleep(min(2.0, 0.05 * 2**attempt) * (0.5 + random.random()))
    raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises


def _migrate(db: sqlite3.Connection) -> None:
    """Add the columns a file from an earlier version lacks (nothing it holds is changed)."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(feedback)")}
    if "correction" not in columns:
        db.execute(_MIGRATIONS[0])
