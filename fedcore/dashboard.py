"""Chart builders, wording and shared resources of the Streamlit dashboard.

Detection, classification and storage stay in fedcore.pipeline and
fedcore.store. This module only draws, formats and caches them for the pages.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import TYPE_CHECKING, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from fedcore.constants import CLASS_COLORS, CLASSES
from fedcore.errors import FedError
from fedcore.results import ErrorInfo, ImageResult

if TYPE_CHECKING:
    from fedcore.pipeline import Pipeline
    from fedcore.store import HistoryStore, Person

logger = logging.getLogger(__name__)

DATABASE_URL_ENV = "FED_DATABASE_URL"
DISPLAY_TIMEZONE_ENV = "FED_DISPLAY_TIMEZONE"
FALLBACK_TIMEZONE = "UTC"

# Above this many observations the history charts show hourly, daily or weekly
# means, because a browser draws 10,000 SVG points per class slowly.
MAX_CHART_POINTS = 2_000
CHART_HEIGHT = 360
MIN_TIME_AXIS_SPAN = pd.Timedelta(hours=2)
PROBABILITY_CHART_HEIGHT = 260
TIME_FORMAT = "%Y-%m-%d %H:%M %Z"
EXPORT_MEDIA_TYPES = {"csv": "text/csv", "json": "application/json"}

# Plain-language reasons for the error kinds of fedcore.errors.ImageLoadError,
# each with what the user can do next.
IMAGE_ERROR_TEXT: dict[str, str] = {
    "not_found": "the file was not found. Upload it again.",
    "empty": "the file is empty (0 bytes). Check the original and upload it again.",
    "unsupported": (
        "this is not an image format FED can read. Upload a JPEG, PNG, WebP, BMP, TIFF or HEIC photo."
    ),
    "corrupt": "the image is damaged or incomplete. Export or copy the photo again and upload the new file.",
    "too_large": "the image has too many pixels. Reduce it to under 50 megapixels and upload it again.",
}
UNEXPECTED_ERROR_TEXT = "analysis failed unexpectedly. Try again; if it fails again, report it to your administrator."


# --- Shared resources ---------------------------------------------------------


def database_url() -> str | None:
    """Return the history database URL from FED_DATABASE_URL, or None for the store's default."""
    return os.environ.get(DATABASE_URL_ENV) or None


@st.cache_resource(show_spinner="Loading the face detector and the expression model…")
def get_pipeline() -> Pipeline:
    """Return the process-wide pipeline, loading the shipped model on first use.

    Raises CheckpointError when the model files are missing or invalid. The
    failure is not cached, so a repaired model loads on the next rerun.
    """
    from fedcore.pipeline import get_default_pipeline

    return get_default_pipeline()


@st.cache_resource(show_spinner=False)
def get_store(url: str | None) -> HistoryStore:
    """Return one HistoryStore per database URL, shared by every browser session.

    Sharing is safe because the store opens a new database session for each call.
    """
    from fedcore.store import HistoryStore, Person

    return HistoryStore(url)


def store_and_people_ui() -> tuple[HistoryStore, list[Person]] | None:
    """Open the history store and list its people; show an error and return None when the database fails."""
    try:
        store = get_store(database_url())
        return store, store.list_people()
    except FedError as error:
        logger.error("the history database is not available: %s", error)
        st.error(f"The history database is not available: {error}")
        return None


def export_button(
    store: HistoryStore, code: str, file_format: Literal["csv", "json"], *, label: str, key: str, help: str | None = None
) -> None:
    """Draw a download button for a person's whole history as CSV or JSON.

    The export is built only when the button is clicked, so every export the
    store records in its audit log was really requested.
    """
    export = store.export_csv if file_format == "csv" else store.export_json
    st.download_button(
        label,
        functools.partial(export, code),
        file_name=f"{code}-history.{file_format}",
        mime=EXPORT_MEDIA_TYPES[file_format],
        on_click="ignore",
        key=key,
        help=help,
    )


# --- Wording ------------------------------------------------------------------


def person_label(person: Person) -> str:
    """Return the person's code, followed by the display name when there is one."""
    return person.code + (f" — {person.display_name}" if person.display_name else "")


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def error_reason(error: ErrorInfo) -> str:
    """Return why an image failed and what to do next, in plain words."""
    return IMAGE_ERROR_TEXT.get(error.kind, UNEXPECTED_ERROR_TEXT)


