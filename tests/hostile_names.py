"""A corpus of hostile names and a builder that puts one into every string field of an ONNX model.

Each payload tries to become code somewhere a name could land: a C++ statement or file-scope
initializer (after a line terminator, or by continuing a `//` comment with a backslash), a
preprocessor directive, a CMake command, a Python statement in torch.fx's generated source. Each
payload that would execute creates the file named by CANARY; tests assert it never appears.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

CANARY = "YUKTI_CANARY_PWNED"
_SH = f"touch {CANARY}"

# Line terminators a compiler, CMake or Python honours (or might): LF, CR, CRLF, FF, VT, NEL, LS, PS.
LINE_TERMINATORS = ["\n", "\r", "\r\n", "\f", "\v", "\x85", "\u2028", "\u2029"]

_CPP_STATEMENT = f'}} int yukti_pwn = std::system("{_SH}"); void yukti_pwn_f() {{'
_CPP_FILE_SCOPE = f'static int yukti_pwn2 = __builtin_printf("x") + system("{_SH}");'
_CMAKE = f'execute_process(COMMAND {_SH})'
_PY = f'__import__("os").system("{_SH}")'

PAYLOADS: list[str] = [
    *(f"x{t}{_CPP_STATEMENT}{t}//" for t in LINE_TERMINATORS),
    *(f"x{t}{_CPP_FILE_SCOPE}{t}" for t in LINE_TERMINATORS),
    *(f"x{t}{_CMAKE}{t}#" for t in LINE_TERMINATORS),
    f'x")\n{_CMAKE}\nmessage("',  # closes a quoted CMake argument
    f"x]=]\n{_CMAKE}\n#[=[",  # closes a bracket argument/comment
    "x${CMAKE_COMMAND}$ENV{HOME}$(touch " + CANARY + ")`touch " + CANARY + "`",
    f'x"){_PY} #',  # torch.fx: getattr(self, "...")
    f"x'){_PY} #",
    f'x")\n{_PY}\ny=("',
    f"x\\\n{_CPP_FILE_SCOPE}",  # backslash-newline continues a // comment onto the next line
    f"x??/\n{_CPP_FILE_SCOPE}",  # a trigraph backslash (C++ before 17, or -trigraphs)
    '#include "/etc/passwd"',
    "x\n#include </etc/passwd>\n",
    "x\n#define float double\n",
    "x\n#pragma GCC poison infer\n",
    "x */ int z; /* ",
    "x\\",
    "x\\\\\\",
    '"',
    "'",
    "\\x41\\101\\u0041",
    "a;b&c|d<e>f",
    "\x00nul\x00",
    "\x1b]52;c;cHduZWQ=\x07\x1b[31mred",  # terminal escapes (OSC 52 clipboard, colour)
    "é名前\u202eevil\u200b🙂",
    "\ud7ff\ue000\U0010ffff",
    "in0", "out0", "t0", "arena", "nb", "batch", "kTile", "w0_x", "infer", "main", "int", "class", "__asm__",
    "_Reserved", "__x", "1abc", " ", "a" * 5000,
]


def _tensor(name: str, dims: list) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, dims)


def hostile_dense_model(payload: str, *, seed: int = 0) -> onnx.ModelProto:
    """A two-input dense net (MatMul + Add + Relu, then Gemm + Softmax) whose every string field
    holds `payload`: graph, node, tensor, input/output and initializer names (each made distinct
    by a suffix that is itself hostile-safe to tell apart), doc strings, producer, domain,
    metadata and the symbolic batch dimension."""
    rng = np.random.default_rng(seed)
    p = payload
    names = {key: f"{p}{key}" for key in ("a", "b", "W1", "B1", "h", "hb", "hr", "W2", "B2", "logits", "out",
                                          "concat")}
    inits = [
        numpy_helper.from_array(rng.standard_normal((7, 6)).astype(np.float32), names["W1"]),
        numpy_helper.from_array(rng.standard_normal(6).astype(np.float32), names["B1"]),
        numpy_helper.from_array(rng.standard_normal((6, 3)).astype(np.float32), names["W2"]),
        numpy_helper.from_array(rng.standard_normal(3).astype(np.float32), names["B2"]),
    ]
    for init in inits:
        init.doc_string = p
    nodes = [
        helper.make_node("Concat", [names["a"], names["b"]], [names["concat"]], name=f"{p}n0", axis=1, doc_string=p),
        helper.make_node("MatMul", [names["concat"], names["W1"]], [names["h"]], name=f"{p}n1", doc_string=p),
        helper.make_node("Add", [names["h"], names["B1"]], [names["hb"]], name=p, doc_string=p),  # the bare payload too
        helper.make_node("Relu", [names["hb"]], [names["hr"]], name=f"{p}n3", doc_string=p),
        helper.make_node("Gemm", [names["hr"], names["W2"], names["B2"]], [names["logits"]], name=f"{p}n4"),
        helper.make_node("Softmax", [names["logits"]], [names["out"]], name=f"{p}n5", axis=-1),
    ]
    batch = p if p.strip() and "\x00" not in p else "batch"
    inputs = [_tensor(names["a"], [batch, 4]), _tensor(names["b"], [batch, 3])]
    for value in inputs:
        value.doc_string = p
    graph = helper.make_graph(nodes, p or "g", inputs, [_tensor(names["out"], [batch, 3])], inits, doc_string=p)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name=p, producer_version=p,
                              doc_string=p, domain=p.encode("utf-8", "surrogatepass").decode("utf-8", "replace"))
    helper.set_model_props(model, {p: p, "k": p})
    return model


def inputs_for(model: onnx.ModelProto, batch: int = 5, seed: int = 1) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {v.name: rng.standard_normal((batch, v.type.tensor_type.shape.dim[1].dim_value)).astype(np.float32)
            for v in model.graph.input}
