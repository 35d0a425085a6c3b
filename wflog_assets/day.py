"""A UTC day, built once from a partition key: its date, source folder and bounds."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

DAY_SECONDS = 86_400
# |Unix seconds| beyond this are not seconds (milliseconds, nanoseconds, or garbage): year 5138.
MAX_UNIX_SECONDS = 1e11


def utc_text(seconds: float | None) -> str | None:
    """Unix seconds as readable UTC time (`2025-12-01T10:00:00.250000+00:00`) for metadata."""
    if seconds is None:
        return None
    return dt.datetime.fromtimestamp(seconds, tz=dt.UTC).isoformat(timespec="microseconds")


def day_prefix(day: dt.date) -> str:
    """The source folder of one day, relative to the source root."""
    return f"year={day.year:04d}/month={day.month:02d}/day={day.day:02d}/"


@dataclass(frozen=True, slots=True)
class Day:
    """One UTC day: what every step needs to know about its partition, computed in one place."""

    date: dt.date

    @classmethod
    def parse(cls, key: str) -> Day:
        """The day of a partition key or manifest day (YYYY-MM-DD)."""
        try:
            return cls(dt.date.fromisoformat(key))
        except ValueError as exc:
            raise ValueError(f"{key!r} is not a day: use YYYY-MM-DD, e.g. 2025-12-01") from exc

    @property
    def key(self) -> str:
        """The partition key (YYYY-MM-DD)."""
        return self.date.isoformat()

    @property
    def prefix(self) -> str:
        """The day's source folder, relative to the source root."""
        return day_prefix(self.date)

    @property
    def start(self) -> float:
        """00:00 UTC of the day in Unix seconds."""
        return dt.datetime(self.date.year, self.date.month, self.date.day, tzinfo=dt.UTC).timestamp()

    @property
    def bounds(self) -> tuple[float, float]:
        """[start, end) of the day in Unix seconds."""
        return self.start, self.start + DAY_SECONDS

    @property
    def month(self) -> int:
        """The calendar month (1-12): the table's `month` column and partition value."""
        return self.date.month

    def __str__(self) -> str:
        return self.key
