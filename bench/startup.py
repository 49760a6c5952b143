"""Start-up: a new `nhs-assistant ask` process (wall, peak RSS) per runtime, and the app to its first answer.

The yardstick is measured in the same run: a process that only imports sentence_transformers.
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from assistant.config import Settings
from bench.common import QUESTION, ROOT, Log, load_average, run_child

ASK_RUNS_FULL = 7
ASK_RUNS_QUICK = 1


def _env(settings: Settings, runtime: str) -> dict[str, str]:
    return os.environ | {
        "OMP_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
        "ASSISTANT_INDEX_DIR": str(settings.index_dir),
        "ASSISTANT_MODEL_CACHE_DIR": str(settings.model_cache_dir),
        "ASSISTANT_EMBEDDING_RUNTIME": runtime,
    }


def _series(args: list[str], env: dict[str, str], runs: int, expect: str | None) -> dict[str, Any]:
    """`runs` timed runs of `args` after one untimed run (page cache warm), median and worst."""
    warm = run_child(args, env)
    if warm.returncode != 0 or (expect and expect not in warm.stdout):
        raise RuntimeError(f"{' '.join(args[1:])} failed: {warm.stderr[-500:] or warm.stdout[-500:]}")
    children = [run_child(args, env) for _ in range(runs)]
    seconds = [c.seconds for c in children]
    rss = [c.peak_rss_bytes for c in children]
    return {
        "runs": runs,
        "seconds_median": round(statistics.median(seconds), 3),
        "seconds_min": round(min(seconds), 3),
        "seconds_max": round(max(seconds), 3),
        "peak_rss_bytes_max": max(rss),
        "failed": sum(c.returncode != 0 or bool(expect and expect not in c.stdout) for c in children),
    }


def bench_ask_process(settings: Settings, quick: bool, log: Log) -> dict[str, Any]:
    """A new `python -m assistant ask` (= `nhs-assistant ask`) per runtime, beside `import sentence_transformers`."""
    runs = ASK_RUNS_QUICK if quick else ASK_RUNS_FULL
    ask = [sys.executable, "-m", "assistant", "ask", QUESTION]
    out: dict[str, Any] = {"question": QUESTION, "load_average_start": load_average()}
    log(f"startup: `import sentence_transformers` alone, {runs} runs")
    out["import_sentence_transformers"] = _series(
        [sys.executable, "-c", "import sentence_transformers"], _env(settings, "torch"), runs, None
    )
    for runtime in ("onnx", "torch"):
        log(f"startup: `nhs-assistant ask` with runtime {runtime}, {runs} runs")
        out[f"ask_{runtime}"] = _series(ask, _env(settings, runtime), runs, "76%")
    out["load_average_end"] = load_average()
    yardstick = out["import_sentence_transformers"]["seconds_median"]
    out["ask_onnx_vs_import"] = round(out["ask_onnx"]["seconds_median"] / yardstick, 3)
    return out


def time_app_start(index_dir: Path, work: Path, settings: Settings) -> dict[str, float]:
    """Seconds from `streamlit run app.py` to the first answered question in headless chromium."""
    from playwright.sync_api import expect, sync_playwright

    from tests.support.streamlit_app import CHROMIUM_ARGS, free_port, start_app, stop_app, wait_healthy

    chromium = shutil.which("chromium")
    if chromium is None:
        raise RuntimeError("chromium is not installed; run `make browser`")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = _env(settings, settings.embedding_runtime) | {
        "ASSISTANT_INDEX_DIR": str(index_dir),
        "ASSISTANT_CORPUS_DIR": str(ROOT / "corpus"),
        "ASSISTANT_FEEDBACK_DB": str(work / "feedback.sqlite3"),
    }
    with sync_playwright() as p:
        # The browser starts first, so its own start is not counted.
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        log = (work / f"streamlit-{port}.log").open("wb")
        t0 = time.perf_counter()
        server = start_app(port, env, log)
        try:
            wait_healthy(url, server, timeout=120)
            healthy = time.perf_counter() - t0
            page = browser.new_page()
            page.goto(url)
            chat = page.get_by_test_id("stChatInputTextArea")
            chat.wait_for(timeout=120_000)
            ready = time.perf_counter() - t0
            chat.fill(QUESTION)
            chat.press("Enter")
            expect(page.get_by_test_id("stChatMessage").nth(1)).to_contain_text("76%", timeout=120_000)
            answered = time.perf_counter() - t0
        finally:
            browser.close()
            stop_app(server, log)
    return {
        "healthy_s": round(healthy, 2),
        "input_ready_s": round(ready, 2),
        "answered_s": round(answered, 2),
    }


def bench_app_start(index_dir: Path, work: Path, settings: Settings, log: Log) -> dict[str, Any]:
    """The Streamlit app from `streamlit run` to its first answer: first start, then a second one."""
    log("app start: first start")
    cold = time_app_start(index_dir, work, settings)
    log("app start: second start")
    warm = time_app_start(index_dir, work, settings)
    return {
        "method": "playwright + Debian chromium; clock starts at Popen(streamlit run app.py), page opened "
        "as soon as the server answers its health check",
        "runtime": settings.embedding_runtime,
        "cold": cold,
        "warm": warm,
        "load_average": load_average(),
    }
