"""Yukti dashboard entry script: it only routes. Run `yukti dashboard` or `streamlit run dashboard/app.py`."""

import importlib.util
import sys
from pathlib import Path

# `streamlit run dashboard/app.py` from a source checkout puts dashboard/ (not the repository) on
# sys.path; the pages import `dashboard.*`, so make the package importable when it is not installed.
if importlib.util.find_spec("dashboard") is None:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import streamlit as st

st.set_page_config(page_title="Yukti", page_icon=":material/speed:", layout="wide")

TRADEOFFS = st.Page("app_pages/tradeoffs.py", title="Trade-offs", icon=":material/scatter_plot:", url_path="tradeoffs")
PAGES = [
    TRADEOFFS,
    st.Page("app_pages/throughput.py", title="Throughput", icon=":material/show_chart:", url_path="throughput"),
    st.Page("app_pages/hosts.py", title="Hosts", icon=":material/dns:", url_path="hosts"),
    st.Page("app_pages/kernels.py", title="Kernels", icon=":material/grid_on:", url_path="kernels"),
    st.Page("app_pages/history.py", title="History", icon=":material/history:", url_path="history"),
    st.Page("app_pages/fidelity.py", title="Fidelity", icon=":material/target:", url_path="fidelity"),
    st.Page("app_pages/precision.py", title="Precision", icon=":material/tune:", url_path="precision"),
    st.Page("app_pages/choose.py", title="Choose", icon=":material/check_circle:", url_path="choose"),
    st.Page("app_pages/runs.py", title="Runs", icon=":material/table:", url_path="runs"),
    st.Page("app_pages/measure.py", title="Measure", icon=":material/play_circle:", url_path="measure"),
]


def _open_tradeoffs() -> None:
    st.switch_page(TRADEOFFS, query_params=st.query_params.to_dict())


# Streamlit serves the default page at "/" only: its own url_path would answer "Page not found".
# So the default is a hidden page that switches to Trade-offs, and every page has its own address.
HOME = st.Page(_open_tradeoffs, title="Yukti", url_path="home", default=True, visibility="hidden")

st.navigation([HOME, *PAGES]).run()
