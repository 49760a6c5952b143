"""Build, save and load the index: FAISS vectors + a JSON docstore + manifest.json. No pickle anywhere.

    report = build_index([Path("corpus")], settings)        # adds and updates; unchanged files embed nothing
    index = load_index(settings)                            # checks the manifest against the settings
    hits = index.search(index.embed_query("A&E 4-hour target"), k=5)

Where the index lives is a `Store`, chosen by ASSISTANT_STORE (`open_store`): `FolderStore` (faiss, the
default, below) or `pgstore.PostgresStore` (postgres: PostgreSQL + pgvector, shared by many replicas).
Both are written by the same ingest (`build_index`: which files changed, what to read, what to embed),
read and embedded by a `Pipeline`: this process (`SerialPipeline`) or a Ray cluster (`distributed`).

Layout of the index folder (ASSISTANT_INDEX_DIR, default index/):
    manifest.json          model, runtime and model-file hash, dimension, chunking, per-file sha256,
                           version, build time, build folder
    targets.json           the targets register (every table row and prose priority, see chunking.Target)
    builds/<id>/           index.faiss, vectors.npy, units.npy, docstore.json, targets.json of one build
    .ingest.lock           held by the one ingest that may write (filelock)
A build is written aside and made current by atomically replacing manifest.json, so a crash at any
point leaves the previous index loadable. Ingests take the lock for their whole run, so a second one
starts from the first one's result instead of overwriting it; readers take no lock.
Each chunk's metadata lists its quotable units (sentences, table rows) as spans; units.npy holds one
vector per unit in chunk order, so the answer step can compare a question with each sentence.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import time
import uuid
import warnings
from collections.abc import Callable, Collection, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings

from assistant import __version__
from assistant.chunking import CHUNKER_VERSION, chunk_documents, targets_to_json
from assistant.config import EMBEDDING_RUNTIMES, Settings
from assistant.embeddings import describe, load_embeddings
from assistant.errors import (
    AssistantError,
    ConfigError,
    DocumentError,
    IndexBusyError,
    IndexMismatchError,
    IndexMissingError,
)
from assistant.loaders import Skipped, check_file, file_sha256, find_files, load_file
from assistant.passages import Furniture, Unit, units

# langchain-community is sunset upstream (pinned in pyproject); its FAISS store is what we use.
warnings.filterwarnings("ignore", message=".*langchain-community.*", category=DeprecationWarning)

FORMAT = 2  # 2: quotable units and their vectors
# Measured by `nhs-assistant bench` (docs/PERFORMANCE.md): exact search costs ~0.11-0.15 ms per 1,000
# vectors per query on one core, so above ~30k chunks it would eat the budget left after the ~20 ms query
# embedding. Above that: IVF. At 1M chunks IndexIVFFlat(nlist=4000) at nprobe 64 measured p50 7.1 ms,
# recall@10 0.967, 1.55 GB - the target (p50 <= 20 ms, recall >= 0.95, <= 2.5 GB). HNSW was not chosen:
# its 1M build did not fit the benchmark's time here and its recall on random vectors was 0.45.
IVF_NPROBE = 64
IVF_LISTS_PER_SQRT = 4  # nlist = 4 * sqrt(n), as measured
IVF_TRAIN_PER_LIST = 64  # training sample: 64 vectors per list (seeded), enough for k-means here
# With a filter, IVF can miss allowed chunks outside the probed lists; up to this many allowed chunks
# we rank them exactly instead, so a selective filter still returns k results.
FILTER_EXACT_MAX = 50_000
# How many times a reader re-reads the manifest when the build it named was replaced while it read.
LOAD_ATTEMPTS = 3
LOCK_NAME = ".ingest.lock"

Progress = Callable[[str, int, int], None]


@runtime_checkable
class Lexical(Protocol):
    """The lexical (BM25) side of retrieval: top-k (position, score), `mask` filtering before ranking."""

    def search(self, query: str, k: int, mask: np.ndarray | None = None) -> list[tuple[int, float]]: ...


@dataclass
class IngestReport:
    """What one ingest did: counts, time and the files it skipped with reasons."""

    files: int = 0
    pages: int = 0
    chunks: int = 0
    embedded: int = 0
    embedded_units: int = 0  # sentences and table rows embedded on their own (see passages.units)
    reused_files: int = 0
    removed_files: int = 0
    # Indexed earlier, not found in this run's paths, and kept because the run was not a --prune.
    kept_files: int = 0
    seconds: float = 0.0
    embed_seconds: float = 0.0
    skipped: list[Skipped] = field(default_factory=list)
    index_type: str = ""

    @property
    def chunks_per_s(self) -> float:
        return self.embedded / self.embed_seconds if self.embed_seconds else 0.0


@dataclass
class Index:
    """A loaded index: chunks in FAISS order, the FAISS vector store, the register and the manifest."""

    chunks: list[Document]
    vectorstore: Any  # langchain_community FAISS
    register: list[dict[str, Any]]  # every row of targets.json: table objectives and prose priorities
    manifest: dict[str, Any]
    embeddings: Embeddings
    unit_vectors: np.ndarray | None = None  # one row per unit, chunks in order
    # What the store answers now for "which build is current" (Store.generation), and that answer
    # when this index was read: they differ once another process has ingested.
    origin: Callable[[], object] | None = None
    generation: object = None

    @functools.cached_property
    def targets(self) -> list[dict[str, Any]]:
        """The register's table rows (kind "objective"): what list answers are made of."""
        return [t for t in self.register if t.get("kind", "objective") == "objective"]

    @functools.cached_property
    def unit_rows(self) -> list[int]:
        """The first row of each chunk's units in `unit_vectors` (and the total at the end)."""
        return [int(n) for n in np.cumsum([0] + [len(c.metadata.get("units") or ()) for c in self.chunks])]

    def units_of(self, position: int) -> tuple[list[Unit], np.ndarray | None]:
        """A chunk's quotable units and their vectors (None when the index has none)."""
        found = _units(self.chunks[position])
        if self.unit_vectors is None or not found:
            return found, None
        return found, self.unit_vectors[self.unit_rows[position] : self.unit_rows[position + 1]]

    def vector(self, position: int) -> np.ndarray:
        """The stored vector of the chunk at `position`."""
        return np.asarray(self.faiss_index.reconstruct(position), dtype="float32")

    def lexical(self) -> Lexical | None:
        """The store's own lexical search, or None when retrieval should build BM25 over `chunks`."""
        return None

    def outdated(self) -> bool:
        """Whether another ingest has made a newer build current since this index was read (cheap)."""
        return self.origin is not None and self.origin() != self.generation

    @functools.cached_property
    def by_id(self) -> dict[str, Document]:
        """Chunks by chunk_id (built once per loaded index)."""
        return {str(c.metadata["chunk_id"]): c for c in self.chunks}

    @property
    def faiss_index(self) -> Any:
        return self.vectorstore.index

    def embed_query(self, text: str) -> np.ndarray:
        return np.asarray(self.embeddings.embed_query(text), dtype="float32")

    def search(
        self, vector: np.ndarray, k: int, allowed: np.ndarray | None = None
    ) -> list[tuple[int, float]]:
        """Top-k (position, inner product); `allowed` (positions) filters before ranking, not after."""
        faiss = _faiss()

        if allowed is not None and len(allowed) == 0:
            return []
        params = None
        ivf = isinstance(self.faiss_index, faiss.IndexIVF)
        if allowed is not None and ivf and len(allowed) <= FILTER_EXACT_MAX:
            ids = np.asarray(allowed, dtype="int64")
            scores = self.faiss_index.reconstruct_batch(ids) @ vector.reshape(-1)
            top = np.argsort(-scores)[:k]
            return [(int(ids[i]), float(scores[i])) for i in top]
        if allowed is not None:
            selector = faiss.IDSelectorBatch(np.asarray(allowed, dtype="int64"))
            if ivf:
                params = faiss.SearchParametersIVF(sel=selector, nprobe=self.faiss_index.nprobe)
            else:
                params = faiss.SearchParameters(sel=selector)
        scores, ids = self.faiss_index.search(vector.reshape(1, -1), k, params=params)
        return [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if i >= 0]


