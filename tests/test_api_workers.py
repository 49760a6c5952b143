"""`nhs-assistant serve --workers 2`: both workers see a new ingest without a restart, and /metrics adds
up both (a real server, two real worker processes)."""

from __future__ import annotations

import importlib.util
import re
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import httpx
import pytest
from conftest import ROOT, running_api

pytestmark = pytest.mark.slow
RIVERSIDE = (
    b"# Riverside bulletin\n\nThe Riverside trust aims to cut falls on its wards by 15% by April 2025.\n"
)


def _load_bench() -> ModuleType:
    """bench/load_api.py, the load test script (bench/ is not a package)."""
    spec = importlib.util.spec_from_file_location("load_api", ROOT / "bench" / "load_api.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _health_by_worker(
    base: str, want: Callable[[dict[str, object]], bool], timeout: float = 180
) -> dict[int, dict]:
    """/health over new connections until two workers have each answered one that `want` accepts."""
    seen: dict[int, dict] = {}
    deadline = time.monotonic() + timeout
    while len(seen) < 2:
        assert time.monotonic() < deadline, f"only workers {sorted(seen)} answered as wanted"
        reply = httpx.get(f"{base}/health", timeout=30)  # a new connection each time: either worker
        body = reply.json()
        if reply.status_code == 200 and want(body):
            seen[int(body["pid"])] = body
        time.sleep(0.05)
    return seen


def test_two_workers_see_an_upload_without_restart_and_metrics_add_up(
    index_env: Callable[[str], dict[str, str]], tmp_path: Path
) -> None:
    env = index_env("workers")
    with running_api(env, tmp_path / "server.log", "--workers", "2") as base:
        before = _health_by_worker(base, lambda body: True)
        (old,) = {b["index"]["build"] for b in before.values()}  # type: ignore[index]

        upload = httpx.post(f"{base}/v1/documents", files={"file": ("riverside.md", RIVERSIDE)}, timeout=60)
        assert upload.status_code == 202, upload.text
        job = upload.json()["job"]
        deadline = time.monotonic() + 120
        # polled over new connections: the job's record is on disk, so either worker can answer
        while (record := httpx.get(f"{base}/v1/jobs/{job['id']}").json())["status"] not in (
            "succeeded",
            "failed",
        ):
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert record["status"] == "succeeded", record

        after = _health_by_worker(base, lambda body: body["index"]["build"] != old, timeout=60)  # type: ignore[index]
        assert set(after) == set(before)  # the same two processes: no restart
        assert all(b["index"]["documents"] == 3 for b in after.values())  # type: ignore[index]
        for _ in range(6):
            top = httpx.post(
                f"{base}/v1/chunks", json={"text": "Riverside falls on wards", "limit": 1}
            ).json()
            assert top["data"][0]["metadata"]["source"] == "riverside.md"

        for _ in range(20):
            assert httpx.get(f"{base}/v1/models").status_code == 200
        time.sleep(0.5)  # the counter moves after the last byte is sent
        metrics = httpx.get(f"{base}/metrics").text
        count = re.search(
            r'nhs_assistant_requests_total\{method="GET",route="/v1/models",status="200"\} (\S+)', metrics
        )
        assert count and float(count.group(1)) == 20

        # The load test's own checks, small: concurrent clients get no error and the single client's answers.
        bench = _load_bench()
        result = bench.measure(base, bench.load_questions(6), clients=4, deadline=time.monotonic() + 120)
        for run in ("single", "concurrent", "concurrent_new_connections"):
            assert result[run]["errors"] == 0 and result[run]["answers_differing_from_single_client"] == 0
        assert result["concurrent"]["requests"] == 24
    log = (tmp_path / "server.log").read_text()
    assert "No API keys configured: listening on 127.0.0.1 only" in log  # said at start
    assert "Traceback" not in log
