"""Performance benchmark: ingest, query latency, index scale and app start, as one JSON report + plots.

    result = run_bench(Path("bench/out"), quick=True, log=print)
    result["query"]["single"]["total"]["p50"]      # ms
    result["scale"]["dense"][0]["recall_at_10"]

Every figure is measured in this run on this machine; nothing here asserts a timing.
The scale section uses synthetic corpora built from real corpus sentences (seeded numpy RNG); their
dense vectors are composed from real sentence embeddings, not embedded per chunk (`scale.notes` says so).
"""

from __future__ import annotations

import json
import os
import platform
import re
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from assistant.config import Settings

Log = Callable[[str], None]

ROOT = Path(__file__).resolve().parents[1]
DIM = 384
SEED = 20240601
FULL_SIZES = (10_000, 100_000, 1_000_000)
QUICK_SIZES = (10_000,)
# HNSW builds cost ~1.2 ms per vector per core pair here at M=32 (random data); above this size the
# build would take longer than the whole benchmark, so it is estimated, not run.
HNSW_BUILD_MAX = 200_000
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 80
HNSW_EF_SEARCH = (64, 128)
IVF_NPROBE = (8, 16, 32, 64, 128)
# Queries are noisy copies of stored vectors: cosine ~0.89 to their source (noise norm 0.5).
QUERY_NOISE = 0.5
K = 10
TARGET_RECALL = 0.95
TARGET_P50_MS = 20.0
TARGET_RAM_BYTES = 2.5e9


# --- small helpers -----------------------------------------------------------------------------------


