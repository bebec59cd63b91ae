"""The dashboard's store loading degrades: a bad file is skipped and named, the pages keep their data."""

from __future__ import annotations

from pathlib import Path

import pytest

from yukti.dashboard import data
from yukti import results


def test_load_results_skips_bad_files_and_names_them(fixture_store: Path) -> None:
    good = data.load_results()
    (fixture_store / "garbage.parquet").write_bytes(b"not parquet")
    (fixture_store / "empty.parquet").write_bytes(b"")
    with pytest.warns(results.StoreWarning) as caught:
        frame = data.load_results()
    assert sorted(Path(str(w.message).split()[1].rstrip(":")).name for w in caught) == ["empty.parquet", "garbage.parquet"]
    assert len(frame) == len(good) and set(frame["run_id"]) == set(good["run_id"])
    assert frame["accuracy_drop"].notna().any()  # derived metrics still computed
    skipped = dict(frame.attrs["skipped_files"])
    assert sorted(Path(p).name for p in skipped) == ["empty.parquet", "garbage.parquet"]
    assert all("not a readable Parquet file" in reason for reason in skipped.values())
    assert good.attrs["skipped_files"] == []
    assert not data.latest(frame).empty  # what the pages show first
