"""Content-addressed artifact cache shared by every backend and every process.

An entry is a directory keyed by the hash of (model hash, backend, options, tool versions). It is
built in a temporary directory beside the cache and renamed into place under a file lock, so a
reader never sees a half-written entry and two processes racing for the same key build it once.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from filelock import FileLock

MANIFEST = "manifest.json"


def default_root() -> Path:
    env = os.environ.get("YUKTI_CACHE_DIR")
    if env:
        return Path(env)
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("yukti"))


def cache_key(**parts: Any) -> str:
    """Stable hash of the key parts (JSON with sorted keys; non-JSON values by repr)."""
    text = json.dumps(parts, sort_keys=True, default=repr, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:40]


def directory_bytes(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and p.name != MANIFEST)


def atomic_write_bytes(path: Path, data: bytes) -> Path:
    """Write `data` to `path` through a temporary file in the same folder and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


@dataclass(frozen=True)
class CacheEntry:
    key: str
    path: Path
    hit: bool  # True when the entry existed; False when this call built it
    build_s: float  # seconds this call spent building (0 on a hit)

    @property
    def bytes(self) -> int:
        return directory_bytes(self.path)

    @property
    def manifest(self) -> dict[str, Any]:
        return json.loads((self.path / MANIFEST).read_text())


class ArtifactCache:
    def __init__(self, root: str | os.PathLike | None = None) -> None:
        self.root = Path(root) if root is not None else default_root()

    def entry_path(self, key: str) -> Path:
        return self.root / "artifacts" / key[:2] / key

    def lookup(self, key: str) -> Path | None:
        path = self.entry_path(key)
        return path if (path / MANIFEST).is_file() else None

    def get_or_build(self, parts: dict[str, Any], build: Callable[[Path], Any], *, lock_timeout_s: float = 1800) -> CacheEntry:
        """Return the entry for `parts`, calling `build(tmp_dir)` to make it if it is missing.

        `build` writes its files into the directory it is given; if it raises, nothing is left
        in the cache and the error propagates unchanged.
        """
        key = cache_key(**parts)
        final = self.entry_path(key)
        if (final / MANIFEST).is_file():
            return CacheEntry(key, final, True, 0.0)
        (self.root / "locks").mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.root / "locks" / f"{key}.lock"), timeout=lock_timeout_s):
            if (final / MANIFEST).is_file():  # another process built it while we waited
                return CacheEntry(key, final, True, 0.0)
            staging = self.root / "tmp"
            staging.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(dir=staging, prefix=f"{key[:12]}-"))
            try:
                started = time.perf_counter()
                build(tmp)
                build_s = time.perf_counter() - started
                manifest = {"key": key, "parts": parts, "created": time.time(), "build_s": build_s}
                (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True, default=repr))
                final.parent.mkdir(parents=True, exist_ok=True)
                if final.exists():  # a stale entry without manifest (crash in an old version)
                    shutil.rmtree(final)
                os.rename(tmp, final)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
        return CacheEntry(key, final, False, build_s)

    def clear(self) -> None:
        shutil.rmtree(self.root / "artifacts", ignore_errors=True)
        shutil.rmtree(self.root / "tmp", ignore_errors=True)
