"""The index in PostgreSQL + pgvector (ASSISTANT_STORE=postgres): one store shared by many replicas.

    settings = Settings(store="postgres", pg_dsn="postgresql://assistant@db:5432/nhs")
    build_index([Path("corpus")], settings)                 # the same ingest as the FAISS folder
    index = load_index(settings)                            # chunks in memory; search runs in PostgreSQL

Tables, in the schema ASSISTANT_PG_SCHEMA (default `assistant`):
    meta       one row: the manifest (as manifest.json), a generation number, chunk and token counts
    files      every indexed file, in index order
    chunks     text, metadata (units included), the chunk vector with an HNSW index (inner product),
               and BM25's terms: as a tsvector with a GIN index (the lexical side's candidates), and
               with their counts (jsonb: a candidate's count of a term is one lookup)
    units      one vector per quotable unit (sentence, table row) of each chunk
    terms      document frequency of every term (BM25's idf)
    targets    the targets register

Why not langchain-postgres' PGVector: an ingest here replaces a file's chunks, their unit vectors, the
register, the term statistics and the manifest in one transaction, and PGVector commits each call on
its own and holds one vector per row; and PostgreSQL's text-search parser splits "A&E" in two and its
ts_rank has no idf. So the schema is our own, with psycopg and pgvector's adapters, and the lexical
side stores the same stemmed tokens as bm25s (lexicon.bm25_tokens) and ranks them with bm25s' formula
(Lucene idf, k1 1.5, b 0.75), so both stores rank alike; the GIN index finds the candidates.

An ingest holds a session advisory lock (released if the process dies) and writes everything in one
transaction: readers see the previous build until it commits, whole, and a killed ingest is rolled back.
Readers keep the chunks' text in memory (the answer step needs it) and ask PostgreSQL for the vectors;
`Index.outdated` reads the generation (one small row) so replicas reload after another one's ingest.
"""

from __future__ import annotations

import math
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import psycopg
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from pgvector.psycopg import register_vector
from psycopg import sql
from psycopg.types.json import Jsonb

from assistant import __version__
from assistant.chunking import CHUNKER_VERSION
from assistant.config import Settings
from assistant.errors import (
    AssistantError,
    IndexBusyError,
    IndexMismatchError,
    IndexMissingError,
    StoreUnavailableError,
)
from assistant.lexicon import bm25_tokens
from assistant.passages import Unit
from assistant.store import (
    FILTER_EXACT_MAX,
    FORMAT,
    Index,
    Plan,
    _embeddings,
    _units,
    check_manifest,
)

# pgvector's HNSW build parameters (its defaults); the search breadth is ASSISTANT_PG_EF_SEARCH
# (recall against latency measured in docs/PERFORMANCE.md, "Stores").
HNSW_M = 16
HNSW_EF_CONSTRUCTION = 64
# bm25s' defaults, so both stores score a chunk alike.
BM25_K1 = 1.5
BM25_B = 0.75
# PostgreSQL refuses lexemes over 2 KB; such "words" (base64, long runs of digits) never match a question.
MAX_LEXEME_BYTES = 2000
# BM25 scores the chunks holding the query's rarest terms first, up to about this many (see _Reader.bm25).
BM25_CANDIDATES = 2000
# Document frequencies kept per reader (terms of recent questions).
DF_CACHE = 100_000
# Unit vectors kept per reader, by chunk (a question reads those of ~10 chunks).
UNIT_CACHE = 4096
# HNSW's build keeps its graph in maintenance_work_mem; 100k x 384 floats needs ~300 MB.
BUILD_MEMORY = "1GB"

# The tables' layout: an index in another layout is rebuilt whole (as for other chunking settings).
LAYOUT = "nhs-assistant chunks 1"
_TABLES = ("meta", "files", "units", "chunks", "terms", "targets")


def _where(settings: Settings) -> str:
    """The store as messages name it: host, port, database and schema, never the password."""
    try:
        info = psycopg.conninfo.conninfo_to_dict(settings.pg_dsn)
    except psycopg.ProgrammingError:
        return f"PostgreSQL (schema {settings.pg_schema})"
    host = info.get("host") or "localhost"
    port = info.get("port") or 5432
    return (
        f"PostgreSQL {host}:{port}/{info.get('dbname') or info.get('user') or ''} schema {settings.pg_schema}"
    )


