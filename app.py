"""Streamlit page for the NHS planning assistant: widgets and session state over `assistant/`.

    streamlit run app.py          # or `make run`

Every answer, ingest and score comes from the library; this file only lays it out. Text from documents
and file names is shown literally (assistant.literal), never rendered as Markdown or HTML.
`streamlit run` first imports this file as a module, only to find `app` (an st.App, at the end), whose
start loads the library, the model and the index in a background thread while the server comes up, so
the first visitor finds them ready; each page view then runs this file as the page (`__main__`).
"""

from __future__ import annotations

import json
import tempfile
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import streamlit as st

from assistant import literal

# Only the page imports the library here. Imported as a module (by `streamlit run`, to find `app`),
# the file leaves it to the warm-up thread, so the server answers ~1 s sooner; by the time a page view
# runs these lines the modules are loaded.
if __name__ == "__main__":
    from assistant.answer import Answer
    from assistant.chain import Chain
    from assistant.config import Settings
    from assistant.corpus import add_document, list_trash, remove_document, restore_document
    from assistant.errors import AssistantError, IndexMismatchError, IndexMissingError
    from assistant.evaluation import evaluate, load_qa
    from assistant.feedback import log_query, qa_candidates, read_feedback, record_feedback, set_correction
    from assistant.keys import load_keys, role_of
    from assistant.loaders import SUPPORTED
    from assistant.metrics import GLOSSARY, describe, failed
    from assistant.register import KINDS, filter_rows, register_rows
    from assistant.report import answer_html, plots
    from assistant.sourceview import locate
    from assistant.store import Index, IngestReport

HERE = Path(__file__).resolve().parent
QA_DIR = HERE / "eval" / "qa"


# --- helpers that the tests call directly ---------------------------------------------------------


def highlight(text: str, *quotes: str) -> str:
    """HTML of `text` (escaped) with the first occurrence of each quote wrapped in <mark>."""
    body = literal.html(text)
    spans: list[tuple[int, int]] = []
    for quote in quotes:
        q = literal.html(quote) if quote else ""
        if q and (at := body.find(q)) >= 0:
            spans.append((at, at + len(q)))
    merged: list[list[int]] = []  # quotes that overlap or touch are one mark
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    parts, last = [], 0
    for start, end in merged:
        parts += [body[last:start], "<mark>", body[start:end], "</mark>"]
        last = end
    parts.append(body[last:])
    # No blank lines, so the markdown renderer keeps this one raw HTML block.
    return "".join(parts).replace("\n", "<br>")


def by_passage(citations: list[Any]) -> list[list[Any]]:
    """Citations grouped by the passage they quote, in order of first citation: a passage is listed once."""
    groups: dict[str, list[Any]] = {}
    for citation in citations:
        groups.setdefault(citation.chunk_id, []).append(citation)
    return list(groups.values())


# --- cached resources -----------------------------------------------------------------------------


def get_chain() -> Chain:
    """The process's chain for the settings in the environment: the one warmed at start (see warm)."""
    from assistant.chain import get_chain as shared_chain
    from assistant.config import Settings

    return shared_chain(Settings.from_env())


def load_index(chain: Chain) -> Index:
    """The chain's index; a visitor who arrives while it still loads sees why they wait."""
    with st.spinner("Loading the index and the embedding model (once, when the app starts)…"):
        return chain.index


def warm() -> None:
    """Load the model and index now, and embed one query, so the first question waits for nothing."""
    from assistant.errors import AssistantError

    started = time.perf_counter()
    try:
        index = get_chain().index
        index.embed_query("warm-up")
    except AssistantError as err:  # no index yet, or bad settings: the page says so to the first visitor
        print(f"Not warmed: {err}", flush=True)
        return
    print(
        f"Warm: index of {len(index.chunks)} chunks and model loaded in {time.perf_counter() - started:.1f} s",
        flush=True,
    )


@asynccontextmanager
async def warm_at_start(_app: Any) -> AsyncIterator[None]:
    """st.App lifespan: start warming in the background; the server answers meanwhile."""
    threading.Thread(target=warm, name="warm", daemon=True).start()
    yield


