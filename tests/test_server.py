"""The API app in this process: generative streaming with a fake chat model, CORS, failures, keys and jobs."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import uvicorn
from conftest import ROOT, free_port
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage
from starlette.testclient import TestClient

from assistant.chain import Chain
from assistant.config import Settings
from assistant.errors import AssistantError, ConfigError
from assistant.jobs import Jobs
from assistant.keys import hash_token, load_keys, new_key, parse_keys, role_of
from assistant.server import check_bind, create_app

AE = "what is the A&E 4-hour target?"
TOKEN_DELAY = 0.05


class SlowChatModel(GenericFakeChatModel):
    """A fake chat model that streams its scripted replies a word at a time, slowly, like a real one;
    the word CRASH makes it fail there, as a local model can."""

    def _stream(self, *args: Any, **kwargs: Any) -> Iterator[Any]:
        for chunk in super()._stream(*args, **kwargs):
            if chunk.text == "CRASH":
                raise AssistantError("The local model failed: out of memory.")
            time.sleep(TOKEN_DELAY)
            yield chunk


@contextmanager
def serving(app: Any) -> Iterator[str]:
    """`app` on a real uvicorn in a thread, on a free loopback port, once it is listening."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def _settings(env: dict[str, str], **changes: Any) -> Settings:
    return Settings.from_env(env).with_(**changes)


@pytest.mark.slow
def test_generative_stream_sends_tokens_as_they_come_then_verified_sources(
    index_env: Callable[[str], dict[str, str]],
) -> None:
    draft = "No less than 76% of patients should be seen within 4 hours by March 2024 [1]."
    unverifiable = "The A&E target is 95% of patients within 4 hours [1]."
    crash = "The target is CRASH"
    model = SlowChatModel(messages=iter([AIMessage(content=c) for c in (draft, unverifiable, crash)]))
    settings = _settings(index_env("generative"), llm="openai")
    app = create_app(settings, Chain(settings, chat_model=model))
    with serving(app) as base:
        client = openai.OpenAI(base_url=f"{base}/v1", api_key="none", max_retries=0)
        assert [m.id for m in client.models.list()] == ["nhs-assistant", "nhs-assistant-generative"]
        arrivals: list[tuple[float, Any]] = []
        for chunk in client.chat.completions.create(
            model="nhs-assistant-generative", messages=[{"role": "user", "content": AE}], stream=True
        ):
            arrivals.append((time.monotonic(), chunk.choices[0]))
        tokens = [(t, c.delta.content) for t, c in arrivals if c.delta.content]
        assert "".join(text for _, text in tokens) == draft
        assert len(tokens) >= 10
        # tokens reach the client while the model is still writing, not all at the end
        assert arrivals[-1][0] - tokens[0][0] > 5 * TOKEN_DELAY
        last = arrivals[-1][1]
        extras = dict(last.model_extra or {})
        assert last.finish_reason == "stop" and extras["answer"] == draft and extras["refused"] is False
        assert any("76%" in s["quote"] and s["verified"] for s in extras["sources"])

        # A draft whose figure no quote holds: the checked (extractive) answer follows it, and is the answer.
        chunks = list(
            client.chat.completions.create(
                model="nhs-assistant",
                messages=[{"role": "user", "content": AE}],
                stream=True,
                extra_body={"mode": "generative"},
            )
        )
        text = "".join(c.choices[0].delta.content or "" for c in chunks)
        assert text.startswith(unverifiable)
        assert "Checked against the sources" in text and "76%" in text.split("Checked")[1]
        final = dict(chunks[-1].choices[0].model_extra or {})
        assert "95%" not in final["answer"] and "76%" in final["answer"]

        # The model fails after its first tokens: the stream ends with an error event, which the client raises.
        streamed = []
        with pytest.raises(openai.APIError, match="The local model failed: out of memory"):
            for chunk in client.chat.completions.create(
                model="nhs-assistant-generative", messages=[{"role": "user", "content": AE}], stream=True
            ):
                streamed.append(chunk.choices[0].delta.content or "")
        assert "".join(streamed) == "The target is "


