"""yukti.sweep on a real Dask cluster: a `dask scheduler` and two `dask worker` processes on 127.0.0.1,
started and stopped by this module. A 2 models x 3 backends x 2 batch sizes sweep stores every cell's
row; kill -9 of a worker measuring a cell loses only that cell, which runs again elsewhere (every cell
stored once, none lost); kill -9 of the client (`yukti sweep`) and `--resume` runs only the cells
missing; Ctrl-C (SIGINT) exits 130 with what is stored and how to continue.

The workers run without a nanny, so the process killed is the worker itself.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

import yukti
from yukti import results

from test_sweep import QUICK_TIMING, write_spec, write_tiny_onnx

pytestmark = pytest.mark.slow
N_CELLS = 2 * 3 * 2


def subprocess_env() -> dict[str, str]:
    """This process's environment (the test cache and store), plus the source tree on PYTHONPATH when
    yukti is imported from it rather than installed: workers must import the same yukti."""
    env = dict(os.environ)
    source = Path(yukti.__file__).resolve().parents[1]
    if (source / "pyproject.toml").is_file():
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(source), env.get("PYTHONPATH")) if p)
    return env


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


class Cluster:
    """A scheduler and its workers, each a subprocess this test owns."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.env = folder, subprocess_env()
        self.scheduler_file = folder / "scheduler.json"
        self.processes: list[subprocess.Popen] = []
        self.workers: list[subprocess.Popen] = []
        self.client = None
        self.log = open(folder / "cluster.log", "ab")  # the processes' output, shown when they fail to start

    def _start(self, *args: str) -> subprocess.Popen:
        # cwd outside the source tree: `python -m` puts the working directory first on sys.path
        process = subprocess.Popen([sys.executable, "-m", *args], cwd=self.folder, env=self.env,
                                   stdout=subprocess.DEVNULL, stderr=self.log)
        self.processes.append(process)
        return process

    def start(self) -> None:
        self._start("distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", "0",
                    "--scheduler-file", str(self.scheduler_file), "--no-dashboard")
        deadline = time.monotonic() + 60
        while not self.scheduler_file.is_file() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert self.scheduler_file.is_file(), (self.folder / "cluster.log").read_text()
        from distributed import Client

        self.client = Client(scheduler_file=str(self.scheduler_file))
        self.ensure_workers(2)

    def ensure_workers(self, n: int) -> None:
        self.workers = [w for w in self.workers if w.poll() is None]
        while len(self.workers) < n:
            self.workers.append(self._start("distributed.cli.dask_worker", "--scheduler-file", str(self.scheduler_file),
                                            "--nthreads", "1", "--resources", "cores=1", "--no-nanny", "--no-dashboard",
                                            "--death-timeout", "60"))
        deadline = time.monotonic() + 180  # worker processes start slowly on a busy machine
        while len(self.client.scheduler_info()["workers"]) != n and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(self.client.scheduler_info()["workers"]) == n, (self.folder / "cluster.log").read_text()

    def executing(self) -> dict[str, list[str]]:
        """Per worker address, the keys of the tasks it is running now."""
        return self.client.run(lambda dask_worker: [str(ts.key) for ts in dask_worker.state.executing])

    def wait_idle(self, timeout: float = 60) -> None:
        """Until no worker runs a task (a killed client's cells in flight finish and store themselves)."""
        deadline, quiet = time.monotonic() + timeout, 0
        while quiet < 3 and time.monotonic() < deadline:
            quiet = quiet + 1 if not any(self.executing().values()) else 0
            time.sleep(0.3)
        assert quiet >= 3, f"workers still busy after {timeout} s: {self.executing()}"

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
        for process in reversed(self.processes):
            stop(process)
        self.log.close()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, isolated_yukti_dirs):
    cluster = Cluster(tmp_path_factory.mktemp("dask"))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.close()


@pytest.fixture(scope="module")
def spec_folder(tmp_path_factory, jet_dnn):
    folder = tmp_path_factory.mktemp("specs")
    write_tiny_onnx(folder / "tiny.onnx")
    return folder


def grid(folder: Path, name: str, time_budget_s: float = 0.02) -> Path:
    """2 models x 3 backends x 2 batch sizes."""
    timing = QUICK_TIMING.replace("time_budget_s = 0.02", f"time_budget_s = {time_budget_s}")
    return write_spec(folder, f'name = "{name}"\nmodels = ["jet_dnn", "tiny.onnx"]\nbackends = ["cpp", "onnxruntime", "torch"]\n'
                              f'batch_sizes = [1, 64]\n{timing}', f"{name}.toml")


def stored_cells(store: Path, name: str) -> pd.DataFrame:
    frame = results.load(store)
    return frame[frame["sweep"] == name]


def test_a_sweep_on_a_running_cluster_stores_every_cell(cluster, spec_folder, tmp_path):
    store = tmp_path / "store"
    frame = yukti.sweep(grid(spec_folder, "on-cluster"), scheduler=str(cluster.scheduler_file), store=store)
    assert len(frame) == N_CELLS and (frame["status"] == "ok").all() and (frame["attempts"] == 1).all(), frame
    rows = stored_cells(store, "on-cluster")
    assert len(rows) == N_CELLS and sorted(rows["cell"]) == sorted(frame["cell"])
    assert set(zip(rows["model"], rows["backend"], rows["batch_size"])) == {
        (m, b, n) for m in ("jet_dnn", "tiny") for b in ("cpp", "onnxruntime", "torch") for n in (1, 64)}
    assert (rows["status"] == "ok").all() and rows["host"].notna().all() and (rows["latency_p50_us"] > 0).all()
    assert len(list(store.glob("*.parquet"))) == N_CELLS