@st.cache_resource(show_spinner="Building the naive baseline…")
def get_baseline(_chain: Chain, built_at: str) -> Any:
    """The naive LangChain baseline over the corpus, rebuilt when the index changes (`built_at`)."""
    from assistant.baseline import NaiveBaseline
    from assistant.loaders import load_corpus

    docs, _ = load_corpus([_chain.settings.corpus_dir])
    return NaiveBaseline(docs, _chain.index.embeddings)


def run_ingest(chain: Chain, remove: tuple[str, ...] = ()) -> None:
    """Index settings.corpus_dir inside st.status, remember the report, and make the chain reload.

    Adds and updates; documents named in `remove` (just moved to the trash) leave the index.
    """
    with st.status(f"Indexing {chain.settings.corpus_dir}…", expanded=True) as status:
        bar = st.progress(0.0)

        def progress(message: str, n: int, total: int) -> None:
            bar.progress(min(n / total, 1.0) if total else 1.0, text=f"{message} ({n}/{total})")

        try:
            report = chain.reindex(
                remove, progress, on_wait=lambda message: st.info(literal.markdown(message))
            )
        except AssistantError as err:
            status.update(label="Indexing failed", state="error")
            st.session_state.ingest = {"error": str(err)}
            return
        status.update(label=_ingest_summary(report), state="complete")
    st.session_state.ingest = {
        "summary": _ingest_summary(report),
        "skipped": [str(s) for s in report.skipped],
    }


def _ingest_summary(report: IngestReport) -> str:
    return (
        f"Indexed {report.files} files, {report.chunks} chunks ({report.embedded} newly embedded) "
        f"in {report.seconds:.1f} s."
    )


def notify(kind: str, text: str) -> None:
    """Keep a message (kind: error, warning or info) to show at the top of the page after the rerun."""
    st.session_state.setdefault("notices", []).append((kind, text))


def show_ingest_result() -> None:
    """Messages and the outcome of the last ingest of this session (kept across the rerun after them)."""
    for kind, text in st.session_state.pop("notices", []):
        getattr(st, kind)(literal.markdown(text))
    result = st.session_state.pop("ingest", None)
    if not result:
        return
    if "error" in result:
        st.error(literal.markdown(result["error"]))
        return
    st.success(result["summary"])
    for skipped in result["skipped"]:
        st.warning(literal.markdown(f"Skipped {skipped}"))


def admitted(settings: Settings) -> bool:
    """Whether this session may change the documents: always, unless ASSISTANT_ADMIN_PASSWORD or an API
    admin key (ASSISTANT_API_KEYS) is set; then the password or an admin key unlocks them."""
    try:
        admin_keys = [k for k in load_keys(settings) if k.role == "admin"]
    except AssistantError as err:  # keys set but unreadable: stay locked and say why
        st.error(literal.markdown(str(err)))
        return False
    if not settings.admin_password and not admin_keys:
        return True
    what = "the admin password" if not admin_keys else "an API admin key"
    if settings.admin_password and admin_keys:
        what = "the admin password or an API admin key"
    given = st.text_input(what[0].upper() + what[1:], type="password", key="admin_password")
    if (settings.admin_password and settings.admits(given)) or (given and role_of(given, admin_keys)):
        return True
    if given:
        st.error(f"That is not {what}.")
    else:
        st.caption(f"Adding, removing and re-indexing documents need {what}.")
    return False


def require_index(chain: Chain) -> Index:
    """The loaded index, or an error with an ingest button (and stop) when there is none."""
    try:
        return load_index(chain)
    except (IndexMissingError, IndexMismatchError) as err:  # none yet, or one an upgrade must rebuild
        st.error(literal.markdown(str(err)))
        show_ingest_result()
        label = f"Build the index from {chain.settings.corpus_dir}"
        if admitted(chain.settings) and st.button(literal.markdown(label), type="primary"):
            run_ingest(chain)
            st.rerun()
    except AssistantError as err:
        st.error(literal.markdown(str(err)))
    st.stop()
    raise AssertionError("unreachable")  # st.stop() raises


# --- sidebar --------------------------------------------------------------------------------------


