"""yukti.datasets: the synthetic generators, the real-data loaders (on files written here) and `load`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from yukti import datasets
from yukti.datasets import (
    CLUSTER_CLASSES,
    JET_CLASSES,
    JET_FEATURES,
    MAGIC_FEATURES,
    Dataset,
    jets_synthetic,
    lhc_jets,
    magic,
    pixel_clusters_synthetic,
)
from yukti.errors import UnknownNameError, YuktiError

REAL_MAGIC = Path(__file__).resolve().parents[3] / "shared" / "data" / "magic04.data"

# -- jets_synthetic ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def jets() -> Dataset:
    return jets_synthetic(n_samples=2000, seed=3)


def test_jets_synthetic_is_deterministic_in_seed(jets: Dataset) -> None:
    again = jets_synthetic(n_samples=2000, seed=3)
    np.testing.assert_array_equal(jets.X, again.X)
    np.testing.assert_array_equal(jets.y, again.y)
    other = jets_synthetic(n_samples=2000, seed=4)
    assert not np.array_equal(jets.X, other.X)
    assert not np.array_equal(jets.y, other.y)


def test_jets_synthetic_schema(jets: Dataset) -> None:
    assert len(JET_FEATURES) == 16
    assert jets.feature_names == JET_FEATURES
    assert jets.feature_names[0] == "j_zlogz" and jets.feature_names[-1] == "j_multiplicity"
    assert jets.class_names == ("g", "q", "W", "Z", "t")
    assert jets.X.shape == (2000, 16)
    assert jets.y.shape == (2000,)
    assert jets.y.dtype == np.int64
    assert set(np.unique(jets.y)) == set(range(len(JET_CLASSES)))  # every class drawn at n=2000
    assert jets.signal_name == "t"


def test_jets_synthetic_is_labelled_synthetic(jets: Dataset) -> None:
    assert jets.synthetic is True
    assert "synthetic" in jets.label
    assert jets.label.startswith(jets.name)
    assert "synthetic" in repr(jets)
    assert "SYNTHETIC" in jets.description
    # real data carries no such mark
    real = Dataset("real", np.zeros((2, 1)), np.array([0, 1]), ("a",), ("x", "y"))
    assert "synthetic" not in real.label


def test_jets_synthetic_values(jets: Dataset) -> None:
    assert jets.X.dtype == np.float32
    assert jets.X.flags["C_CONTIGUOUS"]
    assert not np.isnan(jets.X).any()
    assert np.isfinite(jets.X).all()
    multiplicity = jets.X[:, JET_FEATURES.index("j_multiplicity")]
    np.testing.assert_array_equal(multiplicity, np.round(multiplicity))
    assert multiplicity.min() >= 1
    # every feature but j_zlogz is made non-negative
    nonneg = [i for i, name in enumerate(JET_FEATURES) if name != "j_zlogz"]
    assert (jets.X[:, nonneg] >= 0).all()


def test_split_is_deterministic_disjoint_and_complete() -> None:
    n = 103
    X = np.arange(n, dtype=np.float32)[:, None]  # row i holds the value i, so rows identify themselves
    data = Dataset("rows", X, np.arange(n) % 2, ("i",), ("a", "b"))
    train, test = data.split(test_fraction=0.25, seed=5)
    assert len(test) == round(n * 0.25)
    assert len(train) + len(test) == n
    train_ids, test_ids = set(train.X[:, 0].tolist()), set(test.X[:, 0].tolist())
    assert not train_ids & test_ids
    assert train_ids | test_ids == set(range(n))
    # labels stay with their rows
    np.testing.assert_array_equal(train.y, train.X[:, 0].astype(np.int64) % 2)
    np.testing.assert_array_equal(test.y, test.X[:, 0].astype(np.int64) % 2)
    train2, test2 = data.split(test_fraction=0.25, seed=5)
    np.testing.assert_array_equal(train.X, train2.X)
    np.testing.assert_array_equal(test.X, test2.X)
    _, test3 = data.split(test_fraction=0.25, seed=6)
    assert not np.array_equal(test.X, test3.X)


def test_split_of_jets_sizes(jets: Dataset) -> None:
    train, test = jets.split(test_fraction=0.1, seed=1)
    assert len(test) == round(len(jets) * 0.1)
    assert len(train) + len(test) == len(jets)
    assert train.synthetic and test.synthetic
    assert train.class_names == jets.class_names


def test_with_signal_by_name_and_index(jets: Dataset) -> None:
    by_name = jets.with_signal("W")
    assert by_name.signal_class == JET_CLASSES.index("W")
    assert by_name.signal_name == "W"
    by_index = jets.with_signal(1)
    assert by_index.signal_class == 1
    assert by_index.signal_name == "q"
    assert jets.signal_name == "t"  # the original is unchanged
    with pytest.raises(UnknownNameError):
        jets.with_signal(len(JET_CLASSES))
    with pytest.raises(UnknownNameError):
        jets.with_signal(-1)


def test_with_signal_unknown_name_raises_unknown_name_error(jets: Dataset) -> None:
    with pytest.raises(UnknownNameError):
        jets.with_signal("higgs")


def test_dataset_rejects_label_count_mismatch() -> None:
    with pytest.raises(YuktiError, match="3 samples but 2 labels"):
        Dataset("bad", np.zeros((3, 2)), np.array([0, 1]), ("a", "b"), ("x", "y"))


# -- lhc_jets on local files ---------------------------------------------------------------------

RAW_CLASSES = ["g", "Q", "w", "Z", "T", "j_t", "J_W", "j_g", "q", "z"]  # mixed case and the j_ prefix
EXPECTED_Y = [0, 1, 2, 3, 4, 4, 2, 0, 1, 3]  # their index in JET_CLASSES = (g, q, W, Z, t)


def _jet_features(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(rng.uniform(0.0, 5.0, (n, len(JET_FEATURES))).round(4), columns=list(JET_FEATURES))


def _check_jets(data: Dataset, features: pd.DataFrame, expected_y: list[int]) -> None:
    assert data.name == "lhc_jets"
    assert data.synthetic is False
    assert "synthetic" not in data.label
    assert data.feature_names == JET_FEATURES
    assert data.class_names == JET_CLASSES
    assert data.signal_name == "t"
    assert data.X.dtype == np.float32
    np.testing.assert_allclose(data.X, features[list(JET_FEATURES)].to_numpy(np.float32), rtol=1e-6)
    np.testing.assert_array_equal(data.y, expected_y)


def test_lhc_jets_csv_class_column(tmp_path: Path) -> None:
    features = _jet_features(len(RAW_CLASSES))
    frame = features.assign(**{"class": RAW_CLASSES})
    # put the class column first and shuffle feature order: lookup is by name, not position
    frame = frame[["class", *reversed(JET_FEATURES)]]
    path = tmp_path / "jets.csv"
    frame.to_csv(path, index=False)
    data = lhc_jets(path)
    _check_jets(data, features, EXPECTED_Y)
    assert data.meta["origin"] == str(path)


def test_lhc_jets_parquet(tmp_path: Path) -> None:
    features = _jet_features(len(RAW_CLASSES), seed=1)
    path = tmp_path / "jets.parquet"
    features.assign(**{"class": RAW_CLASSES}).to_parquet(path, index=False)
    _check_jets(lhc_jets(path), features, EXPECTED_Y)


def test_lhc_jets_arff(tmp_path: Path) -> None:
    features = _jet_features(6, seed=2)
    raw = ["g", "q", "w", "z", "t", "w"]
    lines = ["@RELATION hls4ml_lhc_jets_hlf", ""]
    lines += [f"@ATTRIBUTE {name} NUMERIC" for name in JET_FEATURES]
    lines += ["@ATTRIBUTE class {g,q,w,z,t}", "", "@DATA"]
    for row, label in zip(features.itertuples(index=False), raw):
        lines.append(",".join(repr(float(v)) for v in row) + f",{label}")
    path = tmp_path / "jets.arff"
    path.write_text("\n".join(lines) + "\n")
    lower = [c.lower() for c in JET_CLASSES]
    _check_jets(lhc_jets(path), features, [lower.index(c) for c in raw])


def test_lhc_jets_one_hot_columns(tmp_path: Path) -> None:
    features = _jet_features(7, seed=3)
    expected = [4, 0, 1, 2, 3, 2, 4]
    one_hot = np.eye(len(JET_CLASSES), dtype=int)[expected]
    frame = features.copy()
    for i, c in enumerate(JET_CLASSES):
        frame[f"j_{c.lower()}"] = one_hot[:, i]
    path = tmp_path / "onehot.csv"
    frame.to_csv(path, index=False)
    _check_jets(lhc_jets(path), features, expected)


def test_lhc_jets_explicit_target(tmp_path: Path) -> None:
    features = _jet_features(5, seed=4)
    path = tmp_path / "jets.csv"
    features.assign(kind=["t", "t", "g", "Z", "q"]).to_csv(path, index=False)
    with pytest.raises(YuktiError, match="no class column"):
        lhc_jets(path)
    _check_jets(lhc_jets(path, target="kind"), features, [4, 4, 0, 3, 1])


def test_lhc_jets_missing_feature_column_is_named(tmp_path: Path) -> None:
    frame = _jet_features(4).drop(columns=["j_mass_mmdt"]).assign(**{"class": ["g", "q", "w", "z"]})
    path = tmp_path / "jets.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(YuktiError, match="j_mass_mmdt"):
        lhc_jets(path)


def test_lhc_jets_unknown_class_value_raises(tmp_path: Path) -> None:
    frame = _jet_features(4).assign(**{"class": ["g", "q", "higgs", "t"]})
    path = tmp_path / "jets.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(YuktiError, match="higgs"):
        lhc_jets(path)


def test_lhc_jets_missing_file_and_unknown_format(tmp_path: Path) -> None:
    with pytest.raises(YuktiError, match="no data file"):
        lhc_jets(tmp_path / "absent.csv")
    odd = tmp_path / "jets.xlsx"
    odd.write_bytes(b"not a table")
    with pytest.raises(YuktiError, match="unknown table format"):
        lhc_jets(odd)


# -- MAGIC -----------------------------------------------------------------------------------------


def _write_magic(path: Path, labels: list[str], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    values = rng.uniform(-50, 200, (len(labels), len(MAGIC_FEATURES))).round(4)
    path.write_text("".join(",".join(repr(float(v)) for v in row) + f",{label}\n" for row, label in zip(values, labels)))
    return values


def test_magic_small_file(tmp_path: Path) -> None:
    labels = ["g", "h", "g", "g", "h", "g"]
    path = tmp_path / "magic04.data"
    values = _write_magic(path, labels)
    data = magic(path)
    assert data.name == "magic"
    assert data.class_names == ("gamma", "hadron")
    assert data.signal_class == 0 and data.signal_name == "gamma"
    assert data.feature_names == MAGIC_FEATURES
    assert data.synthetic is False
    assert len(data) == len(labels)  # no header: the first line is data
    assert data.X.dtype == np.float32
    np.testing.assert_allclose(data.X, values.astype(np.float32), rtol=1e-6)
    np.testing.assert_array_equal(data.y, [0 if c == "g" else 1 for c in labels])


def test_magic_bad_class_column(tmp_path: Path) -> None:
    path = tmp_path / "bad.data"
    _write_magic(path, ["g", "h", "x"])
    with pytest.raises(YuktiError, match="MAGIC format"):
        magic(path)
    short = tmp_path / "short.data"  # 10 columns only: no class column at all
    short.write_text("1,2,3,4,5,6,7,8,9,10\n1,2,3,4,5,6,7,8,9,10\n")
    with pytest.raises(YuktiError, match="MAGIC format"):
        magic(short)


def test_magic_found_through_yukti_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "mydata"
    folder.mkdir()
    _write_magic(folder / "magic04.data", ["h", "g", "h"])
    monkeypatch.setenv("YUKTI_DATA_DIR", str(folder))
    monkeypatch.chdir(tmp_path)
    data = magic()
    np.testing.assert_array_equal(data.y, [1, 0, 1])
    assert data.meta["origin"] == str(folder / "magic04.data")


def test_magic_not_found_says_where_it_looked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("YUKTI_DATA_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    if (tmp_path.parent / "shared" / "data" / "magic04.data").is_file():
        pytest.skip("a magic04.data lies in ../shared/data of the temporary folder")
    with pytest.raises(YuktiError) as excinfo:
        magic()
    message = str(excinfo.value)
    assert "magic04.data not found" in message
    assert str(tmp_path / "data") in message
    assert str(tmp_path.parent / "shared" / "data") in message


def test_magic_real_file() -> None:
    if not REAL_MAGIC.is_file():
        pytest.skip(f"the real MAGIC data is not at {REAL_MAGIC} (../shared/data/magic04.data from the repo root)")
    data = magic(REAL_MAGIC)
    assert len(data) == 19020
    assert int((data.y == 0).sum()) == 12332  # gammas, as documented by UCI
    assert int((data.y == 1).sum()) == 19020 - 12332
    assert data.X.shape == (19020, 10)
    assert not np.isnan(data.X).any()


# -- from_table / load -------------------------------------------------------------------------------


def test_from_table_factorizes_classes(tmp_path: Path) -> None:
    path = tmp_path / "table.csv"
    frame = pd.DataFrame({
        "a": [1.0, 2.0, 3.0, 4.0, 5.0],
        "note": ["x", "y", "z", "w", "v"],  # not numeric: not a feature
        "b": [10, 20, 30, 40, 50],
        "kind": ["sig", "bkg", "sig", "other", "bkg"],
    })
    frame.to_csv(path, index=False)
    data = datasets.from_table(path, target="kind")
    assert data.name == "table"
    assert data.feature_names == ("a", "b")
    classes = tuple(sorted(set(frame["kind"])))
    assert data.class_names == classes
    np.testing.assert_array_equal(data.y, [classes.index(k) for k in frame["kind"]])
    np.testing.assert_array_equal(data.X, frame[["a", "b"]].to_numpy(np.float32))
    assert data.signal_class == 0
    assert data.with_signal("sig").signal_name == "sig"
    chosen = datasets.from_table(path, target="kind", features=["b"], signal="sig", name="named")
    assert chosen.name == "named"
    assert chosen.feature_names == ("b",)
    assert chosen.signal_name == "sig"
    with pytest.raises(YuktiError, match="missing_col"):
        datasets.from_table(path, target="kind", features=["a", "missing_col"])
    with pytest.raises(YuktiError, match="no target column"):
        datasets.from_table(path, target="nope")


def test_load_table_and_names(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    pd.DataFrame({"x": [0.5, 1.5, 2.5], "label": ["b", "a", "b"]}).to_csv(path, index=False)
    data = datasets.load(str(path), target="label")
    assert data.class_names == ("a", "b")
    np.testing.assert_array_equal(data.y, [1, 0, 1])
    with pytest.raises(YuktiError, match="target"):
        datasets.load(str(path))
    with pytest.raises(UnknownNameError, match="no_such_dataset"):
        datasets.load("no_such_dataset")
    assert datasets.names() == sorted(["jets_synthetic", "lhc_jets", "magic", "pixel_clusters_synthetic", "mdt_hits_synthetic",
                                       "constituents_synthetic", "hls4ml_jets_150p", "l1_events_synthetic"])


def test_mdt_hits_are_chamber_shaped_and_muons_cross_every_layer() -> None:
    data = datasets.mdt_hits_synthetic(n_samples=600, seed=3)
    assert data.X.shape == (600, 216, 8) and data.X.dtype == np.float32 and data.synthetic
    assert data.class_names == ("noise", "muon") and data.signal_name == "muon" and "SYNTHETIC" in data.description
    assert data.X.min() == 0.0 and data.X.max() <= 1.0
    hit = data.X > 0
    layers_hit = hit.any(axis=1).sum(axis=1)  # layers with at least one hit, per event
    muon, noise = data.y == 1, data.y == 0
    assert np.median(layers_hit[muon]) == 8  # a track leaves a hit in (nearly) every layer
    # noise events have more noise hits, but a muon's hits line up: fewer tubes per layer hit
    assert hit[noise].sum() / noise.sum() > 0.8 * hit[muon].sum() / muon.sum() - 8
    again = datasets.mdt_hits_synthetic(n_samples=600, seed=3)
    np.testing.assert_array_equal(again.X, data.X)  # deterministic


def test_load_by_name_passes_kwargs() -> None:
    data = datasets.load("jets_synthetic", n_samples=50, seed=9)
    direct = jets_synthetic(n_samples=50, seed=9)
    assert len(data) == 50
    np.testing.assert_array_equal(data.X, direct.X)


# -- pixel_clusters_synthetic ------------------------------------------------------------------------


def test_pixel_clusters_synthetic() -> None:
    data = pixel_clusters_synthetic(n_samples=300)
    assert data.X.shape == (300, 1, 16, 16)
    assert data.X.dtype == np.float32
    assert data.class_names == CLUSTER_CLASSES and len(data.class_names) == 3
    assert set(np.unique(data.y)) == {0, 1, 2}
    assert data.signal_name == "merged"
    assert data.synthetic is True and "synthetic" in data.label
    assert (data.X >= 0).all()
    nonzero = data.X[data.X > 0]
    assert nonzero.size > 0 and nonzero.min() >= 0.3  # zero suppression below 0.3
    assert len(data.feature_names) == 16 * 16
    again = pixel_clusters_synthetic(n_samples=300)
    np.testing.assert_array_equal(data.X, again.X)
    np.testing.assert_array_equal(data.y, again.y)
    other = pixel_clusters_synthetic(n_samples=300, seed=8)
    assert not np.array_equal(data.X, other.X)


def test_magic_with_extra_columns_is_refused_not_shifted(tmp_path: Path) -> None:
    wide = tmp_path / "wide.data"  # 12 columns: pandas would silently turn one into the index
    wide.write_text("0,1,2,3,4,5,6,7,8,9,10,g\n0,1,2,3,4,5,6,7,8,9,10,h\n")
    with pytest.raises(YuktiError, match="expected 11 columns"):
        magic(wide)


def test_from_table_refuses_rows_without_a_label(tmp_path: Path) -> None:
    path = tmp_path / "holes.csv"
    pd.DataFrame({"a": [1.0, 2.0, 3.0], "label": ["x", None, "y"]}).to_csv(path, index=False)
    with pytest.raises(YuktiError, match="empty in 1 row"):
        datasets.from_table(path, target="label")


def test_lhc_jets_fetches_openml_42468_through_openml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No network in tests: a stand-in `openml` module checks the loader asks for the right data set
    with yukti's cache folder and turns the frame it returns into the jet schema."""
    import sys
    import types

    calls: dict[str, object] = {}
    frame = pd.DataFrame(np.random.default_rng(0).random((5, 16)), columns=list(JET_FEATURES))
    frame["class"] = ["g", "q", "w", "z", "t"]

    class FakeDataset:
        def get_data(self, dataset_format: str):
            calls["format"] = dataset_format
            return frame, None, None, None

    def get_dataset(dataset_id: int, **kwargs: object) -> FakeDataset:
        calls["id"] = dataset_id
        return FakeDataset()

    fake = types.ModuleType("openml")
    fake.config = types.SimpleNamespace(set_root_cache_directory=lambda path: calls.__setitem__("cache", path))
    fake.datasets = types.SimpleNamespace(get_dataset=get_dataset)
    monkeypatch.setitem(sys.modules, "openml", fake)
    monkeypatch.setenv("YUKTI_CACHE_DIR", str(tmp_path))
    data = lhc_jets()
    assert calls["id"] == 42468 and calls["format"] == "dataframe" and str(calls["cache"]).startswith(str(tmp_path))
    assert list(data.y) == [0, 1, 2, 3, 4] and data.meta["origin"] == "OpenML 42468" and not data.synthetic


