"""Loading QA files (every bad line named) and a whole evaluation run writing its report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from assistant.answer import Answer, Citation, Retrieved
from assistant.errors import QAFileError
from assistant.evaluation import QAItem, evaluate, load_qa
from assistant.metrics import METRIC_KEYS, failed

GOOD = {
    "id": "q-1",
    "question": "What's the A&E 4-hour target?",
    "reference": "76% within 4 hours by March 2024.",
    "facts": ["76%", "4 hours"],
    "evidence": ["76% of patients are seen within 4 hours"],
    "sources": ["objectives"],
    "answerable": True,
    "tags": ["uec"],
}
UNANSWERABLE = GOOD | {
    "id": "q-2",
    "question": "What is the 2030 target?",
    "facts": [],
    "evidence": [],
    "sources": [],
    "answerable": False,
    "tags": ["unanswerable"],
}
CHUNK = "No less than 76% of patients are seen within 4 hours by March 2024."


def _write(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "qa.jsonl"
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def test_loads_items_with_optional_pages(tmp_path: Path) -> None:
    path = _write(tmp_path, json.dumps(GOOD), "", json.dumps(UNANSWERABLE | {"pages": [3]}))
    items = load_qa(path)
    assert [i.id for i in items] == ["q-1", "q-2"]
    assert items[0].pages is None and items[1].pages == [3]
    assert items[0] == QAItem(**GOOD)


def test_real_qa_files_load() -> None:
    for path in Path("eval/qa").glob("*.jsonl"):
        assert load_qa(path)


@pytest.mark.parametrize(
    ("second_line", "message"),
    [
        ('{"id": "q-2", "question": ', "qa.jsonl line 2: not valid JSON"),
        (
            json.dumps({k: v for k, v in UNANSWERABLE.items() if k != "facts"}),
            "qa.jsonl line 2: missing field 'facts'",
        ),
        (
            json.dumps(UNANSWERABLE | {"facts": "76%"}),
            "qa.jsonl line 2: field 'facts' must be a list of strings",
        ),
        (
            json.dumps(UNANSWERABLE | {"answerable": "no"}),
            "qa.jsonl line 2: field 'answerable' must be true or false",
        ),
        (json.dumps(UNANSWERABLE | {"page": [1]}), "qa.jsonl line 2: unknown field 'page'"),
        (json.dumps(UNANSWERABLE | {"pages": ["1"]}), "qa.jsonl line 2: field 'pages' must be"),
        ("[1, 2]", "qa.jsonl line 2: expected a JSON object"),
        (json.dumps(GOOD), "qa.jsonl line 2: duplicate id 'q-1' (first on line 1)"),
    ],
)
def test_bad_line_is_named_and_nothing_runs(tmp_path: Path, second_line: str, message: str) -> None:
    path = _write(tmp_path, json.dumps(GOOD), second_line, json.dumps(GOOD | {"id": "q-3"}))
    out_dir = tmp_path / "out"
    asked: list[str] = []
    with pytest.raises(QAFileError) as err:
        evaluate(load_qa(path), lambda q, h: asked.append(q) or Answer(q, "", True), out_dir=out_dir)
    assert str(err.value).startswith(message)
    assert asked == []
    assert not out_dir.exists()


def test_missing_field_message_says_what_every_line_needs(tmp_path: Path) -> None:
    path = _write(tmp_path, json.dumps({k: v for k, v in GOOD.items() if k != "facts"}))
    with pytest.raises(QAFileError, match="every line needs id, question, reference, facts, evidence"):
        load_qa(path)


def test_empty_file(tmp_path: Path) -> None:
    with pytest.raises(QAFileError, match=r"qa.jsonl line 1: the file has no questions"):
        load_qa(_write(tmp_path, "", "  "))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(QAFileError, match="nope.jsonl: file not found"):
        load_qa(tmp_path / "nope.jsonl")


def _ours(question: str, history: list[dict[str, str]] | None = None) -> Answer:
    if "2030" in question:
        return Answer(question, "The planning documents don't cover this.", True, timings_ms={"total": 5.0})
    return Answer(
        question,
        "No less than 76% of patients are seen within 4 hours [1].",
        False,
        [
            Citation(
                1, "objectives.txt", "Objectives", 1, None, "76% of patients are seen within 4 hours", "c1"
            )
        ],
        [Retrieved("c0", "objectives.txt", 1, 0.9, "Beds"), Retrieved("c1", "objectives.txt", 1, 0.8, CHUNK)],
        {"retrieve": 3.0, "total": 12.0},
    )


def _naive(question: str) -> Answer:
    return Answer(
        question,
        "Beds",
        False,
        [Citation(1, "objectives.txt", "Objectives", 1, None, "Beds", "c0")],
        [Retrieved("c0", "objectives.txt", 1, 0.9, "Beds")],
        {"total": 2.0},
    )


def test_run_writes_report_results_and_html(tmp_path: Path) -> None:
    path = _write(tmp_path, json.dumps(GOOD), json.dumps(UNANSWERABLE))
    out_dir = tmp_path / "out"
    seen: list[tuple[int, int]] = []
    report = evaluate(
        load_qa(path),
        _ours,
        baseline=_naive,
        out_dir=out_dir,
        progress=lambda i, n: seen.append((i, n)),
        qa_file=path.name,
    )
    assert set(report) == {"metrics", "baseline", "per_tag", "baseline_per_tag", "n"}
    assert set(report["metrics"]) == set(METRIC_KEYS) == set(report["baseline"])
    assert report["per_tag"]["uec"]["n"] == 1 and report["baseline_per_tag"]["uec"]["answer_accuracy"] == 0.0
    assert report["n"] == 2
    assert seen == [(1, 2), (2, 2)]
    ours, naive = report["metrics"], report["baseline"]
    assert (ours["hit@1"], ours["hit@3"], ours["mrr@10"]) == (0.0, 1.0, 0.5)
    assert (ours["answer_accuracy"], ours["citation_support"], ours["citation_validity"]) == (1.0, 1.0, 1.0)
    assert (ours["refusal_accuracy"], ours["false_refusal_rate"], ours["page_accuracy"]) == (1.0, 0.0, None)
    assert (naive["hit@10"], naive["refusal_accuracy"], naive["fact_recall"]) == (0.0, 0.0, 0.0)
    assert set(report["per_tag"]) == {"uec", "unanswerable"}
    assert report["per_tag"]["uec"]["answer_accuracy"] == 1.0
    assert report["per_tag"]["unanswerable"]["answer_accuracy"] is None

    assert sorted(p.name for p in out_dir.iterdir()) == ["report.html", "report.json", "results.jsonl"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    saved = json.loads((out_dir / "report.json").read_text())
    assert saved["metrics"] == report["metrics"] and saved["run"]["qa_file"] == "qa.jsonl"
    rows = [json.loads(line) for line in (out_dir / "results.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == ["q-1", "q-2"]
    assert rows[0]["retrieved"] == ["c0", "c1"] and rows[0]["metrics"]["rank"] == 2
    assert rows[1]["refused"] is True and rows[1]["baseline"]["refused"] is False
    page = (out_dir / "report.html").read_text()
    assert page.count('src="data:image/png;base64,') + page.count("src='data:image/png;base64,") == 3
    assert "http" not in page  # opens offline: nothing fetched
    assert "<h2>By tag</h2>" in page and "<td>uec</td><td class='num'>1</td>" in page


def test_run_without_baseline_or_out_dir() -> None:
    item = QAItem(**GOOD)
    report = evaluate([item], _ours)
    assert report["baseline"] is None and report["n"] == 1


def test_failing_run_leaves_no_folder(tmp_path: Path) -> None:
    def broken(question: str) -> Answer:
        raise RuntimeError("model crashed")

    with pytest.raises(RuntimeError):
        evaluate([QAItem(**GOOD)], _ours, baseline=broken, out_dir=tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_failing_report_leaves_no_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import assistant.report

    def fail(*args: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(assistant.report, "write_html", fail)
    with pytest.raises(OSError):
        evaluate([QAItem(**GOOD)], _ours, out_dir=tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_conversation_items_pass_their_history_to_the_assistant(tmp_path: Path) -> None:
    turn = [{"role": "user", "content": "What is the A&E 4-hour target?"}]
    path = _write(tmp_path, json.dumps(GOOD | {"question": "and by when?", "history": turn}))
    seen: list[tuple[str, object]] = []

    def ask(question: str, history: list[dict[str, str]] | None) -> Answer:
        seen.append((question, history))
        return _ours(question)

    report = evaluate(load_qa(path), ask, out_dir=tmp_path / "out")
    assert seen == [("and by when?", turn)] and report["n"] == 1
    row = json.loads((tmp_path / "out" / "results.jsonl").read_text().splitlines()[0])
    assert row["history"] == turn


def test_bad_history_is_named(tmp_path: Path) -> None:
    path = _write(tmp_path, json.dumps(GOOD | {"history": [{"role": "bot", "content": "hi"}]}))
    with pytest.raises(QAFileError, match="qa.jsonl line 1: field 'history' must be a list of"):
        load_qa(path)


def test_report_names_its_run_and_shows_each_answer_and_its_verdict(tmp_path: Path) -> None:
    wrong = GOOD | {"id": "q-3", "facts": ["99%"]}  # a figure the answer does not state
    path = _write(tmp_path, json.dumps(GOOD), json.dumps(UNANSWERABLE), json.dumps(wrong))

    def ask(question: str, history: list[dict[str, str]] | None = None) -> Answer:
        answer = _ours(question, history)
        if answer.refused:
            return answer
        labelled = "**Target:** 76% <script>alert(1)</script>\n" + answer.text
        return Answer(question, labelled, False, answer.citations, answer.retrieved[::-1], answer.timings_ms)

    evaluate(load_qa(path), ask, baseline=_naive, out_dir=tmp_path / "out", qa_file=path.name)
    page = (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    assert "3 questions from qa.jsonl, answered by nhs-assistant 0.1.0" in page
    assert "1 of 3 answers wrong." in page
    assert "<b>Target:</b> 76% &lt;script&gt;alert(1)&lt;/script&gt;<br>No less than 76%" in page
    assert [v in page for v in ("<span class='bad'>wrong</span>", "<td>declined</td>", "<td>right</td>")] == [
        True
    ] * 3
    assert "Share of answerable questions whose answer states every expected fact." in page  # the glossary
    assert "alt='answer accuracy by tag, assistant and baseline'" in page
    rows = [json.loads(line) for line in (tmp_path / "out" / "results.jsonl").read_text().splitlines()]
    # The trace keeps the retrieved passages by score, whatever order the answer listed them in.
    assert [p["chunk_id"] for p in rows[0]["passages"]] == ["c0", "c1"]
    assert [failed(r["metrics"]) for r in rows] == [False, False, True]
