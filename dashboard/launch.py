"""Start the dashboard: `yukti dashboard [--port N] [streamlit options...]`."""

from __future__ import annotations

import argparse
import subprocess
import sys
from typing import Sequence

from dashboard import APP_PATH


def command(port: int = 8501, address: str = "localhost", extra: Sequence[str] = ()) -> list[str]:
    """The `streamlit run` command line: headless (no browser window is opened from a server or
    CI), no usage statistics sent, on `address:port`; `extra` goes to Streamlit unchanged."""
    return [sys.executable, "-m", "streamlit", "run", str(APP_PATH),
            "--server.headless", "true", "--server.port", str(port), "--server.address", address,
            "--browser.gatherUsageStats", "false", *extra]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="yukti dashboard", description="Start the Yukti dashboard (Streamlit).",
                                     epilog="Other arguments are passed to `streamlit run`, e.g. --theme.base dark.")
    parser.add_argument("--port", type=int, default=8501, help="port to serve on (default 8501)")
    parser.add_argument("--address", default="localhost", help="address to bind (default localhost; 0.0.0.0 for all)")
    args, extra = parser.parse_known_args(argv)
    cmd = command(args.port, args.address, extra)
    print(f"Yukti dashboard on http://{args.address}:{args.port} (Ctrl-C stops it)", flush=True)
    try:
        return subprocess.call(cmd)
    except KeyboardInterrupt:  # Ctrl-C reaches Streamlit too; leave quietly
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
