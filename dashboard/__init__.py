"""Yukti's Streamlit dashboard.

`app.py` is the entry script (it only routes); the pages live in `app_pages/`. Data loading and
shaping (`data.py`) and figure building (`charts.py`) are plain modules that import no Streamlit,
so tests and notebooks can use them directly. `launch.py` starts the app (`yukti dashboard`).
"""

from pathlib import Path

APP_PATH = Path(__file__).resolve().parent / "app.py"
