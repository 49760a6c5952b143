"""Ingest: pypdf pages/s, and `build_index` chunks/s in each embedding runtime (each in a fresh process)."""

from __future__ import annotations

import multiprocessing
import os
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from langchain_core.embeddings import Embeddings

from assistant.config import Settings
from bench.common import ROOT, SHARED_PDFS, Log, load_average, peak_rss_bytes, timed

# Before (the pipeline up to issue 16) first, then what replaced it; int8 only in the full run.
RUNTIMES_QUICK = ("torch", "onnx")
RUNTIMES_FULL = ("torch", "onnx", "onnx-int8")


def ingest_files(quick: bool) -> list[Path]:
    """The PDFs to ingest: 3 real pages when quick, else ../shared/pdfs (or the bundled PDFs without it)."""
    if quick:
        return [ROOT / "tests" / "fixtures" / "real-3-pages.pdf"]
    if SHARED_PDFS.is_dir() and list(SHARED_PDFS.glob("*.pdf")):
        return sorted(SHARED_PDFS.glob("*.pdf"))
    return [ROOT / "tests" / "fixtures" / "real-3-pages.pdf", *sorted((ROOT / "eval" / "pdfs").glob("*.pdf"))]


def _pages(path: Path) -> int:
    from assistant.loaders import load_file

    return len(load_file(path))


def bench_parse(files: list[Path], log: Log) -> dict[str, Any]:
    """pypdf pages/s over `files`, serially and across processes."""
    from assistant.loaders import load_file

    log(f"ingest: parsing {len(files)} PDF(s)")
    per_file: list[dict[str, Any]] = []
    pages = 0
    parse_s = 0.0
    for path in files:
        docs, seconds = timed(lambda p=path: load_file(p))  # type: ignore[misc]
        pages += len(docs)
        parse_s += seconds
        per_file.append({"file": path.name, "pages": len(docs), "seconds": round(seconds, 3)})
    out: dict[str, Any] = {
        "files": per_file,
        "pages": pages,
        "parse_seconds": round(parse_s, 3),
        "pages_per_s": round(pages / parse_s, 1),
    }
    if len(files) > 1:
        workers = min(len(files), os.cpu_count() or 1)
        order = sorted(files, key=lambda p: -p.stat().st_size)  # largest first: none starts last
        with ProcessPoolExecutor(workers) as pool:
            _, par_s = timed(lambda: list(pool.map(_pages, order)))
        out["parallel"] = {
            "workers": workers,
            "seconds": round(par_s, 3),
            "pages_per_s": round(pages / par_s, 1),
            "speedup": round(parse_s / par_s, 2),
            "note": "includes process start and re-importing the loader in each worker",
        }
    else:
        out["parallel"] = {"skipped": "one file only: nothing to spread across processes"}
    return out


class _CpuTimed(Embeddings):
    """An embedder that adds up the process CPU seconds (all threads) spent inside it."""

    def __init__(self, inner: Embeddings) -> None:
        self.inner = inner
        self.cpu_seconds = 0.0

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        t0 = time.process_time()
        try:
            return self.inner.embed_documents(texts)
        finally:
            self.cpu_seconds += time.process_time() - t0

    def embed_query(self, text: str) -> list[float]:
        return self.inner.embed_query(text)


def ingest_once(files: list[str], runtime: str, index_dir: str, cache_dir: str) -> dict[str, Any]:
    """One `build_index` of `files` in `runtime`, in this (fresh) process; the model is loaded first."""
    from assistant.embeddings import describe, load_embeddings
    from assistant.store import build_index

    settings = Settings(index_dir=Path(index_dir), embedding_runtime=runtime, model_cache_dir=Path(cache_dir))
    embeddings, load_s = timed(lambda: load_embeddings(settings))  # converts once if the cache lacks it
    counted = _CpuTimed(embeddings)
    report = build_index([Path(f) for f in files], settings, embeddings=counted)
    return {
        "runtime": runtime,
        "model_load_seconds": round(load_s, 2),
        "chunks": report.embedded,
        "embed_seconds": round(report.embed_seconds, 2),
        "chunks_per_s": round(report.chunks_per_s, 1),
        # Per CPU second of this process: what the runtime costs, whatever else the machine was doing.
        "chunks_per_cpu_s": round(report.embedded / counted.cpu_seconds, 1) if counted.cpu_seconds else 0.0,
        "ingest_seconds": round(report.seconds, 2),
        "peak_rss_bytes": peak_rss_bytes(),
        "model": describe(embeddings, runtime),
    }


def bench_runtimes(
    files: list[Path], runtimes: tuple[str, ...], settings: Settings, log: Log, rounds: int = 1
) -> dict[str, Any]:
    """Chunks/s of a whole ingest (`build_index`) per runtime, each in a new process, same files.

    With two rounds the order is reversed in the second (torch, onnx, ..., onnx, torch), so load that
    rises or falls during the run favours no runtime; each runtime's figures are the mean of its runs.
    """
    runs = []
    order = [r for i in range(rounds) for r in (runtimes if i % 2 == 0 else runtimes[::-1])]
    # spawn, not fork: each run starts as a new `nhs-assistant ingest` would (no torch inherited).
    context = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="nhs-bench-ingest-") as tmp:
        for n, runtime in enumerate(order):
            log(f"ingest: embedding with runtime {runtime} ({n + 1}/{len(order)})")
            before = load_average()
            with ProcessPoolExecutor(1, mp_context=context) as pool:
                row = pool.submit(
                    ingest_once,
                    [str(f) for f in files],
                    runtime,
                    str(Path(tmp) / f"{n}-{runtime}"),
                    str(settings.model_cache_dir),
                ).result()
            row["load_average"] = [before, load_average()]
            log(
                f"ingest: {runtime}: {row['chunks_per_s']} chunks/s, {row['chunks_per_cpu_s']} per CPU second"
            )
            runs.append(row)
    summary = []
    for runtime in runtimes:
        mine = [r for r in runs if r["runtime"] == runtime]
        summary.append(
            {
                "runtime": runtime,
                "chunks": mine[0]["chunks"],
                "chunks_per_s": round(statistics.mean(r["chunks_per_s"] for r in mine), 1),
                "chunks_per_cpu_s": round(statistics.mean(r["chunks_per_cpu_s"] for r in mine), 1),
                "peak_rss_bytes": max(r["peak_rss_bytes"] for r in mine),
                "runs": len(mine),
            }
        )
    base = summary[0]
    for row in summary:
        row["speedup"] = (
            round(row["chunks_per_s"] / base["chunks_per_s"], 2) if base["chunks_per_s"] else None
        )
        row["cpu_speedup"] = (
            round(row["chunks_per_cpu_s"] / base["chunks_per_cpu_s"], 2) if base["chunks_per_cpu_s"] else None
        )
    return {"runtimes": summary, "runs": runs, "before": runtimes[0], "order": order}


def bench_ingest(settings: Settings, quick: bool, log: Log) -> dict[str, Any]:
    """Parse speed, then the embedding runtimes compared on the same files."""
    files = ingest_files(quick)
    out = bench_parse(files, log)
    out["embed"] = (
        bench_runtimes(files, RUNTIMES_QUICK, settings, log)
        if quick
        else bench_runtimes(files, RUNTIMES_FULL, settings, log, rounds=2)
    )
    out["chunks"] = out["embed"]["runtimes"][0]["chunks"]
    return out
