"""yukti.sweep: a bad spec is refused before any cell runs with the line of the offending entry; the
grid expands to the cells it describes, with stable identities; a cell that fails is run once more and
then stored as an error row; Ctrl-C keeps what finished; a real LocalCluster stores every cell's row
and `resume` runs only what is missing or ended in error.

The in-process cluster (threads, no worker processes) tests the client's bookkeeping quickly; the
LocalCluster of worker processes is what `yukti sweep` starts. Worker deaths and an external
scheduler are tests/yukti/test_sweep_cluster.py's.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from onnx import TensorProto, helper, numpy_helper, save

import yukti
from yukti import registry, results, zoo
from yukti.cli import main
from yukti.sweep import SpecError, SweepInterrupted, load_spec

sweeps = sys.modules["yukti.sweep"]  # `yukti.sweep` is the function; the module's helpers are patched here

QUICK_TIMING = """eval_samples = 200
[timing]
time_budget_s = 0.02
min_calls = 5
warmup_calls = 2
warmup_s = 0.0
"""


def write_tiny_onnx(path: Path, features: int = 16, classes: int = 5) -> Path:
    """A one-layer classifier (Gemm + Softmax) as a user's bare .onnx file: quick to build on every backend."""
    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.normal(size=(features, classes)).astype(np.float32), "W")
    bias = numpy_helper.from_array(rng.normal(size=(classes,)).astype(np.float32), "b")
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "W", "b"], ["z"], name="fc"), helper.make_node("Softmax", ["z"], ["y"], name="sm", axis=1)],
        "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", features])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", classes])], [weight, bias])
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))
    return path


def write_spec(folder: Path, text: str, name: str = "grid.toml") -> Path:
    path = folder / name
    path.write_text(text)
    return path


def marked_line(text: str) -> int:
    """The 1-based line of `text` that ends with `# HERE`: where the error must point."""
    (line,) = [i + 1 for i, row in enumerate(text.splitlines()) if row.rstrip().endswith("# HERE")]
    return line


# -- a bad spec: one clear error naming the line, before any cell runs -----------------------------

GRID = 'models = ["jet_dnn"]\nbackends = ["cpp", "onnxruntime"]\nbatch_sizes = [1, 64]\n'

