"""ModelGraph -> hls4ml project with a batched entry point -> emulation library in the artifact cache.

hls4ml's `ModelGraph.predict()` loops over samples in Python (~125 us each); we append a
`yukti_batch_float` loop to the generated bridge so that a whole batch is one ctypes call. The
library is built by hls4ml's own build_lib.sh, which hard-codes `CC=g++` (it ignores $CXX): the
g++ version is part of the cache key, and the backend is unavailable without g++.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

from yukti.runners.hls4ml.config import hls_config
from yukti.runners.hls4ml.frontend import Frontend, quiet
from yukti.runners.hls4ml.onnx_rewrite import onnx_rewrite_key
from yukti.runners.hls4ml.softmax import tune_softmax
from yukti.cache import ArtifactCache, CacheEntry, check_shared_library
from yukti.errors import UnsupportedModelError, YuktiError
from yukti.model import Model
from yukti.runner import package_version
from yukti.safe_names import C_IDENTIFIER
from yukti.toolchain import compiler_version

COMPILER = "g++"  # what build_lib.sh runs, whatever $CXX says
PROJECT = "myproject"
META = "yukti_hls.json"  # written next to the project: library path, shapes, layer types, timings
_RUNNER_REVISION = 6  # bump when the generated artifact changes: part of the cache key


def compiler() -> str:
    """The version line of the g++ build_lib.sh uses ("" when there is none): part of the cache key."""
    return compiler_version(COMPILER)


def convert(model: Model, frontend: Frontend, options: dict[str, Any], output_dir: Path) -> Any:
    """The hls4ml ModelGraph of `model` (not written, not compiled). Conversion failures become
    UnsupportedModelError with hls4ml's message."""
    kwargs = {"output_dir": str(output_dir), "project_name": PROJECT, "backend": options["hls_backend"],
              "io_type": options["io_type"],
              # weights compiled into the library: with .txt weights the emulation reads them at run
              # time from an absolute path baked in at compile time, which the cache's rename breaks
              "write_weights_txt": False}
    try:
        with quiet() as buffer:
            hls_model = frontend.convert(model, hls_config(frontend, model, options), **kwargs)
    except Exception as exc:
        log = buffer.getvalue().strip().splitlines()[-3:]
        last = f" (last hls4ml output: {' | '.join(log)})" if log else ""
        raise UnsupportedModelError(f"hls4ml could not convert model {model.name!r} from {frontend.source}: "
                                    f"{type(exc).__name__}: {exc}{last}") from exc
    names = {layer.name for layer in hls_model.get_layers()}
    # hls4ml writes layer and tensor names into C++ as they are. ONNX names were sanitized above; a
    # Keras or torch model's own names must already be C identifiers (checked, never escaped).
    written = [*names, *(v.name for v in hls_model.get_input_variables()), *(v.name for v in hls_model.get_output_variables()),
               *(name for layer in hls_model.get_layers() for name in layer.outputs)]
    unsafe = sorted({name for name in written if not C_IDENTIFIER.fullmatch(str(name))})
    if unsafe:
        raise UnsupportedModelError(f"hls4ml writes layer and tensor names into C++; these are not C identifiers "
                                    f"([A-Za-z_][A-Za-z0-9_]*): {[str(n)[:80] for n in unsafe[:5]]}; rename the layers")
    unknown = sorted(set(options["layer_precision"] or {}) - names)
    if unknown:
        raise ValueError(f"hls4ml layer_precision names unknown layer(s) {unknown}; the layers are {sorted(names)}")
    if options["tune_softmax"]:
        tune_softmax(hls_model)
    return hls_model


def library(model: Model, frontend: Frontend, options: dict[str, Any]) -> tuple[CacheEntry, dict[str, Any]]:
    """The cache entry holding the compiled emulation of `model` (built now on a miss), and its META."""
    import hls4ml

    parts = {
        "backend": "hls4ml", "revision": _RUNNER_REVISION, "model": model.hash, "source": frontend.source,
        "options": options, "hls4ml": hls4ml.__version__, "compiler": compiler(),
        "qonnx": package_version("qonnx") if frontend.source == "onnx" else "",
        **onnx_rewrite_key(frontend.source),
    }

    def loads(tmp: Path) -> None:  # committed only once the emulation library loads
        check_shared_library(tmp / json.loads((tmp / META).read_text())["library"])

    # The cache checks every file against its checksum before the library is loaded by the runner.
    entry = ArtifactCache().get_or_build(parts, lambda tmp: _build(model, frontend, options, tmp),
                                         files=(META,), validate=loads)
    return entry, json.loads((entry.path / META).read_text())


def _batch_source(hls_model: Any) -> str:
    """A C loop over the batch around hls4ml's own per-sample bridge wrapper `myproject_float`,
    so a batch costs one ctypes call and gives exactly what predict() gives sample by sample."""
    ins = [v.size() for v in hls_model.get_input_variables()]
    outs = [v.size() for v in hls_model.get_output_variables()]
    args = [f"inputs[{i}] + i * {size}L" for i, size in enumerate(ins)] + [f"outputs[{j}] + i * {size}L" for j, size in enumerate(outs)]
    return (
        "\n// yukti: batched entry point (one ctypes call per batch instead of one per sample)\n"
        'extern "C" void yukti_batch_float(float *const *inputs, float *const *outputs, long n) {\n'
        "    for (long i = 0; i < n; i++) {\n"
        f"        {PROJECT}_float({', '.join(args)});\n"
        "    }\n}\n"
    )


def _layer_types(hls_model: Any) -> dict[str, dict[str, str]]:
    """Per-layer precisions as hls4ml will write them (result, weight, bias, accum, tables...)."""
    layers = {}
    for layer in hls_model.get_layers():
        entry = {"class": layer.class_name}
        for type_name, named in layer.types.items():
            entry[type_name.removesuffix("_t")] = str(named.precision)
        if layer.get_attr("reuse_factor") is not None:
            entry["reuse_factor"] = int(layer.get_attr("reuse_factor"))
        layers[layer.name] = entry
    return layers


def _build(model: Model, frontend: Frontend, options: dict[str, Any], out: Path) -> None:
    started = time.perf_counter()
    project = out / "hls_project"
    hls_model = convert(model, frontend, options, project)
    convert_s = time.perf_counter() - started
    with quiet():
        hls_model.write()
    bridge = project / f"{PROJECT}_bridge.cpp"
    text = bridge.read_text()
    # the bridge ends with its include guard; the loop goes inside it, after the wrappers
    head, sep, tail = text.rpartition("#endif")
    bridge.write_text(head + _batch_source(hls_model) + "\n" + sep + tail)
    started = time.perf_counter()
    run = subprocess.run(["bash", "build_lib.sh"], cwd=project, capture_output=True, text=True)
    compile_s = time.perf_counter() - started
    if run.returncode != 0:
        raise YuktiError(f"compiling hls4ml's emulation library for {model.name!r} failed (g++):\n{(run.stdout + run.stderr)[-4000:]}")
    libraries = sorted((project / "firmware").glob(f"{PROJECT}-*.so"))
    if len(libraries) != 1:
        raise YuktiError(f"hls4ml's build_lib.sh left {len(libraries)} libraries in {project / 'firmware'}; expected one")
    meta = {
        "library": str(libraries[0].relative_to(out)),
        "input_shapes": [list(v.shape) for v in hls_model.get_input_variables()],
        "output_shapes": [list(v.shape) for v in hls_model.get_output_variables()],
        "layers": _layer_types(hls_model),
        "convert_s": convert_s,
        "compile_s": compile_s,
    }
    (out / META).write_text(json.dumps(meta, indent=1))
