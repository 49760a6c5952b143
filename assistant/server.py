"""The HTTP API (`nhs-assistant serve`): OpenAI-compatible chat completions with verified sources,
plus retrieval, documents, the targets register, evaluations, health and Prometheus metrics.

    app = create_app(Settings.from_env())      # uvicorn --factory assistant.server:app_from_env
    # POST /v1/chat/completions {"messages": [{"role": "user", "content": "What is the A&E target?"}]}
    # -> {"choices": [{"message": {"content": "..."}, "sources": [...], "refused": false}], ...}

A thin client of the library: every answer is `Chain.ask`, every ingest `store.build_index`; this module
maps requests to those calls, their results to JSON, and the library's typed errors to HTTP statuses with
OpenAI's error shape {"error": {"message", "type", "param", "code"}}. No error leaves as a traceback.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import logging
import os
import re
import shutil
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import Annotated, Any, Literal

import uvicorn
from fastapi import APIRouter, Depends, FastAPI, File, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile as StarletteUpload
from starlette.exceptions import HTTPException

from assistant import __version__
from assistant.answer import Answer
from assistant.chain import Chain
from assistant.config import Settings
from assistant.corpus import add_document, list_trash, remove_document, restore_document
from assistant.errors import (
    AssistantError,
    ConfigError,
    DocumentError,
    IndexError_,
    ModelNotInstalledError,
    QAFileError,
    QuestionError,
)
from assistant.jobs import Jobs, Progress
from assistant.keys import HOW_TO_ADD, ApiKey, allows, load_keys, role_of
from assistant.loaders import find_files
from assistant.store import Index

log = logging.getLogger(__name__)

MODEL = "nhs-assistant"  # extractive: answers are quotes
GENERATIVE_MODEL = "nhs-assistant-generative"  # served when ASSISTANT_LLM names a model
LOOPBACK = ("127.0.0.1", "::1", "localhost")
UPLOAD_SLACK = 1 << 20  # multipart headers and boundaries around an upload of max_upload_mb
TARGET_COLUMNS = ("area", "theme", "objective", "values", "deadline", "source", "page", "chunk_id", "title")

# Library errors -> (HTTP status, OpenAI error type, code); the first matching class wins.
ERROR_STATUS: list[tuple[type[AssistantError], int, str, str]] = [
    (QuestionError, 400, "invalid_request_error", "invalid_question"),
    (QAFileError, 400, "invalid_request_error", "invalid_qa_file"),
    (DocumentError, 400, "invalid_request_error", "invalid_document"),
    (ConfigError, 400, "invalid_request_error", "invalid_setting"),
    (IndexError_, 503, "service_unavailable", "index_unavailable"),
    (ModelNotInstalledError, 503, "service_unavailable", "model_not_installed"),
    (AssistantError, 500, "server_error", "assistant_error"),
]
_HTTP_TYPES = {401: "authentication_error", 403: "permission_error", 404: "not_found_error"}


# --- request bodies (unknown fields are ignored, as OpenAI clients send many) ------------------------


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


class ChatMessage(_Body):
    role: str
    content: str | list[dict[str, Any]] | None = None


class ContextFilter(_Body):
    """Only passages of these documents (file names) and/or areas."""

    sources: list[str] | None = None
    areas: list[str] | None = None


class ChatRequest(_Body):
    """OpenAI's chat completion request; `temperature` and the like are accepted and ignored."""

    messages: list[ChatMessage] = Field(min_length=1)
    model: str | None = None
    stream: bool = False
    context_filter: ContextFilter | None = None
    mode: Literal["extractive", "generative"] | None = None
    k: int | None = Field(default=None, ge=1, le=100)
    include_sources: bool = True


class ChunksRequest(_Body):
    """Retrieval only: the passages that best match `text`."""

    text: str = Field(min_length=1)
    filters: ContextFilter | None = None
    limit: int | None = Field(default=None, ge=1, le=100)