BAD_SPECS = {
    "malformed TOML": ('models = ["jet_dnn"]\nbackends = ["cpp" "onnxruntime"]  # HERE\nbatch_sizes = [1]\n', "malformed TOML"),
    "unknown key": (GRID + 'batch_size = [8]  # HERE\n', "unknown key 'batch_size'"),
    "unknown model": ('models = [\n  "jet_dnn",\n  "jet_dnnn",  # HERE\n]\nbackends = ["cpp"]\nbatch_sizes = [1]\n',
                      f"unknown model 'jet_dnnn': not a zoo model ({', '.join(zoo.names())})"),
    "missing onnx file": ('models = ["models/missing.onnx"]  # HERE\nbackends = ["cpp"]\nbatch_sizes = [1]\n', "no ONNX file at"),
    "unknown backend": ('models = ["jet_dnn"]\nbackends = [\n  "onnxruntime",\n  "cppp",  # HERE\n]\nbatch_sizes = [1]\n',
                        f"unknown backend 'cppp'; registered backends are {registry.names()}"),
    "unknown option": (GRID + '[options.cpp]\nopt_level = "-O2"\nfast_mathh = true  # HERE\n', "has no option(s) ['fast_mathh']"),
    "bad option value": (GRID + '[options.cpp]\nopt_level = [\n  "-O2",\n  "-O9",  # HERE\n]\n', "opt_level must be one of"),
    "bad option value as a dotted key": (GRID + '[options]\ncpp.opt_level = "-O9"  # HERE\n', "opt_level must be one of"),
    "options of a backend not measured": (GRID + '[options.torch]  # HERE\nsource = "onnx"\n',
                                          "options given for backend 'torch', which backends does not list"),
    "threads among the options": (GRID + '[options.onnxruntime]\nthreads = 2  # HERE\n', "threads is the grid's own axis"),
    "empty grid": ('models = ["jet_dnn"]\nbackends = ["cpp"]\nbatch_sizes = []  # HERE\n', "batch_sizes is an empty list"),
    "empty option axis": (GRID + '[options.cpp]\nopt_level = []  # HERE\n', "options.cpp.opt_level is an empty list"),
    "batch size 0": ('models = ["jet_dnn"]\nbackends = ["cpp"]\nbatch_sizes = [1, 0]  # HERE\n', "integers >= 1; got 0"),
    "batch size as text": ('models = ["jet_dnn"]\nbackends = ["cpp"]\nbatch_sizes = [\n  1,\n  "64",  # HERE\n]\n',
                           "integers >= 1; got '64'"),
    "fractional batch size": ('models = ["jet_dnn"]\nbackends = ["cpp"]\nbatch_sizes = [2.5]  # HERE\n', "got 2.5"),
    "threads 0": (GRID + 'threads = [0]  # HERE\n', "threads must be integers >= 1; got 0"),
    "threads true": (GRID + 'threads = [true]  # HERE\n', "threads must be integers >= 1; got True"),
    "listed twice": ('models = ["jet_dnn"]\nbackends = ["cpp", "cpp"]  # HERE\nbatch_sizes = [1]\n', "lists 'cpp' twice"),
    "unknown dataset": (GRID + 'datasets = ["jets_synthetik"]  # HERE\n', "unknown dataset 'jets_synthetik'"),
    "table without target": (GRID + 'datasets = ["table.csv"]  # HERE\n', "needs target"),
    "unknown timing key": (GRID + '[timing]\nbudget_s = 1  # HERE\n', "unknown timing key 'budget_s'"),
    "bad timing value": (GRID + '[timing]\nmin_calls = 10\ntime_budget_s = -1  # HERE\n', "time_budget_s must be a finite number > 0"),
}


@pytest.mark.parametrize("kind", list(BAD_SPECS))
def test_a_bad_spec_names_the_file_and_the_line(tmp_path, kind):
    text, message = BAD_SPECS[kind]
    (tmp_path / "table.csv").write_text("a,b,label\n1,2,0\n")
    path = write_spec(tmp_path, text)
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    assert caught.value.line == marked_line(text), str(caught.value)
    assert message in str(caught.value)
    assert str(caught.value).startswith(f"{path}, line {marked_line(text)}: ")
    assert isinstance(caught.value, yukti.InputError)


def test_a_missing_grid_key_is_named(tmp_path):
    with pytest.raises(SpecError, match="missing key 'batch_sizes'"):
        load_spec(write_spec(tmp_path, 'models = ["jet_dnn"]\nbackends = ["cpp"]\n'))


def test_a_spec_given_as_a_mapping_is_checked_the_same_way_without_lines():
    with pytest.raises(SpecError) as caught:
        load_spec({"models": ["jet_dnn"], "backends": ("onnxruntime", "cppp"), "batch_sizes": [1]})
    assert caught.value.line is None and str(caught.value).startswith("sweep spec: unknown backend 'cppp'")


def test_the_example_spec_of_the_help_text_is_a_valid_spec(tmp_path, capsys, jet_dnn):
    with pytest.raises(SystemExit):
        from yukti.cli import build_parser

        build_parser().parse_args(["sweep", "--help"])
    example = capsys.readouterr().out.split("A spec")[1].split("\n\n")[1]  # the indented block after the heading
    write_tiny_onnx(tmp_path / "tagger.onnx")
    spec = load_spec(write_spec(tmp_path, "\n".join(line[2:] for line in example.splitlines()) + "\n"))
    assert spec.name == "jets-2026" and len(spec.cells) == 2 * 3 * (2 + 1)  # cpp: two opt levels
    assert spec.policy.time_budget_s == 0.5


