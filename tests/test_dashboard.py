"""Chart builders, time zone handling and wording of fedcore.dashboard, on hand-built histories."""

from __future__ import annotations

import logging
from datetime import date, datetime, timezone

import numpy as np
import pandas as pd
import pytest

from fedcore.constants import CLASS_COLORS, CLASSES
from fedcore.dashboard import (
    ChartData,
    aggregate_probabilities,
    default_timezone,
    describe_error,
    describe_status,
    dominant_counts,
    dominant_distribution_figure,
    dominant_timeline_figure,
    history_table,
    local_day_bounds,
    probability_figure,
    probability_lines_figure,
    summarize,
)
from fedcore.results import DetectedFace, ErrorInfo, FaceResult, ImageResult


def history_frame(times: list[datetime] | pd.DatetimeIndex, labels: list[str]) -> pd.DataFrame:
    """Build a frame shaped like HistoryStore.history(): one row per face, top class at 0.7."""
    rows = []
    for capture_id, (moment, label) in enumerate(zip(times, labels), start=1):
        probabilities = {name: (0.7 if name == label else 0.3 / 7) for name in CLASSES}
        rows.append(
            {
                "captured_at": pd.Timestamp(moment),
                "capture_id": capture_id,
                "source": "upload",
                "face_number": 1,
                "top_expression": label,
                "top_probability": 0.7,
                "uncertain": False,
                **probabilities,
            }
        )
    columns = ["captured_at", "capture_id", "source", "face_number", "top_expression", "top_probability", "uncertain"]
    frame = pd.DataFrame(rows, columns=[*columns, *CLASSES])
    frame["captured_at"] = pd.to_datetime(frame["captured_at"], utc=True)
    return frame


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=timezone.utc)


# --- Probability chart ----------------------------------------------------------------


def test_probability_figure_order_and_colors():
    probabilities = (0.05, 0.6, 0.1, 0.05, 0.05, 0.05, 0.05, 0.05)
    bars = probability_figure(probabilities).data[0]
    assert list(bars.y) == list(CLASSES)
    assert list(bars.x) == list(probabilities)
    assert list(bars.marker.color) == [CLASS_COLORS[name] for name in CLASSES]
    assert bars.orientation == "h"
    assert list(bars.text)[1] == "60%"


def test_probability_figure_fixed_axis_range():
    layout = probability_figure((1.0, 0, 0, 0, 0, 0, 0, 0)).layout
    assert tuple(layout.xaxis.range) == (0, 1)
    assert layout.yaxis.autorange == "reversed"


def test_probability_figure_wrong_length_rejected():
    with pytest.raises(ValueError, match="expected 8 probabilities"):
        probability_figure((0.5, 0.5))


# --- Aggregation ----------------------------------------------------------------------


def test_aggregate_small_history_unchanged():
    frame = history_frame([utc(2025, 1, 1, 8), utc(2025, 1, 1, 9)], ["happy", "sad"])
    data = aggregate_probabilities(frame, timezone="UTC")
    assert data.resolution is None
    assert data.frame["happy"].tolist() == pytest.approx([0.7, 0.3 / 7])
    assert data.frame["time_text"].tolist() == ["2025-01-01 08:00 UTC", "2025-01-01 09:00 UTC"]


def test_aggregate_10000_rows_hourly_means():
    # 10,000 observations every 10 minutes span about 69 days: 1,667 hourly bins.
    times = pd.date_range("2025-01-01", periods=10_000, freq="10min", tz="UTC")
    labels = ["happy" if index % 2 else "sad" for index in range(10_000)]
    data = aggregate_probabilities(history_frame(times, labels), timezone="UTC")
    assert data.resolution == "hourly"
    assert len(data.frame) == 1_667
    assert data.frame["count"].sum() == 10_000
    # Each full hour contains three happy and three sad observations.
    assert data.frame["happy"].iloc[0] == pytest.approx((3 * 0.7 + 3 * 0.3 / 7) / 6)
    assert data.frame["time"].iloc[1] == pd.Timestamp("2025-01-01 01:00")


