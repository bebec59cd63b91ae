"""Hosts: one model on several machines side by side (a sweep over hosts stores them in one store),
per backend configuration: p50 latency or samples/s, the latest successful run per host."""

import streamlit as st

from yukti.dashboard import charts, data, ui

METRICS = ["latency_p50_us", "throughput_per_s"]

ui.page_header("Hosts", "The same model on different machines, side by side: each bar is the latest successful run "
               "of a backend configuration on one host (hostname · CPU model · cores, as the run recorded them).")
frame = ui.results_frame()
ui.require_results(frame)
frame = ui.pick_hosts(frame, "hosts")

model = ui.pick_model(frame, "hosts")
batch = ui.pick_batch(frame, model, "hosts")
metric = st.sidebar.radio("Metric", METRICS, format_func=data.metric_label, key="hosts_metric")
rows = data.host_comparison(frame, model, batch)
n_hosts = rows["host_label"].nunique()
if n_hosts < 2:
    st.info(f"Only one host measured {model} at batch {batch}: {', '.join(rows['host_label'].unique())}. "
            "Run the same benchmark on another machine into this store (`yukti sweep`, or `yukti bench` with "
            "YUKTI_RESULTS_DIR on a shared folder) to compare them here.")

fig = charts.metric_chart(rows, "label", metric, color="host_label", kind="bar", log_y=True,
                          hover=["latency_p50_us", "latency_p99_us", "throughput_per_s", "threads", "vs_fastest_host",
                                 "run_id", "timestamp"],
                          x_title="backend", title=f"{model} · batch {batch} · {n_hosts} host(s)")
fig.update_layout(legend_title_text="host")
st.plotly_chart(fig, key="hosts_chart")
ui.dataset_caption(rows)

st.subheader("Per host")
st.caption("vs fastest host: this host's p50 latency over the lowest p50 of the same configuration on any host shown.")
ui.table(rows[["label", "host_label", "latency_p50_us", "latency_p99_us", "throughput_per_s", "vs_fastest_host",
               "threads", "options", "run_id", "timestamp"]],
         key="hosts_table")