def _units(chunk: Document) -> list[Unit]:
    """A chunk's quotable units, from the [start, end, flags] spans in its metadata."""
    return [
        Unit(chunk.page_content[a:b], a, row="r" in f, caption="c" in f)
        for a, b, f in chunk.metadata.get("units") or ()
    ]


def _faiss() -> Any:
    """faiss, imported lazily and typed as Any (its bundled stubs miss the SWIG classes we use)."""
    import faiss

    return faiss


def manifest_path(index_dir: Path) -> Path:
    return index_dir / "manifest.json"


def read_manifest(index_dir: Path) -> dict[str, Any] | None:
    """The current manifest, or None when there is no index."""
    path = manifest_path(index_dir)
    if not path.is_file():
        return None
    try:
        return dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError) as err:
        raise IndexMissingError(
            f"{path} is unreadable ({err}); run `nhs-assistant ingest` to rebuild the index."
        ) from None


def check_manifest(
    manifest: dict[str, Any], settings: Settings, model: str | None = None, where: str | None = None
) -> None:
    """Raise IndexMismatchError naming each setting that differs from the index's, and what to run."""
    expected = {
        "embedding_model": model or settings.embedding_model,
        # A runtime that gives other vectors (int8) is an index change; onnx and torch give the same.
        "embedding_vectors": EMBEDDING_RUNTIMES[settings.embedding_runtime],
        "chunk_size": settings.chunk_size,
        "chunk_overlap": settings.chunk_overlap,
        "chunker": CHUNKER_VERSION,
        "format": FORMAT,
    }
    found = {"embedding_vectors": "fp32"} | manifest  # indexes from before runtimes were fp32 (torch)
    diffs = [f"{k} {found.get(k)!r} (settings say {v!r})" for k, v in expected.items() if found.get(k) != v]
    if diffs:
        raise IndexMismatchError(
            f"The index in {where or settings.index_dir} was built with {', '.join(diffs)}; "
            "run `nhs-assistant ingest` to rebuild it with the current settings."
        )


