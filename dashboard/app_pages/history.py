"""History: metrics over commits from asv results, one line per backend, regressions flagged."""

import streamlit as st

from yukti.dashboard import charts, data, ui
from yukti import vocabulary

ui.page_header("History", "Each metric over the commits asv measured, one line per backend; "
               "a step worse than the threshold is marked with a red cross.")
results_dir = st.sidebar.text_input("asv results folder", value=str(data.default_asv_results_dir()), key="history_dir")
machine = st.sidebar.text_input("asv machine (empty: all)", value="", key="history_machine").strip() or None

try:
    history = ui.history_frame(results_dir, machine)
except NotImplementedError as exc:
    st.warning(f"History needs the asv loader: {exc}.")
    st.stop()
if history.empty:
    st.info(f"No asv results in `{results_dir}`. Record some with, for example,\n\n"
            "```\nasv machine --yes --machine mybox\nasv run --machine mybox HEAD^!\n```\n"
            "(see `benchmarks/` and `asv.conf.json`), or point the sidebar at another results folder.")
    st.stop()

model = st.sidebar.selectbox("Model", data.models(history), key="history_model")
batch = ui.pick_batch(history, model, "history")
metrics = data.history_metrics(history[(history["model"] == model) & (history["batch_size"] == batch)])
metric = st.sidebar.selectbox("Metric", metrics, format_func=data.metric_label, key="history_metric")
threshold = st.sidebar.slider("Flag steps worse than (%)", 1, 100, 10, key="history_threshold") / 100

series = data.history_series(history, model, batch, metric)
flags = data.flag_steps(series, metric, threshold)
order = {"commit": series.drop_duplicates("commit")["commit"].tolist()}  # commit date order, not alphabetical
fig = charts.metric_chart(series, "commit", metric, log_y=metric in data.METRICS and data.METRICS[metric].log,
                          hover=["commit_hash", "commit_date"], category_orders=order, x_title="commit (oldest first)",
                          title=f"{model} · batch {batch}: {data.metric_label(metric)}")
charts.add_flags(fig, flags, "commit", metric)
# a short hash made only of digits (e.g. 7319632) would turn the axis numeric: commits are categories
fig.update_xaxes(type="category", categoryorder="array", categoryarray=order["commit"])
st.plotly_chart(fig, key="history_chart")
better = "higher" if vocabulary.higher_is_better(metric) else "lower"
st.caption(f"{series['commit'].nunique()} commit(s) in `{results_dir}` · {better} is better")

if flags.empty:
    st.success(f"No step worse than {threshold:.0%} in {data.metric_label(metric)}.")
else:
    st.error(f"{len(flags)} step(s) worse than {threshold:.0%} in {data.metric_label(metric)}:")
    ui.table(flags, key="history_flags", change=st.column_config.NumberColumn(format="percent"))