def test_constituents_are_pt_ordered_and_padded_in_the_hls4ml_schema() -> None:
    data = datasets.constituents_synthetic(n_samples=400, n_constituents=60, seed=2)
    assert data.X.shape == (400, 60, 3) and data.synthetic and data.class_names == datasets.JET_CLASSES
    ptrel = data.X[:, :, 0]
    assert (np.diff(ptrel, axis=1) <= 1e-7).all()  # sorted by pT, padding (zeros) last
    assert np.allclose(ptrel.sum(axis=1)[(ptrel[:, -1] == 0)], 1.0, atol=1e-4)  # fractions of jets that fit sum to 1
    assert (ptrel == 0).any()  # 60 slots: some jets have fewer particles, zero-padded
    top, gluon = data.X[data.y == 4], data.X[data.y == 0]
    assert np.abs(top[:, :, 1]).mean() > np.abs(gluon[:, :, 1]).mean() * 0.9  # three prongs spread wider
    all_features = datasets.constituents_synthetic(n_samples=50, n_constituents=150, features=datasets.PARTICLE_FEATURES)
    assert all_features.X.shape == (50, 150, 16)
    with pytest.raises(YuktiError, match="unknown particle feature"):
        datasets.constituents_synthetic(n_samples=5, features=("j1_mass",))