# --- where an index lives ---------------------------------------------------------------------------


@dataclass
class Fresh:
    """A file this ingest (re)indexes: its manifest entry, chunks, their vectors, its register rows."""

    meta: dict[str, Any]
    chunks: list[Document]
    vectors: np.ndarray  # one row per chunk
    unit_vectors: np.ndarray  # one row per unit, chunks in order
    targets: list[dict[str, Any]]


@dataclass
class Plan:
    """What one ingest asks a store to write: the new index's files in order, and which of them are
    fresh; every other file in `order` stays as it is indexed, and `removed` files leave."""

    embedding: dict[str, Any]  # the manifest's fields on the embedder (Pipeline.describe)
    order: list[str]
    fresh: dict[str, Fresh]
    removed: list[str]
    inputs: list[str]


class Previous(Protocol):
    """The current index as an ingest sees it: what can be reused instead of embedded again."""

    manifest: dict[str, Any]
    files: dict[str, dict[str, Any]]

    def vectors_of(self, name: str) -> dict[str, tuple[Any, np.ndarray, np.ndarray]]:
        """chunk_id -> (units, vector, unit vectors) of each chunk of file `name` as indexed now."""
        ...


class Store(Protocol):
    """Where an index lives. One ingest writes at a time; readers never wait and never see half a build."""

    settings: Settings

    @property
    def where(self) -> str:
        """The store as a message names it (never with a password)."""
        ...

    def lock(self, wait: bool, on_wait: Callable[[str], None] | None) -> AbstractContextManager[None]:
        """Hold the writer lock (released if the holder dies); IndexBusyError when busy and not `wait`."""
        ...

    def previous(self, model: str) -> Previous | None:
        """The current index when it can be reused (same model and chunking), else None."""
        ...

    def write(self, plan: Plan, old: Previous | None, fail_after_write: Callable[[], None] | None) -> str:
        """Make `plan` the current index in one step (a crash leaves the old one); the index type."""
        ...

    def load(self, embeddings: Embeddings | None, model: str | None) -> Index:
        """The current index, after checking its manifest against the settings."""
        ...

    def generation(self) -> object:
        """A cheap token that changes whenever an ingest makes a new build current."""
        ...


def open_store(settings: Settings) -> Store:
    """The store ASSISTANT_STORE names: `faiss` (an index folder, the default) or `postgres`."""
    if settings.store == "faiss":
        return FolderStore(settings)
    try:
        from assistant.pgstore import PostgresStore
    except ImportError as err:
        raise ConfigError(
            f"ASSISTANT_STORE=postgres needs the {err.name} package; run `pip install -e '.[postgres]'`."
        ) from None
    return PostgresStore(settings)


def load_index(settings: Settings, embeddings: Embeddings | None = None, model: str | None = None) -> Index:
    """Load the current index of the store the settings name, after checking its manifest."""
    return open_store(settings).load(embeddings, model)


def _embeddings(settings: Settings, embeddings: Embeddings | None) -> Embeddings:
    return embeddings if embeddings is not None else load_embeddings(settings)


