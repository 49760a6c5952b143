"""Answer quality per embedding runtime: every bundled QA set scored with each, on the corpus it is about.

A runtime may only replace another if no metric of any set moves by more than TOLERANCE (issue 16).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from assistant.config import Settings
from bench.common import ROOT, Log

TOLERANCE = 0.01
# The folders each bundled set is asked over (as `nhs-assistant eval SET --corpus DIR`); a set not named
# here is asked over both.
CORPORA = {
    "objectives.jsonl": ("corpus",),
    "heldout.jsonl": ("corpus",),
    "pdf.jsonl": ("eval/pdfs",),
}
DEFAULT_CORPUS = ("corpus", "eval/pdfs")


def score(qa: Path, runtime: str, settings: Settings, work: Path) -> dict[str, float]:
    """The metrics of `qa` with a fresh index built and queried in `runtime`."""
    from assistant.chain import Chain
    from assistant.evaluation import evaluate, load_qa
    from assistant.store import build_index

    run = settings.with_(index_dir=work / f"{qa.stem}-{runtime}", embedding_runtime=runtime)
    build_index([ROOT / folder for folder in CORPORA.get(qa.name, DEFAULT_CORPUS)], run)
    chain = Chain(run)
    report = evaluate(load_qa(qa), ask=chain.ask)
    return {k: v for k, v in report["metrics"].items() if isinstance(v, float) and "latency" not in k}


def bench_quality(settings: Settings, runtimes: tuple[str, ...], log: Log) -> dict[str, Any]:
    """Metrics of every eval/qa set per runtime, and the largest change from the first runtime."""
    sets = sorted((ROOT / "eval" / "qa").glob("*.jsonl"))
    out: dict[str, Any] = {"before": runtimes[0], "tolerance": TOLERANCE, "sets": {}}
    with tempfile.TemporaryDirectory(prefix="nhs-bench-quality-") as tmp:
        for qa in sets:
            by_runtime = {}
            for runtime in runtimes:
                log(f"quality: {qa.name} with runtime {runtime}")
                by_runtime[runtime] = score(qa, runtime, settings, Path(tmp))
            before = by_runtime[runtimes[0]]
            out["sets"][qa.name] = {
                "corpus": list(CORPORA.get(qa.name, DEFAULT_CORPUS)),
                "metrics": by_runtime,
                "max_change": {
                    runtime: round(max((abs(m[k] - before[k]) for k in before if k in m), default=0.0), 4)
                    for runtime, m in by_runtime.items()
                    if runtime != runtimes[0]
                },
            }
    out["within_tolerance"] = {
        runtime: all(s["max_change"][runtime] <= TOLERANCE for s in out["sets"].values())
        for runtime in runtimes[1:]
    }
    return out
