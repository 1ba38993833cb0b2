"""FED dashboard entry point: page setup, navigation and the sidebar note.

Run with ``streamlit run app.py``. Each page is a script in pages/.
"""

from __future__ import annotations

import logging
from pathlib import Path

import streamlit as st
from PIL import Image, ImageDraw

APP_DIR = Path(__file__).parent
PAGES_DIR = APP_DIR / "pages"

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")



def favicon() -> Image.Image:
    """Draw the tab icon locally: a Material Symbols icon here would make the browser fetch it from Google."""
    icon = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    draw = ImageDraw.Draw(icon)
    draw.ellipse((4, 4, 60, 60), fill="#3969ac")
    draw.ellipse((20, 22, 27, 29), fill="white")
    draw.ellipse((37, 22, 44, 29), fill="white")
    draw.arc((18, 24, 46, 48), start=20, end=160, fill="white", width=4)
    return icon


st.set_page_config(layout="wide", page_title="FED — Facial Expression Detector", page_icon=favicon())

pages = [
    st.Page(PAGES_DIR / "analyze.py", title="Analyze", icon=":material/photo_camera:", default=True),
    st.Page(PAGES_DIR / "history.py", title="History", icon=":material/timeline:"),
    st.Page(PAGES_DIR / "people.py", title="People", icon=":material/group:"),
    st.Page(PAGES_DIR / "model.py", title="Model", icon=":material/model_training:"),
]
page = st.navigation(pages)

with st.sidebar:
    st.markdown("**FED — Facial Expression Detector**")
    st.caption(
        "Results are estimates of visible facial expressions made by a machine-learning model. "
        "They are not diagnoses and do not measure emotions or health."
    )

page.run()