class FolderStore:
    """The index as files in ASSISTANT_INDEX_DIR: FAISS, JSON and .npy (see the module docstring)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @property
    def where(self) -> str:
        return f"{self.settings.index_dir}/"

    def lock(self, wait: bool, on_wait: Callable[[str], None] | None) -> AbstractContextManager[None]:
        return writer_lock(self.settings.index_dir, wait, on_wait)

    def previous(self, model: str) -> _Previous | None:
        return _previous(self.settings, model)

    def generation(self) -> object:
        # os.replace gives the manifest a new inode: a stat, not a read, tells that a build was made current
        try:
            stat = manifest_path(self.settings.index_dir).stat()
        except OSError:
            return None
        return (stat.st_ino, stat.st_mtime_ns, stat.st_size)

    def load(self, embeddings: Embeddings | None, model: str | None) -> Index:
        from langchain_community.docstore.in_memory import InMemoryDocstore
        from langchain_community.vectorstores import FAISS
        from langchain_community.vectorstores.utils import DistanceStrategy

        generation = self.generation()
        manifest, faiss_index, records, targets, unit_vectors = _read_current(self.settings, model)
        chunks = [
            Document(page_content=r["page_content"], metadata=r["metadata"], id=r["id"]) for r in records
        ]
        embeddings = _embeddings(self.settings, embeddings)
        vectorstore = FAISS(
            embedding_function=embeddings,
            index=faiss_index,
            docstore=InMemoryDocstore({str(c.id): c for c in chunks}),
            index_to_docstore_id={i: str(c.id) for i, c in enumerate(chunks)},
            distance_strategy=DistanceStrategy.MAX_INNER_PRODUCT,
        )
        return Index(
            chunks, vectorstore, targets, manifest, embeddings, unit_vectors, self.generation, generation
        )

    def write(self, plan: Plan, old: Previous | None, fail_after_write: Callable[[], None] | None) -> str:
        chunks: list[Document] = []
        vectors: list[np.ndarray] = []
        unit_vectors: list[np.ndarray] = []
        targets: list[dict[str, Any]] = []
        files: dict[str, dict[str, Any]] = {}
        for name in plan.order:
            if name in plan.fresh:
                fresh = plan.fresh[name]
                chunks += fresh.chunks
                vectors.append(fresh.vectors)
                unit_vectors.append(fresh.unit_vectors)
                targets += fresh.targets
                files[name] = fresh.meta
                continue
            assert isinstance(old, _Previous)  # a file kept as it is comes from the current build
            positions = old.by_source.get(name, [])
            chunks += [old.chunks[i] for i in positions]
            vectors += [np.asarray(old.vectors[i]).reshape(1, -1) for i in positions]
            unit_vectors += [old.units_of(i) for i in positions]
            targets += [t for t in old.targets if t["source"] == name]
            files[name] = old.files[name]
        return _write_build(
            self.settings,
            plan.embedding,
            chunks,
            _stack(vectors),
            _stack(unit_vectors),
            targets,
            files,
            plan.inputs,
            fail_after_write,
        )


def _stack(blocks: list[np.ndarray]) -> np.ndarray:
    """Rows of several (n, d) blocks as one float32 matrix (blocks of no rows left out)."""
    rows = [b.reshape(len(b), -1) for b in blocks if len(b)]
    return np.vstack(rows).astype("float32") if rows else np.empty((0, 0), dtype="float32")


def _read_current(
    settings: Settings, model: str | None
) -> tuple[dict[str, Any], Any, list[Any], list[Any], np.ndarray]:
    """The manifest, FAISS index, docstore records, register and unit vectors of the current build."""
    faiss = _faiss()
    for attempt in range(LOAD_ATTEMPTS):
        manifest = read_manifest(settings.index_dir)
        if manifest is None:
            raise IndexMissingError(f"No index in {settings.index_dir}/ - run `nhs-assistant ingest`.")
        check_manifest(manifest, settings, model)
        build = settings.index_dir / "builds" / manifest["build"]
        try:
            faiss_index = faiss.read_index(str(build / "index.faiss"))
            if (
                isinstance(faiss_index, faiss.IndexIVF)
                and faiss_index.direct_map.type == faiss.DirectMap.NoMap
            ):
                faiss_index.make_direct_map()
            records = json.loads((build / "docstore.json").read_text(encoding="utf-8"))
            targets = json.loads((build / "targets.json").read_text(encoding="utf-8"))
            unit_vectors = np.load(build / "units.npy", allow_pickle=False)
            return manifest, faiss_index, records, targets, unit_vectors
        except (OSError, RuntimeError, ValueError) as err:
            # An ingest that finished while this read went on removes the build it replaced: read the
            # new one. Only a build the manifest still names is damaged.
            latest = read_manifest(settings.index_dir) or {}
            if latest.get("build") != manifest["build"] and attempt + 1 < LOAD_ATTEMPTS:
                continue
            raise IndexMissingError(
                f"The index build in {build} is damaged ({type(err).__name__}); run `nhs-assistant ingest`."
            ) from None
    raise AssertionError("unreachable")  # pragma: no cover - the last attempt returns or raises


def make_faiss_index(vectors: np.ndarray, exact_max: int) -> tuple[Any, str]:
    """Exact inner-product search up to `exact_max` vectors, IVF above it (see docs/PERFORMANCE.md)."""
    faiss = _faiss()

    dim = vectors.shape[1]
    if len(vectors) <= exact_max:
        index = faiss.IndexFlatIP(dim)
        kind = "IndexFlatIP"
    else:
        nlist = max(1, int(IVF_LISTS_PER_SQRT * len(vectors) ** 0.5))
        quantizer = faiss.IndexFlatIP(dim)
        index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
        sample = np.random.default_rng(0).permutation(len(vectors))[: nlist * IVF_TRAIN_PER_LIST]
        index.train(np.ascontiguousarray(vectors[np.sort(sample)], dtype="float32"))
        index.nprobe = min(IVF_NPROBE, nlist)
        kind = f"IndexIVFFlat(nlist={nlist},nprobe={index.nprobe})"
    if len(vectors):
        index.add(np.ascontiguousarray(vectors, dtype="float32"))
    if kind.startswith("IndexIVF"):
        index.make_direct_map()  # reconstruct() by position: filtered search and re-scoring use it
    return index, kind


def build_index(
    paths: Iterable[Path],
    settings: Settings,
    embeddings: Embeddings | None = None,
    progress: Progress | None = None,
    model: str | None = None,
    fail_after_write: Callable[[], None] | None = None,
    *,
    prune: bool = False,
    remove: Collection[str] = (),
    wait: bool = True,
    on_wait: Callable[[str], None] | None = None,
    pipeline: Pipeline | None = None,
) -> IngestReport:
    """Add and update the files below `paths`, reusing unchanged files' chunks and vectors.

    Files indexed earlier and not found below `paths` stay in the index unless `prune` is set or they
    are named in `remove` (the file names of documents taken out of the corpus on purpose). One
    ingest writes at a time: a second one waits for the first (telling `on_wait`), or with `wait=False`
    raises IndexBusyError. A file that cannot be read is skipped with its reason; AssistantError is
    raised only when nothing below `paths` could be indexed (the previous index stays as it was).
    Files are read and embedded by `pipeline` (default: in this process, with `embeddings`).
    `fail_after_write` is a test hook called after the new build is written and before it is made current.
    """
    model = model or settings.embedding_model
    store = open_store(settings)
    with store.lock(wait, on_wait):
        return _build(
            store,
            [Path(p) for p in paths],
            pipeline or SerialPipeline(settings, embeddings, model),
            progress,
            model,
            fail_after_write,
            prune,
            remove,
        )


@contextmanager
def writer_lock(
    index_dir: Path, wait: bool = True, on_wait: Callable[[str], None] | None = None
) -> Iterator[None]:
    """Hold the index folder's writer lock (filelock: released by the OS if the holder dies)."""
    from filelock import FileLock, Timeout

    index_dir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(index_dir / LOCK_NAME)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        if not wait:
            raise IndexBusyError(
                f"Another ingest is writing {index_dir}/ now; wait for it to finish, or run without --no-wait "
                "to queue behind it."
            ) from None
        if on_wait:
            on_wait(f"Another ingest is writing {index_dir}/; waiting for it to finish…")
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


