"""Fixture data for the dashboard tests: two stored runs of jet_dnn on four backends, and a small
asv-like history. The numbers are made up, shaped like real runs (latency grows with batch size,
the reference is slowest), and chosen so each page has a definite answer to check."""

from __future__ import annotations

from typing import TYPE_CHECKING

import json
from pathlib import Path
import pandas as pd
from yukti import results

if TYPE_CHECKING:
    from streamlit.testing.v1 import AppTest

BATCHES = (1, 64, 1024)
# backend: (options, p50 at batch 1 in µs, per-sample cost at large batch in µs, argmax agreement, auc)
# cpp is fastest but (in this fixture) loses 2% agreement, so the Choose page must pass it over at a
# 0.5% loss limit and pick onnxruntime.
LATEST = {
    "reference": ({"source": "onnx"}, 350.0, 1.5, 1.0, 0.980),
    "onnxruntime": ({"threads": 1}, 20.0, 0.20, 1.0, 0.980),
    "torch": ({"threads": 1}, 90.0, 0.45, 0.999, 0.979),
    "cpp": ({}, 1.5, 0.16, 0.98, 0.970),
}
# An older run in which torch was fastest and exact: pages must use the latest run, not this one.
OLDER = {
    "reference": ({"source": "onnx"}, 360.0, 1.6, 1.0, 0.980),
    "torch": ({"threads": 1}, 0.5, 0.01, 1.0, 0.980),
}


def make_run(run_id: str, spec: dict, when: str, with_unavailable: bool = False) -> pd.DataFrame:
    rows = []
    for backend, (options, p50_1, per_sample, agreement, auc) in spec.items():
        for batch in BATCHES:
            p50 = p50_1 + per_sample * (batch - 1)
            rows.append({
                "run_id": run_id, "model": "jet_dnn", "model_hash": "f" * 16, "backend": backend, "backend_version": "1.0",
                "options": options, "status": "ok", "error": None, "batch_size": batch, "threads": 1, "device": "cpu",
                "latency_p50_us": p50, "latency_p90_us": p50 * 1.3, "latency_p99_us": p50 * 2.0,
                "latency_mean_us": p50 * 1.1, "latency_std_us": p50 * 0.2,
                "latency_native_p50_us": p50 * 0.5 if backend == "cpp" else None, "n_calls": 1000,
                "throughput_per_s": batch / (p50 * 1.1e-6), "max_abs_diff": 0.0 if backend == "reference" else 1e-6,
                "mean_abs_diff": 0.0 if backend == "reference" else 1e-7, "argmax_agreement": agreement, "auc": auc,
                "eff_at_bkg_1pct": auc - 0.5, "eff_at_bkg_10pct": auc - 0.1, "signal_class": "t",
                "prepare_s": 0.01, "artifact_bytes": 20000, "peak_rss_mb": 500.0, "rss_prepare_mb": 1.0,
                "dataset": "jets_synthetic (synthetic)", "dataset_synthetic": True, "n_samples": 15000,
                "git_commit": "0123abcd", "timestamp": pd.Timestamp(when), "host": "fixturehost",
                "cpu": "Fixture CPU", "cpu_cores": 2, "python": "3.11.0", "platform": "Linux-fixture",
                "packages": {"numpy": "2.0", "yukti": "0.1.0"},
            })
    if with_unavailable:
        for batch in BATCHES:
            rows.append({"run_id": run_id, "model": "jet_dnn", "backend": "hls4ml", "status": "unavailable",
                         "error": "hls4ml is not installed", "batch_size": batch, "options": {},
                         "timestamp": pd.Timestamp(when), "host": "fixturehost", "cpu": "Fixture CPU",
                         "dataset": "jets_synthetic (synthetic)"})
    return pd.DataFrame(rows)


COMMITS = [("aaaa1111" + "0" * 32, "2025-01-01"), ("bbbb2222" + "0" * 32, "2025-01-05"),
           ("cccc3333" + "0" * 32, "2025-01-09"), ("dddd4444" + "0" * 32, "2025-01-12")]


def make_history() -> pd.DataFrame:
    """asv-like history: cpp's p99 jumps by 50% at the third commit; onnxruntime stays within 2%."""
    rows = []
    for i, (sha, date) in enumerate(COMMITS):
        for backend, base, jump in [("cpp", 3.0, 1.5 if i >= 2 else 1.0), ("onnxruntime", 40.0, 1.0 + 0.02 * (i % 2))]:
            for metric_scale, batch in [(1.0, 1), (100.0, 1024)]:
                p99 = base * jump * metric_scale
                rows.append({"model": "jet_dnn", "backend": backend, "options": json.dumps({}), "batch_size": batch,
                             "status": "ok", "latency_p99_us": p99, "latency_p50_us": p99 / 2,
                             "throughput_per_s": batch / (p99 / 2 * 1e-6), "argmax_agreement": 1.0,
                             "commit_hash": sha, "commit_date": pd.Timestamp(date, tz="UTC")})
    return results.conform(pd.DataFrame(rows))


def open_page(page: str, timeout: float = 180) -> "AppTest":
    """The app under streamlit's AppTest, switched to `page` (app_pages/<page>.py), with no exception."""
    from streamlit.testing.v1 import AppTest

    from yukti.dashboard import APP_PATH

    at = AppTest.from_file(str(APP_PATH), default_timeout=timeout)
    at.run()
    at.switch_page(f"app_pages/{page}.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def figures(at: "AppTest") -> list[dict]:
    """The plotly figures on the page, as the JSON Streamlit sends to the browser."""
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]

