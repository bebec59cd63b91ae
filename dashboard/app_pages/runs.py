"""Runs: the raw results table with filters and a CSV download; each run's environment."""

import streamlit as st

from yukti.dashboard import data, ui
from yukti import results

ui.page_header("Runs", "Every stored row. Filter, download, and see the environment each run was measured in.")
frame = ui.results_frame()
ui.require_results(frame)


def choices(column: str) -> list[str]:
    return sorted(frame[column].dropna().astype(str).unique())


c1, c2, c3, c4 = st.columns(4)
model_filter = c1.multiselect("Models", choices("model"), key="runs_models")
backend_filter = c2.multiselect("Backends", choices("backend"), key="runs_backends")
status_filter = c3.multiselect("Status", choices("status"), key="runs_status")
run_filter = c4.multiselect("Runs", choices("run_id"), key="runs_ids")

shown = frame.iloc[::-1]  # newest run first
for column, chosen in [("model", model_filter), ("backend", backend_filter), ("status", status_filter), ("run_id", run_filter)]:
    if chosen:  # an empty filter means everything
        shown = shown[shown[column].astype(str).isin(chosen)]
st.caption(f"{len(shown)} of {len(frame)} rows")
ui.table(shown, key="runs_table")
st.download_button("Download CSV", shown.to_csv(index=False).encode(), file_name="yukti-results.csv",
                   mime="text/csv", key="runs_csv")

st.subheader("Runs and their environment")
summary = (frame.groupby("run_id", sort=False)
           .agg(timestamp=("timestamp", "first"), model=("model", "first"), dataset=("dataset", "first"),
                backends=("backend", lambda b: ", ".join(sorted(b.astype(str).unique()))),
                rows=("backend", "size"), host=("host", "first"), cpu=("cpu", "first"), git_commit=("git_commit", "first"))
           .reset_index().sort_values("timestamp", ascending=False))
ui.table(summary, key="runs_summary")
run_id = st.selectbox("Environment fingerprint of run", summary["run_id"].tolist(), key="runs_fingerprint_run")
st.json(results.fingerprint_of(frame[frame["run_id"] == run_id]), expanded=True)
