"""Which days have folders, and which chunk files a day holds (both formats, any `hour=` level)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import replace

from wflog_assets.day import day_prefix
from wflog_assets.manifest import Manifest, ManifestEntry
from wflog_assets.source.formats import format_of
from wflog_assets.source.stores import ObjectStore


def _months(since: dt.date, until: dt.date) -> Iterator[tuple[int, int]]:
    year, month = since.year, since.month
    while (year, month) <= (until.year, until.month):
        yield year, month
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)


def list_days(store: ObjectStore, since: dt.date, until: dt.date) -> list[dt.date]:
    """Days in [since, until] that have a `day=` folder: one delimiter listing per month."""
    days: list[dt.date] = []
    for year, month in _months(since, until):
        for name in store.list_folders(f"year={year:04d}/month={month:02d}/"):
            if not name.startswith("day="):
                continue
            try:
                day = dt.date(year, month, int(name.removeprefix("day=")))
            except ValueError:
                continue  # not a calendar day: not ours to ingest
            if since <= day <= until:
                days.append(day)
    return days


def list_day(store: ObjectStore, day: dt.date) -> Manifest:
    """All chunk files of a day (every registered format), including any `hour=` level below it."""
    entries: list[ManifestEntry] = []
    ignored: list[str] = []
    for entry in store.list(day_prefix(day)):
        fmt = format_of(entry.key)
        if fmt is None:
            if not entry.key.endswith(".tmp"):
                ignored.append(entry.key)
            continue
        entries.append(replace(entry, format=fmt.name))
    return Manifest.build(day.isoformat(), entries, ignored)
