"""Fixtures for the dashboard tests (the data itself is in dashboard_fixtures.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pandas as pd
import pytest

from dashboard_fixtures import LATEST, OLDER, make_history, make_run
from yukti import results


@pytest.fixture
def fixture_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A results store with an older and a newer run, set as YUKTI_RESULTS_DIR."""
    store = tmp_path / "results"
    results.append(make_run("older000001", OLDER, "2025-01-01T10:00:00Z"), store)
    results.append(make_run("latest00002", LATEST, "2025-02-01T10:00:00Z", with_unavailable=True), store)
    monkeypatch.setenv("YUKTI_RESULTS_DIR", str(store))
    return store


@pytest.fixture
def fake_asv(monkeypatch: pytest.MonkeyPatch) -> pd.DataFrame:
    """yukti.results.from_asv replaced by the fixture history (whether or not this yukti has it yet)."""
    history = make_history()
    calls: list[str] = []

    def from_asv(results_dir: object, *, machine: str | None = None) -> pd.DataFrame:
        calls.append(str(results_dir))
        return history.copy()

    monkeypatch.setattr(results, "from_asv", from_asv, raising=False)
    return history


@pytest.fixture(autouse=True)
def clear_streamlit_caches() -> Iterator[None]:
    # st.cache_data outlives one AppTest: without this a test would see the previous test's store.
    import streamlit as st

    st.cache_data.clear()
    st.cache_resource.clear()
    yield
    st.cache_data.clear()
    st.cache_resource.clear()
