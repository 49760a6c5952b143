"""Load test of the HTTP API: concurrent clients asking questions through `nhs-assistant serve --workers N`,
beside one client alone. Loopback only; bounded in requests and in time (it stops by itself).

    python bench/load_api.py                       # 20 clients x 25 questions, 2 workers
    python bench/load_api.py --clients 4 --questions 5 --out bench/out/load_api.json

It builds a temporary index of corpus/ (with `nhs-assistant ingest`) and times the same questions on
`Chain.ask` in a subprocess (the library alone, no HTTP). Then it starts the server on a free 127.0.0.1
port with OMP_NUM_THREADS=1, waits until every worker has loaded, and: one client asks the questions one
after another; then every client asks all of them at once (each from a different starting point). Every
reply must be a 200 chat completion whose text equals the single client's answer to the same question.
Prints p50/p95/p99 latency and throughput for the three runs and writes them as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
QA_SETS = ("objectives.jsonl", "heldout.jsonl")


def load_questions(count: int) -> list[str]:
    """`count` distinct questions from the bundled QA sets (answerable and not), in file order."""
    found: list[str] = []
    for name in QA_SETS:
        for line in (ROOT / "eval" / "qa" / name).read_text(encoding="utf-8").splitlines():
            if line.strip():
                found.append(json.loads(line)["question"])
    return list(dict.fromkeys(found))[:count]


def ask(http: httpx.Client, question: str) -> tuple[float, str | None, str]:
    """(seconds, error or None, answer text) for one non-streamed chat completion."""
    started = time.perf_counter()
    try:
        reply = http.post(
            "/v1/chat/completions",
            json={"model": "nhs-assistant", "messages": [{"role": "user", "content": question}]},
        )
        elapsed = time.perf_counter() - started
        if reply.status_code != 200:
            return elapsed, f"HTTP {reply.status_code}: {reply.text[:200]}", ""
        return elapsed, None, str(reply.json()["choices"][0]["message"]["content"])
    except (httpx.HTTPError, ValueError, KeyError) as err:
        return time.perf_counter() - started, f"{type(err).__name__}: {err}", ""


def run_clients(
    base: str, questions: list[str], clients: int, deadline: float, keep_alive: bool = True
) -> dict[str, Any]:
    """Every client asks every question (client i starts at question i); all start together. With
    keep_alive each client reuses one connection (as the openai client does), else opens one per
    question (as curl does)."""
    results: list[list[tuple[str, float, str | None, str]]] = [[] for _ in range(clients)]
    start = threading.Barrier(clients + 1)
    limits = httpx.Limits() if keep_alive else httpx.Limits(max_keepalive_connections=0)

    def client(i: int) -> None:
        with httpx.Client(base_url=base, timeout=120, limits=limits) as http:
            start.wait()
            for j in range(len(questions)):
                if time.monotonic() > deadline:
                    results[i].append(("", 0.0, "stopped: the time limit was reached", ""))
                    return
                question = questions[(i + j) % len(questions)]
                results[i].append((question, *ask(http, question)))

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()) + 130)
    wall = time.perf_counter() - began
    rows = [row for per_client in results for row in per_client]
    return {"rows": rows, "wall_s": wall}


def summary(
    rows: list[tuple[str, float, str | None, str]], wall: float, reference: dict[str, str]
) -> dict[str, Any]:
    """Latency percentiles (ms), throughput, errors, and answers that differ from the single client's."""
    ok = [seconds * 1000 for _, seconds, error, _ in rows if error is None]
    cuts = statistics.quantiles(ok, n=100, method="inclusive") if len(ok) > 1 else ok * 99
    errors = [error for _, _, error, _ in rows if error is not None]
    differ = [q for q, _, error, text in rows if error is None and q in reference and text != reference[q]]
    return {
        "requests": len(rows),
        "errors": len(errors),
        "first_errors": errors[:5],
        "answers_differing_from_single_client": len(differ),
        "p50_ms": round(cuts[49], 1) if ok else None,
        "p95_ms": round(cuts[94], 1) if ok else None,
        "p99_ms": round(cuts[98], 1) if ok else None,
        "mean_ms": round(statistics.fmean(ok), 1) if ok else None,
        "wall_s": round(wall, 2),
        "throughput_rps": round(len(ok) / wall, 1) if wall else None,
    }


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for_workers(base: str, workers: int, server: subprocess.Popen[bytes], deadline: float) -> list[int]:
    """Until `workers` distinct processes have answered /health with 200 (each loaded the index); their pids."""
    ready: set[int] = set()
    while len(ready) < workers:
        if server.poll() is not None:
            raise SystemExit(f"the server exited with {server.returncode}")
        if time.monotonic() > deadline:
            raise SystemExit(f"only {len(ready)} of {workers} workers were ready in time")
        try:
            reply = httpx.get(f"{base}/health", timeout=10)  # a new connection: any worker
            if reply.status_code == 200:
                ready.add(int(reply.json()["pid"]))
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    return sorted(ready)


