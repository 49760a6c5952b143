"""The benchmark's plots: query latency and index memory against corpus size (from the scale section)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.scale import TARGET_RAM_BYTES


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