def describe_error(name: str, error: ErrorInfo) -> str:
    """Return a sentence with the file name, the reason it failed and the next step."""
    return f"{name}: {error_reason(error)}"


def describe_status(result: ImageResult) -> str:
    """Return the one-line status of an analyzed image for the status table: face count or error reason."""
    if result.error is not None:
        reason = error_reason(result.error)
        return reason[0].upper() + reason[1:]
    if not result.faces:
        return "no face found"
    return plural(len(result.faces), "face")


def format_percent(value: float | None) -> str:
    return "–" if value is None else f"{value:.0%}"


# --- Time zones ---------------------------------------------------------------


def timezone_names() -> list[str]:
    """Return every IANA time zone name known to this system, sorted."""
    return sorted(available_timezones() | {FALLBACK_TIMEZONE})


def default_timezone() -> str:
    """Return FED_DISPLAY_TIMEZONE when it names a known zone, else UTC."""
    name = os.environ.get(DISPLAY_TIMEZONE_ENV, "").strip()
    if not name:
        return FALLBACK_TIMEZONE
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        logger.warning(
            "%s=%r is not an IANA time zone name such as 'Europe/Berlin'; showing times in UTC",
            DISPLAY_TIMEZONE_ENV,
            name,
        )
        return FALLBACK_TIMEZONE
    return name


def to_local(times: pd.Series, timezone: str) -> pd.Series:
    """Convert UTC timestamps to ``timezone``, keeping the zone attached."""
    times = pd.to_datetime(times, utc=True)
    return times.dt.tz_convert(timezone)


def to_wall_clock(times: pd.Series, timezone: str) -> pd.Series:
    """Convert UTC timestamps to naive wall-clock times in ``timezone``.

    Plotly.js has no time zones, so the charts receive naive local times and
    the tooltips carry the formatted time with its zone abbreviation.
    NOTE: the hour repeated when DST ends maps to the same axis positions twice.
    """
    return to_local(times, timezone).dt.tz_localize(None)


def format_times(times: pd.Series, timezone: str) -> pd.Series:
    """Format UTC timestamps as local text with the zone abbreviation, such as '2025-03-30 03:15 CEST'."""
    return to_local(times, timezone).dt.strftime(TIME_FORMAT)


def local_day_bounds(start: date, end: date, timezone: str) -> tuple[datetime, datetime]:
    """Return the UTC instants of local midnight at ``start`` and local midnight after ``end``."""
    zone = ZoneInfo(timezone)
    since = datetime.combine(start, time(0), tzinfo=zone)
    until = datetime.combine(end + timedelta(days=1), time(0), tzinfo=zone)
    return since.astimezone(ZoneInfo("UTC")), until.astimezone(ZoneInfo("UTC"))


# --- Probability chart of one face ---------------------------------------------


def probability_figure(probabilities: Sequence[float], *, title: str | None = None) -> go.Figure:
    """Build a horizontal bar chart of the 8 class probabilities, in class order from the top."""
    if len(probabilities) != len(CLASSES):
        raise ValueError(f"expected {len(CLASSES)} probabilities in the order {CLASSES}, got {len(probabilities)}")
    values = [float(value) for value in probabilities]
    figure = go.Figure(
        go.Bar(
            x=values,
            y=list(CLASSES),
            orientation="h",
            marker_color=[CLASS_COLORS[name] for name in CLASSES],
            text=[f"{value:.0%}" for value in values],
            textposition="outside",
            cliponaxis=False,
            hovertemplate="%{y}: %{x:.1%}<extra></extra>",
        )
    )
    figure.update_layout(
        title=title,
        height=PROBABILITY_CHART_HEIGHT,
        margin={"l": 10, "r": 40, "t": 30 if title else 10, "b": 10},
        showlegend=False,
    )
    figure.update_xaxes(range=[0, 1], tickformat=".0%", title="estimated probability")
    # Reversed category axis: the first class in CLASSES is drawn on top.
    figure.update_yaxes(categoryorder="array", categoryarray=list(CLASSES), autorange="reversed")
    return figure


# --- History charts -------------------------------------------------------------


