"""Evaluation over a QA file: load and validate it, ask every question, score, and write a report.

items = load_qa(Path("eval/qa/objectives.jsonl"))
report = evaluate(items, ask, baseline=NaiveBaseline(docs, embedder).ask, out_dir=Path("eval/out"))
print(report["metrics"]["hit@5"])
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from assistant.answer import Answer
from assistant.errors import QAFileError
from assistant.metrics import aggregate, score

REQUIRED = ("id", "question", "reference", "facts", "evidence", "sources", "answerable", "tags")
OPTIONAL = ("pages", "history")
ROLES = ("user", "assistant")
_NEEDS = "every line needs " + ", ".join(REQUIRED)
PASSAGE_CHARS = 600  # of each retrieved passage kept in results.jsonl for the trace


@dataclass(frozen=True)
class QAItem:
    """One question of a QA file, with what a right answer holds and where it is found."""

    id: str
    question: str
    reference: str
    facts: list[str]
    evidence: list[str]
    sources: list[str]
    answerable: bool
    tags: list[str]
    pages: list[int] | None = None
    # earlier turns of a conversation ({"role": "user" | "assistant", "content": ...}); the question is the next
    history: list[dict[str, str]] | None = None


def load_qa(path: Path) -> list[QAItem]:
    """Read a QA JSONL file, validating every line first; raise QAFileError naming the first bad line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise QAFileError(
            f"{path.name}: file not found at {path}; pass the path of a QA .jsonl file."
        ) from None
    except UnicodeDecodeError:
        raise QAFileError(f"{path.name}: not UTF-8 text; save the QA file as UTF-8.") from None
    items: list[QAItem] = []
    first_line: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        item = _parse_line(line, f"{path.name} line {number}")
        if item.id in first_line:
            raise QAFileError(
                f"{path.name} line {number}: duplicate id {item.id!r} (first on line {first_line[item.id]}); "
                "give every question its own id."
            )
        first_line[item.id] = number
        items.append(item)
    if not items:
        raise QAFileError(f"{path.name} line 1: the file has no questions; {_NEEDS}.")
    return items


def evaluate(
    items: list[QAItem],
    ask: Callable[[str, list[dict[str, str]] | None], Answer],
    baseline: Callable[[str], Answer] | None = None,
    out_dir: Path | None = None,
    progress: Callable[[int, int], None] | None = None,
    *,
    qa_file: str | None = None,
) -> dict[str, Any]:
    """Ask every question (with its history) and the baseline's, score them and, given out_dir, write the report.

    The naive baseline sees the question alone, as a plain retrieval recipe would.
    """
    results: list[dict[str, Any]] = []
    ours: list[dict[str, Any]] = []
    theirs: list[dict[str, Any]] = []
    for done, item in enumerate(items, start=1):
        answer = ask(item.question, item.history)
        row: dict[str, Any] = {"id": item.id, "question": item.question, "tags": item.tags}
        if item.history:
            row["history"] = item.history
        row |= {"answerable": item.answerable} | _result(answer, item)
        ours.append(row["metrics"])
        if baseline is not None:
            row["baseline"] = _result(baseline(item.question), item)
            theirs.append(row["baseline"]["metrics"])
        results.append(row)
        if progress is not None:
            progress(done, len(items))
    report: dict[str, Any] = {
        "metrics": aggregate(ours),
        "baseline": aggregate(theirs) if baseline is not None else None,
        "per_tag": _per_tag(ours, items),
        "n": len(items),
    }
    if baseline is not None:
        report["baseline_per_tag"] = _per_tag(theirs, items)
    if out_dir is not None:
        run = {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "qa_file": qa_file,
            "code": code_version(),
        }
        _write_outputs(report | {"run": run}, results, Path(out_dir))
    return report


def _per_tag(scores: list[dict[str, Any]], items: list[QAItem]) -> dict[str, dict[str, Any]]:
    """The metrics of each tag's questions, with how many there are (`n`)."""
    tags = sorted({tag for item in items for tag in item.tags})
    return {
        tag: aggregate(chosen) | {"n": len(chosen)}
        for tag in tags
        if (chosen := [s for s, item in zip(scores, items, strict=True) if tag in item.tags])
    }


