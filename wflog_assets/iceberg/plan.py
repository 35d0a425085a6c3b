"""What a run of a day must read and commit, planned before reading anything.

Every row carries its lineage (`source_file`, `source_etag`) and every snapshot written here
carries the day and its manifest's digest. A plan compares the day's current manifest with
what the table holds for the day: the state file the day's last commit named
(`checkpoint.known_state`, one read) or, when that chain is broken, the rows' lineage
columns (`derive_committed_state`). New files are read and appended; changed files replaced;
vanished files kept unless the run's `VanishedRule` deletes them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Iterator
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pyiceberg.expressions import And, BooleanExpression
from pyiceberg.manifest import DataFile
from pyiceberg.table import FileScanTask, Table
from pyiceberg.table.snapshots import Snapshot, ancestors_of
from pyiceberg.types import DoubleType

from wflog_assets.day import Day
from wflog_assets.errors import SourceListingError
from wflog_assets.iceberg._compat import ArrowScan, from_bytes
from wflog_assets.iceberg.checkpoint import (
    SUMMARY_DAY,
    CommittedDay,
    known_state,
)
from wflog_assets.iceberg.expressions import at_least, equal, less_than
from wflog_assets.iceberg.schema import (
    MONTH,
    SOURCE_ETAG,
    SOURCE_FILE,
    TIMESTAMP,
)
from wflog_assets.manifest import Manifest, ManifestEntry

SUMMARY_DIGEST = "wflog.manifest-digest"
SUMMARY_SOURCE_FILES = "wflog.source-files"
# rows the table holds for the day after the commit (what an unchanged re-run checks against)
SUMMARY_DAY_ROWS = "wflog.day-rows"
LINEAGE_BATCH_ROWS = 256 * 1024


@dataclass(frozen=True)
class DayPlan:
    """What a commit must do to make the table hold exactly the day's current files."""

    added: tuple[str, ...]
    changed: tuple[str, ...]
    removed: tuple[str, ...]

    @property
    def rewrite_keys(self) -> tuple[str, ...]:
        return self.changed + self.removed

    @property
    def write_keys(self) -> tuple[str, ...]:
        return self.added + self.changed

    def within(self, staged: Collection[str], removable: Collection[str]) -> DayPlan:
        """Only what a run prepared: files it staged, and removals it planned before reading.

        Anything else a concurrent run committed after this run planned (newer files, another
        version of a file) is that run's to judge, not this one's: it is left as it is.
        """
        return DayPlan(
            added=tuple(k for k in self.added if k in staged),
            changed=tuple(k for k in self.changed if k in staged),
            removed=tuple(k for k in self.removed if k in removable),
        )


def plan_day(committed: dict[str, str], current: Manifest) -> DayPlan:
    """Compare what the table holds for a day (key -> ETag) with the day's current manifest."""
    old = committed
    new = current.versions()
    added = tuple(sorted(k for k in new if k not in old))
    changed = tuple(sorted(k for k in new if k in old and old[k] != new[k]))
    removed = tuple(sorted(k for k in old if k not in new))
    return DayPlan(added=added, changed=changed, removed=removed)


VANISHED_POLICIES = ("keep", "delete")
DEFAULT_MAX_VANISHED_FRACTION = 0.5


@dataclass(frozen=True)
class VanishedRule:
    """What a run does with committed files that its listing no longer finds.

    The table is the archive: by default their rows stay (`delete=False`); deleting them is an
    explicit choice. Either way, a listing that misses more than `max_fraction` of the files
    the table holds for the day (an empty listing, a wrong source root, an expired prefix) fails
    the run before anything is committed: it is far likelier a mistake than a deletion.
    """

    delete: bool = False
    max_fraction: float = DEFAULT_MAX_VANISHED_FRACTION

    def __post_init__(self) -> None:
        if not 0.0 <= self.max_fraction <= 1.0:
            raise ValueError(f"max_fraction={self.max_fraction}: use a fraction between 0 and 1")

    @classmethod
    def of(cls, policy: str, max_fraction: float = DEFAULT_MAX_VANISHED_FRACTION) -> VanishedRule:
        if policy not in VANISHED_POLICIES:
            raise ValueError(f"vanished files policy {policy!r}: use one of {', '.join(VANISHED_POLICIES)}")
        return cls(delete=policy == "delete", max_fraction=max_fraction)

    @property
    def policy(self) -> str:
        return "delete" if self.delete else "keep"

    def judge(self, manifest: Manifest, committed_files: int, gone: tuple[str, ...]) -> None:
        """Raise `SourceListingError` if the listing misses too many of the committed files."""
        if gone and len(gone) > self.max_fraction * committed_files:
            raise SourceListingError(
                manifest.day, len(manifest.entries), committed_files, gone, self.max_fraction
            )