def test_aggregate_long_span_daily_means():
    # Every 30 minutes for 10,000 observations is 5,000 hours, too many hourly bins.
    times = pd.date_range("2025-01-01", periods=10_000, freq="30min", tz="UTC")
    data = aggregate_probabilities(history_frame(times, ["fear"] * 10_000), timezone="UTC")
    assert data.resolution == "daily"
    assert len(data.frame) == 209
    assert data.frame["count"].iloc[0] == 48
    assert data.frame["fear"].iloc[0] == pytest.approx(0.7)


def test_aggregate_daily_bins_follow_dst():
    # Hourly observations around 2025-10-26, when Europe/Berlin's day had 25 hours.
    times = pd.date_range("2025-10-25 22:00", "2025-10-26 22:00", freq="h", tz="UTC")
    frame = history_frame(times, ["neutral"] * len(times))
    data = aggregate_probabilities(frame, timezone="Europe/Berlin", max_points=20)
    assert data.resolution == "daily"
    assert data.frame["time"].tolist() == [pd.Timestamp("2025-10-26")]
    assert data.frame["count"].tolist() == [25]


def test_probability_lines_one_trace_per_class():
    frame = history_frame([utc(2025, 1, 1, 8)], ["happy"])
    figure = probability_lines_figure(aggregate_probabilities(frame, timezone="UTC"))
    assert [trace.name for trace in figure.data] == list(CLASSES)
    assert [trace.line.color for trace in figure.data] == [CLASS_COLORS[name] for name in CLASSES]


def test_probability_lines_title_names_resolution():
    data = ChartData(pd.DataFrame({"time": [], "time_text": [], "count": [], **{name: [] for name in CLASSES}}), "daily")
    assert probability_lines_figure(data).layout.title.text == "Estimated probability of each expression (daily means)"


# --- Top expression charts --------------------------------------------------------------


def test_dominant_timeline_latest_points_only():
    times = pd.date_range("2025-01-01", periods=30, freq="h", tz="UTC")
    figure = dominant_timeline_figure(history_frame(times, ["happy"] * 30), timezone="UTC", max_points=10)
    assert len(figure.data) == 1
    assert len(figure.data[0].x) == 10
    assert figure.layout.title.text == "Top expression of each capture (latest 10 of 30)"
    assert pd.Timestamp(figure.data[0].x[0]) == pd.Timestamp("2025-01-01 20:00")


def test_dominant_counts_weeks_start_monday():
    # 2025-06-01 is a Sunday, 2025-06-02 a Monday.
    frame = history_frame([utc(2025, 6, 1, 12), utc(2025, 6, 2, 12), utc(2025, 6, 8, 12)], ["sad", "happy", "happy"])
    counts = dominant_counts(frame, timezone="UTC", period="week")
    assert counts.index.tolist() == [pd.Timestamp("2025-05-26"), pd.Timestamp("2025-06-02")]
    assert counts.columns.tolist() == list(CLASSES)
    assert counts["sad"].tolist() == [1, 0]
    assert counts["happy"].tolist() == [0, 2]


def test_dominant_counts_local_day():
    # 23:30 UTC on 2025-01-09 is already 2025-01-10 in Tokyo.
    frame = history_frame([utc(2025, 1, 9, 23, 30)], ["surprise"])
    assert dominant_counts(frame, timezone="UTC", period="day").index.tolist() == [pd.Timestamp("2025-01-09")]
    assert dominant_counts(frame, timezone="Asia/Tokyo", period="day").index.tolist() == [pd.Timestamp("2025-01-10")]


def test_dominant_distribution_stacked_bars():
    frame = history_frame([utc(2025, 6, 2, 12), utc(2025, 6, 3, 12)], ["sad", "happy"])
    figure = dominant_distribution_figure(dominant_counts(frame, timezone="UTC", period="day"), period="day")
    assert figure.layout.barmode == "stack"
    assert [trace.name for trace in figure.data] == list(CLASSES)
    assert list(figure.data[1].x) == ["2025-06-02", "2025-06-03"]
    assert list(figure.data[1].y) == [0, 1]


