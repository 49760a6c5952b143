"""Distributed ingest on a real local Ray cluster: the same index as a serial ingest, with progress.

Ray takes ~10 s to start and each embedding worker loads the model, so this is one cluster (2 CPUs, a
small object store) for the few runs below.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from assistant.config import Settings
from assistant.store import build_index, load_index


@pytest.mark.slow
def test_ray_ingest_equals_the_serial_one_and_shows_progress(
    corpus_index: Path,
    pg_settings: Callable[..., Settings],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from assistant.cli import main
    from assistant.distributed import ray_pipeline

    settings = pg_settings()
    corpus = corpus_index / "corpus"
    messages: list[tuple[str, int, int]] = []
    started = time.perf_counter()
    with ray_pipeline(settings, workers=2, object_store_mb=100) as pipeline:
        ready = time.perf_counter()
        report = build_index(
            [corpus], settings, pipeline=pipeline, progress=lambda m, n, total: messages.append((m, n, total))
        )
        ingested = time.perf_counter()
        # the CLI joins the running cluster (as `--ray ADDRESS` would join a remote one) and writes a folder
        (tmp_path / "extra").mkdir()
        (tmp_path / "extra" / "local.md").write_text("# Local plan\n\nOpen 14 community beds.\n")
        code = main(
            ["ingest", str(tmp_path / "extra"), "--ray", "--workers", "1", "--index", str(tmp_path / "ix")]
        )
    out = capsys.readouterr().out
    print(
        f"ray start {ready - started:.1f} s, ingest {ingested - ready:.1f} s, cli {time.perf_counter() - ingested:.1f} s"
    )
    assert code == 0 and "Indexed 1 files" in out and "embedded 1 chunks" in out

    serial = load_index(Settings(index_dir=corpus_index / "index"))  # built serially by the fixture
    ray = load_index(settings)
    assert [c.id for c in ray.chunks] == [c.id for c in serial.chunks]
    assert [c.page_content for c in ray.chunks] == [c.page_content for c in serial.chunks]
    assert ray.targets == serial.targets
    for position in range(len(serial.chunks)):
        np.testing.assert_allclose(ray.vector(position), serial.vector(position), atol=1e-5)
        _, a = serial.units_of(position)
        _, b = ray.units_of(position)
        assert (a is None) == (b is None)
        if a is not None:
            np.testing.assert_allclose(b, a, atol=1e-5)
    # progress: each file as it is read, then the texts embedded so far out of all of them
    assert {m for m, _, _ in messages if m.startswith("read ")} == {
        f"read {p.name}" for p in corpus.iterdir()
    }
    embedded = [(n, total) for m, n, total in messages if m == "embedding"]
    assert embedded[-1] == (report.embedded + report.embedded_units,) * 2 and len(embedded) > 1