def sidebar(chain: Chain, index: Index | None, page: str) -> None:
    """Filters (on the chat page), k, mode, index status and the clear-chat button; choices go to st.session_state."""
    with st.sidebar:
        st.header("Search options")
        if index is not None and page == "Chat":
            files = sorted(index.manifest.get("files", {}))
            areas = sorted({str(t["area"]) for t in index.targets if t.get("area")})
            st.multiselect("Documents", files, key="filter_sources", placeholder="All documents")
            st.multiselect("Areas", areas, key="filter_areas", placeholder="All areas")
        st.slider("Passages to retrieve (k)", 1, 20, value=chain.settings.k, key="k")
        if chain.settings.llm != "none":
            st.radio("Mode", ["extractive", "generative"], key="mode", horizontal=True)
        if st.button("Clear chat", icon=":material/delete:"):
            st.session_state.messages = []
            for key in [k for k in st.session_state if str(k).startswith("feedback_")]:
                del st.session_state[key]
        st.divider()
        st.subheader("Index")
        if index is None:
            st.caption("No index loaded.")
        else:
            manifest = index.manifest
            st.caption(
                f"{len(manifest.get('files', {}))} documents · "
                f"{manifest.get('count', len(index.chunks))} chunks  \n"
                f"Built {manifest.get('built_at', '?')}  \n"
                f"Model {manifest.get('embedding_model', '?')}"
            )


def current_filters() -> dict[str, list[str]] | None:
    state = st.session_state
    filters = {"source": state.get("filter_sources", []), "area": state.get("filter_areas", [])}
    return {k: v for k, v in filters.items() if v} or None


# --- chat -----------------------------------------------------------------------------------------


def chat_page() -> None:
    chain = get_chain()
    require_index(chain)
    st.title("Ask the NHS planning documents")
    st.caption("Answers quote the documents and cite them; anything the documents don't cover is refused.")
    messages: list[dict[str, Any]] = st.session_state.setdefault("messages", [])
    for i, message in enumerate(messages):
        with st.chat_message(message["role"]):
            show_message(message, i, latest=i == len(messages) - 1)
    question = st.chat_input("Ask about targets, objectives or plans…")
    if not question:
        return
    history = [{"role": m["role"], "content": m["content"]} for m in messages if not m.get("error")]
    messages.append({"role": "user", "content": question})
    with st.chat_message("user"):
        st.markdown(_md(question))
    with st.chat_message("assistant"):
        mode = st.session_state.get("mode", "extractive")
        box = st.empty()  # what the assistant is doing: searching, then (generative mode) writing
        draft = st.empty()  # generative mode: the model's tokens as they come, replaced by the checked answer
        streamed: list[str] = []

        def on_token(token: str) -> None:
            if not streamed:  # the search is over; the model writes for the next 30-60 s
                status.update(label="Writing the answer…")
            streamed.append(token)
            draft.markdown(_answer_md("".join(streamed)) + " ▌")

        try:
            # A status box (its label can change) when a model writes; a spinner for the quick quotes.
            with (
                box.status("Searching the documents…")
                if mode == "generative"
                else st.spinner("Searching the documents…") as status
            ):
                answer = chain.ask(
                    question,
                    history=history or None,
                    filters=current_filters(),
                    mode=mode,
                    k=st.session_state.get("k"),
                    on_token=on_token if mode == "generative" else None,
                )
            box.empty()
            draft.empty()
        except AssistantError as err:
            message = {"role": "assistant", "content": str(err), "error": True}
        else:
            message = {"role": "assistant", "content": answer.text, "answer": answer}
            if chain.settings.query_log:
                try:
                    log_query(chain.settings.feedback_db, answer)
                except Exception as err:  # noqa: BLE001 - the log must never cost the user the answer
                    st.toast(_md(f"Could not log the query: {err}"))
        messages.append(message)
        show_message(message, len(messages) - 1, latest=True)


