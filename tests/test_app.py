"""The Streamlit page, driven by AppTest over a real index of corpus/ (and its upload helper, directly)."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest
from streamlit.testing.v1 import AppTest

from assistant.corpus import add_document

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "app.py"
QUESTION = "What is the A&E 4-hour target?"


def _load_app() -> ModuleType:
    """app.py as a module: importing it defines the page functions without running the page."""
    spec = importlib.util.spec_from_file_location("nhs_app", APP)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def app_module() -> ModuleType:
    return _load_app()


# --- the upload helper: fast, no model ------------------------------------------------------------


def test_save_upload_keeps_only_the_file_name(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    for evil in ("../../etc/evil.txt", "/etc/evil.txt", "..\\..\\evil.txt", "C:\\Windows\\evil.txt"):
        path, _ = add_document(evil, b"some text " + evil.encode(), corpus, max_mb=1)
        assert path.parent == corpus
        assert path.name.startswith("evil")
    assert not (tmp_path / "evil.txt").exists()
    assert sorted(p.name for p in corpus.iterdir()) == ["evil-2.txt", "evil-3.txt", "evil-4.txt", "evil.txt"]


def test_save_upload_never_overwrites_a_different_file(tmp_path: Path) -> None:
    first, note = add_document("plan.md", b"# Plan\nversion one", tmp_path, max_mb=1)
    assert note is None
    second, note = add_document("plan.md", b"# Plan\nversion two", tmp_path, max_mb=1)
    assert second.name == "plan-2.md" and "plan-2.md" in note
    assert first.read_bytes() == b"# Plan\nversion one"
    same, note = add_document("plan.md", b"# Plan\nversion one", tmp_path, max_mb=1)
    assert same == first and "already in the corpus" in note


@pytest.mark.parametrize(
    ("name", "size", "message"),
    [
        ("big.pdf", 1024 * 1024 + 1, "over the 1 MB limit"),
        ("notes.exe", 10, "unsupported file type"),
        ("..", 10, "not allowed"),
        ("", 10, "not allowed"),
    ],
)
def test_save_upload_rejects_with_one_sentence(tmp_path: Path, name: str, size: int, message: str) -> None:
    from assistant.errors import DocumentError

    with pytest.raises(DocumentError, match=message):
        add_document(name, b"x" * size, tmp_path, max_mb=1)
    assert not any(tmp_path.iterdir())


def test_highlight_escapes_html_and_marks_the_quote(app_module: ModuleType) -> None:
    html = app_module.highlight("A&E <b>\nno less than 76% of patients", "no less than 76%")
    assert html == "A&amp;E &lt;b&gt;<br><mark>no less than 76%</mark> of patients"


# --- the page, through AppTest (real model, real index) -------------------------------------------


@pytest.fixture(scope="module")
def app_env(index_env: Callable[[str], dict[str, str]]) -> Iterator[dict[str, str]]:
    """ASSISTANT_* pointing at this module's own copy of the index; the app's cached chain is reset."""
    import streamlit as st

    env = index_env("app")
    with pytest.MonkeyPatch.context() as mp:
        for name, value in env.items():
            mp.setenv(name, value)
        mp.setenv("OMP_NUM_THREADS", "1")
        st.cache_resource.clear()
        yield env
        st.cache_resource.clear()


def _app() -> AppTest:

    return AppTest.from_file(str(APP), default_timeout=120).run()


def _go(at: AppTest, page: str) -> AppTest:
    at.sidebar.radio(key="page").set_value(page).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


@pytest.mark.slow
def test_chat_answers_with_a_cited_source(app_env: dict[str, str]) -> None:
    at = _app()
    assert not at.exception and not at.error
    at.chat_input[0].set_value(QUESTION).run()
    assert not at.exception, [e.value for e in at.exception]
    user, assistant = at.chat_message
    assert user.markdown[0].value == QUESTION
    shown = "\n".join(m.value for m in assistant.markdown)
    assert "76%" in shown
    assert not assistant.warning  # an answer, not a refusal
    sources = at.expander[0]
    assert sources.label.startswith("Sources")
    text = "\n".join(m.value for m in sources.markdown)
    assert "nhs-national-objectives-2023-24" in text
    assert "<mark>" in text and "76% of patients" in text

    # Thumbs up goes to the SQLite file with the question, answer, citations and timings.
    at.feedback[0].set_value(1).run()
    with sqlite3.connect(app_env["ASSISTANT_FEEDBACK_DB"]) as db:
        question, answer, score, citations, timings = db.execute(
            "SELECT question, answer, score, citations, timings FROM feedback"
        ).fetchone()
    assert (question, score) == (QUESTION, 1) and "76%" in answer
    assert json.loads(citations)[0]["source"] == "nhs-national-objectives-2023-24.txt"
    assert "total" in json.loads(timings)

    # A follow-up is answered with the history; a refusal is shown as a warning.
    at.chat_input[0].set_value("What is the recommended dose of amoxicillin for a child?").run()
    assert len(at.chat_message) == 4
    assert at.chat_message[3].warning, "a refused answer is shown with st.warning"

    at.sidebar.button[0].click().run()  # Clear chat
    assert not at.chat_message


@pytest.mark.slow
def test_filters_restrict_the_sources(app_env: dict[str, str]) -> None:
    at = _app()
    at.sidebar.multiselect(key="filter_sources").set_value(["nhs-business-plan-2023-24-breakdown.txt"]).run()
    at.chat_input[0].set_value(QUESTION).run()
    assistant = at.chat_message[1]
    cited = "\n".join(m.value for e in at.expander for m in e.markdown)
    assert "nhs-national-objectives-2023-24.txt" not in cited
    assert assistant.markdown or assistant.warning


@pytest.mark.slow
def test_targets_page_lists_the_register(app_env: dict[str, str]) -> None:
    at = _go(_app(), "Targets")
    table = at.dataframe[0].value
    assert len(table) == 31
    assert list(table.columns) == ["area", "objective", "values", "deadline", "source", "page"]
    assert at.download_button[0].label == "Download CSV"
    at.multiselect(key="targets_areas").set_value(["Mental health"]).run()
    assert set(at.dataframe[0].value["area"]) == {"Mental health"}


@pytest.mark.slow
def test_upload_is_indexed_and_answerable_in_the_same_session(app_env: dict[str, str]) -> None:
    at = _go(_app(), "Documents")
    pdf = (Path(__file__).parent / "fixtures" / "riverside-plan.pdf").read_bytes()
    at.file_uploader[0].set_value(("../riverside plan.pdf", pdf, "application/pdf")).run()
    [add] = [b for b in at.button if b.label == "Add and index"]
    add.click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    assert any("Indexed 3 files" in s.value for s in at.success)
    corpus = Path(app_env["ASSISTANT_CORPUS_DIR"])
    assert (corpus / "riverside plan.pdf").is_file()
    assert any("riverside plan.pdf" in m.value for m in at.markdown)

    _go(at, "Chat")
    at.chat_input[0].set_value("How many MRI scanners will the Riverside diagnostic centre open?").run()
    shown = "\n".join(m.value for m in at.chat_message[-1].markdown)
    assert "12 new MRI scanners by October 2024" in shown and "riverside plan.pdf" in shown
    assert "page 2" in shown.lower() or "p. 2" in shown

    # Removing it deletes the file and re-indexes without it.
    _go(at, "Documents")
    [remove] = [b for b in at.button if b.key == "remove_riverside plan.pdf"]
    remove.click().run()
    assert not (corpus / "riverside plan.pdf").exists()
    assert any("Indexed 2 files" in s.value for s in at.success)


@pytest.mark.slow
def test_evaluation_page_runs_a_small_qa_file(app_env: dict[str, str]) -> None:
    lines = (ROOT / "eval" / "qa" / "objectives.jsonl").read_text(encoding="utf-8").splitlines()[:2]
    at = _go(_app(), "Evaluation")
    at.radio(key="eval_source").set_value("Upload").run()
    qa = "\n".join(lines).encode()
    at.file_uploader(key="eval_upload").set_value(("tiny.jsonl", qa, "application/json")).run()
    [run] = [b for b in at.button if b.label == "Run evaluation"]
    run.click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    metrics, per_question = at.dataframe[0].value, at.dataframe[1].value
    assert list(metrics.columns) == ["assistant", "naive baseline"]
    assert metrics.loc["hit@5", "assistant"] == 1.0
    assert list(per_question["id"]) == [json.loads(line)["id"] for line in lines]


@pytest.mark.slow
@pytest.mark.parametrize("state", ["missing", "older"])
def test_missing_or_older_index_offers_to_build_it(
    state: str, app_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import streamlit as st

    from assistant.chunking import CHUNKER_VERSION

    corpus = tmp_path / "corpus"
    shutil.copytree(Path(app_env["ASSISTANT_CORPUS_DIR"]), corpus)
    if state == "older":  # an index from before an upgrade that changed chunking
        shutil.copytree(Path(app_env["ASSISTANT_INDEX_DIR"]), tmp_path / "index")
        manifest = tmp_path / "index" / "manifest.json"
        data = json.loads(manifest.read_text())
        manifest.write_text(json.dumps(data | {"chunker": CHUNKER_VERSION - 1}))
    monkeypatch.setenv("ASSISTANT_INDEX_DIR", str(tmp_path / "index"))
    monkeypatch.setenv("ASSISTANT_CORPUS_DIR", str(corpus))
    st.cache_resource.clear()
    try:
        at = _app()
        assert not at.exception, [e.value for e in at.exception]
        message = at.error[0].value
        assert ("No index" if state == "missing" else "was built with chunker") in message
        assert "nhs-assistant ingest" in message
        [build] = [b for b in at.button if b.label.startswith("Build the index")]
        build.click().run()
        assert not at.exception and not at.error, [e.value for e in at.error]
        at.chat_input[0].set_value(QUESTION).run()
        assert "76%" in "\n".join(m.value for m in at.chat_message[1].markdown)
    finally:
        st.cache_resource.clear()


@pytest.mark.slow
def test_generative_mode_in_the_app_answers_with_a_checked_citation(
    app_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> None:
    import streamlit as st

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ASSISTANT_LLM", "gguf")
        mp.setenv("ASSISTANT_MODEL_CACHE_DIR", str(tmp_path_factory.mktemp("models")))
        st.cache_resource.clear()
        at = AppTest.from_file(str(APP), default_timeout=300).run()
        at.sidebar.radio(key="mode").set_value("generative").run()
        at.chat_input[0].set_value("What's the ARRS recruitment target?").run()
        assert not at.exception, [e.value for e in at.exception]
        shown = "\n".join(m.value for m in at.chat_message[-1].markdown)
        assert "26,000" in shown
        assert "nhs-national-objectives-2023-24" in "\n".join(m.value for m in at.expander[0].markdown)
    st.cache_resource.clear()
