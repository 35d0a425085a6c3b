"""The one daily partitioning (UTC) shared by every daily asset."""

from __future__ import annotations

import datetime as dt

import dagster as dg

from wflog_assets.day import Day
from wflog_assets.environment import DEFAULT_START_DATE
from wflog_assets.errors import SettingError


def setting_date(name: str, value: str) -> dt.date:
    """A date setting (`WFLOG_START_DATE`, `WFLOG_END_DATE`); `SettingError` says what to fix."""
    try:
        return dt.date.fromisoformat(value)
    except ValueError as exc:
        raise SettingError(f"{name}={value!r} is not a date: use YYYY-MM-DD, e.g. 2025-12-01") from exc


def daily_partitions(
    start_date: str = DEFAULT_START_DATE, end_date: str | None = None
) -> dg.DailyPartitionsDefinition:
    """Days from `start_date` (YYYY-MM-DD) on, in UTC, up to and including today, or up to and
    including `end_date` (a fixed range: the demo's days, a backfill-only deployment).

    `end_offset=1` makes the current day a partition: its files are ingested as they arrive
    (a day is never final; late files re-trigger it).
    """
    first = setting_date("WFLOG_START_DATE", start_date)
    if end_date is None:
        return dg.DailyPartitionsDefinition(start_date=start_date, timezone="UTC", end_offset=1)
    last = setting_date("WFLOG_END_DATE", end_date)
    if last < first:
        raise SettingError(f"WFLOG_END_DATE={end_date} is before WFLOG_START_DATE={start_date}: swap them")
    after = (last + dt.timedelta(days=1)).isoformat()  # Dagster's end date is exclusive
    return dg.DailyPartitionsDefinition(start_date=start_date, end_date=after, timezone="UTC")


def partition_day(partition_key: str) -> dt.date:
    return Day.parse(partition_key).date


def monthly_partitions(start_date: str = DEFAULT_START_DATE) -> dg.MonthlyPartitionsDefinition:
    """Whole UTC months from the month of `start_date` on (the same start as the days), for
    month-wide maintenance; a month becomes a partition once it has ended."""
    first = daily_partitions(start_date).start.date().replace(day=1)
    return dg.MonthlyPartitionsDefinition(start_date=first.isoformat(), timezone="UTC")


def partition_month(partition_key: str) -> tuple[int, int]:
    first = partition_day(partition_key)
    return first.year, first.month