def show_message(message: dict[str, Any], i: int, latest: bool) -> None:
    if message["role"] == "user":
        st.markdown(_md(message["content"]))
        return
    if message.get("error"):
        st.error(_md(message["content"]))
        return
    answer: Answer = message["answer"]
    if answer.refused:
        st.warning(_answer_md(answer.text), icon=":material/block:")
    else:
        st.markdown(_answer_md(answer.text))
    if answer.trace.get("understood"):  # a follow-up, read with the question before it
        st.caption(f"Read as: {_md(answer.trace['understood'])}")
    for notice in answer.trace.get("notices", []):
        st.caption(_md(notice))
    if answer.citations:
        show_sources(answer, expanded=latest, i=i)
    timings = " · ".join(f"{k} {v:.0f} ms" for k, v in answer.timings_ms.items())
    left, right = st.columns([1, 3], vertical_alignment="center")
    with left:
        st.feedback("thumbs", key=f"feedback_{i}", on_change=_record_feedback, args=(i,))
    with right:
        st.caption(timings)
    row_id = st.session_state.get(f"feedback_row_{i}")
    if st.session_state.get(f"feedback_{i}") == 0 and row_id is not None:
        with st.form(key=f"correction_form_{i}", border=False):
            correction = st.text_area(
                "What should the answer have said? (it becomes a test question on the Feedback page)",
                key=f"correction_{i}",
            )
            if st.form_submit_button("Save correction"):
                try:
                    set_correction(get_chain().settings.feedback_db, row_id, correction)
                except Exception as err:  # noqa: BLE001 - a lost correction must never break the chat
                    st.error(_md(f"Could not save the correction: {err}"))
                else:
                    st.success("Correction saved; the Feedback page exports it as a QA candidate.")


def show_sources(answer: Answer, expanded: bool, i: int) -> None:
    texts = {r.chunk_id: r.text for r in answer.retrieved}
    # One entry per cited passage, its quotes all marked: "[1, 3]" when two citations quote it.
    passages = by_passage(answer.citations)
    with st.expander(f"Sources ({len(passages)})", expanded=expanded, icon=":material/menu_book:"):
        for group in passages:
            citation = group[0]
            where = [literal.code(citation.source)]
            if citation.page is not None:
                where.append(f"page {citation.page}")
            if citation.area or citation.section:
                where.append(_md(str(citation.area or citation.section)))
            numbers = ", ".join(str(c.n) for c in group)
            st.markdown(f"**[{numbers}] {_md(citation.title)}** · " + " · ".join(where))
            text = texts.get(citation.chunk_id, citation.quote)
            st.markdown(
                f'<div class="source-text" style="border-left: 3px solid #005EB8; padding: 0.25rem 0.75rem; '
                f'font-size: 0.9rem;">{highlight(text, *(c.quote for c in group))}</div>',
                unsafe_allow_html=True,
            )
            label = f"Open page {citation.page}" if citation.page is not None else "Open in the document"
            toggle_view(label, (citation.chunk_id, citation.quote), key=f"view_{i}_{citation.n}")


def toggle_view(label: str, target: tuple[str, str], key: str) -> None:
    """A button that opens (or closes) the source viewer on `target` (chunk id, quote) just below it."""
    if st.button(label, key=key, icon=":material/find_in_page:"):
        st.session_state.view = None if st.session_state.get("view") == (key, target) else (key, target)
    if st.session_state.get("view") == (key, target):
        show_source_view(*target)


def show_source_view(chunk_id: str, quote: str) -> None:
    """The cited page drawn with the quote's lines marked (PDF), or the passage in its document, and a download."""
    chain = get_chain()
    try:
        view = locate(chain.index, chain.settings, chunk_id, quote)
    except AssistantError as err:
        st.error(literal.markdown(str(err)))
        return
    with st.container(border=True, key=f"source_view_{chunk_id}"):
        if view.note:
            st.info(literal.markdown(view.note))
        if view.image is not None:
            marked = {
                "quote": "the quote is marked",
                "part of the quote": "part of the quote is marked",
            }.get(view.image.matched, "the quote could not be placed on the page")
            st.image(
                view.image.png,
                caption=literal.markdown(f"{view.title}, page {view.page}: {marked}"),
                width="stretch",
            )
        else:
            before, mark, after = view.context
            st.markdown(
                f'<div class="source-context" style="font-size: 0.9rem;">{literal.html(before)}'
                f"<mark>{literal.html(mark)}</mark>{literal.html(after)}</div>".replace("\n", "<br>"),
                unsafe_allow_html=True,
            )
        if view.path is not None:
            st.download_button(
                f"Download {view.path.name}",
                view.path.read_bytes(),
                file_name=view.path.name,
                key=f"download_{chunk_id}",
                icon=":material/download:",
            )


