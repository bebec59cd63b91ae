"""A cache that does not trust the disk: real artifacts (cpp and its bridge, torch_aot, hls4ml, zoo
models) damaged the ways the issue found them (truncated, a middle range zeroed, emptied, deleted,
another model's library in place) are detected by checksum before anything loads them, with a
warning, and rebuilt; the damaged prepare runs in a child process, so a regression that crashes
(SIGBUS, SIGSEGV, abort) fails the test instead of killing pytest.

Artifacts are built (or found) in the session cache by this process, copied into a private cache
for each case and damaged there: a library this process has loaded is never touched.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import yukti
from yukti.cache import ArtifactCache


def _truncate(path: Path) -> None:
    size = path.stat().st_size
    with open(path, "r+b") as handle:
        handle.truncate(size // 2)


def _zero_middle(path: Path) -> None:
    size = path.stat().st_size
    with open(path, "r+b") as handle:
        handle.seek(size // 3)
        handle.write(b"\0" * (size // 3))


def _empty(path: Path) -> None:
    open(path, "wb").close()


def _delete(path: Path) -> None:
    path.unlink()


DAMAGES: dict[str, Callable[[Path], None]] = {"truncated": _truncate, "zeroed": _zero_middle, "empty": _empty, "missing": _delete}

CHILD = r"""
import json, os, sys, warnings
import numpy as np
import yukti
from yukti.cache import CacheWarning

