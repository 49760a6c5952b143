"""Index scale: synthetic corpora of 10k-1M chunks, FAISS flat/HNSW/IVF and BM25, latency/memory/recall.

The dense vectors are composed from real sentence embeddings (seeded numpy RNG), not embedded per chunk:
1M texts would take hours on 2 cores (`notes` in the result says so).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterable
from typing import Any

import numpy as np

from assistant.config import Settings
from bench.common import ROOT, Log, load_questions, percentiles, recall_at_k, rss_bytes, timed

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
    emb = load_embeddings(settings)
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
            params = f"M={HNSW_M},efC={HNSW_EF_CONSTRUCTION},efSearch={ef}"
            rows.append(_measured(hnsw, "IndexHNSWFlat", params, build_s, size, queries, truth))
            log(
                f"scale {n:,}: HNSW ef={ef} p50 {rows[-1]['latency_ms']['p50']:.2f} ms recall {rows[-1]['recall_at_10']:.3f}"
            )
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
        params = f"nlist={nlist},nprobe={nprobe}"
        rows.append(_measured(ivf, "IndexIVFFlat", params, train_s + add_s, size, queries, truth))
        log(
            f"scale {n:,}: IVF nprobe={nprobe} p50 {rows[-1]['latency_ms']['p50']:.2f} ms recall {rows[-1]['recall_at_10']:.3f}"
        )
    faiss.omp_set_num_threads(threads)
    del ivf
    return rows


def _measured(
    index: Any, name: str, params: str, build_s: float, size: int, queries: np.ndarray, truth: np.ndarray
) -> dict[str, Any]:
    """One row of the dense table: `index` (as configured now) timed on single queries, recall against `truth`."""
    lat, found = _single_query_ms(index, queries)
    return {
        "n": index.ntotal,
        "index": name,
        "params": params,
        "build_s": round(build_s, 2),
        "bytes": size,
        "latency_ms": lat,
        "recall_at_10": recall_at_k(found, truth),
    }


def bench_bm25(texts: list[str], questions: list[str]) -> dict[str, Any]:
    """bm25s (assistant.retrieval.Sparse) index time, query latency (k=40, as fetch_k) and RSS growth."""
    from assistant.retrieval import Sparse

    before = rss_bytes()
    sparse, index_s = timed(lambda: Sparse(texts))
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