def _record_feedback(i: int) -> None:
    score = st.session_state.get(f"feedback_{i}")
    message = st.session_state.messages[i]
    if score is None or "answer" not in message:
        return
    try:
        row_id = record_feedback(get_chain().settings.feedback_db, message["answer"], score)
    except Exception as err:  # noqa: BLE001 - a lost rating must never break the chat
        st.toast(_md(f"Could not save feedback: {err}"))
    else:
        st.session_state[f"feedback_row_{i}"] = row_id
        st.toast("Thanks, feedback saved.")


def _md(text: str) -> str:
    """Text shown literally through Markdown, each line staying a line."""
    return literal.markdown(text).replace("\n", "  \n")


def _answer_md(text: str) -> str:
    """An answer's text through Markdown: literal but for our own labels and list items."""
    return literal.answer(text).replace("\n", "  \n")


# --- documents ------------------------------------------------------------------------------------


def documents_page() -> None:
    chain = get_chain()
    settings = chain.settings
    st.title("Documents")
    show_ingest_result()
    allowed = admitted(settings)
    if allowed:
        upload_documents(chain)
    st.subheader(f"In the corpus ({settings.corpus_dir})")
    try:
        indexed = load_index(chain).manifest.get("files", {})
    except AssistantError as err:
        st.info(literal.markdown(str(err)))
        indexed = {}
    corpus = settings.corpus_dir
    files = sorted(corpus.iterdir()) if corpus.is_dir() else []
    files = [p for p in files if (p.is_file() or p.is_symlink()) and not p.name.startswith(".")]
    if not files:
        st.caption("No documents yet.")
    for path in files:
        meta = indexed.get(path.name)
        status = f"{meta.get('chunks', '?')} chunks" if meta else "not indexed"
        name_col, info_col, button_col = st.columns([5, 2, 1.5], vertical_alignment="center")
        name_col.markdown(literal.code(path.name))
        info_col.caption(f"{path.lstat().st_size / 1024:.0f} KB · {status}")
        last = len(files) == 1  # an index cannot be empty: the last document would stay searchable
        if allowed and button_col.button(
            "Remove",
            key=f"remove_{path.name}",
            icon=":material/delete:",
            disabled=last,
            help="The last document cannot be removed; add another first." if last else None,
        ):
            st.session_state.confirm_remove = path.name
        if allowed and st.session_state.get("confirm_remove") == path.name:
            confirm_removal(chain, path.name)
    if allowed and files and st.button("Re-index the corpus"):
        run_ingest(chain)
        st.rerun()
    show_trash(chain, allowed)


def upload_documents(chain: Chain) -> None:
    """The uploader: each file saved under a safe name or refused with one sentence; then one ingest."""
    settings = chain.settings
    # No `type=` filter: Streamlit then raises on an odd name (a NUL byte) before this page can say which
    # file it was, and the batch is lost; add_document refuses other types with one sentence instead.
    uploads = st.file_uploader(
        f"Add documents ({', '.join(SUPPORTED)}; up to {settings.max_upload_mb} MB each)",
        accept_multiple_files=True,
        key=f"uploader_{st.session_state.get('uploader_round', 0)}",
    )
    if not (uploads and st.button("Add and index", type="primary")):
        return
    saved = 0
    for upload in uploads:
        try:
            # The size is checked before the bytes are read.
            _, note = add_document(
                upload.name, upload.getvalue, settings.corpus_dir, settings.max_upload_mb, size=upload.size
            )
        except AssistantError as err:  # one refused file; the rest of the batch is still saved
            notify("error", str(err))
            continue
        saved += 1
        if note:
            notify("info", note)
    if saved:
        run_ingest(chain)
        st.session_state.uploader_round = st.session_state.get("uploader_round", 0) + 1
    st.rerun()