def test_a_bad_spec_fails_before_any_cell_runs(tmp_path, monkeypatch, capsys):
    def no_cluster(*args, **kwargs):
        raise AssertionError("a cluster was started for a spec that cannot run")

    monkeypatch.setattr(sweeps, "_client", no_cluster)
    text = GRID + "[options.cpp]\nopt_level = \"-O9\"  # HERE\n"
    path = write_spec(tmp_path, text)
    with pytest.raises(SpecError):
        yukti.sweep(path, store=tmp_path / "store")
    assert not (tmp_path / "store").exists()
    # the command line: a usage error (2) whose message names the line
    assert main(["sweep", str(path), "--store", str(tmp_path / "store"), "--quiet"]) == 2
    assert f"line {marked_line(text)}" in capsys.readouterr().out


# -- expansion and cell identity -------------------------------------------------------------------

def test_the_grid_expands_to_one_cell_per_combination(tmp_path, jet_dnn):
    write_tiny_onnx(tmp_path / "tiny.onnx")
    text = """name = "expansion"
models = ["jet_dnn", "tiny.onnx"]
backends = ["cpp", "onnxruntime", "fixed"]
batch_sizes = [1, 64, 1024]
threads = [1, 2]
[options.cpp]
opt_level = ["-O2", "-O3"]
extra_flags = [[], ["-funroll-loops"]]
[options.fixed]
precision = ["ap_fixed<16,6>", "ap_fixed<10,4,AP_RND,AP_SAT>"]
count_overflows = true
"""
    spec = load_spec(write_spec(tmp_path, text))
    # per model, batch size and threads: cpp 2 x 2 option combinations, onnxruntime 1, fixed 2
    assert len(spec.cells) == 2 * 3 * 2 * (4 + 1 + 2)
    assert len({cell.key for cell in spec.cells}) == len(spec.cells)
    assert spec.name == "expansion" and spec.max_threads == 2
    cpp = [c for c in spec.cells if c.backend == "cpp" and c.model_name == "tiny" and c.batch_size == 1 and c.threads == 2]
    assert sorted((c.options["opt_level"], tuple(c.options["extra_flags"])) for c in cpp) == [
        ("-O2", ()), ("-O2", ("-funroll-loops",)), ("-O3", ()), ("-O3", ("-funroll-loops",))]
    assert all(c.resolved["threads"] == 2 for c in cpp)  # the grid's threads reach the backend's option
    fixed = [c for c in spec.cells if c.backend == "fixed"]
    assert {c.resolved["precision"] for c in fixed} == {"ap_fixed<16,6>", "ap_fixed<10,4,AP_RND,AP_SAT>"}
    assert all(c.resolved["count_overflows"] is True for c in fixed)
    tiny = next(c for c in spec.cells if c.model_name == "tiny")
    assert tiny.model == str((tmp_path / "tiny.onnx").resolve()) and tiny.model_hash == yukti.load(tmp_path / "tiny.onnx").hash

    # identities are stable: the same spec gives the same keys, a grown grid keeps the old cells' keys,
    # and another sweep name gives other keys (resume is scoped to the name)
    assert [c.key for c in load_spec(write_spec(tmp_path, text)).cells] == [c.key for c in spec.cells]
    grown = load_spec(write_spec(tmp_path, text.replace("[1, 64, 1024]", "[1, 8, 64, 1024]")))
    assert {c.key for c in spec.cells} < {c.key for c in grown.cells}
    renamed = load_spec(write_spec(tmp_path, text.replace('"expansion"', '"other"')))
    assert not {c.key for c in spec.cells} & {c.key for c in renamed.cells}
    # the default name is the spec file's stem
    assert load_spec(write_spec(tmp_path, text.replace('name = "expansion"\n', ""), "jets-2026.toml")).name == "jets-2026"


