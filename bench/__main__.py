"""`python -m bench`: run the sections, print tables, write bench.json and the plots (see bench/__init__.py)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from assistant.config import Settings
from bench.common import ROOT, Log, machine, peak_rss_bytes

SECTIONS = ("ingest", "query", "startup", "scale", "app", "quality", "stores")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny versions of each section (about a minute)")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out", help="output folder")
    parser.add_argument(
        "--sections",
        default=",".join(SECTIONS),
        help=f"comma-separated subset of {', '.join(SECTIONS)} (default: all)",
    )
    args = parser.parse_args(argv)
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    err = Console(stderr=True, highlight=False)
    result = run_bench(args.out, sections, quick=args.quick, log=lambda msg: err.print(f"[dim]{msg}[/dim]"))
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
    else:
        print_tables(result)
        Console().print(f"Wrote {', '.join(result['files'])} to {args.out}/")
    return 0


def run_bench(
    out: Path,
    sections: list[str],
    quick: bool = False,
    log: Log | None = None,
    settings: Settings | None = None,
) -> dict[str, Any]:
    """Run `sections`, write bench.json (and the plots when scale ran) into `out`, return the result."""
    log = log or (lambda _msg: None)
    settings = settings or Settings.from_env()
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    result: dict[str, Any] = {
        "meta": {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "quick": quick,
            "sections": sections,
            "machine": machine(),
            "embedding_model": settings.embedding_model,
            "embedding_runtime": settings.embedding_runtime,
            "load_average_start": list(os.getloadavg()),
        }
    }
    partial = out / "bench.partial.json"  # each section as it ends, so a crash loses only the rest
    with tempfile.TemporaryDirectory(prefix="nhs-bench-") as tmp:
        work = Path(tmp)
        qsettings = settings.with_(index_dir=work / "index", corpus_dir=ROOT / "corpus")
        steps = _steps(settings, qsettings, work, quick, log)
        for name in SECTIONS:
            if name in sections:
                result[name] = steps[name]()
                partial.write_text(json.dumps(result, indent=1), encoding="utf-8")
    result["meta"]["peak_rss_bytes"] = peak_rss_bytes()
    result["meta"]["load_average_end"] = list(os.getloadavg())
    result["meta"]["seconds"] = round(time.perf_counter() - started, 1)
    files = ["bench.json"]
    if "scale" in result:
        from bench.plots import plot

        files += plot(result, out)
    if "sizes" in result.get("stores", {}):
        from bench.stores import plot as plot_stores

        files += plot_stores(result["stores"], out)
    result["files"] = files
    (out / "bench.json").write_text(json.dumps(result, indent=1), encoding="utf-8")
    partial.unlink(missing_ok=True)
    return result


def _steps(
    settings: Settings, qsettings: Settings, work: Path, quick: bool, log: Log
) -> dict[str, Callable[[], dict[str, Any]]]:
    """Each section as a call; the query index is built by the first section that needs it."""
    from bench import ingest, quality, query, scale, startup, stores

    built: dict[str, Any] = {}

    def index() -> dict[str, Any]:
        if not built:
            built.update(query.build_query_index(qsettings, quick, log))
        return built

    def app() -> dict[str, Any]:
        if quick:
            return {"skipped": "--quick"}
        index()
        try:
            return startup.bench_app_start(qsettings.index_dir, work, qsettings, log)
        except Exception as err:  # noqa: BLE001 - a missing browser must not lose the other sections
            return {"error": f"{type(err).__name__}: {err}"}

    def scale_section() -> dict[str, Any]:
        sizes = scale.QUICK_SIZES if quick else scale.FULL_SIZES
        n = 50 if quick else 200
        out = scale.bench_scale(sizes, n, log, settings, () if quick else (100_000,))
        out["queries"] = (
            f"{n} noisy copies of stored vectors (Gaussian noise of norm {scale.QUERY_NOISE}, "
            "cosine ~0.89 to the source); recall@10 against IndexFlatIP"
        )
        out["choice"] = scale.choose_index(out["dense"])
        return out

    return {
        "ingest": lambda: ingest.bench_ingest(settings, quick, log),
        "query": lambda: {"index": index(), **query.bench_query(qsettings, 50 if quick else 240, log)},
        "startup": lambda: {"index": index(), **startup.bench_ask_process(qsettings, quick, log)},
        "scale": scale_section,
        "app": app,
        "quality": lambda: quality.bench_quality(
            settings,
            ingest.RUNTIMES_QUICK if quick else ingest.RUNTIMES_FULL,
            log,
            quality.QUICK_SETS if quick else (),
        ),
        # a PostgreSQL server and a Ray cluster, minutes even when small: `python -m bench.stores --quick`
        "stores": lambda: {"skipped": "--quick"} if quick else stores.bench_stores(stores.SIZES, stores.PDFS),
    }


# --- tables ------------------------------------------------------------------------------------------


def print_tables(result: dict[str, Any]) -> None:
    """The result as rich tables, one per section that ran."""
    out = Console(highlight=False)
    for name, show in (
        ("ingest", _ingest),
        ("startup", _startup),
        ("query", _query),
        ("scale", _scale),
        ("app", _app),
        ("quality", _quality),
        ("stores", _stores),
    ):
        if name in result:
            show(out, result[name])
    out.print(
        f"Load average {result['meta']['load_average_start'][0]:.1f} at start, "
        f"{result['meta']['load_average_end'][0]:.1f} at the end (2 cores)."
    )


def _table(title: str, *columns: str) -> Table:
    table = Table(title=title)
    for i, name in enumerate(columns):
        table.add_column(name, justify="left" if i == 0 else "right")
    return table


def _ingest(out: Console, ing: dict[str, Any]) -> None:
    table = _table("Ingest", "measure", "value")
    table.add_row("PDF pages", str(ing["pages"]))
    table.add_row("pypdf pages/s (1 process)", f"{ing['pages_per_s']:.1f}")
    par = ing["parallel"]
    if "speedup" in par:
        table.add_row(
            f"pypdf pages/s ({par['workers']} processes)", f"{par['pages_per_s']:.1f} (x{par['speedup']})"
        )
    for row in ing["embed"]["runtimes"]:
        table.add_row(
            f"runtime {row['runtime']} ({row['chunks']} chunks, {row['runs']} run(s))",
            f"{row['chunks_per_s']:.1f} chunks/s (x{row['speedup']}), "
            f"{row['chunks_per_cpu_s']:.1f}/CPU s (x{row['cpu_speedup']}), "
            f"peak RSS {row['peak_rss_bytes'] / 1e6:.0f} MB",
        )
    out.print(table)


def _startup(out: Console, s: dict[str, Any]) -> None:
    table = _table("New process (median of runs)", "command", "wall s", "worst s", "peak RSS MB")
    for key, label in (
        ("import_sentence_transformers", "python -c 'import sentence_transformers'"),
        ("ask_onnx", "nhs-assistant ask (onnx)"),
        ("ask_torch", "nhs-assistant ask (torch)"),
    ):
        r = s[key]
        table.add_row(
            label,
            f"{r['seconds_median']:.2f}",
            f"{r['seconds_max']:.2f}",
            f"{r['peak_rss_bytes_max'] / 1e6:.0f}",
        )
    out.print(table)
    out.print(f"ask (onnx) / import sentence_transformers = {s['ask_onnx_vs_import']:.2f}")


def _query(out: Console, query: dict[str, Any]) -> None:
    table = _table(
        f"Query latency, ms ({query['questions']} questions, {query['index']['chunks']} chunks)",
        "callers",
        "step",
        "p50",
        "p95",
        "p99",
    )
    for label, block in (("1", query["single"]), (str(query["concurrent"]["workers"]), query["concurrent"])):
        for step in ("retrieve", "answer", "total"):
            p = block[step]
            table.add_row(label, step, f"{p['p50']:.1f}", f"{p['p95']:.1f}", f"{p['p99']:.1f}")
    e = query["embed_query_ms"]
    table.add_row("1", "query embedding", f"{e['p50']:.1f}", f"{e['p95']:.1f}", f"{e['p99']:.1f}")
    out.print(table)


def _scale(out: Console, scale: dict[str, Any]) -> None:
    table = _table(
        "Scale: dense indexes (single queries, 1 thread)",
        "chunks",
        "index",
        "params",
        "build s",
        "MB",
        "p50 ms",
        "p95 ms",
        "recall@10",
    )
    for r in scale["dense"]:
        if "skipped" in r:
            table.add_row(f"{r['n']:,}", r["index"], r["params"], "—", "—", "—", "—", r["skipped"])
            continue
        lat = r["latency_ms"]
        table.add_row(
            f"{r['n']:,}",
            r["index"],
            r["params"],
            f"{r['build_s']:.1f}",
            f"{r['bytes'] / 1e6:.0f}",
            f"{lat['p50']:.2f}",
            f"{lat['p95']:.2f}",
            f"{r['recall_at_10']:.3f}",
        )
    out.print(table)
    table = _table(
        "Scale: BM25 (bm25s)", "chunks", "index s", "matrix MB", "RSS growth MB", "p50 ms", "p95 ms"
    )
    for r in scale["bm25"]:
        lat = r["latency_ms"]
        table.add_row(
            f"{r['n']:,}",
            f"{r['index_s']:.1f}",
            f"{r['matrix_bytes'] / 1e6:.0f}",
            f"{r['rss_growth_bytes'] / 1e6:.0f}",
            f"{lat['p50']:.2f}",
            f"{lat['p95']:.2f}",
        )
    out.print(table)
    for note in scale["notes"]:
        out.print(f"[yellow]Note:[/yellow] {note}")


def _app(out: Console, app: dict[str, Any]) -> None:
    if "cold" not in app:
        out.print(f"App start: {app.get('skipped') or app.get('error')}")
        return
    table = _table("App start (s from `streamlit run`)", "start", "healthy", "chat input", "first answer")
    for key in ("cold", "warm"):
        r = app[key]
        table.add_row(key, f"{r['healthy_s']:.2f}", f"{r['input_ready_s']:.2f}", f"{r['answered_s']:.2f}")
    out.print(table)


def _quality(out: Console, quality: dict[str, Any]) -> None:
    runtimes = list(next(iter(quality["sets"].values()))["metrics"]) if quality["sets"] else []
    table = _table("Quality per runtime (largest metric change from the first)", "QA set", *runtimes[1:])
    for name, s in quality["sets"].items():
        table.add_row(name, *(f"{s['max_change'][r]:.4f}" for r in runtimes[1:]))
    out.print(table)


def _stores(out: Console, result: dict[str, Any]) -> None:
    if "sizes" not in result:
        out.print(f"Stores: {result.get('skipped')}")
        return
    from bench.stores import tables

    out.print("Stores (FAISS folder and PostgreSQL + pgvector), and the Ray ingest")
    out.print(tables(result), markup=False)


if __name__ == "__main__":
    sys.exit(main())
