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
