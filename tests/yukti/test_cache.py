"""yukti.cache: the content-addressed artifact cache, its atomic writes, and a real multi-process race."""

from __future__ import annotations

import functools
import json
import multiprocessing
import os
import time
from pathlib import Path

import pytest

from yukti.cache import ArtifactCache, atomic_write_bytes, cache_key, default_root

PARTS = {"model_hash": "abc", "backend": "onnxruntime", "options": {"threads": 1}, "versions": {"onnxruntime": "1.20"}}


class Builder:
    """A build function that counts its calls and writes one file."""

    def __init__(self, payload: bytes = b"artifact") -> None:
        self.calls = 0
        self.payload = payload

    def __call__(self, folder: Path) -> None:
        self.calls += 1
        assert folder.is_dir() and not any(folder.iterdir())  # a fresh, empty folder each time
        (folder / "model.bin").write_bytes(self.payload)


def test_get_or_build_builds_once_then_hits(tmp_path: Path) -> None:
    cache = ArtifactCache(tmp_path)
    build = Builder(b"x" * 123)
    first = cache.get_or_build(PARTS, build)
    assert first.hit is False
    assert build.calls == 1
    assert first.build_s >= 0.0
    assert (first.path / "model.bin").read_bytes() == b"x" * 123
    assert first.path == cache.entry_path(first.key)
    assert first.path.is_relative_to(tmp_path)
    assert first.key == cache_key(**PARTS)
    assert cache.lookup(first.key) == first.path
    assert first.bytes == 123  # the manifest is not counted

    second = cache.get_or_build(PARTS, build)
    assert second.hit is True
    assert build.calls == 1
    assert second.build_s == 0.0
    assert second.path == first.path and second.key == first.key

    # another cache object on the same root (as another process would) also hits
    third = ArtifactCache(tmp_path).get_or_build(PARTS, build)
    assert third.hit is True and build.calls == 1


def test_entry_has_manifest_with_parts(tmp_path: Path) -> None:
    entry = ArtifactCache(tmp_path).get_or_build(PARTS, Builder())
    manifest = entry.manifest
    assert manifest["parts"] == PARTS
    assert manifest["key"] == entry.key
    assert manifest["build_s"] == pytest.approx(entry.build_s)
    assert manifest["created"] <= time.time()
    on_disk = json.loads((entry.path / "manifest.json").read_text())
    assert on_disk == manifest


class BuildFailed(Exception):
    pass


def test_failing_build_leaves_nothing_and_reraises(tmp_path: Path) -> None:
    cache = ArtifactCache(tmp_path)
    error = BuildFailed("compiler crashed")

    def build(folder: Path) -> None:
        (folder / "half-written.bin").write_bytes(b"partial")
        raise error

    with pytest.raises(BuildFailed) as excinfo:
        cache.get_or_build(PARTS, build)
    assert excinfo.value is error  # the very same exception, unchanged
    key = cache_key(**PARTS)
    assert cache.lookup(key) is None
    assert not cache.entry_path(key).exists()
    staging = tmp_path / "tmp"
    assert not staging.exists() or list(staging.iterdir()) == []
    assert not list(tmp_path.rglob("half-written.bin"))

    # the next call builds it for real
    builder = Builder()
    entry = cache.get_or_build(PARTS, builder)
    assert entry.hit is False and builder.calls == 1
    assert cache.lookup(key) == entry.path


def test_stale_entry_without_manifest_is_rebuilt(tmp_path: Path) -> None:
    cache = ArtifactCache(tmp_path)
    key = cache_key(**PARTS)
    stale = cache.entry_path(key)
    stale.mkdir(parents=True)
    (stale / "junk").write_text("left by a crash")
    assert cache.lookup(key) is None
    builder = Builder()
    entry = cache.get_or_build(PARTS, builder)
    assert entry.hit is False and builder.calls == 1
    assert not (entry.path / "junk").exists()
    assert (entry.path / "model.bin").is_file()


def test_keys_differ_by_options_and_versions(tmp_path: Path) -> None:
    base = cache_key(**PARTS)
    assert base == cache_key(**dict(PARTS))
    # order of keys, top level or nested, does not matter
    assert base == cache_key(versions={"onnxruntime": "1.20"}, options={"threads": 1}, backend="onnxruntime",
                             model_hash="abc")
    variants = [
        {**PARTS, "options": {"threads": 2}},
        {**PARTS, "options": {"threads": 1, "opt_level": 3}},
        {**PARTS, "versions": {"onnxruntime": "1.21"}},
        {**PARTS, "backend": "torch"},
        {**PARTS, "model_hash": "abd"},
    ]
    keys = [cache_key(**v) for v in variants]
    assert base not in keys
    assert len(set(keys)) == len(keys)

    cache = ArtifactCache(tmp_path)
    builder = Builder()
    paths = {cache.get_or_build(p, builder).path for p in [PARTS, *variants]}
    assert len(paths) == len(variants) + 1
    assert builder.calls == len(variants) + 1