def confirm_removal(chain: Chain, name: str) -> None:
    """Ask before removing: the file goes to the trash, where it can be restored."""
    st.warning(
        f"Remove {literal.code(name)}? It moves to the trash below, from where it can be restored, "
        "and leaves the index."
    )
    yes, no, _ = st.columns([1.5, 1, 5])
    if yes.button("Yes, remove", key="confirm_remove_yes", type="primary"):
        del st.session_state.confirm_remove
        try:
            remove_document(name, chain.settings.corpus_dir)
        except AssistantError as err:
            notify("error", str(err))
        else:
            notify("info", f"{name} was moved to the trash.")
            run_ingest(chain, remove=(name,))
        st.rerun()
    if no.button("Cancel", key="confirm_remove_no"):
        del st.session_state.confirm_remove
        st.rerun()


def show_trash(chain: Chain, allowed: bool) -> None:
    """Removed documents, newest first, each with a Restore button."""
    trash = list_trash(chain.settings.corpus_dir)
    if not trash:
        return
    st.subheader("Trash")
    st.caption("Removed documents stay here until restored; a restored document is indexed again.")
    for item in trash:
        name_col, info_col, button_col = st.columns([5, 2, 1.5], vertical_alignment="center")
        name_col.markdown(literal.code(item.name))
        info_col.caption(f"{item.size / 1024:.0f} KB · removed {item.removed_at[:16].replace('T', ' ')}")
        if allowed and button_col.button("Restore", key=f"restore_{item.id}", icon=":material/restore:"):
            try:
                path, note = restore_document(item.id, chain.settings.corpus_dir)
            except AssistantError as err:
                notify("error", str(err))
            else:
                notify("info", note or f"{path.name} was restored.")
                run_ingest(chain)
            st.rerun()


# --- targets --------------------------------------------------------------------------------------


def targets_page() -> None:
    import pandas as pd

    index = require_index(get_chain())
    st.title("Targets register")
    st.caption(
        "Objectives from the documents' tables, and priorities (with their £, beds and other figures) "
        "from the business plan."
    )
    rows = register_rows(index.register)
    search, kind_col, area_col, due_col = st.columns([3, 2, 3, 2])
    text = search.text_input("Search", key="targets_text", placeholder="e.g. beds, cancer, 76%")
    kinds = kind_col.multiselect("Kind", KINDS, placeholder="Both kinds", key="targets_kinds")
    areas = area_col.multiselect(
        "Area", sorted({r["area"] for r in rows if r["area"]}), placeholder="All areas", key="targets_areas"
    )
    before = due_col.date_input("Due by", value=None, key="targets_before", format="DD/MM/YYYY")
    shown = filter_rows(rows, areas=areas, before=before, text=text, kinds=kinds)
    st.caption(f"{len(shown)} of {len(rows)} rows; click a column header to sort.")
    columns = ["objective", "figures", "deadline", "area", "kind", "source", "page"]
    table = pd.DataFrame(shown, columns=columns)
    st.dataframe(
        table,
        hide_index=True,
        width="stretch",
        column_config={
            "objective": st.column_config.TextColumn("objective", width="large"),
            "area": st.column_config.TextColumn("area", width="medium"),
            "page": st.column_config.NumberColumn("page", format="%d"),
        },
    )
    st.download_button(
        "Download CSV",
        table.to_csv(index=False).encode("utf-8"),
        file_name="nhs-targets.csv",
        mime="text/csv",
        icon=":material/download:",
    )
    if not shown:
        return
    st.subheader("See a row in its document")
    chosen = st.selectbox(
        "Row",
        range(len(shown)),
        format_func=lambda n: _clip(f"{shown[n]['area']} · {shown[n]['objective']}", 140),
        key="targets_row",
    )
    if chosen is not None:
        row = shown[chosen]
        quote = row["objective"] if row["objective"] in _chunk_text(index, row["chunk_id"]) else ""
        toggle_view("Show its quote", (row["chunk_id"], quote), key=f"target_view_{row['chunk_id']}")


def _chunk_text(index: Index, chunk_id: str) -> str:
    chunk = index.by_id.get(chunk_id)
    return str(chunk.page_content) if chunk is not None else ""


def _clip(text: str, chars: int) -> str:
    return text if len(text) <= chars else text[: chars - 1] + "…"


# --- evaluation -----------------------------------------------------------------------------------