class ApiError(Exception):
    """An error answered in OpenAI's shape."""

    def __init__(
        self,
        status: int,
        message: str,
        type_: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type_, param, code
        self.headers = headers

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


def api_error(error: AssistantError) -> ApiError:
    """The HTTP error a library error becomes (its message is already one sentence with the fix)."""
    status, type_, code = next((s, t, c) for cls, s, t, c in ERROR_STATUS if isinstance(error, cls))
    return ApiError(status, str(error), type_, code=code)


# --- the app ----------------------------------------------------------------------------------------


class _State:
    """What the routes share: settings, the chain, keys, jobs, metrics and the index watch."""

    def __init__(self, settings: Settings, chain: Chain, keys: list[ApiKey]) -> None:
        self.settings = settings
        self.chain = chain
        self.keys = keys
        self.jobs = Jobs(settings.index_dir / "jobs")
        self.metrics = _Metrics()
        self.started = int(time.time())
        self.warm = threading.Event()
        self._known: tuple[Any, set[str], set[str]] = (None, set(), set())

    def fresh_chain(self) -> Chain:
        """The chain, told to reload when another process made a new build current (any store).

        A stat (or, with the postgres store, one query) per request: cheap enough, and it makes every
        worker and replica see a new index without a restart.
        """
        self.chain.refresh()
        return self.chain

    def known(self, index: Index) -> tuple[set[str], set[str]]:
        """The document names and areas of `index`, computed once per build."""
        build = index.manifest.get("build")
        if self._known[0] != build:
            sources = {str(c.metadata.get("source")) for c in index.chunks}
            areas = {str(c.metadata["area"]) for c in index.chunks if c.metadata.get("area")}
            self._known = (build, sources, areas)
        return self._known[1], self._known[2]

    def models(self) -> list[str]:
        return [MODEL] + ([GENERATIVE_MODEL] if self.settings.llm != "none" else [])


def create_app(settings: Settings | None = None, chain: Chain | None = None) -> FastAPI:
    """The API over `chain` (default: a Chain over `settings`); keys and limits come from `settings`."""
    settings = settings or (chain.settings if chain else Settings.from_env())
    chain = chain or Chain(settings)
    state = _State(settings, chain, load_keys(settings))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Load the model and index now, not on the first question; /health says 503 until done.
        threading.Thread(target=_warm_up, args=(state,), daemon=True, name="assistant-warm-up").start()
        yield
        await run_in_threadpool(state.jobs.shutdown)

    app = FastAPI(
        title="NHS planning assistant",
        version=__version__,
        description="Answers about NHS planning documents with verified citations; OpenAI-compatible.",
        lifespan=lifespan,
    )
    app.state.assistant = state
    app.add_exception_handler(ApiError, _on_api_error)  # type: ignore[arg-type]
    app.add_exception_handler(AssistantError, _on_assistant_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _on_invalid)  # type: ignore[arg-type]
    app.add_exception_handler(HTTPException, _on_http)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _on_unexpected)
    app.include_router(_open_routes())
    app.include_router(_reader_routes(), dependencies=[Depends(_role("reader"))])
    app.include_router(_admin_routes(), dependencies=[Depends(_role("admin"))])
    if settings.cors_origins.strip():
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=[o.strip() for o in settings.cors_origins.split(",") if o.strip()],
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
        )
    app.add_middleware(_BodyLimit, settings=settings)
    app.add_middleware(_Instrument, metrics=state.metrics)
    return app


def app_from_env() -> FastAPI:
    """The app over the ASSISTANT_* settings: the factory each uvicorn worker calls."""
    return create_app(Settings.from_env())


def _warm_up(state: _State) -> None:
    try:
        state.fresh_chain().index  # noqa: B018 - loads the model and the index
    except AssistantError as err:
        log.warning("%s", err)  # /health reports it; requests get it as a 503
    except Exception:
        log.exception("loading the index failed")
    finally:
        state.warm.set()


def _state(request: Request) -> _State:
    state: _State = request.app.state.assistant
    return state


_bearer = HTTPBearer(auto_error=False, description="An API key from `nhs-assistant keys add`.")


def _role(needed: str) -> Callable[..., Awaitable[None]]:
    """A dependency that lets a request through only with a key of role `needed` (or above)."""

    async def check(
        request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
    ) -> None:
        keys = _state(request).keys
        if not keys:  # none configured: `serve` bound to loopback only
            return
        challenge = {"WWW-Authenticate": "Bearer"}
        if credentials is None or not credentials.credentials.strip():
            raise ApiError(
                401,
                "No API key: send 'Authorization: Bearer <key>' (an admin makes keys with "
                "`nhs-assistant keys add`).",
                "authentication_error",
                code="missing_api_key",
                headers=challenge,
            )
        role = role_of(credentials.credentials.strip(), keys)
        if role is None:
            raise ApiError(
                401,
                "The API key is not valid; ask an admin for a key.",
                "authentication_error",
                code="invalid_api_key",
                headers=challenge,
            )
        if not allows(role, needed):
            raise ApiError(
                403,
                f"This needs a key with the {needed} role; the key sent has the {role} role.",
                "permission_error",
                code="insufficient_role",
            )

    return check


