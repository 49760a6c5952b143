"""The question-answering chain: `ask(question, history, filters, mode) -> Answer`.

    from assistant.chain import ask
    answer = ask("What is the A&E 4-hour target?")
    print(answer.text); print(answer.citations[0].quote)

Composition only: question rules (questions.py), hybrid retrieval (retrieval.py) and extractive
answers with verified citations (answer.py), joined as LangChain Runnables. The index is loaded once
per process; a Chain is safe to call from many threads (it holds no per-call state).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from typing import Any

from langchain_core.embeddings import Embeddings
from langchain_core.runnables import Runnable, RunnableLambda

from assistant import answer as answers
from assistant import questions
from assistant.answer import Answer, Retrieved
from assistant.config import MODES, Settings
from assistant.errors import ConfigError, QuestionError
from assistant.retrieval import GLOSSARY, Hit, HybridRetriever, stems
from assistant.store import Index, load_index

_State = tuple[Index, HybridRetriever, dict[str, dict[str, Any]], dict[str, list[int]]]
SECOND_STAGE = 10  # hits the answer step may look through
_TIME_WORDS = {"hour", "day", "week", "month", "year", "minut"}  # stems of units of time


class Chain:
    """Loads the index lazily (once) and answers questions over it."""

    def __init__(
        self, settings: Settings | None = None, embeddings: Embeddings | None = None, model: str | None = None
    ):
        self.settings = settings or Settings.from_env()
        self._embeddings = embeddings
        self._model = model
        self._lock = threading.Lock()
        self._state: _State | None = None
        self._chat_model: Any = None
        self.runnable: Runnable[dict[str, Any], Answer] = (
            RunnableLambda(self._prepare) | RunnableLambda(self._retrieve) | RunnableLambda(self._respond)
        )

    @property
    def index(self) -> Index:
        return self._loaded()[0]

    def reload(self) -> None:
        """Re-read the index (after an ingest) on the next call."""
        with self._lock:
            self._state = None

    def _loaded(self) -> _State:
        state = self._state
        if state is None:
            with self._lock:
                if self._state is None:
                    index = load_index(self.settings, self._embeddings, self._model)
                    retriever = HybridRetriever.from_index(index, k=self.settings.k)
                    labelled: dict[str, list[int]] = {}
                    for position, chunk in enumerate(index.chunks):
                        for label in questions.labels(chunk.page_content):
                            labelled.setdefault(label, []).append(position)
                    by_chunk = {t["chunk_id"]: t for t in index.targets}
                    self._state = (index, retriever, by_chunk, labelled)
                state = self._state
        return state

    def ask(
        self,
        question: str,
        history: list[dict[str, str]] | None = None,
        filters: dict[str, list[str]] | None = None,
        mode: str = "extractive",
        k: int | None = None,
        on_token: Callable[[str], None] | None = None,
    ) -> Answer:
        """Answer `question`; `history` is the chat so far ({"role", "content"} dicts).

        In generative mode the model's tokens stream to `on_token`; the returned answer is the verified
        one (or the extractive answer when verification removes a figure).
        """
        return self.runnable.invoke(
            {
                "question": question,
                "history": history,
                "filters": filters,
                "mode": mode,
                "k": k,
                "on_token": on_token,
            }
        )

    def chat_model(self) -> Any:
        """The generative model (ASSISTANT_LLM), loaded once per chain."""
        if self._chat_model is None:
            with self._lock:
                if self._chat_model is None:
                    from assistant.llm import load_chat_model

                    self._chat_model = load_chat_model(self.settings)
        return self._chat_model

    # --- steps ------------------------------------------------------------------------------------

    def _prepare(self, state: dict[str, Any]) -> dict[str, Any]:
        question = " ".join(str(state["question"] or "").split())
        if not question:
            raise QuestionError("The question is empty; type a question about the planning documents.")
        if state["mode"] not in MODES:
            raise ConfigError(f"mode ({state['mode']!r}) must be one of {', '.join(MODES)}.")
        if state["mode"] == "generative" and self.settings.llm == "none":
            raise ConfigError(
                "Generative mode needs a model: set ASSISTANT_LLM=gguf (local) or openai, or use extractive mode."
            )
        notices = []
        limit = self.settings.max_question_chars
        if len(question) > limit:
            question = question[:limit]
            notices.append(f"The question was cut to its first {limit} characters.")
        started = time.perf_counter()
        rewritten = questions.rewrite_follow_up(question, state["history"])
        return {**state, "question": question, "query": rewritten, "notices": notices, "started": started}

    def _retrieve(self, state: dict[str, Any]) -> dict[str, Any]:
        _, retriever, _, labelled = self._loaded()
        t0 = time.perf_counter()
        filters = dict(state["filters"] or {})
        named, keywords = retriever.named_sources(state["query"])
        if named and not filters.get("source"):
            filters["source"] = named
        # a few more than shown, for the second stage (a labelled "Recommendation 1" may rank lower)
        k = state["k"] or self.settings.k
        # A label the question names ("Recommendation 1") leads to its passage even when ranking does not.
        wanted = questions.labels(state["query"])
        holding = set.intersection(*(set(labelled.get(w, ())) for w in wanted)) if wanted else set()
        hits = retriever.search(keywords, max(k, SECOND_STAGE), filters, keywords, lead=holding)
        elapsed = (time.perf_counter() - t0) * 1000
        return {
            **state,
            "k": k,
            "hits": hits,
            "named_sources": named,
            "keywords": keywords,
            "retrieve_ms": elapsed,
        }

    def _respond(self, state: dict[str, Any]) -> Answer:
        index, _, by_chunk, _ = self._loaded()
        t0 = time.perf_counter()
        question, hits, k = state["question"], state["hits"], state["k"]
        chunks = {h.chunk.metadata["chunk_id"]: h.chunk for h in hits}
        trace: dict[str, Any] = {
            "query": state["query"],
            "mode": state["mode"],
            "notices": state["notices"],
            "named_documents": state["named_sources"],
        }
        refused = False
        citations: list[answers.Citation] = []
        listing = questions.list_query(
            question, sorted({str(t["area"]) for t in index.targets if t.get("area")})
        )
        if questions.is_clinical(question):
            text, refused, trace["route"] = answers.CLINICAL, True, "clinical"
            hits = hits[:k]
        elif listing and (rows := questions.select_targets(listing, index.targets)):
            pairs = [(t, index.by_id[t["chunk_id"]]) for t in rows if t["chunk_id"] in index.by_id]
            label = " and ".join(listing.areas) or "all areas"
            due = f" due by {listing.deadline}" if listing.deadline else ""
            text, citations = answers.compose_list(f"Objectives for {label}{due}:", pairs)
            chunks.update({c.metadata["chunk_id"]: c for _, c in pairs})
            hits = [Hit(c, -1, 1.0, 1.0, 0.0) for _, c in pairs] + hits[:k]
            trace["route"] = "targets register"
        else:
            text, refused, citations, trace["route"] = self._extract(
                question, state["query"], state["keywords"], hits, by_chunk
            )
            if state["mode"] == "generative" and not refused:
                text, citations, trace["generative"] = self._generate(
                    state, hits[:k], chunks, text, citations
                )
            if citations:  # the chunk the answer stands on ranks first (second-stage re-ranking)
                first = citations[0].chunk_id
                hits = sorted(hits, key=lambda h: h.chunk.metadata["chunk_id"] != first)
            hits = hits[:k]
        if citations:
            text, citations = answers.verify(text, citations, chunks)
            if not citations:
                text, refused = answers.NOT_COVERED, True
        elapsed = time.perf_counter() - state["started"]
        return Answer(
            question=question,
            text=text,
            refused=refused,
            citations=citations,
            retrieved=[
                Retrieved(
                    h.chunk.metadata["chunk_id"],
                    str(h.chunk.metadata["source"]),
                    h.chunk.metadata["page"],
                    round(h.dense, 4),
                    h.chunk.page_content,
                )
                for h in hits
            ],
            timings_ms={
                "retrieve": round(state["retrieve_ms"], 2),
                "answer": round((time.perf_counter() - t0) * 1000, 2),
                "total": round(elapsed * 1000, 2),
            },
            trace=trace,
        )

    def _generate(
        self,
        state: dict[str, Any],
        hits: list[Hit],
        chunks: dict[str, Any],
        extractive: str,
        extractive_citations: list[answers.Citation],
    ) -> tuple[str, list[answers.Citation], dict[str, Any]]:
        """The model's answer, verified; the extractive one when verification drops a figure."""
        from assistant.llm import generate

        sources = [h.chunk for h in hits]
        raw, cited = generate(state["question"], sources, self.chat_model(), state["on_token"])
        text, kept = answers.verify(raw, cited, chunks)
        lost = answers.numbers_in(raw) - answers.numbers_in(text)
        if not kept or lost:
            reason = f"unverifiable figures {sorted(lost)}" if lost else "no verifiable citation"
            return extractive, extractive_citations, {"raw": raw, "fallback": reason}
        return text, kept, {"raw": raw, "fallback": None}

    def _extract(
        self,
        question: str,
        query: str,
        keywords: str,
        hits: list[Hit],
        by_chunk: dict[str, dict[str, Any]],
    ) -> tuple[str, bool, list[answers.Citation], str]:
        closest = [
            str(
                h.chunk.metadata.get("area")
                or h.chunk.metadata.get("section")
                or h.chunk.metadata.get("title")
            )
            for h in hits[:3]
        ]
        retriever = self._loaded()[1]
        wanted = questions.specifics(query)
        # A passage holding the label the question names ("Recommendation 1") leads (see _retrieve) and
        # is evidence enough.
        labelled = questions.labels(query)
        named = bool(hits) and bool(labelled) and labelled <= questions.labels(hits[0].chunk.page_content)
        if not hits or (
            not named
            and hits[0].dense < self.settings.refusal_threshold
            and _lexical_support(keywords, hits[0].chunk, retriever.term_weight) < 0.5
        ):
            return answers.refusal(answers.NOT_COVERED, closest), True, [], "weak evidence"
        # Second stage: the first of the top hits that holds every figure the question pins down.
        # a table of contents is found by every question about its headings, and answers none
        candidates = [h for h in hits if not answers.is_contents(h.chunk)][:3]
        covering = [h for h in candidates if not wanted - questions.specifics(_evidence_text(h.chunk))]
        if not covering:
            missing = wanted - questions.specifics(_evidence_text(hits[0].chunk))
            reason = f"The planning documents don't state this for {', '.join(sorted(missing))}."
            return answers.refusal(reason, closest), True, [], "figure not in evidence"
        # A rare abbreviation the question names ("IAPT") is its subject: a passage without it (or its
        # expansion) answers something else - never acceptable when a figure is asked for.
        rare = 0.05 * len(retriever.index.chunks)
        figure = questions.asks_for_a_figure(question)
        # (one the documents never use, nor expand, cannot be checked: "PCNs")
        subjects = [
            a
            for a in questions.acronyms(query)
            if (0 < retriever.doc_freq.get(a, 0) <= rare) or (a in GLOSSARY and not retriever.doc_freq.get(a))
        ]
        on_topic = [h for h in covering if all(_mentions(h.chunk, a) for a in subjects)]
        covering = on_topic if figure else on_topic + [h for h in covering if h not in on_topic]
        # "How many more appointments": prefer the passage that puts a number on appointments.
        things = questions.counted_things(query)
        if things:
            covering.sort(key=lambda h: not questions.counts(h.chunk.page_content, things))
        weight = retriever.term_weight
        # what the figure is of: "how many specialists", "what is the gender split"
        subject = set(things or questions.measured_things(query))

        def gives_the_figure(unit: str) -> bool:
            """A quote that answers a figure question: a figure it did not ask with, on the thing counted."""
            found = questions.figures(unit) - wanted
            if things and not set(things) & _TIME_WORDS:  # "how many ambulances" is not "30 minutes"
                found -= questions.durations(unit)
            return bool(found) and (not subject or bool(set(stems(unit)) & subject))

        for hit in covering:
            chunk = hit.chunk
            target = by_chunk.get(chunk.metadata["chunk_id"])
            favour = gives_the_figure if figure else None
            text, citations = answers.compose(keywords, chunk, target, weight, favour)
            if not figure or any(gives_the_figure(c.quote) for c in citations):
                return text, False, citations, "extractive"
        reason = "The planning documents don't give a figure for this."
        return answers.refusal(reason, closest), True, [], "no figure in evidence"


