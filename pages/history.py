"""History page: a person's expression estimates over time, with summary figures and a CSV export."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import pandas as pd
import streamlit as st

from fedcore.constants import CLASSES
from fedcore.dashboard import (
    HistorySummary,
    aggregate_probabilities,
    default_timezone,
    dominant_counts,
    dominant_distribution_figure,
    dominant_timeline_figure,
    export_button,
    format_percent,
    history_table,
    local_day_bounds,
    person_label,
    probability_lines_figure,
    store_and_people_ui,
    summarize,
    timezone_names,
    to_local,
)
from fedcore.errors import FedError
from fedcore.store import HistoryStore, Person

logger = logging.getLogger(__name__)

DEFAULT_THRESHOLD = 0.5
# Spans longer than this many days default to weekly bars, so each bar stays readable.
WEEKLY_BARS_AFTER_DAYS = 60


@dataclass(frozen=True)
class Period:
    """A range of local days and its UTC bounds; ``until`` is exclusive."""

    start: date
    end: date
    since: datetime
    until: datetime

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1


def choose_person_ui(people: list[Person]) -> str:
    labels = {person.code: person_label(person) for person in people}
    return st.selectbox("Person", list(labels), format_func=labels.__getitem__, key="history_person")


def timezone_ui() -> str:
    names = timezone_names()
    default = default_timezone()
    return st.selectbox(
        "Display time zone",
        names,
        index=names.index(default),
        key="history_timezone",
        help="Times are stored in UTC and shown in this zone in the charts, tooltips and table.",
    )


def period_ui(history: pd.DataFrame, code: str, timezone: str) -> Period:
    local = to_local(history["captured_at"], timezone)
    first, last = local.min().date(), local.max().date()
    selected = st.date_input(
        "Dates",
        value=(first, last),
        key=f"history_dates-{code}-{timezone}",
        format="YYYY-MM-DD",
        help="Local dates in the display time zone; both ends are included.",
    )
    # While the user picks a range, the widget briefly returns only its start.
    start = selected[0] if selected else first
    end = selected[1] if len(selected) > 1 else start
    since, until = local_day_bounds(start, end, timezone)
    return Period(start=start, end=end, since=since, until=until)


def between(history: pd.DataFrame, since: datetime, until: datetime) -> pd.DataFrame:
    times = history["captured_at"]
    return history[(times >= since) & (times < until)]


def metrics_ui(current: HistorySummary, previous: HistorySummary, *, expression: str, threshold: float, days: int) -> None:
    comparison = "vs previous day" if days == 1 else f"vs previous {days} days"
    captures_column, observations_column, frequent_column, share_column = st.columns(4)
    captures_column.metric(
        "Captures",
        current.captures,
        delta=current.captures - previous.captures,
        delta_color="off",
        delta_description=comparison,
    )
    observations_column.metric("Faces saved", current.observations, help="A capture can hold several faces of the person.")
    frequent_column.metric(
        "Most frequent expression",
        current.most_frequent or "–",
        delta=f"was {previous.most_frequent}" if previous.most_frequent else None,
        delta_color="off",
        delta_arrow="off",
        delta_description=comparison if previous.most_frequent else None,
    )
    share_delta = None
    if current.share_above is not None and previous.share_above is not None:
        share_delta = f"{(current.share_above - previous.share_above) * 100:+.1f} percentage points"
    share_column.metric(
        f"Faces with {expression} above {threshold:.0%}",
        format_percent(current.share_above),
        delta=share_delta,
        delta_color="off",
        delta_description=comparison if share_delta else None,
    )


def charts_ui(current: pd.DataFrame, period: Period, timezone: str) -> None:
    st.plotly_chart(probability_lines_figure(aggregate_probabilities(current, timezone=timezone)), key="history_lines")
    st.plotly_chart(dominant_timeline_figure(current, timezone=timezone), key="history_timeline")
    bar_period = st.radio(
        "Bars per",
        ("day", "week"),
        index=1 if period.days > WEEKLY_BARS_AFTER_DAYS else 0,
        horizontal=True,
        key="history_bar_period",
    )
    counts = dominant_counts(current, timezone=timezone, period=bar_period)
    st.plotly_chart(dominant_distribution_figure(counts, period=bar_period), key="history_bars")


def table_ui(store: HistoryStore, current: pd.DataFrame, code: str, timezone: str) -> None:
    st.subheader("Captures")
    st.dataframe(
        history_table(current, timezone=timezone),
        hide_index=True,
        column_config={
            "probability": st.column_config.NumberColumn("probability", format="percent"),
            "uncertain": st.column_config.CheckboxColumn("uncertain"),
        },
    )
    export_button(
        store,
        code,
        "csv",
        label="Download CSV of the whole history",
        key=f"history_csv-{code}",
        help="Every saved estimate of this person, all dates, times in UTC.",
    )


def main() -> None:
    st.title("History")
    st.write(
        "Expression estimates saved for one person, over time. Each point is a model estimate from one photo, "
        "not a diagnosis; single photos vary, so look at trends over many captures."
    )
    opened = store_and_people_ui()
    if opened is None:
        return
    store, people = opened
    if not people:
        st.info("No people yet. Save a result on the Analyze page, or create a person on the People page.")
        return

    person_column, timezone_column = st.columns(2)
    with person_column:
        code = choose_person_ui(people)
    with timezone_column:
        timezone = timezone_ui()
    try:
        history = store.history(code)
    except FedError as error:
        logger.error("reading the history of %s failed: %s", code, error)
        st.error(f"The history of {code} could not be read: {error}")
        return
    if history.empty:
        st.info(f"No captures saved for {code} yet. Analyze a photo and save it to this person on the Analyze page.")
        return

    period_column, expression_column, threshold_column = st.columns(3)
    with period_column:
        period = period_ui(history, code, timezone)
    expression = expression_column.selectbox(
        "Expression for the share", CLASSES, index=CLASSES.index("happy"), key="history_expression"
    )
    threshold = threshold_column.slider(
        "Probability threshold", 0.05, 0.95, DEFAULT_THRESHOLD, 0.05, key="history_threshold"
    )

    current = between(history, period.since, period.until)
    # The previous period is the same number of local days, so DST changes do not shift it.
    previous = between(
        history,
        *local_day_bounds(period.start - timedelta(days=period.days), period.start - timedelta(days=1), timezone),
    )
    metrics_ui(
        summarize(current, expression=expression, threshold=threshold),
        summarize(previous, expression=expression, threshold=threshold),
        expression=expression,
        threshold=threshold,
        days=period.days,
    )
    if current.empty:
        st.info(f"No captures of {code} between {period.start} and {period.end}. Widen the date range.")
    else:
        charts_ui(current, period, timezone)
    table_ui(store, current, code, timezone)


main()