# --- routes: open -----------------------------------------------------------------------------------


def _open_routes() -> APIRouter:
    router = APIRouter()

    @router.get("/health", tags=["service"])
    async def health(request: Request) -> JSONResponse:
        """200 with the index size and models once the index is loaded; 503 while loading or without one."""
        state = _state(request)
        if not state.warm.is_set():
            return JSONResponse({"status": "loading"}, status_code=503)
        try:
            index = await run_in_threadpool(lambda: state.fresh_chain().index)
        except AssistantError as err:
            return JSONResponse({"status": "unavailable", "error": str(err)}, status_code=503)
        manifest = index.manifest
        return JSONResponse(
            {
                "status": "ok",
                "index": {
                    "chunks": len(index.chunks),
                    "documents": len(manifest.get("files", {})),
                    "build": manifest.get("build"),
                    "built_at": manifest.get("built_at"),
                },
                "embedding_model": manifest.get("embedding_model"),
                "models": state.models(),
                "version": __version__,
                "pid": os.getpid(),
            }
        )

    @router.get("/metrics", tags=["service"])
    async def metrics(request: Request) -> Response:
        """Prometheus text: requests, latency, answers and refusals (all workers in multiprocess mode)."""
        body, content_type = _state(request).metrics.exposition()
        return Response(body, media_type=content_type)

    return router


# --- routes: reader ---------------------------------------------------------------------------------


def _reader_routes() -> APIRouter:
    router = APIRouter(prefix="/v1")

    @router.get("/models", tags=["chat"])
    async def models(request: Request) -> dict[str, Any]:
        """The assistant's models: extractive, and generative when ASSISTANT_LLM names a model."""
        state = _state(request)
        data = [
            {"id": m, "object": "model", "created": state.started, "owned_by": "nhs-assistant"}
            for m in state.models()
        ]
        return {"object": "list", "data": data}

    @router.post("/chat/completions", tags=["chat"], response_model=None)
    async def chat_completions(body: ChatRequest, request: Request) -> dict[str, Any] | StreamingResponse:
        """The last user message is the question, earlier turns the history; the choice carries `sources`."""
        state = _state(request)
        model = body.model or MODEL
        if model not in state.models():
            raise ApiError(
                404,
                f"The model {model!r} is not served here; use one of {', '.join(state.models())} (GET /v1/models).",
                "not_found_error",
                param="model",
                code="model_not_found",
            )
        mode = body.mode or ("generative" if model == GENERATIVE_MODEL else "extractive")
        question, history = _question(body.messages, state.settings.max_question_chars)
        chain = state.fresh_chain()
        filters = await run_in_threadpool(_filters, state, body.context_filter, "context_filter")
        reply = _Reply(model, body.include_sources)

        def answer(on_token: Callable[[str], None] | None = None) -> tuple[Answer, dict[str, Any]]:
            """The answer and its OpenAI extras, both made off the event loop (they read the index)."""
            result = chain.ask(question, history or None, filters, mode, body.k, on_token)
            state.metrics.answered(mode, result.refused)
            return result, reply.extras(result, chain.index)

        if body.stream:
            return await _stream(answer, reply, generative=mode == "generative")
        return reply.completion(*await run_in_threadpool(answer))

    @router.post("/chunks", tags=["retrieval"])
    async def chunks(body: ChunksRequest, request: Request) -> dict[str, Any]:
        """Retrieval only: scored passages with their metadata, best first (no answer is composed)."""
        state = _state(request)
        if len(body.text) > state.settings.max_question_chars:
            raise _too_long(len(body.text), state.settings.max_question_chars, "text")

        def search() -> dict[str, Any]:
            chain = state.fresh_chain()
            filters = _filters(state, body.filters, "filters")
            hits = chain.retriever.search(body.text, body.limit or state.settings.k, filters)
            data = [
                {
                    "object": "chunk",
                    "rank": rank,
                    "score": round(h.fused, 6),
                    "dense_score": round(h.dense, 6),
                    "bm25_score": round(h.bm25, 6),
                    "chunk_id": h.chunk.metadata.get("chunk_id"),
                    "text": h.chunk.page_content,
                    "metadata": h.chunk.metadata,
                }
                for rank, h in enumerate(hits, start=1)
            ]
            return {"object": "list", "data": data, "model": chain.index.manifest.get("embedding_model")}

        return await run_in_threadpool(search)

    @router.get("/targets", tags=["targets"], response_model=None)
    async def targets(
        request: Request,
        area: Annotated[list[str] | None, Query(description="keep rows of these areas (repeatable)")] = None,
        deadline: Annotated[
            str | None, Query(description='keep rows with this deadline ("March 2024")')
        ] = None,
        format: Literal["json", "csv"] = "json",
    ) -> dict[str, Any] | Response:
        """The targets register (objectives with values, deadlines and sources), as JSON or CSV."""
        state = _state(request)
        index = await run_in_threadpool(lambda: state.fresh_chain().index)
        rows = [
            t
            for t in index.targets
            if (not area or t.get("area") in area)
            and (not deadline or str(t.get("deadline") or "").lower() == deadline.strip().lower())
        ]
        if format == "csv" or "text/csv" in request.headers.get("accept", ""):
            return Response(
                _csv(rows),
                media_type="text/csv; charset=utf-8",
                headers={"Content-Disposition": 'attachment; filename="nhs-targets.csv"'},
            )
        return {"object": "list", "data": rows}

    return router


