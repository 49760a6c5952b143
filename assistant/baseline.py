"""The naive LangChain recipe, scored beside the assistant: fixed-size chunks, FAISS, top chunk as answer.

docs, _ = load_corpus([Path("corpus")])
baseline = NaiveBaseline(docs, load_embeddings(Settings()))
answer = baseline.ask("What is the A&E 4-hour target?")
"""

from __future__ import annotations

import time
import warnings

from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings

from assistant.answer import Answer, Retrieved, citation_for
from assistant.chunking import chunk_id
from assistant.errors import AssistantError


class NaiveBaseline:
    """RecursiveCharacterTextSplitter(1000, 200) + an in-memory FAISS inner-product index; never saved."""

    def __init__(self, documents: list[Document], embeddings: Embeddings) -> None:
        with warnings.catch_warnings():
            # langchain-community is pinned on purpose (see pyproject); its sunset notice is noise here.
            warnings.simplefilter("ignore", DeprecationWarning)
            from langchain_community.vectorstores import FAISS
        from langchain_community.vectorstores.utils import DistanceStrategy
        from langchain_text_splitters import RecursiveCharacterTextSplitter

        splitter = RecursiveCharacterTextSplitter(chunk_size=1000, chunk_overlap=200)
        chunks: dict[str, Document] = {}
        for chunk in splitter.split_documents(documents):
            meta = chunk.metadata
            cid = chunk_id(str(meta.get("source")), meta.get("page"), chunk.page_content)
            # The same text on the same page twice is one chunk; FAISS refuses duplicate ids.
            chunks.setdefault(
                cid, Document(id=cid, page_content=chunk.page_content, metadata=meta | {"chunk_id": cid})
            )
        if not chunks:
            raise AssistantError("The baseline has no text to index; load at least one document with text.")
        self.chunks = list(chunks.values())
        self.store = FAISS.from_documents(
            self.chunks,
            embeddings,
            ids=[c.id for c in self.chunks],
            distance_strategy=DistanceStrategy.MAX_INNER_PRODUCT,
        )

    def ask(self, question: str, k: int = 5) -> Answer:
        """Answer with the top chunk's text, citing it whole; the k nearest chunks are the retrieved list."""
        start = time.perf_counter()
        hits = self.store.similarity_search_with_score(question, k=k)
        retrieved_at = time.perf_counter()
        top = hits[0][0]
        answer = Answer(
            question=question,
            text=top.page_content,
            refused=False,
            citations=[citation_for(1, top, top.page_content)],
            retrieved=[
                Retrieved(
                    chunk_id=str(doc.metadata["chunk_id"]),
                    source=str(doc.metadata.get("source")),
                    page=doc.metadata.get("page"),
                    score=float(score),
                    text=doc.page_content,
                )
                for doc, score in hits
            ],
        )
        end = time.perf_counter()
        answer.timings_ms = {
            "retrieve": (retrieved_at - start) * 1000,
            "answer": (end - retrieved_at) * 1000,
            "total": (end - start) * 1000,
        }
        return answer