def cell_runs(cluster: Cluster, cell: str) -> tuple[list[float], bool]:
    """(start times of the cell's runs, whether one finished), from the events its runs log (yukti.sweep.run_cell)."""
    events = [event for topic, logged in cluster.client.get_events().items()
              if topic.startswith("yukti-sweep-") and topic.endswith(cell) for event in logged]
    return [t for t, m in events if m["event"] == "start"], any(m["event"] == "done" for _, m in events)


def test_a_worker_killed_mid_cell_loses_only_that_cell(cluster, spec_folder, tmp_path):
    cluster.ensure_workers(2)
    pids = cluster.client.run(os.getpid)
    store = tmp_path / "store"
    outcome: dict[str, object] = {}

    def run() -> None:
        try:
            outcome["frame"] = yukti.sweep(grid(spec_folder, "kill-worker", 1.0), scheduler=str(cluster.scheduler_file),
                                           store=store)
        except BaseException as exc:  # noqa: BLE001 - reported by the test thread
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    def cell_just_started() -> tuple[str, str] | None:
        """(worker, cell) of a cell that started under half a second ago (a cell takes over a second)."""
        for address, keys in cluster.executing().items():
            for key in keys:
                cell = re.match(r"yukti-cell-([0-9a-f]+)-", key)[1]
                started, finished = cell_runs(cluster, cell)
                if started and not finished and time.time() - started[-1] < 0.5:
                    return address, cell
        return None

    found = None
    deadline = time.monotonic() + 120
    while found is None and time.monotonic() < deadline and thread.is_alive():
        if list(store.glob("*.parquet")):  # the first result has arrived: the sweep is under way
            found = cell_just_started()
        time.sleep(0 if found else 0.05)
    assert found is not None, f"no cell was seen running: {outcome}"
    victim, cell = found
    os.kill(pids[victim], signal.SIGKILL)
    thread.join(timeout=240)
    assert not thread.is_alive() and "error" not in outcome, outcome
    frame = outcome["frame"]
    by_cell = frame.set_index("cell")
    assert by_cell.loc[cell, "attempts"] == 2 and by_cell.loc[cell, "status"] == "ok"
    assert (frame["status"] == "ok").all() and frame["attempts"].between(1, 2).all()
    rows = stored_cells(store, "kill-worker")
    assert len(rows) == N_CELLS and rows["cell"].is_unique and set(rows["cell"]) == set(frame["cell"])
    assert len(list(store.glob("*.parquet"))) == N_CELLS


def run_cli(spec: Path, cluster: Cluster, store: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "yukti.cli", "sweep", str(spec), "--scheduler", str(cluster.scheduler_file),
                             "--store", str(store), "--quiet", *extra], cwd=spec.parent, env=cluster.env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_files(store: Path, n: int, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while len(list(store.glob("*.parquet"))) < n and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert process.poll() is None, process.communicate()
    assert len(list(store.glob("*.parquet"))) >= n


def test_resume_after_the_client_is_killed_runs_only_the_missing_cells(cluster, spec_folder, tmp_path):
    cluster.ensure_workers(2)
    spec, store = grid(spec_folder, "kill-client", 0.1), tmp_path / "store"
    client = run_cli(spec, cluster, store)
    try:
        wait_for_files(store, 3, client)
        client.send_signal(signal.SIGKILL)
    finally:
        stop(client)
        client.communicate()
    cluster.wait_idle()  # a cell in flight when the client died may still store itself
    before = {path.name: pd.read_parquet(path)["run_id"].iloc[0] for path in store.glob("*.parquet")}
    assert 3 <= len(before) < N_CELLS, "the client was killed too late to leave cells missing"

    again = run_cli(spec, cluster, store, "--resume")
    out, err = again.communicate(timeout=300)
    assert again.returncode == 0, out + err
    assert f"{N_CELLS} cells: {N_CELLS - len(before)} measured now, {len(before)} already stored, 0 ended in error" in out
    rows = stored_cells(store, "kill-client")
    assert len(rows) == N_CELLS and rows["cell"].is_unique and (rows["status"] == "ok").all()
    after = {path.name: pd.read_parquet(path)["run_id"].iloc[0] for path in store.glob("*.parquet")}
    assert {name: after[name] for name in before} == before  # cells stored before were not measured again


def test_ctrl_c_exits_130_and_says_how_to_continue(cluster, spec_folder, tmp_path):
    cluster.ensure_workers(2)
    spec, store = grid(spec_folder, "ctrl-c", 0.1), tmp_path / "store"
    client = run_cli(spec, cluster, store)
    try:
        wait_for_files(store, 1, client)
        client.send_signal(signal.SIGINT)
        out, err = client.communicate(timeout=60)
    finally:
        stop(client)
    assert client.returncode == 130, out + err
    match = re.search(r"interrupted: (\d+) of 12 cells are stored, (\d+) remain; .*--resume", err)
    assert match, out + err
    cluster.wait_idle()
    # everything the message calls stored is in the store, each cell once
    rows = stored_cells(store, "ctrl-c")
    assert rows["cell"].is_unique and len(rows) >= int(match[1]) >= 1