def test_cors_allows_only_the_configured_origins(tmp_path: Path) -> None:
    settings = Settings(index_dir=tmp_path / "index", cors_origins="https://intranet.example.nhs.uk")
    http = TestClient(create_app(settings))

    def preflight(origin: str) -> httpx.Response:
        headers = {"Origin": origin, "Access-Control-Request-Method": "POST"}
        return http.options("/v1/chat/completions", headers=headers)

    allowed = preflight("https://intranet.example.nhs.uk")
    assert allowed.headers["access-control-allow-origin"] == "https://intranet.example.nhs.uk"
    assert "access-control-allow-origin" not in preflight("https://elsewhere.example").headers


class BrokenChain(Chain):
    """A chain whose answer step fails in a way nobody planned for."""

    def ask(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("secret internal detail")


def test_an_unexpected_failure_is_a_500_without_a_traceback(tmp_path: Path) -> None:
    settings = Settings(index_dir=tmp_path / "index")
    app = create_app(settings, BrokenChain(settings))
    http = TestClient(app, raise_server_exceptions=False)
    for stream in (False, True):
        reply = http.post(
            "/v1/chat/completions", json={"messages": [{"role": "user", "content": AE}], "stream": stream}
        )
        assert reply.status_code == 500
        error = reply.json()["error"]
        assert error["type"] == "server_error" and "reference" in error["message"]
        assert "secret" not in reply.text and "Traceback" not in reply.text


def test_without_an_index_health_and_questions_say_to_ingest(tmp_path: Path) -> None:
    settings = Settings(index_dir=tmp_path / "none", corpus_dir=tmp_path / "corpus")
    with TestClient(create_app(settings)) as http:  # runs the start-up (warm-up) as a server does
        deadline = time.monotonic() + 30
        while (health := http.get("/health")).json()["status"] == "loading" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert health.status_code == 503 and "nhs-assistant ingest" in health.json()["error"]
        reply = http.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": AE}]})
        assert reply.status_code == 503 and reply.json()["error"]["code"] == "index_unavailable"
        assert "nhs-assistant ingest" in reply.json()["error"]["message"]
        assert http.get("/v1/documents").json() == {"object": "list", "data": []}


# --- keys ---------------------------------------------------------------------------------------------


def test_a_new_key_is_stored_only_as_its_hash_and_maps_to_its_role(tmp_path: Path) -> None:
    token, line = new_key("admin")
    assert token.startswith("nhsa-") and token not in line and line == f"{hash_token(token)}:admin"
    reader, reader_line = new_key("reader")
    keys_file = tmp_path / "keys.txt"
    keys_file.write_text(f"# readers\n{reader_line}\n", encoding="utf-8")
    keys = load_keys(Settings(api_keys=line, api_keys_file=keys_file))
    assert role_of(token, keys) == "admin" and role_of(reader, keys) == "reader"
    assert role_of(token + "x", keys) is None and role_of("", keys) is None


@pytest.mark.parametrize(
    "text",
    ["abc:reader", "a" * 64 + ":root", "a" * 64, "nhsa-pastedthetokenitself:admin"],
)
def test_a_bad_key_entry_is_named_without_echoing_it(text: str) -> None:
    with pytest.raises(ConfigError, match="ASSISTANT_API_KEYS: key 1 is not 'sha256hex:role'") as caught:
        parse_keys(text, "ASSISTANT_API_KEYS")
    assert text not in str(caught.value) and "nhs-assistant keys add" in str(caught.value)


def test_an_unreadable_keys_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="ASSISTANT_API_KEYS_FILE"):
        load_keys(Settings(api_keys_file=tmp_path / "missing.txt"))


