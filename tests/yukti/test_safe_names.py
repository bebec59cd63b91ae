"""yukti.safe_names: identifiers derived from any text, literals that round-trip, sanitized ONNX."""

from __future__ import annotations

import re
import shutil
import subprocess

import numpy as np
import onnx
import pytest
from onnx import helper

from hostile_names import PAYLOADS, hostile_dense_model, inputs_for
from yukti.safe_names import (RESERVED_WORDS, NameTable, c_string_literal, identifier, is_identifier, safe_comment,
                              sanitized_onnx)

SAFE = re.compile(r"[A-Za-z][A-Za-z0-9_]*")


@pytest.mark.parametrize("raw", PAYLOADS, ids=range(len(PAYLOADS)))
def test_identifier_is_safe_for_every_payload(raw: str) -> None:
    ident = identifier(raw)
    assert SAFE.fullmatch(ident) and "__" not in ident and len(ident) <= 64 and ident not in RESERVED_WORDS
    assert is_identifier(ident)


def test_ordinary_names_are_kept_and_keywords_are_not() -> None:
    for name in ("dense_1", "fc2", "input", "Conv2D_3", "x"):
        assert identifier(name) == name
    for word in ("class", "int", "def", "lambda", "main", "self", "None", "asm"):
        assert identifier(word) != word and identifier(word).startswith(word)


def test_name_table_never_hands_out_one_identifier_twice() -> None:
    table = NameTable(reserved={"in0"})
    colliding = ["a.b", "a_b", "a-b", "a b", "a\nb", "in0", "in0"]
    idents = [table(raw) for raw in colliding]
    assert idents[-1] == idents[-2]  # the same raw name, the same identifier
    assert len(set(idents[:-1])) == len(colliding) - 1
    assert "in0" not in idents
    assert idents[1] == "a_b"  # already an identifier: kept
    assert table.unique("a_b") not in idents  # unique() differs even for a known raw name
    assert {table.raw_names()[i] for i in idents} == set(colliding)


def test_safe_comment_has_no_line_break_backslash_or_trigraph() -> None:
    for raw in PAYLOADS:
        text = safe_comment(raw)
        assert all(0x20 <= ord(c) < 0x7F and c not in "\\?" for c in text), repr(text)


@pytest.mark.skipif(shutil.which("c++") is None and shutil.which("g++") is None, reason="no C++ compiler here")
def test_c_string_literals_round_trip_through_a_compiler(tmp_path) -> None:
    """Each literal, compiled, holds exactly the UTF-8 bytes of its text, and the literal itself is
    printable ASCII without a backslash-newline: nothing can end it or start a directive."""
    texts = PAYLOADS + ["", "\\", "??=", "\0", "tab\there"]
    for text in texts:
        literal = c_string_literal(text)
        assert all(0x20 <= ord(c) < 0x7F for c in literal) and "??" not in literal
    program = ["#include <cstdio>", "int main() {"]
    for text in texts:
        program.append(f"  {{ static const char s[] = {c_string_literal(text)}; std::fwrite(s, 1, sizeof s - 1, stdout); "
                       "std::fputc(0xff, stdout); }")  # 0xff never occurs in UTF-8: a safe separator
    program += ["  return 0;", "}"]
    (tmp_path / "names.cpp").write_text("\n".join(program) + "\n")
    cxx = shutil.which("c++") or shutil.which("g++")
    subprocess.run([cxx, "-std=c++17", "-trigraphs", "-Wall", "names.cpp", "-o", "names"], cwd=tmp_path, check=True,
                   capture_output=True)
    out = subprocess.run([str(tmp_path / "names")], capture_output=True, check=True).stdout
    assert out.split(b"\xff")[:-1] == [t.encode("utf-8", "surrogatepass") for t in texts]


@pytest.mark.parametrize("raw", PAYLOADS[::7], ids=range(len(PAYLOADS[::7])))
def test_sanitized_onnx_renames_every_field_and_computes_the_same(raw: str) -> None:
    from onnx.reference import ReferenceEvaluator

    model = hostile_dense_model(raw)
    clean = sanitized_onnx(model)
    onnx.checker.check_model(clean)
    graph = clean.graph
    names = [graph.name, *(n.name for n in graph.node), *(v.name for v in (*graph.input, *graph.output)),
             *(t.name for t in graph.initializer), *(i for n in graph.node for i in (*n.input, *n.output) if i)]
    assert all(is_identifier(n) for n in names), [n for n in names if not is_identifier(n)]
    assert len({n.name for n in graph.node}) == len(graph.node)
    assert not clean.doc_string and not graph.doc_string and not clean.metadata_props and not clean.domain
    assert all(not n.doc_string for n in graph.node)
    feeds = inputs_for(model)
    expected = ReferenceEvaluator(model).run(None, feeds)[0]
    renamed = {clean.graph.input[i].name: feeds[v.name] for i, v in enumerate(model.graph.input)}
    np.testing.assert_array_equal(ReferenceEvaluator(clean).run(None, renamed)[0], expected)


def test_sanitized_onnx_makes_duplicate_node_names_unique() -> None:
    nodes = [helper.make_node("Relu", ["x"], ["h"], name="same"), helper.make_node("Relu", ["h"], ["y"], name="same")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", 1, ["n", 2])],
                              [helper.make_tensor_value_info("y", 1, ["n", 2])])
    clean = sanitized_onnx(helper.make_model(graph))
    assert [n.name for n in clean.graph.node][0] == "same"
    assert len({n.name for n in clean.graph.node}) == 2
