"""Labelled data to measure backends on: the embedded synthetic default and real-data loaders.

Every dataset is a `Dataset` (features as float32, integer labels, names, and a `synthetic` flag
that every printed label carries). Nothing here downloads at import or in tests; `lhc_jets` fetches
OpenML 42468 only when called without a local file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from yukti.errors import UnknownNameError, YuktiError

JET_FEATURES = (
    "j_zlogz", "j_c1_b0_mmdt", "j_c1_b1_mmdt", "j_c1_b2_mmdt", "j_c2_b1_mmdt", "j_c2_b2_mmdt",
    "j_d2_b1_mmdt", "j_d2_b2_mmdt", "j_d2_a1_b1_mmdt", "j_d2_a1_b2_mmdt", "j_m2_b1_mmdt",
    "j_m2_b2_mmdt", "j_n2_b1_mmdt", "j_n2_b2_mmdt", "j_mass_mmdt", "j_multiplicity",
)  # the 16 high-level features of the hls4ml LHC jet dataset, in its order
JET_CLASSES = ("g", "q", "W", "Z", "t")
MAGIC_FEATURES = ("fLength", "fWidth", "fSize", "fConc", "fConc1", "fAsym", "fM3Long", "fM3Trans", "fAlpha", "fDist")


@dataclass
class Dataset:
    """Features `X` (float32, first axis = sample), labels `y` (int64 class indices) and names."""

    name: str
    X: np.ndarray
    y: np.ndarray | None
    feature_names: tuple[str, ...]
    class_names: tuple[str, ...]
    synthetic: bool = False
    signal_class: int = 0  # the class treated as signal in one-vs-rest physics metrics
    description: str = ""
    meta: dict[str, Any] = field(default_factory=dict)
    # Every model input, in the model's order, when the data feeds a multi-input model (X is then
    # the first of them); None for single-input data.
    inputs: tuple[np.ndarray, ...] | None = None

    def __post_init__(self) -> None:
        self.X = np.ascontiguousarray(self.X, dtype=np.float32)
        if self.y is not None:
            self.y = np.asarray(self.y, dtype=np.int64)
            if len(self.y) != len(self.X):
                raise YuktiError(f"dataset {self.name!r}: {len(self.X)} samples but {len(self.y)} labels")
        if self.inputs is not None and any(len(a) != len(self.X) for a in self.inputs):
            raise YuktiError(f"dataset {self.name!r}: inputs of {[len(a) for a in self.inputs]} samples; they must agree")

    def __len__(self) -> int:
        return len(self.X)

    @property
    def label(self) -> str:
        """Name as shown everywhere: synthetic data says so."""
        return f"{self.name} (synthetic)" if self.synthetic else self.name

    @property
    def signal_name(self) -> str:
        return self.class_names[self.signal_class]

    def subset(self, index: np.ndarray | slice) -> "Dataset":
        return replace(self, X=self.X[index], y=None if self.y is None else self.y[index],
                       inputs=None if self.inputs is None else tuple(a[index] for a in self.inputs))

    def split(self, test_fraction: float = 0.25, seed: int = 0) -> tuple["Dataset", "Dataset"]:
        """Shuffled (train, test) split, deterministic in `seed`."""
        order = np.random.default_rng(seed).permutation(len(self))
        n_test = int(round(len(self) * test_fraction))
        return self.subset(order[n_test:]), self.subset(order[:n_test])

    def with_signal(self, signal: int | str) -> "Dataset":
        if isinstance(signal, str) and signal not in self.class_names:
            raise UnknownNameError(f"signal class {signal!r} is not one of {list(self.class_names)}")
        index = self.class_names.index(signal) if isinstance(signal, str) else int(signal)
        if not 0 <= index < len(self.class_names):
            raise UnknownNameError(f"signal class {signal!r} is not one of {list(self.class_names)}")
        return replace(self, signal_class=index)

    def __repr__(self) -> str:
        counts = "" if self.y is None else ", ".join(f"{c}={int((self.y == i).sum())}" for i, c in enumerate(self.class_names))
        return f"Dataset({self.label!r}, X={self.X.shape}, classes: {counts})"


# -- jets_synthetic ------------------------------------------------------------------------------

# Per-class mean and spread of each feature, loosely shaped on the hls4ml jet data: W/Z two-prong
# (low N2, D2, mass near 80/91 GeV), top three-prong and heavy, gluons wider with more particles.
_JET_MEANS = np.array([
    #  g      q      W      Z      t
    [-2.9, -2.6, -2.4, -2.4, -3.2],  # j_zlogz
    [0.40, 0.30, 0.35, 0.36, 0.42],  # j_c1_b0_mmdt
    [0.12, 0.08, 0.10, 0.11, 0.14],  # j_c1_b1_mmdt
    [0.05, 0.03, 0.035, 0.04, 0.06],  # j_c1_b2_mmdt
    [0.20, 0.15, 0.10, 0.10, 0.12],  # j_c2_b1_mmdt
    [0.10, 0.07, 0.04, 0.04, 0.06],  # j_c2_b2_mmdt
    [2.5, 2.0, 1.2, 1.2, 1.6],  # j_d2_b1_mmdt
    [2.2, 1.8, 0.9, 0.9, 1.3],  # j_d2_b2_mmdt
    [2.0, 1.6, 0.8, 0.8, 1.5],  # j_d2_a1_b1_mmdt
    [1.7, 1.3, 0.6, 0.6, 1.2],  # j_d2_a1_b2_mmdt
    [0.05, 0.04, 0.015, 0.015, 0.03],  # j_m2_b1_mmdt
    [0.03, 0.02, 0.008, 0.008, 0.02],  # j_m2_b2_mmdt
    [0.30, 0.27, 0.18, 0.18, 0.24],  # j_n2_b1_mmdt
    [0.27, 0.24, 0.14, 0.14, 0.20],  # j_n2_b2_mmdt
    [40.0, 28.0, 80.0, 90.0, 170.0],  # j_mass_mmdt [GeV]
    [48.0, 32.0, 40.0, 42.0, 62.0],  # j_multiplicity
])
_JET_SPREADS = 1.6 * np.array([  # widened until a small DNN reaches about the real data's accuracy
    [0.5] * 5, [0.07] * 5, [0.04] * 5, [0.02] * 5, [0.05] * 5, [0.03] * 5, [0.8] * 5, [0.7] * 5,
    [0.6] * 5, [0.5] * 5, [0.015] * 5, [0.008] * 5, [0.06] * 5, [0.05] * 5,
    [20.0, 15.0, 10.0, 10.0, 40.0], [10.0, 8.0, 8.0, 8.0, 16.0],
])
# One shared per-jet factor (think: how much of the jet survived grooming) couples the features.
_JET_LOADING = np.array([-0.3, 0.4, 0.4, 0.4, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.2, 0.2, 0.5, 0.5])
_JET_NONNEGATIVE = np.array([name not in ("j_zlogz",) for name in JET_FEATURES])


def jets_synthetic(n_samples: int = 60_000, seed: int = 42) -> Dataset:
    """SYNTHETIC jets in the hls4ml LHC jet schema (16 features; classes g, q, W, Z, t).

    Deterministic in (n_samples, seed). Not physics: a stand-in with the real schema so the
    default job runs anywhere; use `lhc_jets` for the real data.
    """
    rng = np.random.default_rng(seed)
    y = rng.integers(0, len(JET_CLASSES), n_samples)
    shared = rng.standard_normal(n_samples)[:, None]
    own = rng.standard_normal((n_samples, len(JET_FEATURES)))
    noise = np.sqrt(1 - _JET_LOADING**2) * own + _JET_LOADING * shared
    X = _JET_MEANS.T[y] + _JET_SPREADS.T[y] * noise
    X[:, _JET_NONNEGATIVE] = np.abs(X[:, _JET_NONNEGATIVE])
    X[:, -1] = np.maximum(np.round(X[:, -1]), 1.0)  # particle multiplicity is a count
    return Dataset(
        "jets_synthetic", X, y, JET_FEATURES, JET_CLASSES, synthetic=True, signal_class=JET_CLASSES.index("t"),
        description="SYNTHETIC jets in the hls4ml LHC jet schema (generated by yukti, seed "
        f"{seed}); not physics data",
        meta={"seed": seed},
    )


# -- lhc_jets (real) -----------------------------------------------------------------------------

OPENML_LHC_JETS_ID = 42468


def lhc_jets(path: str | os.PathLike | None = None, *, target: str | None = None) -> Dataset:
    """The hls4ml LHC jet dataset (high-level features): a local parquet/arff/csv file in that
    schema, or OpenML dataset 42468 fetched (and cached by openml) when `path` is None."""
    if path is None:
        frame = _fetch_openml(OPENML_LHC_JETS_ID)
        origin = f"OpenML {OPENML_LHC_JETS_ID}"
    else:
        frame = read_table(path)
        origin = str(path)
    return _jets_from_frame(frame, target=target, origin=origin)


def _fetch_openml(dataset_id: int) -> pd.DataFrame:
    try:
        import openml
    except ImportError as exc:
        raise YuktiError(f"fetching OpenML {dataset_id} needs the openml package (pip install 'yukti[openml]'): {exc}") from None
    from yukti.cache import default_root

    openml.config.set_root_cache_directory(str(default_root() / "openml"))
    dataset = openml.datasets.get_dataset(dataset_id, download_data=True, download_qualities=False, download_features_meta_data=False)
    frame, *_ = dataset.get_data(dataset_format="dataframe")
    return frame


def _jets_from_frame(frame: pd.DataFrame, *, target: str | None, origin: str) -> Dataset:
    missing = [f for f in JET_FEATURES if f not in frame.columns]
    if missing:
        raise YuktiError(f"{origin} is not in the LHC jet schema: missing feature column(s) {missing}")
    lookup = {c.lower(): i for i, c in enumerate(JET_CLASSES)}
    one_hot = [f"j_{c.lower()}" for c in JET_CLASSES]
    if target is None and all(c in frame.columns for c in one_hot):
        y = frame[one_hot].to_numpy().argmax(axis=1)
    else:
        column = target or next((c for c in ("class", "target", "label", "jet_type") if c in frame.columns), None)
        if column is None or column not in frame.columns:
            raise YuktiError(f"{origin}: no class column found (expected 'class' with values {list(JET_CLASSES)}, or one-hot {one_hot})")
        labels = frame[column].map(lambda v: v.decode() if isinstance(v, bytes) else str(v)).str.lower().str.removeprefix("j_")
        unknown = sorted(set(labels) - set(lookup))
        if unknown:
            raise YuktiError(f"{origin}: class column {column!r} has values {unknown}; expected {list(JET_CLASSES)}")
        y = labels.map(lookup).to_numpy()
    X = frame[list(JET_FEATURES)].to_numpy(dtype=np.float32)
    return Dataset("lhc_jets", X, y, JET_FEATURES, JET_CLASSES, signal_class=JET_CLASSES.index("t"),
                   description=f"hls4ml LHC jet dataset, high-level features ({origin})", meta={"origin": origin})


# -- MAGIC gamma telescope -----------------------------------------------------------------------


def _default_data_dirs() -> list[Path]:
    dirs = [Path(os.environ["YUKTI_DATA_DIR"])] if os.environ.get("YUKTI_DATA_DIR") else []
    return dirs + [Path.cwd() / "data", Path.cwd().parent / "shared" / "data"]


def find_data_file(filename: str) -> Path | None:
    """Look for `filename` in $YUKTI_DATA_DIR, ./data and ../shared/data."""
    return next((d / filename for d in _default_data_dirs() if (d / filename).is_file()), None)


def magic(path: str | os.PathLike | None = None) -> Dataset:
    """MAGIC gamma telescope data (UCI): 10 features, gamma (signal) vs hadron, from magic04.data."""
    file = Path(path) if path is not None else find_data_file("magic04.data")
    if file is None or not file.is_file():
        looked = ", ".join(str(d) for d in _default_data_dirs())
        raise YuktiError(f"magic04.data not found (looked in {looked}); pass its path, e.g. magic('path/to/magic04.data')")
    frame = pd.read_csv(file, header=None, index_col=False)
    if frame.shape[1] != len(MAGIC_FEATURES) + 1:
        raise YuktiError(f"{file} is not in the MAGIC format: expected 11 columns (10 features and the class), found {frame.shape[1]}")
    frame.columns = [*MAGIC_FEATURES, "class"]
    if frame["class"].isna().any() or not set(frame["class"]) <= {"g", "h"}:
        raise YuktiError(f"{file} is not in the MAGIC format: the 11th column must be 'g' or 'h'")
    y = (frame["class"] == "h").to_numpy().astype(np.int64)
    return Dataset("magic", frame[list(MAGIC_FEATURES)].to_numpy(), y, MAGIC_FEATURES, ("gamma", "hadron"),
                   signal_class=0, description=f"MAGIC gamma telescope (UCI), {file.name}", meta={"origin": str(file)})


# -- pixel clusters (synthetic images) ------------------------------------------------------------

CLUSTER_CLASSES = ("single", "inclined", "merged")


def pixel_clusters_synthetic(n_samples: int = 12_000, size: int = 16, seed: int = 7) -> Dataset:
    """SYNTHETIC pixel-detector charge maps (1 x size x size): a single track at normal incidence
    (compact), an inclined track (elongated), or two merged tracks. Signal = merged."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, len(CLUSTER_CLASSES), n_samples)
    points_per_track = 6
    centre = size / 2 + rng.uniform(-1.5, 1.5, (n_samples, 2))
    angle = rng.uniform(0, np.pi, n_samples)
    length = np.where(y == 1, rng.uniform(1.5, 6.0, n_samples), rng.uniform(0.0, 2.5, n_samples))
    along = np.linspace(-0.5, 0.5, points_per_track)
    direction = np.stack([np.cos(angle), np.sin(angle)], axis=1)
    tracks = centre[:, None, :] + (length[:, None, None] * along[None, :, None]) * direction[:, None, :]
    # merged: a second short track 0.8-2.5 pixels away in a random direction
    offset_angle = rng.uniform(0, 2 * np.pi, n_samples)
    offset = rng.uniform(0.8, 2.5, n_samples)[:, None] * np.stack([np.cos(offset_angle), np.sin(offset_angle)], axis=1)
    second = tracks + offset[:, None, :]
    points = np.concatenate([tracks, second], axis=1)
    charge = rng.gumbel(1.0, 0.3, (n_samples, 2 * points_per_track)).clip(0.1)  # Landau-like tails
    charge[y != 2, points_per_track:] = 0.0
    charge[y == 2] *= 0.6  # two tracks sharing the deposit of one cluster-size budget
    grid = np.arange(size) + 0.5
    images = np.empty((n_samples, 1, size, size), np.float32)
    for start in range(0, n_samples, 2048):  # chunks keep the (n, points, size, size) temporaries small
        sl = slice(start, start + 2048)
        dx = grid[None, None, :] - points[sl, :, 0, None]
        dy = grid[None, None, :] - points[sl, :, 1, None]
        gx, gy = np.exp(-0.5 * (dx / 0.7) ** 2), np.exp(-0.5 * (dy / 0.7) ** 2)
        images[sl, 0] = np.einsum("np,npy,npx->nyx", charge[sl], gy, gx)
    images += rng.normal(0.0, 0.15, images.shape).astype(np.float32)
    images[images < 0.3] = 0.0  # zero suppression, as the readout does
    names = tuple(f"pixel_{r}_{c}" for r in range(size) for c in range(size))
    return Dataset("pixel_clusters_synthetic", images, y, names, CLUSTER_CLASSES, synthetic=True,
                   signal_class=CLUSTER_CLASSES.index("merged"),
                   description=f"SYNTHETIC {size}x{size} pixel-cluster charge maps (generated by yukti, seed {seed})",
                   meta={"seed": seed})