class PostgresStore:
    """The index as tables in PostgreSQL with pgvector (see the module docstring)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._writer: psycopg.Connection[Any] | None = None

    @property
    def where(self) -> str:
        return _where(self.settings)

    def _sql(self, template: str) -> sql.Composed:
        """A statement with {s} naming the store's schema."""
        return sql.SQL(template).format(s=sql.Identifier(self.settings.pg_schema))

    def _connect(self) -> psycopg.Connection[Any]:
        return _connect(self.settings)

    # --- writing ------------------------------------------------------------------------------------

    @contextmanager
    def lock(self, wait: bool, on_wait: Callable[[str], None] | None) -> Iterator[None]:
        conn = self._connect()
        try:
            _ensure_vector(conn, self.where)
            key = f"nhs-assistant ingest {self.settings.pg_schema}"
            got = conn.execute("SELECT pg_try_advisory_lock(hashtext(%s))", [key]).fetchone()
            if not (got and got[0]):
                if not wait:
                    raise IndexBusyError(
                        f"Another ingest is writing {self.where} now; wait for it to finish, or run without "
                        "--no-wait to queue behind it."
                    )
                if on_wait:
                    on_wait(f"Another ingest is writing {self.where}; waiting for it to finish…")
                conn.execute("SELECT pg_advisory_lock(hashtext(%s))", [key])
            self._writer = conn
            yield
        finally:
            self._writer = None
            conn.close()  # ends the session, and with it the advisory lock

    def previous(self, model: str) -> _Previous | None:
        assert self._writer is not None, "previous() is called under lock()"
        manifest = _manifest(self._writer, self)
        if manifest is None:
            return None
        try:
            check_manifest(manifest, self.settings, model, self.where)
        except IndexMismatchError:  # built with other settings: rebuilt whole
            return None
        if not _has_tables(self._writer, self, int(manifest.get("dimension", 0))):
            return None  # tables of an earlier layout: rebuilt whole, every file read again
        return _Previous(manifest, dict(manifest.get("files", {})), self)

    def write(self, plan: Plan, old: Any, fail_after_write: Callable[[], None] | None) -> str:
        conn = self._writer
        assert conn is not None, "write() is called under lock()"
        dims = {f.vectors.shape[1] for f in plan.fresh.values() if f.vectors.size}
        dimension = dims.pop() if dims else int(old.manifest["dimension"])
        kind = f"pgvector HNSW(m={HNSW_M},ef_construction={HNSW_EF_CONSTRUCTION}) + GIN full text (BM25)"
        with conn.transaction():
            current = _manifest(conn, self)
            generation = int(current.get("generation", 0)) if current else 0
            bulk = not _has_tables(conn, self, dimension)
            if bulk and old is not None and set(plan.order) - set(plan.fresh):
                raise AssistantError(
                    f"The embedding model now gives {dimension}-dimensional vectors and {self.where} holds "
                    "others under the same model name; set ASSISTANT_PG_SCHEMA to a new schema (or drop "
                    "this one) and run `nhs-assistant ingest` to build the index again."
                )
            if bulk:  # first build, or a model of another dimension: new tables (readers wait for them)
                self._create(conn, dimension)
            elif old is None:  # other chunking settings: every row goes, in this transaction (MVCC)
                for table in ("units", "chunks", "terms", "targets", "files"):
                    conn.execute(self._sql(f"DELETE FROM {{s}}.{table}"))
            gone = list(plan.removed) + [n for n in plan.fresh if old is not None and n in old.files]
            if gone:
                self._count_terms(conn, gone, -1)
                conn.execute(self._sql("DELETE FROM {s}.chunks WHERE source = ANY(%s)"), [gone])
                conn.execute(self._sql("DELETE FROM {s}.targets WHERE source = ANY(%s)"), [gone])
                conn.execute(self._sql("DELETE FROM {s}.files WHERE name = ANY(%s)"), [plan.removed])
            self._insert(conn, plan)
            self._count_terms(conn, list(plan.fresh), +1)
            conn.execute(self._sql("DELETE FROM {s}.terms WHERE df <= 0"))
            files = {n: plan.fresh[n].meta if n in plan.fresh else old.files[n] for n in plan.order}
            with conn.cursor() as cur:
                cur.executemany(
                    self._sql(
                        "INSERT INTO {s}.files (name, ord, meta) VALUES (%s, %s, %s) "
                        "ON CONFLICT (name) DO UPDATE SET ord = excluded.ord, meta = excluded.meta"
                    ),
                    [(name, n, Jsonb(files[name])) for n, name in enumerate(plan.order)],
                )
            if bulk:
                conn.execute(f"SET LOCAL maintenance_work_mem = '{BUILD_MEMORY}'")
                conn.execute(
                    self._sql(
                        "CREATE INDEX chunks_embedding ON {s}.chunks USING hnsw (embedding vector_ip_ops) "
                        f"WITH (m = {HNSW_M}, ef_construction = {HNSW_EF_CONSTRUCTION})"
                    )
                )
                conn.execute(self._sql("CREATE INDEX chunks_lexemes ON {s}.chunks USING gin (lexemes)"))
            row = conn.execute(
                self._sql("SELECT count(*), coalesce(sum(length), 0) FROM {s}.chunks")
            ).fetchone()
            count, tokens = (int(row[0]), int(row[1])) if row else (0, 0)
            manifest = {
                "format": FORMAT,
                "build": datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:8],
                "generation": generation + 1,
                **plan.embedding,
                "dimension": dimension,
                "chunk_size": self.settings.chunk_size,
                "chunk_overlap": self.settings.chunk_overlap,
                "chunker": CHUNKER_VERSION,
                "splitter": "table rows + RecursiveCharacterTextSplitter",
                "index_type": kind,
                "store": "postgres",
                "count": count,
                "files": files,
                "inputs": plan.inputs,
                "package_version": __version__,
                "built_at": datetime.now(UTC).isoformat(timespec="seconds"),
            }
            conn.execute(
                self._sql(
                    "INSERT INTO {s}.meta (id, generation, manifest, chunks, tokens) VALUES (1, %s, %s, %s, %s) "
                    "ON CONFLICT (id) DO UPDATE SET generation = excluded.generation, "
                    "manifest = excluded.manifest, chunks = excluded.chunks, tokens = excluded.tokens"
                ),
                [generation + 1, Jsonb(manifest), count, tokens],
            )
            if bulk or sum(len(f.chunks) for f in plan.fresh.values()) > count // 10:
                conn.execute(self._sql("ANALYZE {s}.chunks"))  # plans for the new row counts
            if fail_after_write:
                fail_after_write()
        return kind

    def _create(self, conn: psycopg.Connection[Any], dimension: int) -> None:
        conn.execute(self._sql("CREATE SCHEMA IF NOT EXISTS {s}"))
        for table in _TABLES:
            conn.execute(self._sql(f"DROP TABLE IF EXISTS {{s}}.{table} CASCADE"))
        conn.execute(self._sql("DROP SEQUENCE IF EXISTS {s}.chunk_pk"))
        for statement in (
            "CREATE TABLE {s}.meta (id int PRIMARY KEY CHECK (id = 1), generation bigint NOT NULL, "
            "manifest jsonb NOT NULL, chunks bigint NOT NULL, tokens bigint NOT NULL)",
            "CREATE TABLE {s}.files (name text PRIMARY KEY, ord int NOT NULL, meta jsonb NOT NULL)",
            "CREATE SEQUENCE {s}.chunk_pk",
            f"CREATE TABLE {{s}}.chunks (pk bigint PRIMARY KEY, chunk_id text NOT NULL UNIQUE, "
            f"source text NOT NULL, seq int NOT NULL, content text NOT NULL, metadata jsonb NOT NULL, "
            f"embedding vector({dimension}) NOT NULL, terms text[] NOT NULL, tf jsonb NOT NULL, "
            f"length int NOT NULL, lexemes tsvector GENERATED ALWAYS AS (array_to_tsvector(terms)) STORED)",
            # Rows stay whole and uncompressed unless over a page: exact search reads every vector it
            # ranks and BM25 a candidate's terms once per query term, and TOAST would fetch and
            # decompress them each time (measured: 30 us a candidate, against 3 us).
            "ALTER TABLE {s}.chunks ALTER COLUMN embedding SET STORAGE PLAIN, SET (toast_tuple_target = 8160)",
            "CREATE INDEX chunks_source ON {s}.chunks (source, seq)",
            f"COMMENT ON TABLE {{s}}.chunks IS '{LAYOUT}'",
            f"CREATE TABLE {{s}}.units (chunk_pk bigint NOT NULL REFERENCES {{s}}.chunks ON DELETE CASCADE, "
            f"n int NOT NULL, embedding vector({dimension}) NOT NULL, PRIMARY KEY (chunk_pk, n))",
            "ALTER TABLE {s}.units ALTER COLUMN embedding SET STORAGE PLAIN",
            "CREATE TABLE {s}.terms (term text PRIMARY KEY, df int NOT NULL)",
            "CREATE TABLE {s}.targets (source text NOT NULL, seq int NOT NULL, data jsonb NOT NULL, "
            "PRIMARY KEY (source, seq))",
        ):
            conn.execute(self._sql(statement))

    def _insert(self, conn: psycopg.Connection[Any], plan: Plan) -> None:
        """COPY the fresh files' chunks, unit vectors and register rows (binary: vectors as float32)."""
        chunks = [(name, c) for name, f in plan.fresh.items() for c in f.chunks]
        if not chunks:
            return
        row = conn.execute(self._sql("SELECT nextval('{s}.chunk_pk')")).fetchone()
        first = int(row[0]) if row else 1
        conn.execute(self._sql("SELECT setval('{s}.chunk_pk', %s)"), [first + len(chunks)])
        tokens = bm25_tokens([c.page_content for _, c in chunks], ids=False)
        with conn.cursor() as cur:
            with cur.copy(
                self._sql(
                    "COPY {s}.chunks (pk, chunk_id, source, seq, content, metadata, embedding, terms, tf, "
                    "length) FROM STDIN WITH (FORMAT BINARY)"
                )
            ) as copy:
                copy.set_types(
                    ["int8", "text", "text", "int4", "text", "jsonb", "vector", "text[]", "jsonb", "int4"]
                )
                pk = first
                for name, fresh in plan.fresh.items():
                    for seq, chunk in enumerate(fresh.chunks):
                        counts = Counter(
                            t for t in tokens[pk - first] if t and len(t.encode()) <= MAX_LEXEME_BYTES
                        )
                        copy.write_row(
                            (
                                pk,
                                chunk.metadata["chunk_id"],
                                name,
                                seq,
                                chunk.page_content,
                                Jsonb(chunk.metadata),
                                fresh.vectors[seq],
                                list(counts),
                                Jsonb(counts),
                                len(tokens[pk - first]),
                            )
                        )
                        pk += 1
            with cur.copy(
                self._sql("COPY {s}.units (chunk_pk, n, embedding) FROM STDIN WITH (FORMAT BINARY)")
            ) as copy:
                copy.set_types(["int8", "int4", "vector"])
                pk, row_ = first, 0
                for fresh in plan.fresh.values():
                    row_ = 0
                    for chunk in fresh.chunks:
                        for n in range(len(chunk.metadata.get("units") or ())):
                            copy.write_row((pk, n, fresh.unit_vectors[row_]))
                            row_ += 1
                        pk += 1
            with cur.copy(
                self._sql("COPY {s}.targets (source, seq, data) FROM STDIN WITH (FORMAT BINARY)")
            ) as copy:
                copy.set_types(["text", "int4", "jsonb"])
                for name, fresh in plan.fresh.items():
                    for seq, target in enumerate(fresh.targets):
                        copy.write_row((name, seq, Jsonb(target)))

    def _count_terms(self, conn: psycopg.Connection[Any], sources: list[str], sign: int) -> None:
        """Add (sign +1) or take away (-1) the document frequencies of the chunks of `sources`."""
        if not sources:
            return
        conn.execute(
            self._sql(
                "INSERT INTO {s}.terms AS t (term, df) "
                "SELECT term, %s * count(*) FROM {s}.chunks c, unnest(c.terms) AS term "
                "WHERE c.source = ANY(%s) GROUP BY term "
                "ON CONFLICT (term) DO UPDATE SET df = t.df + excluded.df"
            ),
            [sign, sources],
        )

    # --- reading ------------------------------------------------------------------------------------

    def generation(self) -> object:
        with self._connect() as conn:
            return _generation(conn, self)

    def load(self, embeddings: Embeddings | None, model: str | None) -> Index:
        db = _Reader(self)
        manifest, chunks, targets = db.read()
        check_manifest(manifest, self.settings, model, self.where)
        return PgIndex(
            chunks,
            None,
            targets,
            manifest,
            _embeddings(self.settings, embeddings),
            None,
            db.generation,
            manifest.get("generation"),
            db=db,
        )


