"""A model file's names never become code in the generated C++, its CMake project or example program.

Every payload of the hostile corpus (tests/hostile_names.py) is put in every string field of a
model at once; the model must compile, compute the reference's answer, leave no canary file, and
the generated sources must be printable ASCII lines in which the payload does not occur.
"""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import yukti
from hostile_names import CANARY, PAYLOADS, hostile_dense_model, inputs_for

pytestmark = pytest.mark.skipif(not yukti.registry.backend_info("cpp").available, reason="cpp backend unavailable (no C++ compiler)")


STRING_LITERAL = re.compile(r'"(?:[^"\\\n]|\\.)*"')


def _printable_lines(text: str) -> bool:
    return all(0x20 <= ord(c) < 0x7F or c == "\n" for c in text) and "\\\n" not in text


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)  # a payload that ran would leave its canary here
    return tmp_path


@pytest.mark.slow
@pytest.mark.parametrize("payload", PAYLOADS, ids=range(len(PAYLOADS)))
def test_cpp_runner_with_hostile_names(payload: str, in_tmp: Path) -> None:
    from yukti.runners.cpp import codegen, ir

    proto = hostile_dense_model(payload)
    model = yukti.load(proto.SerializeToString())
    feeds = inputs_for(proto)
    expected = yukti.runner("reference", model)(feeds)
    runner = yukti.runner("cpp", model)
    np.testing.assert_allclose(runner(feeds), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(runner(list(feeds.values())), expected, rtol=1e-5, atol=1e-6)

    source = codegen.generate(ir.from_onnx(model.onnx), input_names=tuple(s.name for s in model.inputs),
                              output_names=tuple(s.name for s in model.outputs))
    assert _printable_lines(source.header) and _printable_lines(source.body)
    if len(payload) > 3 and payload.isascii() and re.search(r"[^A-Za-z0-9_]", payload):  # only inside string literals
        code = STRING_LITERAL.sub('""', source.body)
        assert payload not in code and payload not in source.header
    # the raw names are there, as string literals that compile back to the exact bytes
    library = ctypes.CDLL(os.path.join(runner.info["artifact_path"], "model.so"))
    for symbol, specs in (("input_name", model.inputs), ("output_name", model.outputs)):
        function = getattr(library, symbol)
        function.restype, function.argtypes = ctypes.c_char_p, [ctypes.c_int64]
        assert [function(i) for i in range(len(specs))] == [s.name.encode("utf-8", "surrogatepass").split(b"\0")[0] for s in specs]
        assert function(len(specs)) is None and function(-1) is None
    assert not (in_tmp / CANARY).exists()


def _cmake_available() -> bool:
    return shutil.which("cmake") is not None


# Payloads aimed at CMake and at the example program, plus line terminators and backslashes.
EXPORT_PAYLOADS = [p for p in PAYLOADS if "execute_process" in p or "$" in p or "\\" in p][:8] + ["\u2028", '"']


@pytest.mark.slow
@pytest.mark.skipif(not _cmake_available(), reason="cmake is not installed")
@pytest.mark.parametrize("payload", EXPORT_PAYLOADS, ids=range(len(EXPORT_PAYLOADS)))
def test_export_with_hostile_names_builds_with_cmake_and_runs_nothing(payload: str, in_tmp: Path) -> None:
    """The model's file name is hostile too (it becomes the model name, hence the CMake project)."""
    proto = hostile_dense_model(payload)
    stem = payload.replace("/", "_").replace("\0", "_")[:200] or "empty"
    model_file = in_tmp / f"{stem}.onnx"
    model_file.write_bytes(proto.SerializeToString())
    model = yukti.load(model_file)
    out = in_tmp / "export"
    from yukti.registry import runner_class

    written = runner_class("cpp").export(model, out)
    for path in written:
        assert _printable_lines(path.read_text()), path.name
    build = out / "build"
    for command in (["cmake", "-S", str(out), "-B", str(build), "-DYUKTI_NATIVE=OFF"], ["cmake", "--build", str(build), "-j", "2"]):
        done = subprocess.run(command, cwd=in_tmp, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout + done.stderr
    assert not (in_tmp / CANARY).exists() and not (out / CANARY).exists() and not (build / CANARY).exists()
    example = next(p for p in build.iterdir() if p.name.endswith("_example") and os.access(p, os.X_OK))
    feeds = inputs_for(proto, batch=3)
    np.concatenate([feeds[s.name].reshape(-1) for s in model.inputs]).astype(np.float32).tofile(in_tmp / "in.bin")
    done = subprocess.run([str(example), str(in_tmp / "in.bin"), "3", str(in_tmp / "out.bin")], cwd=in_tmp,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    expected = yukti.runner("reference", model)(feeds)
    np.testing.assert_allclose(np.fromfile(in_tmp / "out.bin", np.float32).reshape(expected.shape), expected, rtol=1e-5, atol=1e-6)
    assert not (in_tmp / CANARY).exists()