# -- any table -------------------------------------------------------------------------------------


_TABLE_SUFFIXES = (".csv", ".txt", ".data", ".parquet", ".pq", ".arff")


def read_table(path: str | os.PathLike) -> pd.DataFrame:
    file = Path(path)
    if not file.is_file():
        raise YuktiError(f"no data file at {str(file)!r}")
    suffix = file.suffix.lower()
    if suffix in (".parquet", ".pq"):
        return pd.read_parquet(file)
    if suffix in (".csv", ".txt", ".data"):
        return pd.read_csv(file)
    if suffix == ".arff":
        from scipy.io import arff

        data, _ = arff.loadarff(file)
        return pd.DataFrame(data)
    raise YuktiError(f"{file}: unknown table format {suffix!r}; expected .parquet, .csv or .arff")


def from_table(path: str | os.PathLike, target: str | None, *, features: list[str] | None = None,
               signal: str | int | None = None, name: str | None = None) -> Dataset:
    """Any CSV/Parquet/ARFF file with a target column; every other numeric column is a feature
    (target=None: unlabelled, every numeric column is a feature)."""
    return from_frame(read_table(path), target, features=features, signal=signal, name=name or Path(path).stem,
                      origin=f"table {path}")


def from_frame(frame: pd.DataFrame, target: str | None, *, features: list[str] | None = None,
               signal: str | int | None = None, name: str = "DataFrame", origin: str = "a pandas DataFrame") -> Dataset:
    """A DataFrame: the `target` column holds the labels (None: unlabelled), the other numeric
    columns (or `features`) the inputs, in column order."""
    if target is not None and target not in frame.columns:
        raise YuktiError(f"{origin}: no target column {target!r}; columns are {list(frame.columns)}")
    feature_cols = features or [c for c in frame.columns if c != target and pd.api.types.is_numeric_dtype(frame[c])]
    missing = [c for c in feature_cols if c not in frame.columns]
    if missing:
        raise YuktiError(f"{origin}: feature column(s) {missing} not found")
    if not feature_cols:
        raise YuktiError(f"{origin}: no numeric feature columns (columns: {list(frame.columns)})")
    X = frame[feature_cols].to_numpy(dtype=np.float32)
    if target is None:
        return Dataset(name, X, None, tuple(map(str, feature_cols)), (), description=f"{origin}, unlabelled")
    codes, classes = pd.factorize(frame[target].map(lambda v: v.decode() if isinstance(v, bytes) else v), sort=True)
    if (codes < 0).any():
        raise YuktiError(f"{origin}: target column {target!r} is empty in {int((codes < 0).sum())} row(s); every row needs a label")
    dataset = Dataset(name, X, codes, tuple(map(str, feature_cols)), tuple(map(str, classes)),
                      description=f"{origin}, target {target!r}")
    return dataset.with_signal(str(signal) if isinstance(signal, str) else signal) if signal is not None else dataset