def _connect(settings: Settings) -> psycopg.Connection[Any]:
    """An autocommit connection with pgvector's types (StoreUnavailableError when it cannot connect)."""
    try:
        conn = psycopg.connect(settings.pg_dsn, autocommit=True, connect_timeout=10)
    except psycopg.Error as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise StoreUnavailableError(
            f"Cannot connect to {_where(settings)} ({reason}); check ASSISTANT_PG_DSN and that the server "
            "is running."
        ) from None
    return conn


def _ensure_vector(conn: psycopg.Connection[Any], where: str) -> None:
    """Create the vector extension if it is missing (its owner may need to), and register its types."""
    try:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    except psycopg.errors.InsufficientPrivilege:
        raise StoreUnavailableError(
            f"The pgvector extension is not enabled in {where} and this user may not enable it; ask the "
            "database owner to run CREATE EXTENSION vector there."
        ) from None
    except psycopg.errors.FeatureNotSupported:
        raise StoreUnavailableError(
            f"The server of {where} has no pgvector extension; install pgvector 0.8 or later on it."
        ) from None
    register_vector(conn)


def _has_tables(conn: psycopg.Connection[Any], store: PostgresStore, dimension: int) -> bool:
    """Whether the store's tables exist in this LAYOUT with vectors of `dimension` (pgvector keeps it as
    the column's typmod)."""
    row = conn.execute(
        "SELECT a.atttypmod, obj_description(c.oid, 'pg_class') FROM pg_attribute a "
        "JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relname = 'chunks' AND a.attname = 'embedding'",
        [store.settings.pg_schema],
    ).fetchone()
    return row is not None and int(row[0]) == dimension and row[1] == LAYOUT


