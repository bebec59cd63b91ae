"""Measure: a zoo model or an uploaded ONNX file, on data in any form a browser can hand over, on
the chosen backends and batch sizes; stored in the results store the other pages read."""

import streamlit as st

import yukti
from yukti.dashboard import data, ui
from yukti.errors import YuktiError

SOURCES = {"zoo": "a zoo model", "upload": "an ONNX file"}


@st.cache_resource(show_spinner="Loading the zoo model (its first use trains it)…")
def _zoo_model(name: str) -> yukti.Model:
    return yukti.zoo.get(name)


@st.cache_resource(show_spinner="Reading the ONNX file…", max_entries=4)
def _uploaded_model(filename: str, raw: bytes) -> yukti.Model:
    return data.load_uploaded_model(filename, raw)


@st.cache_resource(show_spinner="Loading the dataset…", max_entries=4)
def _named_dataset(name: str) -> yukti.datasets.Dataset:
    return yukti.datasets.load(name)


@st.cache_resource(show_spinner="Checking which backends can run here (each framework is imported once)…", ttl=600)
def _backends() -> list[yukti.BackendInfo]:
    return yukti.backends()


def _failed(what: str, exc: Exception) -> None:
    """Show why `what` failed and stop the page: an untrusted file or a missing one must not crash it."""
    text = str(exc) if isinstance(exc, YuktiError) else f"{type(exc).__name__}: {exc}"
    st.error(f"{what}: {text}")
    st.stop()


ui.page_header("Measure", "A model on your data: latency, throughput and fidelity on the backends you pick, "
               "stored with the other results.")
st.sidebar.caption(f"Results store: `{data.store_path()}`")

# -- the model -----------------------------------------------------------------------------------------
st.subheader("Model")
source = st.radio("Model", list(SOURCES), format_func=SOURCES.get, horizontal=True, key="measure_model_source",
                  label_visibility="collapsed")
if source == "zoo":
    zoo_names = yukti.zoo.names()
    default = zoo_names.index(data.QUICK_MODEL) if data.QUICK_MODEL in zoo_names else 0
    chosen = st.selectbox("Zoo model", zoo_names, index=default, key="measure_zoo",
                          format_func=lambda n: f"{n} — {yukti.zoo.describe()[n]}")
    try:
        model = _zoo_model(chosen)
    except Exception as exc:  # e.g. a Keras model without TensorFlow
        _failed(f"Could not load zoo model {chosen!r}", exc)
else:
    upload = st.file_uploader("ONNX model file", type=["onnx"], key="measure_model_file",
                              help="Read as untrusted input: validated, never executed as code.")
    if upload is None:
        st.info("Upload an .onnx file to measure it, or pick a zoo model.")
        st.stop()
    try:
        model = _uploaded_model(upload.name, upload.getvalue())
    except Exception as exc:
        _failed(f"Could not read {upload.name}", exc)
st.caption(f"**{model.name}**: {data.model_summary(model)}")

# -- the data ------------------------------------------------------------------------------------------
st.subheader("Data")
own = model.data
data_sources = {
    "default": f"its evaluation data ({own.label})" if own is not None else "random inputs (no labels)",
    "name": "a dataset by name",
    "upload": "a file (.parquet, .csv, .npz)",
}
data_source = st.radio("Data", list(data_sources), format_func=data_sources.get, horizontal=True,
                       key="measure_data_source", label_visibility="collapsed")
dataset = None
if data_source == "default":
    dataset = own
    if own is None:
        st.caption("Random inputs in the model's input shapes: fidelity to the reference only, no accuracy or AUC.")
elif data_source == "name":
    names = yukti.datasets.names()
    preferred = own.name if own is not None and own.name in names else names[0]
    name = st.selectbox("Dataset", names, index=names.index(preferred), key="measure_dataset",
                        help="Datasets that read a local file look in $YUKTI_DATA_DIR, ./data and ../shared/data.")
    try:
        dataset = _named_dataset(name)
    except Exception as exc:
        _failed(f"Could not load dataset {name!r}", exc)
