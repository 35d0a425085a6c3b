"""Which day's run takes a record: the UTC day of its timestamp, wherever its file was filed.

The current writer files a record under its pod's *local* day and hour, so a pod with `TZ`
set leaves records of one UTC day in the neighbouring day's folder (a writer's offset is at
most +-14 h: only the folders of the day before and the day after). Its files are named
`<epoch_ns>_<seq>_<deployment>_<app>.json.gz`, `epoch_ns` being the flush time (UTC), and a
file's records are from before its flush. So, from the name alone:

- a file of the folder of the day BEFORE `day` may hold records of `day` only if it was
  flushed at or after `day` began;
- a file of the folder of the day AFTER `day` may hold records of `day` only if it was
  flushed less than `FLUSH_WINDOW_S` after `day` ended (the writer flushes every 10 s; the
  window is the oldest a record may be when its file is flushed);
- and only from the hour folders such an offset reaches: `hour=09` to `hour=23` of the day
  before, `hour=00` to `hour=14` of the day after (one hour more each way for a flush that
  straddles an hour), so a run lists only those parts of its neighbours.

A day's run reads its own folder and those candidates of its two neighbours, and takes the
rows of its own UTC day. The run of a folder's day leaves a row of a neighbouring day to that
day's run exactly when the file is that day's candidate (the same rule), and quarantines it
otherwise: every row is judged by one day, none is lost. Files without a flush time in their
name (Parquet chunks of the older writer, which filed by UTC day) keep their folder's day.
"""

from __future__ import annotations

import datetime as dt
import re

import pyarrow as pa
import pyarrow.compute as pc

from wflog_assets.day import Day

FLUSH_WINDOW_S = 600.0
# <epoch_ns>_<seq>_<deployment>_<app>.json.gz, the current writer's name for a flush
WRITER_NAME = re.compile(r"(?:^|/)(?P<ns>\d{16,20})_\d+_(?P<origin>[^/]+)\.json\.gz$")
_HOUR = re.compile(r"/hour=(\d{2})/")
FIRST_HOUR_BEFORE = 9  # hour folders of the day before that can hold the next UTC day's records
LAST_HOUR_AFTER = 14  # hour folders of the day after that can hold the previous UTC day's records
_FOLDER = re.compile(r"(?:^|/)year=(\d{4})/month=(\d{2})/day=(\d{2})/")


def flush_time(key: str) -> float | None:
    """The flush time (Unix seconds) in a writer file's name; None for any other name."""
    match = WRITER_NAME.search(key)
    return None if match is None else int(match["ns"]) / 1e9


def folder_day(key: str) -> dt.date | None:
    """The day of the `year=/month=/day=` folder a key is filed under."""
    match = _FOLDER.search(key)
    if match is None:
        return None
    try:
        return dt.date(int(match[1]), int(match[2]), int(match[3]))
    except ValueError:
        return None


def hour_folder(key: str) -> int | None:
    """The `hour=` folder a key is filed under (None: filed directly under its day)."""
    match = _HOUR.search(key)
    return None if match is None else int(match[1])


def neighbours(day: Day) -> tuple[Day, Day]:
    """The day before and the day after."""
    return Day(day.date - dt.timedelta(days=1)), Day(day.date + dt.timedelta(days=1))


def may_hold(key: str, day: Day) -> bool:
    """Whether the file `key` may hold records of `day` (its own folder always does)."""
    folder = folder_day(key)
    if folder == day.date:
        return True
    if folder is None or abs((folder - day.date).days) != 1:
        return False
    flushed, hour = flush_time(key), hour_folder(key)
    if flushed is None or hour is None:
        return False
    if (folder < day.date and hour < FIRST_HOUR_BEFORE) or (folder > day.date and hour > LAST_HOUR_AFTER):
        return False
    start, end = day.bounds
    return start <= flushed < end + FLUSH_WINDOW_S


def taken_elsewhere(
    files: pa.ChunkedArray | pa.Array, timestamps: pa.ChunkedArray | pa.Array, day: Day
) -> pa.Array:
    """True for the rows another day's run takes: rows of a neighbouring folder's file outside
    `day`, and rows of `day`'s own files that lie in a neighbouring day whose run reads the file.
    Every other row outside `day` is `day`'s to quarantine."""
    n = len(timestamps)
    if n == 0:
        return pa.array([], pa.bool_())
    start, end = day.bounds
    before, after = neighbours(day)
    inside = pc.and_(pc.greater_equal(timestamps, start), pc.less(timestamps, end))
    if inside.null_count == 0 and pc.all(inside).as_py():
        return pa.repeat(pa.scalar(False), n)  # the common case: every row is the day's
    encoded = pc.dictionary_encode(files)
    if isinstance(encoded, pa.ChunkedArray):
        encoded = encoded.combine_chunks()
    keys = encoded.dictionary.to_pylist()
    own = [isinstance(k, str) and folder_day(k) == day.date for k in keys]
    to_before = [isinstance(k, str) and o and may_hold(k, before) for k, o in zip(keys, own, strict=True)]
    to_after = [isinstance(k, str) and o and may_hold(k, after) for k, o in zip(keys, own, strict=True)]
    indices = encoded.indices

    def per_row(values: list[bool]) -> pa.Array:
        return pc.fill_null(pc.take(pa.array(values, pa.bool_()), indices), False)

    in_before = pc.and_(pc.greater_equal(timestamps, before.start), pc.less(timestamps, start))
    in_after = pc.and_(pc.greater_equal(timestamps, end), pc.less(timestamps, after.bounds[1]))
    routed = pc.fill_null(
        pc.or_(pc.and_(per_row(to_before), in_before), pc.and_(per_row(to_after), in_after)), False
    )
    outside = pc.fill_null(pc.invert(inside), True)  # a null timestamp is outside every day
    # a neighbour's file: only its rows inside `day` are ours (its folder's run judges the rest)
    return pc.or_(pc.and_(pc.invert(per_row(own)), outside), routed)