def test_a_table_dataset_is_an_axis_with_its_target(tmp_path, jet_dnn):
    (tmp_path / "table.csv").write_text("a,b,label\n1,2,0\n")
    spec = load_spec(write_spec(tmp_path, GRID + 'datasets = ["jets_synthetic", "table.csv"]\ntarget = "label"\n'))
    assert len(spec.cells) == 1 * 2 * 2 * 2
    table = [c for c in spec.cells if c.dataset_label == "table.csv"]
    assert len(table) == 4 and all(c.dataset == str((tmp_path / "table.csv").resolve()) and c.target == "label" for c in table)
    assert all(c.target is None for c in spec.cells if c.dataset_label == "jets_synthetic")


# -- the client's bookkeeping on an in-process cluster ---------------------------------------------

@pytest.fixture(scope="module")
def inprocess_scheduler():
    """A Dask cluster whose one worker is a thread of this process: patched functions reach it."""
    import logging

    from distributed import LocalCluster

    cluster = LocalCluster(n_workers=1, threads_per_worker=1, processes=False, resources={"cores": 1},
                           dashboard_address=":0", silence_logs=logging.ERROR)
    try:
        yield cluster.scheduler_address
    finally:
        cluster.close()


@pytest.fixture
def tiny_spec(tmp_path):
    """Two cells: the tiny model on onnxruntime at batch sizes 1 and 2."""
    write_tiny_onnx(tmp_path / "tiny.onnx")
    return write_spec(tmp_path, 'name = "bookkeeping"\nmodels = ["tiny.onnx"]\nbackends = ["onnxruntime"]\n'
                                'batch_sizes = [1, 2]\n' + QUICK_TIMING)


def flaky_benchmark(monkeypatch, failures: int):
    """yukti.engine.benchmark failing the first `failures` calls at batch size 2 (every call: -1)."""
    from yukti import engine

    real, calls = engine.benchmark, []

    def benchmark(model, *args, batch_sizes, **kwargs):
        calls.append(batch_sizes[0])
        if batch_sizes == [2] and (failures < 0 or calls.count(2) <= failures):
            raise RuntimeError("simulated failure in the cell")
        return real(model, *args, batch_sizes=batch_sizes, **kwargs)

    monkeypatch.setattr(engine, "benchmark", benchmark)
    return calls


def test_a_cell_that_fails_twice_is_stored_as_an_error_row(tmp_path, monkeypatch, inprocess_scheduler, tiny_spec):
    calls = flaky_benchmark(monkeypatch, failures=-1)
    store = tmp_path / "store"
    frame = yukti.sweep(tiny_spec, scheduler=inprocess_scheduler, store=store)
    assert sorted(calls) == [1, 2, 2]  # the failing cell ran twice, the other once
    by_batch = frame.set_index("batch_size")
    assert by_batch.loc[1, "status"] == "ok" and by_batch.loc[1, "attempts"] == 1
    assert by_batch.loc[2, "status"] == "error" and by_batch.loc[2, "attempts"] == 2
    assert by_batch.loc[2, "error"].startswith("failed twice; last: RuntimeError: simulated failure in the cell")
    stored = results.load(store)
    assert len(stored) == 2 and set(stored["cell"]) == set(frame["cell"]) and set(stored["sweep"]) == {"bookkeeping"}
    error_row = stored[stored["batch_size"] == 2].iloc[0]
    assert error_row["status"] == "error" and "simulated failure" in error_row["error"]
    assert error_row["backend"] == "onnxruntime" and error_row["model"] == "tiny"
    assert Path(by_batch.loc[2, "file"]).name == f"sweep-bookkeeping-{by_batch.loc[2, 'cell']}.parquet"

    # resume: the stored cell is skipped, the error cell runs again (now it succeeds) into the same file
    monkeypatch.undo()
    again = yukti.sweep(tiny_spec, scheduler=inprocess_scheduler, store=store, resume=True)
    assert again.set_index("batch_size").loc[1, "ran"] == False  # noqa: E712 - numpy bool
    assert again.set_index("batch_size").loc[2, "ran"] == True and (again["status"] == "ok").all()  # noqa: E712
    stored = results.load(store)
    assert len(stored) == 2 and (stored["status"] == "ok").all()
    assert len(list(store.glob("*.parquet"))) == 2