else:
    upload = st.file_uploader("Data file", type=list(data.UPLOAD_DATA_TYPES), key="measure_data_file",
                              help=f"Read here: {data.UPLOAD_FORMS}.")
    if upload is None:
        st.info(f"Upload {data.UPLOAD_FORMS}.")
        st.stop()
    raw = upload.getvalue()
    target = None
    if upload.name.lower().endswith((".csv", ".parquet", ".pq")):
        try:
            columns = [str(c) for c in data.read_upload_table(upload.name, raw).columns]
        except YuktiError as exc:
            _failed(f"Could not read {upload.name}", exc)
        options = [data.NO_LABELS, *columns]
        target = st.selectbox("Label column", options, index=options.index(data.default_label(columns)),
                              key="measure_target", help="Every other numeric column is a feature, in column order.")
    try:
        dataset = data.read_uploaded_data(upload.name, raw, target, model, check=False)
    except YuktiError as exc:
        _failed(f"Could not read {upload.name}", exc)

if dataset is not None:
    ui.table(data.describe_data(dataset, model), key="measure_data_table")
    note = data.raw_data_note(model, dataset)
    if note:
        st.warning(note)
    try:
        data.check_fits(dataset, model)
    except YuktiError as exc:
        st.error(str(exc))
        st.stop()

# -- what to measure -----------------------------------------------------------------------------------
st.subheader("Backends and batch sizes")
infos = _backends()
usable = [i.name for i in infos if i.available]
missing = [i for i in infos if not i.available]
left, middle, right = st.columns(3)
with left:
    backends = st.multiselect("Backends", usable, default=[b for b in data.MEASURE_DEFAULT_BACKENDS if b in usable],
                              key="measure_backends",
                              help="hls4ml, fixed and torch_aot compile when prepared (slow); "
                                   "timing the reference is slow at large batches.")
    if missing:
        st.caption("Not available here: " + "; ".join(f"{i.name} ({i.reason})" for i in missing))
with middle:
    batches = st.multiselect("Batch sizes", list(data.MEASURE_BATCHES), default=list(data.MEASURE_DEFAULT_BATCHES),
                             key="measure_batches")
with right:
    budget = st.number_input("Seconds per measurement", min_value=0.01, max_value=30.0, value=data.MEASURE_BUDGET_S,
                             step=0.1, key="measure_budget",
                             help="Timing of one backend at one batch size stops after this time (and at least "
                                  f"{data.MEASURE_POLICY['min_calls']} calls).")
    samples = st.number_input("Evaluation samples (at most)", min_value=100, max_value=1_000_000,
                              value=data.MEASURE_EVAL_SAMPLES, step=1000, key="measure_samples",
                              help="How many samples fidelity and accuracy are computed on.")

if st.button("Measure", key="measure_run", type="primary", disabled=not backends or not batches):
    bar = st.progress(0.0, text="starting")
    try:
        frame = data.measure(model, dataset, backends, sorted(batches), time_budget_s=budget, max_eval_samples=samples,
                             on_step=lambda fraction, text: bar.progress(min(max(fraction, 0.0), 1.0), text=text))
    except YuktiError as exc:
        st.error(str(exc))
        st.stop()
    except Exception as exc:  # show what went wrong instead of a blank page
        st.exception(exc)
        st.stop()
    ui.forget_results()  # every page reloads the store, new run included
    st.session_state["measure_last"] = (model.name, str(frame["run_id"].iloc[0]), data.measured_table(frame))

# The last measurement stays shown while the user changes the widgets above.
if "measure_last" in st.session_state:
    measured_model, run_id, table = st.session_state["measure_last"]
    st.subheader("Measured")
    failed = int((table["status"] != "ok").sum())
    st.success(f"Stored run `{run_id}` of **{measured_model}**: {len(table)} rows"
               + (f", {failed} not ok (see the error column)" if failed else ""))
    ui.table(table, key="measure_result_table")
    st.caption("Compare it with the other results:")
    links = st.columns(4)
    for column, (page, title) in zip(links, [("tradeoffs", "Trade-offs"), ("throughput", "Throughput"),
                                             ("fidelity", "Fidelity"), ("runs", "Runs")]):
        column.page_link(f"app_pages/{page}.py", label=title)
