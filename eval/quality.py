"""Score every bundled QA set on the corpus it was written for, beside the naive recipe, and print the
Markdown tables docs/QUALITY.md is made of.

    python eval/quality.py --out /tmp/quality                    # extractive + naive, every set
    python eval/quality.py --out /tmp/quality --mode generative  # the same through the local model (slow)
    python eval/quality.py --render /tmp/quality [--before DIR]  # tables only, from saved runs

Each set runs through `nhs-assistant eval SET --corpus ... --json` (one index per corpus, built once),
so the numbers are what a user of the CLI gets.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SETS = {
    "objectives": ["corpus"],
    "heldout": ["corpus"],
    "pdf": ["eval/pdfs"],
    "dev": ["corpus", "eval/pdfs"],
    "blind": ["corpus", "eval/pdfs"],
}
COLUMNS = [
    ("hit@1", "hit@1"),
    ("mrr@10", "MRR"),
    ("fact_recall", "fact recall"),
    ("answer_accuracy", "answer acc."),
    ("refusal_accuracy", "unanswerable refused"),
    ("false_refusal_rate", "answerable refused"),
    ("page_accuracy", "page acc."),
    ("citation_validity", "verified citations"),
    ("latency_ms_p50", "p50 ms"),
]


def run(out: Path, mode: str, baseline: bool) -> None:
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    indexes = out / "indexes"
    for name, corpora in SETS.items():
        index = indexes / "-".join(Path(c).name for c in corpora)
        if not (index / "manifest.json").exists():
            subprocess.run(
                [sys.executable, "-m", "assistant", "ingest", *corpora, "--index", str(index)],
                cwd=ROOT,
                env=env,
                check=True,
                capture_output=True,
            )
        args = ["eval", f"eval/qa/{name}.jsonl", "--index", str(index), "--json", "--mode", mode]
        args += ["--out", str(out / f"{name}-{mode}")] + ([] if baseline else ["--no-baseline"])
        result = subprocess.run(
            [sys.executable, "-m", "assistant", *args], cwd=ROOT, env=env, capture_output=True, text=True
        )
        if result.returncode:
            raise SystemExit(f"{name}: {result.stderr.strip().splitlines()[-1]}")
        (out / f"{name}-{mode}.json").write_text(result.stdout, encoding="utf-8")
        print(f"{name} ({mode}) done", file=sys.stderr)


def _cell(value: float | None, key: str) -> str:
    if value is None:
        return "–"
    return f"{value:.0f}" if key.startswith("latency") else f"{value:.3f}"


def render(runs: Path, before: Path | None) -> str:
    lines = ["| set | system | " + " | ".join(label for _, label in COLUMNS) + " |"]
    lines.append("|" + "---|" * (len(COLUMNS) + 2))
    for name in SETS:
        rows: list[tuple[str, dict[str, float | None]]] = []
        if before and (before / f"{name}.json").exists():
            old = json.loads((before / f"{name}.json").read_text())
            rows.append(("before (d9fd62d)", old["metrics"]))
        for mode in ("extractive", "generative"):
            path = runs / f"{name}-{mode}.json"
            if path.exists():
                report = json.loads(path.read_text())
                rows.append(("assistant" if mode == "extractive" else "generative", report["metrics"]))
                if mode == "extractive" and report.get("baseline"):
                    rows.append(("naive recipe", report["baseline"]))
        for system, metrics in rows:
            cells = " | ".join(_cell(metrics.get(key), key) for key, _ in COLUMNS)
            lines.append(f"| {name} | {system} | {cells} |")
    return "\n".join(lines)


def render_tags(runs: Path, name: str) -> str:
    report = json.loads((runs / f"{name}-extractive.json").read_text())
    theirs = report.get("baseline_per_tag") or {}
    lines = [
        "| tag | n | hit@1 | fact recall | refused (unanswerable) | refused (answerable) | naive fact recall |"
    ]
    lines.append("|---|---|---|---|---|---|---|")
    for tag, m in sorted(report["per_tag"].items(), key=lambda kv: -kv[1].get("n", 0)):
        naive = theirs.get(tag, {}).get("fact_recall")
        lines.append(
            f"| {tag} | {m.get('n')} | {_cell(m.get('hit@1'), '')} | {_cell(m.get('fact_recall'), '')} | "
            f"{_cell(m.get('refusal_accuracy'), '')} | {_cell(m.get('false_refusal_rate'), '')} | {_cell(naive, '')} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="run every set and save the reports here")
    parser.add_argument("--mode", choices=["extractive", "generative"], default="extractive")
    parser.add_argument("--render", type=Path, help="print the tables from saved runs")
    parser.add_argument("--before", type=Path, help="a folder of earlier `eval --json` outputs, SET.json")
    parser.add_argument("--tags", default="blind", help="the set whose per-tag table is printed")
    args = parser.parse_args()
    if args.out:
        run(args.out, args.mode, baseline=args.mode == "extractive")
    runs = args.render or args.out
    if runs:
        print(render(runs, args.before))
        print()
        print(render_tags(runs, args.tags))
    return 0


if __name__ == "__main__":
    sys.exit(main())