def _manifest(conn: psycopg.Connection[Any], store: PostgresStore) -> dict[str, Any] | None:
    """The current manifest, or None when the store holds no index."""
    try:
        with conn.transaction():  # a savepoint inside a transaction: a missing table does not abort it
            row = conn.execute(store._sql("SELECT manifest FROM {s}.meta")).fetchone()
            names = conn.execute(store._sql("SELECT name FROM {s}.files ORDER BY ord")).fetchall()
    except psycopg.errors.UndefinedTable:
        return None
    return _in_order(row[0], names) if row else None


def _in_order(manifest: dict[str, Any], names: list[tuple[str]]) -> dict[str, Any]:
    """The manifest with its files in index order (jsonb keeps object keys sorted its own way)."""
    files = manifest.get("files", {})
    return {**manifest, "files": {name: files[name] for (name,) in names if name in files}}


def _generation(conn: psycopg.Connection[Any], store: PostgresStore) -> int | None:
    """The current generation (one round trip: the connection is in autocommit)."""
    try:
        row = conn.execute(store._sql("SELECT generation FROM {s}.meta")).fetchone()
    except psycopg.errors.UndefinedTable:
        return None
    return int(row[0]) if row else None


class _Previous:
    """The current index as an ingest sees it: its files, and a file's vectors on request."""

    def __init__(self, manifest: dict[str, Any], files: dict[str, dict[str, Any]], store: PostgresStore):
        self.manifest = manifest
        self.files = files
        self.store = store

    def vectors_of(self, name: str) -> dict[str, tuple[Any, np.ndarray, np.ndarray]]:
        conn = self.store._writer
        assert conn is not None
        rows = conn.execute(
            self.store._sql(
                "SELECT pk, chunk_id, metadata -> 'units', embedding FROM {s}.chunks WHERE source = %s"
            ),
            [name],
        ).fetchall()
        units: dict[int, list[np.ndarray]] = {}
        for pk, vector in conn.execute(
            self.store._sql(
                "SELECT u.chunk_pk, u.embedding FROM {s}.units u JOIN {s}.chunks c ON c.pk = u.chunk_pk "
                "WHERE c.source = %s ORDER BY u.chunk_pk, u.n"
            ),
            [name],
        ):
            units.setdefault(pk, []).append(vector)
        return {
            chunk_id: (
                spans,
                np.asarray(vector, dtype="float32"),
                np.asarray(units.get(pk, []), dtype="float32").reshape(-1, len(vector)),
            )
            for pk, chunk_id, spans, vector in rows
        }


