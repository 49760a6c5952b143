"""The index on disk: self-describing, incremental, atomic, no pickle."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from langchain_core.embeddings import DeterministicFakeEmbedding

from assistant.config import Settings
from assistant.errors import AssistantError, IndexMismatchError, IndexMissingError
from assistant.store import build_index, load_index

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
FAKE = "fake-64"


class CountingEmbedding(DeterministicFakeEmbedding):
    """A real Embeddings implementation that counts what it embeds."""

    embedded: int = 0

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        self.embedded += len(texts)
        return super().embed_documents(texts)


def _build(corpus: Path, settings: Settings, embed: CountingEmbedding | None = None):  # noqa: ANN202
    return build_index([corpus], settings, embeddings=embed or CountingEmbedding(size=64), model=FAKE)


def test_index_folder_describes_itself_and_holds_the_register(tmp_path: Path, corpus: Path) -> None:
    settings = Settings(index_dir=tmp_path / "index")
    report = _build(corpus, settings)
    manifest = json.loads((settings.index_dir / "manifest.json").read_text())
    assert manifest["embedding_model"] == FAKE and manifest["dimension"] == 64
    assert manifest["chunk_size"] == settings.chunk_size and manifest["built_at"]
    assert set(manifest["files"]) == {p.name for p in corpus.iterdir()}
    assert all(len(f["sha256"]) == 64 for f in manifest["files"].values())
    targets = json.loads((settings.index_dir / "targets.json").read_text())
    assert len([t for t in targets if t["source"] == "nhs-national-objectives-2023-24.txt"]) == 31
    (ae,) = [t for t in targets if "76%" in t["values"]]
    assert (ae["deadline"], ae["area"]) == ("March 2024", "Urgent and emergency care")
    assert report.chunks == manifest["count"]
    assert not list(settings.index_dir.rglob("*.pkl")) and not list(settings.index_dir.rglob("*.pickle"))
    index = load_index(settings, DeterministicFakeEmbedding(size=64), model=FAKE)
    assert len(index.chunks) == index.faiss_index.ntotal == report.chunks


def test_second_ingest_embeds_nothing_and_changes_embed_only_that_file(tmp_path: Path, corpus: Path) -> None:
    settings = Settings(index_dir=tmp_path / "index")
    _build(corpus, settings)
    again = CountingEmbedding(size=64)
    report = _build(corpus, settings, again)
    assert again.embedded == 0 and report.embedded == 0 and report.reused_files == 2
    (corpus / "extra.md").write_text("# Extra\n\nA new local target of 12,345 referrals.\n", encoding="utf-8")
    added = CountingEmbedding(size=64)
    report = _build(corpus, settings, added)
    assert (
        report.embedded == 1 and added.embedded == 1 + report.embedded_units
    )  # the chunk, then its sentences
    (corpus / "extra.md").unlink()
    report = _build(corpus, settings)  # adds and updates: a document gone from PATHS stays indexed
    assert (report.kept_files, report.removed_files, report.files) == (1, 0, 3)
    report = build_index([corpus], settings, embeddings=CountingEmbedding(size=64), model=FAKE, prune=True)
    assert report.removed_files == 1
    index = load_index(settings, DeterministicFakeEmbedding(size=64), model=FAKE)
    assert "extra.md" not in {c.metadata["source"] for c in index.chunks}


def test_failure_mid_build_leaves_the_old_index_loadable(tmp_path: Path, corpus: Path) -> None:
    settings = Settings(index_dir=tmp_path / "index")
    _build(corpus, settings)
    before = json.loads((settings.index_dir / "manifest.json").read_text())
    (corpus / "extra.md").write_text("# Extra\n\nSomething new.\n", encoding="utf-8")

    def crash() -> None:
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        build_index(
            [corpus], settings, embeddings=CountingEmbedding(size=64), model=FAKE, fail_after_write=crash
        )
    assert json.loads((settings.index_dir / "manifest.json").read_text()) == before
    index = load_index(settings, DeterministicFakeEmbedding(size=64), model=FAKE)
    assert len(index.chunks) == before["count"]
    report = _build(corpus, settings)  # the next ingest completes
    assert report.files == 3


def test_manifest_mismatch_says_what_to_run(tmp_path: Path, corpus: Path) -> None:
    settings = Settings(index_dir=tmp_path / "index")
    _build(corpus, settings)
    with pytest.raises(IndexMismatchError) as caught:
        load_index(settings.with_(chunk_size=500), DeterministicFakeEmbedding(size=64), model=FAKE)
    assert "chunk_size 800 (settings say 500)" in str(caught.value)
    assert "run `nhs-assistant ingest`" in str(caught.value)


def test_a_runtime_that_changes_vectors_is_an_index_change(tmp_path: Path, corpus: Path) -> None:
    settings = Settings(index_dir=tmp_path / "index")  # the default runtime, onnx (fp32 vectors)
    _build(corpus, settings)
    manifest = json.loads((settings.index_dir / "manifest.json").read_text())
    assert (manifest["embedding_runtime"], manifest["embedding_vectors"]) == ("onnx", "fp32")
    # torch gives the same vectors as onnx: the index stays usable and nothing is re-embedded.
    load_index(settings.with_(embedding_runtime="torch"), DeterministicFakeEmbedding(size=64), model=FAKE)
    same = CountingEmbedding(size=64)
    assert _build(corpus, settings.with_(embedding_runtime="torch"), same).embedded == 0
    int8 = settings.with_(embedding_runtime="onnx-int8")
    with pytest.raises(IndexMismatchError) as caught:
        load_index(int8, DeterministicFakeEmbedding(size=64), model=FAKE)
    assert "embedding_vectors 'fp32' (settings say 'int8')" in str(caught.value)
    assert "run `nhs-assistant ingest`" in str(caught.value)
    rebuilt = CountingEmbedding(size=64)
    report = _build(corpus, int8, rebuilt)
    # Every chunk (and every sentence unit) embedded again, as for a chunking change.
    assert report.embedded == report.chunks and rebuilt.embedded == report.embedded + report.embedded_units
    assert json.loads((settings.index_dir / "manifest.json").read_text())["embedding_vectors"] == "int8"


def test_an_index_from_before_runtimes_counts_as_fp32(tmp_path: Path, corpus: Path) -> None:
    settings = Settings(index_dir=tmp_path / "index")
    _build(corpus, settings)
    path = settings.index_dir / "manifest.json"
    manifest = json.loads(path.read_text())
    for key in ("embedding_runtime", "embedding_vectors", "embedding_files"):
        del manifest[key]
    path.write_text(json.dumps(manifest))
    assert load_index(settings, DeterministicFakeEmbedding(size=64), model=FAKE).chunks
    with pytest.raises(IndexMismatchError, match="embedding_vectors 'fp32'"):
        load_index(
            settings.with_(embedding_runtime="onnx-int8"), DeterministicFakeEmbedding(size=64), model=FAKE
        )


def test_missing_index_says_to_ingest(tmp_path: Path) -> None:
    with pytest.raises(IndexMissingError, match="run `nhs-assistant ingest`"):
        load_index(Settings(index_dir=tmp_path / "none"), DeterministicFakeEmbedding(size=64))


def test_bad_files_are_skipped_with_reasons_and_the_rest_indexed(tmp_path: Path, corpus: Path) -> None:
    for name in [
        "truncated.pdf",
        "image-only.pdf",
        "empty.txt",
        "binary-named.txt",
        "unsupported.xyz",
        "encrypted-password.pdf",
        "cp1252-notes.txt",
        "plan, with commas.txt",
    ]:
        shutil.copy(FIXTURES / name, corpus / name)
    report = _build(corpus, Settings(index_dir=tmp_path / "index"))
    reasons = {s.path.name: s.reason for s in report.skipped}
    assert set(reasons) == {
        "truncated.pdf",
        "image-only.pdf",
        "empty.txt",
        "binary-named.txt",
        "unsupported.xyz",
        "encrypted-password.pdf",
    }
    assert report.files == 4


def test_nothing_indexable_is_an_error_and_keeps_the_old_index(tmp_path: Path, corpus: Path) -> None:
    settings = Settings(index_dir=tmp_path / "index")
    _build(corpus, settings)
    bad = tmp_path / "bad"
    bad.mkdir()
    shutil.copy(FIXTURES / "empty.txt", bad / "empty.txt")
    with pytest.raises(AssistantError, match="Nothing was indexed"):
        _build(bad, settings)
    assert len(load_index(settings, DeterministicFakeEmbedding(size=64), model=FAKE).chunks) > 0


@pytest.mark.slow
def test_real_model_ranks_the_right_row_first(corpus_index: Path) -> None:
    settings = Settings(index_dir=corpus_index / "index")
    index = load_index(settings)
    hits = index.search(index.embed_query("bed occupancy for adult general and acute beds"), k=3)
    assert "92%" in index.chunks[hits[0][0]].page_content


def test_large_index_is_ivf_and_filters_still_return_k(tmp_path: Path, corpus: Path) -> None:
    import numpy as np

    settings = Settings(index_dir=tmp_path / "index", exact_index_max=10)
    report = _build(corpus, settings)
    assert report.index_type.startswith("IndexIVFFlat(")
    manifest = json.loads((settings.index_dir / "manifest.json").read_text())
    assert manifest["index_type"] == report.index_type
    index = load_index(settings, DeterministicFakeEmbedding(size=64), model=FAKE)
    vector = np.asarray(index.faiss_index.reconstruct(7), dtype="float32")
    assert index.search(vector, 3)[0][0] == 7  # a stored vector finds itself
    rows = np.array([i for i, c in enumerate(index.chunks) if c.metadata["area"] == "Mental health"])
    hits = index.search(vector, 5, allowed=rows)
    assert len(hits) == 5 and {i for i, _ in hits} <= set(rows.tolist())


def test_ingest_adds_and_keeps_documents_not_in_paths_unless_pruned(tmp_path: Path, corpus: Path) -> None:
    # issue 12 finding 10: `ingest new-folder/` removed every other document from the index
    settings = Settings(index_dir=tmp_path / "index")
    _build(corpus, settings)
    new = tmp_path / "new-folder"
    new.mkdir()
    (new / "local.md").write_text("# Local plan\n\nOpen 14 community beds.\n", encoding="utf-8")
    report = _build(new, settings)
    assert (report.files, report.kept_files, report.removed_files) == (3, 2, 0)
    index = load_index(settings, DeterministicFakeEmbedding(size=64), model=FAKE)
    assert {c.metadata["source"] for c in index.chunks} == {p.name for p in corpus.iterdir()} | {"local.md"}
    assert index.manifest["inputs"] == [str(corpus), str(new)]
    report = build_index([new], settings, embeddings=CountingEmbedding(size=64), model=FAKE, prune=True)
    assert (report.files, report.removed_files) == (1, 2)
    index = load_index(settings, DeterministicFakeEmbedding(size=64), model=FAKE)
    assert {c.metadata["source"] for c in index.chunks} == {"local.md"}


def test_a_file_unreadable_now_keeps_its_earlier_version(tmp_path: Path, corpus: Path) -> None:
    settings = Settings(index_dir=tmp_path / "index")
    (corpus / "local.md").write_text("# Local plan\n\nOpen 14 community beds.\n", encoding="utf-8")
    _build(corpus, settings)
    (corpus / "local.md").write_bytes(b"")
    report = build_index([corpus], settings, embeddings=CountingEmbedding(size=64), model=FAKE, prune=True)
    (skipped,) = report.skipped
    assert skipped.path.name == "local.md" and "kept" in skipped.reason
    index = load_index(settings, DeterministicFakeEmbedding(size=64), model=FAKE)
    assert any("14 community beds" in c.page_content for c in index.chunks)


def test_named_documents_leave_the_index(tmp_path: Path, corpus: Path) -> None:
    settings = Settings(index_dir=tmp_path / "index")
    _build(corpus, settings)
    (corpus / "nhs-business-plan-2023-24-breakdown.txt").unlink()
    report = build_index(
        [corpus],
        settings,
        embeddings=CountingEmbedding(size=64),
        model=FAKE,
        remove=["nhs-business-plan-2023-24-breakdown.txt"],
    )
    assert (report.files, report.removed_files) == (1, 1)


def test_size_limit_is_checked_before_the_file_is_read(
    tmp_path: Path, corpus: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # issue 12 finding 9: a file over the limit was hashed (read whole) before its size was checked
    with (corpus / "huge.pdf").open("wb") as fh:  # sparse: 60 MB on paper, nothing written
        fh.truncate(60 * 2**20)
    real_open = Path.open

    def guarded_open(self: Path, *args: object, **kwargs: object):  # noqa: ANN202
        if self.name == "huge.pdf":
            raise OSError(5, "read before its size was checked")  # injected fault: no read may happen
        return real_open(self, *args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(Path, "open", guarded_open)
    report = _build(corpus, Settings(index_dir=tmp_path / "index", max_upload_mb=50))
    (skipped,) = report.skipped
    assert skipped.path.name == "huge.pdf" and "over the 50 MB limit" in skipped.reason
    assert report.files == 2


def test_a_second_writer_waits_or_fails_clearly(tmp_path: Path, corpus: Path) -> None:
    from filelock import FileLock

    from assistant.errors import IndexBusyError
    from assistant.store import LOCK_NAME

    settings = Settings(index_dir=tmp_path / "index")
    settings.index_dir.mkdir()
    with FileLock(settings.index_dir / LOCK_NAME):  # another ingest holds the index
        with pytest.raises(IndexBusyError, match="Another ingest is writing .* without --no-wait"):
            build_index([corpus], settings, embeddings=CountingEmbedding(size=64), model=FAKE, wait=False)
    assert not (settings.index_dir / "manifest.json").exists()
    waited: list[str] = []
    report = build_index(
        [corpus], settings, embeddings=CountingEmbedding(size=64), model=FAKE, on_wait=waited.append
    )
    assert report.files == 2 and not waited  # free again: no wait, no message


def test_ingest_names_each_symbolic_link_it_skips(tmp_path: Path, corpus: Path) -> None:
    # issue 12 finding 3: a link to /etc/passwd was indexed, and a refusal then quoted it as a topic
    (corpus / "notes.txt").symlink_to("/etc/passwd")
    settings = Settings(index_dir=tmp_path / "index")
    report = _build(corpus, settings)
    assert [(s.path.name, "symbolic link" in s.reason) for s in report.skipped] == [("notes.txt", True)]
    index = load_index(settings, DeterministicFakeEmbedding(size=64), model=FAKE)
    assert "notes.txt" not in index.manifest["files"]
    assert not any("root:" in c.page_content or "root:" in c.metadata["title"] for c in index.chunks)


def test_a_file_that_breaks_the_chunker_is_skipped_and_the_run_goes_on(
    tmp_path: Path, corpus: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import assistant.store

    real = assistant.store.chunk_documents

    def failing(docs, *args):  # noqa: ANN001, ANN202 - injected fault for one file
        if docs[0].metadata["source"] == "odd.md":
            raise RecursionError("maximum recursion depth exceeded")
        return real(docs, *args)

    monkeypatch.setattr(assistant.store, "chunk_documents", failing)
    (corpus / "odd.md").write_text("# Odd\n\nText.\n", encoding="utf-8")
    report = _build(corpus, Settings(index_dir=tmp_path / "index"))
    assert [str(s) for s in report.skipped] == [
        "odd.md: could not be split into passages (RecursionError); re-save it as plain text"
    ]
    assert report.files == 2
