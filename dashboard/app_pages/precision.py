"""Precision: what each fixed-point precision of a stored scan (`yukti scan`, yukti.scan) did to the
physics: AUC, argmax agreement and output error against total bits, one line per integer-bits
value; how many values each layer overflowed at one configuration; and each layer's type range
next to the float model's values.

Everything but the profile is drawn from the scan store (`scans/` in the results store), so opening
the page runs no backend. The profile is not stored with a scan: for zoo models the page computes it
on demand (an hls4ml conversion and a float pass, a few seconds), cached for the session.
"""

import pandas as pd
import streamlit as st

import yukti
import yukti.precision
from yukti import vocabulary
from yukti.dashboard import charts, data, ui

ui.page_header("Precision", "Fixed-point precision scans: what each ap_fixed<W,I> did to the physics against the float "
               "model, which layers overflowed, and whether each layer's type holds its values.")


@st.cache_data(show_spinner="Loading precision scans…")
def stored_scans(store: str, fingerprint: tuple) -> pd.DataFrame:  # fingerprint: the cache key only
    return data.load_scans(store)


@st.cache_data(show_spinner="Profiling the float model (hls4ml conversion and a float pass)…")
def profiled(model_name: str) -> pd.DataFrame:
    return yukti.precision.profile(model_name)


def label(metric: str) -> str:
    """A metric's name without its unit, for radio buttons and titles (the axes carry the unit)."""
    return vocabulary.metric(metric).label


store = str(data.store_path())
st.sidebar.caption(f"Scan store: `{yukti.precision.scan_store(store)}`")
scans = stored_scans(store, data.scan_fingerprint(store))
if scans.empty:
    st.info("No precision scans yet. Make one with\n\n"
            "```\nyukti scan jet_dnn\n```\n"
            "(add `--max-auc-drop 0.005` to have the smallest precision that keeps the AUC named, `--per-layer` for "
            "per-layer types from the profile; or `yukti.scan(model)` in Python), then reload this page.")
    st.stop()

model_name = st.sidebar.selectbox("Model", data.scan_models(scans), key="precision_model")
listed = data.scan_list(scans, model_name)
described = {s.scan_id: f"{str(s.timestamp)[:16]} · {s.mode} · {s.configs} configurations · {s.scan_id}"
             for s in listed.itertuples()}
scan_id = st.sidebar.selectbox("Scan (newest first)", list(described), format_func=described.get, key="precision_scan")
rows = data.scan_rows(scans, scan_id)
first = rows.iloc[0]
per_layer = first["mode"] == data.PER_LAYER
signal = f", signal {first['signal_class']} vs rest" if isinstance(first.get("signal_class"), str) else ""
st.caption(f"{'Per-layer types from the profile' if per_layer else 'One type for the whole model'} · backend "
           f"{first['backend']} · data: {first['dataset']}, {int(first['n_samples'])} samples{signal} · "
           f"CPU: {first['cpu']} · scan {scan_id}")

best = data.smallest_row(rows)
if best is not None:
    drop = f", AUC drop {best['auc_drop']:.4f}" if pd.notna(best["auc_drop"]) else ""
    st.success(f"Smallest precision meeting the scan's bound: **{best['config']}** ({int(best['width'])} bits{drop}, "
               f"argmax agreement {best['argmax_agreement']:.4f})")
elif data.bound_given(rows):
    st.warning("No configuration of this scan meets its bound: scan more bits or integer bits.")
else:
    st.info("This scan was run without a bound, so no smallest configuration is named: scan with `--max-auc-drop` "
            "or `--min-agreement` (`max_auc_drop=` / `min_agreement=` in Python) to have one picked.")

ok = data.ok_rows(rows)
failed = rows[rows["status"] != "ok"]
if not failed.empty:
    st.warning(f"{len(failed)} configuration(s) failed to build: "
               + "; ".join(f"{r.config}: {r.error}" for r in failed.itertuples()))
if ok.empty:
    st.error("Every configuration of this scan failed; nothing to draw.")
    st.stop()

# -- the curves --------------------------------------------------------------------------------------
st.subheader("Physics against total bits")
quality = data.available_metrics(ok, ["auc", "auc_drop", "eff_at_bkg_1pct", "eff_at_bkg_10pct"])
left, right = st.columns(2)
with left:
    if quality:
        metric = st.radio("Metric", quality, format_func=label, horizontal=True, key="precision_quality")
        # the float model's own value: its AUC, and a drop of zero against itself
        reference = {"auc": first["reference_auc"], "auc_drop": 0.0}.get(metric)
        st.plotly_chart(charts.precision_curves(ok, metric, reference=reference, title=f"{model_name}: {label(metric)}"),
                        key="precision_quality_chart")
    else:
        st.caption("No AUC in this scan: its data had no labels with two classes (or the model is not a classifier).")
