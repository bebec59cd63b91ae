"""Choose: constraints in, the ranked backends that meet them out, with the code that runs the winner."""

import json

import streamlit as st

from yukti.dashboard import data, ui

ui.page_header("Choose", "Constraints → the backends that meet them on the stored measurements, fastest p99 first, "
               "and the Python that runs the winner.")
frame = ui.results_frame()
ui.require_results(frame)
frame = ui.pick_hosts(frame, "choose")

left, middle, right = st.columns(3)
with left:
    model = st.selectbox("Model", data.models(frame), key="choose_model")
    sizes = data.batch_sizes(frame[frame["model"] == model])
    batch = st.selectbox("Batch size", sizes, index=sizes.index(1) if 1 in sizes else 0, key="choose_batch")
with middle:
    max_p99 = st.number_input("Max p99 latency (µs, empty: no limit)", min_value=0.0, value=None, step=1.0,
                              key="choose_max_p99")
    max_loss = st.number_input(f"Max {data.metric_label('accuracy_drop')}", min_value=0.0, max_value=1.0, value=0.005,
                               step=0.001, format="%.4f", key="choose_max_loss")
    max_rel = st.number_input(f"Max {data.metric_label('max_rel_error')} (regression; empty: no limit)", min_value=0.0,
                              value=None, step=0.001, format="%.4f", key="choose_max_rel")
with right:
    measured = sorted(data.latest(frame).query("model == @model")["backend"].unique())
    allowed = st.multiselect("Backends allowed", measured, default=measured, key="choose_backends")

has_agreement = data.latest(frame).query("model == @model")["argmax_agreement"].notna().any()
choice, note = data.choose(frame, model, batch_size=batch, backends=allowed, max_p99_us=max_p99,
                           max_accuracy_drop=max_loss if has_agreement else None, max_rel_error=max_rel)
if note:
    st.info(note)
if choice.winner is None:
    st.error("No backend meets every constraint; the table says why each one fails.")
else:
    st.success(f"Winner: **{choice.winner.backend}** — {model} at batch {batch}")
st.caption(f"Ranked by yukti.chooser ({'stored rows as they are' if note else 'rows measured on this host'}): "
           + choice.explain().splitlines()[0])
ui.table(choice.table(), key="choose_table")

if choice.winner is not None:
    st.subheader(f"Run {choice.winner.backend}")
    options = json.dumps(choice.winner.options) if choice.winner.options else None
    st.code(data.snippet(model, choice.winner.backend, options, batch_size=batch), language="python")
