"""Choose: constraints in, the ranked backends that meet them out, with the code that runs the winner."""

import json

import streamlit as st

from dashboard import data, ui

ui.page_header("Choose", "Constraints → the backends that meet them on the stored measurements, fastest p99 first, "
               "and the Python that runs the winner.")
frame = ui.results_frame()
ui.require_results(frame)

left, middle, right = st.columns(3)
with left:
    model = st.selectbox("Model", data.models(frame), key="choose_model")
    sizes = data.batch_sizes(frame[frame["model"] == model])
    batch = st.selectbox("Batch size", sizes, index=sizes.index(1) if 1 in sizes else 0, key="choose_batch")
with middle:
    max_p99 = st.number_input("Max p99 latency (µs, empty: no limit)", min_value=0.0, value=None, step=1.0,
                              key="choose_max_p99")
    max_loss = st.number_input("Max accuracy loss (1 − argmax agreement)", min_value=0.0, max_value=1.0, value=0.005,
                               step=0.001, format="%.4f", key="choose_max_loss")
with right:
    measured = sorted(data.latest(frame).query("model == @model")["backend"].unique())
    allowed = st.multiselect("Backends allowed", measured, default=measured, key="choose_backends")

choice = data.choose(frame, model, batch_size=batch, max_p99_us=max_p99, max_accuracy_loss=max_loss, backends=allowed)
if choice.note:
    st.info(choice.note)
if choice.winner is None:
    st.error("No backend meets every constraint; the table says why each one fails.")
else:
    st.success(f"Winner: **{choice.winner}** — {model} at batch {batch}")
st.caption(f"Ranked by: {choice.source}")

table = choice.table
if choice.source.startswith("stored"):
    table = table[["label", "meets", "why_not", "latency_p99_us", "latency_p50_us", "accuracy_loss", "auc_drop",
                   "throughput_per_s", "prepare_s", "backend_version", "timestamp"]]
ui.table(table, key="choose_table")

if choice.winner is not None:
    st.subheader(f"Run {choice.winner}")
    options = json.dumps(choice.winner_options) if choice.winner_options else None
    st.code(data.snippet(model, choice.winner, options, batch_size=batch), language="python")
