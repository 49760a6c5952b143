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
    from assistant.feedback import record_feedback
    from assistant.keys import load_keys, role_of
    from assistant.loaders import SUPPORTED
    from assistant.store import Index, IngestReport

HERE = Path(__file__).resolve().parent
QA_DIR = HERE / "eval" / "qa"


# --- helpers that the tests call directly ---------------------------------------------------------


def highlight(text: str, quote: str) -> str:
    """HTML of `text` (escaped) with the first occurrence of `quote` wrapped in <mark>."""
    body = literal.html(text)
    if quote:
        q = literal.html(quote)
        at = body.find(q)
        if at >= 0:
            body = f"{body[:at]}<mark>{q}</mark>{body[at + len(q) :]}"
    # No blank lines, so the markdown renderer keeps this one raw HTML block.
    return body.replace("\n", "<br>")


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


def sidebar(chain: Chain, index: Index | None) -> None:
    """Filters, k, mode, index status and the clear-chat button; choices go to st.session_state."""
    with st.sidebar:
        st.header("Search options")
        if index is not None:
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
        draft = st.empty()  # generative mode: the model's tokens as they come, replaced by the checked answer
        streamed: list[str] = []

        def on_token(token: str) -> None:
            streamed.append(token)
            draft.markdown(_answer_md("".join(streamed)) + " ▌")

        try:
            with st.spinner("Searching the documents…"):
                answer = chain.ask(
                    question,
                    history=history or None,
                    filters=current_filters(),
                    mode=mode,
                    k=st.session_state.get("k"),
                    on_token=on_token if mode == "generative" else None,
                )
            draft.empty()
        except AssistantError as err:
            message = {"role": "assistant", "content": str(err), "error": True}
        else:
            message = {"role": "assistant", "content": answer.text, "answer": answer}
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
        show_sources(answer, expanded=latest)
    timings = " · ".join(f"{k} {v:.0f} ms" for k, v in answer.timings_ms.items())
    left, right = st.columns([1, 3], vertical_alignment="center")
    with left:
        st.feedback("thumbs", key=f"feedback_{i}", on_change=_record_feedback, args=(i,))
    with right:
        st.caption(timings)


def show_sources(answer: Answer, expanded: bool) -> None:
    texts = {r.chunk_id: r.text for r in answer.retrieved}
    with st.expander(f"Sources ({len(answer.citations)})", expanded=expanded, icon=":material/menu_book:"):
        for citation in answer.citations:
            where = [literal.code(citation.source)]
            if citation.page is not None:
                where.append(f"page {citation.page}")
            if citation.area or citation.section:
                where.append(_md(str(citation.area or citation.section)))
            st.markdown(f"**[{citation.n}] {_md(citation.title)}** · " + " · ".join(where))
            text = texts.get(citation.chunk_id, citation.quote)
            st.markdown(
                f'<div class="source-text" style="border-left: 3px solid #005EB8; padding: 0.25rem 0.75rem; '
                f'font-size: 0.9rem;">{highlight(text, citation.quote)}</div>',
                unsafe_allow_html=True,
            )


def _record_feedback(i: int) -> None:
    score = st.session_state.get(f"feedback_{i}")
    message = st.session_state.messages[i]
    if score is None or "answer" not in message:
        return
    try:
        record_feedback(get_chain().settings.feedback_db, message["answer"], score)
    except Exception as err:  # noqa: BLE001 - a lost rating must never break the chat
        st.toast(_md(f"Could not save feedback: {err}"))
    else:
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
    rows = [
        {
            "area": t.get("area"),
            "objective": t.get("objective"),
            "values": "; ".join(t.get("values") or []),
            "deadline": t.get("deadline"),
            "source": t.get("source"),
            "page": t.get("page"),
        }
        for t in index.targets
    ]
    table = pd.DataFrame(rows, columns=["area", "objective", "values", "deadline", "source", "page"])
    areas = sorted(table["area"].dropna().unique())
    chosen = st.multiselect("Area", areas, placeholder="All areas", key="targets_areas")
    if chosen:
        table = table[table["area"].isin(chosen)]
    st.caption(f"{len(table)} objectives; click a column header to sort.")
    st.dataframe(table, hide_index=True, width="stretch")
    st.download_button(
        "Download CSV",
        table.to_csv(index=False).encode("utf-8"),
        file_name="nhs-targets.csv",
        mime="text/csv",
        icon=":material/download:",
    )


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
    st.subheader(f"{result['file']}: {report['n']} questions")
    metrics = {"assistant": report["metrics"]}
    if report.get("baseline"):
        metrics["naive baseline"] = report["baseline"]
    st.dataframe(pd.DataFrame(metrics), width="stretch")
    rows = []
    for row in results:
        m = row["metrics"]
        rows.append(
            {
                "id": row["id"],
                "question": row["question"],
                "refused": row["refused"],
                "answer": row["answer"],
                "hit@5": m.get("hit@5"),
                "fact recall": m.get("fact_recall"),
                "citation support": m.get("citation_support"),
                "latency ms": m.get("latency_ms"),
            }
        )
    st.subheader("Per question")
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
    if report.get("per_tag"):
        with st.expander("By tag"):
            st.dataframe(pd.DataFrame(report["per_tag"]).T, width="stretch")
    if result.get("html"):
        st.download_button("Download HTML report", result["html"], file_name="report.html", mime="text/html")


# --- layout ---------------------------------------------------------------------------------------

PAGES = {
    "Chat": chat_page,
    "Documents": documents_page,
    "Targets": targets_page,
    "Evaluation": evaluation_page,
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
    sidebar(chain, index)
    PAGES[page]()


if __name__ == "__main__":  # each page view (and AppTest) runs this file as the page
    main()
else:  # `streamlit run app.py` imports it first, finds `app` and serves this file with it
    app = st.App(__file__, lifespan=warm_at_start)