# --- reading and embedding --------------------------------------------------------------------------


@dataclass
class Chunked:
    """One file read and split: its page count, chunks (units marked) and register rows."""

    pages: int
    chunks: list[Document]
    targets: list[dict[str, Any]]


def read_file(path: Path, chunk_size: int, chunk_overlap: int) -> Chunked | str:
    """One file read and split into chunks, or the reason it could not be (the run goes on without it)."""
    try:
        docs = load_file(path)
        chunks, targets = chunk_documents(docs, chunk_size, chunk_overlap)
        _mark_units(chunks)
    except Exception as err:  # noqa: BLE001 - whatever one file does, the run goes on without it
        return _reason(err)
    return Chunked(len(docs), chunks, targets_to_json(targets))


class Pipeline(Protocol):
    """How an ingest reads and embeds: in this process, or on a cluster (distributed.RayPipeline)."""

    def read(self, paths: list[Path]) -> Iterator[tuple[Path, Chunked | str]]:
        """Each file read and split (see `read_file`), in any order, as each is done."""
        ...

    def embed(
        self, texts: list[str], unit_texts: list[str], progress: Progress | None
    ) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """The vectors of chunk texts and of unit texts, in the order given."""
        ...

    def describe(self) -> dict[str, Any]:
        """The manifest's fields on the embedder: model, runtime, kind of vectors, model file hashes."""
        ...