# --- routes: admin ----------------------------------------------------------------------------------


def _admin_routes() -> APIRouter:
    router = APIRouter(prefix="/v1")

    @router.get("/documents", tags=["documents"])
    async def documents(request: Request) -> dict[str, Any]:
        """The documents in the corpus folder and whether each is indexed."""
        return await run_in_threadpool(_list_documents, _state(request))

    @router.post("/documents", tags=["documents"], status_code=202)
    def upload(
        request: Request, file: Annotated[list[UploadFile], File(description="PDF, DOCX, TXT, MD or HTML")]
    ) -> JSONResponse:
        """Save the files into the corpus (same type and size limits as ingest) and start re-indexing."""
        state = _state(request)
        saved, errors = [], []
        for upload in file:
            name = upload.filename or ""
            try:
                data: Any = upload.file.read if upload.size is not None else upload.file.read()
                path, note = add_document(
                    name, data, state.settings.corpus_dir, state.settings.max_upload_mb, size=upload.size
                )
            except DocumentError as err:
                errors.append({"name": name, "error": str(err)})
                continue
            saved.append({"name": name, "saved_as": path.name, "note": note})
        if not saved:
            raise ApiError(
                400,
                errors[0]["error"] if errors else "No file was sent.",
                param="file",
                code="invalid_document",
            )
        job = state.jobs.submit(
            "ingest", partial(_ingest, state, ()), {"added": [s["saved_as"] for s in saved]}
        )
        return _job_response(job, {"saved": saved, "errors": errors})

    @router.delete("/documents/{name}", tags=["documents"], status_code=202)
    def delete(name: str, request: Request) -> JSONResponse:
        """Move a document to the trash (restorable: see /v1/trash) and start re-indexing without it."""
        state = _state(request)
        try:
            trashed = remove_document(name, state.settings.corpus_dir)
        except DocumentError as err:
            raise ApiError(
                404, f"{err}; GET /v1/documents lists them.", "not_found_error", "name", "document_not_found"
            ) from None
        job = state.jobs.submit(
            "ingest", partial(_ingest, state, (trashed.name,)), {"removed": [trashed.name]}
        )
        return _job_response(job, {"removed": name, "trash": asdict(trashed)})

    @router.get("/trash", tags=["documents"])
    async def trash(request: Request) -> dict[str, Any]:
        """Removed documents, newest first; each can be restored by its id."""
        items = await run_in_threadpool(list_trash, _state(request).settings.corpus_dir)
        return {"object": "list", "data": [{"object": "trashed_document"} | asdict(t) for t in items]}

    @router.post("/trash/{trash_id}/restore", tags=["documents"], status_code=202)
    def restore(trash_id: str, request: Request) -> JSONResponse:
        """Move a removed document back into the corpus and start re-indexing it."""
        state = _state(request)
        try:
            path, note = restore_document(trash_id, state.settings.corpus_dir)
        except DocumentError as err:
            raise ApiError(
                404, f"{err}; GET /v1/trash lists it.", "not_found_error", "trash_id", "trash_not_found"
            ) from None
        job = state.jobs.submit("ingest", partial(_ingest, state, ()), {"restored": [path.name]})
        return _job_response(job, {"restored_as": path.name, "note": note})

    @router.get("/jobs/{job_id}", tags=["documents"])
    async def job(job_id: str, request: Request) -> dict[str, Any]:
        """An ingest job: status (queued, running, succeeded, failed), progress, result or error."""
        record = _state(request).jobs.get(job_id)
        if record is None:
            raise ApiError(
                404,
                f"No job {job_id!r}; jobs are named in the reply to an upload or removal.",
                "not_found_error",
                param="job_id",
                code="job_not_found",
            )
        return record

    @router.post("/evaluations", tags=["evaluations"])
    async def evaluations(
        request: Request,
        mode: Literal["extractive", "generative"] = "extractive",
        k: Annotated[int | None, Query(ge=1, le=100)] = None,
    ) -> dict[str, Any]:
        """Score the assistant on a QA set: JSONL as the body, or a multipart upload named `file`."""
        state = _state(request)
        name, data = "qa.jsonl", b""
        if request.headers.get("content-type", "").startswith("multipart/form-data"):
            form = await request.form()
            upload = form.get("file")
            if not isinstance(upload, StarletteUpload):
                raise ApiError(400, "Send the QA file as the multipart field 'file'.", param="file")
            # the name only appears in messages ("mine.jsonl line 3: ..."): keep it plain
            name = re.sub(r"[^\w.\- ]", "_", Path(upload.filename or name).name)[:100] or name
            data = await upload.read()
        else:
            data = await request.body()
        chain = await run_in_threadpool(state.fresh_chain)
        return await run_in_threadpool(_evaluate, chain, name, data, mode, k)

    return router


