"""Throughput: samples/s against batch size per backend, and the latency percentiles."""

import streamlit as st

from yukti.dashboard import charts, data, ui

ui.page_header("Throughput", "Samples per second against batch size (log-log); hover for the per-call latency.")
frame = ui.results_frame()
ui.require_results(frame)

model = ui.pick_model(frame, "throughput")
rows = data.latest(frame)
rows = rows[rows["model"] == model].sort_values(["label", "batch_size"])
hover = ["latency_p50_us", "latency_p99_us", "latency_native_p50_us", "n_calls"]

fig = charts.metric_chart(rows, "batch_size", "throughput_per_s", log_x=True, log_y=True, hover=hover,
                          x_title="batch size", title=f"{model}: throughput")
st.plotly_chart(fig, key="throughput_chart")
ui.dataset_caption(rows)

st.subheader("Latency percentiles per call")
batch = ui.pick_batch(frame, model, "throughput")
at_batch = rows[rows["batch_size"] == batch]
percentiles = (at_batch.melt(id_vars=["label"], value_vars=["latency_p50_us", "latency_p90_us", "latency_p99_us"],
                             var_name="percentile", value_name="latency_us")
               .assign(percentile=lambda f: f["percentile"].str.extract(r"_(p\d+)_")[0]))
fig = charts.metric_chart(percentiles, "label", "latency_us", color="percentile", kind="bar", log_y=True,
                          x_title="backend", y_title="latency per call (µs)", title=f"{model} · batch {batch}")
st.plotly_chart(fig, key="percentiles_chart")
ui.table(at_batch[["label", "latency_p50_us", "latency_p90_us", "latency_p99_us", "latency_mean_us",
                       "latency_std_us", "latency_native_p50_us", "throughput_per_s", "n_calls"]],
         key="throughput_table")
