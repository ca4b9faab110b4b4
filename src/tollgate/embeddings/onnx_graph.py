"""Build the MiniLM ONNX graph from its safetensors weights with ``onnx.helper`` (no torch, no exporter).

Inputs ``input_ids`` and ``attention_mask`` (int64, [batch, seq]); output ``sentence_embedding`` ([batch, 384]),
mean-pooled over the mask and L2-normalised. Opset 17: ``LayerNormalization``, ``Erf`` GELU, Q/K/V fused into one
MatMul per layer. The same function as ``minilm.NumpyMiniLM`` (tests compare the two).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from tollgate.embeddings.minilm import HEAD_DIM, HEADS, HIDDEN, LAYERS, LN_EPS, Weights, _require

OPSET = 17


class _Builder:
    def __init__(self) -> None:
        self.onnx = _require("onnx")
        self.helper = self.onnx.helper
        self.nodes: list[Any] = []
        self.inits: list[Any] = []
        self._n = 0

    def const(self, name: str, value: Any) -> str:
        self.inits.append(self.onnx.numpy_helper.from_array(np.asarray(value), name))
        return name

    def op(self, op_type: str, inputs: list[str], **attrs: Any) -> str:
        self._n += 1
        out = f"{op_type.lower()}_{self._n}"
        self.nodes.append(self.helper.make_node(op_type, inputs, [out], **attrs))
        return out

    def split3(self, x: str) -> tuple[str, str, str]:
        self._n += 1
        outs = [f"split_{self._n}_{i}" for i in range(3)]
        self.nodes.append(self.helper.make_node("Split", [x], outs, axis=-1))
        return outs[0], outs[1], outs[2]

    def linear(self, x: str, weight: Any, bias: Any, name: str) -> str:
        w = self.const(name + ".w", np.ascontiguousarray(weight.T.astype(np.float32)))
        b = self.const(name + ".b", bias.astype(np.float32))
        return self.op("Add", [self.op("MatMul", [x, w]), b])

    def layer_norm(self, x: str, gamma: Any, beta: Any, name: str) -> str:
        g = self.const(name + ".g", gamma.astype(np.float32))
        b = self.const(name + ".b", beta.astype(np.float32))
        return self.op("LayerNormalization", [x, g, b], axis=-1, epsilon=LN_EPS)


def build_graph(weights: Weights) -> Any:
    """The ``onnx.ModelProto`` of MiniLM-L6 with mean pooling and L2 normalisation."""
    b = _Builder()
    helper, tp = b.helper, b.onnx.TensorProto
    w = weights

    # Embeddings: word + position (0..seq-1) + token type 0, then LayerNorm.
    word = b.op("Gather", [b.const("word_embeddings", w["embeddings.word_embeddings.weight"]), "input_ids"])
    shape = b.op("Shape", ["input_ids"])
    seq = b.op("Gather", [shape, b.const("one_idx", np.array(1, dtype=np.int64))])
    positions = b.op(
        "Range", [b.const("zero_i", np.array(0, dtype=np.int64)), seq, b.const("one_i", np.array(1, dtype=np.int64))]
    )
    pos = b.op("Gather", [b.const("position_embeddings", w["embeddings.position_embeddings.weight"]), positions])
    token_type = b.const("token_type_0", w["embeddings.token_type_embeddings.weight"][0].astype(np.float32))
    x = b.op("Add", [b.op("Add", [word, pos]), token_type])
    x = b.layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], "emb_ln")

    # Attention bias: 0 where the mask is 1, -1e9 where it is 0; [batch, 1, 1, seq].
    mask_f = b.op("Cast", ["attention_mask"], to=tp.FLOAT)
    one_f = b.const("one_f", np.array(1.0, dtype=np.float32))
    neg = b.op("Mul", [b.op("Sub", [one_f, mask_f]), b.const("neg_big", np.array(-1e9, dtype=np.float32))])
    bias = b.op("Unsqueeze", [neg, b.const("axes_1_2", np.array([1, 2], dtype=np.int64))])

    heads_shape = b.const("heads_shape", np.array([0, 0, HEADS, HEAD_DIM], dtype=np.int64))
    hidden_shape = b.const("hidden_shape", np.array([0, 0, HIDDEN], dtype=np.int64))
    scale = b.const("scale", np.array(1.0 / math.sqrt(HEAD_DIM), dtype=np.float32))
    half = b.const("half", np.array(0.5, dtype=np.float32))
    inv_sqrt2 = b.const("inv_sqrt2", np.array(1.0 / math.sqrt(2.0), dtype=np.float32))

    for i in range(LAYERS):
        p = f"encoder.layer.{i}."
        qkv_w = np.concatenate([w[p + f"attention.self.{n}.weight"] for n in ("query", "key", "value")], axis=0)
        qkv_b = np.concatenate([w[p + f"attention.self.{n}.bias"] for n in ("query", "key", "value")])
        q, k, v = b.split3(b.linear(x, qkv_w, qkv_b, f"l{i}.qkv"))
        q = b.op("Transpose", [b.op("Reshape", [q, heads_shape])], perm=[0, 2, 1, 3])  # [b, h, s, d]
        k = b.op("Transpose", [b.op("Reshape", [k, heads_shape])], perm=[0, 2, 3, 1])  # [b, h, d, s]
        v = b.op("Transpose", [b.op("Reshape", [v, heads_shape])], perm=[0, 2, 1, 3])
        scores = b.op("Add", [b.op("Mul", [b.op("MatMul", [q, k]), scale]), bias])
        probs = b.op("Softmax", [scores], axis=-1)
        ctx = b.op("Transpose", [b.op("MatMul", [probs, v])], perm=[0, 2, 1, 3])
        ctx = b.op("Reshape", [ctx, hidden_shape])
        attn = b.linear(ctx, w[p + "attention.output.dense.weight"], w[p + "attention.output.dense.bias"], f"l{i}.o")
        x = b.layer_norm(
            b.op("Add", [attn, x]),
            w[p + "attention.output.LayerNorm.weight"],
            w[p + "attention.output.LayerNorm.bias"],
            f"l{i}.ln1",
        )
        h = b.linear(x, w[p + "intermediate.dense.weight"], w[p + "intermediate.dense.bias"], f"l{i}.ffn1")
        # GELU, exact: 0.5 * h * (1 + erf(h / sqrt 2))
        h = b.op("Mul", [b.op("Mul", [h, half]), b.op("Add", [one_f, b.op("Erf", [b.op("Mul", [h, inv_sqrt2])])])])
        h = b.linear(h, w[p + "output.dense.weight"], w[p + "output.dense.bias"], f"l{i}.ffn2")
        x = b.layer_norm(
            b.op("Add", [h, x]), w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"], f"l{i}.ln2"
        )

    # Mean pooling over the mask, then L2 normalisation.
    m3 = b.op("Unsqueeze", [mask_f, b.const("axis_2", np.array([2], dtype=np.int64))])
    axis1 = b.const("axis_1", np.array([1], dtype=np.int64))
    summed = b.op("ReduceSum", [b.op("Mul", [x, m3]), axis1], keepdims=0)
    count = b.op("Max", [b.op("ReduceSum", [m3, axis1], keepdims=0), b.const("tiny", np.array(1e-9, np.float32))])
    pooled = b.op("Div", [summed, count])
    norm = b.op("ReduceL2", [pooled], axes=[1], keepdims=1)
    norm = b.op("Max", [norm, b.const("tiny_norm", np.array(1e-12, dtype=np.float32))])
    b.nodes.append(helper.make_node("Div", [pooled, norm], ["sentence_embedding"]))

    graph = helper.make_graph(
        b.nodes,
        "minilm_l6_sentence_embedding",
        [
            helper.make_tensor_value_info("input_ids", tp.INT64, ["batch", "seq"]),
            helper.make_tensor_value_info("attention_mask", tp.INT64, ["batch", "seq"]),
        ],
        [helper.make_tensor_value_info("sentence_embedding", tp.FLOAT, ["batch", HIDDEN])],
        b.inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="tollgate")
    model.ir_version = 8
    b.onnx.checker.check_model(model)
    return model
