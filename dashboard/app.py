"""Streamlit dashboard (placeholder until the dashboard issue): shows the stored results table.

Run with `streamlit run dashboard/app.py`.
"""

import streamlit as st

import yukti

st.set_page_config(page_title="Yukti", layout="wide")
st.title("Yukti results")
frame = yukti.results.load()
if frame.empty:
    st.info("No results yet: run `make bench` or `yukti bench` to make some.")
else:
    st.dataframe(frame, use_container_width=True)
