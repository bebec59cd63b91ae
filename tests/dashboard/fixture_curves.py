"""Fidelity curves for the fixture runs of dashboard_fixtures, stored as the engine stores them
(yukti.curves), for the pages and data functions that draw from them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from dashboard_fixtures import LATEST
from yukti import curves


def store_curves(store: Path, run_id: str) -> dict[str, np.ndarray]:
    """Curves for the fixture run `run_id`, stored as the engine stores them: onnxruntime has 100
    output values 1e-6 off the reference, cpp 10 values 1e-3 off (options as in the fixture)."""
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 5, 500)
    reference = rng.random((500, 5))
    outputs = {"reference": reference, "onnxruntime": reference.copy(), "cpp": reference.copy()}
    outputs["onnxruntime"][:100, 0] += 1e-6
    outputs["cpp"][:10, 1] += 1e-3
    parts = [curves.of_backend(b, LATEST[b][0], "classification", out, reference, labels=labels, signal_class=4)
             for b, out in outputs.items()]
    (run_file,) = [p for p in store.glob("*.parquet")
                   if not curves.is_curves_file(p) and run_id in set(pd.read_parquet(p)["run_id"])]
    curves.store(parts, run_file, run_id=run_id, model="jet_dnn")
    return outputs
