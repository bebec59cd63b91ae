"""Kernels: the stored kernel sweeps (benchmarks/kernel_sweep.py): cpp p50 / onnxruntime p50 of single
dense layers (ONNX Gemm + bias), K inputs x N outputs, one heatmap per batch size, red where cpp is
slower. Drawn from the files in the results store's `kernel_sweep/` folder; nothing is measured here."""

import pandas as pd
import streamlit as st

from yukti.dashboard import charts, data, ui
from yukti.errors import InputError

ui.page_header("Kernels", "cpp p50 / onnxruntime p50 of one dense layer (Gemm + bias) per K × N, one thread, per batch "
               "size: below 1 (blue) cpp is faster, above 1 (red) slower. A kernel regression shows in its own cell.")


@st.cache_data(show_spinner="Loading the kernel sweep…")
def stored_sweep(path: str, fingerprint: tuple) -> pd.DataFrame:  # fingerprint: the cache key only
    return data.load_kernel_sweep(path)


store = data.store_path()
folder = data.kernel_sweep_folder(store)
st.sidebar.caption(f"Sweeps: `{folder}`")
files = data.kernel_sweep_files(store)
if not files:
    st.info(f"No kernel sweep in `{folder}` yet. Make one with\n\n"
            f"```\n{data.KERNEL_SWEEP_COMMAND}\n```\n"
            "(8 × 8 layers at batch 1, 64 and 1024, a few minutes; `--quick` measures 2 × 2 layers at batch 64), "
            "then reload this page. The asv suite tracks the same ratios (`KernelSweep` in benchmarks/backends.py).")
    st.stop()

by_name = {str(p): p for p in files}
chosen = st.sidebar.selectbox("Sweep (newest first)", list(by_name), format_func=lambda p: by_name[p].name,
                              key="kernels_sweep")
try:
    sweep = stored_sweep(chosen, data.kernel_sweep_fingerprint(store))
except InputError as exc:
    st.error(str(exc))
    st.stop()
if sweep.empty or sweep["ratio"].notna().sum() == 0:
    st.warning(f"{by_name[chosen].name} has no measured cell.")
    st.stop()

first = sweep.iloc[0]
about = [f"{int(sweep['ratio'].notna().sum())} cells", f"cpp slower in {int((sweep['ratio'] > 1).sum())}"]
for column, name, width in (("cpu", "CPU", 80), ("git_commit", "commit", 10), ("timestamp", "measured", 19)):
    value = first.get(column)
    if value is not None and pd.notna(value) and str(value):
        about.append(f"{name}: {str(value)[:width]}")
st.caption(" · ".join(about))

span = charts.ratio_span(sweep["ratio"])  # one colour scale for every batch: a colour means one ratio
for batch in sorted(sweep["batch"].unique()):
    grid = data.kernel_grid(sweep, int(batch))
    st.plotly_chart(charts.ratio_heatmap(grid, title=f"batch {int(batch)}: cpp / onnxruntime", span=span),
                    key=f"kernels_heatmap_{int(batch)}")

st.subheader("Worst cells")
ui.table(data.kernel_worst(sweep), key="kernels_worst")
failed = sweep[sweep["status"] != "ok"] if "status" in sweep.columns else sweep.iloc[:0]
if not failed.empty:
    st.warning(f"{len(failed)} cell(s) not measured: "
               + "; ".join(f"K={r['K']} N={r['N']} batch={r['batch']}: {r.get('error')}" for _, r in failed.head(5).iterrows()))
