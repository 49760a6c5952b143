"""Distributed ingest on a Ray cluster (`nhs-assistant ingest --ray [ADDRESS]`), with Ray Data.

    with ray_pipeline(settings, address=None, workers=2) as pipeline:    # a local cluster without ADDRESS
        build_index([Path("corpus")], settings, pipeline=pipeline)

Two Ray Data stages, each a Dataset the cluster runs in parallel:
    read   one row per file -> the file loaded, split and its units marked (store.read_file)
    embed  one row per text (chunk texts, then unit texts) -> its vector, by `workers` actors that
           each load the embedding model once
This process decides what to read (file hashes against the index) and what to embed (vectors reused by
chunk id), then the store writes as after a serial ingest: the same chunk ids and texts, vectors equal
to float rounding (tested within 1e-5). Every node needs this package and the embedding model installed
and the files at the same path (shared storage), as for any Ray Data read. Ray carries rows between
processes in its object store (Arrow, and cloudpickle for the model when one is passed in); nothing is
written to disk in either format.
"""

from __future__ import annotations

import functools
import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings

from assistant.config import Settings
from assistant.embeddings import describe, load_embeddings
from assistant.errors import ConfigError
from assistant.store import Chunked, Progress, read_file

# Texts per embedding batch: small enough that progress moves and actors share the work evenly.
EMBED_BATCH = 64


@contextmanager
def ray_pipeline(
    settings: Settings,
    address: str | None = None,
    workers: int | None = None,
    embeddings: Embeddings | None = None,
    model: str | None = None,
    object_store_mb: int | None = None,
) -> Iterator[RayPipeline]:
    """A RayPipeline on the cluster at `address` (`auto`, `host:6379`, `ray://host:10001`), or on a
    local cluster of `workers` CPUs (default: all) when there is none; a cluster this call started is
    shut down after. `embeddings`, when given, is shipped to the workers instead of loading `model`."""
    try:
        import ray
    except ImportError:
        raise ConfigError("--ray needs Ray; run `pip install -e '.[ray]'`.") from None
    if workers is not None and workers < 1:
        raise ConfigError(f"--workers ({workers}) must be at least 1.")
    started = not ray.is_initialized()
    if started:
        options: dict[str, Any] = {
            "include_dashboard": False,
            "log_to_driver": False,
            "logging_level": logging.WARNING,
        }
        try:
            if address:
                ray.init(address=address, **options)
            else:
                ray.init(
                    num_cpus=workers or os.cpu_count() or 1,
                    object_store_memory=object_store_mb * 2**20 if object_store_mb else None,
                    **options,
                )
        except (ConnectionError, RuntimeError, ValueError) as err:
            raise ConfigError(
                f"Cannot start or join the Ray cluster at {address or 'this machine'} ({err}); check the "
                "address (`ray status` on the head node prints it) or run without --ray."
            ) from None
    import ray.data

    logging.getLogger("ray.data").setLevel(logging.ERROR)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # the CLI draws its own from `progress`
    try:
        cpus = int(ray.cluster_resources().get("CPU", 1))
        yield RayPipeline(settings, workers or cpus, embeddings, model or settings.embedding_model)
    finally:
        if started:
            ray.shutdown()


class RayPipeline:
    """Reads and embeds as Ray Data batches across the cluster (see store.Pipeline)."""

    def __init__(self, settings: Settings, workers: int, embeddings: Embeddings | None, model: str) -> None:
        self.settings = settings
        self.workers = workers
        self.embeddings = embeddings
        self.model = model

    def read(self, paths: list[Path]) -> Iterator[tuple[Path, Chunked | str]]:
        import ray.data

        if not paths:
            return
        dataset = ray.data.from_items(
            [{"path": str(p)} for p in paths], override_num_blocks=min(len(paths), 10 * self.workers)
        ).map(
            functools.partial(_read_row, size=self.settings.chunk_size, overlap=self.settings.chunk_overlap)
        )
        for row in dataset.iter_rows():
            yield Path(row["path"]), row["error"] or _decode(row["data"])

    def embed(
        self, texts: list[str], unit_texts: list[str], progress: Progress | None
    ) -> tuple[list[np.ndarray], list[np.ndarray]]:
        import ray.data

        everything = texts + unit_texts
        if not everything:
            return [], []
        dataset = ray.data.from_items([{"i": i, "text": t} for i, t in enumerate(everything)]).map_batches(
            _Embedder,
            fn_constructor_kwargs={
                "model": self.model,
                "runtime": self.settings.embedding_runtime,
                "cache_dir": str(self.settings.model_cache_dir),
                "embeddings": self.embeddings,
            },
            batch_size=EMBED_BATCH,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=self.workers),
            num_cpus=1,
        )
        vectors: list[np.ndarray | None] = [None] * len(everything)
        done = 0
        for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
            for i, vector in zip(batch["i"], batch["vector"], strict=True):
                vectors[int(i)] = np.asarray(vector, dtype="float32")
            done += len(batch["i"])
            if progress:
                progress("embedding", done, len(everything))
        out = [v for v in vectors if v is not None]
        if len(out) != len(everything):
            raise RuntimeError(f"Ray returned {len(out)} vectors for {len(everything)} texts")
        return out[: len(texts)], out[len(texts) :]

    def describe(self) -> dict[str, Any]:
        # The workers load the same model files in the same runtime; this process reads their hashes.
        embeddings = (
            self.embeddings if self.embeddings is not None else load_embeddings(self.settings, self.model)
        )
        return {"embedding_model": self.model, **describe(embeddings, self.settings.embedding_runtime)}


def _read_row(row: dict[str, Any], size: int, overlap: int) -> dict[str, Any]:
    """One file read and split on a worker, as a row of plain values (Arrow carries it back)."""
    result = read_file(Path(row["path"]), size, overlap)
    if isinstance(result, str):
        return {"path": row["path"], "error": result, "data": ""}
    data = {
        "pages": result.pages,
        "chunks": [{"text": c.page_content, "metadata": c.metadata} for c in result.chunks],
        "targets": result.targets,
    }
    return {"path": row["path"], "error": "", "data": json.dumps(data, ensure_ascii=False)}


def _decode(data: str) -> Chunked:
    record = json.loads(data)
    chunks = [
        Document(page_content=c["text"], metadata=c["metadata"], id=c["metadata"]["chunk_id"])
        for c in record["chunks"]
    ]
    return Chunked(int(record["pages"]), chunks, record["targets"])


class _Embedder:
    """A Ray actor holding the embedding model (loaded once per actor)."""

    def __init__(self, model: str, runtime: str, cache_dir: str, embeddings: Embeddings | None) -> None:
        # Only what loading the model needs travels to the workers (the settings hold the store's DSN).
        settings = Settings(embedding_runtime=runtime, model_cache_dir=Path(cache_dir))
        self.embeddings = embeddings if embeddings is not None else load_embeddings(settings, model)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        vectors = self.embeddings.embed_documents([str(t) for t in batch["text"]])
        return {"i": batch["i"], "vector": np.asarray(vectors, dtype="float32")}
