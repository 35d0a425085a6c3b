"""What arrived in a day folder since the last look, listing only from the newest keys seen.

The current writer names a file `<epoch_ns>_<seq>_...` under `hour=HH/` folders, so within an
hour folder keys sort by flush time, and new files sort at the end. A look lists each hour
folder of the day starting after a mark: the newest key seen minus a margin (a flush uploaded
a little late still sorts in after the mark), and compares how many keys lie after the mark
and which is the newest with the last look. A tick's listing is then proportional to the files
of the last few minutes, not to the day; hour folders with nothing within an hour of the day's
newest file are skipped until the next full listing. Folders whose names do not start with a
flush time, and days without `hour=` folders (the old Parquet writer), are listed whole.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from wflog_assets.day import Day, day_prefix
from wflog_assets.manifest import Manifest
from wflog_assets.source.routing import LAST_HOUR_AFTER, may_hold, neighbours
from wflog_assets.source.stores import ObjectStore

MARGIN_NS = 300 * 10**9
# Between full listings, only hour folders that got files within this span of the day's newest
# file are looked at (and any new folder): the writer files flushes under the current hour.
ACTIVE_NS = 3600 * 10**9


@dataclass(frozen=True)
class HourMark:
    """Where the next look at an hour folder starts, and what the last look saw after it."""

    after: str | None  # list keys after this one (None: the whole folder)
    count: int  # keys after `after`
    newest: str

    def dump(self) -> list[object]:
        return [self.after, self.count, self.newest]

    @classmethod
    def load(cls, raw: list[object]) -> HourMark:
        after, count, newest = raw
        return cls(None if after is None else str(after), int(str(count)), str(newest))


def _after(newest: str, folder: str) -> str | None:
    stamp = newest[len(folder) :].split("_", 1)[0]
    if not stamp.isdigit():
        return None
    return f"{folder}{max(0, int(stamp) - MARGIN_NS):0{len(stamp)}d}"


def _stamp(key: str) -> int | None:
    stamp = key.rsplit("/", 1)[-1].split("_", 1)[0]
    return int(stamp) if stamp.isdigit() else None


def _mark(keys: list[str], folder: str, floor: str | None = None) -> HourMark:
    """The mark after a listing of `keys` (all the keys after `floor`): it never moves back."""
    newest = max(keys)
    after = _after(newest, folder)
    if floor is not None and (after is None or after < floor):
        after = floor
    return HourMark(after, sum(1 for k in keys if after is None or k > after), newest)


def marks_of(manifest: Manifest) -> dict[str, HourMark]:
    """The marks of a full listing of a day (hour folder name -> mark)."""
    prefix = manifest.utc_day.prefix
    by_hour: dict[str, list[str]] = {}
    for entry in manifest.entries:
        if not entry.key.startswith(prefix):
            continue  # a neighbouring folder's file (`routing`): that day's marks
        hour = entry.key[len(prefix) :].split("/", 1)[0]
        if hour.startswith("hour="):
            by_hour.setdefault(hour, []).append(entry.key)
    return {hour: _mark(keys, f"{prefix}{hour}/") for hour, keys in by_hour.items()}


def look(store: ObjectStore, day: dt.date, marks: dict[str, HourMark]) -> tuple[bool, dict[str, HourMark]]:
    """(whether the day's hour folders changed since `marks`, the marks for the next look)."""
    prefix = day_prefix(day)
    hours = [name for name in store.list_folders(prefix) if name.startswith("hour=")]
    changed = set(marks) - set(hours) != set()  # a folder vanished
    stamps = {h: _stamp(m.newest) for h, m in marks.items()}
    latest = max((s for s in stamps.values() if s is not None), default=None)
    fresh: dict[str, HourMark] = {}
    for hour in hours:
        folder = f"{prefix}{hour}/"
        old = marks.get(hour)
        stamp = stamps.get(hour)
        if old is not None and latest is not None and stamp is not None and (stamp < latest - ACTIVE_NS):
            fresh[hour] = old  # a past hour: the next full listing looks at it again
            continue
        keys = [e.key for e in store.list(folder, start_after=old.after if old else None)]
        if old is None:
            changed = changed or bool(keys)
            if keys:
                fresh[hour] = _mark(keys, folder)
            continue
        if len(keys) != old.count or (keys and max(keys) != old.newest):
            changed = True
        fresh[hour] = _mark(keys, folder, old.after) if keys else HourMark(old.after, 0, old.newest)
    return changed, fresh


def neighbours_reached(day: dt.date, old: dict[str, HourMark], new: dict[str, HourMark]) -> set[dt.date]:
    """The neighbouring days whose runs may need the files that arrived in `day`'s hour folders
    between two looks (`routing.may_hold`). Keys of an hour folder sort by flush time, so the
    new ones were flushed between the previous newest key and the newest one: the day before
    is reached if the previous newest still was its candidate (or the folder is new and in
    reach), the day after if the newest is its candidate."""
    before, after = neighbours(Day(day))
    reached: set[dt.date] = set()
    for hour, mark in new.items():
        last = old.get(hour)
        if last is not None and last.newest == mark.newest:
            continue
        if may_hold(mark.newest, after):
            reached.add(after.date)
        first = last.newest if last is not None else None
        new_folder_in_reach = first is None and hour.removeprefix("hour=") <= f"{LAST_HOUR_AFTER:02d}"
        if new_folder_in_reach or (first is not None and may_hold(first, before)):
            reached.add(before.date)
    return reached