class _Reader:
    """One reader's connection: dense and BM25 search, a chunk's vectors, the generation."""

    def __init__(self, store: PostgresStore) -> None:
        self.store = store
        self._lock = threading.Lock()
        self._conn: psycopg.Connection[Any] | None = None
        self.pks = np.empty(0, dtype="int64")
        self.position: dict[int, int] = {}
        self.count = 0
        self.avgdl = 1.0
        self._units: dict[int, np.ndarray] = {}
        self._df: dict[str, int] = {}

    def _run(self, work: Callable[[psycopg.Connection[Any]], Any]) -> Any:
        """Run `work` on this reader's connection, reconnecting once if the server dropped it."""
        with self._lock:
            for attempt in (1, 2):
                if self._conn is None or self._conn.closed:
                    self._conn = _connect(self.store.settings)
                    try:
                        register_vector(self._conn)
                    except psycopg.ProgrammingError:
                        raise IndexMissingError(
                            f"No index in {self.store.where} - run `nhs-assistant ingest`."
                        ) from None
                    self._conn.execute(f"SET hnsw.ef_search = {int(self.store.settings.pg_ef_search)}")
                    self._conn.execute("SET hnsw.iterative_scan = strict_order")
                try:
                    return work(self._conn)
                except psycopg.OperationalError as err:
                    self._conn.close()
                    if attempt == 2:
                        raise StoreUnavailableError(
                            f"Lost the connection to {self.store.where} ({type(err).__name__}); check the server."
                        ) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def read(self) -> tuple[dict[str, Any], list[Document], list[dict[str, Any]]]:
        """The manifest, chunks in index order and the register, as of one snapshot."""
        store = self.store

        def work(conn: psycopg.Connection[Any]) -> Any:
            with conn.transaction():
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
                try:
                    meta = conn.execute(
                        store._sql("SELECT manifest, chunks, tokens FROM {s}.meta")
                    ).fetchone()
                except psycopg.errors.UndefinedTable:
                    meta = None
                if meta is None:
                    raise IndexMissingError(f"No index in {store.where} - run `nhs-assistant ingest`.")
                names = conn.execute(store._sql("SELECT name FROM {s}.files ORDER BY ord")).fetchall()
                rows = conn.execute(
                    store._sql(
                        "SELECT c.pk, c.content, c.metadata FROM {s}.chunks c "
                        "JOIN {s}.files f ON f.name = c.source ORDER BY f.ord, c.seq"
                    )
                ).fetchall()
                targets = conn.execute(
                    store._sql(
                        "SELECT t.data FROM {s}.targets t JOIN {s}.files f ON f.name = t.source "
                        "ORDER BY f.ord, t.seq"
                    )
                ).fetchall()
            return meta, names, rows, targets

        (manifest, count, tokens), names, rows, targets = self._run(work)
        self.pks = np.array([r[0] for r in rows], dtype="int64")
        self.position = {int(pk): i for i, pk in enumerate(self.pks)}
        self.count, self.avgdl = int(count), (int(tokens) / int(count) if count else 1.0)
        chunks = [Document(page_content=text, metadata=meta, id=meta["chunk_id"]) for _, text, meta in rows]
        return _in_order(manifest, names), chunks, [dict(t[0]) for t in targets]

    def generation(self) -> int | None:
        return self._run(lambda conn: _generation(conn, self.store))

    def _found(self, rows: list[tuple[int, float]]) -> list[tuple[int, float]]:
        """(position, score) of the rows this reader knows (a newer build's rows are left out)."""
        return [(self.position[pk], float(s)) for pk, s in rows if pk in self.position]

    def dense(self, vector: np.ndarray, k: int, allowed: np.ndarray | None) -> list[tuple[int, float]]:
        """Top-k by inner product: HNSW, or exact among `allowed` positions when they are few."""
        vector = np.asarray(vector, dtype="float32").reshape(-1)
        s = self.store._sql
        if allowed is None:
            query = s(
                "SELECT pk, -(embedding <#> %(v)s) FROM {s}.chunks ORDER BY embedding <#> %(v)s LIMIT %(k)s"
            )
        elif len(allowed) <= FILTER_EXACT_MAX:  # exact, as the FAISS store: a filter still returns k
            query = s(
                "SELECT pk, -(embedding <#> %(v)s) AS score FROM {s}.chunks WHERE pk = ANY(%(pks)s::bigint[]) "
                "ORDER BY score DESC, pk LIMIT %(k)s"
            )
        else:  # iterative HNSW scan (hnsw.iterative_scan) keeps going until k rows pass the filter
            query = s(
                "SELECT pk, -(embedding <#> %(v)s) FROM {s}.chunks WHERE pk = ANY(%(pks)s::bigint[]) "
                "ORDER BY embedding <#> %(v)s LIMIT %(k)s"
            )
        pks = [] if allowed is None else self.pks[np.asarray(allowed, dtype="int64")].tolist()
        if allowed is not None and not pks:
            return []
        params = {"v": vector, "k": k, "pks": pks}

        def work(conn: psycopg.Connection[Any]) -> list[tuple[int, float]]:
            if k <= self.store.settings.pg_ef_search:
                return conn.execute(query, params).fetchall()
            with conn.transaction():  # HNSW returns at most ef_search rows: widen it for this query
                conn.execute(f"SET LOCAL hnsw.ef_search = {int(k)}")
                return conn.execute(query, params).fetchall()

        return self._found(self._run(work))

    def bm25(self, query: str, k: int, mask: np.ndarray | None) -> list[tuple[int, float]]:
        """BM25 as bm25s scores it (same tokens, Lucene idf, k1 and b), candidates from the GIN index.

        Exact top-k with MaxScore pruning: a chunk holding none of the query's rarer terms scores less
        than the sum of the other terms' weights (each term adds less than its weight), so once the
        k-th best chunk holding a rarer term scores at least that sum, the chunks holding only common
        terms (most of the index, for "target" or "year") need not be scored.
        """
        counts = Counter(t for t in bm25_tokens([query], ids=False)[0] if t)
        allowed = None if mask is None else self.pks[np.flatnonzero(mask)].tolist()
        k = min(k, self.count if allowed is None else len(allowed))
        df = self._frequencies(list(counts))
        terms = sorted((t for t in counts if df.get(t)), key=lambda t: (df[t], t))  # rarest first
        if not terms or k <= 0:
            return []
        weight = {t: counts[t] * math.log(1 + (self.count - df[t] + 0.5) / (df[t] + 0.5)) for t in terms}
        essential = 1
        while essential < len(terms) and sum(df[t] for t in terms[: essential + 1]) <= BM25_CANDIDATES:
            essential += 1
        rows = self._bm25(terms, weight, terms[:essential], k, allowed)
        # The k-th score so far bounds the final one from below: add terms, rarest first, until the
        # ones left out could not lift a chunk holding only them above it.
        floor = rows[-1][1] if len(rows) == k else 0.0
        wider = essential
        while wider < len(terms) and sum(weight[t] for t in terms[wider:]) >= floor:
            wider += 1
        if wider > essential:
            rows = self._bm25(terms, weight, terms[:wider], k, allowed)
        return [(p, s) for p, s in self._found(rows) if s > 0]

    def _bm25(
        self, terms: list[str], weight: dict[str, float], among: list[str], k: int, allowed: list[int] | None
    ) -> list[tuple[int, float]]:
        """Top-k by BM25 over `terms` of the chunks holding one of `among`."""
        tf = ", ".join(f"(c.tf ->> %(t{i})s::text)::float8 AS t{i}" for i in range(len(terms)))
        score = " + ".join(f"coalesce(%(w{i})s * f.t{i} / (f.t{i} + f.norm), 0)" for i in range(len(terms)))
        params: dict[str, Any] = {f"t{i}": t for i, t in enumerate(terms)}
        params |= {f"w{i}": weight[t] for i, t in enumerate(terms)}
        params |= {
            "k1": BM25_K1,
            "b": BM25_B,
            "avgdl": self.avgdl,
            "query": " | ".join(_lexeme(t) for t in among),
            "pks": allowed or [],
            "k": k,
        }
        where = " AND c.pk = ANY(%(pks)s::bigint[])" if allowed is not None else ""
        statement = self.store._sql(
            f"SELECT c.pk, {score} AS score FROM {{s}}.chunks c, LATERAL (SELECT {tf}, "
            "%(k1)s * (1 - %(b)s + %(b)s * c.length / %(avgdl)s) AS norm) f "
            f"WHERE c.lexemes @@ %(query)s::tsquery{where} ORDER BY score DESC, c.pk LIMIT %(k)s"
        )
        return self._run(lambda conn: conn.execute(statement, params).fetchall())

    def _frequencies(self, terms: list[str]) -> dict[str, int]:
        """Document frequencies of `terms` (0 for a term no chunk holds), kept for this reader's build."""
        missing = [t for t in terms if t not in self._df]
        if missing:
            found = self._run(
                lambda conn: conn.execute(
                    self.store._sql("SELECT term, df FROM {s}.terms WHERE term = ANY(%s)"), [missing]
                ).fetchall()
            )
            if len(self._df) > DF_CACHE:
                self._df.clear()
            self._df |= {t: 0 for t in missing} | {t: int(n) for t, n in found}
        return {t: self._df[t] for t in terms}

    def vector(self, position: int) -> np.ndarray:
        pk = int(self.pks[position])
        row = self._run(
            lambda conn: conn.execute(
                self.store._sql("SELECT embedding FROM {s}.chunks WHERE pk = %s"), [pk]
            ).fetchone()
        )
        if row is None:  # replaced by a newer build since this reader loaded: no similarity to report
            return np.zeros(0, dtype="float32")
        return np.asarray(row[0], dtype="float32")

    def unit_vectors(self, position: int) -> np.ndarray | None:
        pk = int(self.pks[position])
        if pk not in self._units:
            rows = self._run(
                lambda conn: conn.execute(
                    self.store._sql("SELECT embedding FROM {s}.units WHERE chunk_pk = %s ORDER BY n"), [pk]
                ).fetchall()
            )
            if len(self._units) >= UNIT_CACHE:
                self._units.clear()
            self._units[pk] = np.asarray([r[0] for r in rows], dtype="float32")
        vectors = self._units[pk]
        return vectors if len(vectors) else None

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()


