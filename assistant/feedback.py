"""Thumbs up/down on answers, kept in a local SQLite file (ASSISTANT_FEEDBACK_DB).

record_feedback(Path("feedback.sqlite3"), answer, score=1)   # 1 = helpful, 0 = not helpful
rows = read_feedback(Path("feedback.sqlite3"))
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from assistant.answer import Answer

_SCHEMA = """
CREATE TABLE IF NOT EXISTS feedback (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at TEXT NOT NULL,
    question TEXT NOT NULL,
    answer TEXT NOT NULL,
    refused INTEGER NOT NULL,
    score INTEGER NOT NULL,
    citations TEXT NOT NULL,
    timings TEXT NOT NULL
)
"""


def record_feedback(db_path: Path, answer: Answer, score: int) -> int:
    """Store one rating of `answer` (1 helpful, 0 not) and return its row id."""
    db_path = Path(db_path)
    db_path.parent.mkdir(parents=True, exist_ok=True)
    # closing() closes the file; the inner `with db` commits.
    with closing(sqlite3.connect(db_path)) as db, db:
        db.execute(_SCHEMA)
        cursor = db.execute(
            "INSERT INTO feedback (created_at, question, answer, refused, score, citations, timings) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                datetime.now(UTC).isoformat(timespec="seconds"),
                answer.question,
                answer.text,
                int(answer.refused),
                int(score),
                json.dumps([asdict(c) for c in answer.citations], ensure_ascii=False),
                json.dumps(answer.timings_ms),
            ),
        )
        return int(cursor.lastrowid or 0)


def read_feedback(db_path: Path) -> list[dict[str, Any]]:
    """Every stored rating, oldest first (empty when nothing was recorded yet)."""
    if not Path(db_path).is_file():
        return []
    with closing(sqlite3.connect(db_path)) as db:
        db.row_factory = sqlite3.Row
        db.execute(_SCHEMA)
        return [dict(row) for row in db.execute("SELECT * FROM feedback ORDER BY id")]