# What `data=` accepts (yukti.benchmark, yukti.choose, yukti.Session, yukti.scan, the CLI's --data).
ACCEPTED_DATA = ("a yukti Dataset, a dataset name (yukti.datasets.names()), a table file path (.parquet, .csv, .arff; "
                 "with target= naming the label column), (X, y), X alone, {input name: array} or ({input name: array}, y) "
                 "for multi-input models, a pandas DataFrame (with target=), torch tensors in place of arrays")


def as_dataset(data: Any, model: Any = None, *, target: str | None = None) -> Dataset:
    """`data` in any accepted form (ACCEPTED_DATA) as a Dataset; InputError naming the forms otherwise.
    `model` orders a dict of named inputs (and checks it covers every input)."""
    from yukti.errors import InputError

    if isinstance(data, Dataset):
        return data
    if isinstance(data, (str, os.PathLike)):
        text = os.fspath(data)
        if isinstance(data, str) and data in _LOADERS:
            return load(data)
        if Path(text).is_file() or Path(text).suffix.lower() in _TABLE_SUFFIXES:
            return from_table(text, target)  # a missing table file: "no data file at ..."
        raise UnknownNameError(f"unknown dataset {text!r}; known datasets are {names()}, or a table file path; "
                               f"data= accepts {ACCEPTED_DATA}")
    if isinstance(data, pd.DataFrame):
        return from_frame(data, target)
    if isinstance(data, tuple) and len(data) == 2 and not isinstance(data[0], (int, float)):
        features, labels = data
        y = _as_array(labels, "y")
        if y.ndim != 1:
            raise InputError(f"data=(X, y): y must be one label per sample (1-D); got shape {y.shape}")
        dataset = as_dataset(features, model, target=None)
        if len(y) != len(dataset):
            raise InputError(f"data=(X, y): {len(dataset)} samples but {len(y)} labels")
        if y.dtype.kind in "iub":
            classes = tuple(str(c) for c in range(int(y.max()) + 1)) if len(y) else ()
            codes = y.astype(np.int64)
            if (codes < 0).any():
                raise InputError("data=(X, y): integer labels must be class indices >= 0")
        else:
            codes, uniques = pd.factorize(pd.Series(y), sort=True)
            classes = tuple(map(str, uniques))
        return replace(dataset, y=codes, class_names=classes, signal_class=len(classes) - 1 if classes else 0,
                       description=f"{dataset.description}, labels given")
    if isinstance(data, dict):
        if model is None or len(model.inputs) == 1 and len(data) == 1:
            (value,) = data.values() if len(data) == 1 else (None,)
            if value is None:
                raise InputError(f"data= as a dict needs the model to order it; data= accepts {ACCEPTED_DATA}")
            return as_dataset(value, model)
        names_in = [spec.name for spec in model.inputs]
        missing, extra = [n for n in names_in if n not in data], [k for k in data if k not in names_in]
        if missing or extra:
            raise InputError(f"data= dict: model {getattr(model, 'name', '')!r} takes inputs {names_in}; "
                             f"missing {missing}, unexpected {extra}")
        arrays = tuple(np.ascontiguousarray(_as_array(data[n], n), dtype=np.float32) for n in names_in)
        return Dataset("arrays", arrays[0], None, (), (), description="arrays given by name", inputs=arrays)
    if isinstance(data, (list,)) and data and all(_is_array_like(a) for a in data) and model is not None and len(model.inputs) > 1:
        arrays = tuple(np.ascontiguousarray(_as_array(a, f"input {i}"), dtype=np.float32) for i, a in enumerate(data))
        return Dataset("arrays", arrays[0], None, (), (), description="arrays given in input order", inputs=arrays)
    if _is_array_like(data):
        X = _as_array(data, "X")
        if X.ndim < 1 or X.dtype.kind not in "fiub":
            raise InputError(f"data= array: expected numbers with a batch dimension; got {X.dtype} of shape {X.shape}")
        return Dataset("arrays", X, None, (), (), description="an array given as data")
    raise InputError(f"data= of type {type(data).__name__} is not a form Yukti reads; data= accepts {ACCEPTED_DATA}")


