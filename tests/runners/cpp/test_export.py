"""`yukti export --backend cpp`: the sources build with cmake alone and agree with ONNX Runtime;
the same build under AddressSanitizer + UBSan runs the zoo cleanly."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import yukti
from yukti.cli import main

pytestmark = pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake is not installed")


def _build(source: Path, build: Path, *options: str) -> Path:
    subprocess.run(["cmake", "-S", str(source), "-B", str(build), *options], check=True, capture_output=True, text=True)
    done = subprocess.run(["cmake", "--build", str(build), "-j", "2"], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    return next(build.glob("*_example"))


def _run(program: Path, x: np.ndarray | list[np.ndarray], n_out: int, tmp: Path, threads: int = 1) -> np.ndarray:
    """The example program reads each input's whole batch in turn from one file."""
    arrays = x if isinstance(x, list) else [x]
    (tmp / "in.bin").write_bytes(b"".join(np.ascontiguousarray(a, np.float32).tobytes() for a in arrays))
    done = subprocess.run([str(program), str(tmp / "in.bin"), str(len(arrays[0])), str(tmp / "out.bin"), str(threads)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return np.frombuffer((tmp / "out.bin").read_bytes(), np.float32).reshape(len(arrays[0]), n_out)


@pytest.mark.parametrize("name", ["jet_dnn", "cluster_cnn"])
def test_export_builds_with_cmake_and_matches_onnxruntime(name, zoo_models, tmp_path, capsys):
    model = zoo_models[name]
    assert main(["export", name, "--backend", "cpp", "-o", str(tmp_path / "src")]) == 0
    files = sorted(p.name for p in (tmp_path / "src").iterdir())
    assert files == sorted(["CMakeLists.txt", "main.cpp", f"{name}.cpp", f"{name}.hpp"])
    # the header declares the API (in the model's namespace) and defines no weights: the .cpp does
    header = (tmp_path / "src" / f"{name}.hpp").read_text()
    assert f"namespace yukti_{name} {{" in header and "inline int64_t infer_checked(" in header
    assert "static constexpr float" not in header
    assert "alignas(64) static constexpr float" in (tmp_path / "src" / f"{name}.cpp").read_text()
    assert f"add_library(yukti::{name} ALIAS {name})" in (tmp_path / "src" / "CMakeLists.txt").read_text()
    program = _build(tmp_path / "src", tmp_path / "build")
    x = model.data.X[:97]  # more than one tile
    n_out = model.outputs[0].shape[1]
    expected = yukti.runner("onnxruntime", model)(x)
    np.testing.assert_allclose(_run(program, x, n_out, tmp_path), expected, atol=1e-5 if name == "jet_dnn" else 1e-4)


@pytest.mark.slow
def test_zoo_under_address_and_undefined_sanitizers(zoo_models, tmp_path):
    """The generated code, built with -fsanitize=address,undefined, runs every zoo model at batch
    1, a partial tile and several tiles (the last also split over two threads) without a sanitizer
    report (any report aborts: exit != 0)."""
    for name, model in zoo_models.items():
        if name.endswith("_onnx"):
            continue
        src = tmp_path / name
        yukti.runner_class("cpp").export(model, src)
        program = _build(src, tmp_path / f"{name}-asan", "-DYUKTI_SANITIZE=ON", "-DCMAKE_BUILD_TYPE=Debug")
        n_out = int(np.prod(model.outputs[0].shape[1:]))
        reference = yukti.runner("reference", model)
        for batch in (1, 5, 200):
            x = [a[:batch] for a in model.data.inputs] if model.data.inputs else model.data.X[:batch]
            expected = reference(x).reshape(batch, n_out)
            for threads in (1, 2) if batch == 200 else (1,):
                np.testing.assert_allclose(_run(program, x, n_out, tmp_path, threads) / np.maximum(np.abs(expected), 1),
                                           expected / np.maximum(np.abs(expected), 1), atol=1e-4)


def test_export_refuses_an_unknown_backend_export(tmp_path, capsys, jet_dnn):
    assert main(["export", "jet_dnn", "--backend", "onnxruntime", "-o", str(tmp_path)]) == 2
    assert "has no standalone export" in capsys.readouterr().out


def test_export_name_sets_files_target_and_symbols(jet_dnn, tmp_path):
    """--name renames an export (two models of one name can then link into one program); any text
    becomes an identifier first, and a name CMake reserves for its own targets gets a suffix."""
    from yukti.runners.cpp.export import export_name

    assert main(["export", "jet_dnn", "--backend", "cpp", "--name", "l1 trigger/jets", "-o", str(tmp_path / "a")]) == 0
    stem = export_name(jet_dnn, "l1 trigger/jets")
    assert stem.startswith("l1_trigger_jets") and stem.isidentifier()
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == sorted(["CMakeLists.txt", "main.cpp", f"{stem}.cpp", f"{stem}.hpp"])
    assert f"namespace yukti_{stem} {{" in (tmp_path / "a" / f"{stem}.hpp").read_text()
    assert f'#include "{stem}.hpp"' in (tmp_path / "a" / f"{stem}.cpp").read_text()
    assert "l1 trigger/jets" not in (tmp_path / "a" / "CMakeLists.txt").read_text()
    assert export_name(jet_dnn, "test") == "test_model" and export_name(jet_dnn) == "jet_dnn"


def test_export_march_sets_the_blocking_and_the_build_target(jet_dnn, tmp_path):
    """--march x86-64-v3 (any AVX2 machine): the kernels are generated 8 lanes wide, and the CMake
    variable of this model (one per model: exports for different targets link together) says so;
    a value that is not a -march= word is refused before anything is written."""
    assert main(["export", "jet_dnn", "--backend", "cpp", "--march", "x86-64-v3", "-o", str(tmp_path / "a")]) == 0
    cmake = (tmp_path / "a" / "CMakeLists.txt").read_text()
    assert 'set(YUKTI_jet_dnn_MARCH "x86-64-v3"' in cmake
    assert "vf8" in (tmp_path / "a" / "jet_dnn.cpp").read_text() and "vf16" not in (tmp_path / "a" / "jet_dnn.cpp").read_text()
    assert main(["export", "jet_dnn", "--backend", "cpp", "--march", "x; rm -rf /", "-o", str(tmp_path / "b")]) != 0
    assert not (tmp_path / "b").exists() or not any((tmp_path / "b").iterdir())