class SerialPipeline:
    """Reads and embeds in this process (the model loads only if something needs embedding)."""

    def __init__(self, settings: Settings, embeddings: Embeddings | None, model: str) -> None:
        self.settings = settings
        self.embeddings = embeddings
        self.model = model

    def read(self, paths: list[Path]) -> Iterator[tuple[Path, Chunked | str]]:
        for path in paths:
            yield path, read_file(path, self.settings.chunk_size, self.settings.chunk_overlap)

    def embed(
        self, texts: list[str], unit_texts: list[str], progress: Progress | None
    ) -> tuple[list[np.ndarray], list[np.ndarray]]:
        if not texts and not unit_texts:
            return [], []
        embeddings = self._embeddings()
        return (
            _embed(embeddings, texts, progress, "embedding"),
            _embed(embeddings, unit_texts, progress, "embedding sentences"),
        )

    def describe(self) -> dict[str, Any]:
        return {
            "embedding_model": self.model,
            **describe(self._embeddings(), self.settings.embedding_runtime),
        }

    def _embeddings(self) -> Embeddings:
        if self.embeddings is None:
            self.embeddings = load_embeddings(self.settings, self.model)
        return self.embeddings


# --- one ingest -------------------------------------------------------------------------------------


def _build(
    store: Store,
    inputs: list[Path],
    pipeline: Pipeline,
    progress: Progress | None,
    model: str,
    fail_after_write: Callable[[], None] | None,
    prune: bool,
    remove: Collection[str],
) -> IngestReport:
    started = time.perf_counter()
    settings = store.settings
    report = IngestReport()
    old = store.previous(model)
    files, report.skipped = find_files(inputs)
    found = {path.name for path in files} | {s.path.name for s in report.skipped}
    order: list[str] = []  # the files of the new index, in order
    shas: dict[str, str] = {}
    to_read: list[Path] = []
    for n, path in enumerate(files, start=1):
        if progress:
            progress(f"checking {path.name}", n, len(files))
        if path.name in shas:
            report.skipped.append(Skipped(path, "a file with the same name comes first; rename one of them"))
            continue
        previous = old.files.get(path.name) if old else None
        try:
            check_file(path, settings.max_upload_mb * 2**20)  # by its size, before any of it is read
            shas[path.name] = file_sha256(path)
        except Exception as err:  # noqa: BLE001 - whatever one file does, the run goes on without it
            report.skipped.append(Skipped(path, _reason(err) + (_KEPT if previous else "")))
            continue
        order.append(path.name)
        if previous and previous["sha256"] == shas[path.name]:
            report.reused_files += 1
            report.pages += previous.get("pages", 0)
        else:
            to_read.append(path)
    chunked: dict[str, tuple[Path, Chunked]] = {}
    for n, (path, result) in enumerate(pipeline.read(to_read), start=1):
        if progress:
            progress(f"read {path.name}", n, len(to_read))
        if isinstance(result, str):
            was_indexed = old is not None and path.name in old.files
            report.skipped.append(Skipped(path, result + (_KEPT if was_indexed else "")))
            order.remove(path.name)
        else:
            chunked[path.name] = (path, result)
    if not order:
        reasons = "; ".join(str(s) for s in report.skipped) or "no supported files found"
        raise AssistantError(
            f"Nothing was indexed ({reasons}); add PDF, DOCX, TXT, MD or HTML files and retry."
        )
    removed: list[str] = []
    for name in old.files if old else {}:
        if name in order:
            continue
        if name in found:  # found but unreadable this time: its earlier version stays (see _KEPT)
            order.append(name)
        elif prune or name in remove:
            removed.append(name)
            continue
        else:
            order.append(name)
            report.kept_files += 1
        report.pages += old.files[name].get("pages", 0)  # type: ignore[union-attr]
    report.files, report.removed_files = len(order), len(removed)
    earlier = [] if prune or old is None else list(old.manifest.get("inputs", []))
    recorded = list(dict.fromkeys(earlier + [str(p) for p in inputs]))
    fresh = _vectors(chunked, shas, old, pipeline, progress, report)
    report.pages += sum(f.meta["pages"] for f in fresh.values())
    indexed = old.files if old else {}
    report.chunks = sum(
        len(fresh[n].chunks) if n in fresh else int(indexed[n].get("chunks", 0)) for n in order
    )
    if old is None or fresh or removed or order != list(old.files):
        plan = Plan(pipeline.describe(), order, fresh, removed, recorded)
        report.index_type = store.write(plan, old, fail_after_write)
    else:
        report.index_type = old.manifest.get("index_type", "")
    report.seconds = time.perf_counter() - started
    return report


