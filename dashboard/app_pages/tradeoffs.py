"""Trade-offs: latency against accuracy loss per backend, with the Pareto front."""

import streamlit as st

from yukti.dashboard import charts, data, ui

LOSSES = ["accuracy_drop", "auc_drop", "max_rel_error", "mean_rel_error", "resolution", "max_abs_diff"]

ui.page_header("Trade-offs", "Latency (log scale) against accuracy loss, one point per backend configuration. "
               "Points on the Pareto front are those no other backend beats on both.")
frame = ui.results_frame()
ui.require_results(frame)
frame = ui.pick_hosts(frame, "tradeoffs")

model = ui.pick_model(frame, "tradeoffs")
batch = ui.pick_batch(frame, model, "tradeoffs")
latency = st.sidebar.radio("Latency", ["latency_p99_us", "latency_p50_us"], format_func=data.metric_label, key="tradeoffs_latency")
rows = data.latest_per_host(frame)
rows = rows[(rows["model"] == model) & (rows["batch_size"] == batch)]
# the losses of the task(s) measured: accuracy and AUC drop for classifiers, errors for regression
losses = data.available_metrics(rows, LOSSES) or ["accuracy_drop"]
loss = st.sidebar.radio("Accuracy loss", losses, format_func=data.metric_label, key="tradeoffs_loss")
rows = rows[rows[[latency, loss]].notna().all(axis=1)]
if rows.empty:
    st.warning(f"No backend of {model} at batch {batch} has both {data.metric_label(latency)} and {data.metric_label(loss)}.")
    st.stop()

front = data.pareto(rows, objectives=(latency, loss))
fig = charts.metric_chart(rows, latency, loss, kind="scatter", log_x=True, text="label",
                          hover=["latency_p50_us", "latency_p99_us", "throughput_per_s", "argmax_agreement", "auc",
                                 "max_abs_diff", "max_rel_error", "prepare_s"],
                          title=f"{model} · batch {batch}")
charts.add_pareto_front(fig, front, latency, loss)
# Losses start at 0 (a drop below the reference is possible for AUC, so only pad below 0). With
# every backend exact all values are 0, a degenerate range plotly would draw as an empty chart.
top = max(float(rows[loss].max()) * 1.15, 0.005)
fig.update_yaxes(range=[min(float(rows[loss].min()) * 1.15, 0.0) - 0.04 * top, top])
st.plotly_chart(fig, key="tradeoffs_chart")
ui.dataset_caption(rows)

st.subheader("Pareto front")
st.write("Non-dominated backends (lower latency and lower loss are better): "
         + ", ".join(f"**{label}**" for label in front.sort_values(latency)["label"]))
columns = ["label", latency, loss, "throughput_per_s", "argmax_agreement", "auc", "max_abs_diff", "max_rel_error", "prepare_s"]
ui.table(rows[list(dict.fromkeys(columns))]
         .assign(on_front=rows.index.isin(front.index)).sort_values(latency),
         key="tradeoffs_table")