def percentiles(values: Iterable[float]) -> dict[str, float]:
    """p50/p95/p99/mean of a sample (ms), by linear interpolation.

    >>> percentiles([1, 2, 3, 4])["p50"]
    2.5
    """
    data = np.asarray(list(values), dtype=float)
    if data.size == 0:
        return {"p50": 0.0, "p95": 0.0, "p99": 0.0, "mean": 0.0, "n": 0}
    p50, p95, p99 = np.percentile(data, [50, 95, 99])
    return {
        "p50": round(float(p50), 3),
        "p95": round(float(p95), 3),
        "p99": round(float(p99), 3),
        "mean": round(float(data.mean()), 3),
        "n": int(data.size),
    }


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean share of each row of `truth` (exact top-k ids) that `found` holds.

    >>> recall_at_k(np.array([[1, 2, 3]]), np.array([[1, 2, 4]]))
    0.6666666666666666
    """
    hits = [len(set(f.tolist()) & set(t.tolist())) / len(t) for f, t in zip(found, truth, strict=True)]
    return float(np.mean(hits))


def peak_rss_bytes() -> int:
    """Peak resident set size of this process so far (Linux reports KiB)."""
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def rss_bytes() -> int:
    """Current resident set size of this process."""
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def machine() -> dict[str, Any]:
    """CPU model, core count and memory of this machine."""
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem = next(
            int(line.split()[1]) * 1024
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal")
        )
    except (OSError, StopIteration):
        mem = 0
    return {
        "cpu": cpu,
        "cores": os.cpu_count() or 1,
        "memory_bytes": mem,
        "python": platform.python_version(),
    }


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


# --- 1. ingest -------------------------------------------------------------------------------------


def _ingest_files(quick: bool) -> list[Path]:
    shared = ROOT / ".." / "shared" / "pdfs"
    if quick:
        return [ROOT / "tests" / "fixtures" / "real-3-pages.pdf"]
    if shared.is_dir() and list(shared.glob("*.pdf")):
        return sorted(shared.glob("*.pdf"))
    return [ROOT / "tests" / "fixtures" / "real-3-pages.pdf", *sorted((ROOT / "eval" / "pdfs").glob("*.pdf"))]


def _pages(path: Path) -> int:
    from assistant.loaders import load_file

    return len(load_file(path))


def bench_ingest(settings: Settings, quick: bool, log: Log) -> dict[str, Any]:
    """pypdf pages/s (serial and across processes), embedding chunks/s vs raw sentence-transformers."""
    from assistant.chunking import chunk_documents
    from assistant.embeddings import load_embeddings, model_path
    from assistant.loaders import load_file

    files = _ingest_files(quick)
    log(f"ingest: parsing {len(files)} PDF(s)")
    docs = []
    t0 = time.perf_counter()
    per_file = []
    for path in files:
        pages, seconds = _timed(lambda p=path: load_file(p))  # type: ignore[misc]
        docs += pages
        per_file.append({"file": path.name, "pages": len(pages), "seconds": round(seconds, 3)})
    parse_s = time.perf_counter() - t0
    out: dict[str, Any] = {
        "files": per_file,
        "pages": len(docs),
        "parse_seconds": round(parse_s, 3),
        "pages_per_s": round(len(docs) / parse_s, 1),
    }
    if len(files) > 1:
        workers = min(len(files), os.cpu_count() or 1)
        # Largest files first, so one big file does not start last.
        order = sorted(files, key=lambda p: -p.stat().st_size)
        with ProcessPoolExecutor(workers) as pool:
            _, par_s = _timed(lambda: list(pool.map(_pages, order)))
        out["parallel"] = {
            "workers": workers,
            "seconds": round(par_s, 3),
            "pages_per_s": round(len(docs) / par_s, 1),
            "speedup": round(parse_s / par_s, 2),
            "note": "includes process start and re-importing the loader in each worker",
        }
    else:
        out["parallel"] = {"skipped": "one file only: nothing to spread across processes"}
    chunks, _ = chunk_documents(docs, settings.chunk_size, settings.chunk_overlap)
    texts = [c.page_content for c in chunks]
    out["chunks"] = len(texts)
    log(f"ingest: embedding {len(texts)} chunks (pipeline, then raw sentence-transformers)")
    embeddings = load_embeddings(settings.embedding_model)
    from sentence_transformers import SentenceTransformer

    raw = SentenceTransformer(str(model_path(settings.embedding_model)), device="cpu", local_files_only=True)
    embeddings.embed_documents(texts[:32])  # warm both paths: first calls allocate
    raw.encode(texts[:32], batch_size=32, normalize_embeddings=True)

    def pipeline() -> None:
        for start in range(0, len(texts), 256):  # as store._embed batches
            embeddings.embed_documents(texts[start : start + 256])

    _, pipe_s = _timed(pipeline)
    _, raw_s = _timed(lambda: raw.encode(texts, batch_size=32, normalize_embeddings=True))
    out["embed"] = {
        "pipeline_chunks_per_s": round(len(texts) / pipe_s, 1),
        "raw_chunks_per_s": round(len(texts) / raw_s, 1),
        "ratio": round(raw_s / pipe_s, 3),
        "torch_threads": _torch_threads(),
    }
    out["peak_rss_bytes"] = peak_rss_bytes()
    return out


def _torch_threads() -> int:
    import torch

    return int(torch.get_num_threads())


# --- 2. query latency ------------------------------------------------------------------------------


def load_questions(n: int) -> list[str]:
    """`n` questions, cycling eval/qa/objectives.jsonl and eval/qa/pdf.jsonl."""
    pool: list[str] = []
    for name in ("objectives.jsonl", "pdf.jsonl"):
        path = ROOT / "eval" / "qa" / name
        if path.is_file():
            pool += [json.loads(line)["question"] for line in path.read_text().splitlines() if line.strip()]
    if not pool:
        pool = ["What is the A&E 4-hour target?"]
    return [pool[i % len(pool)] for i in range(n)]


def build_query_index(settings: Settings, quick: bool, log: Log) -> tuple[Settings, dict[str, Any]]:
    """A fresh index of corpus/ (+ eval/pdfs in the full run) in `settings.index_dir`."""
    from assistant.store import build_index

    inputs = [ROOT / "corpus"]
    if not quick and (ROOT / "eval" / "pdfs").is_dir():
        inputs.append(ROOT / "eval" / "pdfs")
    log(f"query: building index of {', '.join(p.name for p in inputs)} in {settings.index_dir}")
    report = build_index(inputs, settings)
    return settings, {
        "inputs": [str(p.relative_to(ROOT)) for p in inputs],
        "chunks": report.chunks,
        "pages": report.pages,
        "index_type": report.index_type,
        "build_seconds": round(report.seconds, 2),
    }


def bench_query(settings: Settings, n: int, log: Log, workers: int = 4) -> dict[str, Any]:
    """Warm p50/p95/p99 of the extractive chain's retrieve/answer/total, single caller and `workers`."""

    import faiss
    import torch

    # As the app runs (OMP_NUM_THREADS=1): one short query gains nothing from a second thread, and on a
    # busy 2-core machine a spinning second OpenMP thread can cost tens of ms per call.
    torch_threads, omp_threads = torch.get_num_threads(), faiss.omp_get_max_threads()
    torch.set_num_threads(1)
    faiss.omp_set_num_threads(1)
    try:
        return _bench_query(settings, n, log, workers)
    finally:
        torch.set_num_threads(torch_threads)
        faiss.omp_set_num_threads(omp_threads)