def _vectors(
    chunked: dict[str, tuple[Path, Chunked]],
    shas: dict[str, str],
    old: Previous | None,
    pipeline: Pipeline,
    progress: Progress | None,
    report: IngestReport,
) -> dict[str, Fresh]:
    """The fresh files with every vector they need: reused where a chunk (and its units) is unchanged,
    else embedded by the pipeline."""
    reused: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    to_embed: list[Document] = []
    for name, (_, result) in chunked.items():
        before = old.vectors_of(name) if old is not None and name in old.files else {}
        for chunk in result.chunks:
            match = before.get(chunk.metadata["chunk_id"])
            if match is not None and match[0] == chunk.metadata["units"]:
                reused[chunk.metadata["chunk_id"]] = (match[1], match[2])
            else:
                to_embed.append(chunk)
    unit_texts = [_unit_text(c, a, b) for c in to_embed for a, b, _ in c.metadata["units"]]
    t0 = time.perf_counter()
    embedded, embedded_units = pipeline.embed([c.page_content for c in to_embed], unit_texts, progress)
    report.embed_seconds = time.perf_counter() - t0 if to_embed else 0.0
    report.embedded, report.embedded_units = len(to_embed), len(unit_texts)
    fresh_units = iter(embedded_units)
    for chunk, vector in zip(to_embed, embedded, strict=True):
        rows = [next(fresh_units) for _ in chunk.metadata["units"]]
        reused[chunk.metadata["chunk_id"]] = (
            vector,
            np.array(rows, dtype="float32").reshape(-1, len(vector)),
        )
    out: dict[str, Fresh] = {}
    for name, (path, result) in chunked.items():
        ids = [c.metadata["chunk_id"] for c in result.chunks]
        meta = {"sha256": shas[name], "pages": result.pages, "chunks": len(ids), "path": str(path)}
        out[name] = Fresh(
            meta,
            result.chunks,
            _stack([np.asarray(reused[i][0], dtype="float32").reshape(1, -1) for i in ids]),
            _stack([reused[i][1] for i in ids]),
            result.targets,
        )
    return out


_KEPT = " (the version indexed earlier is kept)"


def _reason(err: Exception) -> str:
    """Why one file was not indexed, as the Skipped line says it."""
    if isinstance(err, DocumentError):
        return err.reason
    if isinstance(err, OSError):
        return f"cannot read file ({err.strerror or type(err).__name__})"
    return f"could not be split into passages ({type(err).__name__}); re-save it as plain text"


def _mark_units(chunks: list[Document]) -> None:
    """Record each chunk's quotable units as [start, end, flags] spans ("r" a table row, "c" a caption),
    with the file's running headers and footers (computed over all its pages) set aside."""
    furniture = Furniture.from_chunks(chunks)
    for chunk in chunks:
        chunk.metadata["units"] = [
            [u.start, u.start + len(u.text), ("r" if u.row else "") + ("c" if u.caption else "")]
            for u in units(chunk, furniture)
        ]


def _unit_text(chunk: Document, start: int, end: int) -> str:
    """What a unit is embedded as: its section (or area, or document title) for context, then its words."""
    where = chunk.metadata.get("section") or chunk.metadata.get("area") or chunk.metadata.get("title") or ""
    words = " ".join(chunk.page_content[start:end].split())
    return f"{where}: {words}" if where else words


def _embed(
    embeddings: Embeddings, texts: list[str], progress: Progress | None, label: str
) -> list[np.ndarray]:
    """Vectors of `texts` in their order, embedded longest first in calls of 256 (progress between calls)."""
    # Sorted across the whole ingest, not per call, so each call's batches are of one length and pad little.
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    out: list[np.ndarray] = [np.empty(0, dtype="float32")] * len(texts)
    step = 256
    for start in range(0, len(order), step):
        part = order[start : start + step]
        vectors = np.asarray(embeddings.embed_documents([texts[i] for i in part]), dtype="float32")
        for i, vector in zip(part, vectors, strict=True):
            out[i] = vector
        if progress:
            progress(label, min(start + step, len(texts)), len(texts))
    return out


