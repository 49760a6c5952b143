"""The evaluation report as one self-contained HTML page (inline PNG plots, inline CSS, no scripts), and
its plots for the app's Evaluation page."""

from __future__ import annotations

import base64
import html
import io
import re
from pathlib import Path
from typing import Any

import numpy as np

from assistant.metrics import HIT_KS, METRIC_KEYS, describe, failed

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2rem; color: #222; }
table { border-collapse: collapse; margin: 1rem 0; }
th, td { border: 1px solid #ccc; padding: 0.3rem 0.6rem; text-align: left; vertical-align: top; }
th { background: #f0f4f8; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
img { max-width: 100%; }
.plots { display: flex; flex-wrap: wrap; gap: 1rem; }
td.answer { max-width: 40rem; }
.bad { color: #b00020; font-weight: bold; }
"""
# Our own bold labels in answer text (answer.py), after escaping: "**Target:**"
_LABEL = re.compile(r"\*\*([A-Z][A-Za-z ]{0,30}):\*\*")


def write_html(report: dict[str, Any], results: list[dict[str, Any]], path: Path) -> None:
    """Write the report page (run, metrics us vs baseline with their meaning, plots, tags, answers) to `path`."""
    ours = report["metrics"]
    theirs = report.get("baseline") or {}
    run = report.get("run") or {}
    made = [f"{report['n']} questions from {_esc(run.get('qa_file') or 'a QA file')}"]
    if run.get("code"):
        made.append(f"answered by nhs-assistant {_esc(run['code'])}")
    if run.get("date"):
        made.append(f"run {_esc(run['date'])}")
    failures = sum(failed(row["metrics"]) for row in results)
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<title>NHS planning assistant - evaluation</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>Evaluation report</h1>",
        f"<p>{', '.join(made)}. {failures} of {len(results)} answers wrong.</p>",
        "<h2>Metrics</h2><table><tr><th>metric</th><th>assistant</th><th>baseline</th><th>meaning</th></tr>",
        *(
            f"<tr><td>{key}</td><td class='num'>{_fmt(ours.get(key))}</td>"
            f"<td class='num'>{_fmt(theirs.get(key))}</td><td>{_esc(describe(key))}</td></tr>"
            for key in METRIC_KEYS
        ),
        "</table><h2>Plots</h2><div class='plots'>",
        *(
            f"<img alt='{alt}' src='data:image/png;base64,{base64.b64encode(png).decode('ascii')}'>"
            for alt, png in plots(report, results)
        ),
        "</div><h2>By tag</h2>",
        _tag_table(report.get("per_tag", {}), report.get("baseline_per_tag") or {}),
        "<h2>Questions</h2>",
        "<table><tr><th>id</th><th>question</th><th>answer</th><th>result</th><th>fact recall</th>",
        "<th>first-hit rank</th></tr>",
        *(
            f"<tr><td>{_esc(row['id'])}</td><td>{_esc(row['question'])}</td>"
            f"<td class='answer'>{answer_html(row.get('answer', ''))}</td>"
            f"<td>{_verdict(row)}</td>"
            f"<td class='num'>{_fmt(row['metrics'].get('fact_recall'))}</td>"
            f"<td class='num'>{_fmt(row['metrics'].get('rank'))}</td></tr>"
            for row in results
        ),
        "</table></body></html>",
    ]
    Path(path).write_text("\n".join(parts), encoding="utf-8")


def plots(report: dict[str, Any], results: list[dict[str, Any]]) -> list[tuple[str, bytes]]:
    """The report's plots as (description, PNG bytes): hit@k and per-tag accuracy beside the baseline, latency."""
    return [
        _hit_curve(report["metrics"], report.get("baseline") or {}),
        _tag_accuracy(report.get("per_tag", {}), report.get("baseline_per_tag") or {}),
        _latency_histogram(results),
    ]


def answer_html(text: str) -> str:
    """An answer as HTML: everything escaped, but our own bold labels ("**Target:**") and line breaks.

    >>> answer_html("**Target:** 76% <b>x</b> [1]\\n- two")
    '<b>Target:</b> 76% &lt;b&gt;x&lt;/b&gt; [1]<br>- two'
    """
    return _LABEL.sub(r"<b>\1:</b>", html.escape(text, quote=False)).replace("\n", "<br>")


def _verdict(row: dict[str, Any]) -> str:
    if failed(row["metrics"]):
        return "<span class='bad'>wrong</span>"
    return "declined" if row.get("refused") else "right"


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


def _png(fig: Any) -> bytes:
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def _hit_curve(ours: dict[str, Any], theirs: dict[str, Any]) -> tuple[str, bytes]:
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


def _latency_histogram(results: list[dict[str, Any]]) -> tuple[str, bytes]:
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


def _tag_accuracy(ours: dict[str, dict[str, Any]], theirs: dict[str, dict[str, Any]]) -> tuple[str, bytes]:
    tags = [tag for tag, m in ours.items() if m.get("answer_accuracy") is not None]
    fig = _figure(width=6.5, height=max(2.2, 0.42 * len(tags) + 1.2))
    ax = fig.add_subplot()
    rows = np.arange(len(tags))
    height = 0.4 if theirs else 0.8
    ax.barh(rows, [ours[t]["answer_accuracy"] for t in tags], height, label="assistant", color="#005EB8")
    if theirs:
        baseline = [(theirs.get(t) or {}).get("answer_accuracy") or 0.0 for t in tags]
        ax.barh(rows + height, baseline, height, label="baseline", color="#AEB7BD")
        ax.legend(loc="lower right")
    ax.set_yticks(rows + (height / 2 if theirs else 0), tags)
    ax.set(xlabel="answer accuracy", title="Answer accuracy by tag", xlim=(0, 1))
    ax.invert_yaxis()
    return "answer accuracy by tag, assistant and baseline", _png(fig)
