"""The expected outcome of every ONNX node test case on the cpp backend, kept in
conformance_baseline.csv beside this file (one row per case: case, operator, expected), so that
test_conformance.py fails when a case that passed is now refused or not run (a regression in
`supports()` or in the rewriting of cases), instead of skipping it.

To record the outcomes of a run (after adding an operator, or to accept a change on purpose):

    YUKTI_UPDATE_CONFORMANCE=1 pytest tests/runners/cpp/test_conformance.py

Only the cases that ran are rewritten (a `-k` selection updates just those); cases that no longer
exist (their operator left `supported_ops()`, or the installed onnx dropped them) are removed; a
case that fails (wrong numbers, a crash) keeps its previous row and still fails the run.
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass
from pathlib import Path

from yukti.cache import atomic_write_bytes

BASELINE_PATH = Path(__file__).with_name("conformance_baseline.csv")
UPDATE_ENV = "YUKTI_UPDATE_CONFORMANCE"
UPDATE_HINT = f"{UPDATE_ENV}=1 pytest tests/runners/cpp/test_conformance.py"
EXPECTED = ("pass", "refused", "not run")  # the outcomes a baseline may hold: a "fail" is never expected
FIELDS = ["case", "operator", "expected"]


@dataclass(frozen=True)
class Expectation:
    op: str  # the summary table's row: "Softmax", or "Softmax (expanded)" for a function body
    status: str  # one of EXPECTED


def updating() -> bool:
    """Whether this run rewrites the baseline (YUKTI_UPDATE_CONFORMANCE set and not 0)."""
    return os.environ.get(UPDATE_ENV, "").strip() not in ("", "0")


def read(path: Path = BASELINE_PATH) -> dict[str, Expectation]:
    """The baseline by case name; empty when the file does not exist."""
    if not path.is_file():
        return {}
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames != FIELDS:
            raise ValueError(f"{path}: header {reader.fieldnames}, expected {','.join(FIELDS)}")
        baseline = {}
        for row in reader:
            if row["expected"] not in EXPECTED:
                raise ValueError(f"{path} line {reader.line_num}: expected outcome {row['expected']!r}, "
                                 f"expected one of {', '.join(EXPECTED)}")
            baseline[row["case"]] = Expectation(row["operator"], row["expected"])
    return baseline


def write(baseline: dict[str, Expectation], path: Path = BASELINE_PATH) -> None:
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(FIELDS)
    writer.writerows([name, e.op, e.status] for name, e in sorted(baseline.items()))
    atomic_write_bytes(path, text.getvalue().encode())


def regression(expected: Expectation | None, status: str) -> str:
    """Why an outcome breaks the baseline ('' when it does not): a passing case no longer runs."""
    if expected is not None and expected.status == "pass" and status in ("refused", "not run"):
        return f"{status}, but it passes in the baseline ({BASELINE_PATH.name})"
    return ""


def updated(baseline: dict[str, Expectation], observed: dict[str, Expectation],
            collected: set[str]) -> dict[str, Expectation]:
    """The baseline with this run's outcomes; cases that are no longer collected are dropped."""
    return {name: e for name, e in {**baseline, **observed}.items() if name in collected}


def report(baseline: dict[str, Expectation], observed: dict[str, Expectation], collected: set[str]) -> list[str]:
    """What this run changes against the baseline, one line per kind of change."""
    changes: dict[str, list[str]] = {"regressed (pass before)": [], "newly pass": [], "not in the baseline": [],
                                     "changed": [], "in the baseline, no longer collected": []}
    for name, now in sorted(observed.items()):
        before = baseline.get(name)
        if before is None:
            changes["newly pass" if now.status == "pass" else "not in the baseline"].append(f"{name} ({now.status})")
        elif before.status == now.status:
            continue
        elif regression(before, now.status):
            changes["regressed (pass before)"].append(f"{name} ({now.status})")
        elif now.status == "pass":
            changes["newly pass"].append(f"{name} (was {before.status})")
        else:
            changes["changed"].append(f"{name} ({before.status} -> {now.status})")
    changes["in the baseline, no longer collected"] = sorted(set(baseline) - collected)
    lines = [f"{kind}: {len(names)}: {', '.join(names)}" for kind, names in changes.items() if names]
    if not lines:
        return [f"every case that ran is as in the baseline ({BASELINE_PATH.name})"]
    lines.append(f"baseline {BASELINE_PATH.name} updated" if updating()
                 else f"to record these outcomes as the baseline: {UPDATE_HINT}")
    return lines