@dataclass(frozen=True)
class ReadPlan:
    """A day's plan made before reading, and the table state it was made against: the commit
    reuses it while the table has not moved (no second scan of the day)."""

    plan: DayPlan
    snapshot_id: int | None  # the table's snapshot then (None: no table, or an empty one)
    committed_files: int  # files the table held for the day then (-1: not scanned)
    rows_kept: int  # their rows outside the plan's files (-1: not scanned)
    # committed files the listing no longer finds (in `plan.removed` only if the rule deletes)
    vanished: tuple[str, ...] = ()
    vanished_policy: str = "keep"
    # how the plan learned the day's state: "digest" (unchanged: nothing read), "carried" (one
    # state file), "derived" (the day's data files), "none" (no table yet)
    state: str = "none"

    def to_json(self) -> dict[str, object]:
        plan = self.plan
        return {
            "added": list(plan.added),
            "changed": list(plan.changed),
            "removed": list(plan.removed),
            "snapshot_id": self.snapshot_id,
            "committed_files": self.committed_files,
            "rows_kept": self.rows_kept,
            "vanished": list(self.vanished),
            "vanished_policy": self.vanished_policy,
            "state": self.state,
        }

    @classmethod
    def from_json(cls, raw: dict[str, object]) -> ReadPlan:
        def keys(name: str) -> tuple[str, ...]:
            value = raw[name]
            assert isinstance(value, list)
            return tuple(str(k) for k in value)

        snapshot = raw["snapshot_id"]
        return cls(
            DayPlan(keys("added"), keys("changed"), keys("removed")),
            None if snapshot is None else int(str(snapshot)),
            int(str(raw["committed_files"])),
            int(str(raw["rows_kept"])),
            keys("vanished") if "vanished" in raw else (),
            str(raw.get("vanished_policy", "keep")),
            str(raw.get("state", "none")),
        )


def current_snapshot_id(table: Table) -> int | None:
    snapshot = table.current_snapshot()
    return snapshot.snapshot_id if snapshot is not None else None


def plan_reads(table: Table | None, manifest: Manifest, rule: VanishedRule | None = None) -> ReadPlan:
    """Before reading anything: which of the day's files a run must read (new or changed) and
    which committed files are gone. An unchanged day (its last snapshot has this manifest's
    digest) plans nothing without a scan.

    Gone files are removed only if `rule` deletes (default: their rows stay); a listing that
    misses too many of the committed files raises `SourceListingError` (`VanishedRule`).
    """
    rule = rule or VanishedRule()
    nothing = DayPlan(added=(), changed=(), removed=())
    if table is None:
        return ReadPlan(plan_day({}, manifest), None, 0, 0, vanished_policy=rule.policy)
    previous = last_day_snapshot(table, manifest.day)
    if previous is not None and summary_value(previous, SUMMARY_DIGEST) == manifest.digest:
        return ReadPlan(
            nothing, current_snapshot_id(table), -1, -1, vanished_policy=rule.policy, state="digest"
        )
    committed = committed_state(table, manifest.day)
    plan = plan_day(committed.versions, manifest)
    gone = plan.removed
    rule.judge(manifest, len(committed.versions), gone)
    if not rule.delete:
        plan = DayPlan(added=plan.added, changed=plan.changed, removed=())
    touched = set(plan.write_keys) | set(plan.rewrite_keys)
    kept = sum(n for k, n in committed.rows.items() if k not in touched)
    return ReadPlan(
        plan, current_snapshot_id(table), len(committed.versions), kept, gone, rule.policy, committed.source
    )


def last_day_snapshot(table: Table, day: str) -> Snapshot | None:
    """The newest snapshot in the current lineage that committed `day`."""
    for snapshot in ancestors_of(table.current_snapshot(), table.metadata):
        if snapshot.summary is not None and snapshot.summary.get(SUMMARY_DAY) == day:
            return snapshot
    return None


def day_filter(day: Day) -> BooleanExpression:
    """The rows of one UTC day: its month (a partition field, so whole manifests of other
    months are skipped unread) and its timestamp range (data files of other days are pruned by
    their statistics). A row belongs to the day of its timestamp, whichever folder held its file."""
    start, end = day.bounds
    return And(equal(MONTH, day.month), And(at_least(TIMESTAMP, start), less_than(TIMESTAMP, end)))


def rows_within(data_file: DataFile, field_id: int, start: float, end: float) -> bool:
    """Whether every row of a data file has a timestamp in [start, end) (its statistics;
    `field_id`: the timestamp column's)."""
    low = (data_file.lower_bounds or {}).get(field_id)
    high = (data_file.upper_bounds or {}).get(field_id)
    if low is None or high is None or (data_file.null_value_counts or {}).get(field_id, 1):
        return False
    lowest, highest = from_bytes(DoubleType(), low), from_bytes(DoubleType(), high)
    return isinstance(lowest, float) and isinstance(highest, float) and start <= lowest <= highest < end


