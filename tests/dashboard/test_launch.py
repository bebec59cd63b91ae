"""`yukti dashboard` stops with its Streamlit child: a signal sent to the launcher alone reaches
Streamlit, and no server is left behind."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

from yukti.dashboard import launch
from test_dashboard_browser import free_port

POSIX_ONLY = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


def _answers(url: str) -> bool:
    try:
        return urllib.request.urlopen(url, timeout=2).read() == b"ok"
    except OSError:
        return False


def _signal_when_ready(signum: int, ready: Path) -> threading.Thread:
    """Sends `signum` to this process once its child has written `ready` (from another thread).
    Waiting for the child to say so, not just for it to exist: a signal during the child's
    interpreter start-up ends it with exit code 1 before its handler is in place."""

    def send() -> None:
        deadline = time.monotonic() + 30
        while not ready.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        os.kill(os.getpid(), signum)

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    return thread


@POSIX_ONLY
def test_sigint_to_the_launcher_goes_to_the_child_which_it_waits_for(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    child = [sys.executable, "-c", "import pathlib, sys, time\ntry:\n    pathlib.Path(sys.argv[1]).touch()\n"
             "    time.sleep(60)\nexcept KeyboardInterrupt:\n    raise SystemExit(7)", str(ready)]
    before = signal.getsignal(signal.SIGINT)
    started = time.monotonic()
    sender = _signal_when_ready(signal.SIGINT, ready)
    with launch.signals_forwarded_to_children():
        code = subprocess.call(child)  # no KeyboardInterrupt here: the child got the signal
    sender.join()
    assert code == 7  # the child's own exit after its KeyboardInterrupt
    assert time.monotonic() - started < 30
    assert signal.getsignal(signal.SIGINT) is before  # restored afterwards


@POSIX_ONLY
def test_an_ignored_signal_stays_ignored() -> None:
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)  # as under nohup
    try:
        with launch.signals_forwarded_to_children():
            assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
            assert signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, signal.SIG_IGN)
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, previous)


@pytest.mark.slow
@POSIX_ONLY
def test_sigterm_stops_yukti_dashboard_and_its_streamlit(tmp_path: Path) -> None:
    port = free_port()
    repo = Path(launch.__file__).resolve().parents[2]  # the folder holding the yukti package
    env = {**os.environ, "YUKTI_RESULTS_DIR": str(tmp_path / "results"),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(repo), os.environ.get("PYTHONPATH")]))}
    log_path = tmp_path / "dashboard.log"
    children: list[psutil.Process] = []
    with log_path.open("w") as log:
        launcher = subprocess.Popen([sys.executable, "-m", "yukti.cli", "dashboard", "--port", str(port),
                                     "--address", "127.0.0.1"], env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            health = f"http://127.0.0.1:{port}/_stcore/health"
            deadline = time.monotonic() + 90
            while not _answers(health):
                assert launcher.poll() is None and time.monotonic() < deadline, \
                    f"the dashboard did not come up: {log_path.read_text()[-2000:]}"
                time.sleep(0.3)
            children = psutil.Process(launcher.pid).children(recursive=True)
            assert children, "Streamlit is expected to run as the launcher's child"
            launcher.send_signal(signal.SIGTERM)
            assert launcher.wait(timeout=20) == 0, log_path.read_text()[-2000:]
            gone, alive = psutil.wait_procs(children, timeout=10)
            assert not alive, f"left running after SIGTERM: {[p.pid for p in alive]}"
            assert not _answers(health)
        finally:  # a failed test leaves no server behind either
            for process in [*children, psutil.Process(launcher.pid)] if launcher.poll() is None else children:
                with contextlib.suppress(psutil.NoSuchProcess):
                    process.kill()
            launcher.wait()
