"""The evaluation report as one self-contained HTML page: inline PNG plots, inline CSS, no scripts."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

from assistant.metrics import HIT_KS, METRIC_KEYS

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2rem; color: #222; }
table { border-collapse: collapse; margin: 1rem 0; }
th, td { border: 1px solid #ccc; padding: 0.3rem 0.6rem; text-align: left; vertical-align: top; }
th { background: #f0f4f8; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
img { max-width: 100%; }
.plots { display: flex; flex-wrap: wrap; gap: 1rem; }
"""


def write_html(report: dict[str, Any], results: list[dict[str, Any]], path: Path) -> None:
    """Write the report page (metrics us vs baseline, plots, per-question table) to `path`."""
    ours = report["metrics"]
    theirs = report.get("baseline") or {}
    run = report.get("run") or {}
    plots = [_hit_curve(ours, theirs), _latency_histogram(results), _tag_accuracy(report.get("per_tag", {}))]
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<title>NHS planning assistant - evaluation</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>Evaluation report</h1>",
        f"<p>{report['n']} questions from {_esc(run.get('qa_file') or 'a QA file')}"
        f"{', run ' + _esc(run['date']) if run.get('date') else ''}.</p>",
        "<h2>Metrics</h2><table><tr><th>metric</th><th>assistant</th><th>baseline</th></tr>",
        *(
            f"<tr><td>{key}</td><td class='num'>{_fmt(ours.get(key))}</td>"
            f"<td class='num'>{_fmt(theirs.get(key))}</td></tr>"
            for key in METRIC_KEYS
        ),
        "</table><h2>Plots</h2><div class='plots'>",
        *(f"<img alt='{alt}' src='data:image/png;base64,{png}'>" for alt, png in plots),
        "</div><h2>By tag</h2>",
        _tag_table(report.get("per_tag", {}), report.get("baseline_per_tag") or {}),
        "<h2>Questions</h2>",
        "<table><tr><th>id</th><th>question</th><th>refused</th><th>fact recall</th>",
        "<th>first-hit rank</th></tr>",
        *(
            f"<tr><td>{_esc(row['id'])}</td><td>{_esc(row['question'])}</td>"
            f"<td>{'yes' if row['refused'] else 'no'}</td>"
            f"<td class='num'>{_fmt(row['metrics'].get('fact_recall'))}</td>"
            f"<td class='num'>{_fmt(row['metrics'].get('rank'))}</td></tr>"
            for row in results
        ),
        "</table></body></html>",
    ]
    Path(path).write_text("\n".join(parts), encoding="utf-8")


_TAG_COLUMNS = ("hit@1", "fact_recall", "answer_accuracy", "refusal_accuracy", "false_refusal_rate")


def _tag_table(ours: dict[str, dict[str, Any]], theirs: dict[str, dict[str, Any]]) -> str:
    """One row per tag: its question count, then each metric as assistant / baseline."""
    head = "".join(f"<th>{name}</th>" for name in _TAG_COLUMNS)
    rows = [
        f"<tr><td>{_esc(tag)}</td><td class='num'>{m.get('n', '-')}</td>"
        + "".join(
            f"<td class='num'>{_fmt(m.get(key))}"
            + (f" / {_fmt(theirs[tag].get(key))}" if tag in theirs else "")
            + "</td>"
            for key in _TAG_COLUMNS
        )
        + "</tr>"
        for tag, m in ours.items()
    ]
    return f"<table><tr><th>tag</th><th>n</th>{head}</tr>{''.join(rows)}</table>" + (
        "<p>Cells read assistant / baseline.</p>" if theirs else ""
    )


def _esc(value: object) -> str:
    return html.escape(str(value))


def _fmt(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}" if value <= 1 else f"{value:.0f}"
    return _esc(value)


def _figure(width: float = 5.0, height: float = 3.2) -> Any:
    # matplotlib is slow to import and only the report needs it. A bare Figure on an Agg canvas keeps
    # pyplot's global state (and any backend the host app chose) out of it.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _png(fig: Any) -> str:
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _hit_curve(ours: dict[str, Any], theirs: dict[str, Any]) -> tuple[str, str]:
    fig = _figure()
    ax = fig.add_subplot()
    for label, metrics, style in (("assistant", ours, "o-"), ("baseline", theirs, "s--")):
        points = [(k, metrics[f"hit@{k}"]) for k in HIT_KS if metrics.get(f"hit@{k}") is not None]
        if points:
            ax.plot([k for k, _ in points], [v for _, v in points], style, label=label)
    ax.set(xlabel="k", ylabel="hit@k", title="Evidence in the top k", ylim=(0, 1.05), xticks=list(HIT_KS))
    if ax.get_legend_handles_labels()[0]:
        ax.legend()
    return "hit@k curve", _png(fig)


def _latency_histogram(results: list[dict[str, Any]]) -> tuple[str, str]:
    fig = _figure()
    ax = fig.add_subplot()
    ours = [r["timings_ms"]["total"] for r in results if "total" in r.get("timings_ms", {})]
    theirs = [
        r["baseline"]["timings_ms"]["total"]
        for r in results
        if "total" in r.get("baseline", {}).get("timings_ms", {})
    ]
    for label, values in (("assistant", ours), ("baseline", theirs)):
        if values:
            ax.hist(values, bins=20, alpha=0.6, label=label)
    ax.set(xlabel="total latency (ms)", ylabel="questions", title="Latency")
    if ours or theirs:
        ax.legend()
    return "latency histogram", _png(fig)


def _tag_accuracy(per_tag: dict[str, dict[str, Any]]) -> tuple[str, str]:
    scored = {tag: m["answer_accuracy"] for tag, m in per_tag.items() if m.get("answer_accuracy") is not None}
    fig = _figure(width=6.0, height=max(2.0, 0.3 * len(scored) + 1))
    ax = fig.add_subplot()
    ax.barh(list(scored), list(scored.values()))
    ax.set(xlabel="answer accuracy", title="Answer accuracy by tag", xlim=(0, 1))
    ax.invert_yaxis()
    return "answer accuracy by tag", _png(fig)