@dataclass(frozen=True)
class ChartData:
    """Probability series ready to plot, and the bin width used when they were averaged."""

    frame: pd.DataFrame
    resolution: str | None


AGGREGATION_STEPS: tuple[tuple[str, str], ...] = (("h", "hourly"), ("D", "daily"), ("W", "weekly"))


def aggregate_probabilities(
    history: pd.DataFrame, *, timezone: str, max_points: int = MAX_CHART_POINTS
) -> ChartData:
    """Return one row per observation, or per local hour, day or week when there are more than ``max_points``.

    ``history`` has a UTC ``captured_at`` column and one probability column per
    class. The result has ``time`` (naive local), ``time_text`` (formatted
    local time, or the bin start for averaged rows), ``count`` and the classes.
    """
    columns = list(CLASSES)
    frame = history.sort_values("captured_at")
    local = to_local(frame["captured_at"], timezone)
    if len(frame) <= max_points:
        return ChartData(
            pd.DataFrame(
                {
                    "time": local.dt.tz_localize(None).to_numpy(),
                    "time_text": local.dt.strftime(TIME_FORMAT).to_numpy(),
                    "count": 1,
                    **{name: frame[name].to_numpy(dtype=float) for name in columns},
                }
            ),
            None,
        )

    wall_clock = local.dt.tz_localize(None)
    for code, label in AGGREGATION_STEPS:
        bins = _bin_starts(wall_clock, code)
        if bins.nunique() <= max_points or code == AGGREGATION_STEPS[-1][0]:
            break
    grouped = frame[columns].groupby(bins.to_numpy())
    means = grouped.mean()
    means.insert(0, "count", grouped.size())
    means.insert(0, "time_text", [f"{label} mean from {start:%Y-%m-%d %H:%M}" for start in means.index])
    means.insert(0, "time", means.index)
    return ChartData(means.reset_index(drop=True), label)


def _bin_starts(wall_clock: pd.Series, code: str) -> pd.Series:
    # Binning naive wall-clock times keeps local days whole across DST changes,
    # where a zoned floor() would raise on nonexistent or ambiguous midnights.
    if code == "h":
        return wall_clock.dt.floor("h")
    days = wall_clock.dt.normalize()
    if code == "D":
        return days
    return days - pd.to_timedelta(days.dt.day_of_week, unit="D")


def _pad_short_time_axis(figure: go.Figure, times: pd.Series) -> None:
    # Plotly zooms a span of seconds down to millisecond ticks; show at least
    # MIN_TIME_AXIS_SPAN around the points instead.
    if times.empty:
        return
    first, last = pd.Timestamp(times.min()), pd.Timestamp(times.max())
    if last - first < MIN_TIME_AXIS_SPAN:
        middle = first + (last - first) / 2
        figure.update_xaxes(range=[middle - MIN_TIME_AXIS_SPAN / 2, middle + MIN_TIME_AXIS_SPAN / 2])


def probability_lines_figure(data: ChartData) -> go.Figure:
    """Build one line per class: estimated probability over capture time."""
    figure = go.Figure()
    for name in CLASSES:
        figure.add_trace(
            go.Scatter(
                x=data.frame["time"],
                y=data.frame[name],
                name=name,
                mode="lines+markers" if len(data.frame) <= 200 else "lines",
                line={"color": CLASS_COLORS[name], "width": 1.5},
                marker={"size": 4},
                customdata=data.frame[["time_text", "count"]].to_numpy(),
                hovertemplate=f"{name}: %{{y:.1%}}<br>%{{customdata[0]}}<extra></extra>",
            )
        )
    title = "Estimated probability of each expression"
    if data.resolution:
        title += f" ({data.resolution} means)"
    figure.update_layout(title=title, height=CHART_HEIGHT, margin={"l": 10, "r": 10, "t": 40, "b": 10})
    figure.update_yaxes(range=[0, 1], tickformat=".0%")
    _pad_short_time_axis(figure, data.frame["time"])
    return figure


