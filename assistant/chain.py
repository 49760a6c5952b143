"""The question-answering chain: `ask(question, history, filters, mode) -> Answer`.

    from assistant.chain import ask
    answer = ask("What is the A&E 4-hour target?")
    print(answer.text); print(answer.citations[0].quote)

Composition only, as LangChain Runnables: the question is parsed once (questions.py), hybrid retrieval
finds chunks (retrieval.py), their units become candidate passages (passages.py), the evidence policy
accepts one or refuses with a reason (evidence.py), and the answer is composed from exact quotes and
verified (answer.py). The index is loaded once per process; a Chain holds no per-call state.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, replace
from typing import Any

from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.runnables import Runnable, RunnableLambda

from assistant import answer as answers
from assistant import evidence, questions
from assistant.answer import Answer, Citation, Retrieved
from assistant.config import MODES, Settings
from assistant.errors import AssistantError, ConfigError, QuestionError
from assistant.evidence import Passage, Policy, Verdict
from assistant.figures import labels
from assistant.lexicon import Vocabulary, stems
from assistant.passages import Furniture, antecedent, is_contents, units
from assistant.questions import Question
from assistant.retrieval import Hit, HybridRetriever
from assistant.store import Index, IngestReport, Progress, build_index, load_index

# "Is there anything on X?": a yes/no question about whether the documents cover a topic.
_EXISTENCE = (
    "is there",
    "are there",
    "anything",
    "any ",
    "does it mention",
    "mentioned",
    "mention ",
    "will there",
)


@dataclass(frozen=True)
class _Loaded:
    """What is built once per loaded index."""

    index: Index
    retriever: HybridRetriever
    register: dict[str, dict[str, Any]]  # targets by chunk id
    labelled: dict[str, list[int]]  # "recommendation 1" -> positions of chunks holding it
    vocabulary: Vocabulary
    furniture: Furniture


class Chain:
    """Loads the index lazily (once) and answers questions over it."""

    def __init__(
        self,
        settings: Settings | None = None,
        embeddings: Embeddings | None = None,
        model: str | None = None,
        policy: Policy | None = None,
        chat_model: Any = None,
    ):
        self.settings = settings or Settings.from_env()
        self.policy = policy or evidence.default_policy()
        self._embeddings = embeddings
        self._model = model
        self._lock = threading.Lock()
        self._state: _Loaded | None = None
        self._chat_model: Any = chat_model  # None: the one ASSISTANT_LLM names, loaded on first use
        self.runnable: Runnable[dict[str, Any], Answer] = (
            RunnableLambda(self._prepare) | RunnableLambda(self._retrieve) | RunnableLambda(self._respond)
        )

    @property
    def index(self) -> Index:
        return self._loaded().index

    @property
    def retriever(self) -> HybridRetriever:
        """The hybrid retriever over the loaded index (retrieval without an answer)."""
        return self._loaded().retriever

    def reload(self) -> None:
        """Re-read the index (after an ingest) on the next call."""
        with self._lock:
            self._state = None

    def refresh(self) -> None:
        """Reload on the next call when another process has made a newer build current (a cheap check)."""
        state = self._state
        if state is not None and state.index.outdated():
            self.reload()

    def reindex(
        self,
        remove: Collection[str] = (),
        progress: Progress | None = None,
        on_wait: Callable[[str], None] | None = None,
    ) -> IngestReport:
        """Add and update the corpus folder's documents in the index with this chain's embedding model
        (those named in `remove` leave it; see store.build_index), then reload."""
        embeddings: Embeddings | None
        try:
            embeddings = self.index.embeddings  # the loaded model, not a second copy
        except AssistantError:
            embeddings = self._embeddings
        report = build_index(
            [self.settings.corpus_dir],
            self.settings,
            embeddings=embeddings,
            progress=progress,
            model=self._model,
            remove=remove,
            on_wait=on_wait,
        )
        self.reload()
        return report

    def _loaded(self) -> _Loaded:
        state = self._state
        if state is None:
            with self._lock:
                if self._state is None:
                    index = load_index(self.settings, self._embeddings, self._model)
                    labelled: dict[str, list[int]] = {}
                    for position, chunk in enumerate(index.chunks):
                        for label in labels(chunk.page_content):
                            labelled.setdefault(label, []).append(position)
                    self._state = _Loaded(
                        index,
                        HybridRetriever.from_index(
                            index,
                            k=self.settings.k,
                            weights=self.policy.fusion_weights,
                            rrf_c=self.policy.fusion_c,
                        ),
                        {t["chunk_id"]: t for t in index.targets},
                        labelled,
                        Vocabulary.from_texts(c.page_content for c in index.chunks),
                        Furniture.from_chunks(index.chunks),
                    )
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
        one (or the extractive answer when verification removes a figure or changes its meaning).
        """
        self.refresh()  # another process ingested: read the new build
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

    def understand(self, question: str, history: list[dict[str, str]] | None = None) -> Question:
        """The question parsed against this index's vocabulary (typos, its own abbreviations); the words
        naming a document it asks about ("in the Data Driven Healthcare report") are not its topic."""
        state = self._loaded()
        q = questions.parse(question, history, state.vocabulary)
        named, keywords = state.retriever.named_sources(q.query)
        if not named:
            return q
        naming = set(stems(q.query)) - set(stems(keywords))
        return replace(q, topic=tuple(t for t in q.topic if t not in naming))

    def passages(
        self, q: Question, filters: dict[str, list[str]] | None = None, k: int | None = None
    ) -> tuple[list[Hit], list[Passage], list[str]]:
        """Retrieved hits, the candidate passages of the top `policy.candidates` of them, and the
        documents the question names (which then filter retrieval)."""
        state = self._loaded()
        filters = dict(filters or {})
        named, keywords = state.retriever.named_sources(q.query)
        if named and not filters.get("source"):
            filters["source"] = named
        # a label the question names ("Recommendation 1") leads to its passage even when ranking does not
        holding = set.intersection(*(set(state.labelled.get(w, ())) for w in q.labels)) if q.labels else set()
        depth = max(k or self.settings.k, self.policy.candidates)
        vector = state.index.embed_query(keywords)
        hits = state.retriever.search(keywords, depth, filters, keywords, lead=holding, vector=vector)
        out: list[Passage] = []
        for rank, hit in enumerate(h for h in hits[: self.policy.candidates] if not is_contents(h.chunk)):
            found, vectors = state.index.units_of(hit.position) if hit.position >= 0 else ([], None)
            if not found:
                found, vectors = units(hit.chunk, state.furniture), None
            similarity = vectors @ vector if vectors is not None else [hit.dense] * len(found)
            siblings = tuple(found)
            out += [
                Passage(u, hit.chunk, rank, hit.dense, float(sim), siblings)
                for u, sim in zip(found, similarity, strict=True)
            ]
        return hits, out, named

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
        text = " ".join(str(state["question"] or "").split())
        if not text:
            raise QuestionError("The question is empty; type a question about the planning documents.")
        if state["mode"] not in MODES:
            raise ConfigError(f"mode ({state['mode']!r}) must be one of {', '.join(MODES)}.")
        if state["mode"] == "generative" and self.settings.llm == "none":
            raise ConfigError(
                "Generative mode needs a model: set ASSISTANT_LLM=gguf (local) or openai, or use extractive mode."
            )
        notices = []
        limit = self.settings.max_question_chars
        if len(text) > limit:
            text = text[:limit]
            notices.append(f"The question was cut to its first {limit} characters.")
        started = time.perf_counter()
        q = self.understand(text, state["history"])
        return {**state, "question": text, "parsed": q, "notices": notices, "started": started}

    def _retrieve(self, state: dict[str, Any]) -> dict[str, Any]:
        t0 = time.perf_counter()
        hits, candidates, named = self.passages(state["parsed"], state["filters"], state["k"])
        return {
            **state,
            "hits": hits,
            "candidates": candidates,
            "named": named,
            "retrieve_ms": (time.perf_counter() - t0) * 1000,
        }

    def _respond(self, state: dict[str, Any]) -> Answer:
        t0 = time.perf_counter()
        q: Question = state["parsed"]
        hits: list[Hit] = state["hits"]
        k = state["k"] or self.settings.k
        trace: dict[str, Any] = {
            "query": q.reading,
            "understood": q.reading if q.follow_up else None,
            "kind": q.kind,
            "mode": state["mode"],
            "notices": state["notices"],
            "named_documents": state["named"],
        }
        chunks = {h.chunk.metadata["chunk_id"]: h.chunk for h in hits}
        text, refused, citations = self._answer(q, state, hits, chunks, trace)
        if state["mode"] == "generative" and not refused:
            text, citations, trace["generative"] = self._generate(state, hits[:k], chunks, text, citations)
        if citations:
            text, citations = answers.verify(text, citations, chunks)
            if not citations:
                text, refused = answers.NOT_COVERED, True
        # the chunks the answer stands on rank first (second-stage re-ranking), every cited one shown
        cited = list(dict.fromkeys(c.chunk_id for c in citations))
        rest = [h for h in hits if h.chunk.metadata["chunk_id"] not in cited]
        found = {h.chunk.metadata["chunk_id"]: h for h in hits}
        shown = [found.get(c) or Hit(chunks[c], -1, 0.0, 0.0, 0.0) for c in cited] + rest
        shown = shown[: max(k, len(cited))]
        return Answer(
            question=state["question"],
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
                for h in shown
            ],
            timings_ms={
                "retrieve": round(state["retrieve_ms"], 2),
                "answer": round((time.perf_counter() - t0) * 1000, 2),
                "total": round((time.perf_counter() - state["started"]) * 1000, 2),
            },
            trace=trace,
        )

    def _answer(
        self,
        q: Question,
        state: dict[str, Any],
        hits: list[Hit],
        chunks: dict[str, Document],
        trace: dict[str, Any],
    ) -> tuple[str, bool, list[Citation]]:
        """The extractive answer by the question's kind: (text, refused, citations)."""
        loaded = self._loaded()
        refusal = evidence.refusal_before_reading(q)
        if refusal:
            trace["rules"] = [refusal[0]]
            return refusal[1], True, []
        listing = questions.list_query(
            q.text, sorted({str(t["area"]) for t in loaded.index.targets if t.get("area")})
        )
        if listing and (rows := questions.select_targets(listing, loaded.index.targets)):
            pairs = [
                (t, loaded.index.by_id[t["chunk_id"]]) for t in rows if t["chunk_id"] in loaded.index.by_id
            ]
            label = " and ".join(listing.areas) or "all areas"
            due = f" due by {listing.deadline}" if listing.deadline else ""
            text, citations = answers.compose_list(f"Objectives for {label}{due}:", pairs)
            chunks.update({c.metadata["chunk_id"]: c for _, c in pairs})
            trace["rules"] = ["targets register"]
            return text, False, citations
        if len(q.parts) == 2 and q.kind in ("comparison", "figure", "what", "deadline", "who", "yesno"):
            return self._answer_parts(q, state, chunks, trace)
        verdict = evidence.judge(q, state["candidates"], self.policy, loaded.vocabulary)
        self._trace(trace, verdict)
        if verdict.best is None:
            return answers.refusal(str(verdict.reason), self._closest(hits)), True, []
        quotes = self._quotes(q, verdict)
        lead = self._lead(q, [quote for _, quote in quotes])
        other = evidence.disagreement(verdict, self.policy)
        if other is not None:
            quotes, lead = self._disagreeing(quotes, other.passage), None
            trace["rules"].append("documents disagree")
        target = loaded.register.get(quotes[0][0].metadata["chunk_id"])
        text, citations = answers.compose(quotes, target, lead)
        if other is not None:
            text = f"{self._disagreement_note(citations)}\n{text}"
        return text, False, citations

    def _disagreeing(self, quotes: list[tuple[Document, str]], other: Passage) -> list[tuple[Document, str]]:
        """Both documents' quotes, an authoritative document's first (ASSISTANT_AUTHORITATIVE)."""
        both = quotes[:1] + [(other.chunk, self._quote(other))]
        trusted = self.settings.authoritative_sources
        return sorted(both, key=lambda pair: str(pair[0].metadata.get("source")) not in trusted)

    def _disagreement_note(self, citations: list[Citation]) -> str:
        """A line saying the documents disagree (no figures of its own, so verification keeps it)."""
        trusted = self.settings.authoritative_sources
        note = "The documents give different figures for this; both are quoted."
        if citations[0].source in trusted and citations[1].source not in trusted:
            note += " The first is from a document marked authoritative; the second disagrees with it."
        return note

    def _answer_parts(
        self, q: Question, state: dict[str, Any], chunks: dict[str, Document], trace: dict[str, Any]
    ) -> tuple[str, bool, list[Citation]]:
        """Each part answered on its own (a comparison side by side); a part not covered says so."""
        loaded = self._loaded()
        lines: list[str] = []
        citations: list[Citation] = []
        quoted: list[str] = []
        trace["parts"] = []
        for part in q.parts:
            sub = self.understand(part)
            hits, candidates, _ = self.passages(sub, state["filters"], state["k"])
            chunks.update({h.chunk.metadata["chunk_id"]: h.chunk for h in hits})
            if q.kind != "comparison":
                # the parts of "how much for scanners, and how many scanners?" share the question's topic
                sub = replace(sub, context=tuple(t for t in q.topic if t not in sub.topic))
                seen = {(c.chunk.metadata["chunk_id"], c.unit.start) for c in candidates}
                candidates += [
                    c for c in state["candidates"] if (c.chunk.metadata["chunk_id"], c.unit.start) not in seen
                ]
            verdict = evidence.judge(sub, candidates, self.policy, loaded.vocabulary)
            trace["parts"].append({"part": part, "rules": verdict.fired})
            if verdict.best is None:
                lines.append(f"{part[0].upper()}{part[1:]}: not covered by the planning documents.")
                continue
            pick = verdict.best.passage
            quote = self._quote(pick)
            text, cited = answers.compose([(pick.chunk, quote)], None, None, first=len(citations) + 1)
            lines.append(f"{part[0].upper()}{part[1:]}: {text}")
            citations += cited
            quoted.append(quote)
        if not citations:
            return answers.NOT_COVERED, True, []
        if q.kind == "comparison" and len(quoted) == 2:
            summary = answers.compare(list(q.parts), quoted)
            if summary:
                lines.append(summary)
        return "\n".join(lines), False, citations

    def _quotes(self, q: Question, verdict: Verdict) -> list[tuple[Document, str]]:
        """What the answer quotes: the best passage, then (up to policy.max_quotes, list_items for a list)
        those scoring at least policy.second_quote of it, and a passage of the best one's chunk giving
        the figure or date it lacks; a table row in a report comes with its caption and column headings."""
        best = verdict.accepted[0]
        if best.passage.unit.row and best.passage.chunk.metadata.get("kind") != "row":
            heads = [u for u in best.passage.siblings if u.caption and u.start < best.passage.unit.start]
            return [(best.passage.chunk, u.text) for u in heads[-2:]] + [
                (best.passage.chunk, best.passage.text)
            ]
        most = self.policy.list_items if q.kind == "list" else self.policy.max_quotes
        if best.passage.chunk.metadata.get("kind") == "row" and q.kind != "list":
            most = 1  # an objective is one row: its target, deadline and area lead the answer
        if q.labels and best.values.get("names the label", 0) > 0:
            return self._labelled_item(best.passage)
        picks = [best]
        wanted = (
            "figure fit" if q.asks_figure else None,
            "date fit" if q.wants == "date" or q.wants_date else None,
        )
        lacking = [w for w in wanted if w and best.values.get(w, 0) < 0]
        for s in verdict.accepted[1:]:
            if len(picks) >= most:
                break
            gives = s.passage.chunk is best.passage.chunk and any(s.values.get(w, 0) > 0 for w in lacking)
            if s.probability >= self.policy.second_quote * best.probability or gives:
                picks.append(s)
        # in document order within a chunk, chunks in the order the policy ranked them
        order = {id(s.passage.chunk): i for i, s in reversed(list(enumerate(picks)))}
        picks.sort(key=lambda s: (order[id(s.passage.chunk)], s.passage.unit.start))
        quoted = {(id(s.passage.chunk), s.passage.unit.start) for s in picks}
        out: list[tuple[Document, str]] = []
        for s in picks:
            before = antecedent(s.passage.unit, s.passage.siblings)
            if before is not None and (id(s.passage.chunk), before.start) not in quoted:
                out.append((s.passage.chunk, before.text))  # who "they" are, when the quote opens with it
            out.append((s.passage.chunk, self._quote(s.passage)))
        return out

    def _labelled_item(self, best: Passage) -> list[tuple[Document, str]]:
        """A labelled item ("Recommendation 9: ...") quoted whole: its opening unit and those after it, up
        to the next labelled unit (or policy.max_quotes)."""
        after = [u for u in best.siblings if u.start > best.unit.start and not u.caption]
        item = [best.unit]
        for unit in after:
            if len(item) >= self.policy.max_quotes or labels(unit.text[:40]):
                break
            item.append(unit)
        return [(best.chunk, u.text) for u in item]

    def _quote(self, p: Passage) -> str:
        target = self._loaded().register.get(p.chunk.metadata["chunk_id"])
        return answers.row_quote(p.chunk, target) if p.chunk.metadata.get("kind") == "row" else p.text

    @staticmethod
    def _lead(q: Question, quotes: list[str]) -> str | None:
        """ "Yes." / "No." for a yes/no question whose claim the quotes settle, or that asks whether the
        documents cover something."""
        if q.kind != "yesno":
            return None
        quoted = " ".join(quotes)
        verdict = answers.yes_or_no(list(q.figures), set(q.dates), quoted, q.claim)
        if verdict:
            return verdict
        lowered = f" {q.text.lower()} "
        return "Yes." if any(word in lowered for word in _EXISTENCE) else None

    @staticmethod
    def _trace(trace: dict[str, Any], verdict: Verdict) -> None:
        trace["rules"] = verdict.fired
        trace["ruled_out"] = verdict.rejected
        if verdict.accepted:
            top = verdict.accepted[0]
            trace["best"] = {
                "probability": round(top.probability, 3),
                "features": {k: round(v, 3) for k, v in top.values.items()},
            }

    @staticmethod
    def _closest(hits: list[Hit]) -> list[str]:
        """What the nearest passages are about: area, section or document title (not a bare number)."""
        names = []
        for h in hits[:3]:
            meta = h.chunk.metadata
            named = (meta.get("area"), meta.get("section"), meta.get("title"))
            names.append(next((str(n) for n in named if n and any(c.isalpha() for c in str(n))), ""))
        return names

    def _generate(
        self,
        state: dict[str, Any],
        hits: list[Hit],
        chunks: dict[str, Any],
        extractive: str,
        extractive_citations: list[Citation],
    ) -> tuple[str, list[Citation], dict[str, Any]]:
        """The model's answer, verified; the extractive one when verification drops a figure or a
        figure lost the words that qualify it in its quote."""
        from assistant.llm import generate

        sources = [h.chunk for h in hits]
        raw, cited = generate(state["question"], sources, self.chat_model(), state["on_token"])
        text, kept = answers.verify(raw, cited, chunks)
        lost = answers.numbers_in(raw) - answers.numbers_in(text)
        changed = answers.meaning_changes(text, kept)
        if not kept or lost or changed:
            reason = (
                f"unverifiable figures {sorted(lost)}"
                if lost
                else f"a figure's meaning changed: {changed[0]}"
                if changed
                else "no verifiable citation"
            )
            return extractive, extractive_citations, {"raw": raw, "fallback": reason}
        return text, kept, {"raw": raw, "fallback": None}


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