def _lexeme(term: str) -> str:
    """A term as one quoted tsquery lexeme ("a&e" would otherwise read as a AND e)."""
    return "'" + term.replace("\\", "\\\\").replace("'", "''") + "'"


class _Lexical:
    """BM25 in PostgreSQL over the reader's chunks (the retriever's lexical side, see store.Lexical)."""

    def __init__(self, db: _Reader) -> None:
        self.db = db

    def search(self, query: str, k: int, mask: np.ndarray | None = None) -> list[tuple[int, float]]:
        return self.db.bm25(query, k, mask)


@dataclass
class PgIndex(Index):
    """A loaded index whose vectors and lexical search stay in PostgreSQL."""

    db: _Reader | None = None

    def _db(self) -> _Reader:
        assert self.db is not None
        return self.db

    @property
    def faiss_index(self) -> Any:
        raise AttributeError("a PostgreSQL index has no FAISS index; use search() and vector()")

    def search(
        self, vector: np.ndarray, k: int, allowed: np.ndarray | None = None
    ) -> list[tuple[int, float]]:
        if allowed is not None and len(allowed) == 0:
            return []
        return self._db().dense(vector, k, allowed)

    def vector(self, position: int) -> np.ndarray:
        found = self._db().vector(position)
        return found if found.size else np.zeros(int(self.manifest["dimension"]), dtype="float32")

    def units_of(self, position: int) -> tuple[list[Unit], np.ndarray | None]:
        found = _units(self.chunks[position])
        if not found:
            return found, None
        vectors = self._db().unit_vectors(position)
        return found, vectors if vectors is not None and len(vectors) == len(found) else None

    def lexical(self) -> _Lexical | None:
        # None: retrieval builds bm25s over `chunks` (ASSISTANT_PG_LEXICAL=memory)
        return _Lexical(self._db()) if self._db().store.settings.pg_lexical == "postgres" else None
