"""Which day takes a record (`source.routing`), over generated families of keys and times.

- every row is judged by exactly one day: kept by the run of its UTC day (which reads its
  file), or quarantined by the run of its file's folder; never by two, never by none;
- a day's listing holds exactly the files the rule says it may need (own folder, plus the
  neighbours' candidates from the hour folders a UTC offset reaches);
- the sensor's look sees which neighbours a new file concerns.
"""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path

import pyarrow as pa
import pytest

from wflog_assets.day import Day, day_prefix
from wflog_assets.source.arrivals import look, marks_of, neighbours_reached
from wflog_assets.source.listing import list_day
from wflog_assets.source.routing import FLUSH_WINDOW_S, may_hold, taken_elsewhere
from wflog_assets.source.stores import LocalObjectStore

DAY = dt.date(2026, 3, 1)  # the day after the end of February: a month boundary too


def _random_key(rng: random.Random, folder: dt.date, seq: int) -> tuple[str, float]:
    """A key under `folder` (a writer name with a flush time, or another name) and a record
    time of the file: near the folder's local day for some UTC offset, or anywhere."""
    offset_h = rng.uniform(-14, 14)
    local_start = Day(folder).start
    hour = rng.randrange(24)
    flushed = local_start + hour * 3600 + rng.uniform(0, 3600) - offset_h * 3600
    kind = rng.random()
    if kind < 0.8:
        key = f"{day_prefix(folder)}hour={hour:02d}/{int(flushed * 1e9)}_{seq:06d}_dep_app.json.gz"
    elif kind < 0.9:
        key = f"{day_prefix(folder)}chunk-{seq}-part{int(flushed * 1000)}.parquet"
    else:
        key = f"{day_prefix(folder)}{int(flushed * 1e9)}_{seq:06d}_dep_app.json.gz"  # no hour folder
    age = rng.choice((rng.uniform(0, 10), rng.uniform(0, 2 * FLUSH_WINDOW_S), rng.uniform(-86_400, 86_400)))
    return key, flushed - age


@pytest.mark.parametrize("seed", range(5))
def test_every_row_is_judged_by_exactly_one_day(seed: int):
    rng = random.Random(seed)
    folders = [DAY + dt.timedelta(days=d) for d in range(-2, 3)]
    rows = [_random_key(rng, rng.choice(folders[1:4]), seq) for seq in range(3_000)]
    rows.append((f"{day_prefix(DAY)}hour=03/1772334000000000000_999999_dep_app.json.gz", float("nan")))
    files = pa.array([k for k, _ in rows], pa.large_string())
    times = pa.array([t for _, t in rows], pa.float64())
    judged = [0] * len(rows)
    kept_in_utc_day = 0
    for day in (Day(d) for d in folders):
        start, end = day.bounds
        elsewhere = taken_elsewhere(files, times, day).to_pylist()
        for i, (key, ts) in enumerate(rows):
            if not may_hold(key, day):  # the day's run never reads the file
                continue
            if not elsewhere[i]:
                judged[i] += 1  # kept (inside the day) or quarantined (its folder's day)
                if start <= ts < end:
                    kept_in_utc_day += 1
                else:
                    assert key.startswith(day.prefix)  # only the folder's day quarantines
    assert judged == [1] * len(rows)
    assert kept_in_utc_day > len(rows) / 2


def test_a_day_lists_exactly_the_files_the_rule_gives_it(tmp_path: Path):
    rng = random.Random(9)
    store = LocalObjectStore(tmp_path)
    keys = []
    for seq in range(1_500):
        folder = DAY + dt.timedelta(days=rng.randrange(-2, 3))
        key, _ = _random_key(rng, folder, seq)
        store.write(key, b"x")
        keys.append(key)
    for day in (DAY - dt.timedelta(days=1), DAY, DAY + dt.timedelta(days=1)):
        listed = {e.key for e in list_day(store, day).entries}
        assert listed == {k for k in keys if may_hold(k, Day(day))}
        assert any(not k.startswith(day_prefix(day)) for k in listed)  # neighbours' candidates


def _key(hour: int, flushed: float, seq: int) -> str:
    return f"{day_prefix(DAY)}hour={hour:02d}/{int(flushed * 1e9)}_{seq:06d}_dep_app.json.gz"


def test_a_look_says_which_neighbours_a_new_file_concerns(tmp_path: Path):
    start, end = Day(DAY).bounds
    before, after = DAY - dt.timedelta(days=1), DAY + dt.timedelta(days=1)
    store = LocalObjectStore(tmp_path / "behind")
    store.write(_key(0, start + 5, 1), b"x")
    marks = marks_of(list_day(store, DAY))
    seen = []
    for seq, flushed in enumerate((start + 60, start + 2 * FLUSH_WINDOW_S, start + 3 * FLUSH_WINDOW_S), 2):
        store.write(_key(0, flushed, seq), b"x")  # flushes of the first minutes of the day
        changed, new = look(store, DAY, marks)
        assert changed
        seen.append(neighbours_reached(DAY, marks, new))
        marks = new
    # the day before is concerned until a look starts past its window; never the day after
    assert seen == [{before}, {before}, set()]
    assert look(store, DAY, marks)[0] is False

    # a pod ahead of UTC files a flush of the next UTC day under this day's last hour
    store = LocalObjectStore(tmp_path / "ahead")
    store.write(_key(23, end - 600, 1), b"x")
    marks = marks_of(list_day(store, DAY))
    store.write(_key(23, end + 60, 2), b"x")
    changed, new = look(store, DAY, marks)
    assert changed
    assert neighbours_reached(DAY, marks, new) == {after}
