"""The machine's tools, probed in one place: the C++ compiler and TensorFlow's thread pools.

Several backends compile C++ (cpp, hls4ml's emulation, AOTInductor) and two code paths start
TensorFlow (the keras runner, a Keras zoo model). Each question is answered here once, so a cache
key, an `available()` check and a reported version all agree.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any


def find_compiler(preferred: tuple[str, ...] = ("c++", "g++", "clang++")) -> str | None:
    """$CXX when set (a name on PATH or a path), else the first of `preferred` on PATH; None if none."""
    env = os.environ.get("CXX")
    if env:
        return shutil.which(env) or (env if Path(env).is_file() else None)
    return next((path for name in preferred if (path := shutil.which(name))), None)


@functools.lru_cache(maxsize=16)
def compiler_version(compiler: str) -> str:
    """The first line `compiler --version` prints ("" when it cannot say): part of cache keys."""
    try:
        done = subprocess.run([compiler, "--version"], capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.SubprocessError):
        return ""
    lines = done.stdout.strip().splitlines() if done.returncode == 0 else []
    return lines[0].strip() if lines else ""


def pin_tensorflow_threads(intra_op: int, inter_op: int = 1) -> bool:
    """Size TensorFlow's pools if it has not initialised yet; True when applied.

    TensorFlow fixes its pools, process-wide, when it first runs anything; after that the request
    is refused and whoever asked reports what applies (`tensorflow_threads()`)."""
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(int(intra_op))
        tf.config.threading.set_inter_op_parallelism_threads(int(inter_op))
    except RuntimeError:  # "cannot be modified after initialization"
        return False
    return True


def tensorflow_threads() -> dict[str, Any]:
    """The pools TensorFlow uses now (0 means its own default: one per core)."""
    import tensorflow as tf

    return {"intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
            "inter_op": tf.config.threading.get_inter_op_parallelism_threads()}
