"""Query latency: the extractive chain over a real index, one caller then several threads."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from assistant.config import Settings
from bench.common import ROOT, Log, load_questions, percentiles


def build_query_index(settings: Settings, quick: bool, log: Log) -> dict[str, Any]:
    """A fresh index of corpus/ (+ eval/pdfs in the full run) in `settings.index_dir`."""
    from assistant.store import build_index

    inputs = [ROOT / "corpus"]
    if not quick and (ROOT / "eval" / "pdfs").is_dir():
        inputs.append(ROOT / "eval" / "pdfs")
    log(f"query: building index of {', '.join(p.name for p in inputs)} in {settings.index_dir}")
    report = build_index(inputs, settings)
    return {
        "inputs": [str(p.relative_to(ROOT)) for p in inputs],
        "chunks": report.chunks,
        "pages": report.pages,
        "index_type": report.index_type,
        "build_seconds": round(report.seconds, 2),
    }


def bench_query(settings: Settings, n: int, log: Log, workers: int = 4) -> dict[str, Any]:
    """Warm p50/p95/p99 of the extractive chain's retrieve/answer/total, single caller and `workers`."""
    import faiss

    from assistant.chain import Chain

    # As the app runs (OMP_NUM_THREADS=1): one short query gains nothing from a second FAISS thread.
    omp_threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        chain = Chain(settings)
        questions = load_questions(n)
        for q in questions[:5]:
            chain.ask(q)
        log(f"query: {n} questions, 1 caller")
        single, single_s = _ask_all(chain, questions, 1)
        log(f"query: {n} questions, {workers} concurrent callers")
        many, many_s = _ask_all(chain, questions, workers)
        embed = []  # the query embedding alone: the floor under `retrieve`
        for q in questions[:50]:
            t = time.perf_counter()
            chain.index.embed_query(q)
            embed.append((time.perf_counter() - t) * 1000)
    finally:
        faiss.omp_set_num_threads(omp_threads)
    return {
        "questions": n,
        "runtime": settings.embedding_runtime,
        "threads": "faiss 1 (as the app: OMP_NUM_THREADS=1)",
        "single": _summary(single, single_s),
        "concurrent": {"workers": workers, **_summary(many, many_s)},
        "embed_query_ms": percentiles(embed),
    }


def _ask_all(chain: Any, questions: list[str], workers: int) -> tuple[list[dict[str, float]], float]:
    t0 = time.perf_counter()
    if workers == 1:
        rows = [chain.ask(q).timings_ms for q in questions]
    else:
        with ThreadPoolExecutor(workers) as pool:
            rows = [a.timings_ms for a in pool.map(chain.ask, questions)]
    return rows, time.perf_counter() - t0


def _summary(rows: list[dict[str, float]], seconds: float) -> dict[str, Any]:
    out: dict[str, Any] = {key: percentiles(r[key] for r in rows) for key in ("retrieve", "answer", "total")}
    out["qps"] = round(len(rows) / seconds, 1)
    return out
