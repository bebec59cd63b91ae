"""Names from a model file never become code: they become derived identifiers or escaped literals.

A model file is untrusted input. Its strings (node, tensor, graph names, doc strings) reach
generated code in several backends: our generated C++ (runners/cpp), the Python that torch.fx
writes for an onnx2torch module, the C++ hls4ml writes for a converted model. Rather than looking
for dangerous characters (a blacklist always misses one: a line terminator a compiler honours, a
backslash that continues a comment, a directive), every name that may reach code is *derived*:

- `identifier(raw)`: `[A-Za-z0-9_]` only, starting with a letter, no `__`, bounded length; a name
  that is already such an identifier is kept as it is, so ordinary models read the same;
- `NameTable`: the same mapping made unique within one scope (two raw names never share one);
- `c_string_literal(text)`: a C/C++ string literal whose characters are printable ASCII other
  than backslash, quote and question mark (no trigraphs); every other byte is an octal escape;
- `sanitized_onnx(proto)`: a copy of an ONNX model whose every name is such an identifier and
  whose free-text fields are empty, for converters that turn names into code.
"""

from __future__ import annotations

import hashlib
import keyword
import re

import onnx

IDENTIFIER = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")
C_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")  # what a C compiler takes (use fullmatch)
MAX_IDENTIFIER = 64
# Words an identifier must not be, in the languages names are written into (C/C++ for runners/cpp
# and hls4ml, Python for torch.fx): a node named `class` would otherwise become `self.class`.
RESERVED_WORDS = frozenset(keyword.kwlist) | frozenset(keyword.softkwlist) | frozenset("""
    alignas alignof and and_eq asm auto bitand bitor bool break case catch char char8_t char16_t char32_t class
    compl concept const consteval constexpr constinit const_cast continue co_await co_return co_yield decltype default
    delete do double dynamic_cast else enum explicit export extern false float for friend goto if inline int long
    mutable namespace new noexcept not not_eq nullptr operator or or_eq private protected public register
    reinterpret_cast requires restrict return short signed sizeof static static_assert static_cast struct switch
    template this thread_local throw true try typedef typeid typename union unsigned using virtual void volatile
    wchar_t while xor xor_eq main self NULL
""".split())
# Characters a string literal may hold as they are: printable ASCII but the escape character, the
# delimiters and '?' (which could start a trigraph under old standards).
_LITERAL_SAFE = frozenset(chr(c) for c in range(0x20, 0x7F)) - {"\\", '"', "'", "?"}


def is_identifier(text: str) -> bool:
    """True when `text` is already a safe identifier: `[A-Za-z][A-Za-z0-9_]*`, no `__`, bounded, and
    not a keyword of C++ or Python (RESERVED_WORDS)."""
    return (bool(IDENTIFIER.match(text)) and "__" not in text and len(text) <= MAX_IDENTIFIER
            and text not in RESERVED_WORDS)


def identifier(raw: str, *, fallback: str = "v") -> str:
    """A safe identifier derived from `raw` (kept as it is when it already is one).

    Any other character becomes `_`, runs of `_` collapse, a leading non-letter gets `fallback`
    in front, and a name that had to change or be cut gets a short hash of the raw name so that
    different raw names rarely meet (`NameTable` makes them unique for certain)."""
    if is_identifier(raw):
        return raw
    text = re.sub(r"[^A-Za-z0-9]+", "_", raw).strip("_")
    if not text or not text[0].isalpha():
        text = f"{fallback}_{text}" if text else fallback
    digest = hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    text = text[: MAX_IDENTIFIER - len(digest) - 1].rstrip("_")
    return f"{text}_{digest}"


