"""The environment fingerprint stored with every result row."""

from __future__ import annotations

import functools
import os
import platform
import socket
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

TRACKED_PACKAGES = ("yukti", "numpy", "onnx", "onnxruntime", "onnxruntime-gpu", "torch", "onnx2torch", "tensorflow",
                    "keras", "hls4ml", "openvino", "scikit-learn", "pandas")


def physical_cores() -> int:
    """Cores to measure on: physical cores, no more than the CPUs this process may use (a container
    or taskset may allow fewer). The fingerprint's `cpu_cores` records the machine's count instead."""
    import psutil

    count = psutil.cpu_count(logical=False) or os.cpu_count() or 1
    try:
        count = min(count, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # no sched_getaffinity (macOS, Windows)
        pass
    return max(1, count)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def package_versions() -> dict[str, str]:
    found = {}
    for name in TRACKED_PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return found


def git_commit(start: str | os.PathLike | None = None) -> str:
    """$YUKTI_GIT_COMMIT, else the commit of the git checkout at `start` (default: cwd), else ""."""
    if os.environ.get("YUKTI_GIT_COMMIT"):
        return os.environ["YUKTI_GIT_COMMIT"]
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=start or os.getcwd(), capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


@functools.lru_cache(maxsize=1)
def _static() -> dict[str, object]:
    import psutil

    return {
        "host": socket.gethostname(),
        "cpu": cpu_model(),
        "cpu_cores": psutil.cpu_count(logical=False) or os.cpu_count(),
        "cpu_threads": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def fingerprint() -> dict[str, object]:
    return {**_static(), "packages": package_versions(), "git_commit": git_commit()}
