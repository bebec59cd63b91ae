"""Content-addressed artifact cache shared by every backend and every process.

An entry is a directory keyed by the hash of (model hash, backend, options, tool versions). It is
built in a staging folder beside the cache and renamed into place under a file lock, so a reader
never sees a half-written entry and two processes racing for the same key build it once.

The cache does not trust the disk. An entry is committed only after the files it must hold exist
(non-empty) and the builder's `validate` accepted them (a shared library loads, say). Its
manifest records the size and sha256 of every file, and every hit checks them BEFORE the caller
loads anything (check first, load second: a truncated, zeroed or swapped shared library is never
dlopen'ed). A damaged entry, or one written before entries carried checksums, is reported with a
`CacheWarning` naming the entry and the file, removed under the entry's lock, and rebuilt.

Staging folders record their owner (pid, host, start time). A build killed before it finished
leaves its folder behind; the next build (or `yukti cache clear|verify`) removes folders whose
owner process is gone (same host), and any older than `STAGING_MAX_AGE_S`.

Over 400 lines on purpose: committing, verifying, discarding and cleaning up after killed builds
are one protocol around one lock per entry, and `yukti cache info|verify|clear` reads it.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import socket
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from filelock import FileLock, Timeout

from yukti.errors import YuktiError

MANIFEST = "manifest.json"
# 2: the manifest lists every file with its size and sha256 ("files"). Entries without it were
# written by an older Yukti: they cannot be verified and are rebuilt.
MANIFEST_FORMAT = 2
OWNER = "owner.json"  # in each staging folder: who is building there
# A staging folder older than this is removed whoever owns it: no build runs this long (compilers
# are stopped after 15 minutes, lock waits after 30), and a folder made by another host (a shared
# cache) can only be judged by its age.
STAGING_MAX_AGE_S = 24 * 3600
# A staging folder without an owner file (an older Yukti's, or one whose owner died between
# creating it and writing the file, microseconds apart) is removed once it is this old.
OWNERLESS_GRACE_S = 60.0
# `yukti cache verify` exits with this when it found (and removed) damaged entries; 0 when all were good.
VERIFY_DAMAGE_EXIT_CODE = 5
_CHUNK = 1 << 20


class CacheWarning(UserWarning):
    """A cache entry failed verification (or could not be verified) and is rebuilt."""


class ArtifactBuildError(YuktiError, RuntimeError):
    """A build reported success but did not leave the artifact its entry must hold."""


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
    """Bytes of the files under `path` (manifests excluded). Files that vanish while they are
    counted (another build's staging folder, renamed or removed meanwhile) count as nothing."""
    def size(file: Path) -> int:
        try:
            return file.stat().st_size
        except FileNotFoundError:
            return 0

    try:
        if path.is_file():
            return size(path)
        return sum(size(p) for p in path.rglob("*") if p.is_file() and p.name != MANIFEST)
    except FileNotFoundError:  # the folder itself went away during the walk
        return 0


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


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def check_shared_library(path: Path) -> None:
    """Raise ArtifactBuildError unless `path` is a non-empty shared library that dlopen accepts.

    The library is closed again afterwards. Only for libraries this process has just built:
    loading runs their initialisers, and a damaged one may crash the process (which is why
    cached ones are verified by checksum instead)."""
    import ctypes

    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ArtifactBuildError(f"the build wrote no {path.name} ({exc})") from None
    if size == 0:
        raise ArtifactBuildError(f"the build wrote an empty {path.name} (0 bytes)")
    try:
        library = ctypes.CDLL(str(path))
    except OSError as exc:
        raise ArtifactBuildError(f"{path.name} does not load as a shared library: {exc}") from None
    try:
        from _ctypes import dlclose
    except ImportError:  # pragma: no cover - not POSIX: the handle stays open, which is harmless
        return
    dlclose(library._handle)


def _checksums(folder: Path) -> dict[str, dict[str, Any]]:
    files = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.relative_to(folder).as_posix() != MANIFEST:
            files[path.relative_to(folder).as_posix()] = {"bytes": path.stat().st_size, "sha256": file_sha256(path)}
    return files


def _manifest_problem(path: Path) -> tuple[str, str] | None:
    """(file, what is wrong with it) for the entry at `path`, or None when every file it lists has
    the recorded size and sha256. Sizes first: a truncated or emptied file costs no hashing."""
    try:
        manifest = json.loads((path / MANIFEST).read_text())
    except FileNotFoundError:
        return MANIFEST, "missing"
    except (OSError, ValueError) as exc:
        return MANIFEST, f"unreadable ({exc})"
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, dict):
        return MANIFEST, "no checksums (written by an older Yukti), so the entry cannot be verified"
    for name, record in files.items():
        try:
            size = (path / name).stat().st_size
        except FileNotFoundError:
            return name, "missing"
        except OSError as exc:
            return name, f"unreadable ({exc})"
        if size != record.get("bytes"):
            return name, f"{size} bytes{' (empty)' if size == 0 else ''}, {record.get('bytes')} recorded (truncated or replaced?)"
    for name, record in files.items():
        try:
            digest = file_sha256(path / name)
        except OSError as exc:
            return name, f"unreadable ({exc})"
        if digest != record.get("sha256"):
            return name, "content differs from its recorded sha256 (damaged or replaced)"
    return None