job = json.loads(sys.argv[1])
reports = []
for case in job["cases"]:
    os.environ["YUKTI_CACHE_DIR"] = case["root"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = yukti.zoo.get(job["zoo"])
        report = {"model_hash": model.hash, "root": case["root"]}
        if job.get("backend"):
            run = yukti.runner(job["backend"], model)
            np.save(case["output"], run(np.load(job["inputs"])))
            report.update(cache_hit=run.info["cache_hit"], call_path=run.info.get("call_path"))
    report["warnings"] = [str(w.message) for w in caught if issubclass(w.category, CacheWarning)]
    reports.append(report)
print(json.dumps(reports))
"""


def _run_child(job: dict[str, Any], timeout: float = 600) -> list[dict[str, Any]]:
    # the child imports yukti, runners and the zoo from where this process did
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    done = subprocess.run([sys.executable, "-c", CHILD, json.dumps(job)], capture_output=True, text=True, env=env,
                          timeout=timeout, check=False)
    assert done.returncode == 0, f"child exited {done.returncode} (negative: killed by that signal)\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    return json.loads(done.stdout.strip().splitlines()[-1])


def _entry_of(path: Path) -> Path:
    """The cache entry folder holding `path` (artifacts/<xx>/<key>/...)."""
    path = Path(path)
    while path.parent.parent.name != "artifacts":
        assert path != path.parent, f"{path} is in no cache entry"
        path = path.parent
    return path


def _clone(entries: list[Path], root: Path) -> ArtifactCache:
    """A private cache at `root` holding copies of `entries` (same keys)."""
    for entry in entries:
        shutil.copytree(entry, root / "artifacts" / entry.parent.name / entry.name)
    return ArtifactCache(root)


def _bridge_entry() -> Path:
    """The cache entry of the cpp bridge this process loaded."""
    from yukti.runners.cpp import bridge

    module = bridge.load()
    assert module is not None, bridge.error()
    return _entry_of(Path(module.__file__))


def _tiny_model() -> yukti.Model:
    weights = numpy_helper.from_array(np.arange(12, dtype=np.float32).reshape(4, 3) / 7, "W")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "W"], ["y"])], "tiny",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])], [weights])
    return yukti.load(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), name="tiny")


def _assert_rebuilt(report: dict[str, Any], entry: Path, damaged: str) -> None:
    assert report["cache_hit"] is False, report
    assert any(entry.name in w and damaged in w for w in report["warnings"]), report["warnings"]


requires_cpp = pytest.mark.skipif(not yukti.registry.backend_info("cpp").available, reason="no C++ compiler")


@requires_cpp
@pytest.mark.slow
def test_damaged_cpp_library_and_bridge_are_rebuilt_not_loaded(jet_dnn, tmp_path):
    run = yukti.runner("cpp", jet_dnn)
    assert run.info["call_path"] == "bridge"
    x = jet_dnn.data.X[:64]
    expected = run(x)
    entry, zoo_entry, bridge = Path(run.info["artifact_path"]), Path(jet_dnn.meta["artifact"]), _bridge_entry()
    other_library = Path(yukti.runner("cpp", _tiny_model()).info["artifact_path"]) / "model.so"
    np.save(tmp_path / "x.npy", x)

    # The bridge is loaded once per process, so its case comes first; the CPython bridge is
    # verified like any library, through compile_library.
    root = tmp_path / "bridge_zeroed"
    _clone([entry, zoo_entry, bridge], root)
    (library,) = [p for p in (root / "artifacts" / bridge.parent.name / bridge.name).iterdir() if p.name.startswith("yukti_bridge")]
    _zero_middle(library)
    cases = [{"root": str(root), "output": str(root / "y.npy"), "damage": "bridge zeroed", "entry": bridge, "file": library.name}]
    damages = {**DAMAGES, "another model's library": lambda path: shutil.copyfile(other_library, path)}
    for name, damage in damages.items():
        root = tmp_path / name.replace(" ", "_").replace("'", "")
        _clone([entry, zoo_entry, bridge], root)
        damage(root / "artifacts" / entry.parent.name / entry.name / "model.so")
        cases.append({"root": str(root), "output": str(root / "y.npy"), "damage": name, "entry": entry, "file": "model.so"})

    job = {"zoo": "jet_dnn", "backend": "cpp", "inputs": str(tmp_path / "x.npy"),
           "cases": [{"root": c["root"], "output": c["output"]} for c in cases]}
    reports = _run_child(job)
    for case, report in zip(cases, reports, strict=True):
        assert len(report["warnings"]) == 1, (case["damage"], report)  # the damaged entry's, no other
        assert case["entry"].name in report["warnings"][0] and case["file"] in report["warnings"][0], (case["damage"], report)
        assert report["cache_hit"] is (case["damage"] == "bridge zeroed"), case["damage"]  # the model's library
        assert report["call_path"] == "bridge", case["damage"]
        np.testing.assert_array_equal(np.load(case["output"]), expected, err_msg=case["damage"])
        # the rebuilt entry verifies, and nothing is left in staging
        cache = ArtifactCache(case["root"])
        assert cache.lookup(case["entry"].name) is not None
        assert list(cache.staging_root.iterdir()) == []


@requires_cpp
def test_compiler_that_writes_nothing_is_a_compile_error_and_commits_nothing(monkeypatch, tmp_path):
    from yukti.runners.cpp.compiler import CompileError

    monkeypatch.setenv("YUKTI_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("CXX", "/bin/true")  # exits 0, writes nothing
    with pytest.raises(CompileError, match=r"exited 0 but wrote no model\.so.*/bin/true"):
        yukti.runner("cpp", _tiny_model())
    assert ArtifactCache(tmp_path).entries() == []
    assert list((tmp_path / "tmp").iterdir()) == []


@requires_cpp
def test_library_that_does_not_load_is_a_compile_error_and_commits_nothing(monkeypatch, tmp_path):
    from yukti.runners.cpp.compiler import CompileError

    fake = tmp_path / "fake-c++"
    # exits 0 and writes text where the library should be (the file after -o)
    fake.write_text('#!/bin/sh\nprev=""\nfor a; do [ "$prev" = "-o" ] && echo "not an ELF file" > "$a"; prev="$a"; done\nexit 0\n')
    fake.chmod(0o755)
    monkeypatch.setenv("YUKTI_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("CXX", str(fake))
    with pytest.raises(CompileError, match="does not load"):
        yukti.runner("cpp", _tiny_model())
    assert ArtifactCache(tmp_path / "cache").entries() == []


@pytest.mark.slow
def test_damaged_zoo_model_is_retrained(jet_dnn, tmp_path):
    entry = Path(jet_dnn.meta["artifact"])
    root = tmp_path / "cache"
    _clone([entry], root)
    _zero_middle(root / "artifacts" / entry.parent.name / entry.name / "weights.pt")
    (report,) = _run_child({"zoo": "jet_dnn", "cases": [{"root": str(root)}]})
    assert any(entry.name in w and "weights.pt" in w for w in report["warnings"]), report
    assert report["model_hash"] == jet_dnn.hash  # retrained deterministically: the same network
    assert ArtifactCache(root).lookup(entry.name) is not None


@pytest.mark.slow
def test_damaged_torch_aot_package_is_rebuilt_not_loaded(jet_dnn, tmp_path):
    if not yukti.registry.backend_info("torch_aot").available:
        pytest.skip(yukti.registry.backend_info("torch_aot").reason)
    run = yukti.runner("torch_aot", jet_dnn)  # the contract tests' package (same key) when they ran first
    x = jet_dnn.data.X[:64]
    expected = run(x)
    np.save(tmp_path / "x.npy", x)
    entry = _entry_of(Path(run.info["artifact_path"]))
    root = tmp_path / "cache"
    _clone([entry, Path(jet_dnn.meta["artifact"])], root)
    _zero_middle(root / "artifacts" / entry.parent.name / entry.name / "model.pt2")
    (report,) = _run_child({"zoo": "jet_dnn", "backend": "torch_aot", "inputs": str(tmp_path / "x.npy"),
                            "cases": [{"root": str(root), "output": str(root / "y.npy")}]})
    _assert_rebuilt(report, entry, "model.pt2")
    np.testing.assert_allclose(np.load(root / "y.npy"), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore")  # hls4ml's and qonnx's own
def test_damaged_hls4ml_library_is_rebuilt_not_loaded(jet_dnn, tmp_path):
    if not yukti.registry.backend_info("hls4ml").available:
        pytest.skip(yukti.registry.backend_info("hls4ml").reason)
    run = yukti.runner("hls4ml", jet_dnn)  # test_hls4ml's library (same key) when it ran first
    x = jet_dnn.data.X[:64]
    expected = run(x)
    np.save(tmp_path / "x.npy", x)
    entry = Path(run.info["artifact_path"])
    library = Path(run.info["library"]).relative_to(entry)
    root = tmp_path / "cache"
    _clone([entry, Path(jet_dnn.meta["artifact"])], root)
    _truncate(root / "artifacts" / entry.parent.name / entry.name / library)
    (report,) = _run_child({"zoo": "jet_dnn", "backend": "hls4ml", "inputs": str(tmp_path / "x.npy"),
                            "cases": [{"root": str(root), "output": str(root / "y.npy")}]})
    _assert_rebuilt(report, entry, library.name)
    np.testing.assert_array_equal(np.load(root / "y.npy"), expected)
