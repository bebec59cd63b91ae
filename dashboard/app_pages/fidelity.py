"""Fidelity: per backend of one stored run, the efficiency curves (classification and anomaly
detection, on labelled data), the distribution of output differences against the reference
backend, and the fidelity metrics of the model's task.

Everything is drawn from the results store: `yukti bench` stores each run's curves next to its
results (yukti.curves), so opening this page runs no backend. A run stored without curves (before
Yukti stored them) shows its metrics and says how to get the curves.
"""

import pandas as pd
import streamlit as st

from yukti.dashboard import charts, data, ui
from yukti import vocabulary

ui.page_header("Fidelity", "How far each backend's outputs are from the reference backend's, in the terms of the "
               "model's task, as measured and stored by the benchmark.")
frame = ui.results_frame()
ui.require_results(frame)


@st.cache_data(show_spinner="Loading the stored curves…")
def stored_curves(store: str, fingerprint: tuple, rows: pd.DataFrame) -> pd.DataFrame:  # fingerprint: the cache key only
    return data.load_curves(rows, store)


model_name = ui.pick_model(frame, "fidelity")
runs = data.fidelity_runs(frame, model_name)
described = {r.run_id: f"{str(r.timestamp)[:16]} · {r.backends} · {r.run_id}" for r in runs.itertuples()}
run_id = st.sidebar.selectbox("Run", list(described), format_func=described.get, key="fidelity_run")
run = runs.set_index("run_id").loc[run_id]
rows = data.run_fidelity(frame, run_id, model_name)
labels = rows["label"].tolist()
chosen = st.sidebar.multiselect("Backends", labels, default=labels, key="fidelity_backends")
rows = rows[rows["label"].isin(chosen)]
task = run["task"] if isinstance(run["task"], str) else vocabulary.CLASSIFICATION
st.caption(f"Task: **{task}** · data: {run['dataset']}, {run['n_samples']} samples"
           + (f", signal {run['signal_class']} vs rest" if isinstance(run["signal_class"], str) else "")
           + f" · run {run_id}")

store = str(data.store_path())
stored = stored_curves(store, data.store_fingerprint(store), rows[["run_id", "backend", "options", "label"]])
if stored.empty:
    st.info(f"Run {run_id} was stored without fidelity curves (runs stored before Yukti kept them, or its curves "
            f"file is missing or unreadable). Its summary numbers are below; for the curves, benchmark again:\n\n"
            f"```\nyukti bench {model_name}\n```")
else:
    lines = data.efficiency_lines(stored)
    if not lines.empty:
        what = "false-positive rate" if task == vocabulary.ANOMALY else "background efficiency"
        fig = charts.metric_chart(lines, "bkg_eff", "sig_eff", color="label", log_x=True, markers=False,
                                  x_title=f"{what} (log)", y_title="signal efficiency",
                                  title=f"{model_name}: efficiency curves · {run['dataset']}")
        st.plotly_chart(fig, key="fidelity_roc")
    elif task == vocabulary.REGRESSION:
        st.caption("Regression outputs have no signal and background: no efficiency curve.")
    else:
        st.caption("This run had no labelled data: no efficiency curve.")

    st.subheader("Output differences against the reference")
    hist, equal = data.difference_histogram(stored)
    if hist.empty:
        st.info("Pick a backend other than the reference to see its differences.")
    else:
        fig = charts.metric_chart(hist, "log10_abs_diff", "count", color="label",
                                  x_title="log10 |output − reference output|", y_title="output values (count)",
                                  title=f"{model_name}: distribution of nonzero differences")
        st.plotly_chart(fig, key="fidelity_diffs")
        ui.table(equal, key="fidelity_equal",
                 exact_zero_fraction=st.column_config.NumberColumn("exactly equal (fraction)", format="%.4g"))

st.subheader(f"Fidelity metrics ({task})")
columns = [c for c in data.fidelity_metrics(task) if c in rows.columns]
ui.table(rows[["label", "backend", *columns]], key="fidelity_summary",
         **{c: st.column_config.NumberColumn(vocabulary.metric(c).header, help=vocabulary.label(c), format="%.4g")
            for c in columns})
