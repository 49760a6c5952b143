"""Start and stop a real `streamlit run app.py` on 127.0.0.1, and the flags Debian's chromium runs with.

server = start_app(port := free_port(), env, log)
wait_healthy(f"http://127.0.0.1:{port}", server)
...
stop_app(server, log)
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def start_app(port: int, env: dict[str, str], log: IO[bytes]) -> subprocess.Popen[bytes]:
    """`streamlit run app.py` on 127.0.0.1:`port`, headless, its output to `log`."""
    return subprocess.Popen(
        [
            str(Path(sys.executable).parent / "streamlit"),
            "run",
            "app.py",
            "--server.headless",
            "true",
            "--server.port",
            str(port),
            "--server.address",
            "127.0.0.1",
            "--browser.gatherUsageStats",
            "false",
            # No rerun banner when files change under a running measurement or test.
            "--server.fileWatcherType",
            "none",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def stop_app(server: subprocess.Popen[bytes], log: Any) -> None:
    """Stop a server from `start_app` (terminate, then kill after 15 s) and close its log."""
    server.terminate()
    try:
        server.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()
    log.close()


def wait_healthy(url: str, server: subprocess.Popen[bytes], timeout: float = 90) -> None:
    """Wait until the Streamlit server answers its health check."""
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"streamlit exited with code {server.returncode} before it was ready")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"streamlit did not answer on {url} within {timeout:.0f} s")


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