class NameTable:
    """Raw names -> identifiers unique within one scope, stable for repeated lookups.

    `reserved` names (the generator's own identifiers) are never handed out."""

    def __init__(self, reserved: set[str] | frozenset[str] = frozenset(), *, fallback: str = "v") -> None:
        self._by_raw: dict[str, str] = {}
        self._taken: set[str] = set(reserved)
        self._fallback = fallback

    def __call__(self, raw: str) -> str:
        """The identifier of `raw`: the same one every time it is asked for."""
        found = self._by_raw.get(raw)
        return found if found is not None else self.unique(raw)

    def unique(self, raw: str) -> str:
        """A new identifier for `raw`, distinct from every other one handed out (for things that
        must differ even when their raw names are equal, such as ONNX node names)."""
        base = identifier(raw, fallback=self._fallback)
        name, suffix = base, 1
        while name in self._taken:
            name = f"{base[: MAX_IDENTIFIER - 8]}_{suffix}"
            suffix += 1
        self._taken.add(name)
        self._by_raw.setdefault(raw, name)
        return name

    def raw_names(self) -> dict[str, str]:
        """identifier -> the raw name it stands for."""
        return {ident: raw for raw, ident in self._by_raw.items()}


def c_string_literal(text: str) -> str:
    """`text` (UTF-8) as a C/C++ string literal that holds no line terminator, backslash-newline,
    quote, trigraph or non-ASCII character: everything outside the safe set is an octal escape."""
    out = []
    for byte in text.encode("utf-8", "surrogatepass"):
        char = chr(byte)
        out.append(char if char in _LITERAL_SAFE else f"\\{byte:03o}")
    return '"' + "".join(out) + '"'


def safe_comment(text: str) -> str:
    """Text fit for a `//` comment of generated code: printable ASCII without backslash (which
    would continue the comment onto the next line); anything else becomes '_' (not '?': no trigraph can form)."""
    return "".join(c if c in _LITERAL_SAFE or c in "'\"" else "_" for c in text)


_INVISIBLE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff]")


def printable(text: str) -> str:
    """`text` for a terminal or a log: control characters (ESC sequences, CR, NUL...), bidirectional
    overrides and invisible characters become visible escapes such as `\\x1b`, so a name from a
    model file can neither drive the terminal nor hide or reorder what is printed around it."""
    return _INVISIBLE.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


def sanitized_onnx(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of `model` in which every value, node and graph name is a unique safe identifier and
    every doc string, producer and metadata field is empty. Computation and order are unchanged;
    names that already are safe identifiers stay the same. Subgraphs (If/Loop bodies) are renamed
    with the same table: ONNX lets them read outer-scope values by name."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    values = NameTable()
    nodes = NameTable(fallback="node")
    _rename_graph(copy.graph, values, nodes)
    copy.doc_string = ""
    copy.producer_name = "yukti"
    copy.producer_version = ""
    copy.domain = ""
    del copy.metadata_props[:]
    for function in copy.functions:  # local functions: bodies renamed like graphs
        function.doc_string = ""
        for node in function.node:
            _rename_node(node, values, nodes)
        function.input[:] = [values(n) if n else n for n in function.input]
        function.output[:] = [values(n) if n else n for n in function.output]
    return copy


def _rename_node(node: onnx.NodeProto, values: NameTable, nodes: NameTable) -> None:
    node.name = nodes.unique(node.name or node.op_type)
    node.doc_string = ""
    node.input[:] = [values(n) if n else n for n in node.input]  # "" marks an omitted optional input
    node.output[:] = [values(n) if n else n for n in node.output]
    for attribute in node.attribute:
        attribute.doc_string = ""
        if attribute.HasField("g"):
            _rename_graph(attribute.g, values, nodes)
        for graph in attribute.graphs:
            _rename_graph(graph, values, nodes)


def _rename_graph(graph: onnx.GraphProto, values: NameTable, nodes: NameTable) -> None:
    graph.name = identifier(graph.name or "graph")
    graph.doc_string = ""
    for value in (*graph.input, *graph.output, *graph.value_info):
        value.name = values(value.name)
        value.doc_string = ""
        for dim in value.type.tensor_type.shape.dim:
            if dim.HasField("dim_param"):
                dim.dim_param = identifier(dim.dim_param, fallback="dim")
    for tensor in graph.initializer:
        tensor.name = values(tensor.name)
        tensor.doc_string = ""
    for sparse in graph.sparse_initializer:
        sparse.values.name = values(sparse.values.name)
    for node in graph.node:
        _rename_node(node, values, nodes)
