"""Model page: the card, metadata and test-set evaluation of the shipped expression model."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from fedcore.constants import CLASSES, DEFAULT_MODEL_NAME, MODELS_DIR

logger = logging.getLogger(__name__)

MODEL_CARD = MODELS_DIR / "README.md"
METADATA = MODELS_DIR / f"{DEFAULT_MODEL_NAME}.json"
EVALUATION_DIR = MODELS_DIR / "evaluation"
TEST_REPORT = EVALUATION_DIR / "test-report.json"
CONFUSION_MATRIX_IMAGE = EVALUATION_DIR / "confusion_matrix.png"
RELIABILITY_IMAGE = EVALUATION_DIR / "reliability.png"


def read_json(path: Path) -> dict[str, Any] | None:
    """Return the JSON object in ``path``, or None after telling the user why it is not shown."""
    if not path.is_file():
        st.info(f"{path.name} is not in {path.parent}, so this part is not shown.")
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        logger.warning("cannot read %s: %s", path, error)
        st.warning(f"{path.name} could not be read ({error}). Restore the file from the model release.")
        return None
    if not isinstance(data, dict):
        st.warning(f"{path.name} does not contain a JSON object. Restore the file from the model release.")
        return None
    return data


def metadata_ui(metadata: dict[str, Any]) -> None:
    columns = st.columns(4)
    columns[0].metric("Model", str(metadata.get("name", "unknown")))
    columns[1].metric("Version", str(metadata.get("version", "unknown")))
    columns[2].metric("Architecture", str(metadata.get("architecture", "unknown")))
    size = metadata.get("input_size")
    columns[3].metric("Input", f"{size}×{size} {metadata.get('color_mode', '')}".strip() if size else "unknown")

    classes = metadata.get("classes")
    if classes and list(classes) != list(CLASSES):
        st.warning(
            f"The model's classes {classes} differ from the dashboard's order {list(CLASSES)}. "
            "Charts would mislabel probabilities; install a model trained for this version of FED."
        )
    details = {
        "Classes": ", ".join(classes or []),
        "Temperature (calibration)": metadata.get("temperature"),
        "Averaged with the mirror image": "yes" if metadata.get("flip_average") else "no",
        "Training data": metadata.get("training_data"),
    }
    st.table(pd.Series({key: "" if value is None else str(value) for key, value in details.items()}, name="value"))

    metrics = metadata.get("metrics")
    if metrics:
        with st.expander("Training and calibration metrics", expanded=False):
            st.json(metrics)


def evaluation_ui(report: dict[str, Any]) -> None:
    columns = st.columns(3)
    for column, key, label in zip(columns, ("accuracy", "macro_f1", "ece"), ("Accuracy", "Macro F1", "ECE")):
        value = report.get(key)
        column.metric(label, "–" if value is None else f"{float(value):.3f}")
    st.caption(
        "Accuracy and macro F1 on the held-out test set; ECE (expected calibration error) measures how far "
        "the stated probabilities are from the observed hit rates, lower is better."
    )

    per_class = report.get("per_class")
    if isinstance(per_class, dict) and per_class:
        table = pd.DataFrame.from_dict(per_class, orient="index")
        ordered = [name for name in CLASSES if name in table.index]
        table = table.loc[ordered + [name for name in table.index if name not in ordered]]
        st.subheader("Per class")
        st.dataframe(table, column_config={"support": st.column_config.NumberColumn(format="%d")})


def image_ui(path: Path, caption: str) -> None:
    if path.is_file():
        st.image(str(path), caption=caption)
    else:
        st.info(f"{path.name} is not in {path.parent}, so the {caption.lower()} is not shown.")


def main() -> None:
    st.title("Model")
    st.write(
        "The expression model shipped with this installation: what it was trained on, how it was tested "
        "and where it is known to be weak. Read this before relying on an estimate."
    )

    st.header("Model card")
    if MODEL_CARD.is_file():
        st.markdown(MODEL_CARD.read_text(encoding="utf-8"))
    else:
        st.info(f"The model card {MODEL_CARD.name} is not in {MODELS_DIR}.")

    st.header("Metadata")
    metadata = read_json(METADATA)
    if metadata is not None:
        metadata_ui(metadata)

    st.header("Test-set evaluation")
    report = read_json(TEST_REPORT)
    if report is not None:
        evaluation_ui(report)
    left, right = st.columns(2)
    with left:
        image_ui(CONFUSION_MATRIX_IMAGE, "Confusion matrix")
    with right:
        image_ui(RELIABILITY_IMAGE, "Reliability diagram")


main()