def _this_process() -> dict[str, Any]:
    return _process_record(os.getpid())  # by pid: a forked child is another owner


@functools.lru_cache(maxsize=4)
def _process_record(pid: int) -> dict[str, Any]:
    import psutil

    return {"pid": pid, "host": socket.gethostname(), "process_started": psutil.Process(pid).create_time()}


def _owner_alive(owner: dict[str, Any]) -> bool:
    """Whether the process that made a staging folder on this host still runs (the same process:
    a reused pid has another start time)."""
    import psutil

    try:
        process = psutil.Process(int(owner["pid"]))
        if owner.get("process_started") is None:
            return True
        return abs(process.create_time() - float(owner["process_started"])) < 1.0
    except psutil.NoSuchProcess:
        return False
    except (psutil.Error, KeyError, TypeError, ValueError):
        return True  # cannot tell: leave it to the age limit


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


@dataclass(frozen=True)
class EntrySummary:
    """One entry as `yukti cache info` lists it."""

    key: str
    path: Path
    kind: str  # the backend that built it, "zoo" for trained zoo models, "?" without a manifest
    bytes: int
    created: float | None
    verified: bool  # the manifest carries checksums (not that they were checked now)


@dataclass(frozen=True)
class StagingFolder:
    path: Path
    bytes: int
    stale: str | None  # why it may be removed; None while its build may still be running


