"""Start the dashboard: `yukti dashboard [--port N] [streamlit options...]`.

Streamlit runs as a child process; a SIGTERM, SIGINT or SIGHUP sent to `yukti dashboard` alone
(a supervisor, `kill PID`) is passed on to it, so Streamlit shuts down cleanly and
`yukti dashboard` exits with it instead of leaving it running. (Forwarding rather than os.execv:
on Windows exec starts a new process and the launcher exits at once, so a supervisor would lose it.)
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import subprocess
import sys
import threading
from types import FrameType
from typing import Any, Iterator, Sequence

import psutil

from yukti.dashboard import APP_PATH

FORWARDED_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGINT", "SIGHUP") if hasattr(signal, name))


def command(port: int = 8501, address: str = "localhost", extra: Sequence[str] = ()) -> list[str]:
    """The `streamlit run` command line: headless (no browser window is opened from a server or
    CI), no usage statistics sent, on `address:port`; `extra` goes to Streamlit unchanged."""
    return [sys.executable, "-m", "streamlit", "run", str(APP_PATH),
            "--server.headless", "true", "--server.port", str(port), "--server.address", address,
            "--browser.gatherUsageStats", "false", *extra]


@contextlib.contextmanager
def signals_forwarded_to_children(signals: Sequence[int] = FORWARDED_SIGNALS) -> Iterator[None]:
    """Within the block, `signals` received by this process are sent on to its child processes
    (Streamlit) instead, and the caller keeps waiting for them to exit. A signal this process
    ignores (SIGHUP under nohup) stays ignored; one that arrives while there is no child acts as
    it would have without this block. Outside the main thread, signal handlers cannot be set:
    nothing is changed."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    me = psutil.Process()
    previous: dict[int, Any] = {}

    def forward(signum: int, frame: FrameType | None) -> None:
        children = me.children()
        if not children:
            signal.signal(signum, previous[signum] or signal.SIG_DFL)
            signal.raise_signal(signum)
            return
        for child in children:
            with contextlib.suppress(psutil.NoSuchProcess):
                child.send_signal(signum)

    for signum in signals:
        if signal.getsignal(signum) is not signal.SIG_IGN:
            previous[signum] = signal.signal(signum, forward)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler or signal.SIG_DFL)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="yukti dashboard", description="Start the Yukti dashboard (Streamlit).",
                                     epilog="Other arguments are passed to `streamlit run`, e.g. --theme.base dark.")
    parser.add_argument("--port", type=int, default=8501, help="port to serve on (default 8501)")
    parser.add_argument("--address", default="localhost", help="address to bind (default localhost; 0.0.0.0 for all)")
    args, extra = parser.parse_known_args(argv)
    cmd = command(args.port, args.address, extra)
    print(f"Yukti dashboard on http://{args.address}:{args.port} (Ctrl-C stops it)", flush=True)
    try:
        with signals_forwarded_to_children():
            return subprocess.call(cmd)
    except KeyboardInterrupt:  # Ctrl-C before Streamlit started: leave quietly
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