def _write_hls4ml_file(path: Path, table: np.ndarray, y: np.ndarray) -> None:
    h5py = pytest.importorskip("h5py")
    jets = np.zeros((len(y), 59), np.float32)
    jets[np.arange(len(y)), 53 + y] = 1.0  # the last six columns: j_g, j_q, j_w, j_z, j_t, j_undef
    with h5py.File(path, "w") as handle:
        # the file's own feature order (reversed here): the loader must follow the names
        handle["jetConstituentList"] = table[:, :, ::-1]
        handle["particleFeatureNames"] = np.array([f.encode() for f in datasets.PARTICLE_FEATURES[::-1]])
        handle["jets"] = jets


def test_the_hls4ml_150_particle_format_reads_back(tmp_path: Path) -> None:
    full = datasets.constituents_synthetic(n_samples=120, n_constituents=150, features=datasets.PARTICLE_FEATURES, seed=9)
    _write_hls4ml_file(tmp_path / "jetImage_0_150p_0_60.h5", full.X[:60], full.y[:60])
    _write_hls4ml_file(tmp_path / "jetImage_0_150p_60_120.h5", full.X[60:], full.y[60:])
    one = datasets.hls4ml_jets_150p(tmp_path / "jetImage_0_150p_0_60.h5", n_constituents=8)
    assert not one.synthetic and one.X.shape == (60, 8, 3) and np.array_equal(one.y, full.y[:60])
    np.testing.assert_array_equal(one.X, full.X[:60, :8, [6, 8, 11]])  # ptrel, etarel, phirel
    folder = datasets.hls4ml_jets_150p(tmp_path, n_constituents=16, features=("j1_pt", "j1_deltaR"))
    assert folder.X.shape == (120, 16, 2) and np.array_equal(folder.y, full.y)
    (tmp_path / "bad").mkdir()
    h5py = pytest.importorskip("h5py")
    with h5py.File(tmp_path / "bad" / "x.h5", "w") as handle:
        handle["something"] = np.zeros(3)
    with pytest.raises(YuktiError, match="not an hls4ml jet file"):
        datasets.hls4ml_jets_150p(tmp_path / "bad")
    with pytest.raises(YuktiError, match="no hls4ml jet file"):
        datasets.hls4ml_jets_150p(tmp_path / "nothing_here.h5")