# --- what the routes do -----------------------------------------------------------------------------


def _question(messages: list[ChatMessage], limit: int) -> tuple[str, list[dict[str, str]]]:
    """The last message (a user's) as the question; earlier user and assistant turns as the history."""
    turns = [(m.role, _text(m.content)) for m in messages]
    role, question = turns[-1]
    if role != "user":
        raise ApiError(
            400, f"The last message must be the user's question, not a {role!r} message.", param="messages"
        )
    length = len(" ".join(question.split()))  # measured as the chain measures it
    if length > limit:
        raise _too_long(length, limit, "messages")
    # System messages are not passed on: the assistant's rules are fixed and answers are quotes.
    history = [{"role": r, "content": c} for r, c in turns[:-1] if r in ("user", "assistant") and c]
    return question, history


def _text(content: str | list[dict[str, Any]] | None) -> str:
    """A message's text: the string, or its text parts joined (OpenAI's content-part form)."""
    if content is None or isinstance(content, str):
        return content or ""
    return " ".join(str(p.get("text", "")) for p in content if p.get("type") == "text")


def _too_long(length: int, limit: int, param: str) -> ApiError:
    return ApiError(
        400,
        f"The question is {length:,} characters, over the {limit:,} limit (ASSISTANT_MAX_QUESTION_CHARS); shorten it.",
        param=param,
        code="question_too_long",
    )


def _filters(state: _State, given: ContextFilter | None, param: str) -> dict[str, list[str]] | None:
    """Chain filters from the API's {sources, areas}; a name the index does not hold is a 400."""
    if given is None or not (given.sources or given.areas):
        return None
    sources, areas = state.known(state.fresh_chain().index)
    for field, asked, known, hint in (
        ("sources", given.sources, sources, "is not an indexed document; GET /v1/documents lists them"),
        ("areas", given.areas, areas, f"is not an area of the index; use one of {', '.join(sorted(areas))}"),
    ):
        for name in asked or []:
            if name not in known:
                where = f"{param}.{field}"
                raise ApiError(400, f"{where}: {name!r} {hint}.", param=where, code=f"unknown_{field[:-1]}")
    filters = {"source": list(given.sources or []), "area": list(given.areas or [])}
    return {k: v for k, v in filters.items() if v}


