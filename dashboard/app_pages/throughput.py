"""Throughput: samples/s against batch size per backend, the latency percentiles, and the achieved
FP32 rate (GFLOP/s, or its share of the host's FP32 FMA peak: yukti.roofline)."""

import pandas as pd
import streamlit as st

from yukti import roofline
from yukti.dashboard import charts, data, ui

ui.page_header("Throughput", "Samples per second against batch size (log-log); hover for the per-call latency.")
frame = ui.results_frame()
ui.require_results(frame)
frame = ui.pick_hosts(frame, "throughput")

model = ui.pick_model(frame, "throughput")
rows = data.latest_per_host(frame)
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

st.subheader("Achieved FP32 rate")
rates = rows[pd.to_numeric(rows["gflops"], errors="coerce").notna()] if "gflops" in rows.columns else rows.iloc[:0]
if rates.empty:
    st.caption(f"No FLOP count stored for {model}: its runs predate the roofline numbers, or its graph could not be "
               "counted (yukti.roofline). A new `yukti bench` run stores them.")
else:
    views = data.available_metrics(rates, ["gflops", "pct_of_peak"])
    view = st.radio("Show", views, format_func=data.metric_label, horizontal=True, key="throughput_roofline")
    fig = charts.metric_chart(rates, "batch_size", view, log_x=True, log_y=view == "gflops",
                              hover=["flop_per_sample", "peak_gflops", "gflops", "pct_of_peak", "throughput_per_s"],
                              x_title="batch size", title=f"{model}: {data.metric_label(view)}")
    if view == "pct_of_peak":  # the ceiling itself, so a share reads against it
        fig.add_hline(y=100, line_dash="dash", line_color="gray", annotation_text="FP32 FMA peak")
    st.plotly_chart(fig, key="roofline_chart")
    flop = pd.to_numeric(rates["flop_per_sample"], errors="coerce").dropna().unique()
    peaks = pd.to_numeric(rates["peak_gflops"], errors="coerce").dropna().unique()
    st.caption(f"FLOP per sample: {', '.join(f'{int(f):,}' for f in flop)} (multiply-adds count 2, every other "
               "arithmetic op 1 per element: yukti.roofline) · stored peak: "
               f"{', '.join(f'{p:.4g}' for p in sorted(peaks)) or '—'} GFLOP/s · this host, 1 thread: "
               f"{roofline.host_peak_gflops(1).arithmetic()}")
