"""A day's committed state carried forward through the table itself (no Dagster here).

What the table holds for a day (source file -> ETag, rows) is the checkpoint every run plans
against. Deriving it reads the lineage columns of every data file of the day, which grows
with the day: a day committed once a minute would re-read thousands of files per run. So each
day commit also writes the state it leaves behind, a small Parquet file under
`<table>/data/wflog-day-state/<day>/` (beside the data files: weed mini's catalog refuses any
other file than manifests under metadata/), and names it in its snapshot summary
(`wflog.day-state`), in the same atomic commit as the data. A plan then reads one object:

- the newest snapshot of the day names a state file, and every snapshot after it is one this
  project wrote that cannot change the day's rows (another day's commit: a run only ever writes
  rows of its own UTC day; a compaction or manifest rewrite: the same rows) -> that file;
- anything else (the snapshot expired, a commit by another writer or an older version, an
  unreadable file) -> the state is derived from the rows, as before (`derive_committed_state`).

The table stays the truth: a state file is only ever trusted through the snapshot that
committed it, and the derivation is the fallback whenever the chain is broken.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.parquet as pq
from pyiceberg.table import Table
from pyiceberg.table.snapshots import Snapshot, ancestors_of

from wflog_assets.iceberg.schema import SOURCE_ETAG, SOURCE_FILE

SUMMARY_DAY = "wflog.day"
SUMMARY_DAY_STATE = "wflog.day-state"
SUMMARY_MAINTENANCE = "wflog.maintenance"
STATE_FOLDER = "data/wflog-day-state"
ROWS = "rows"
STATE_SCHEMA = pa.schema([(SOURCE_FILE, pa.string()), (SOURCE_ETAG, pa.string()), (ROWS, pa.int64())])


@dataclass
class CommittedDay:
    """What the table holds for a day: source_file -> source_etag, and its rows per file."""

    versions: dict[str, str] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)
    # how it was learned: "carried" (a state file), "derived" (the day's rows)
    source: str = field(default="derived", compare=False)

    def after(
        self,
        removed: tuple[str, ...],
        written: tuple[str, ...],
        etags: Mapping[str, str],
        rows: Mapping[str, int],
    ) -> CommittedDay:
        """The state once the rows of `removed` are deleted and those of `written` (with
        `rows[key]` rows each, at ETag `etags[key]`) appended."""
        versions, counts = dict(self.versions), dict(self.rows)
        for key in (*removed, *written):
            versions.pop(key, None)
            counts.pop(key, None)
        for key in written:
            if rows.get(key, 0) > 0:  # a file with no accepted row leaves no row behind
                versions[key], counts[key] = etags[key], rows[key]
        return CommittedDay(versions, counts)

    def to_arrow(self) -> pa.Table:
        keys = sorted(self.versions)
        return pa.table(
            [keys, [self.versions[k] for k in keys], [self.rows.get(k, 0) for k in keys]], schema=STATE_SCHEMA
        )

    @classmethod
    def from_arrow(cls, table: pa.Table) -> CommittedDay:
        keys = table.column(SOURCE_FILE).to_pylist()
        return cls(
            dict(zip(keys, table.column(SOURCE_ETAG).to_pylist(), strict=True)),
            dict(zip(keys, table.column(ROWS).to_pylist(), strict=True)),
        )


def write_state(table: Table, day: str, state: CommittedDay) -> str:
    """Write a day's state as a new file of the table's metadata folder; returns its location.
    Not referenced until a commit names it: a commit that never lands leaves an orphan."""
    location = f"{table.location().rstrip('/')}/{STATE_FOLDER}/{day}/{uuid.uuid4().hex}.parquet"
    with table.io.new_output(location).create(overwrite=True) as out:
        pq.write_table(state.to_arrow(), out, compression="zstd")
    return location


def read_state(table: Table, location: str) -> CommittedDay | None:
    """A state file, or None if it cannot be read as one (removed, damaged, another format)."""
    try:
        with table.io.new_input(location).open() as f:
            state = pq.read_table(f)
    except (OSError, pa.ArrowInvalid):
        return None
    if not state.schema.equals(STATE_SCHEMA):
        return None
    carried = CommittedDay.from_arrow(state)
    carried.source = "carried"
    return carried


def day_state_snapshot(table: Table, day: str) -> Snapshot | None:
    """The newest snapshot of `day` whose recorded state still holds: every snapshot after it
    is another day's commit or a maintenance rewrite of this project. None: derive the state."""
    for snapshot in ancestors_of(table.current_snapshot(), table.metadata):
        summary = snapshot.summary
        if summary is None:
            return None
        if summary.get(SUMMARY_DAY) == day:
            return snapshot if summary.get(SUMMARY_DAY_STATE) else None
        if summary.get(SUMMARY_DAY) is None and summary.get(SUMMARY_MAINTENANCE) is None:
            return None  # a commit this project did not make: it may have changed the day
    return None


def known_state(table: Table, day: str) -> CommittedDay | None:
    """The day's state from the newest state file that still holds (one read), or None."""
    snapshot = day_state_snapshot(table, day)
    if snapshot is None or snapshot.summary is None:
        return None
    location = snapshot.summary.get(SUMMARY_DAY_STATE)
    return read_state(table, location) if location else None