class _Reply:
    """An Answer in OpenAI's shapes: a chat completion, or its stream of chunks."""

    def __init__(self, model: str, include_sources: bool) -> None:
        self.id = f"chatcmpl-{uuid.uuid4().hex}"
        self.created = int(time.time())
        self.model, self.include_sources = model, include_sources

    def completion(self, answer: Answer, extras: dict[str, Any]) -> dict[str, Any]:
        choice = {
            "index": 0,
            "message": {"role": "assistant", "content": answer.text},
            "finish_reason": "stop",
        }
        return self._envelope("chat.completion", choice | extras)

    def chunk(self, delta: dict[str, Any], finish: str | None = None, **extras: Any) -> str:
        """One Server-Sent Event holding a chat.completion.chunk."""
        choice = {"index": 0, "delta": delta, "finish_reason": finish} | extras
        return _event(self._envelope("chat.completion.chunk", choice))

    def _envelope(self, kind: str, choice: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": kind,
            "created": self.created,
            "model": self.model,
            "choices": [choice],
        }

    def extras(self, answer: Answer, index: Index) -> dict[str, Any]:
        """What the choice carries beyond OpenAI's shape: refused and why (the evidence rules that decided),
        the question as understood when it was read as a follow-up, and the sources."""
        rules = answer.trace.get("rules") or []
        extras: dict[str, Any] = {
            "refused": answer.refused,
            "refusal_reason": "; ".join(rules) or "not covered" if answer.refused else None,
            "understood": answer.trace.get("understood"),
        }
        if self.include_sources:
            chunks = index.by_id
            extras["sources"] = [
                {
                    **asdict(c),
                    # checked again here: the quote is word for word in the passage the index holds
                    "verified": c.chunk_id in chunks and c.quote in chunks[c.chunk_id].page_content,
                }
                for c in answer.citations
            ]
        return extras


def _event(data: dict[str, Any]) -> str:
    return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"


async def _stream(
    answer_with: Callable[..., tuple[Answer, dict[str, Any]]], reply: _Reply, generative: bool
) -> StreamingResponse:
    """Server-Sent Events: the model's tokens as they come (generative) or the answer's lines, then a
    final chunk with the sources, then [DONE]. An error before the first token is an ordinary error reply."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()

    def put(kind: str, value: Any) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, (kind, value))

    def run() -> None:  # in a worker thread; tokens cross to the event loop through the queue
        try:
            put("answer", answer_with(partial(put, "token") if generative else None))
        except Exception as err:  # noqa: BLE001 - handed to the event loop, which answers it
            put("error", err)

    worker = asyncio.ensure_future(run_in_threadpool(run))
    first = await queue.get()
    if first[0] == "error":
        raise first[1]

    async def events() -> AsyncIterator[str]:
        yield reply.chunk({"role": "assistant", "content": ""})
        kind, value = first
        streamed = []
        while kind == "token":
            streamed.append(value)
            yield reply.chunk({"content": value})
            kind, value = await queue.get()
        if kind == "error":
            error = api_error(value) if isinstance(value, AssistantError) else _unexpected(value)
            yield _event(error.body())
        else:
            answer, extras = value
            if not streamed:
                for line in answer.text.splitlines(keepends=True):
                    yield reply.chunk({"content": line})
            else:
                if _plain("".join(streamed)) != _plain(answer.text):
                    # The draft failed the citation check. Tokens cannot be taken back, so the checked answer
                    # follows them; the final chunk's `answer` holds it for clients that replace the draft.
                    note = f"\n\n(Checked against the sources, the answer is:)\n{answer.text}"
                    yield reply.chunk({"content": note})
                extras = {"answer": answer.text} | extras
            yield reply.chunk({}, "stop", **extras)
        yield "data: [DONE]\n\n"
        await worker

    return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


def _plain(text: str) -> str:
    """Text without citation marks and spacing, to tell whether a streamed draft is the final answer."""
    return re.sub(r"\[[\d,\s]+\]|\s+", "", text)


def _csv(rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=TARGET_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({**row, "values": "; ".join(row.get("values") or [])})
    return out.getvalue()


def _list_documents(state: _State) -> dict[str, Any]:
    corpus = state.settings.corpus_dir
    try:
        indexed = state.fresh_chain().index.manifest.get("files", {})
    except AssistantError:
        indexed = {}
    data = []
    for path in find_files([corpus])[0] if corpus.is_dir() else []:
        meta = indexed.get(path.name) or {}
        data.append(
            {
                "object": "document",
                "name": path.name,
                "path": str(path.relative_to(corpus)),
                "bytes": path.stat().st_size,
                "indexed": bool(meta),
                "pages": meta.get("pages"),
                "chunks": meta.get("chunks"),
            }
        )
    return {"object": "list", "data": data}


def _ingest(state: _State, remove: tuple[str, ...], progress: Progress) -> dict[str, Any]:
    """Add and update the corpus folder's documents in the index (unchanged ones reused), take out the
    `remove`d ones, then make this process's chain reload. Another ingest (any process) goes first."""
    report = state.chain.reindex(remove, progress, on_wait=lambda message: progress(message, 0, 0))
    return {
        "files": report.files,
        "reused_files": report.reused_files,
        "removed_files": report.removed_files,
        "pages": report.pages,
        "chunks": report.chunks,
        "embedded": report.embedded,
        "skipped": [str(s) for s in report.skipped],
        "seconds": round(report.seconds, 2),
    }