def _parse_line(line: str, where: str) -> QAItem:
    try:
        data = json.loads(line)
    except json.JSONDecodeError as err:
        raise QAFileError(f"{where}: not valid JSON ({err.msg} at column {err.colno}); {_NEEDS}.") from None
    if not isinstance(data, dict):
        raise QAFileError(f"{where}: expected a JSON object, got {type(data).__name__}; {_NEEDS}.")
    for name in REQUIRED:
        if name not in data:
            raise QAFileError(f"{where}: missing field {name!r}; {_NEEDS}.")
    unknown = sorted(set(data) - set(REQUIRED) - set(OPTIONAL))
    if unknown:
        # A typo such as "page" would otherwise drop a metric silently.
        raise QAFileError(f"{where}: unknown field {unknown[0]!r}; {_NEEDS}, and may give pages and history.")
    for name in ("id", "question", "reference"):
        if not isinstance(data[name], str) or (name != "reference" and not data[name].strip()):
            raise QAFileError(f"{where}: field {name!r} must be a non-empty string, got {data[name]!r}.")
    for name in ("facts", "evidence", "sources", "tags"):
        if not isinstance(data[name], list) or not all(isinstance(v, str) for v in data[name]):
            raise QAFileError(f"{where}: field {name!r} must be a list of strings, got {data[name]!r}.")
    if not isinstance(data["answerable"], bool):
        raise QAFileError(f"{where}: field 'answerable' must be true or false, got {data['answerable']!r}.")
    pages = data.get("pages")
    if pages is not None and (
        not isinstance(pages, list) or not all(isinstance(p, int) and not isinstance(p, bool) for p in pages)
    ):
        raise QAFileError(f"{where}: field 'pages' must be a list of page numbers, got {pages!r}.")
    history = data.get("history")
    if history is not None and (
        not isinstance(history, list)
        or not all(
            isinstance(t, dict) and t.get("role") in ROLES and isinstance(t.get("content"), str)
            for t in history
        )
    ):
        raise QAFileError(
            f'{where}: field \'history\' must be a list of {{"role": "user" or "assistant", "content": text}}, '
            f"got {history!r}."
        )
    return QAItem(**{name: data[name] for name in REQUIRED}, pages=pages, history=history)


def _result(answer: Answer, item: QAItem) -> dict[str, Any]:
    metrics = score(
        answer, answerable=item.answerable, facts=item.facts, evidence=item.evidence, pages=item.pages
    )
    return {
        "refused": answer.refused,
        "answer": answer.text,
        "retrieved": [r.chunk_id for r in answer.retrieved],
        "citations": [asdict(c) for c in answer.citations],
        "metrics": metrics,
        "timings_ms": answer.timings_ms,
        # What the app's per-question trace shows: the passages by score and the rules that fired.
        "passages": [
            asdict(r) | {"text": r.text[:PASSAGE_CHARS]}
            for r in sorted(answer.retrieved, key=lambda r: -r.score)
        ],
        "trace": answer.trace,
    }


def code_version() -> str:
    """The package version, and the git commit of the checkout it runs from ("+changes" when modified)."""
    from assistant import __version__

    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return __version__
    if commit.returncode != 0:  # an installed package, not a checkout
        return __version__
    return f"{__version__} ({commit.stdout.strip()}{'+changes' if dirty.stdout.strip() else ''})"


def _write_outputs(report: dict[str, Any], results: list[dict[str, Any]], out_dir: Path) -> None:
    """Write report.json, results.jsonl and report.html in a temporary sibling folder, then move them in."""
    from assistant.report import write_html

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-", dir=out_dir.parent))
    staging.chmod(0o755)  # mkdtemp makes it private; the report folder is meant to be shared
    try:
        (staging / "report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        with (staging / "results.jsonl").open("w", encoding="utf-8") as fh:
            for row in results:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        write_html(report, results, staging / "report.html")
        if not out_dir.exists():
            staging.rename(out_dir)
            return
        # An existing folder may hold other files of the user's: replace only our three, each atomically.
        for name in ("report.json", "results.jsonl", "report.html"):
            os.replace(staging / name, out_dir / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