def _bench_query(settings: Settings, n: int, log: Log, workers: int) -> dict[str, Any]:
    from assistant.chain import Chain

    chain = Chain(settings)
    questions = load_questions(n)
    for q in questions[:5]:
        chain.ask(q)
    log(f"query: {n} questions, 1 caller")
    t0 = time.perf_counter()
    single = [chain.ask(q).timings_ms for q in questions]
    single_s = time.perf_counter() - t0
    log(f"query: {n} questions, {workers} concurrent callers")
    with ThreadPoolExecutor(workers) as pool:
        t0 = time.perf_counter()
        many = [a.timings_ms for a in pool.map(chain.ask, questions)]
        many_s = time.perf_counter() - t0

    def summary(rows: list[dict[str, float]], seconds: float) -> dict[str, Any]:
        out: dict[str, Any] = {
            key: percentiles(r[key] for r in rows) for key in ("retrieve", "answer", "total")
        }
        out["qps"] = round(len(rows) / seconds, 1)
        return out

    # The query embedding alone: the floor under `retrieve`.
    index = chain.index
    embed = []
    for q in questions[:50]:
        t = time.perf_counter()
        index.embed_query(q)
        embed.append((time.perf_counter() - t) * 1000)
    return {
        "questions": n,
        "threads": "torch 1, faiss 1 (as the app: OMP_NUM_THREADS=1)",
        "single": summary(single, single_s),
        "concurrent": {"workers": workers, **summary(many, many_s)},
        "embed_query_ms": percentiles(embed),
    }


# --- 3. scale --------------------------------------------------------------------------------------

AREAS = (
    "urgent and emergency care",
    "community health services",
    "primary care",
    "elective care",
    "cancer",
    "diagnostics",
    "maternity and neonatal services",
    "mental health",
    "learning disability and autism",
    "prevention and health inequalities",
    "workforce",
    "use of resources",
)
MONTHS = ("March", "June", "September", "December")
YEARS = ("2024", "2025", "2026", "2027")


def _sentences() -> list[str]:
    text = " ".join(p.read_text(encoding="utf-8") for p in sorted((ROOT / "corpus").glob("*.txt")))
    parts = re.split(r"(?<=[.;:])\s+|\n+", text)
    return [" ".join(s.split()) for s in parts if len(s.split()) >= 5]


def _plan(n: int, n_sentences: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "picks": rng.integers(0, n_sentences, size=(n, 5)),
        "lengths": rng.integers(3, 6, size=n),
        "numbers": rng.integers(1, 100, size=(n, 2)),
        "areas": rng.integers(0, len(AREAS), size=n),
        "months": rng.integers(0, len(MONTHS), size=n),
        "years": rng.integers(0, len(YEARS), size=n),
    }