def _lexical_support(query: str, chunk: Any, weight: Callable[[str], float]) -> float:
    """Share of the question's word weight (rare words weigh more) that the chunk contains."""
    wanted = set(stems(query))
    total = sum(weight(w) for w in wanted)
    return sum(weight(w) for w in wanted & set(stems(chunk.page_content))) / total if total else 0.0


def _mentions(chunk: Any, abbreviation: str) -> bool:
    """Whether a chunk names an abbreviation or every word of its expansion ("talking therapies")."""
    text = _evidence_text(chunk).lower()
    if abbreviation in stems(text):
        return True
    if re.search(rf"(?<![\w&]){re.escape(abbreviation)}(?![\w&])", text):
        return True
    expansion = GLOSSARY.get(abbreviation, "")
    # the expansion's own abbreviations are synonyms ("ED" -> "A&E"); its words must all be there
    if any(_mentions(chunk, a) for a in questions.acronyms(expansion) if a != abbreviation):
        return True
    words = set(stems(expansion)) - {a for a in questions.acronyms(expansion)}
    return bool(words) and words <= set(stems(text))


def _evidence_text(chunk: Any) -> str:
    meta = chunk.metadata
    return " ".join(
        str(x) for x in (chunk.page_content, meta.get("title"), meta.get("section"), meta.get("source"))
    )


_chains: dict[Settings, Chain] = {}
_chains_lock = threading.Lock()


def get_chain(settings: Settings | None = None) -> Chain:
    """The process-wide chain for `settings` (default: from the environment), created on first use.

    A server warms it at start (`get_chain(settings).index`) and its request handlers get the same one.
    """
    settings = settings or Settings.from_env()
    with _chains_lock:
        if settings not in _chains:
            _chains[settings] = Chain(settings)
        return _chains[settings]


def ask(
    question: str,
    history: list[dict[str, str]] | None = None,
    filters: dict[str, list[str]] | None = None,
    mode: str = "extractive",
) -> Answer:
    """Answer a question with the process-wide chain (see Chain.ask)."""
    return get_chain().ask(question, history, filters, mode)
