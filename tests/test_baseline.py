"""The naive LangChain baseline over two tiny documents, with a deterministic fake embedder."""

from __future__ import annotations

from langchain_core.documents import Document
from langchain_core.embeddings import DeterministicFakeEmbedding

from assistant.baseline import NaiveBaseline


def _docs() -> list[Document]:
    beds = "Reduce adult general and acute bed occupancy to 92% or below. " * 30
    ane = "No less than 76% of patients are seen within 4 hours by March 2024."
    return [
        Document(page_content=beds, metadata={"source": "beds.pdf", "title": "Beds", "page": 2}),
        Document(page_content=ane, metadata={"source": "ane.txt", "title": "A&E", "page": None}),
    ]


def test_returns_k_chunks_and_cites_the_top_one() -> None:
    baseline = NaiveBaseline(_docs(), DeterministicFakeEmbedding(size=64))
    assert len(baseline.chunks) > 2  # the long document was split
    answer = baseline.ask("What is the A&E target?", k=3)
    assert len(answer.retrieved) == 3
    assert len({r.chunk_id for r in answer.retrieved}) == 3
    top = answer.retrieved[0]
    assert answer.text == top.text
    assert not answer.refused
    [citation] = answer.citations
    assert (citation.chunk_id, citation.quote, citation.source, citation.page) == (
        top.chunk_id,
        top.text,
        top.source,
        top.page,
    )
    assert set(answer.timings_ms) == {"retrieve", "answer", "total"}


def test_exact_text_retrieves_its_own_chunk_first() -> None:
    # DeterministicFakeEmbedding hashes the text, so the same text gets the same vector.
    docs = _docs()
    answer = NaiveBaseline(docs, DeterministicFakeEmbedding(size=64)).ask(docs[1].page_content, k=2)
    assert answer.retrieved[0].text == docs[1].page_content
    assert answer.retrieved[0].source == "ane.txt"