def synthetic_corpus(n: int, seed: int = SEED) -> list[str]:
    """`n` deterministic chunks of 3-5 real corpus sentences with varied numbers, areas and deadlines."""
    sentences = _sentences()
    plan = _plan(n, len(sentences), seed)
    out = []
    for i in range(n):
        body = " ".join(sentences[j] for j in plan["picks"][i, : plan["lengths"][i]])
        body = re.sub(r"\d+(?:\.\d+)?%", f"{plan['numbers'][i, 0]}%", body)
        out.append(
            f"{AREAS[plan['areas'][i]].capitalize()}: {body} Deliver {plan['numbers'][i, 1]}% by "
            f"{MONTHS[plan['months'][i]]} {YEARS[plan['years'][i]]}."
        )
    return out


def composed_vectors(n: int, settings: Settings, noise: float = 0.3, seed: int = SEED) -> np.ndarray:
    """Unit vectors for `synthetic_corpus(n)` without embedding each chunk: the mean of the real embeddings
    of the chunk's sentences plus half its area's embedding, plus Gaussian noise of norm ~`noise`.

    Mean pooling makes a chunk's embedding close to such a mix, so these keep the clustered shape of
    real embeddings (unlike random unit vectors, the worst case for approximate indexes).
    """
    from assistant.embeddings import load_embeddings

    sentences = _sentences()
    emb = load_embeddings(settings.embedding_model)
    sent = np.asarray(emb.embed_documents(sentences), dtype="float32")
    area = np.asarray(emb.embed_documents(list(AREAS)), dtype="float32")
    plan = _plan(n, len(sentences), seed)
    rng = np.random.default_rng(seed + 3)
    out = np.empty((n, sent.shape[1]), dtype="float32")
    mask = np.arange(5)[None, :] < plan["lengths"][:, None]
    for start in range(0, n, 100_000):
        sl = slice(start, min(n, start + 100_000))
        m = mask[sl].astype("float32")
        block = (sent[plan["picks"][sl]] * m[:, :, None]).sum(axis=1) / m.sum(axis=1, keepdims=True)
        block += 0.5 * area[plan["areas"][sl]]
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        block += rng.standard_normal(block.shape, dtype=np.float32) * (noise / np.sqrt(block.shape[1]))
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        out[sl] = block
    return out


