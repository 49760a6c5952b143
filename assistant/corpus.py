"""The corpus folder: adding an uploaded document safely, and removing one to a trash it can come back from.

    path, note = add_document("plan.pdf", data, Path("corpus"), max_mb=50)   # note: renamed, or None
    trashed = remove_document("plan.pdf", Path("corpus"))                    # moved to corpus/.trash/
    restore_document(trashed.id, Path("corpus"))                             # and back

An upload can never write outside the corpus folder, never overwrites a different file, gets a name any
file system takes, and is rejected by its size before it is read. Nothing is deleted: a removed document
waits in `.trash/` (a hidden folder, so ingest does not see it) until someone restores it.
"""

from __future__ import annotations

import itertools
import os
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from assistant.errors import DocumentError
from assistant.loaders import SUPPORTED

TRASH = ".trash"
# Most file systems allow 255 bytes per name; room is left for the "-2" a clash adds.
MAX_NAME_BYTES = 240
# Device names Windows will not create a file under, whatever the extension (a corpus may be copied there).
RESERVED = {"CON", "PRN", "AUX", "NUL"} | {f"{p}{n}" for p in ("COM", "LPT") for n in range(1, 10)}
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class Trashed:
    """A removed document in the trash, restorable by its id."""

    id: str
    name: str
    removed_at: str
    size: int


def safe_name(name: str) -> tuple[str, list[str]]:
    """The name an upload is saved under, and what was changed to get it.

    Keeps only the last part of a path, drops control characters (NUL among them) and leading dots,
    and shortens a name over MAX_NAME_BYTES. Raises DocumentError when nothing usable is left, the
    type is not supported or the name is a reserved device name.
    """
    changes: list[str] = []
    # A browser sends a bare name, but a hand-made request can send "../x" or "C:\\x": keep the last part.
    last = Path(name.replace("\\", "/")).name
    cleaned = _CONTROL.sub("", last)
    if cleaned != last:
        changes.append("control characters were removed from its name")
    safe = cleaned.strip().lstrip(".").rstrip(". ")
    shown = _CONTROL.sub("", name).strip() or "(no name)"
    if not safe or safe in {".", ".."}:
        raise DocumentError(shown, "the file name is empty or not allowed; rename the file")
    suffix = Path(safe).suffix
    if suffix.lower() not in SUPPORTED:
        raise DocumentError(safe[:80], f"unsupported file type; upload one of {', '.join(SUPPORTED)}")
    if safe.split(".")[0].upper() in RESERVED:
        raise DocumentError(safe, "that name is reserved for a device on Windows; rename the file")
    if len(safe.encode("utf-8")) > MAX_NAME_BYTES:
        room = MAX_NAME_BYTES - len(suffix.encode("utf-8"))
        stem = Path(safe).stem.encode("utf-8")[:room].decode("utf-8", errors="ignore").rstrip(". ")
        safe = stem + suffix
        changes.append(f"its name was shortened to {MAX_NAME_BYTES} bytes")
    return safe, changes


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
    Raises DocumentError (one sentence) when the file is too big, badly named, of an unsupported type,
    or cannot be written.
    """
    safe, changes = safe_name(name)
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
    try:
        corpus_dir.mkdir(parents=True, exist_ok=True)
        existing = corpus_dir / safe
        if _is_document(existing) and existing.read_bytes() == data:
            return existing, f"{safe} is already in the corpus (same content); nothing was added."
        target = _create(corpus_dir, safe, data)
    except OSError as err:
        raise DocumentError(safe, f"could not be saved ({err.strerror or type(err).__name__})") from None
    if target.name != safe:
        changes.append(f"a different {safe} exists already")
    if not changes:
        return target, None
    return target, f"Saved as {target.name}: {'; '.join(changes)}."


def remove_document(name: str, corpus_dir: Path) -> Trashed:
    """Move one document (by file name) from the corpus folder to its trash; re-ingest afterwards."""
    target = corpus_dir / Path(name).name
    if name.startswith(".") or target.parent.resolve() != corpus_dir.resolve() or not _is_document(target):
        raise DocumentError(name, f"not a document in {corpus_dir}")
    trashed = Trashed(
        id=datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:8],
        name=target.name,
        removed_at=datetime.now(UTC).isoformat(timespec="seconds"),
        size=target.lstat().st_size,
    )
    folder = corpus_dir / TRASH / trashed.id
    folder.mkdir(parents=True)
    os.replace(target, folder / target.name)  # a rename: same file system, nothing copied or lost
    return trashed


def list_trash(corpus_dir: Path) -> list[Trashed]:
    """Documents in the trash, most recently removed first."""
    return sorted(_trashed(corpus_dir), key=lambda t: t.id, reverse=True)


def restore_document(trash_id: str, corpus_dir: Path) -> tuple[Path, str | None]:
    """Move a trashed document back into the corpus folder (renamed if its name was taken meanwhile).

    Returns the restored path and a note when it was renamed; re-ingest afterwards.
    """
    found = [t for t in _trashed(corpus_dir) if t.id == trash_id]
    if not found:
        raise DocumentError(trash_id, f"not in the trash of {corpus_dir}")
    item = found[0]
    folder = corpus_dir / TRASH / item.id
    target = _move_in(folder / item.name, corpus_dir, item.name)
    folder.rmdir()
    note = (
        None
        if target.name == item.name
        else f"{item.name} exists again, so it was restored as {target.name}."
    )
    return target, note


def _trashed(corpus_dir: Path) -> Iterator[Trashed]:
    trash = corpus_dir / TRASH
    if not trash.is_dir():
        return
    for folder in trash.iterdir():
        files = [f for f in folder.iterdir()] if folder.is_dir() else []
        if len(files) != 1:
            continue
        stamp = folder.name.split("-")[0]
        try:
            removed = datetime.strptime(stamp, "%Y%m%dT%H%M%S").replace(tzinfo=UTC).isoformat()
        except ValueError:
            continue
        yield Trashed(folder.name, files[0].name, removed, files[0].lstat().st_size)


def _is_document(path: Path) -> bool:
    """A regular file or a link (links are never followed, but can be removed like files)."""
    return path.is_symlink() or path.is_file()


def _create(corpus_dir: Path, name: str, data: bytes) -> Path:
    """Write `data` to a new file named `name` (or `stem-2`, `-3`, ... when taken); never overwrite."""
    for target in _candidates(corpus_dir, name):
        try:
            # Exclusive create: a file, folder or link of that name (even one made meanwhile) is kept.
            with target.open("xb") as fh:
                fh.write(data)
            return target
        except (FileExistsError, IsADirectoryError):
            continue
    raise AssertionError("unreachable")  # pragma: no cover - _candidates never ends


def _move_in(source: Path, corpus_dir: Path, name: str) -> Path:
    """Move `source` into `corpus_dir` as `name` (or `stem-2`, ...); a link never replaces a file."""
    for target in _candidates(corpus_dir, name):
        try:
            os.link(source, target, follow_symlinks=False)
        except FileExistsError:
            continue
        source.unlink()
        return target
    raise AssertionError("unreachable")  # pragma: no cover - _candidates never ends


def _candidates(corpus_dir: Path, name: str) -> Iterator[Path]:
    stem, suffix = Path(name).stem, Path(name).suffix
    yield corpus_dir / name
    for n in itertools.count(2):
        yield corpus_dir / f"{stem}-{n}{suffix}"