def test_the_hls4ml_files_are_found_in_the_data_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("YUKTI_DATA_DIR", str(tmp_path))
    with pytest.raises(YuktiError, match="no hls4ml 150-particle jet files"):
        datasets.load("hls4ml_jets_150p")
    full = datasets.constituents_synthetic(n_samples=30, n_constituents=150, features=datasets.PARTICLE_FEATURES, seed=1)
    (tmp_path / "hls4ml_jets_150p").mkdir()
    _write_hls4ml_file(tmp_path / "hls4ml_jets_150p" / "a.h5", full.X, full.y)
    assert datasets.load("hls4ml_jets_150p").X.shape == (30, 16, 3)


def test_the_two_input_form_summarises_every_particle() -> None:
    full = datasets.constituents_synthetic(n_samples=300, n_constituents=150, features=datasets.PARTICLE_FEATURES, seed=4)
    two = datasets.constituents_synthetic(n_samples=300, n_constituents=16, seed=4, jet_features=True)
    jet, constituents = two.inputs
    assert jet.shape == (300, len(datasets.JET_SUMMARY_FEATURES)) and constituents.shape == (300, 16, 3)
    assert two.X is jet or np.array_equal(two.X, jet)  # X is the first input
    assert two.meta["input_names"] == ("jet", "constituents")
    # the summary reads all 150 particles, not only the 16 kept: recompute two of its features by hand
    table = full.X.astype(np.float64)
    col = {name: table[:, :, k] for k, name in enumerate(datasets.PARTICLE_FEATURES)}
    px, py, pz, e = (col[f"j1_{q}"].sum(axis=1) for q in ("px", "py", "pz", "e"))
    mass_over_pt = np.sqrt(np.maximum(e ** 2 - px ** 2 - py ** 2 - pz ** 2, 0)) / np.hypot(px, py)
    np.testing.assert_allclose(jet[:, 0], mass_over_pt, rtol=1e-3)
    np.testing.assert_allclose(jet[:, 1], np.log1p((col["j1_e"] > 0).sum(axis=1)), rtol=1e-6)
    # three-prong tops are heavier than one-prong quarks
    assert jet[two.y == 4, 0].mean() > 1.5 * jet[two.y == 1, 0].mean()
    test = two.split(seed=1)[1]
    assert len(test.inputs[0]) == len(test.inputs[1]) == len(test.y)


def test_l1_events_have_19_objects_and_anomalies_differ() -> None:
    data = datasets.l1_events_synthetic(n_samples=4000, seed=2)
    assert data.X.shape == (4000, 77) and data.synthetic and data.signal_name == "anomalous"
    assert data.feature_names[-1] == "n_pileup" and data.meta["reconstructed_features"] == [0, 76]
    present = data.X[:, 3:76:4]
    pt = data.X[:, 0:76:4]
    assert ((present == 0) <= (pt == 0)).all()  # an absent object has no pT
    assert set(np.unique(present)) <= {0.0, 1.0}
    anomalous, normal = data.y == 1, data.y == 0
    assert 0.1 < anomalous.mean() < 0.3
    # harder events: summed log pT is larger for the anomalous mixture
    assert pt[anomalous].sum(axis=1).mean() > pt[normal].sum(axis=1).mean()
    again = datasets.l1_events_synthetic(n_samples=4000, seed=2)
    np.testing.assert_array_equal(again.X, data.X)
