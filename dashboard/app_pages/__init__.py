"""Dashboard pages, run by st.navigation from app.py (a package only so the wheel ships them)."""
