"""`nhs-assistant bench --quick` end to end: the JSON it prints and the files it writes (no timing asserts)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_quick_bench_writes_json_and_plots(tmp_path: Path) -> None:
    out = tmp_path / "bench"
    env = os.environ | {"HF_HUB_OFFLINE": "1", "ASSISTANT_INDEX_DIR": str(tmp_path / "unused-index")}
    run = subprocess.run(
        [sys.executable, "-m", "assistant", "bench", "--quick", "--json", "--out", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    printed = json.loads(run.stdout)
    saved = json.loads((out / "bench.json").read_text(encoding="utf-8"))
    assert printed == saved
    assert saved["meta"]["quick"] is True
    assert saved["meta"]["machine"]["cores"] >= 1

    ingest = saved["ingest"]
    assert ingest["pages"] == 3
    assert ingest["chunks"] > 0
    assert {"pipeline_chunks_per_s", "raw_chunks_per_s", "ratio"} <= set(ingest["embed"])
    assert ingest["peak_rss_bytes"] > 0

    query = saved["query"]
    assert query["questions"] == 50
    for block in (query["single"], query["concurrent"]):
        for step in ("retrieve", "answer", "total"):
            assert set(block[step]) >= {"p50", "p95", "p99"}
            assert block[step]["n"] == 50
    assert query["concurrent"]["workers"] == 4

    scale = saved["scale"]
    assert {r["n"] for r in scale["dense"]} == {10_000}
    assert {r["index"] for r in scale["dense"]} == {"IndexFlatIP", "IndexHNSWFlat", "IndexIVFFlat"}
    for row in scale["dense"]:
        assert 0.0 <= row["recall_at_10"] <= 1.0
        assert row["bytes"] > 0
    flat = next(r for r in scale["dense"] if r["index"] == "IndexFlatIP")
    assert flat["recall_at_10"] == 1.0
    assert scale["bm25"][0]["n"] == 10_000
    assert any("NOT embedded" in note for note in scale["notes"])
    assert "10000" in scale["choice"]
    assert saved["app_start"] == {"skipped": "--quick"}

    for name in saved["files"]:
        assert (out / name).stat().st_size > 0
    assert {"latency_vs_size.png", "memory_vs_size.png"} <= set(saved["files"])
