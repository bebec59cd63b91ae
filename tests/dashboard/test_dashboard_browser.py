"""The dashboard in a real browser: `streamlit run` headless on a free localhost port, every page
loaded in headless Debian Chromium through Playwright, charts waited for, a screenshot per page,
and no Streamlit exception box anywhere.

Screenshots go to the test's tmp dir; set YUKTI_SCREENSHOT_DIR to keep copies somewhere else.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest

from yukti.dashboard import launch
from dashboard_fixtures import make_history

CHROMIUM = shutil.which("chromium")
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]
# url path -> what shows the page finished: a chart for the chart pages, the answer or table otherwise
PAGES = {
    "tradeoffs": '[data-testid="stPlotlyChart"] .main-svg',
    "throughput": '[data-testid="stPlotlyChart"] .main-svg',
    "kernels": '[data-testid="stPlotlyChart"] .main-svg',
    "history": '[data-testid="stPlotlyChart"] .main-svg',
    "fidelity": '[data-testid="stPlotlyChart"] .main-svg',
    "precision": '[data-testid="stPlotlyChart"] .main-svg',
    "choose": '[data-testid="stCode"]',
    "runs": '[data-testid="stDataFrame"]',
    # measure: nothing pressed; jet_dnn and its evaluation data are read and described, the button offered
    "measure": '[data-testid="stButton"]',
}
# precision: a bounded global scan, no profile computed: four curves, the scan table's companion
# charts (overflows per layer, the chosen type's range)
# kernels: one ratio heatmap per batch size of the fixture sweep (1, 64, 1024)
EXPECTED_CHARTS = {"tradeoffs": 1, "throughput": 2, "kernels": 3, "history": 1, "fidelity": 2, "precision": 6, "choose": 0,
                   "runs": 0, "measure": 0}

# The server is another process, so the fixture history reaches it through a sitecustomize that
# replaces yukti.results.from_asv (asv itself is not run by these tests).
SITECUSTOMIZE = '''
import os
if os.environ.get("YUKTI_FAKE_ASV_PARQUET"):
    import pandas as pd
    import yukti.results

    def from_asv(results_dir, *, machine=None):
        return pd.read_parquet(os.environ["YUKTI_FAKE_ASV_PARQUET"])

    yukti.results.from_asv = from_asv
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(fixture_store: Path, tmp_path: Path) -> Iterator[str]:
    from fixture_curves import store_curves

    store_curves(fixture_store, "latest00002")  # what `yukti bench` stores with a run: the Fidelity page draws it
    from test_dashboard_precision import global_scan

    import yukti.precision

    yukti.precision.write_scan(global_scan(), fixture_store)  # what `yukti scan` stores: the Precision page draws it
    from test_dashboard_kernels import write_sweep_fixture

    write_sweep_fixture(fixture_store)  # what benchmarks/kernel_sweep.py stores: the Kernels page draws it
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(SITECUSTOMIZE)
    history = tmp_path / "history.parquet"
    make_history().to_parquet(history)
    repo = Path(launch.__file__).resolve().parents[2]  # the folder holding the yukti package
    env = {**os.environ, "YUKTI_RESULTS_DIR": str(fixture_store), "YUKTI_FAKE_ASV_PARQUET": str(history),
           "PYTHONPATH": os.pathsep.join([str(hook), str(repo), os.environ.get("PYTHONPATH", "")])}
    port = free_port()
    log = (tmp_path / "streamlit.log").open("w")
    process = subprocess.Popen(launch.command(port, "127.0.0.1"), env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                    break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"streamlit did not come up: {(tmp_path / 'streamlit.log').read_text()[-2000:]}")
            time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium is not installed (apt-get install chromium)")
def test_every_page_renders_in_chromium(server: str, tmp_path: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    keep = Path(os.environ["YUKTI_SCREENSHOT_DIR"]) if os.environ.get("YUKTI_SCREENSHOT_DIR") else None
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1800})  # tall: the whole page in one shot
            for name, ready in PAGES.items():
                page.goto(f"{server}/{name}", wait_until="domcontentloaded")  # every page at its own path
                # the first page load starts Streamlit's script runner: allow it time
                page.wait_for_selector(ready, state="visible", timeout=240_000)
                page.wait_for_selector('[data-testid="stStatusWidget"]', state="detached", timeout=240_000)
                page.wait_for_timeout(1500)  # plotly draws its traces after the container appears
                shot = tmp_path / f"{name}.png"
                page.screenshot(path=str(shot))
                if keep is not None:
                    keep.mkdir(parents=True, exist_ok=True)
                    shutil.copy(shot, keep / shot.name)
                assert "Page not found" not in page.content(), name
                exceptions = page.locator('[data-testid="stException"]')
                assert exceptions.count() == 0, f"{name}: {exceptions.first.inner_text()}"
                charts = page.locator('[data-testid="stPlotlyChart"]').count()
                assert charts == EXPECTED_CHARTS[name], f"{name}: {charts} charts"
                assert page.locator(".js-plotly-plot .scatterlayer .trace, .js-plotly-plot .barlayer .trace, "
                                    ".js-plotly-plot .heatmaplayer .hm").count() \
                    >= EXPECTED_CHARTS[name], f"{name}: charts without traces"
                if name == "measure":  # the default model's data, described before anything is measured
                    assert page.locator('[data-testid="stDataFrame"]').count() == 1
                    assert page.locator('[data-testid="stAlertContentError"]').count() == 0
            # The app's root opens Trade-offs at its own address.
            page.goto(server, wait_until="domcontentloaded")
            page.wait_for_url(f"{server}/tradeoffs", timeout=60_000)
            page.wait_for_selector(PAGES["tradeoffs"], state="visible", timeout=60_000)
            assert "Page not found" not in page.content()
        finally:
            browser.close()