def random_unit_vectors(n: int, dim: int = DIM, seed: int = SEED) -> np.ndarray:
    """`n` seeded random unit vectors (float32), normalised in blocks to bound temporary memory."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, dim), dtype="float32")
    for start in range(0, n, 100_000):
        block = rng.standard_normal((min(100_000, n - start), dim), dtype=np.float32)
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        out[start : start + len(block)] = block
    return out


def noisy_queries(vectors: np.ndarray, n: int, noise: float = QUERY_NOISE, seed: int = SEED) -> np.ndarray:
    """`n` unit queries, each a stored vector plus Gaussian noise of norm ~`noise`."""
    rng = np.random.default_rng(seed + 1)
    picks = rng.choice(len(vectors), size=n, replace=False)
    q = vectors[picks] + rng.standard_normal((n, vectors.shape[1]), dtype=np.float32) * (
        noise / np.sqrt(vectors.shape[1])
    )
    return np.ascontiguousarray(q / np.linalg.norm(q, axis=1, keepdims=True), dtype="float32")


def _single_query_ms(index: Any, queries: np.ndarray) -> tuple[dict[str, float], np.ndarray]:
    ids = np.empty((len(queries), K), dtype="int64")
    times = []
    for i, q in enumerate(queries):
        t = time.perf_counter()
        _, found = index.search(q.reshape(1, -1), K)
        times.append((time.perf_counter() - t) * 1000)
        ids[i] = found[0]
    return percentiles(times), ids


def _index_bytes(index: Any) -> int:
    import faiss

    return int(len(faiss.serialize_index(index)))


def bench_dense(
    vectors: np.ndarray, queries: np.ndarray, log: Log, run_hnsw: bool, hnsw_skip_reason: str
) -> list[dict[str, Any]]:
    """Flat, HNSW and IVF on `vectors`: build time, bytes, single-query p50/p95 (1 thread), recall@10."""
    import faiss

    n, dim = vectors.shape
    rows: list[dict[str, Any]] = []
    threads = os.cpu_count() or 1

    faiss.omp_set_num_threads(threads)
    flat = faiss.IndexFlatIP(dim)
    t0 = time.perf_counter()
    flat.add(vectors)
    build_s = time.perf_counter() - t0
    _, truth = flat.search(queries, K)  # exact top-10, batched
    faiss.omp_set_num_threads(1)
    lat, found = _single_query_ms(flat, queries)
    faiss.omp_set_num_threads(threads)
    lat2, _ = _single_query_ms(flat, queries[:50])
    row = {"n": n, "index": "IndexFlatIP", "params": "", "build_s": round(build_s, 2)}
    row |= {"bytes": _index_bytes(flat), "latency_ms": lat, "recall_at_10": recall_at_k(found, truth)}
    row["latency_ms_2_threads"] = lat2
    rows.append(row)
    log(f"scale {n:,}: IndexFlatIP p50 {lat['p50']:.2f} ms (1 thread), {lat2['p50']:.2f} ms (2 threads)")
    del flat

    if run_hnsw:
        faiss.omp_set_num_threads(threads)
        hnsw = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        hnsw.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        t0 = time.perf_counter()
        hnsw.add(vectors)
        build_s = time.perf_counter() - t0
        size = _index_bytes(hnsw)
        faiss.omp_set_num_threads(1)
        for ef in HNSW_EF_SEARCH:
            hnsw.hnsw.efSearch = ef
            lat, found = _single_query_ms(hnsw, queries)
            rows.append(
                {
                    "n": n,
                    "index": "IndexHNSWFlat",
                    "params": f"M={HNSW_M},efC={HNSW_EF_CONSTRUCTION},efSearch={ef}",
                    "build_s": round(build_s, 2),
                    "bytes": size,
                    "latency_ms": lat,
                    "recall_at_10": recall_at_k(found, truth),
                }
            )
            log(f"scale {n:,}: HNSW ef={ef} p50 {lat['p50']:.2f} ms recall {rows[-1]['recall_at_10']:.3f}")
        del hnsw
    else:
        rows.append({"n": n, "index": "IndexHNSWFlat", "params": f"M={HNSW_M}", "skipped": hnsw_skip_reason})
        log(f"scale {n:,}: HNSW skipped ({hnsw_skip_reason})")

    faiss.omp_set_num_threads(threads)
    nlist = min(int(4 * np.sqrt(n)), n // 39)  # faiss wants >= 39 training points per list
    quantizer = faiss.IndexFlatIP(dim)
    ivf = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
    train = vectors[np.random.default_rng(SEED + 2).choice(n, size=min(n, 64 * nlist), replace=False)]
    t0 = time.perf_counter()
    ivf.train(train)
    train_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    ivf.add(vectors)
    add_s = time.perf_counter() - t0
    size = _index_bytes(ivf)
    faiss.omp_set_num_threads(1)
    for nprobe in IVF_NPROBE:
        if nprobe > nlist:
            continue
        ivf.nprobe = nprobe
        lat, found = _single_query_ms(ivf, queries)
        rows.append(
            {
                "n": n,
                "index": "IndexIVFFlat",
                "params": f"nlist={nlist},nprobe={nprobe}",
                "build_s": round(train_s + add_s, 2),
                "bytes": size,
                "latency_ms": lat,
                "recall_at_10": recall_at_k(found, truth),
            }
        )
        log(f"scale {n:,}: IVF nprobe={nprobe} p50 {lat['p50']:.2f} ms recall {rows[-1]['recall_at_10']:.3f}")
    faiss.omp_set_num_threads(threads)
    del ivf
    return rows


def bench_bm25(texts: list[str], questions: list[str]) -> dict[str, Any]:
    """bm25s (assistant.retrieval.Sparse) index time, query latency (k=40, as fetch_k) and RSS growth."""
    from assistant.retrieval import Sparse

    before = rss_bytes()
    sparse, index_s = _timed(lambda: Sparse(texts))
    grown = rss_bytes() - before
    scores = sparse.model.scores  # a CSC matrix as a dict of numpy arrays
    matrix = sum(int(scores[key].nbytes) for key in ("data", "indices", "indptr") if key in scores)
    sparse.search(questions[0], 40)
    times = []
    for q in questions:
        t = time.perf_counter()
        sparse.search(q, 40)
        times.append((time.perf_counter() - t) * 1000)
    return {
        "n": len(texts),
        "index_s": round(index_s, 2),
        "matrix_bytes": matrix,
        "rss_growth_bytes": int(grown),
        "latency_ms": percentiles(times),
    }


def bench_scale(
    sizes: Iterable[int], n_queries: int, log: Log, settings: Settings, random_at: Iterable[int] = ()
) -> dict[str, Any]:
    """Dense indexes and BM25 at each size in `sizes` (synthetic corpora); random vectors at `random_at`."""
    dense: list[dict[str, Any]] = []
    bm25: list[dict[str, Any]] = []
    notes: list[str] = []
    questions = load_questions(n_queries)
    hnsw_per_vector_s: float | None = None
    runs = [(n, "composed") for n in sizes] + [(n, "random") for n in random_at]
    for n, kind in runs:
        if kind == "random":
            vectors = random_unit_vectors(n)
            note = f"{n:,} chunks: dense side is random unit vectors (dim {DIM}, float32, seed {SEED}), worst case"
        else:
            log(f"scale {n:,}: generating the synthetic corpus")
            texts = synthetic_corpus(n)
            vectors = composed_vectors(n, settings)
            note = (
                f"{n:,} chunks: dense side is NOT embedded per chunk: unit vectors composed from real "
                "sentence embeddings + noise (composed_vectors)"
            )
        log(f"NOTE {note}")
        notes.append(note)
        queries = noisy_queries(vectors, n_queries)
        run_hnsw = n <= HNSW_BUILD_MAX
        reason = ""
        if not run_hnsw:
            est = f", estimated ~{hnsw_per_vector_s * n * 1.15 / 60:.0f} min" if hnsw_per_vector_s else ""
            reason = f"build skipped above {HNSW_BUILD_MAX:,} vectors{est} on this machine"
        rows = bench_dense(vectors, queries, log, run_hnsw, reason)
        for r in rows:
            r["vectors"] = kind
            if kind == "composed" and r["index"] == "IndexHNSWFlat" and "build_s" in r:
                hnsw_per_vector_s = r["build_s"] / n
        dense += rows
        del vectors, queries
        if kind == "composed":
            log(f"scale {n:,}: BM25 index and {len(questions)} queries")
            bm25.append(bench_bm25(texts, questions))
            del texts
    return {"dense": dense, "bm25": bm25, "notes": notes}


def choose_index(dense: list[dict[str, Any]]) -> dict[str, Any]:
    """Per size, the fastest index meeting recall@10 >= TARGET_RECALL (exact always qualifies)."""
    out = {}
    for n in sorted({r["n"] for r in dense}):
        ok = [r for r in dense if r["n"] == n and "latency_ms" in r and r["recall_at_10"] >= TARGET_RECALL]
        best = min(ok, key=lambda r: r["latency_ms"]["p50"])
        out[str(n)] = {
            "index": best["index"],
            "params": best["params"],
            "p50_ms": best["latency_ms"]["p50"],
            "recall_at_10": best["recall_at_10"],
            "bytes": best["bytes"],
        }
    return out


# --- 4. app start ----------------------------------------------------------------------------------


CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def start_app(port: int, env: dict[str, str], log: Any) -> subprocess.Popen[bytes]:
    """`streamlit run app.py` on 127.0.0.1:`port`, headless, output to `log` (also used by the e2e test)."""
    return subprocess.Popen(
        [
            str(Path(sys.executable).parent / "streamlit"),
            "run",
            "app.py",
            "--server.headless",
            "true",
            "--server.port",
            str(port),
            "--server.address",
            "127.0.0.1",
            "--browser.gatherUsageStats",
            "false",
            # No rerun banner when files change under a running measurement or test.
            "--server.fileWatcherType",
            "none",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def stop_app(server: subprocess.Popen[bytes], log: Any) -> None:
    """Stop a server from `start_app` (terminate, then kill after 15 s) and close its log."""
    server.terminate()
    try:
        server.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()
    log.close()


def wait_healthy(url: str, server: subprocess.Popen[bytes], timeout: float = 90) -> None:
    """Wait until the Streamlit server answers its health check."""
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"streamlit exited with code {server.returncode} before it was ready")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"streamlit did not answer on {url} within {timeout:.0f} s")


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def time_app_start(index_dir: Path, work: Path) -> dict[str, float]:
    """Seconds from `streamlit run app.py` to the first answered question in headless chromium."""

    from playwright.sync_api import expect, sync_playwright

    chromium = shutil.which("chromium")
    if chromium is None:
        raise RuntimeError("chromium is not installed; run `make browser`")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = os.environ | {
        "OMP_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
        "ASSISTANT_INDEX_DIR": str(index_dir),
        "ASSISTANT_CORPUS_DIR": str(ROOT / "corpus"),
        "ASSISTANT_FEEDBACK_DB": str(work / "feedback.sqlite3"),
    }
    with sync_playwright() as p:
        # The browser starts first, so its own start is not counted.
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        log = (work / f"streamlit-{port}.log").open("wb")
        t0 = time.perf_counter()
        server = start_app(port, env, log)
        try:
            wait_healthy(url, server, timeout=120)
            healthy = time.perf_counter() - t0
            page = browser.new_page()
            page.goto(url)
            chat = page.get_by_test_id("stChatInputTextArea")
            chat.wait_for(timeout=120_000)
            ready = time.perf_counter() - t0
            chat.fill("what is the A&E 4-hour target?")
            chat.press("Enter")
            expect(page.get_by_test_id("stChatMessage").nth(1)).to_contain_text("76%", timeout=120_000)
            answered = time.perf_counter() - t0
        finally:
            browser.close()
            stop_app(server, log)
    return {
        "healthy_s": round(healthy, 2),
        "input_ready_s": round(ready, 2),
        "answered_s": round(answered, 2),
    }


def bench_app_start(index_dir: Path, work: Path, log: Log) -> dict[str, Any]:
    """Cold (first) and warm (second) start of the Streamlit app to its first answer."""
    log("app start: cold (first start)")
    cold = time_app_start(index_dir, work)
    log("app start: warm (second start)")
    warm = time_app_start(index_dir, work)
    return {
        "method": "playwright + Debian chromium; clock starts at Popen(streamlit run app.py)",
        "cold": cold,
        "warm": warm,
    }


# --- plots and the whole run -----------------------------------------------------------------------


def plot(result: dict[str, Any], out: Path) -> list[str]:
    """latency_vs_size.png and memory_vs_size.png from the scale section."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dense = [r for r in result["scale"]["dense"] if "latency_ms" in r and r.get("vectors") == "composed"]
    bm25 = result["scale"]["bm25"]
    series: dict[str, list[dict[str, Any]]] = {}
    for r in dense:
        series.setdefault(f"{r['index']} {_short(r['params'])}".strip(), []).append(r)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, rows in series.items():
        ax.plot([r["n"] for r in rows], [r["latency_ms"]["p50"] for r in rows], marker="o", label=label)
    ax.plot(
        [r["n"] for r in bm25],
        [r["latency_ms"]["p50"] for r in bm25],
        marker="s",
        ls="--",
        label="BM25 (bm25s)",
    )
    embed = result.get("query", {}).get("embed_query_ms", {}).get("p50")
    if embed:
        ax.axhline(embed, color="grey", ls=":", label=f"query embedding floor ({embed:.0f} ms)")
    latency = _save_plot(
        fig,
        ax,
        out / "latency_vs_size.png",
        "Query latency vs corpus size",
        "p50 single-query latency (ms, 1 thread)",
    )

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name in ("IndexFlatIP", "IndexHNSWFlat", "IndexIVFFlat"):
        sizes = sorted({(r["n"], r["bytes"]) for r in dense if r["index"] == name})
        if sizes:
            ax.plot([n for n, _ in sizes], [b / 1e6 for _, b in sizes], marker="o", label=name)
    ax.plot(
        [r["n"] for r in bm25],
        [r["matrix_bytes"] / 1e6 for r in bm25],
        marker="s",
        ls="--",
        label="BM25 matrix",
    )
    ax.axhline(TARGET_RAM_BYTES / 1e6, color="red", ls=":", label="2.5 GB target")
    memory = _save_plot(fig, ax, out / "memory_vs_size.png", "Index memory vs corpus size", "index size (MB)")
    return [latency, memory]


