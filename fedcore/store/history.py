"""The history query of one person and its DataFrame, CSV and JSON forms."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Row, Select, select, type_coerce
from sqlalchemy.types import NullType

from fedcore.constants import CLASSES
from fedcore.store.models import PROBABILITY_COLUMNS, Capture, FaceObservation
from fedcore.store.records import Person

HISTORY_COLUMNS: tuple[str, ...] = (
    "captured_at",
    "capture_id",
    "source",
    "image_sha256",
    "face_number",
    "top_expression",
    "top_probability",
    "uncertain",
    *CLASSES,
    "confidence",
    "box_x",
    "box_y",
    "box_w",
    "box_h",
    "model_name",
    "model_version",
)

_INTEGER_COLUMNS = ("capture_id", "face_number", "box_x", "box_y", "box_w", "box_h")
_FLOAT_COLUMNS = ("top_probability", *CLASSES, "confidence")
_TEXT_COLUMNS = ("source", "image_sha256", "top_expression", "model_name", "model_version")

EXPORT_NOTE = (
    "Facial expression estimates produced by a machine-learning model from photos. "
    "They are not a diagnosis and can be wrong, especially for faces flagged uncertain."
)


def history_statement(person_id: int, *, since: datetime | None, until: datetime | None) -> Select[Any]:
    """Build one joined Core query of a person's observations, oldest capture first."""
    statement = (
        select(
            # Raw values without per-row datetime parsing: history_frame parses the whole column at once.
            type_coerce(Capture.captured_at, NullType()).label("captured_at"),
            Capture.id.label("capture_id"),
            Capture.source,
            Capture.image_sha256,
            FaceObservation.face_number,
            FaceObservation.top_expression,
            FaceObservation.uncertain,
            *PROBABILITY_COLUMNS,
            FaceObservation.confidence,
            FaceObservation.box_x,
            FaceObservation.box_y,
            FaceObservation.box_w,
            FaceObservation.box_h,
            Capture.model_name,
            Capture.model_version,
        )
        .join(FaceObservation, FaceObservation.capture_id == Capture.id)
        .where(Capture.person_id == person_id)
        .order_by(Capture.captured_at, Capture.id, FaceObservation.face_number)
    )
    if since is not None:
        statement = statement.where(Capture.captured_at >= since)
    if until is not None:
        statement = statement.where(Capture.captured_at < until)
    return statement


def history_frame(names: Sequence[str], rows: Sequence[Row[Any]]) -> pd.DataFrame:
    """Build the history DataFrame column by column from the column names and rows of ``history_statement``."""
    if rows:
        columns: dict[str, Sequence[Any]] = dict(zip(names, zip(*rows)))
    else:
        columns = {name: () for name in names}
    data: dict[str, Any] = {}
    for name, values in columns.items():
        if name == "captured_at":
            data[name] = _utc_times(values)
        elif name == "uncertain":
            data[name] = np.array(values, dtype=bool)
        elif name in _INTEGER_COLUMNS:
            data[name] = np.array(values, dtype=np.int64)
        elif name in _FLOAT_COLUMNS:
            data[name] = np.array(values, dtype=np.float64)
        else:
            data[name] = pd.array(np.array(values, dtype=object), dtype="str")
    probabilities = np.stack([data[name] for name in CLASSES]) if rows else np.empty((len(CLASSES), 0))
    data["top_probability"] = probabilities.max(axis=0, initial=0.0)
    return pd.DataFrame({name: data[name] for name in HISTORY_COLUMNS}, copy=False)


def _utc_times(values: Sequence[Any]) -> pd.DatetimeIndex:
    """Parse stored times: naive UTC text from SQLite or aware datetimes from PostgreSQL."""
    times = pd.to_datetime(np.array(values, dtype=object), utc=True, format="ISO8601")
    return times.as_unit("us")


def _iso(moment: datetime | pd.Timestamp) -> str:
    return moment.isoformat()


def history_csv(code: str, frame: pd.DataFrame) -> str:
    export = frame.copy()
    export["captured_at"] = [_iso(moment) for moment in export["captured_at"]]
    export.insert(0, "person_code", code)
    return export.to_csv(index=False, lineterminator="\n")


def history_json(person: Person, frame: pd.DataFrame, *, exported_at: datetime) -> str:
    observations = []
    for row in frame.itertuples(index=False):
        values = row._asdict()
        observations.append(
            {
                "captured_at": _iso(values["captured_at"]),
                "capture_id": int(values["capture_id"]),
                "source": values["source"],
                "image_sha256": values["image_sha256"],
                "face_number": int(values["face_number"]),
                "top_expression": values["top_expression"],
                "top_probability": float(values["top_probability"]),
                "uncertain": bool(values["uncertain"]),
                "probabilities": {name: float(values[name]) for name in CLASSES},
                "confidence": float(values["confidence"]),
                "box": [int(values[name]) for name in ("box_x", "box_y", "box_w", "box_h")],
                "model_name": values["model_name"],
                "model_version": values["model_version"],
            }
        )
    document = {
        "person": {
            "code": person.code,
            "display_name": person.display_name,
            "created_at": _iso(person.created_at),
        },
        "exported_at": _iso(exported_at),
        "note": EXPORT_NOTE,
        "observations": observations,
    }
    return json.dumps(document, ensure_ascii=False, indent=2)
