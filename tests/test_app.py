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
FIXTURES = ROOT / "tests" / "fixtures"
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


@pytest.mark.parametrize(
    ("name", "saved", "note"),
    [
        ("pl\x00an.txt", "plan.txt", "control characters were removed"),
        ("é" * 150 + ".txt", "é" * 118 + ".txt", "shortened to 240 bytes"),
        ("minutes.md", "minutes-2.md", "a different minutes.md exists already"),
        (" .hidden.md ", "hidden.md", None),
    ],
)
def test_upload_names_are_reduced_to_a_safe_name(
    tmp_path: Path, name: str, saved: str, note: str | None
) -> None:
    # issue 12 finding 7: a NUL byte, a name over 255 bytes or a folder's name gave a traceback
    (tmp_path / "minutes.md").mkdir()  # a folder with the name of the upload
    path, message = add_document(name, b"# Minutes\n\nOpen 14 beds.\n", tmp_path, max_mb=1)
    assert path == tmp_path / saved and path.read_bytes().startswith(b"# Minutes")
    assert len(path.name.encode()) <= 255
    assert (note is None and message is None) or (note in message and saved in message)


@pytest.mark.parametrize(
    ("name", "message"), [("CON.txt", "reserved for a device"), ("\x00\x00", "not allowed")]
)
def test_unsafe_upload_names_are_refused_with_one_sentence(tmp_path: Path, name: str, message: str) -> None:
    from assistant.errors import DocumentError

    with pytest.raises(DocumentError, match=message):
        add_document(name, b"text", tmp_path, max_mb=1)
    assert not any(tmp_path.iterdir())


def test_removed_documents_go_to_the_trash_and_come_back(tmp_path: Path) -> None:
    from assistant.corpus import list_trash, remove_document, restore_document

    add_document("plan.md", b"# Plan\nversion one", tmp_path, max_mb=1)
    trashed = remove_document("plan.md", tmp_path)
    assert not (tmp_path / "plan.md").exists() and list_trash(tmp_path) == [trashed]
    add_document("plan.md", b"# Plan\nversion two", tmp_path, max_mb=1)  # the name is taken meanwhile
    path, note = restore_document(trashed.id, tmp_path)
    assert path.name == "plan-2.md" and path.read_bytes() == b"# Plan\nversion one" and "plan-2.md" in note
    assert (tmp_path / "plan.md").read_bytes() == b"# Plan\nversion two"
    assert list_trash(tmp_path) == []


def test_highlight_escapes_html_and_marks_the_quote(app_module: ModuleType) -> None:
    html = app_module.highlight("A&E <b>\nno less than 76% of patients ![x](y)", "no less than 76%")
    assert html == "A&#38;E &#60;b&#62;<br><mark>no less than 76%</mark> of patients &#33;&#91;x&#93;(y)"


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


@pytest.fixture
def own_env(
    app_env: dict[str, str], index_env: Callable[[str], dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, str]]:
    """A fresh copy of the index and corpus for one test that changes them; the cached chain is reset."""
    import streamlit as st

    env = index_env("own")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
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
    assert user.markdown[0].value.replace("\\", "") == QUESTION  # shown literally: "A\&E" reads "A&E"
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

    # Removing it asks first, then moves the file to the trash and re-indexes without it; it can come back.
    _go(at, "Documents")
    [remove] = [b for b in at.button if b.key == "remove_riverside plan.pdf"]
    remove.click().run()
    assert (corpus / "riverside plan.pdf").is_file(), "nothing is removed before the confirmation"
    assert any("can be restored" in w.value for w in at.warning)
    [cancel] = [b for b in at.button if b.key == "confirm_remove_no"]
    cancel.click().run()
    assert (corpus / "riverside plan.pdf").is_file() and not any(
        "can be restored" in w.value for w in at.warning
    )
    [remove] = [b for b in at.button if b.key == "remove_riverside plan.pdf"]
    remove.click().run()
    [yes] = [b for b in at.button if b.key == "confirm_remove_yes"]
    yes.click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert not (corpus / "riverside plan.pdf").exists()
    assert list((corpus / ".trash").glob("*/riverside plan.pdf"))
    assert any("Indexed 2 files" in s.value for s in at.success)
    [restore] = [b for b in at.button if str(b.key).startswith("restore_")]
    restore.click().run()
    assert (corpus / "riverside plan.pdf").is_file() and not list((corpus / ".trash").glob("*/*"))
    assert any("Indexed 3 files" in s.value for s in at.success)