def _is_array_like(value: Any) -> bool:
    return isinstance(value, np.ndarray) or type(value).__module__.startswith("torch")


def _as_array(value: Any, what: str) -> np.ndarray:
    if type(value).__module__.startswith("torch"):
        return value.detach().cpu().numpy()
    if isinstance(value, (np.ndarray, list, tuple, pd.Series)):
        return np.asarray(value)
    from yukti.errors import InputError

    raise InputError(f"data=: {what} is a {type(value).__name__}, not an array; data= accepts {ACCEPTED_DATA}")


# -- constituent-level jets (the hls4ml 150-particle schema) ------------------------------------------

# The per-particle features of the published hls4ml LHC jet files (Zenodo 3602260, "jetConstituentList",
# 150 particles x 16 features per jet, sorted by pT, zero-padded) and the ones DeepSets/transformer
# taggers usually take.
PARTICLE_FEATURES = ("j1_px", "j1_py", "j1_pz", "j1_e", "j1_erel", "j1_pt", "j1_ptrel", "j1_eta", "j1_etarel",
                     "j1_etarot", "j1_phi", "j1_phirel", "j1_phirot", "j1_deltaR", "j1_costheta", "j1_costhetarel")
CONSTITUENT_FEATURES = ("j1_ptrel", "j1_etarel", "j1_phirel")
_MULTIPLICITY = {"g": 42.0, "q": 26.0, "W": 30.0, "Z": 32.0, "t": 48.0}  # mean constituents per class
_PRONGS = {"g": 1, "q": 1, "W": 2, "Z": 2, "t": 3}


