"""Property-based tests (hypothesis) of the chunker and of citation verification."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st
from langchain_core.documents import Document

from assistant.answer import Citation, numbers_in, verify
from assistant.chunking import chunk_documents

SIZE, OVERLAP = 200, 40
word = st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=10)
number = st.integers(min_value=0, max_value=99_999).map(str)
line = st.lists(st.one_of(word, word, number), min_size=1, max_size=30).map(" ".join)
heading = st.lists(word, min_size=1, max_size=5).map(lambda ws: " ".join([ws[0].capitalize(), *ws[1:]]))
paragraph = st.lists(line, min_size=1, max_size=4).map("\n".join)
row = st.tuples(word, line).map(lambda t: f"\t{t[0].capitalize()}\t{t[1].capitalize()}")
table = st.lists(row, min_size=2, max_size=6).map(lambda rows: "\tArea\tObjective\n" + "\n".join(rows))
page = st.lists(st.one_of(paragraph, paragraph, heading, table), min_size=1, max_size=12).map("\n\n".join)


def _chunks(text: str) -> list[Document]:
    doc = Document(page_content=text, metadata={"source": "p.txt", "page": 1, "title": "t", "sha256": "0"})
    return chunk_documents([doc], SIZE, OVERLAP)[0]


@settings(max_examples=150, deadline=None)
@given(page)
def test_chunks_lose_no_text_and_spans_stay_inside_the_page(text: str) -> None:
    chunks = _chunks(text)
    words = set(re.findall(r"\w+", text.lower())) - {"area", "objective"}
    assert words <= {w for c in chunks for w in re.findall(r"\w+", c.page_content.lower())}
    for c in chunks:
        assert 0 <= c.metadata["start"] < c.metadata["end"] <= len(text)
        if c.metadata["kind"] == "prose":
            assert text[c.metadata["start"] : c.metadata["end"]] in c.page_content


@settings(max_examples=150, deadline=None)
@given(st.lists(paragraph, min_size=1, max_size=8).map("\n\n".join))
def test_prose_is_duplicated_at_most_by_the_overlap(text: str) -> None:
    chunks = _chunks(text)
    covered = sum(c.metadata["end"] - c.metadata["start"] for c in chunks)
    assert covered <= len(text) + OVERLAP * len(chunks)


@settings(max_examples=100, deadline=None)
@given(page)
def test_chunk_ids_are_stable_and_unique(text: str) -> None:
    first, second = _chunks(text), _chunks(text)
    ids = [c.metadata["chunk_id"] for c in first]
    assert ids == [c.metadata["chunk_id"] for c in second]
    assert len(set(ids)) == len(ids)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(word, number), min_size=3, max_size=40), st.data())
def test_verified_quotes_are_verbatim_and_numbers_are_quoted(tokens: list[str], data: st.DataObject) -> None:
    text = " ".join(tokens)
    chunk = Document(page_content=text, metadata={"chunk_id": "c"})
    a = data.draw(st.integers(0, len(tokens) - 1))
    b = data.draw(st.integers(a + 1, len(tokens)))
    quote = " ".join(tokens[a:b])
    claim = data.draw(st.sampled_from([quote, f"target {quote}", f"{quote} and 123456"]))
    citation = Citation(1, "s", "t", None, None, quote, "c")
    shown, kept = verify(f"{claim} [1]", [citation], {"c": chunk})
    assert all(c.quote in chunk.page_content for c in kept)
    for line in filter(None, shown.split("\n")):
        assert numbers_in(re.sub(r"\[\d+\]", "", line)) <= numbers_in(quote)
    forged = Citation(1, "s", "t", None, None, quote + " 7777777", "c")
    shown, kept = verify(f"{quote} 7777777 [1]", [forged], {"c": chunk})
    assert kept == [] and shown == ""