def _job_response(job: dict[str, Any], extra: dict[str, Any]) -> JSONResponse:
    return JSONResponse({"job": job} | extra, status_code=202, headers={"Location": f"/v1/jobs/{job['id']}"})


def _evaluate(chain: Chain, name: str, data: bytes, mode: str, k: int | None) -> dict[str, Any]:
    """Score `chain` on a QA JSONL (validated whole first, as the CLI does); metrics and per-question rows."""
    from assistant.evaluation import evaluate, load_qa

    with tempfile.TemporaryDirectory(prefix="nhs-api-eval-") as tmp:
        path = Path(tmp) / name
        path.write_bytes(data)
        items = load_qa(path)
        out = Path(tmp) / "out"
        report = evaluate(
            items, ask=lambda q, history: chain.ask(q, history, mode=mode, k=k), out_dir=out, qa_file=name
        )
        results = [
            json.loads(line) for line in (out / "results.jsonl").read_text(encoding="utf-8").splitlines()
        ]
    return {
        "object": "evaluation",
        "n": report["n"],
        "metrics": report["metrics"],
        "per_tag": report["per_tag"],
        "results": results,
    }


# --- errors -----------------------------------------------------------------------------------------


async def _on_api_error(request: Request, error: ApiError) -> JSONResponse:
    return error.response()


async def _on_assistant_error(request: Request, error: AssistantError) -> JSONResponse:
    return api_error(error).response()


async def _on_invalid(request: Request, error: RequestValidationError) -> JSONResponse:
    first = error.errors()[0] if error.errors() else {}
    loc = list(first.get("loc", ()))
    where = [str(p) for p in (loc[1:] if loc and loc[0] in ("body", "query", "path") else loc)]
    if first.get("type") == "json_invalid":
        message = "The request body is not valid JSON; send one JSON object."
        where = []
    else:
        message = f"{'.'.join(where) or 'body'}: {first.get('msg', 'invalid value')}."
    return ApiError(400, message, param=".".join(where) or None, code="invalid_request").response()


async def _on_http(request: Request, error: HTTPException) -> JSONResponse:
    status = error.status_code
    message = str(error.detail)
    if status == 404:
        message = f"No route {request.method} {request.url.path}; see /docs for the API."
    elif status == 405:
        message = f"{request.method} is not allowed on {request.url.path}; see /docs for the API."
    type_ = _HTTP_TYPES.get(status, "invalid_request_error" if status < 500 else "server_error")
    headers = dict(error.headers) if error.headers else None
    return ApiError(status, message, type_, code=getattr(error, "code", None), headers=headers).response()


def _unexpected(error: BaseException) -> ApiError:
    ref = uuid.uuid4().hex[:8]
    log.error("unexpected error %s", ref, exc_info=error)
    return ApiError(
        500, f"Unexpected server error (reference {ref}); the server log has the details.", "server_error"
    )


async def _on_unexpected(request: Request, error: Exception) -> JSONResponse:
    return _unexpected(error).response()


# --- middleware -------------------------------------------------------------------------------------

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class _TooLarge(HTTPException):
    code = "request_too_large"


class _BodyLimit:
    """Refuses a request body over its limit (413), by Content-Length before reading, else while reading.

    Written here because neither Starlette nor uvicorn has a body size limit.
    """

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]], settings: Settings) -> None:
        self.app = app
        self.settings = settings

    def limit(self, scope: Scope) -> tuple[int, str]:
        if scope["method"] == "POST" and scope["path"].rstrip("/") == "/v1/documents":
            mb = self.settings.max_upload_mb
            return mb * 2**20 + UPLOAD_SLACK, f"an upload over {mb} MB (ASSISTANT_MAX_UPLOAD_MB)"
        kb = self.settings.max_request_kb
        return kb * 1024, f"a request body over {kb} KB (ASSISTANT_MAX_REQUEST_KB)"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit, what = self.limit(scope)
        message = f"The server does not accept {what}; send less."
        length = dict(scope["headers"]).get(b"content-length", b"")
        if length.isdigit() and int(length) > limit:
            error = ApiError(413, message, code="request_too_large", headers={"Connection": "close"})
            await error.response()(scope, receive, send)
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            event = await receive()
            received += len(event.get("body", b""))
            if received > limit:
                raise _TooLarge(413, message)
            return event

        await self.app(scope, limited, send)