# --- Summary and table ------------------------------------------------------------------


def test_summarize_counts_and_share():
    frame = history_frame([utc(2025, 1, day, 9) for day in range(1, 5)], ["happy", "sad", "happy", "anger"])
    summary = summarize(frame, expression="happy", threshold=0.5)
    assert summary.captures == 4
    assert summary.observations == 4
    assert summary.most_frequent == "happy"
    assert summary.share_above == 0.5


def test_summarize_threshold_is_strict():
    frame = history_frame([utc(2025, 1, 1, 9)], ["happy"])
    assert summarize(frame, expression="happy", threshold=0.7).share_above == 0.0


def test_summarize_tie_takes_class_order():
    frame = history_frame([utc(2025, 1, 1, 9), utc(2025, 1, 2, 9)], ["anger", "sad"])
    assert summarize(frame, expression="sad", threshold=0.5).most_frequent == "sad"


def test_summarize_empty_history():
    summary = summarize(history_frame([], []), expression="fear", threshold=0.5)
    assert summary.captures == 0
    assert summary.most_frequent is None
    assert summary.share_above is None


def test_summarize_unknown_expression_rejected():
    with pytest.raises(ValueError, match="unknown expression 'joy'"):
        summarize(history_frame([utc(2025, 1, 1)], ["happy"]), expression="joy", threshold=0.5)


def test_history_table_newest_first_local():
    frame = history_frame([utc(2025, 7, 1, 6), utc(2025, 7, 2, 6)], ["happy", "sad"])
    table = history_table(frame, timezone="America/Los_Angeles")
    assert table["time"].tolist() == ["2025-07-01 23:00 PDT", "2025-06-30 23:00 PDT"]
    assert table["top expression"].tolist() == ["sad", "happy"]
    assert table.columns.tolist() == ["time", "source", "face", "top expression", "probability", "uncertain"]
    assert table["probability"].dtype == np.float64


# --- Time zones -------------------------------------------------------------------------


def test_local_day_bounds_dst_day_25_hours():
    since, until = local_day_bounds(date(2025, 10, 26), date(2025, 10, 26), "Europe/Berlin")
    assert since == utc(2025, 10, 25, 22)
    assert until == utc(2025, 10, 26, 23)


def test_default_timezone_from_env(monkeypatch):
    monkeypatch.setenv("FED_DISPLAY_TIMEZONE", "Australia/Sydney")
    assert default_timezone() == "Australia/Sydney"


def test_default_timezone_invalid_falls_back(monkeypatch, caplog):
    monkeypatch.setenv("FED_DISPLAY_TIMEZONE", "Mars/Olympus_Mons")
    with caplog.at_level(logging.WARNING, logger="fedcore.dashboard"):
        assert default_timezone() == "UTC"
    assert "Mars/Olympus_Mons" in caplog.text


def test_default_timezone_unset_is_utc(monkeypatch):
    monkeypatch.delenv("FED_DISPLAY_TIMEZONE", raising=False)
    assert default_timezone() == "UTC"


# --- Wording ----------------------------------------------------------------------------


def test_describe_status_faces_and_errors():
    face = FaceResult(1, DetectedFace((0, 0, 10, 10), 0.99, ()), (1.0, 0, 0, 0, 0, 0, 0, 0))
    assert describe_status(ImageResult("a.png", 10, 10, faces=(face,))) == "1 face"
    assert describe_status(ImageResult("a.png", 10, 10, faces=(face, face))) == "2 faces"
    assert describe_status(ImageResult("a.png", 10, 10)) == "no face found"
    too_large = ImageResult("a.png", 0, 0, error=ErrorInfo("too_large", "70000000 pixels"))
    assert describe_status(too_large).startswith("The image has too many pixels.")


def test_describe_error_names_file():
    assert describe_error("scan.tif", ErrorInfo("corrupt", "truncated")).startswith("scan.tif: the image is damaged")
    assert "report it to your administrator" in describe_error("x.png", ErrorInfo("internal", "boom"))
