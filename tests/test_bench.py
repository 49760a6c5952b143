"""`python -m bench --quick` end to end: the JSON it prints and the files it writes (no timing asserts)."""

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
        timeout=600,
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
    runtimes = ingest["embed"]["runtimes"]
    assert [r["runtime"] for r in runtimes] == ["torch", "onnx"]  # before, then after, same files
    assert all(r["chunks"] == ingest["chunks"] and r["peak_rss_bytes"] > 0 for r in runtimes)
    assert all(r["chunks_per_s"] > 0 and r["chunks_per_cpu_s"] > 0 for r in runtimes)

    startup = saved["startup"]
    for key in ("import_sentence_transformers", "ask_onnx", "ask_torch"):
        assert startup[key]["runs"] == 1 and startup[key]["failed"] == 0
        assert startup[key]["seconds_median"] > 0 and startup[key]["peak_rss_bytes_max"] > 0
    assert startup["ask_onnx_vs_import"] > 0

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
    assert saved["app"] == {"skipped": "--quick"}
    assert saved["stores"] == {"skipped": "--quick"}

    quality = saved["quality"]
    assert set(quality["sets"]) == {"heldout.jsonl"}  # --quick: the smallest set; the full run scores all
    for qa in quality["sets"].values():
        assert set(qa["metrics"]) == {"torch", "onnx"} and qa["metrics"]["onnx"]
    assert set(quality["within_tolerance"]) == {"onnx"}

    for name in saved["files"]:
        assert (out / name).stat().st_size > 0
    assert {"latency_vs_size.png", "memory_vs_size.png"} <= set(saved["files"])


def test_bench_outside_a_checkout_says_where_it_lives(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "assistant", "bench", "--quick"],
        cwd=tmp_path,
        env=os.environ | {"PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 1
    assert "source repository's bench/ folder, not in the installed package" in run.stderr
    assert not (tmp_path / "bench").exists()
