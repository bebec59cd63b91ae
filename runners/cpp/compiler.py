"""C++ source -> shared library in the artifact cache (keyed by source, flags and compiler)."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

from yukti.cache import ArtifactBuildError, ArtifactCache, CacheEntry, check_shared_library
from yukti.environment import cpu_model
from yukti.errors import YuktiError
from yukti.toolchain import compiler_version, find_compiler

BASE_FLAGS = ("-std=c++17", "-fPIC", "-shared", "-fno-math-errno")
SANITIZE_FLAGS = ("-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-fno-sanitize-recover=all")


class CompileError(YuktiError, RuntimeError):
    """The C++ compiler failed; the message carries its own output."""


def flags_for(*, opt_level: str = "-O3", march: str | None = "native", fast_math: bool = False, sanitize: bool = False,
              extra: tuple[str, ...] = ()) -> list[str]:
    flags = [opt_level if not sanitize else "-O1", *BASE_FLAGS]
    if march:
        flags.append(f"-march={march}")
    if fast_math:
        flags.append("-ffast-math")
    if sanitize:
        flags.extend(SANITIZE_FLAGS)
    return [*flags, *extra]


def compile_library(header: str, body: str, flags: list[str], *, cache: ArtifactCache | None = None,
                    model_hash: str = "", library: str = "model.so") -> CacheEntry:
    """Compile model.hpp + model.cpp into `library` inside a cache entry; reuse it when cached."""
    cxx = find_compiler()
    if cxx is None:
        raise CompileError("no C++ compiler found: set CXX or install g++ (apt-get install g++)")
    version = compiler_version(cxx)
    source_sha = hashlib.sha256((header + "\0" + body).encode()).hexdigest()
    parts = {"backend": "cpp", "model_hash": model_hash, "source_sha256": source_sha, "compiler": version,
             "flags": flags, "cpu": cpu_model() if any("march=native" in f for f in flags) else ""}
    if "-ffast-math" in flags:  # libraries cached before it were linked with crtfastmath.o: not reused
        parts["link"] = "without -ffast-math"

    def build(folder: Path) -> None:
        (folder / "model.hpp").write_text(header)
        (folder / "model.cpp").write_text(body)
        steps = [[cxx, *flags, "model.cpp", "-o", library]]
        if "-ffast-math" in flags:
            # Compiled with it, linked without: GCC links crtfastmath.o into a -ffast-math link, whose
            # constructor turns on flush-to-zero for the whole process that loads the library (numpy
            # included: np.spacing(1e-38) reads 0 after it). The code keeps its fast-math arithmetic.
            steps = [[cxx, *flags, "-c", "model.cpp", "-o", "model.o"],
                     [cxx, *[f for f in flags if f != "-ffast-math"], "model.o", "-o", library]]
        for command in steps:
            done = subprocess.run(command, cwd=folder, capture_output=True, text=True, timeout=900)
            if done.returncode != 0:
                break
        (folder / "model.o").unlink(missing_ok=True)
        if done.returncode != 0:
            message = (done.stderr or done.stdout).strip()
            raise CompileError(f"{' '.join(command)} failed (exit {done.returncode}):\n{message[-4000:]}")
        built = folder / library
        if not built.is_file() or built.stat().st_size == 0:
            wrote = "an empty" if built.is_file() else "no"
            output = (done.stderr or done.stdout).strip()[-4000:]
            raise CompileError(f"{' '.join(command)} exited 0 but wrote {wrote} {library} (is {cxx!r} a C++ compiler? "
                               f"set CXX to one); nothing was cached" + (f". Its output:\n{output}" if output else ""))

    def loads(folder: Path) -> None:
        # Built by us a moment ago, so loading it here is safe; a cached one is verified by checksum.
        try:
            check_shared_library(folder / library)
        except ArtifactBuildError as exc:
            raise CompileError(f"{cxx} {' '.join(flags)} built a library that does not load: {exc}") from None

    return (cache or ArtifactCache()).get_or_build(parts, build, files=(library,), validate=loads)