class ArtifactCache:
    def __init__(self, root: str | os.PathLike | None = None) -> None:
        self.root = Path(root) if root is not None else default_root()

    @property
    def staging_root(self) -> Path:
        return self.root / "tmp"

    def entry_path(self, key: str) -> Path:
        return self.root / "artifacts" / key[:2] / key

    def _lock(self, key: str, timeout: float) -> FileLock:
        (self.root / "locks").mkdir(parents=True, exist_ok=True)
        return FileLock(str(self.root / "locks" / f"{key}.lock"), timeout=timeout)

    def lookup(self, key: str) -> Path | None:
        """The entry's folder if it exists and its files match their checksums, else None."""
        path = self.entry_path(key)
        return path if (path / MANIFEST).is_file() and _manifest_problem(path) is None else None

    def get_or_build(self, parts: dict[str, Any], build: Callable[[Path], Any], *, files: Iterable[str] = (),
                     validate: Callable[[Path], Any] | None = None, lock_timeout_s: float = 1800) -> CacheEntry:
        """Return the entry for `parts`, calling `build(folder)` to make it if it is missing or damaged.

        `build` writes its files into the empty folder it is given. Before the entry is committed,
        each of `files` (paths relative to the folder) must exist and be non-empty, and
        `validate(folder)`, when given, must return without raising (load the artifact there). If
        `build` or `validate` raises, nothing is left in the cache and the error propagates
        unchanged; a missing or empty required file raises ArtifactBuildError.

        On a hit every file is checked against the manifest's size and sha256 first; a damaged
        entry warns (CacheWarning), is removed and is rebuilt.
        """
        key = cache_key(**parts)
        final = self.entry_path(key)
        warned = False
        if (final / MANIFEST).is_file():
            problem = _manifest_problem(final)
            if problem is None:
                return CacheEntry(key, final, True, 0.0)
            self._warn(final, problem)
            warned = True
        with self._lock(key, lock_timeout_s):
            if final.exists():
                problem = _manifest_problem(final)
                if problem is None:  # built (or rebuilt) by another process while we waited
                    return CacheEntry(key, final, True, 0.0)
                if not warned and (final / MANIFEST).is_file():
                    self._warn(final, problem)
                self._discard(final)  # damaged, unverified, or a crash's leftover without manifest
            self.clean_staging()
            holder = self._new_staging(key)
            try:
                folder = holder / "entry"
                folder.mkdir()
                started = time.perf_counter()
                build(folder)
                for name in files:
                    path = folder / name
                    if not path.is_file() or path.stat().st_size == 0:
                        state = "an empty" if path.is_file() else "no"
                        raise ArtifactBuildError(f"the build of cache entry {key} ({_describe(parts)}) left {state} {name}; "
                                                 "nothing was committed")
                if validate is not None:
                    validate(folder)
                build_s = time.perf_counter() - started
                manifest = {"key": key, "parts": parts, "created": time.time(), "build_s": build_s,
                            "format": MANIFEST_FORMAT, "files": _checksums(folder)}
                (folder / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True, default=repr))
                final.parent.mkdir(parents=True, exist_ok=True)
                os.rename(folder, final)
            finally:
                shutil.rmtree(holder, ignore_errors=True)
        return CacheEntry(key, final, False, build_s)

    # -- damage and leftovers --------------------------------------------------------------------
    @staticmethod
    def _warn(path: Path, problem: tuple[str, str]) -> None:
        name, what = problem
        warnings.warn(f"artifact cache entry {path}: {name}: {what}; removing the entry and rebuilding it",
                      CacheWarning, stacklevel=3)

    def _new_staging(self, key: str) -> Path:
        self.staging_root.mkdir(parents=True, exist_ok=True)
        holder = Path(tempfile.mkdtemp(dir=self.staging_root, prefix=f"{key[:12]}-"))
        (holder / OWNER).write_text(json.dumps({**_this_process(), "started": time.time()}))
        return holder

    def _discard(self, path: Path) -> None:
        """Remove an entry: one rename takes it out of the artifacts tree (a process that opened
        its files keeps reading them), then it is deleted from a staging folder, so a kill midway
        leaves a leftover the next build cleans, never a half-deleted entry."""
        holder = self._new_staging(path.name)
        try:
            os.rename(path, holder / "entry")
        except FileNotFoundError:
            pass
        finally:
            shutil.rmtree(holder, ignore_errors=True)

    def staging_folders(self) -> list[StagingFolder]:
        """Every staging folder, with the reason it counts as a leftover (None while its build runs)."""
        if not self.staging_root.is_dir():
            return []
        now, here = time.time(), socket.gethostname()
        found = []
        for folder in sorted(self.staging_root.iterdir()):
            try:
                owner = json.loads((folder / OWNER).read_text())
                if not isinstance(owner, dict):
                    owner = None
            except (OSError, ValueError):
                owner = None
            try:
                started = float(owner["started"]) if owner else folder.stat().st_mtime
            except (OSError, KeyError, TypeError, ValueError):
                started = now
            age = now - started
            if age > STAGING_MAX_AGE_S:
                stale = f"older than {STAGING_MAX_AGE_S // 3600} h"
            elif owner is None:
                stale = f"no owner recorded, {age:.0f} s old" if age > OWNERLESS_GRACE_S else None
            elif owner.get("host") == here and not _owner_alive(owner):
                stale = f"its build process (pid {owner.get('pid')}) is gone"
            else:
                stale = None
            found.append(StagingFolder(folder, directory_bytes(folder) if folder.is_dir() else 0, stale))
        return found

    def clean_staging(self) -> list[StagingFolder]:
        """Remove staging folders left by killed builds (see `staging_folders`); return them."""
        removed = [folder for folder in self.staging_folders() if folder.stale]
        for folder in removed:
            if folder.path.is_dir():
                shutil.rmtree(folder.path, ignore_errors=True)
            else:
                folder.path.unlink(missing_ok=True)
        return removed

    # -- for users: yukti cache info|clear|verify -----------------------------------------------
    def _entry_folders(self) -> list[Path]:
        artifacts = self.root / "artifacts"
        return sorted(p for p in artifacts.glob("*/*") if p.is_dir()) if artifacts.is_dir() else []

    def entries(self) -> list[EntrySummary]:
        found = []
        for path in self._entry_folders():
            try:
                manifest = json.loads((path / MANIFEST).read_text())
                parts = manifest.get("parts", {})
                kind = str(parts.get("backend") or ("zoo" if "zoo" in parts else "?"))
                created, verified = manifest.get("created"), isinstance(manifest.get("files"), dict)
            except (OSError, ValueError, AttributeError):
                kind, created, verified = "?", None, False
            found.append(EntrySummary(path.name, path, kind, directory_bytes(path), created, verified))
        return found

    def verify(self, *, lock_timeout_s: float = 10) -> tuple[list[tuple[Path, str]], list[tuple[Path, str]]]:
        """Check every entry against its checksums and remove the damaged ones (each under its
        lock, after a second check). Returns (removed, skipped): (entry, what was wrong) for each
        entry removed, and for each damaged one left alone because a build held its lock."""
        removed, skipped = [], []
        for path in self._entry_folders():
            problem = _manifest_problem(path)
            if problem is None:
                continue
            try:
                with self._lock(path.name, lock_timeout_s):
                    problem = _manifest_problem(path) if path.exists() else None
                    if problem is None:
                        continue
                    self._discard(path)
            except Timeout:
                skipped.append((path, f"{problem[0]}: {problem[1]} (left alone: a build holds its lock)"))
                continue
            removed.append((path, f"{problem[0]}: {problem[1]}"))
        return removed, skipped

    def clear(self) -> list[Path]:
        """Remove every entry and every staging leftover (not the folders of builds still running);
        return the entries removed."""
        removed = []
        for path in self._entry_folders():
            self._discard(path)
            removed.append(path)
        self.clean_staging()
        return removed


def _describe(parts: dict[str, Any]) -> str:
    if "backend" in parts:
        return f"backend {parts['backend']}"
    return f"zoo model {parts['zoo']}" if "zoo" in parts else "no backend named"
