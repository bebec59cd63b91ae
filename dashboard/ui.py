"""Streamlit pieces shared by the pages: cached loads, the no-results screen with the quick
benchmark, and the model / batch pickers."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

import yukti
from yukti.dashboard import data


@st.cache_data(show_spinner="Loading results…")
def _load_results(store: str, fingerprint: tuple) -> pd.DataFrame:  # fingerprint: the cache key only
    return data.load_results(store)


def forget_results() -> None:
    """Drop the cached results: after a measurement from the page, every page reloads the store."""
    _load_results.clear()


def results_frame() -> pd.DataFrame:
    """The store's rows; reloaded only when a file in the store was added or changed."""
    store = str(data.store_path())
    st.sidebar.caption(f"Results store: `{store}`")
    frame = _load_results(store, data.store_fingerprint(store))
    skipped = frame.attrs.get("skipped_files") or []
    if skipped:  # the store degrades, it does not die: say which files were left out
        names = ", ".join(Path(path).name for path, _ in skipped)
        st.sidebar.warning(f"{len(skipped)} unreadable results file(s) skipped: {names}")
    return frame


@st.cache_data(show_spinner="Loading asv history…")
def _load_history(results_dir: str, machine: str | None, fingerprint: tuple) -> pd.DataFrame:
    return data.load_history(results_dir, machine=machine)


def history_frame(results_dir: str, machine: str | None) -> pd.DataFrame:
    return _load_history(results_dir, machine, data.asv_fingerprint(results_dir))


def require_results(frame: pd.DataFrame) -> None:
    """With no successful rows, say how to make some, offer the quick benchmark, and stop the page."""
    if not data.ok_rows(frame).empty:
        return
    st.info(
        "No benchmark results yet. Make some with\n\n"
        "```\nyukti bench jet_dnn --batch 1 64 1024\n```\n"
        "(or `make bench`, or `yukti.benchmark(model)` in Python), then reload this page; "
        "or run a quick benchmark of the embedded default model here."
    )
    quick_benchmark_button()
    st.stop()


def quick_benchmark_button() -> None:
    infos = yukti.backends()
    usable = [i.name for i in infos if i.available]
    chosen = st.multiselect("Backends for the quick benchmark", [i.name for i in infos], default=usable,
                            key="quick_backends",
                            help="jet_dnn on jets_synthetic (synthetic data), batch 1 and 1024, 0.2 s per measurement")
    if st.button("Run a quick benchmark of jet_dnn", key="quick_bench", type="primary", disabled=not chosen):
        bar = st.progress(0.0, text="starting")
        try:
            data.quick_benchmark(chosen, on_step=lambda fraction, text: bar.progress(min(max(fraction, 0.0), 1.0), text=text))
        except Exception as exc:  # show what went wrong instead of a blank page
            st.exception(exc)
            return
        forget_results()
        st.rerun()


def pick_model(frame: pd.DataFrame, key: str) -> str:
    names = data.models(frame)
    return st.sidebar.selectbox("Model", names, key=f"{key}_model")


def pick_hosts(frame: pd.DataFrame, key: str) -> pd.DataFrame:
    """The rows of the hosts picked in the sidebar (all of them by default), for the pages where
    numbers of different machines side by side would mislead. No selector when one host measured
    everything; with none picked, the page stops and says so."""
    names = data.hosts(frame)
    if len(names) < 2:
        return frame
    chosen = st.sidebar.multiselect("Hosts", names, default=names, key=f"{key}_hosts",
                                    help="hostname · CPU model · cores, as each run recorded them")
    if not chosen:
        st.warning("Pick at least one host in the sidebar.")
        st.stop()
    return data.on_hosts(frame, chosen)


def pick_batch(frame: pd.DataFrame, model: str, key: str, default: int = 1) -> int:
    sizes = data.batch_sizes(frame[frame["model"] == model])
    index = sizes.index(default) if default in sizes else 0
    return st.sidebar.selectbox("Batch size", sizes, index=index, key=f"{key}_batch")


def dataset_caption(rows: pd.DataFrame) -> None:
    """Name the data the numbers came from; synthetic data says so (design rule)."""
    if rows.empty:
        return
    datasets = sorted(rows["dataset"].dropna().astype(str).unique())
    hosts = sorted(rows["cpu"].dropna().astype(str).unique())
    st.caption(f"Data: {', '.join(datasets) or '—'} · CPU: {', '.join(hosts) or '—'} · latest successful run per backend configuration")


def page_header(title: str, what: str) -> None:
    st.title(title)
    st.caption(what)



def table(frame: pd.DataFrame, key: str, **config: object) -> None:
    """st.dataframe with 4 significant digits for float columns (values span µs to millions of
    samples/s; the CSV download on the Runs page keeps full precision)."""
    floats = {c: st.column_config.NumberColumn(format="%.4g") for c in frame.columns
              if pd.api.types.is_float_dtype(frame[c])}
    st.dataframe(frame, hide_index=True, key=key, column_config={**floats, **config})