def constituents_synthetic(n_samples: int = 30_000, n_constituents: int = 16,
                           features: tuple[str, ...] = CONSTITUENT_FEATURES, seed: int = 5, *,
                           n_particles: int = 150, jet_features: bool = False) -> Dataset:
    """SYNTHETIC constituent-level jets in the hls4ml 150-particle schema (classes g, q, W, Z, t):
    a ~1 TeV jet of 1 (g, q), 2 (W, Z) or 3 (t) prongs a few tenths apart, its particles spread
    around them with pT fractions that sum to one, sorted by pT and zero-padded to `n_particles`;
    all 16 per-particle features of the real files are filled (massless particles), then the first
    `n_constituents` particles and the chosen `features` kept (X: samples x constituents x features).
    `jet_features=True`: two inputs for a two-input tagger, the jet's summary (JET_SUMMARY_FEATURES, from
    all its particles) and the constituents (Dataset.inputs; X is the first)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, len(JET_CLASSES), n_samples)
    names = np.array(JET_CLASSES)[y]
    jet_pt = rng.normal(1000.0, 80.0, n_samples).clip(600.0)
    jet_eta = rng.uniform(-2.0, 2.0, n_samples)
    jet_phi = rng.uniform(-np.pi, np.pi, n_samples)
    table = np.zeros((n_samples, n_particles, len(PARTICLE_FEATURES)), np.float32)
    for i in range(n_samples):
        kind = names[i]
        count = int(np.clip(rng.poisson(_MULTIPLICITY[kind]), 2, n_particles))
        prongs = _PRONGS[kind]
        # prong axes: a resonance's decay products sit ~2m/pT apart (W/Z ~0.17, t ~0.35 at 1 TeV)
        spread = {1: 0.0, 2: 0.17, 3: 0.35}[prongs]
        axes = rng.normal(0.0, spread / 2 + 1e-6, (prongs, 2)) if prongs > 1 else np.zeros((1, 2))
        share = rng.dirichlet(np.full(prongs, 3.0)) if prongs > 1 else np.ones(1)
        owner = rng.choice(prongs, size=count, p=share)
        width = 0.09 if kind == "g" else 0.05  # gluon jets are broader
        eta_rel = axes[owner, 0] + rng.normal(0.0, width, count)
        phi_rel = axes[owner, 1] + rng.normal(0.0, width, count)
        pt_frac = rng.exponential(1.0 if kind in ("g", "q") else 0.7, count) * share[owner]
        pt_frac /= pt_frac.sum()
        order = np.argsort(-pt_frac)
        pt_frac, eta_rel, phi_rel = pt_frac[order], eta_rel[order], phi_rel[order]
        pt = pt_frac * jet_pt[i]
        eta, phi = jet_eta[i] + eta_rel, jet_phi[i] + phi_rel
        px, py, pz = pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)
        energy = pt * np.cosh(eta)
        jet_e = energy.sum()
        theta, jet_theta = 2 * np.arctan(np.exp(-eta)), 2 * np.arctan(np.exp(-jet_eta[i]))
        angle = np.arctan2(axes[0, 1], axes[0, 0]) if prongs > 1 else 0.0  # rotate the leading prong onto an axis
        eta_rot = eta_rel * np.cos(angle) + phi_rel * np.sin(angle)
        phi_rot = -eta_rel * np.sin(angle) + phi_rel * np.cos(angle)
        table[i, :count] = np.stack([px, py, pz, energy, energy / jet_e, pt, pt_frac, eta, eta_rel, eta_rot, phi, phi_rel,
                                     phi_rot, np.hypot(eta_rel, phi_rel), np.cos(theta), np.cos(theta) - np.cos(jet_theta)], axis=1)
    return _constituent_dataset("constituents_synthetic", table, y, n_constituents, features, synthetic=True,
                                description=f"SYNTHETIC constituent-level jets in the hls4ml 150-particle schema "
                                            f"(generated by yukti, seed {seed})", meta={"seed": seed},
                                jet_features=jet_features)


def hls4ml_jets_150p(path: str | os.PathLike | None = None, *, n_constituents: int = 16,
                     features: tuple[str, ...] = CONSTITUENT_FEATURES, jet_features: bool = False) -> Dataset:
    """The published hls4ml LHC jet data at the constituent level: one HDF5 file of that format
    (`jetConstituentList` jets x 150 x 16 and `particleFeatureNames`; `jets` whose last six columns
    are j_g, j_q, j_w, j_z, j_t, j_undef), or a folder of them (read in name order); without a
    path, the folder `hls4ml_jets_150p` in $YUKTI_DATA_DIR, ./data or ../shared/data."""
    if path is None:
        path = next((d / "hls4ml_jets_150p" for d in _default_data_dirs() if (d / "hls4ml_jets_150p").is_dir()), None)
        if path is None:
            raise YuktiError("no hls4ml 150-particle jet files: give a path, or put the .h5 files (Zenodo 3602260) in "
                             f"a folder hls4ml_jets_150p under one of {[str(d) for d in _default_data_dirs()]}")
    try:
        import h5py
    except ImportError:
        raise YuktiError("reading the hls4ml 150-particle files needs h5py (pip install 'yukti[hdf5]')") from None
    folder = Path(path)
    files = sorted(folder.glob("*.h5")) if folder.is_dir() else [folder]
    if not files or not all(f.is_file() for f in files):
        raise YuktiError(f"no hls4ml jet file (.h5) at {str(path)!r}")
    tables, labels = [], []
    for file in files:
        with h5py.File(file, "r") as handle:
            missing = [key for key in ("jetConstituentList", "jets") if key not in handle]
            if missing:
                raise YuktiError(f"{file}: not an hls4ml jet file (no {missing}; it has {sorted(handle.keys())})")
            names = [n.decode() if isinstance(n, bytes) else str(n) for n in handle["particleFeatureNames"][()]] \
                if "particleFeatureNames" in handle else list(PARTICLE_FEATURES)
            table = np.asarray(handle["jetConstituentList"][()], dtype=np.float32)
            if table.ndim != 3 or table.shape[2] != len(names):
                raise YuktiError(f"{file}: jetConstituentList has shape {table.shape}; expected jets x particles x {len(names)}")
            order = [names.index(f) if f in names else -1 for f in PARTICLE_FEATURES]
            if -1 in order:
                raise YuktiError(f"{file}: particle features {[f for f, k in zip(PARTICLE_FEATURES, order) if k < 0]} "
                                 f"missing (the file has {names})")
            tables.append(table[:, :, order])
            onehot = np.asarray(handle["jets"][()])[:, -6:-1]
            labels.append(onehot.argmax(axis=1))
    return _constituent_dataset(folder.stem if folder.is_file() else folder.name, np.concatenate(tables),
                                np.concatenate(labels), n_constituents, features, synthetic=False,
                                description=f"hls4ml LHC jets, constituents, from {path}", meta={"files": [str(f) for f in files]},
                                jet_features=jet_features)


# Jet-level summaries computed from all of a jet's particles (the second view a two-input tagger reads).
JET_SUMMARY_FEATURES = ("j_mass_over_pt", "j_log_multiplicity", "j_girth", "j_ptd", "j_lead_ptrel", "j_sum_deltar2")


def jet_summary(table: np.ndarray) -> np.ndarray:
    """JET_SUMMARY_FEATURES of jets given as particles x PARTICLE_FEATURES (zero rows: no particle)."""
    column = {name: table[:, :, k].astype(np.float64) for k, name in enumerate(PARTICLE_FEATURES)}
    px, py, pz, energy = (column[f"j1_{q}"].sum(axis=1) for q in ("px", "py", "pz", "e"))
    pt = np.hypot(px, py)
    mass = np.sqrt(np.maximum(energy ** 2 - px ** 2 - py ** 2 - pz ** 2, 0.0))
    present = column["j1_e"] > 0
    ptrel, delta_r = column["j1_ptrel"], column["j1_deltaR"]
    summary = np.stack([mass / np.maximum(pt, 1e-9), np.log1p(present.sum(axis=1)), (ptrel * delta_r).sum(axis=1),
                        np.sqrt((ptrel ** 2).sum(axis=1)), ptrel[:, 0], (ptrel * delta_r ** 2).sum(axis=1)], axis=1)
    return summary.astype(np.float32)


def _constituent_dataset(name: str, table: np.ndarray, y: np.ndarray, n_constituents: int, features: tuple[str, ...],
                         *, synthetic: bool, description: str, meta: dict[str, Any], jet_features: bool = False) -> Dataset:
    unknown = [f for f in features if f not in PARTICLE_FEATURES]
    if unknown:
        raise YuktiError(f"unknown particle feature(s) {unknown}; the schema has {list(PARTICLE_FEATURES)}")
    if not 1 <= n_constituents <= table.shape[1]:
        raise YuktiError(f"n_constituents must be 1..{table.shape[1]}; got {n_constituents}")
    X = np.ascontiguousarray(table[:, :n_constituents, [PARTICLE_FEATURES.index(f) for f in features]])
    feature_names = tuple(f"{f}_{k}" for k in range(n_constituents) for f in features)
    meta = {**meta, "particle_features": features, "n_constituents": n_constituents}
    if jet_features:
        summary = jet_summary(table)
        return Dataset(f"{name}_two_input", summary, y, JET_SUMMARY_FEATURES + feature_names, JET_CLASSES,
                       synthetic=synthetic, signal_class=JET_CLASSES.index("t"), inputs=(summary, X),
                       description=f"{description}; two inputs: jet summary {JET_SUMMARY_FEATURES}, constituents",
                       meta={**meta, "input_names": ("jet", "constituents")})
    return Dataset(name, X, y, feature_names, JET_CLASSES, synthetic=synthetic, signal_class=JET_CLASSES.index("t"),
                   description=description, meta=meta)


# -- MDT chamber hits (synthetic) ---------------------------------------------------------------------

MDT_CLASSES = ("noise", "muon")


def mdt_hits_synthetic(n_samples: int = 12_000, tubes: int = 216, layers: int = 8, seed: int = 11) -> Dataset:
    """SYNTHETIC hits of a muon drift-tube chamber, the shape of a Level-0 MDT trigger's input:
    `tubes` positions x `layers` tube layers, channels-last (tubes, layers). Each hit tube holds its
    drift radius in (0, 1]; empty tubes hold 0. A muon crosses the layers on a straight line (one
    hit per layer, a few missing) over uncorrelated noise hits; noise events have noise only, a
    little more of it. Signal = muon."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n_samples)
    hits = np.zeros((n_samples, tubes, layers), np.float32)
    noise = rng.random((n_samples, tubes, layers)) < np.where(y == 1, 0.010, 0.014)[:, None, None]
    hits[noise] = rng.uniform(0.05, 1.0, int(noise.sum()))
    muons = np.flatnonzero(y == 1)
    start = rng.uniform(10, tubes - 10, len(muons))
    slope = rng.normal(0.0, 1.2, len(muons))  # tubes per layer
    layer = np.arange(layers)
    position = start[:, None] + slope[:, None] * (layer[None, :] - layers / 2)
    tube = np.clip(np.round(position).astype(int), 0, tubes - 1)
    radius = np.abs(position - np.round(position)) * 2  # distance from the wire, in tube radii
    present = rng.random((len(muons), layers)) > 0.08  # tube inefficiency
    rows = np.repeat(muons, layers).reshape(len(muons), layers)
    hits[rows[present], tube[present], np.broadcast_to(layer, tube.shape)[present]] = np.clip(radius[present], 0.02, 1.0)
    names = tuple(f"tube_{t}_layer_{k}" for t in range(tubes) for k in range(layers))
    return Dataset("mdt_hits_synthetic", hits, y, names, MDT_CLASSES, synthetic=True, signal_class=MDT_CLASSES.index("muon"),
                   description=f"SYNTHETIC MDT chamber hits, {tubes} tubes x {layers} layers (generated by yukti, seed {seed})",
                   meta={"seed": seed})


