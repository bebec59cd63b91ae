"""The dashboard's routing under AppTest: the app's root opens Trade-offs (which also has its own
address, /tradeoffs: the browser test opens every page by its path)."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

from yukti.dashboard import APP_PATH


def test_the_root_opens_tradeoffs_keeping_the_query(fixture_store: Path) -> None:
    at = AppTest.from_file(str(APP_PATH), default_timeout=120)
    at.query_params["note"] = "kept"
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert [t.value for t in at.title] == ["Trade-offs"]
    assert at.get("plotly_chart"), "the Trade-offs chart is drawn"
    assert at.query_params.get("note") == "kept"