def evaluation_page() -> None:
    import pandas as pd

    chain = get_chain()
    index = require_index(chain)
    st.title("Evaluation")
    bundled = sorted(QA_DIR.glob("*.jsonl"))
    source = st.radio("QA file", ["Bundled", "Upload"], horizontal=True, key="eval_source")
    uploaded = None
    path: Path | None = None
    if source == "Bundled":
        if bundled:
            path = st.selectbox("Bundled QA file", bundled, format_func=lambda p: p.name, key="eval_file")
        else:
            st.info(f"No QA files in {QA_DIR}.")
    else:
        uploaded = st.file_uploader("QA file (.jsonl)", type=["jsonl"], key="eval_upload")
    compare = st.checkbox("Compare with the naive LangChain baseline", value=True, key="eval_baseline")
    if not st.button("Run evaluation", type="primary", disabled=path is None and uploaded is None):
        show_evaluation(st.session_state.get("eval_result"), pd)
        return
    with tempfile.TemporaryDirectory() as tmp:
        if uploaded is not None:
            path = Path(tmp) / Path(uploaded.name).name
            path.write_bytes(uploaded.getvalue())
        assert path is not None
        try:
            items = load_qa(path)
            baseline = get_baseline(chain, str(index.manifest.get("built_at"))).ask if compare else None
            bar = st.progress(0.0, text=f"0/{len(items)} questions")

            def progress(n: int, total: int) -> None:
                bar.progress(n / total, text=f"{n}/{total} questions")

            k = st.session_state.get("k")
            out = Path(tmp) / "out"
            report = evaluate(
                items,
                ask=lambda q, history: chain.ask(q, history, k=k),
                baseline=baseline,
                out_dir=out,
                progress=progress,
                qa_file=path.name,
            )
        except AssistantError as err:
            st.error(str(err))
            return
        lines = (out / "results.jsonl").read_text(encoding="utf-8").splitlines()
        results = [json.loads(line) for line in lines]
        html_report = (out / "report.html").read_bytes() if (out / "report.html").exists() else None
    st.session_state.eval_result = {
        "report": report,
        "results": results,
        "html": html_report,
        "file": path.name,
    }
    show_evaluation(st.session_state.eval_result, pd)


def show_evaluation(result: dict[str, Any] | None, pd: Any) -> None:
    if not result:
        return
    report, results = result["report"], result["results"]
    wrong = [row for row in results if failed(row["metrics"])]
    st.subheader(f"{result['file']}: {report['n']} questions, {len(wrong)} answered wrongly")
    metrics = {"assistant": report["metrics"]}
    if report.get("baseline"):
        metrics["naive baseline"] = report["baseline"]
    table = pd.DataFrame(metrics)
    table["meaning"] = [describe(key) for key in table.index]
    st.dataframe(
        table, width="stretch", column_config={"meaning": st.column_config.TextColumn(width="large")}
    )
    with st.expander("What the metrics mean", icon=":material/help:"):
        st.markdown("\n".join(f"- **{key}**: {text}" for key, text in GLOSSARY.items()))
    st.subheader("Plots")
    for column, (alt, png) in zip(st.columns(3), plots(report, results), strict=False):
        column.image(png, caption=alt, width="stretch")
    if report.get("per_tag"):
        with st.expander("By tag"):
            st.dataframe(pd.DataFrame(report["per_tag"]).T, width="stretch")
    if result.get("html"):
        st.download_button("Download HTML report", result["html"], file_name="report.html", mime="text/html")
    st.subheader("Per question")
    only_failures = st.toggle(f"Failures only ({len(wrong)})", key="eval_failures_only")
    for row in wrong if only_failures else results:
        show_result(row)