def cpu_seconds(pids: list[int]) -> list[float]:
    """CPU time (user + system) each process has used so far, from /proc (Linux); [] elsewhere."""
    try:
        ticks = os.sysconf("SC_CLK_TCK")
        fields = [Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split() for pid in pids]
    except (OSError, ValueError, AttributeError):
        return []
    return [(int(f[11]) + int(f[12])) / ticks for f in fields]  # utime, stime


def measure(
    base: str, questions: list[str], clients: int, deadline: float, workers: list[int] | None = None
) -> dict[str, Any]:
    """Warm up, then the single client, then `clients` at once (pooled connections, then a new connection
    per question), against a running server."""
    with httpx.Client(base_url=base, timeout=120) as http:
        for question in questions[:5]:
            ask(http, question)
        began = time.perf_counter()
        single = [(q, *ask(http, q)) for q in questions if time.monotonic() < deadline]
        single_wall = time.perf_counter() - began
    reference = {q: text for q, _, error, text in single if error is None}
    result = {"single": summary(single, single_wall, reference)}
    for name, keep_alive in (("concurrent", True), ("concurrent_new_connections", False)):
        before = cpu_seconds(workers or [])
        run = run_clients(base, questions, clients, deadline, keep_alive)
        used = [round(b - a, 2) for a, b in zip(before, cpu_seconds(workers or []), strict=False)]
        # how the work split between the workers, and how many cores they kept busy together
        result[name] = summary(run["rows"], run["wall_s"], reference) | {
            "worker_cpu_s": used,
            "server_cores_busy": round(sum(used) / run["wall_s"], 2) if used else None,
        }
    return result


_CHAIN_ALONE = """
import json, sys, time
from assistant.chain import Chain
questions = json.loads(sys.stdin.read())
chain = Chain()
for q in questions[:5]:
    chain.ask(q)
began = time.perf_counter()
times = []
for q in questions:
    t0 = time.perf_counter()
    chain.ask(q)
    times.append(time.perf_counter() - t0)
print(json.dumps({"times": times, "wall": time.perf_counter() - began}))
"""


def chain_alone(questions: list[str], env: dict[str, str]) -> dict[str, Any]:
    """The same questions on Chain.ask in a fresh process (warm, one caller): what HTTP adds is the rest."""
    run = subprocess.run(
        [sys.executable, "-c", _CHAIN_ALONE],
        input=json.dumps(questions),
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    timed = json.loads(run.stdout)
    rows: list[tuple[str, float, str | None, str]] = [
        (q, t, None, "") for q, t in zip(questions, timed["times"], strict=True)
    ]
    return summary(rows, timed["wall"], {})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--questions", type=int, default=25, help="questions per client")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--time-limit", type=float, default=900, help="seconds before it stops asking")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "load_api.json")
    args = parser.parse_args(argv)
    deadline = time.monotonic() + args.time_limit
    load_before = os.getloadavg()  # the machine may be shared: the numbers say how busy it was
    questions = load_questions(args.questions)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ASSISTANT_API_KEYS": "", "ASSISTANT_API_KEYS_FILE": ""}
    tmp = Path(tempfile.mkdtemp(prefix="nhs-load-api-"))
    try:
        shutil.copytree(ROOT / "corpus", tmp / "corpus")
        env |= {"ASSISTANT_INDEX_DIR": str(tmp / "index"), "ASSISTANT_CORPUS_DIR": str(tmp / "corpus")}
        subprocess.run(
            [sys.executable, "-m", "assistant", "ingest"], env=env, check=True, capture_output=True
        )
        alone = chain_alone(questions, env)
        port = _free_port()
        base = f"http://127.0.0.1:{port}"
        with (tmp / "server.log").open("wb") as log:
            server = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "assistant",
                    "serve",
                    "--port",
                    str(port),
                    "--workers",
                    str(args.workers),
                ],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            try:
                pids = _wait_for_workers(base, args.workers, server, deadline)
                result = measure(base, questions, args.clients, deadline, pids)
            finally:
                server.terminate()
                server.wait(timeout=60)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result |= {
        "chain_alone": alone,
        "clients": args.clients,
        "questions_per_client": len(questions),
        "workers": args.workers,
        "cpus": os.cpu_count(),
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"{'run':<34}{'requests':>9}{'errors':>8}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'req/s':>8}")
    for label, block in (
        ("Chain.ask in process, no HTTP", result["chain_alone"]),
        ("1 client", result["single"]),
        (f"{args.clients} clients, {args.workers} workers", result["concurrent"]),
        ("  the same, a connection per question", result["concurrent_new_connections"]),
    ):
        print(
            f"{label:<34}{block['requests']:>9}{block['errors']:>8}{block['p50_ms']!s:>9}"
            f"{block['p95_ms']!s:>9}{block['p99_ms']!s:>9}{block['throughput_rps']!s:>8}"
        )
    for name in ("concurrent", "concurrent_new_connections"):
        block = result[name]
        print(f"{name}: worker CPU s {block['worker_cpu_s']}, server cores busy {block['server_cores_busy']}")
    runs = ("single", "concurrent", "concurrent_new_connections")
    differing = sum(result[k]["answers_differing_from_single_client"] for k in runs)
    print(f"answers differing from the single client's: {differing}")
    print(f"wrote {args.out}")
    clean = differing == 0 and all(result[k]["errors"] == 0 for k in runs)
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main())