def test_a_cell_that_fails_once_is_run_again(tmp_path, monkeypatch, inprocess_scheduler, tiny_spec):
    flaky_benchmark(monkeypatch, failures=1)
    frame = yukti.sweep(tiny_spec, scheduler=inprocess_scheduler, store=tmp_path / "store")
    assert (frame["status"] == "ok").all()
    assert frame.set_index("batch_size")["attempts"].to_dict() == {1: 1, 2: 2}
    assert len(results.load(tmp_path / "store")) == 2


def test_ctrl_c_keeps_finished_cells_and_resume_runs_the_rest(tmp_path, monkeypatch, inprocess_scheduler, tiny_spec):
    real_done = sweeps._Bar.done

    def interrupted(self, failed):  # Ctrl-C as the first cell's result comes in
        real_done(self, failed)
        raise KeyboardInterrupt

    monkeypatch.setattr(sweeps._Bar, "done", interrupted)
    store = tmp_path / "store"
    with pytest.raises(SweepInterrupted) as caught:
        yukti.sweep(tiny_spec, scheduler=inprocess_scheduler, store=store)
    assert isinstance(caught.value, KeyboardInterrupt)
    partial = caught.value.result
    finished = partial[partial["status"] == "ok"]
    assert len(finished) >= 1 and str(caught.value).startswith(f"{len(finished)} of 2 cells are stored")
    assert "--resume" in str(caught.value)
    assert {p.name for p in store.glob("*.parquet")} >= {Path(f).name for f in finished["file"]}

    monkeypatch.undo()
    rest = yukti.sweep(tiny_spec, scheduler=inprocess_scheduler, store=store, resume=True)
    assert int(rest["ran"].sum()) == 2 - len(finished) and (rest["status"] == "ok").all()
    assert len(results.load(store)) == 2


def test_a_cell_run_counts_the_runs_before_it_from_the_scheduler_events(tmp_path, monkeypatch, inprocess_scheduler, tiny_spec):
    from distributed import Client

    from yukti import engine

    cell = load_spec(tiny_spec).cells[0]
    with Client(inprocess_scheduler) as client:
        def run(topic):
            return client.submit(sweeps.run_cell, cell, str(tmp_path), "bookkeeping", sweeps.TimingPolicy(), 200, topic,
                                 pure=False, resources={"cores": 1})

        # two runs started and never finished (their workers died): a third refuses to measure
        for _ in range(2):
            client.log_event("given-up", {"event": "start"})
        assert isinstance(run("given-up").exception(), sweeps.CellGivenUp)

        # a run that finished logged its outcome: a rerun (its result lost with a worker) returns it unmeasured
        monkeypatch.setattr(engine, "benchmark", lambda *a, **k: pytest.fail("measured a cell that had finished"))
        logged = {"status": "ok", "error": None, "attempts": 1, "host": "h", "latency_p50_us": 1.5,
                  "throughput_per_s": 2.0, "file": "f"}
        client.log_event("finished", {"event": "start"})
        client.log_event("finished", {"event": "done", "outcome": logged})
        assert run("finished").result() == logged
        assert not list(tmp_path.glob("*.parquet"))


def test_an_external_cluster_without_the_cores_resource_is_refused(tmp_path, tiny_spec):
    import logging

    from distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0",
                      silence_logs=logging.ERROR) as cluster:
        with pytest.raises(yukti.YuktiError, match=r"--resources cores=1"):
            yukti.sweep(tiny_spec, scheduler=cluster.scheduler_address, store=tmp_path / "store")
    assert not list((tmp_path / "store").glob("*.parquet"))