def _save_plot(fig: Any, ax: Any, path: Path, title: str, ylabel: str) -> str:
    """Log-log axes over corpus size, titled and labelled, written to `path`; returns its file name."""
    import matplotlib.pyplot as plt

    ax.set(xscale="log", yscale="log", xlabel="chunks", ylabel=ylabel)
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path.name


def _short(params: str) -> str:
    keep = [p for p in params.split(",") if p.startswith(("efSearch", "nprobe"))]
    return f"({','.join(keep)})" if keep else ""


def run_bench(
    out: Path, quick: bool = False, log: Log | None = None, settings: Settings | None = None
) -> dict[str, Any]:
    """Run every section, write bench.json and the plots into `out`, return the result."""
    log = log or (lambda _msg: None)
    settings = settings or Settings.from_env()
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    result: dict[str, Any] = {
        "meta": {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "quick": quick,
            "machine": machine(),
            "embedding_model": settings.embedding_model,
            "exact_index_max": settings.exact_index_max,
            "load_average_start": list(os.getloadavg()),
        }
    }
    with tempfile.TemporaryDirectory(prefix="nhs-bench-") as tmp:
        work = Path(tmp)
        qsettings = settings.with_(index_dir=work / "index", corpus_dir=ROOT / "corpus")
        partial = out / "bench.partial.json"  # each section as it ends, so a crash loses only the rest

        def save() -> None:
            partial.write_text(json.dumps(result, indent=1), encoding="utf-8")

        result["ingest"] = bench_ingest(settings, quick, log)
        save()
        qsettings, built = build_query_index(qsettings, quick, log)
        result["query"] = {"index": built, **bench_query(qsettings, 50 if quick else 240, log)}
        save()
        sizes = QUICK_SIZES if quick else FULL_SIZES
        result["scale"] = bench_scale(sizes, 50 if quick else 200, log, settings, () if quick else (100_000,))
        result["scale"]["queries"] = (
            f"{50 if quick else 200} noisy copies of stored vectors (Gaussian noise of norm {QUERY_NOISE}, "
            "cosine ~0.89 to the source); recall@10 against IndexFlatIP"
        )
        result["scale"]["choice"] = choose_index(result["scale"]["dense"])
        save()
        if quick:
            result["app_start"] = {"skipped": "--quick"}
        else:
            try:
                result["app_start"] = bench_app_start(qsettings.index_dir, work, log)
            except Exception as err:  # a missing browser must not lose the other sections
                result["app_start"] = {"error": f"{type(err).__name__}: {err}"}
        result["meta"]["peak_rss_bytes"] = peak_rss_bytes()
        result["meta"]["load_average_end"] = list(os.getloadavg())
        result["meta"]["seconds"] = round(time.perf_counter() - started, 1)
    result["files"] = ["bench.json", *plot(result, out)]
    (out / "bench.json").write_text(json.dumps(result, indent=1), encoding="utf-8")
    (out / "bench.partial.json").unlink(missing_ok=True)
    return result