def dominant_timeline_figure(history: pd.DataFrame, *, timezone: str, max_points: int = MAX_CHART_POINTS) -> go.Figure:
    """Build a scatter of the top expression of each observation, classes on the y axis.

    Past ``max_points`` observations the most recent ``max_points`` are drawn,
    and the title gives both counts.
    """
    frame = history.sort_values("captured_at")
    latest = frame.tail(max_points)
    local = to_local(latest["captured_at"], timezone)
    figure = go.Figure()
    for name in CLASSES:
        rows = latest["top_expression"] == name
        if not rows.any():
            continue
        figure.add_trace(
            go.Scattergl(
                x=local[rows].dt.tz_localize(None),
                y=latest.loc[rows, "top_expression"],
                name=name,
                mode="markers",
                marker={"color": CLASS_COLORS[name], "size": 8},
                customdata=list(zip(local[rows].dt.strftime(TIME_FORMAT), latest.loc[rows, "top_probability"])),
                hovertemplate="%{y} (%{customdata[1]:.0%})<br>%{customdata[0]}<extra></extra>",
            )
        )
    title = "Top expression of each capture"
    if len(frame) > len(latest):
        title += f" (latest {len(latest):,} of {len(frame):,})"
    figure.update_layout(title=title, height=CHART_HEIGHT, margin={"l": 10, "r": 10, "t": 40, "b": 10})
    figure.update_yaxes(categoryorder="array", categoryarray=list(CLASSES), autorange="reversed")
    _pad_short_time_axis(figure, local.dt.tz_localize(None))
    return figure


def dominant_counts(history: pd.DataFrame, *, timezone: str, period: Literal["day", "week"]) -> pd.DataFrame:
    """Count top expressions per local day or week (weeks start on Monday); one column per class."""
    bins = _bin_starts(to_wall_clock(history["captured_at"], timezone), "D" if period == "day" else "W")
    counts = pd.crosstab(bins.to_numpy(), history["top_expression"].to_numpy())
    return counts.reindex(columns=list(CLASSES), fill_value=0).sort_index()


def dominant_distribution_figure(counts: pd.DataFrame, *, period: Literal["day", "week"]) -> go.Figure:
    """Build stacked bars of top-expression counts per day or week."""
    figure = go.Figure()
    labels = [f"{start:%Y-%m-%d}" for start in counts.index]
    for name in CLASSES:
        figure.add_trace(
            go.Bar(
                x=labels,
                y=counts[name],
                name=name,
                marker_color=CLASS_COLORS[name],
                hovertemplate=f"{name}: %{{y}}<br>{period} of %{{x}}<extra></extra>",
            )
        )
    figure.update_layout(
        barmode="stack",
        title=f"Top expression per {period}",
        height=CHART_HEIGHT,
        margin={"l": 10, "r": 10, "t": 40, "b": 10},
    )
    figure.update_xaxes(type="category", title=f"{period} starting")
    figure.update_yaxes(title="observations")
    return figure


# --- Summary figures --------------------------------------------------------------


@dataclass(frozen=True)
class HistorySummary:
    """Summary figures of a person's observations over one period."""

    observations: int
    captures: int
    most_frequent: str | None
    share_above: float | None


def summarize(history: pd.DataFrame, *, expression: str, threshold: float) -> HistorySummary:
    """Summarise observations: counts, most frequent top expression, share with ``expression`` above ``threshold``."""
    if expression not in CLASSES:
        raise ValueError(f"unknown expression {expression!r}; expected one of {', '.join(CLASSES)}")
    most_frequent = None
    if not history.empty:
        counts = history["top_expression"].value_counts()
        # Ties go to the class that comes first in CLASSES, so the figure is stable.
        best = counts.max()
        most_frequent = next(name for name in CLASSES if counts.get(name, 0) == best)
    share = None if history.empty else float((history[expression] > threshold).mean())
    return HistorySummary(
        observations=len(history),
        captures=int(history["capture_id"].nunique()),
        most_frequent=most_frequent,
        share_above=share,
    )


def history_table(history: pd.DataFrame, *, timezone: str) -> pd.DataFrame:
    """Return the capture table shown on the History page, newest first, times in ``timezone``."""
    frame = history.sort_values("captured_at", ascending=False)
    return pd.DataFrame(
        {
            "time": format_times(frame["captured_at"], timezone).to_numpy(),
            "source": frame["source"].to_numpy(),
            "face": frame["face_number"].to_numpy(),
            "top expression": frame["top_expression"].to_numpy(),
            "probability": frame["top_probability"].to_numpy(dtype=float),
            "uncertain": frame["uncertain"].astype(bool).to_numpy(),
        }
    )