def show_result(row: dict[str, Any]) -> None:
    """One question of a run: its answer rendered, the verdict, and the trace (passages, rules that fired)."""
    verdict = "wrong" if failed(row["metrics"]) else "declined" if row["refused"] else "right"
    icon = {"wrong": ":material/close:", "declined": ":material/block:", "right": ":material/check:"}[verdict]
    with st.expander(_clip(f"{row['id']} · {verdict} · {row['question']}", 160), icon=icon):
        st.markdown(f"**Question:** {_md(row['question'])}")
        st.markdown(answer_html(row["answer"]), unsafe_allow_html=True)
        m = row["metrics"]
        st.caption(
            " · ".join(
                f"{key} {value:.2f}" if isinstance(value, float) else f"{key} {value}"
                for key, value in m.items()
                if value is not None
            )
        )
        trace = row.get("trace") or {}
        if trace.get("rules"):
            st.markdown("**Rules that fired:** " + ", ".join(literal.code(str(r)) for r in trace["rules"]))
        if trace.get("ruled_out"):
            ruled = ", ".join(f"{literal.code(str(k))} ({v})" for k, v in trace["ruled_out"].items())
            st.markdown(f"**Passages ruled out by:** {ruled}")
        for n, passage in enumerate(row.get("passages") or [], start=1):
            where = f"{passage.get('source')}" + (f", page {passage['page']}" if passage.get("page") else "")
            st.markdown(f"{n}. {literal.code(where)} · score {passage.get('score', 0):.3f}")
            st.caption(_md(passage.get("text", "")))


# --- feedback -------------------------------------------------------------------------------------


def feedback_page() -> None:
    import pandas as pd

    settings = get_chain().settings
    st.title("Feedback")
    try:
        rows = read_feedback(settings.feedback_db)
    except Exception as err:  # noqa: BLE001 - an unreadable file is reported, never replaced
        st.error(_md(f"Could not read {settings.feedback_db}: {err}"))
        return
    if not rows:
        st.info("No rated answers yet: rate one with the thumbs under it on the Chat page.")
        return
    down = sum(1 for r in rows if r["score"] == 0)
    st.caption(
        f"{len(rows)} rated {'answer' if len(rows) == 1 else 'answers'} ({down} not helpful) in {settings.feedback_db}."
    )
    table = pd.DataFrame(
        [
            {
                "rated": r["created_at"].replace("T", " ")[:16],
                "helpful": "yes" if r["score"] else "no",
                "question": r["question"],
                "answer": r["answer"],
                "correction": r.get("correction") or "",
            }
            for r in reversed(rows)
        ]
    )
    st.dataframe(table, hide_index=True, width="stretch")
    candidates = qa_candidates(rows)
    st.subheader(f"QA candidates ({len(candidates)})")
    st.caption(
        "Each not-helpful answer with a correction, as a line of a QA file: add its evidence (a phrase of "
        "the document that answers), then append it to a set in eval/qa/. Also `nhs-assistant feedback export`."
    )
    if candidates:
        lines = "".join(json.dumps(c, ensure_ascii=False) + "\n" for c in candidates)
        st.code(lines, language="json", wrap_lines=True)
        st.download_button(
            "Export QA candidates (.jsonl)",
            lines.encode("utf-8"),
            file_name="qa-candidates.jsonl",
            mime="application/jsonl",
            icon=":material/download:",
        )


# --- layout ---------------------------------------------------------------------------------------

PAGES = {
    "Chat": chat_page,
    "Documents": documents_page,
    "Targets": targets_page,
    "Evaluation": evaluation_page,
    "Feedback": feedback_page,
}


def main() -> None:
    # An emoji icon is drawn in the page (a data: URL); a ":material/...:" one is fetched from Google's
    # font servers, and no request is to leave the page (tests/test_e2e.py).
    st.set_page_config(page_title="NHS planning assistant", page_icon="🏥", layout="wide")
    try:
        chain = get_chain()
    except AssistantError as err:  # bad ASSISTANT_* settings
        st.error(str(err))
        st.stop()
    try:
        index: Index | None = load_index(chain)
    except AssistantError:
        index = None  # each page says why and offers the ingest
    # A radio rather than st.navigation: AppTest can drive it, and the pages are functions of this file.
    page = st.sidebar.radio("Page", list(PAGES), key="page", label_visibility="collapsed")
    sidebar(chain, index, page)
    PAGES[page]()


if __name__ == "__main__":  # each page view (and AppTest) runs this file as the page
    main()
else:  # `streamlit run app.py` imports it first, finds `app` and serves this file with it
    app = st.App(__file__, lifespan=warm_at_start)
