"""The Hosts page and the host selector (dashboard/ui.py `pick_hosts`) on a store measured on two
machines: both hosts side by side, the latest run per host, and the selector filtering the pages
where mixing hosts would mislead."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from dashboard_fixtures import LATEST, OLDER, figures, make_run, open_page
from yukti import results
from yukti.dashboard import data

SMALL = "nodeA · Fixture CPU · 2 cores"
BIG = "nodeB · Bigger CPU · 8 cores"
BACKENDS = {"reference", "onnxruntime", "torch", "cpp"}


def _on_host(run: pd.DataFrame, host: str, cpu: str, cores: int, speedup: float = 1.0) -> pd.DataFrame:
    latencies = [c for c in run.columns if c.startswith("latency_")]
    return run.assign(host=host, cpu=cpu, cpu_cores=cores,
                      **{c: pd.to_numeric(run[c]) / speedup for c in latencies},
                      throughput_per_s=run["throughput_per_s"] * speedup)


@pytest.fixture
def two_host_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """nodeA: an older and a newer run (the fixture's); nodeB, a bigger machine: the newer run's
    backends twice as fast, stored between nodeA's two runs."""
    store = tmp_path / "results"
    results.append(_on_host(make_run("a-older", OLDER, "2025-01-01T10:00:00Z"), "nodeA", "Fixture CPU", 2), store)
    results.append(_on_host(make_run("b-latest", LATEST, "2025-01-15T10:00:00Z"), "nodeB", "Bigger CPU", 8, 2.0), store)
    results.append(_on_host(make_run("a-latest", LATEST, "2025-02-01T10:00:00Z"), "nodeA", "Fixture CPU", 2), store)
    monkeypatch.setenv("YUKTI_RESULTS_DIR", str(store))
    return store


def _table(at, *columns: str) -> pd.DataFrame:
    return next(t.value for t in at.dataframe if set(columns) <= set(t.value.columns))


def test_hosts_page_puts_both_hosts_side_by_side(two_host_store: Path) -> None:
    at = open_page("hosts")
    assert at.sidebar.multiselect(key="hosts_hosts").value == [SMALL, BIG]  # every host, by default
    (fig,) = figures(at)
    assert {t["name"] for t in fig["data"]} == {SMALL, BIG}
    assert all(t["type"] == "bar" for t in fig["data"]) and fig["layout"]["barmode"] == "group"
    assert all(set(t["x"]) == BACKENDS for t in fig["data"])  # one bar per backend and host
    table = _table(at, "label", "host_label", "vs_fastest_host")
    assert len(table) == 2 * len(BACKENDS)
    by = table.set_index(["host_label", "label"])
    # each host's latest run: nodeA's older run (torch at 0.5 µs) is not shown, nodeB's run is
    assert by.loc[(SMALL, "torch"), "latency_p50_us"] == pytest.approx(LATEST["torch"][1])
    assert by.loc[(SMALL, "torch"), "run_id"] == "a-latest" and by.loc[(BIG, "torch"), "run_id"] == "b-latest"
    assert by.loc[(BIG, "cpp"), "latency_p50_us"] == pytest.approx(LATEST["cpp"][1] / 2)
    assert by.xs(BIG)["vs_fastest_host"].tolist() == pytest.approx([1.0] * 4)
    assert by.xs(SMALL)["vs_fastest_host"].tolist() == pytest.approx([2.0] * 4)


def test_hosts_page_switches_metric_and_batch(two_host_store: Path) -> None:
    at = open_page("hosts")
    at.sidebar.radio(key="hosts_metric").set_value("throughput_per_s").run()
    at.sidebar.selectbox(key="hosts_batch").set_value(1024).run()
    assert not at.exception
    (fig,) = figures(at)
    assert fig["layout"]["yaxis"]["title"]["text"] == data.metric_label("throughput_per_s")
    assert "batch 1024" in fig["layout"]["title"]["text"]


def test_the_host_selector_filters_the_hosts_page(two_host_store: Path) -> None:
    at = open_page("hosts")
    at.sidebar.multiselect(key="hosts_hosts").set_value([BIG]).run()
    assert not at.exception
    (fig,) = figures(at)
    assert [t["name"] for t in fig["data"]] == [BIG]
    assert any("Only one host" in i.value for i in at.info)
    assert set(_table(at, "host_label", "vs_fastest_host")["host_label"]) == {BIG}


def test_throughput_keeps_hosts_apart_and_the_selector_filters_it(two_host_store: Path) -> None:
    at = open_page("throughput")
    tput = figures(at)[0]
    assert {t["name"] for t in tput["data"]} == {f"{b} · {h}" for b in BACKENDS for h in ("nodeA", "nodeB")}
    at.sidebar.multiselect(key="throughput_hosts").set_value([SMALL]).run()
    assert not at.exception
    tput = figures(at)[0]
    assert {t["name"] for t in tput["data"]} == BACKENDS  # one host: plain backend names again
    assert all("Fixture CPU" in c.value for c in at.caption if c.value.startswith("Data:"))


def test_tradeoffs_front_of_one_host(two_host_store: Path) -> None:
    at = open_page("tradeoffs")
    (fig,) = figures(at)
    assert {"cpp · nodeA", "cpp · nodeB"} <= {t["name"] for t in fig["data"]}
    at.sidebar.multiselect(key="tradeoffs_hosts").set_value([SMALL]).run()
    assert not at.exception
    (fig,) = figures(at)
    front = next(t for t in fig["data"] if t["name"] == "Pareto front")
    assert sorted(front["text"]) == ["cpp", "onnxruntime"]  # nodeA's latest run, as on a one-host store


def test_no_host_picked_stops_the_page_with_a_word(two_host_store: Path) -> None:
    at = open_page("tradeoffs")
    at.sidebar.multiselect(key="tradeoffs_hosts").set_value([]).run()
    assert not at.exception and not figures(at)
    assert any("at least one host" in w.value for w in at.warning)


def test_a_one_host_store_has_no_host_selector(fixture_store: Path) -> None:
    for page in ("throughput", "tradeoffs", "choose", "hosts"):
        at = open_page(page)
        assert not [m for m in at.sidebar.multiselect if m.key and m.key.endswith("_hosts")], page
    assert any("Only one host" in i.value for i in at.info)  # the Hosts page says what it needs


def test_host_labels_tell_machines_apart() -> None:
    frame = pd.DataFrame({"host": ["n1", "n1", None, "n2"], "cpu": ["Xeon", "EPYC", None, "Xeon"],
                          "cpu_cores": [4, 64.0, None, 4], "status": "ok"})
    assert data.host_labels(frame).tolist() == ["n1 · Xeon · 4 cores", "n1 · EPYC · 64 cores",
                                                "unknown host · unknown CPU · ? cores", "n2 · Xeon · 4 cores"]
    assert data.hosts(frame) == sorted(data.host_labels(frame))
    assert len(data.on_hosts(frame, ["n1 · EPYC · 64 cores"])) == 1
    # the same host name on two machines: the short names would collide, so the whole label is kept
    assert data.short_host_names(["n1 · Xeon · 4 cores", "n1 · EPYC · 64 cores"]) == {
        "n1 · Xeon · 4 cores": "n1 · Xeon · 4 cores", "n1 · EPYC · 64 cores": "n1 · EPYC · 64 cores"}
    assert data.short_host_names(["n1 · Xeon · 4 cores", "n2 · Xeon · 4 cores"]) == {
        "n1 · Xeon · 4 cores": "n1", "n2 · Xeon · 4 cores": "n2"}