def test_clear_removes_entries(tmp_path: Path) -> None:
    cache = ArtifactCache(tmp_path)
    entry = cache.get_or_build(PARTS, Builder())
    cache.clear()
    assert not entry.path.exists()
    builder = Builder()
    assert cache.get_or_build(PARTS, builder).hit is False and builder.calls == 1


def test_default_root_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("YUKTI_CACHE_DIR", str(tmp_path / "c"))
    assert default_root() == tmp_path / "c"
    assert ArtifactCache().root == tmp_path / "c"


# -- atomic writes -------------------------------------------------------------------------------------


def test_atomic_write_bytes_leaves_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "file.bin"
    assert atomic_write_bytes(target, b"one") == target
    assert target.read_bytes() == b"one"
    atomic_write_bytes(target, b"two, longer")
    assert target.read_bytes() == b"two, longer"
    assert os.listdir(target.parent) == ["file.bin"]


def test_atomic_write_bytes_failure_keeps_old_content(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "file.bin"
    target.write_bytes(b"old")

    def refuse(src: str, dst: str) -> None:
        raise OSError("rename refused")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(OSError, match="rename refused"):
        atomic_write_bytes(target, b"new")
    monkeypatch.undo()
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["file.bin"]


# -- a real race between processes -------------------------------------------------------------------


def _slow_build(counter: str, folder: Path) -> None:
    time.sleep(0.5)
    with open(counter, "a") as handle:
        handle.write(f"{os.getpid()}\n")
    (folder / "model.bin").write_bytes(b"raced")


def race_worker(root: str, counter: str, parts: dict, barrier, queue) -> None:  # noqa: ANN001 (mp proxies)
    """Run in a spawned child: wait for the others, then ask for the same entry."""
    from yukti.cache import ArtifactCache

    barrier.wait(timeout=60)
    entry = ArtifactCache(root).get_or_build(parts, functools.partial(_slow_build, counter))
    queue.put((os.getpid(), str(entry.path), entry.hit))


def test_processes_racing_for_one_key_build_it_once(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    counter = tmp_path / "builds.txt"  # outside the cache
    parts = {"model_hash": "race", "backend": "test", "options": {}}
    n = 3
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(n)
    queue = ctx.Queue()
    procs = [ctx.Process(target=race_worker, args=(str(root), str(counter), parts, barrier, queue)) for _ in range(n)]
    for p in procs:
        p.start()
    try:
        reports = [queue.get(timeout=120) for _ in range(n)]
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
    assert [p.exitcode for p in procs] == [0] * n
    assert len({pid for pid, _, _ in reports}) == n  # three distinct processes answered
    builders = counter.read_text().splitlines()
    assert len(builders) == 1
    paths = {path for _, path, _ in reports}
    assert len(paths) == 1
    assert sorted(hit for _, _, hit in reports) == [False] + [True] * (n - 1)
    built_by = next(pid for pid, _, hit in reports if not hit)
    assert builders == [str(built_by)]
    path = Path(paths.pop())
    assert (path / "model.bin").read_bytes() == b"raced"
    assert ArtifactCache(root).lookup(cache_key(**parts)) == path
    assert list((root / "tmp").iterdir()) == []


# -- committed only when complete ----------------------------------------------------------------


def test_required_file_missing_or_empty_commits_nothing(tmp_path: Path) -> None:
    from yukti.cache import ArtifactBuildError

    cache = ArtifactCache(tmp_path)
    for payload in (None, b""):
        def build(folder: Path, payload=payload) -> None:
            (folder / "other.txt").write_text("not the artifact")
            if payload is not None:
                (folder / "model.so").write_bytes(payload)

        with pytest.raises(ArtifactBuildError, match="model.so"):
            cache.get_or_build(PARTS, build, files=("model.so",))
        assert cache.lookup(cache_key(**PARTS)) is None
        assert not cache.entry_path(cache_key(**PARTS)).exists()
        assert list((tmp_path / "tmp").iterdir()) == []


def test_validate_runs_on_the_staging_folder_before_commit(tmp_path: Path) -> None:
    cache = ArtifactCache(tmp_path)
    seen = []

    def refuse(folder: Path) -> None:
        seen.append((folder, (folder / "model.bin").read_bytes()))
        assert not (folder / "manifest.json").exists()  # the manifest is written last
        raise BuildFailed("does not load")

    with pytest.raises(BuildFailed, match="does not load"):
        cache.get_or_build(PARTS, Builder(b"payload"), files=("model.bin",), validate=refuse)
    assert seen and seen[0][1] == b"payload"
    assert not seen[0][0].is_relative_to(tmp_path / "artifacts")
    assert cache.lookup(cache_key(**PARTS)) is None
    assert list((tmp_path / "tmp").iterdir()) == []

    entry = cache.get_or_build(PARTS, Builder(b"payload"), files=("model.bin",), validate=lambda folder: None)
    assert entry.hit is False and (entry.path / "model.bin").read_bytes() == b"payload"


def test_manifest_records_size_and_sha256_of_every_file(tmp_path: Path) -> None:
    import hashlib

    def build(folder: Path) -> None:
        (folder / "a.bin").write_bytes(b"alpha")
        (folder / "sub").mkdir()
        (folder / "sub" / "b.txt").write_bytes(b"")
    entry = ArtifactCache(tmp_path).get_or_build(PARTS, build)
    files = entry.manifest["files"]
    assert files == {"a.bin": {"bytes": 5, "sha256": hashlib.sha256(b"alpha").hexdigest()},
                     "sub/b.txt": {"bytes": 0, "sha256": hashlib.sha256(b"").hexdigest()}}


# -- damage on disk --------------------------------------------------------------------------------


PAYLOAD = bytes(range(256)) * 64  # 16 KiB


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: len(PAYLOAD) // 2])


def _zero_middle(path: Path) -> None:
    with open(path, "r+b") as handle:
        handle.seek(4096)
        handle.write(b"\0" * 4096)


def _empty(path: Path) -> None:
    path.write_bytes(b"")


def _delete(path: Path) -> None:
    path.unlink()


def _swap(path: Path) -> None:
    path.write_bytes(PAYLOAD[::-1])  # another artifact of the same size


DAMAGES = {"truncated": _truncate, "zeroed": _zero_middle, "empty": _empty, "missing": _delete, "swapped": _swap}


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_damaged_entry_warns_is_removed_and_rebuilt(tmp_path: Path, damage: str) -> None:
    from yukti.cache import CacheWarning

    cache = ArtifactCache(tmp_path)
    builder = Builder(PAYLOAD)
    entry = cache.get_or_build(PARTS, builder, files=("model.bin",))
    DAMAGES[damage](entry.path / "model.bin")
    assert cache.lookup(entry.key) is None  # a lookup verifies too

    loads = []
    with pytest.warns(CacheWarning, match=rf"{entry.key}.*model\.bin") as caught:
        again = cache.get_or_build(PARTS, builder, files=("model.bin",), validate=lambda folder: loads.append(folder))
    assert len(caught) == 1
    assert again.hit is False and builder.calls == 2 and len(loads) == 1
    assert again.path == entry.path
    assert (again.path / "model.bin").read_bytes() == PAYLOAD
    assert cache.get_or_build(PARTS, builder).hit is True and builder.calls == 2
    assert list((tmp_path / "tmp").iterdir()) == []


def test_damaged_manifest_and_old_entries_without_checksums_are_rebuilt(tmp_path: Path) -> None:
    from yukti.cache import CacheWarning

    cache = ArtifactCache(tmp_path)
    builder = Builder(PAYLOAD)
    entry = cache.get_or_build(PARTS, builder)
    manifest = entry.manifest
    del manifest["files"]  # as written by an older Yukti
    (entry.path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.warns(CacheWarning, match="no checksums"):
        assert cache.get_or_build(PARTS, builder).hit is False
    (entry.path / "manifest.json").write_text("{not json")
    with pytest.warns(CacheWarning, match="manifest.json"):
        assert cache.get_or_build(PARTS, builder).hit is False
    assert builder.calls == 3
    assert cache.get_or_build(PARTS, builder).hit is True


def test_verify_removes_only_damaged_entries(tmp_path: Path) -> None:
    cache = ArtifactCache(tmp_path)
    good = cache.get_or_build(PARTS, Builder(PAYLOAD))
    bad = cache.get_or_build({**PARTS, "backend": "other"}, Builder(PAYLOAD))
    _zero_middle(bad.path / "model.bin")
    removed, skipped = cache.verify()
    assert [path for path, _ in removed] == [bad.path] and "model.bin" in removed[0][1]
    assert skipped == []
    assert not bad.path.exists() and cache.lookup(good.key) == good.path
    assert cache.verify() == ([], [])
    assert [e.key for e in cache.entries()] == [good.key]


# -- staging folders left by killed builds ---------------------------------------------------------


KILLED_BUILD = """
import sys, time
from pathlib import Path
from yukti.cache import ArtifactCache

def build(folder: Path) -> None:
    (folder / "big.bin").write_bytes(b"x" * 100_000)
    print("building", flush=True)
    time.sleep(600)

ArtifactCache(sys.argv[1]).get_or_build({"backend": "killed"}, build)
"""


def test_staging_folder_of_a_killed_build_is_cleaned_by_the_next_build(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys

    root = tmp_path / "cache"
    child = subprocess.Popen([sys.executable, "-c", KILLED_BUILD, str(root)], stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    try:
        assert child.stdout.readline().strip() == "building"
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    (left,) = list((root / "tmp").iterdir())
    owner = json.loads((left / "owner.json").read_text())
    assert owner["pid"] == child.pid
    assert (left / "entry" / "big.bin").stat().st_size == 100_000
    cache = ArtifactCache(root)
    assert [(f.path, bool(f.stale)) for f in cache.staging_folders()] == [(left, True)]
    assert "gone" in cache.staging_folders()[0].stale

    cache.get_or_build(PARTS, Builder())  # any build cleans leftovers first
    assert list((root / "tmp").iterdir()) == []
    # the killed build's key was never committed, and builds normally now (its lock died with it)
    entry = cache.get_or_build({"backend": "killed"}, Builder(), lock_timeout_s=10)
    assert entry.hit is False


def test_staging_folders_of_running_builds_are_kept_until_too_old(tmp_path: Path) -> None:
    import socket

    import psutil

    from yukti.cache import OWNERLESS_GRACE_S, STAGING_MAX_AGE_S

    cache = ArtifactCache(tmp_path)
    staging = tmp_path / "tmp"
    now = time.time()
    me = {"pid": os.getpid(), "host": socket.gethostname(), "process_started": psutil.Process().create_time()}
    owners = {
        "running-here": {**me, "started": now},
        "pid-reused": {**me, "process_started": me["process_started"] - 1000, "started": now},
        "other-host-recent": {**me, "host": "elsewhere.invalid", "pid": 1, "started": now - 3600},
        "other-host-old": {**me, "host": "elsewhere.invalid", "pid": 1, "started": now - STAGING_MAX_AGE_S - 60},
        "running-but-too-old": {**me, "started": now - STAGING_MAX_AGE_S - 60},
    }
    for name, owner in owners.items():
        (staging / name / "entry").mkdir(parents=True)
        (staging / name / "owner.json").write_text(json.dumps(owner))
    for name, age in (("ownerless-fresh", 0.0), ("ownerless-old", OWNERLESS_GRACE_S + 60)):
        (staging / name).mkdir()
        os.utime(staging / name, (now - age, now - age))

    removed = {f.path.name for f in cache.clean_staging()}
    assert removed == {"pid-reused", "other-host-old", "running-but-too-old", "ownerless-old"}
    assert {p.name for p in staging.iterdir()} == {"running-here", "other-host-recent", "ownerless-fresh"}


def test_directory_bytes_of_a_folder_that_vanished(tmp_path):
    from yukti.cache import directory_bytes

    assert directory_bytes(tmp_path / "gone") == 0
    (tmp_path / "a").write_bytes(b"12345")
    assert directory_bytes(tmp_path) == 5


def test_builds_of_different_entries_in_threads_of_one_process(tmp_path):
    """A precision scan builds several entries at once from threads: one build listing the staging
    folders (to clean leftovers) while another's staging folder is renamed away must not fail."""
    from concurrent.futures import ThreadPoolExecutor

    cache = ArtifactCache(tmp_path)

    def build_one(i: int) -> Path:
        def build(folder: Path) -> None:
            for k in range(30):
                (folder / f"part{k}.bin").write_bytes(bytes(100))

        return cache.get_or_build({**PARTS, "options": {"threads": 1, "i": i}}, build, files=("part0.bin",)).path

    with ThreadPoolExecutor(6) as pool:
        paths = list(pool.map(build_one, range(120)))
    assert len(set(paths)) == 120 and all((p / "part29.bin").is_file() for p in paths)
