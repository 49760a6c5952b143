"""Hybrid retrieval: dense (FAISS) and BM25 (bm25s), fused by LangChain's weighted reciprocal rank fusion.

Filters (source, area, theme) are applied before ranking on both sides - FAISS with an ID selector,
BM25 with a weight mask - so a selective filter still returns k results.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict

from assistant.lexicon import TOKEN, bm25_tokens, stem, stems
from assistant.store import Index, Lexical

FILTER_KEYS = ("source", "area", "theme")


@dataclass(frozen=True)
class Hit:
    """A fused result: the chunk, its position in the index, and the scores behind its rank."""

    chunk: Document
    position: int
    fused: float
    dense: float
    bm25: float


def _pairs(text: str) -> list[tuple[str, str]]:
    words = stems(text)
    return list(zip(words, words[1:], strict=False))


class Sparse:
    """BM25 over the chunks' text (bm25s: sparse matrices, fast at a million chunks)."""

    def __init__(self, texts: Sequence[str]) -> None:
        import bm25s

        self.model = bm25s.BM25()
        self.model.index(bm25_tokens(list(texts)), show_progress=False)
        self.size = len(texts)

    def search(self, query: str, k: int, mask: np.ndarray | None = None) -> list[tuple[int, float]]:
        tokens = bm25_tokens([query])
        if not any(tokens.ids[0] if hasattr(tokens, "ids") else tokens[0]):
            return []
        k = min(k, self.size if mask is None else int(mask.sum()))
        if k <= 0:
            return []
        ids, scores = self.model.retrieve(
            tokens,
            k=k,
            show_progress=False,
            n_threads=0,
            weight_mask=None if mask is None else mask.astype("float32"),
        )
        return [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if s > 0]


class HybridRetriever(BaseRetriever):
    """Dense + BM25 with pre-ranking filters, fused by EnsembleRetriever's weighted RRF."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    index: Index
    sparse: Lexical  # bm25s over the chunks, or the store's own (PostgreSQL full text)
    k: int = 5
    fetch_k: int = 40
    # (dense, BM25) weights and the RRF constant; the chain passes the evidence policy's fitted ones.
    weights: tuple[float, float] = (0.3, 0.7)
    rrf_c: int = 10
    fusion: Any = None
    columns: dict[str, np.ndarray] = {}
    source_pairs: dict[str, set[tuple[str, str]]] = {}

    @classmethod
    def from_index(cls, index: Index, k: int = 5, **kwargs: Any) -> HybridRetriever:
        from langchain_classic.retrievers import EnsembleRetriever

        sparse = index.lexical() or Sparse([c.page_content for c in index.chunks])
        columns = {
            key: np.array([str(c.metadata.get(key)) for c in index.chunks], dtype=object)
            for key in FILTER_KEYS
        }
        sources = sorted({str(c.metadata.get("source")) for c in index.chunks})
        pairs = {src: set(_pairs(re.sub(r"\.[a-z0-9]+$", "", src, flags=re.I))) for src in sources}
        wanted = set().union(*pairs.values()) if pairs else set()
        used_in: dict[tuple[str, str], set[str]] = {}
        for chunk in index.chunks:
            for pair in wanted.intersection(_pairs(chunk.page_content)):
                used_in.setdefault(pair, set()).add(str(chunk.metadata.get("source")))
        retriever = cls(
            index=index,
            sparse=sparse,
            k=k,
            columns=columns,
            # A pair of name words names a document only if no other document's text uses it.
            source_pairs={src: {q for q in p if used_in.get(q, set()) <= {src}} for src, p in pairs.items()},
            **kwargs,
        )
        # Only its weighted_reciprocal_rank is used: our two sides take filters, which EnsembleRetriever
        # does not pass on to its retrievers.
        retriever.fusion = EnsembleRetriever.model_construct(
            retrievers=[], weights=list(retriever.weights), c=retriever.rrf_c, id_key="chunk_id"
        )
        return retriever

    def named_sources(self, query: str) -> tuple[list[str], str]:
        """Documents the question names ("in the business plan"), and the question without their names.

        A document is named when two adjacent words of its file name, which no other document's text
        puts together, stand together in the question; those words, and the numbers of the name, then no longer rank chunks.
        """
        asked = set(_pairs(query))
        named = [src for src, pairs in self.source_pairs.items() if pairs & asked]
        # Years in file names ("2023-24") date documents, not passages: they never rank chunks.
        drop = {w for src in self.source_pairs for w in re.findall(r"\d+", src)}
        drop |= {w for src in named for pair in self.source_pairs[src] & asked for w in pair}
        kept = [w for w in re.findall(TOKEN, query) if stem(w.lower()) not in drop]
        return named, " ".join(kept)

    def allowed(self, filters: Mapping[str, Sequence[str]] | None) -> np.ndarray | None:
        """Positions of the chunks that pass `filters` ({"source": [...], "area": [...], "theme": [...]})."""
        if not filters:
            return None
        mask = np.ones(len(self.index.chunks), dtype=bool)
        for key, values in filters.items():
            if values:
                mask &= np.isin(self.columns[key], [str(v) for v in values])
        return mask

    def search(
        self,
        query: str,
        k: int | None = None,
        filters: Mapping[str, Sequence[str]] | None = None,
        keywords: str | None = None,
        lead: Collection[int] = (),
        vector: np.ndarray | None = None,
    ) -> list[Hit]:
        """Fused top-k hits: `query` for the dense side, `keywords` (default: the query) for BM25; both
        as given (the question parse has already added glossary expansions).

        One of the `lead` positions (passages the question names exactly, "Recommendation 1") that
        passes the filters goes first: the best ranked of them, else the first in the index.
        """
        k = k or self.k
        mask = self.allowed(filters)
        allowed = None if mask is None else np.flatnonzero(mask)
        vector = self.index.embed_query(query) if vector is None else vector
        dense = self.index.search(vector, self.fetch_k, allowed)
        sparse = self.sparse.search(keywords or query, self.fetch_k, mask)
        dense_score = dict(dense)
        sparse_score = dict(sparse)
        lists = [[self._doc(i) for i, _ in dense], [self._doc(i) for i, _ in sparse]]
        fused = self.fusion.weighted_reciprocal_rank(lists)
        position = {
            c.metadata["chunk_id"]: i for i, c in ((i, self.index.chunks[i]) for i, _ in dense + sparse)
        }
        order = [position[doc.metadata["chunk_id"]] for doc in fused]
        if lead := {i for i in lead if mask is None or mask[i]}:
            first = next((i for i in order if i in lead), min(lead))
            order = [first] + [i for i in order if i != first]
        return [
            Hit(
                self._doc(i),
                i,
                1.0 / (rank + 1),
                dense_score.get(i, self._cosine(vector, i)),
                sparse_score.get(i, 0.0),
            )
            for rank, i in enumerate(order[:k])
        ]

    def _doc(self, position: int) -> Document:
        return self.index.chunks[position]

    def _cosine(self, vector: np.ndarray, position: int) -> float:
        return float(np.dot(self.index.vector(position), vector))

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun, **kwargs: Any
    ) -> list[Document]:
        return [h.chunk for h in self.search(query, kwargs.get("k"), kwargs.get("filters"))]