with right:
    if data.available_metrics(ok, ["argmax_agreement"]):
        st.plotly_chart(charts.precision_curves(ok, "argmax_agreement", reference=1.0,
                                                title=f"{model_name}: argmax agreement with the float model"),
                        key="precision_agreement_chart")
    else:
        st.caption("No argmax agreement in this scan (the model is not a classifier).")
left, right = st.columns(2)
with left:
    errors = data.available_metrics(ok, ["max_abs_diff", "mean_abs_diff"])
    if errors:
        error = st.radio("Error", errors, format_func=label, horizontal=True, key="precision_error")
        st.plotly_chart(charts.precision_curves(ok, error, log_y=True, title=f"{model_name}: {label(error)} (log)"),
                        key="precision_error_chart")
with right:
    if data.available_metrics(ok, ["overflows"]):
        st.plotly_chart(charts.precision_curves(ok, "overflows", title=f"{model_name}: values overflowed, all layers"),
                        key="precision_overflow_total_chart")
    else:
        st.caption(f"The {first['backend']} backend does not count overflows.")

columns = ["config", "width", "integer_bits", "argmax_agreement", "auc", "auc_drop", "eff_at_bkg_1pct",
           "max_abs_diff", "mean_abs_diff", "overflows", "meets", "smallest", "prepare_s", "status", "error"]
ui.table(rows[[c for c in columns if c in rows.columns and rows[c].notna().any()]], key="precision_table")

# -- one configuration --------------------------------------------------------------------------------
st.subheader("One configuration")
configs = ok["config"].astype(str).tolist()
smallest_config = str(best["config"]) if best is not None else None
default = configs.index(smallest_config) if smallest_config in configs else len(configs) - 1  # else the widest
config = st.selectbox("Configuration", configs, index=default, key="precision_config",
                      format_func=lambda c: f"{c} (smallest meeting the bound)" if c == smallest_config else c)
row = ok[ok["config"].astype(str) == config].iloc[0]

profile = None
if model_name in yukti.zoo.names():
    done = st.session_state.setdefault("precision_profiled", [])
    if st.button(f"Profile {model_name}'s float values per layer", key="precision_profile", disabled=model_name in done,
                 help="yukti.precision.profile: hls4ml's layers, the float model's value range on its own test data"):
        done.append(model_name)
    if model_name in done:
        try:
            profile = profiled(model_name)
        except Exception as exc:  # the rest of the page stays useful without the profile
            st.warning(f"Profiling {model_name} failed ({type(exc).__name__}: {exc}); the types' ranges are shown alone.")
    else:
        st.caption("Profile the model to see each layer's float values against its type.")
else:
    st.caption(f"{model_name} is not a zoo model: profile it in Python (`yukti.precision.profile(model)`); the types' "
               "ranges are shown alone.")

left, right = st.columns([2, 3])
with left:
    st.markdown("**Overflows per layer**")
    counts = data.overflow_counts(row)
    if pd.isna(row["overflows"]):
        st.caption(f"The {row['backend']} backend does not count overflows.")
    elif counts.empty:
        st.success(f"No value wrapped or saturated at {config}.")
    else:
        st.plotly_chart(charts.overflow_chart(counts, title=f"{config}: {int(row['overflows'])} values overflowed"),
                        key="precision_overflow_chart")
with right:
    st.markdown("**Value ranges per layer**")
    ranges = data.layer_ranges(row, profile)
    what = "result type ranges" if per_layer else "the model-wide type's range"
    title = f"{config}: {what}" + (" vs float values" if profile is not None else "")
    st.plotly_chart(charts.range_chart(ranges, title=title), key="precision_ranges_chart")

if profile is not None:
    st.caption(f"Float values from yukti.precision.profile on {model_name}'s own test data (the scan used {first['dataset']}).")
    outside = ranges[ranges["fits"].fillna(True).eq(False)]
    if not outside.empty:
        st.warning(f"{len(outside)} layer(s) hold float values outside their type's range (they wrap or saturate): "
                   + ", ".join(f"**{name}**" for name in outside["layer"]))
ui.table(ranges, key="precision_ranges_table",
         lowest=st.column_config.NumberColumn("type lowest", format="%.6g"),
         highest=st.column_config.NumberColumn("type highest", format="%.6g"))
