"""Background jobs (re-indexing after an upload or removal) that a client starts and then polls.

    jobs = Jobs(settings.index_dir / "jobs")
    job = jobs.submit("ingest", lambda progress: {"chunks": 56})
    jobs.get(job["id"])["status"]        # queued, running, succeeded or failed

Each job is a JSON file in `folder`, so any process serving the same index (every API worker) answers a
poll for a job another one runs. A process runs its jobs one at a time, on one thread (across processes,
`build_index` takes the index's writer lock).
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from assistant.errors import AssistantError

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]
Work = Callable[[Progress], dict[str, Any]]
_ID = re.compile(r"^job-[0-9a-f]{32}$")
KEEP = 200  # finished job records kept; older ones are removed when a new job starts


class Jobs:
    """Job records in `folder` and the one thread of this process that runs them."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self._runner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="assistant-job")
        self._write_lock = threading.Lock()

    def submit(self, kind: str, work: Work, detail: dict[str, Any] | None = None) -> dict[str, Any]:
        """Queue `work` (called with a progress callback; returns the job's result) and return its record."""
        self.folder.mkdir(parents=True, exist_ok=True)
        self._prune()
        job: dict[str, Any] = {
            "id": f"job-{uuid.uuid4().hex}",
            "object": "job",
            "kind": kind,
            "status": "queued",
            "created_at": _now(),
            "started_at": None,
            "finished_at": None,
            "progress": None,
            "detail": detail or {},
            "result": None,
            "error": None,
            "pid": os.getpid(),
        }
        self._write(job)
        self._runner.submit(self._run, job, work)
        return dict(job)  # the runner thread updates its own copy

    def get(self, job_id: str) -> dict[str, Any] | None:
        """The job's record, or None when there is no such job."""
        if not _ID.match(job_id):
            return None
        try:
            job = dict(json.loads((self.folder / f"{job_id}.json").read_text(encoding="utf-8")))
        except (OSError, ValueError):
            return None
        if job["status"] in ("queued", "running") and not _alive(int(job.get("pid", 0))):
            job |= {
                "status": "failed",
                "error": "The server process running this job stopped; start it again.",
            }
        return job

    def shutdown(self) -> None:
        """Wait for the running job (an ingest is never cut off half way) and drop queued ones."""
        self._runner.shutdown(wait=True, cancel_futures=True)

    def _run(self, job: dict[str, Any], work: Work) -> None:
        def progress(message: str, done: int, total: int) -> None:
            job["progress"] = {"message": message, "done": done, "total": total}
            self._write(job)

        job |= {"status": "running", "started_at": _now()}
        self._write(job)
        try:
            result = work(progress)
        except AssistantError as err:
            job |= {"status": "failed", "error": str(err)}
        except Exception as err:  # noqa: BLE001 - a job must end with a status, whatever happened
            log.exception("job %s failed", job["id"])
            job |= {
                "status": "failed",
                "error": f"Unexpected error ({type(err).__name__}); see the server log.",
            }
        else:
            job |= {"status": "succeeded", "result": result}
        job["finished_at"] = _now()
        self._write(job)

    def _write(self, job: dict[str, Any]) -> None:
        """Replace the job's file in one step, so a poll never reads half of it."""
        path = self.folder / f"{job['id']}.json"
        with self._write_lock:
            tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
            tmp.write_text(json.dumps(job, ensure_ascii=False), encoding="utf-8")
            os.replace(tmp, path)

    def _prune(self) -> None:
        """Remove the oldest finished records beyond KEEP (another worker may be doing the same)."""
        records = []
        for path in self.folder.glob("job-*.json"):
            try:
                records.append((path.stat().st_mtime, path))
            except OSError:
                continue
        for _, path in sorted(records)[:-KEEP]:
            job = self.get(path.stem)
            if job and job["status"] in ("succeeded", "failed"):
                path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, under another user
        return True
    return pid > 0


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