@dataclass
class _Previous:
    manifest: dict[str, Any]
    files: dict[str, dict[str, Any]]
    chunks: list[Document]
    vectors: np.ndarray
    targets: list[dict[str, Any]]
    position: dict[str, int]
    by_source: dict[str, list[int]]
    unit_vectors: np.ndarray

    @functools.cached_property
    def unit_rows(self) -> list[int]:
        return [int(n) for n in np.cumsum([0] + [len(c.metadata.get("units") or ()) for c in self.chunks])]

    def units_of(self, position: int) -> np.ndarray:
        """The vectors of the units of the chunk at `position`."""
        return np.asarray(self.unit_vectors[self.unit_rows[position] : self.unit_rows[position + 1]])

    def vectors_of(self, name: str) -> dict[str, tuple[Any, np.ndarray, np.ndarray]]:
        return {
            self.chunks[i].metadata["chunk_id"]: (
                self.chunks[i].metadata.get("units"),
                np.asarray(self.vectors[i]),
                self.units_of(i),
            )
            for i in self.by_source.get(name, [])
        }


def _previous(settings: Settings, model: str) -> _Previous | None:
    """The current build, when it can be reused (same model and chunking); else None (full rebuild)."""
    try:
        manifest = read_manifest(settings.index_dir)
        if manifest is None:
            return None
        check_manifest(manifest, settings, model)
        build = settings.index_dir / "builds" / manifest["build"]
        records = json.loads((build / "docstore.json").read_text(encoding="utf-8"))
        vectors = np.load(build / "vectors.npy", mmap_mode="r", allow_pickle=False)
        unit_vectors = np.load(build / "units.npy", mmap_mode="r", allow_pickle=False)
        targets = json.loads((build / "targets.json").read_text(encoding="utf-8"))
    except (AssistantError, OSError, ValueError, KeyError):
        return None
    chunks = [Document(page_content=r["page_content"], metadata=r["metadata"], id=r["id"]) for r in records]
    by_source: dict[str, list[int]] = {}
    for i, c in enumerate(chunks):
        by_source.setdefault(c.metadata["source"], []).append(i)
    return _Previous(
        manifest,
        manifest.get("files", {}),
        chunks,
        vectors,
        targets,
        {c.metadata["chunk_id"]: i for i, c in enumerate(chunks)},
        by_source,
        unit_vectors,
    )


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_text(json.dumps(data, ensure_ascii=False, indent=1), encoding="utf-8")
    with tmp.open("rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _write_build(
    settings: Settings,
    embedding: dict[str, Any],
    chunks: list[Document],
    vectors: np.ndarray,
    unit_vectors: np.ndarray,
    targets: list[dict[str, Any]],
    files: dict[str, dict[str, Any]],
    inputs: list[str],
    fail_after_write: Callable[[], None] | None,
) -> str:
    faiss = _faiss()

    index_dir = settings.index_dir
    build_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:8]
    build = index_dir / "builds" / build_id
    build.mkdir(parents=True)
    faiss_index, kind = make_faiss_index(vectors, settings.exact_index_max)
    faiss.write_index(faiss_index, str(build / "index.faiss"))
    np.save(build / "vectors.npy", vectors, allow_pickle=False)
    np.save(build / "units.npy", unit_vectors, allow_pickle=False)
    records = [{"id": c.id, "page_content": c.page_content, "metadata": c.metadata} for c in chunks]
    (build / "docstore.json").write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    (build / "targets.json").write_text(json.dumps(targets, ensure_ascii=False, indent=1), encoding="utf-8")
    if fail_after_write:
        fail_after_write()
    manifest = {
        "format": FORMAT,
        "build": build_id,
        **embedding,
        "dimension": int(vectors.shape[1]),
        "chunk_size": settings.chunk_size,
        "chunk_overlap": settings.chunk_overlap,
        "chunker": CHUNKER_VERSION,
        "splitter": "table rows + RecursiveCharacterTextSplitter",
        "index_type": kind,
        "count": len(chunks),
        "files": files,
        "inputs": inputs,
        "package_version": __version__,
        "built_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    _write_json(index_dir / "targets.json", targets)
    _write_json(manifest_path(index_dir), manifest)  # the commit point
    for stale in (index_dir / "builds").iterdir():
        if stale.name != build_id:
            shutil.rmtree(stale, ignore_errors=True)
    return kind
