"""Which days have folders, and which chunk files a day holds (both formats, any `hour=` level)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from itertools import chain

from wflog_assets.day import Day
from wflog_assets.manifest import Manifest, ManifestEntry
from wflog_assets.source.formats import format_of
from wflog_assets.source.routing import FIRST_HOUR_BEFORE, LAST_HOUR_AFTER, may_hold, neighbours
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
            if not _readable(name, 2, (year, month)):
                continue  # reported by the days beside it (`unread_folders`), never read
            day = dt.date(year, month, int(name.removeprefix("day=")))
            if since <= day <= until:
                days.append(day)
    return days


def _neighbour_entries(store: ObjectStore, day: Day) -> Iterator[ManifestEntry]:
    """The files of the two neighbouring folders that may hold records of `day` (`routing`),
    listed from the hour folders a writer's offset can reach only."""
    before, after = neighbours(day)
    first = f"{before.prefix}hour={FIRST_HOUR_BEFORE:02d}"  # keys after it: hour=09/... on
    for entry in store.list(before.prefix, start_after=first):
        if may_hold(entry.key, day):
            yield entry
    past = f"{after.prefix}hour={LAST_HOUR_AFTER + 1:02d}"
    for entry in store.list(after.prefix):
        if entry.key >= past:
            break
        if may_hold(entry.key, day):
            yield entry


def has_year_folders(store: ObjectStore) -> bool:
    """Whether the source root holds any `year=` folder (a root one level off holds none)."""
    return any(name.startswith("year=") for name in store.list_folders(""))


# The folder names read, zero-padded: year=2026/month=02/day=03/ (field, digits, bounds); below
# a day's folder every file is listed, at any depth (hour=HH/ or not).
_LEVELS = (("year", 4, 1, 9999), ("month", 2, 1, 12), ("day", 2, 1, 31))


def _readable(name: str, level: int, path: tuple[int, ...]) -> bool:
    """Whether a folder `name` at `level` (0: year, 1: month, 2: day) under `path` (the numbers
    above it) is one the listing reads: the field, exactly its digits, a real date."""
    field, digits, low, high = _LEVELS[level]
    value = name.removeprefix(f"{field}=")
    if value == name or len(value) != digits or not value.isdigit() or not low <= int(value) <= high:
        return False
    if level == 2:
        try:
            dt.date(path[0], path[1], int(value))
        except ValueError:
            return False
    return True


def unread_folders(store: ObjectStore, day: Day) -> list[str]:
    """Folders beside the day's path that are never read, as `<path>/` keys: an unpadded or
    impossible name (`day=3`, `month=13`, `day=32`) or any other name, at the root and in the
    day's year and month. The project's own folders at the root (`_incoming/`, `_rejects/`)
    are not reported."""
    d = day.date
    numbers = (d.year, d.month)
    prefixes = ("", f"year={d.year:04d}/", f"year={d.year:04d}/month={d.month:02d}/")
    unread: list[str] = []
    for level, prefix in enumerate(prefixes):
        unread.extend(
            f"{prefix}{name}/"
            for name in store.list_folders(prefix)
            if not (level == 0 and name.startswith("_")) and not _readable(name, level, numbers[:level])
        )
    return unread


def list_day(store: ObjectStore, day: dt.date) -> Manifest:
    """The chunk files of a day (every registered format): its folder, including any `hour=`
    level below it, and the files of its neighbours' folders that may hold its records.

    Everything else under the day's folder (other suffixes, temporary files, folder markers,
    folders not followed) and the unread folders beside it (`unread_folders`) is listed as
    ignored: reported, never read."""
    the_day = Day(day)
    entries: list[ManifestEntry] = []
    ignored: list[str] = unread_folders(store, the_day)
    for entry in chain(store.list(the_day.prefix), _neighbour_entries(store, the_day)):
        fmt = format_of(entry.key)
        if fmt is None:
            if entry.key.startswith(the_day.prefix):
                ignored.append(entry.key)
            continue
        entries.append(ManifestEntry(entry.key, entry.size, entry.etag, entry.last_modified, fmt.name))
    return Manifest.build(the_day.key, entries, ignored)
