"""The corpus folder: adding an uploaded document safely, removing one.

An upload can never write outside the corpus folder, never overwrites a different file, and is
rejected by its size before it is read.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from assistant.errors import DocumentError
from assistant.loaders import SUPPORTED


def add_document(
    name: str,
    data: bytes | Callable[[], bytes],
    corpus_dir: Path,
    max_mb: int,
    size: int | None = None,
) -> tuple[Path, str | None]:
    """Save uploaded bytes into `corpus_dir` under a safe name; never overwrite a different file.

    `data` may be a function that reads the bytes: it is called only once the name and `size` passed.
    Returns the saved path and a note for the user (None when saved under its own name).
    Raises DocumentError (one sentence) when the file is too big, badly named or of an unsupported type.
    """
    # A browser sends a bare name, but a hand-made request can send "../x" or "C:\\x": keep the last part.
    safe = Path(name.replace("\\", "/")).name.strip().lstrip(".")
    if not safe or safe in {".", ".."}:
        raise DocumentError(name or "(no name)", "the file name is empty or not allowed; rename the file")
    if Path(safe).suffix.lower() not in SUPPORTED:
        raise DocumentError(safe, f"unsupported file type; upload one of {', '.join(SUPPORTED)}")
    if size is None:
        size = len(data) if isinstance(data, bytes) else None
    if size is None:
        raise TypeError("size is required when data is a function")
    size_mb = size / (1024 * 1024)
    if size_mb > max_mb:
        raise DocumentError(
            safe, f"the file is {size_mb:.1f} MB, over the {max_mb} MB limit (ASSISTANT_MAX_UPLOAD_MB)"
        )
    if not isinstance(data, bytes):
        data = data()
    corpus_dir.mkdir(parents=True, exist_ok=True)
    target = corpus_dir / safe
    if target.exists():
        if target.read_bytes() == data:
            return target, f"{safe} is already in the corpus (same content); nothing was added."
        stem, suffix = target.stem, target.suffix
        n = 2
        while (corpus_dir / f"{stem}-{n}{suffix}").exists():
            n += 1
        target = corpus_dir / f"{stem}-{n}{suffix}"
    # Exclusive create: a file that appeared meanwhile is not overwritten.
    with target.open("xb") as fh:
        fh.write(data)
    if target.name == safe:
        return target, None
    return target, f"A different {safe} exists already, so this one was saved as {target.name}."


def remove_document(name: str, corpus_dir: Path) -> None:
    """Delete one document (by file name) from the corpus folder; re-ingest afterwards."""
    target = corpus_dir / Path(name).name
    if target.resolve().parent != corpus_dir.resolve() or not target.is_file():
        raise DocumentError(name, f"not a document in {corpus_dir}")
    target.unlink()
