"""Fidelity: signal efficiency against background efficiency per backend on the labelled data, and
the distribution of output differences against the reference backend.

The results table holds summary numbers only, so this page runs the backends once more on the
model's own labelled data (zoo models; prepared artifacts come from the cache).
"""

import json

import numpy as np
import streamlit as st

import yukti
from dashboard import charts, data, ui

ui.page_header("Fidelity", "Efficiency curves per backend on labelled data, and how far each backend's outputs "
               "are from the reference backend's.")
frame = ui.results_frame()
ui.require_results(frame)

zoo_models = [m for m in data.models(frame) if m in yukti.zoo.names()]
if not zoo_models:
    st.info("Curves need the model and its labelled data, which the dashboard has for zoo models "
            f"({', '.join(yukti.zoo.names())}). The stored results are for other models; their summary numbers "
            "(AUC, efficiencies, |Δ|) are on the Runs page.")
    st.stop()
model_name = st.sidebar.selectbox("Model", zoo_models, key="fidelity_model")


@st.cache_resource(show_spinner="Loading the model…")
def zoo_model(name: str) -> yukti.Model:
    return yukti.zoo.get(name)


@st.cache_data(show_spinner="Running the backend on the labelled data…", max_entries=32)
def outputs_of(name: str, backend: str, options_json: str, n: int) -> np.ndarray:
    model = zoo_model(name)
    return data.backend_outputs(backend, model, model.data.X[:n], json.loads(options_json))


model = zoo_model(model_name)
dataset = model.data
measured = sorted(data.latest(frame).query("model == @model_name")["backend"].unique())
backends = st.sidebar.multiselect("Backends", measured, default=measured, key="fidelity_backends")
signal = st.sidebar.selectbox("Signal class", list(dataset.class_names), index=dataset.signal_class, key="fidelity_signal")
n = st.sidebar.select_slider("Samples", [1000, 5000, 20000, len(dataset)], value=min(20000, len(dataset)), key="fidelity_n")
n = min(n, len(dataset))

outputs, failed = {}, {}
for backend in sorted(set(backends) | {data.REFERENCE_BACKEND}):  # the reference is the yardstick for |Δ|
    options = data.run_options(frame, model_name, backend)
    try:
        outputs[backend] = outputs_of(model_name, backend, json.dumps(options, sort_keys=True), n)
    except Exception as exc:  # one backend that cannot run here must not hide the others
        failed[backend] = f"{type(exc).__name__}: {exc}"
for backend, why in failed.items():
    st.warning(f"{backend} could not run here: {why}")
if not outputs:
    st.stop()

signal_index = list(dataset.class_names).index(signal)
curves, hists, summary = data.fidelity_curves(outputs, dataset.y[:n], signal_index)
label = f"{dataset.label}, {n} samples, signal {signal} vs rest"
fig = charts.metric_chart(curves, "bkg_eff", "sig_eff", color="backend", log_x=True, markers=False,
                          x_title="background efficiency (trigger rate, log)", y_title="signal efficiency",
                          title=f"{model_name}: efficiency curves · {label}")
st.plotly_chart(fig, key="fidelity_roc")
spread = summary["auc"].max() - summary["auc"].min()
st.caption(f"AUC spread across backends: {spread:.2g}" + (" — the curves lie on top of each other." if spread < 1e-3 else "."))

st.subheader("Output differences against the reference")
if hists.empty:
    st.info("Pick a backend other than the reference to see its differences.")
else:
    fig = charts.metric_chart(hists, "log10_abs_diff", "count", color="backend",
                              x_title="log10 |output − reference output|", y_title="outputs (count)",
                              title=f"{model_name}: distribution of nonzero differences · {label}")
    st.plotly_chart(fig, key="fidelity_diffs")
ui.table(summary, key="fidelity_summary",
         exact_zero_fraction=st.column_config.NumberColumn("exactly equal (fraction)", format="%.4g"))
