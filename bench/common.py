"""What every section of the benchmark shares: repository paths, percentiles, memory and child processes."""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

Log = Callable[[str], None]

ROOT = Path(__file__).resolve().parents[1]
SHARED_PDFS = ROOT / ".." / "shared" / "pdfs"
QUESTION = "what is the A&E 4-hour target?"


def percentiles(values: Iterable[float]) -> dict[str, float]:
    """p50/p95/p99/mean of a sample (ms), by linear interpolation.

    >>> percentiles([1, 2, 3, 4])["p50"]
    2.5
    """
    data = np.asarray(list(values), dtype=float)
    if data.size == 0:
        return {"p50": 0.0, "p95": 0.0, "p99": 0.0, "mean": 0.0, "n": 0}
    p50, p95, p99 = np.percentile(data, [50, 95, 99])
    return {
        "p50": round(float(p50), 3),
        "p95": round(float(p95), 3),
        "p99": round(float(p99), 3),
        "mean": round(float(data.mean()), 3),
        "n": int(data.size),
    }


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean share of each row of `truth` (exact top-k ids) that `found` holds.

    >>> recall_at_k(np.array([[1, 2, 3]]), np.array([[1, 2, 4]]))
    0.6666666666666666
    """
    hits = [len(set(f.tolist()) & set(t.tolist())) / len(t) for f, t in zip(found, truth, strict=True)]
    return float(np.mean(hits))


def peak_rss_bytes() -> int:
    """Peak resident set size of this process so far (Linux reports KiB)."""
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def rss_bytes() -> int:
    """Current resident set size of this process."""
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def machine() -> dict[str, Any]:
    """CPU model, core count and memory of this machine."""
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem = next(
            int(line.split()[1]) * 1024
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal")
        )
    except (OSError, StopIteration):
        mem = 0
    return {
        "cpu": cpu,
        "cores": os.cpu_count() or 1,
        "memory_bytes": mem,
        "python": platform.python_version(),
    }


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    """`fn()` and the seconds it took."""
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


@dataclass
class Child:
    """One finished child process: wall seconds, its own peak RSS, exit code and output."""

    seconds: float
    peak_rss_bytes: int
    returncode: int
    stdout: str
    stderr: str


# Forks and execs the command from a bare interpreter (python -S, ~10 MB) and writes its wall time and
# peak RSS to a file. Linux carries a process's peak RSS across exec, so a child forked straight from this
# benchmark (hundreds of MB) would report the benchmark's size instead of its own.
_MEASURE = """
import os, sys, time
t = time.perf_counter()
pid = os.fork()
if pid == 0:
    os.execvp(sys.argv[2], sys.argv[2:])
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as fh:
    fh.write(f"{time.perf_counter() - t} {usage.ru_maxrss * 1024} {os.waitstatus_to_exitcode(status)}")
"""


def run_child(args: list[str], env: dict[str, str] | None = None, timeout: float = 600) -> Child:
    """Run `args` from the repository root; its wall time from fork to exit, and its own peak RSS."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="nhs-bench-child-") as tmp:
        measured = Path(tmp) / "measured"
        run = subprocess.run(
            [sys.executable, "-S", "-c", _MEASURE, str(measured), *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if not measured.is_file():
            raise RuntimeError(f"could not measure {' '.join(args)}: {run.stderr[-500:]}")
        seconds, rss, code = measured.read_text().split()
    return Child(float(seconds), int(rss), int(code), run.stdout, run.stderr)


def load_questions(n: int) -> list[str]:
    """`n` questions, cycling eval/qa/objectives.jsonl and eval/qa/pdf.jsonl."""
    pool: list[str] = []
    for name in ("objectives.jsonl", "pdf.jsonl"):
        path = ROOT / "eval" / "qa" / name
        if path.is_file():
            pool += [json.loads(line)["question"] for line in path.read_text().splitlines() if line.strip()]
    if not pool:
        pool = [QUESTION]
    return [pool[i % len(pool)] for i in range(n)]


def load_average() -> float:
    """The 1-minute load average (how busy the shared machine was)."""
    return round(os.getloadavg()[0], 2)