def test_listening_beyond_loopback_needs_a_key() -> None:
    check_bind("127.0.0.1", [])
    check_bind("0.0.0.0", parse_keys(new_key("reader")[1], "keys"))
    with pytest.raises(ConfigError, match="nhs-assistant keys add"):
        check_bind("0.0.0.0", [])


def test_serve_refuses_a_public_address_without_keys_and_says_how_to_add_one() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASSISTANT_API_KEYS")}
    result = subprocess.run(
        [sys.executable, "-m", "assistant", "serve", "--host", "0.0.0.0", "--port", str(free_port())],
        capture_output=True,
        text=True,
        env=env | {"COLUMNS": "200"},
        cwd=ROOT,
        timeout=120,
    )
    assert result.returncode == 1
    assert "Refusing to listen on 0.0.0.0 without API keys" in result.stderr
    assert "nhs-assistant keys add --role admin" in result.stderr


def test_keys_add_prints_the_key_once_and_the_line_to_store() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "assistant", "keys", "add", "--role", "reader"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    token, line = [s.strip() for s in result.stdout.splitlines() if s.startswith("  ")]
    assert role_of(token, parse_keys(line, "printed line")) == "reader"


# --- jobs ---------------------------------------------------------------------------------------------


def _finished(jobs: Jobs, job_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while (job := jobs.get(job_id)) and job["status"] not in ("succeeded", "failed"):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert job is not None
    return job


def test_jobs_report_progress_results_and_failures(tmp_path: Path) -> None:
    jobs = Jobs(tmp_path / "jobs")

    def work(progress: Callable[[str, int, int], None]) -> dict[str, Any]:
        progress("embedding", 1, 2)
        return {"chunks": 2}

    def fail(progress: Callable[[str, int, int], None]) -> dict[str, Any]:
        raise AssistantError("Nothing was indexed (bad.pdf: encrypted); add PDF files and retry.")

    def crash(progress: Callable[[str, int, int], None]) -> dict[str, Any]:
        raise KeyError("internal")

    done = _finished(jobs, jobs.submit("ingest", work)["id"])
    assert done["status"] == "succeeded" and done["result"] == {"chunks": 2}
    assert done["progress"] == {"message": "embedding", "done": 1, "total": 2}
    failed = _finished(jobs, jobs.submit("ingest", fail)["id"])
    assert failed["status"] == "failed" and failed["error"].startswith("Nothing was indexed")
    crashed = _finished(jobs, jobs.submit("ingest", crash)["id"])
    assert (
        crashed["status"] == "failed"
        and "KeyError" in crashed["error"]
        and "internal" not in crashed["error"]
    )
    assert jobs.get("../../etc/passwd") is None and jobs.get("job-" + "0" * 32) is None
    jobs.shutdown()


def test_a_job_whose_process_died_is_reported_failed(tmp_path: Path) -> None:
    jobs = Jobs(tmp_path / "jobs")
    job = jobs.submit("ingest", lambda progress: {})
    _finished(jobs, job["id"])
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    path = tmp_path / "jobs" / f"{job['id']}.json"
    path.write_text(
        path.read_text()
        .replace('"succeeded"', '"running"')
        .replace(f'"pid": {os.getpid()}', f'"pid": {int(dead.stdout)}')
    )
    record = jobs.get(job["id"])
    assert record is not None and record["status"] == "failed" and "stopped" in record["error"]


def test_the_socket_shared_by_workers_is_marked_tcp_so_replies_are_not_held_back() -> None:
    import socket

    from assistant.server import _TcpConfig

    config = _TcpConfig(
        "assistant.server:app_from_env", factory=True, host="127.0.0.1", port=free_port(), workers=2
    )
    with config.bind_socket() as listener:
        listener.listen()
        with socket.create_connection(listener.getsockname()), listener.accept()[0] as accepted:
            assert accepted.proto == socket.IPPROTO_TCP  # asyncio sets TCP_NODELAY only then (uvicorn#3149)