# -- a real LocalCluster of worker processes -------------------------------------------------------

@pytest.mark.slow
def test_a_local_cluster_sweep_stores_every_cell_and_resume_runs_only_what_is_missing(tmp_path, jet_dnn, capsys):
    write_tiny_onnx(tmp_path / "tiny.onnx")
    spec = write_spec(tmp_path, 'name = "local"\nmodels = ["jet_dnn", "tiny.onnx"]\nbackends = ["cpp", "onnxruntime"]\n'
                                'batch_sizes = [1]\n' + QUICK_TIMING)
    store = tmp_path / "store"
    frame = yukti.sweep(spec, workers=2, store=store)
    assert len(frame) == 4 and (frame["status"] == "ok").all() and frame["ran"].all() and (frame["attempts"] == 1).all()
    assert frame.attrs["dashboard"].startswith("http")
    stored = results.load(store)
    assert len(stored) == 4 and sorted(stored["cell"]) == sorted(frame["cell"])  # every cell once
    assert set(zip(stored["model"], stored["backend"])) == {(m, b) for m in ("jet_dnn", "tiny") for b in ("cpp", "onnxruntime")}
    assert stored["host"].notna().all() and stored["cpu"].notna().all()  # the worker's fingerprint
    assert (stored["sweep"] == "local").all() and (stored["latency_p50_us"] > 0).all()

    # everything stored: resume measures nothing (and starts no cluster)
    assert not yukti.sweep(spec, store=store, resume=True)["ran"].any()

    # one cell lost, one ended in error: resume runs exactly those two
    lost, failed = frame["file"].iloc[0], frame["file"].iloc[3]
    Path(lost).unlink()
    rows = pd.read_parquet(failed)
    rows["status"], rows["error"] = "error", "simulated"
    results.write_run(rows, Path(failed))
    untouched = {f: pd.read_parquet(f)["run_id"].iloc[0] for f in frame["file"].iloc[1:3]}
    assert main(["sweep", str(spec), "--store", str(store), "--resume", "--workers", "1", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "4 cells: 2 measured now, 2 already stored, 0 ended in error" in out
    stored = results.load(store)
    assert len(stored) == 4 and (stored["status"] == "ok").all() and sorted(stored["cell"]) == sorted(frame["cell"])
    assert {f: pd.read_parquet(f)["run_id"].iloc[0] for f in untouched} == untouched


CRASHING_PRELOAD = """
import os


def dask_setup(worker):
    # The cell at batch size 2 kills its worker process, as a backend that crashes would.
    from yukti import engine

    real = engine.benchmark

    def benchmark(model, *args, batch_sizes, **kwargs):
        if list(batch_sizes) == [2]:
            os._exit(17)
        return real(model, *args, batch_sizes=batch_sizes, **kwargs)

    engine.benchmark = benchmark
"""


@pytest.mark.slow
def test_a_cell_whose_worker_dies_twice_is_stored_as_an_error_and_the_others_finish(tmp_path, tiny_spec):
    import dask

    preload = tmp_path / "crash_at_batch_2.py"
    preload.write_text(CRASHING_PRELOAD)
    store = tmp_path / "store"
    with dask.config.set({"distributed.worker.preload": [str(preload)]}):  # reaches the spawned workers
        frame = yukti.sweep(tiny_spec, workers=1, store=store)
    by_batch = frame.set_index("batch_size")
    # the other cell is measured once, even when its result dies with the worker before the client has it
    assert by_batch.loc[1, "status"] == "ok" and by_batch.loc[1, "attempts"] == 1
    assert by_batch.loc[2, "status"] == "error" and by_batch.loc[2, "attempts"] == 2
    assert by_batch.loc[2, "error"].startswith("worker died twice while measuring (KilledWorker")
    stored = results.load(store)
    assert len(stored) == 2 and stored["cell"].is_unique
    assert stored.set_index("batch_size").loc[2, "error"].startswith("worker died twice")