# -- L1 trigger events for anomaly detection (synthetic) ------------------------------------------------

L1_CLASSES = ("standard_model", "anomalous")
L1_OBJECTS = ("met",) + tuple(f"egamma_{k}" for k in range(4)) + tuple(f"muon_{k}" for k in range(4)) + \
    tuple(f"jet_{k}" for k in range(10))
L1_FEATURES = tuple(f"{obj}_{q}" for obj in L1_OBJECTS for q in ("pt", "eta", "phi", "present")) + ("n_pileup",)


def l1_events_synthetic(n_samples: int = 40_000, anomalous_fraction: float = 0.2, seed: int = 13) -> Dataset:
    """SYNTHETIC Level-1 trigger events in the shape anomaly-detection triggers read: 19 objects (MET, 4 e/gamma,
    4 muons, 10 jets, pT-ordered, zero where absent) x (log pT, eta, phi, present) and the pile-up count: 77
    features. Standard-model events: a falling QCD jet spectrum, few soft leptons. Anomalous events (signal): a
    mixture of a heavy resonance to two high-pT leptons, many hard jets (high HT) and large MET."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n_samples) < anomalous_fraction).astype(np.int64)
    kind = np.where(y == 1, rng.integers(0, 3, n_samples), -1)  # 0: dilepton, 1: multijet, 2: MET
    X = np.zeros((n_samples, len(L1_FEATURES)), np.float32)
    pileup = rng.poisson(55, n_samples).astype(np.float32)
    slot = {obj: 4 * i for i, obj in enumerate(L1_OBJECTS)}

    def put(rows: np.ndarray, obj: str, pt: np.ndarray) -> None:
        k = slot[obj]
        X[rows, k] = np.log1p(pt)
        X[rows, k + 1] = 0.0 if obj == "met" else rng.uniform(-2.5, 2.5, len(rows))
        X[rows, k + 2] = rng.uniform(-np.pi, np.pi, len(rows))
        X[rows, k + 3] = 1.0

    every = np.arange(n_samples)
    n_jets = np.clip(rng.poisson(np.where(kind == 1, 7.0, 2.5 + pileup / 40)), 0, 10)
    for j in range(10):
        rows = every[n_jets > j]
        scale = np.where(kind[rows] == 1, 180.0, 40.0) / (1 + 0.6 * j)
        put(rows, f"jet_{j}", 30.0 + rng.exponential(scale))
    # the dilepton resonance decays to two electrons or two muons, half and half
    flavour = np.where((kind == 0) & (rng.random(n_samples) < 0.5), "egamma", np.where(kind == 0, "muon", ""))
    for lepton, rate in (("egamma", 0.25), ("muon", 0.15)):
        hard_pair = flavour == lepton
        count = np.clip(rng.poisson(rate, n_samples) + 2 * hard_pair, 0, 4)
        for j in range(4):
            rows = every[count > j]
            hard = hard_pair[rows] & (j < 2)
            put(rows, f"{lepton}_{j}", np.where(hard, rng.normal(300.0, 60.0, len(rows)).clip(60.0),
                                                5.0 + rng.exponential(12.0, len(rows))))
    put(every, "met", np.where(kind == 2, 150.0 + rng.exponential(120.0, n_samples), rng.exponential(25.0, n_samples)))
    X[:, -1] = pileup
    return Dataset("l1_events_synthetic", X, y, L1_FEATURES, L1_CLASSES, synthetic=True,
                   signal_class=L1_CLASSES.index("anomalous"),
                   description=f"SYNTHETIC L1 trigger events, 19 objects x 4 + pile-up (generated by yukti, seed {seed})",
                   meta={"seed": seed, "reconstructed_features": [0, 4 * len(L1_OBJECTS)]})


# -- registry ----------------------------------------------------------------------------------------

_LOADERS: dict[str, Callable[..., Dataset]] = {
    "jets_synthetic": jets_synthetic,
    "lhc_jets": lhc_jets,
    "magic": magic,
    "pixel_clusters_synthetic": pixel_clusters_synthetic,
    "mdt_hits_synthetic": mdt_hits_synthetic,
    "constituents_synthetic": constituents_synthetic,
    "l1_events_synthetic": l1_events_synthetic,
    "hls4ml_jets_150p": hls4ml_jets_150p,
}


def names() -> list[str]:
    return sorted(_LOADERS)


def load(name: str, **kwargs: Any) -> Dataset:
    """A dataset by name (see `names()`), or a table file path (needs `target=`)."""
    if name in _LOADERS:
        return _LOADERS[name](**kwargs)
    if Path(name).suffix.lower() in _TABLE_SUFFIXES:
        if "target" not in kwargs:
            raise YuktiError(f"loading the table {name} needs target=COLUMN")
        return from_table(name, **kwargs)
    raise UnknownNameError(f"unknown dataset {name!r}; known datasets are {names()} or a table path ({', '.join(_TABLE_SUFFIXES)})")