def _lineage_batches(table: Table, task: FileScanTask, day: Day) -> Iterator[pa.Table]:
    """The lineage columns of one data file's rows of the day, dictionary-encoded as the file
    stores them (a few bytes a row instead of two strings): a file that holds only the day's
    rows (every file a day's commit writes) is read without its timestamps; pyiceberg's scan
    for any other file."""
    columns = [SOURCE_FILE, SOURCE_ETAG]
    start, end = day.bounds
    if not task.delete_files and rows_within(
        task.file, table.schema().find_field(TIMESTAMP).field_id, start, end
    ):
        with table.io.new_input(task.file.file_path).open() as f:
            parquet = pq.ParquetFile(f, read_dictionary=columns)
            if set(columns) <= set(parquet.schema_arrow.names):
                for batch in parquet.iter_batches(columns=columns, batch_size=LINEAGE_BATCH_ROWS):
                    yield pa.Table.from_batches([batch])
                return
    projected = table.schema().select(*columns)
    scan = ArrowScan(table.metadata, table.io, projected, row_filter=day_filter(day))
    yield from (pa.Table.from_batches([b]) for b in scan.to_record_batches([task]))


def committed_state(table: Table, day: str) -> CommittedDay:
    """The (file, ETag) pairs and row counts of the rows the table holds for `day`: the state
    file its newest commit left, when it still holds (`checkpoint.known_state`, one read), or
    else derived from the rows."""
    known = known_state(table, day)
    return known if known is not None else derive_committed_state(table, day)


def derive_committed_state(table: Table, day: str) -> CommittedDay:
    """The (file, ETag) pairs and row counts of the rows the table holds for `day`, read file
    by file from the lineage columns only (the day's data files, pruned by statistics)."""
    the_day = Day.parse(day)
    parts: list[pa.Table] = []
    for task in table.scan(row_filter=day_filter(the_day)).plan_files():
        for rows in _lineage_batches(table, task, the_day):
            if rows.num_rows:
                pairs = rows.group_by([SOURCE_FILE, SOURCE_ETAG]).aggregate([([], "count_all")])
                parts.append(
                    pa.table(
                        {  # plain strings: each batch has dictionaries of its own
                            SOURCE_FILE: pc.cast(pairs.column(SOURCE_FILE), pa.string()),
                            SOURCE_ETAG: pc.cast(pairs.column(SOURCE_ETAG), pa.string()),
                            "rows": pairs.column("count_all"),
                        }
                    )
                )
    state = CommittedDay()
    if not parts:
        return state
    pairs = pa.concat_tables(parts).group_by([SOURCE_FILE, SOURCE_ETAG]).aggregate([("rows", "sum")])
    files = pairs.group_by(SOURCE_FILE).aggregate(
        [
            (SOURCE_ETAG, "min"),
            (SOURCE_ETAG, "count_distinct", pc.CountOptions(mode="all")),
            ("rows_sum", "sum"),
        ]
    )
    for key, etag, versions, n in zip(
        files.column(SOURCE_FILE).to_pylist(),
        files.column(f"{SOURCE_ETAG}_min").to_pylist(),
        files.column(f"{SOURCE_ETAG}_count_distinct").to_pylist(),
        files.column("rows_sum_sum").to_pylist(),
        strict=True,
    ):
        state.versions[key] = etag if versions == 1 else "<several versions>"  # forces a rewrite
        state.rows[key] = n
    return state


def committed_day(table: Table, day: dt.date) -> tuple[Manifest, pa.Table]:
    """A day as the table holds it: its files (as a manifest) and its rows."""
    rows = table.scan(row_filter=day_filter(Day(day))).to_arrow()
    pairs = rows.select([SOURCE_FILE, SOURCE_ETAG]).group_by([SOURCE_FILE, SOURCE_ETAG]).aggregate([])
    entries = (
        ManifestEntry(key=k, size=0, etag=e, last_modified="")
        for k, e in zip(pairs.column(0).to_pylist(), pairs.column(1).to_pylist(), strict=True)
    )
    return Manifest.build(day.isoformat(), entries), rows


def summary_value(snapshot: Snapshot, key: str) -> str | None:
    """A property of a snapshot's summary (None if absent)."""
    return snapshot.summary.get(key) if snapshot.summary is not None else None


def summary_int(snapshot: Snapshot, key: str) -> int:
    value = snapshot.summary.get(key) if snapshot.summary is not None else None
    return int(value) if value else 0