class _Metrics:
    """Prometheus metrics of this app; with PROMETHEUS_MULTIPROC_DIR set, of every worker together."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        # In multiprocess mode values live in files shared by the workers and are collected per scrape.
        self.registry = None if self.multiprocess else CollectorRegistry()
        self.requests = Counter(
            "nhs_assistant_requests",
            "HTTP requests by route, method and status",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "nhs_assistant_request_duration_seconds",
            "Time from request to the last byte of the response",
            ["route"],
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=self.registry,
        )
        self.answers = Counter("nhs_assistant_answers", "Answers given", ["mode"], registry=self.registry)
        self.refusals = Counter(
            "nhs_assistant_refusals",
            "Answers that declined (not in the documents, clinical, ...)",
            ["mode"],
            registry=self.registry,
        )

    def answered(self, mode: str, refused: bool) -> None:
        self.answers.labels(mode).inc()
        if refused:
            self.refusals.labels(mode).inc()

    def exposition(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
        from prometheus_client.multiprocess import MultiProcessCollector

        registry = self.registry
        if registry is None:
            registry = CollectorRegistry()
            MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST


class _Instrument:
    """Counts requests and times them (to the last byte, so a stream counts whole) by route template."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]], metrics: _Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            route = scope.get("route")
            # the template ("/v1/jobs/{job_id}"), so label values stay few
            name = getattr(route, "path", None) or "unmatched"
            self.metrics.requests.labels(name, scope["method"], str(status)).inc()
            self.metrics.latency.labels(name).observe(time.perf_counter() - started)


# --- serving ----------------------------------------------------------------------------------------


def check_bind(host: str, keys: list[ApiKey]) -> None:
    """Refuse to listen beyond this machine without API keys."""
    if not keys and host not in LOOPBACK:
        raise ConfigError(
            f"Refusing to listen on {host} without API keys: anyone who can reach it could use and change "
            f"the assistant; {HOW_TO_ADD}, or listen on 127.0.0.1."
        )


class _TcpConfig(uvicorn.Config):
    """uvicorn's config, with the listening socket it shares between workers marked as TCP.

    uvicorn binds the socket of `--workers N` with proto 0, so asyncio never sets TCP_NODELAY on its
    connections and each keep-alive request after the first waits ~40 ms for a delayed ACK
    (Kludex/uvicorn#3149, open; measured here: 68 ms instead of 19 ms per question).
    """

    def bind_socket(self) -> socket.socket:
        sock = super().bind_socket()
        return socket.socket(sock.family, sock.type, socket.IPPROTO_TCP, fileno=sock.detach())


def serve(
    settings: Settings,
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = 1,
    log: Callable[[str], None] = print,
) -> None:
    """Run the API on uvicorn until interrupted; several workers share the index and see every ingest."""
    from uvicorn.supervisors import Multiprocess

    keys = load_keys(settings)
    check_bind(host, keys)
    if workers < 1:
        raise ConfigError(f"--workers ({workers}) must be at least 1.")
    if not keys:
        log(f"No API keys configured: listening on {host} only, and every request is allowed.")
    if workers == 1:
        uvicorn.run(create_app(settings), host=host, port=port, log_level="info")
        return
    # Each worker is a new process that builds its app from the environment (settings, metrics folder).
    metrics_dir = None
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        metrics_dir = tempfile.mkdtemp(prefix="nhs-assistant-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    os.environ.update(settings.to_env())
    config = _TcpConfig(
        "assistant.server:app_from_env", factory=True, host=host, port=port, workers=workers, log_level="info"
    )
    try:  # what uvicorn.run does for several workers, with the config above
        Multiprocess(config, sockets=[config.bind_socket()]).run()
    except KeyboardInterrupt:
        pass
    finally:
        if metrics_dir:
            shutil.rmtree(metrics_dir, ignore_errors=True)
