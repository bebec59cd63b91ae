"""The conformance baseline's file and its verdicts (conformance_baseline.py), without compiling."""

from __future__ import annotations

from pathlib import Path

import pytest

import conformance_baseline as baseline
from conformance_baseline import Expectation

PASS, REFUSED, NOT_RUN = Expectation("Abs", "pass"), Expectation("Abs", "refused"), Expectation("Abs", "not run")


def test_the_file_round_trips_sorted(tmp_path: Path) -> None:
    path = tmp_path / "baseline.csv"
    cases = {"test_b": REFUSED, "test_a": PASS, "test_c": Expectation("Softmax (expanded)", "not run")}
    baseline.write(cases, path)
    assert baseline.read(path) == cases
    assert path.read_text().splitlines()[1:] == ["test_a,Abs,pass", "test_b,Abs,refused",
                                                 "test_c,Softmax (expanded),not run"]
    assert baseline.read(tmp_path / "missing.csv") == {}


@pytest.mark.parametrize("text, message", [("name,op,status\n", "header"),
                                           ("case,operator,expected\ntest_a,Abs,fail\n", "line 2: expected outcome 'fail'")])
def test_a_malformed_file_is_refused_by_name(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "baseline.csv"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        baseline.read(path)


def test_only_a_passing_case_that_stops_running_regresses() -> None:
    assert baseline.regression(PASS, "refused") and baseline.regression(PASS, "not run")
    assert not baseline.regression(PASS, "pass")
    assert not baseline.regression(REFUSED, "not run") and not baseline.regression(None, "refused")


def test_an_update_keeps_cases_not_run_and_drops_those_no_longer_collected() -> None:
    before = {"test_a": REFUSED, "test_b": PASS, "test_gone": PASS}
    after = baseline.updated(before, {"test_a": PASS, "test_new": NOT_RUN}, {"test_a", "test_b", "test_new"})
    assert after == {"test_a": PASS, "test_b": PASS, "test_new": NOT_RUN}


def test_the_report_names_every_change(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(baseline.UPDATE_ENV, raising=False)
    before = {"test_a": REFUSED, "test_b": PASS, "test_c": REFUSED, "test_same": PASS, "test_gone": PASS}
    observed = {"test_a": PASS, "test_b": REFUSED, "test_c": NOT_RUN, "test_same": PASS, "test_new": REFUSED}
    lines = baseline.report(before, observed, set(observed))
    assert lines == ["regressed (pass before): 1: test_b (refused)", "newly pass: 1: test_a (was refused)",
                     "not in the baseline: 1: test_new (refused)", "changed: 1: test_c (refused -> not run)",
                     "in the baseline, no longer collected: 1: test_gone",
                     f"to record these outcomes as the baseline: {baseline.UPDATE_HINT}"]
    assert baseline.report(before, {"test_same": PASS}, set(before)) == [
        "every case that ran is as in the baseline (conformance_baseline.csv)"]
