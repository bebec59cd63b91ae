"""`yukti cache info|verify|clear`: what the cache holds, damage found and removed, exit codes."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from yukti.cache import STAGING_MAX_AGE_S, VERIFY_DAMAGE_EXIT_CODE, ArtifactCache
from yukti.cli import main


@pytest.fixture()
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ArtifactCache:
    monkeypatch.setenv("YUKTI_CACHE_DIR", str(tmp_path / "cache"))
    cache = ArtifactCache()
    cache.get_or_build({"backend": "cpp", "model_hash": "a"}, lambda d: (d / "model.so").write_bytes(b"a" * 3000))
    cache.get_or_build({"backend": "cpp", "model_hash": "b"}, lambda d: (d / "model.so").write_bytes(b"b" * 1000))
    cache.get_or_build({"zoo": "jet_dnn", "seed": 0}, lambda d: (d / "model.onnx").write_bytes(b"z" * 500))
    return cache


def _leftover(cache: ArtifactCache, name: str, started: float) -> Path:
    folder = cache.staging_root / name
    (folder / "entry").mkdir(parents=True)
    (folder / "entry" / "half.bin").write_bytes(b"x" * 2048)
    (folder / "owner.json").write_text(json.dumps({"pid": 1, "host": "elsewhere.invalid", "started": started}))
    return folder


def test_info_lists_entries_by_backend_and_leftovers(cache, capsys):
    _leftover(cache, "killed", time.time() - STAGING_MAX_AGE_S - 10)
    _leftover(cache, "running", time.time())
    assert main(["cache", "info"]) == 0
    out = capsys.readouterr().out
    assert str(cache.root) in out
    assert "3 entries" in out
    rows = {line.split("│")[1].strip(): [c.strip() for c in line.split("│")[2:-1]] for line in out.splitlines() if line.count("│") == 5}
    assert rows["cpp"] == ["2", "3.9 KB", "0"]  # 4000 bytes
    assert rows["zoo"] == ["1", "500 B", "0"]
    assert re.search(r"1 build\(s\) running, 1 leftover\(s\) of killed builds \(2\.\d KB", out)  # 2 KiB + its owner file


def test_verify_exits_0_when_all_good_and_reports_damage_with_its_code(cache, capsys):
    assert main(["cache", "verify"]) == 0
    assert "all 3 entries match their checksums" in capsys.readouterr().out

    (damaged,) = [e for e in cache.entries() if e.bytes == 1000]
    with open(damaged.path / "model.so", "r+b") as handle:
        handle.seek(100)
        handle.write(b"\0" * 100)
    leftover = _leftover(cache, "killed", time.time() - STAGING_MAX_AGE_S - 10)
    assert main(["cache", "verify"]) == VERIFY_DAMAGE_EXIT_CODE == 5
    out = capsys.readouterr().out
    assert f"removed entry {damaged.path}: model.so: content differs from its recorded sha256" in out
    assert f"removed staging leftover {leftover}" in out
    assert "1 of 3 entries were damaged" in out
    assert not damaged.path.exists() and not leftover.exists()
    assert sorted(e.bytes for e in cache.entries()) == [500, 3000]
    assert main(["cache", "verify"]) == 0


def test_clear_removes_entries_and_leftovers_but_not_running_builds(cache, capsys):
    _leftover(cache, "killed", time.time() - STAGING_MAX_AGE_S - 10)
    running = _leftover(cache, "running", time.time())
    running_owner = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
    (running / "owner.json").write_text(json.dumps(running_owner))
    assert main(["cache", "clear"]) == 0
    out = capsys.readouterr().out
    assert "removed 3 entries (4.4 KB)" in out
    assert "left 1 staging folder(s) of builds still running" in out
    assert cache.entries() == []
    assert [f.path for f in cache.staging_folders()] == [running]


def test_cache_command_exit_codes_from_a_shell(cache):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    bad = subprocess.run([sys.executable, "-m", "yukti.cli", "cache", "fix"], capture_output=True, text=True, env=env, timeout=120)
    assert bad.returncode == 2 and "invalid choice: 'fix'" in bad.stderr
    helped = subprocess.run([sys.executable, "-m", "yukti.cli", "cache", "--help"], capture_output=True, text=True, env=env, timeout=120)
    assert helped.returncode == 0 and f"{VERIFY_DAMAGE_EXIT_CODE}  verify only: damaged entries" in helped.stdout