@pytest.mark.slow
def test_a_batch_with_unsafe_names_saves_every_file_it_can(own_env: dict[str, str]) -> None:
    # issue 12 finding 7: one odd name gave a traceback and the rest of the batch was not saved
    corpus = Path(own_env["ASSISTANT_CORPUS_DIR"])
    (corpus / "minutes.md").mkdir()
    text = b"# Ward minutes\n\nThe ward will open 9 extra beds.\n"
    at = _go(_app(), "Documents")
    batch = [
        ("nul\x00name.md", text + b"1", "text/markdown"),
        ("é" * 150 + ".md", text + b"2", "text/markdown"),
        ("minutes.md", text + b"3", "text/markdown"),
        ("CON.md", text + b"4", "text/markdown"),
        ("good.md", text + b"5", "text/markdown"),
    ]
    at.file_uploader[0].set_value(batch).run()
    [add] = [b for b in at.button if b.label == "Add and index"]
    add.click().run()
    assert not at.exception, [e.value for e in at.exception]
    saved = {p.name for p in corpus.iterdir() if p.is_file()}
    assert {"nulname.md", "é" * 118 + ".md", "minutes-2.md", "good.md"} <= saved
    shown = [e.value.replace("\\", "") for e in at.error]  # as the page shows it, escapes taken out
    assert shown == ["CON.md: that name is reserved for a device on Windows; rename the file"]
    notes = " ".join(i.value for i in at.info)
    assert "control characters were removed" in notes and "shortened" in notes and "minutes-2" in notes
    assert any("Indexed 6 files" in s.value for s in at.success)  # the 2 there before and the 4 saved


@pytest.mark.slow
def test_document_text_is_shown_literally_never_as_markdown(own_env: dict[str, str]) -> None:
    # issue 12 finding 5: an image link in a document made every viewer's browser fetch it
    at = _go(_app(), "Documents")
    document = (FIXTURES / "image-link.md").read_bytes()
    at.file_uploader[0].set_value(("image-link.md", document, "text/markdown")).run()
    [add] = [b for b in at.button if b.label == "Add and index"]
    add.click().run()
    _go(at, "Chat")
    for question in [
        "How many community beds will the Riverside ward open?",
        "What is the Riverside budget for helicopters?",
    ]:
        at.chat_input[0].set_value(question).run()
        reply = at.chat_message[-1]
        shown = [m.value for m in reply.markdown] + [w.value for w in reply.warning]
        assert any("example\\.invalid" in text or "example.invalid" in text for text in shown), shown
        for text in shown:
            assert "![" not in text.replace("\\![", "") and "<img" not in text.replace("\\<img", ""), text
            assert "](http" not in text.replace("\\](http", ""), text


@pytest.mark.slow
def test_the_last_document_cannot_be_removed(own_env: dict[str, str]) -> None:
    corpus = Path(own_env["ASSISTANT_CORPUS_DIR"])
    (corpus / "nhs-business-plan-2023-24-breakdown.txt").unlink()
    at = _go(_app(), "Documents")
    [remove] = [b for b in at.button if str(b.key).startswith("remove_")]
    assert remove.disabled and "add another first" in remove.help


@pytest.mark.slow
def test_admin_password_gates_changes_to_the_documents(
    app_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import streamlit as st

    monkeypatch.setenv("ASSISTANT_ADMIN_PASSWORD", "s3cret")
    st.cache_resource.clear()
    try:
        at = _go(_app(), "Documents")
        assert not at.file_uploader and not [b for b in at.button if str(b.key).startswith("remove_")]
        assert not [b for b in at.button if b.label == "Re-index the corpus"]
        at.text_input(key="admin_password").set_value("wrong").run()
        assert [e.value for e in at.error] == ["That is not the admin password."]
        assert not [b for b in at.button if str(b.key).startswith("remove_")]
        at.text_input(key="admin_password").set_value("s3cret").run()
        assert at.file_uploader and [b for b in at.button if str(b.key).startswith("remove_")]
        assert [b for b in at.button if b.label == "Re-index the corpus"]
    finally:
        st.cache_resource.clear()


@pytest.mark.slow
def test_an_api_admin_key_gates_changes_to_the_documents(
    app_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import streamlit as st

    from assistant.keys import new_key

    admin, admin_line = new_key("admin")
    reader, reader_line = new_key("reader")
    monkeypatch.setenv("ASSISTANT_API_KEYS", f"{admin_line},{reader_line}")
    st.cache_resource.clear()
    try:
        at = _go(_app(), "Documents")
        assert not at.file_uploader and not [b for b in at.button if str(b.key).startswith("remove_")]
        at.text_input(key="admin_password").set_value(reader).run()
        assert [e.value for e in at.error] == ["That is not an API admin key."]
        at.text_input(key="admin_password").set_value(admin).run()
        assert at.file_uploader and [b for b in at.button if str(b.key).startswith("remove_")]
    finally:
        st.cache_resource.clear()


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
