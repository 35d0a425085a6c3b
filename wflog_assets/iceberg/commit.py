"""One Iceberg commit per day, with the checkpoint (day, manifest digest) in the same snapshot.

The table, not Dagster, is the commit record. Every row carries its lineage (`source_file`,
`source_etag`), and every snapshot written here carries the day and the digest of the day's
manifest, in the same atomic commit as the data. A re-run of a day:

- finds a snapshot of that day with the same digest -> nothing is written;
- otherwise reads which (file, ETag) pairs the table holds for the day (a scan pruned by the
  `source_file` statistics) and writes only the difference, in one commit:
  new files -> their rows appended; changed or vanished files -> their rows deleted (and the
  new version's rows appended). Other files' rows are untouched.

Because the committed state is read from the rows themselves, it survives snapshot expiry and
compaction, and needs no side files that orphan-file cleanup could remove.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import time
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pyiceberg.catalog import Catalog
from pyiceberg.conversions import from_bytes
from pyiceberg.exceptions import CommitFailedException, CommitStateUnknownException
from pyiceberg.expressions import And, BooleanExpression
from pyiceberg.io.pyarrow import ArrowScan
from pyiceberg.manifest import DataFile
from pyiceberg.partitioning import PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.table import FileScanTask, Table, TableProperties
from pyiceberg.table.snapshots import Snapshot, ancestors_of
from pyiceberg.table.sorting import SortOrder
from pyiceberg.types import DoubleType
from pyiceberg.utils.properties import property_as_bool

from wflog_assets.day import Day
from wflog_assets.errors import SourceListingError, TableLayoutError
from wflog_assets.iceberg import data_files as day_writer
from wflog_assets.iceberg._compat import check_pyarrow_schema_compatible
from wflog_assets.iceberg.catalogs import open_or_create
from wflog_assets.iceberg.checkpoint import (
    SUMMARY_DAY,
    SUMMARY_DAY_STATE,
    CommittedDay,
    known_state,
    write_state,
)
from wflog_assets.iceberg.data_files import MemoryRun, SortedRun, WrittenFiles
from wflog_assets.iceberg.expressions import at_least, equal, is_in, less_than
from wflog_assets.iceberg.locations import LOCATION_PROVIDER
from wflog_assets.iceberg.retry import commit_with_retries, without_library_retries
from wflog_assets.iceberg.schema import (
    LAYOUTS,
    MONTH,
    SORT_ORDER,
    SOURCE_ETAG,
    SOURCE_FILE,
    TABLE_SCHEMA,
    TIMESTAMP,
)
from wflog_assets.manifest import Manifest, ManifestEntry
from wflog_assets.phases import PhaseTimes

SUMMARY_DIGEST = "wflog.manifest-digest"
SUMMARY_SOURCE_FILES = "wflog.source-files"
# rows the table holds for the day after the commit (what an unchanged re-run checks against)
SUMMARY_DAY_ROWS = "wflog.day-rows"
LINEAGE_BATCH_ROWS = 256 * 1024

# Full min/max bounds for `source_file`. The default metrics mode truncates strings to 16
# characters ("year=2025/month="), which cannot tell days apart: every per-day scan (the
# checkpoint, the checks) then planned and read every data file of the table, and each run got
# slower as history grew (a 90-day backfill: 6 s runs at day 1, 95 s at day 50).
SOURCE_FILE_METRICS = f"{TableProperties.METRICS_MODE_COLUMN_CONF_PREFIX}.{SOURCE_FILE}"

# Metadata hygiene for a table committed all day (a run a minute): each commit deletes the
# metadata.json files beyond the last 10, appends merge manifests once 16 pile up (every plan,
# the P0 query's too, reads every manifest of the month: bench/bench_long_haul.py), and runs
# expire snapshots older than an hour, keeping at least 12 (`maintenance.expire_by_policy`), as
# RisingWave's Iceberg sink does: time travel reaches back an hour. Iceberg's own properties,
# so every engine honours them; set only where a table does not name them (an operator's stay).
MIN_SNAPSHOTS_TO_KEEP = "history.expire.min-snapshots-to-keep"
HYGIENE_PROPERTIES: dict[str, str] = {
    TableProperties.METADATA_DELETE_AFTER_COMMIT_ENABLED: "true",
    TableProperties.METADATA_PREVIOUS_VERSIONS_MAX: "10",
    TableProperties.MANIFEST_MERGE_ENABLED: "true",
    TableProperties.MANIFEST_MIN_MERGE_COUNT: "16",
    TableProperties.MAX_SNAPSHOT_AGE_MS: str(3600 * 1000),
    MIN_SNAPSHOTS_TO_KEEP: "12",
}

DEFAULT_TABLE_PROPERTIES: dict[str, str] = {
    **HYGIENE_PROPERTIES,
    SOURCE_FILE_METRICS: "full",
    "write.parquet.compression-codec": "zstd",
    # Row groups of 32k rows: the P0 query prunes and stops early by row group, so a LIMIT 100
    # on a workflow of 400k rows reads one row group instead of the whole file.
    "write.parquet.row-group-limit": str(32 * 1024),
    # partition folders bounded for any workflow name (`iceberg/locations.py`)
    TableProperties.WRITE_PY_LOCATION_PROVIDER_IMPL: LOCATION_PROVIDER,
}


def ensure_table(
    catalog: Catalog,
    identifier: str,
    layout: str = "wf_month",
    properties: dict[str, str] | None = None,
) -> Table:
    """Create the namespace and table if missing; refuse a table laid out differently."""
    spec = LAYOUTS[layout]
    table = open_or_create(
        catalog,
        identifier,
        schema=TABLE_SCHEMA,
        partition_spec=spec,
        sort_order=SORT_ORDER,
        properties={**DEFAULT_TABLE_PROPERTIES, **(properties or {})},
    )
    upgrades = {  # a table made by an earlier version
        name: DEFAULT_TABLE_PROPERTIES[name]
        for name in (SOURCE_FILE_METRICS, TableProperties.WRITE_PY_LOCATION_PROVIDER_IMPL)
        if table.properties.get(name) != DEFAULT_TABLE_PROPERTIES[name]
    }
    upgrades.update(
        {name: value for name, value in HYGIENE_PROPERTIES.items() if name not in table.properties}
    )
    if upgrades:
        with table.transaction() as tx:
            tx.set_properties(upgrades)
    missing = [f.name for f in TABLE_SCHEMA.fields if f.name not in table.schema().column_names]
    if missing:  # a table made by an earlier version: add the new optional columns
        with table.update_schema() as update:
            update.union_by_name(TABLE_SCHEMA)
    # Compare by column name: a REST catalog may assign its own field ids on create.
    if _spec_by_name(table.schema(), table.spec()) != _spec_by_name(TABLE_SCHEMA, spec):
        raise TableLayoutError(
            f"table {identifier} is partitioned by {table.spec()}, expected layout {layout!r} "
            f"({spec}); point WFLOG_TABLE at another table or drop this one"
        )
    if _sort_by_name(table.schema(), table.sort_order()) != _sort_by_name(TABLE_SCHEMA, SORT_ORDER):
        raise TableLayoutError(
            f"table {identifier} has sort order {table.sort_order()}, expected timestamp DESC"
        )
    return table


def _spec_by_name(schema: Schema, spec: PartitionSpec) -> list[tuple[str | None, str]]:
    return [(schema.find_column_name(f.source_id), str(f.transform)) for f in spec.fields]


def _sort_by_name(schema: Schema, order: SortOrder) -> list[tuple[str | None, str, str]]:
    return [(schema.find_column_name(f.source_id), str(f.direction), str(f.null_order)) for f in order.fields]


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


def _snapshot_id(table: Table) -> int | None:
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
        return ReadPlan(nothing, _snapshot_id(table), -1, -1, vanished_policy=rule.policy, state="digest")
    committed = committed_state(table, manifest.day)
    plan = plan_day(committed.versions, manifest)
    gone = plan.removed
    rule.judge(manifest, len(committed.versions), gone)
    if not rule.delete:
        plan = DayPlan(added=plan.added, changed=plan.changed, removed=())
    touched = set(plan.write_keys) | set(plan.rewrite_keys)
    kept = sum(n for k, n in committed.rows.items() if k not in touched)
    return ReadPlan(
        plan, _snapshot_id(table), len(committed.versions), kept, gone, rule.policy, committed.source
    )


@dataclass
class CommitResult:
    """What one day's commit did."""

    day: str
    outcome: str  # "unchanged" | "appended" | "replaced" | "empty"
    snapshot_id: int | None
    manifest_digest: str
    rows_written: int = 0
    rows_deleted: int = 0
    data_files_written: int = 0
    files_added: list[str] = field(default_factory=list)
    files_changed: list[str] = field(default_factory=list)
    files_removed: list[str] = field(default_factory=list)
    attempts: int = 1
    times: dict[str, float] = field(default_factory=dict)  # seconds: plan, write, commit
    rows_kept: int = 0  # rows of the day's other files, left as they were (-1: unknown)
    data_files: list[DataFile] = field(default_factory=list, repr=False)  # the files it added

    @property
    def day_rows(self) -> int | None:
        """Rows the table holds for the day after this commit, if known."""
        if self.rows_kept < 0:
            return None
        return self.rows_kept + (0 if self.outcome == "unchanged" else self.rows_written)


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


def write_data_files(
    table: Table,
    rows: pa.Table | list[SortedRun],
    only_keys: tuple[str, ...] | None = None,
    observe: Callable[[pa.Table], None] | None = None,
) -> WrittenFiles:
    """Write `rows` (a table, or a day's sorted runs) as data files of `table`, not committed.

    One file per partition (more only past the target file size), rows in the table's sort
    order. `only_keys`: write only the rows of these source files.
    """
    metadata = table.metadata
    if isinstance(rows, pa.Table):
        if rows.num_rows == 0:
            return WrittenFiles()
        check_pyarrow_schema_compatible(
            metadata.schema(), provided_schema=rows.schema, format_version=metadata.format_version
        )
        runs: list[SortedRun] = [MemoryRun.of(rows, metadata.spec(), metadata.schema())]
    else:
        runs = rows
    keep = None
    if only_keys is not None:
        wanted = pa.array(only_keys)

        def keep(block: pa.Table) -> pa.Array:
            column = block.column(SOURCE_FILE)
            return pc.is_in(column, value_set=wanted.cast(column.type))

    return day_writer.write_data_files(metadata, table.io, runs, keep, observe)


def _merges_manifests(table: Table) -> bool:
    return property_as_bool(
        table.metadata.properties,
        TableProperties.MANIFEST_MERGE_ENABLED,
        TableProperties.MANIFEST_MERGE_ENABLED_DEFAULT,
    )


def delete_files(table: Table, files: list[DataFile]) -> None:
    for data_file in files:
        with contextlib.suppress(OSError):  # an orphan at worst: orphan-file maintenance removes it
            table.io.delete(data_file.file_path)


class DayCommit:
    """One day's commit: plan against the table, write the data files once, commit, and on a
    conflict re-plan against the fresh table (see `commit_day`)."""

    def __init__(
        self,
        load_table: Callable[[], Table],
        manifest: Manifest,
        rows: pa.Table | list[SortedRun],
        staged: Collection[str] | None,
        planned: ReadPlan | None,
        observe: Callable[[pa.Table], None] | None,
        accepted: Mapping[str, int] | None = None,
    ) -> None:
        self.load_table, self.manifest, self.rows = load_table, manifest, rows
        self.staged = set(manifest.versions()) if staged is None else set(staged)
        self.planned = planned
        self.accepted = accepted
        self.base: CommittedDay | None = None  # the state the plan was made against
        self.restricted = staged is not None
        self.observe = observe
        self.written: list[DataFile] = []
        self.written_for: tuple[object, ...] | None = None
        self.rows_to_write = 0
        self.rows_kept = 0
        self.last_plan: DayPlan | None = None
        self.last_previous: Snapshot | None = None
        self.last_error: Exception | None = None
        self.times = PhaseTimes()

    def _result(self, outcome: str, snapshot: Snapshot | None, attempt: int) -> CommitResult:
        return CommitResult(
            day=self.manifest.day,
            outcome=outcome,
            snapshot_id=snapshot.snapshot_id if snapshot else None,
            manifest_digest=self.manifest.digest,
            attempts=attempt,
            rows_kept=self.rows_kept,
        )

    def _plan(self, table: Table) -> tuple[DayPlan, bool]:
        """(what to do, whether the table holds any file of the day)."""
        planned = self.planned
        if (
            planned is not None
            and planned.committed_files >= 0
            and planned.snapshot_id == _snapshot_id(table)
        ):
            self.rows_kept = planned.rows_kept  # the table has not moved since the run planned
            self.base = None  # read when the state file is written
            return planned.plan.within(self.staged, planned.plan.removed), bool(planned.committed_files)
        with self.times.timed("plan"):
            committed = committed_state(table, self.manifest.day)
        self.base = committed
        plan = plan_day(committed.versions, self.manifest)
        if self.restricted:
            plan = plan.within(self.staged, planned.plan.removed if planned is not None else plan.removed)
        touched = set(plan.write_keys) | set(plan.rewrite_keys)
        self.rows_kept = sum(n for k, n in committed.rows.items() if k not in touched)
        return plan, bool(committed.versions)

    def _write(self, table: Table, plan: DayPlan) -> None:
        key = (plan.write_keys, table.metadata.default_spec_id, table.metadata.current_schema_id)
        if key == self.written_for:
            return
        delete_files(table, self.written)
        files = WrittenFiles()
        if plan.write_keys:
            every_file = set(plan.write_keys) == self.staged
            with self.times.timed("write"):
                files = write_data_files(
                    table, self.rows, only_keys=None if every_file else plan.write_keys, observe=self.observe
                )
        self.written, self.written_for, self.rows_to_write = files.data_files, key, files.rows

    def _state_after(self, table: Table, plan: DayPlan) -> CommittedDay | None:
        """The day's state once `plan` is committed (None: the rows per file are not known)."""
        if self.accepted is None:
            return None
        if self.base is None:
            with self.times.timed("plan"):
                self.base = committed_state(table, self.manifest.day)
        return self.base.after(plan.rewrite_keys, plan.write_keys, self.manifest.versions(), self.accepted)

    def _commit(self, table: Table, plan: DayPlan) -> bool:
        """True if the commit landed, False if it conflicted or its outcome is unknown."""
        manifest = self.manifest
        properties = {
            SUMMARY_DAY: manifest.day,
            SUMMARY_DIGEST: manifest.digest,
            SUMMARY_SOURCE_FILES: str(len(manifest.entries)),
            SUMMARY_DAY_ROWS: str(self.rows_kept + self.rows_to_write),
        }
        commit_started = time.perf_counter()
        state = self._state_after(table, plan)
        if state is not None:
            properties[SUMMARY_DAY_STATE] = write_state(table, manifest.day, state)
        try:
            tx = table.transaction()
            if plan.rewrite_keys:  # the day's rows of those files (a file may hold two days)
                where = And(day_filter(manifest.utc_day), is_in(SOURCE_FILE, plan.rewrite_keys))
                tx.delete(where, snapshot_properties=properties)
            snapshot = tx.update_snapshot(snapshot_properties=properties)
            # honour commit.manifest-merge.enabled as Iceberg's own appends do: merged manifests
            # keep planning (and so every later commit) from growing with the table's history
            with snapshot.merge_append() if _merges_manifests(table) else snapshot.fast_append() as append:
                for data_file in self.written:
                    append.append_data_file(data_file)
            tx.commit_transaction()
            return True
        except CommitFailedException as exc:
            self.last_error = exc  # did not land: the retry re-plans against the new state
            raise
        except CommitStateUnknownException as exc:
            self.last_error = exc  # may have landed: the digest check tells
        finally:
            self.times.add("commit", time.perf_counter() - commit_started)
        return False

    def _attempt(self, attempt: int) -> CommitResult | None:
        manifest = self.manifest
        table = without_library_retries(self.load_table())
        previous = last_day_snapshot(table, manifest.day)
        if previous is not None and summary_value(previous, SUMMARY_DIGEST) == manifest.digest:
            if isinstance(self.last_error, CommitStateUnknownException) and self.last_plan:
                # our unconfirmed attempt did land: report what it wrote
                return _result(
                    table, manifest, self.last_plan, self.last_previous, self.rows_to_write, attempt
                )
            self.rows_kept = int(summary_value(previous, SUMMARY_DAY_ROWS) or -1)
            return self._result("unchanged", previous, attempt)
        plan, holds_day = self._plan(table)
        if previous is None and not manifest.entries and not holds_day:
            return self._result("empty", None, attempt)
        if holds_day and not plan.write_keys and not plan.rewrite_keys:
            # the rows already match the files (the day's snapshot was expired, compaction
            # rewrote its files, or a concurrent run committed them): nothing to write, and no
            # empty snapshot either
            return self._result("unchanged", previous or table.current_snapshot(), attempt)
        self._write(table, plan)
        self.last_plan, self.last_previous = plan, previous
        if not self._commit(table, plan):
            return None
        result = _result(self.load_table(), manifest, plan, previous, self.rows_to_write, attempt)
        result.rows_kept = self.rows_kept
        return result

    def run(self, max_attempts: int, base_backoff_s: float) -> CommitResult:
        result = commit_with_retries(
            self._attempt,
            f"day {self.manifest.day}",
            max_attempts,
            base_backoff_s,
            give_up=lambda: delete_files(self.load_table(), self.written),
        )
        result.times = self.times.as_dict()
        if result.outcome in ("appended", "replaced"):
            result.data_files = list(self.written)
        return result


def commit_day(
    load_table: Callable[[], Table],
    manifest: Manifest,
    rows: pa.Table | list[SortedRun],
    max_attempts: int = 8,
    base_backoff_s: float = 0.2,
    observe: Callable[[pa.Table], None] | None = None,
    staged: Collection[str] | None = None,
    planned: ReadPlan | None = None,
    accepted: Mapping[str, int] | None = None,
) -> CommitResult:
    """Make the table hold exactly the rows of `manifest`'s files for its day, in one commit.

    `rows` are the normalized rows (with lineage columns) of the files in `staged` (default:
    every file of the manifest): a table, or the sorted runs they were staged as (merged into
    one sorted file per partition, `data_files`); `observe` sees every merged block of the
    write. With `staged` given, the commit does only what the run prepared: it writes staged
    files the table still lacks (or holds in another version) and removes only files that
    `planned` found gone from the source; while the table has not moved since `planned` was
    made, its plan is used as it is (no second scan of the day). The data files are written once;
    a commit that conflicts with a concurrent one is re-planned against the fresh table (with
    jittered exponential backoff) and reuses the files if the plan did not change. An unknown
    commit outcome is resolved by looking for our digest. `accepted`: the rows each staged file
    gave the day; with it, the commit also writes the day's state file (`checkpoint`), so the
    next plan reads one object instead of the day's data files.
    """
    return DayCommit(load_table, manifest, rows, staged, planned, observe, accepted).run(
        max_attempts, base_backoff_s
    )


def identity_values(table: Table, data_files: list[DataFile], column: str) -> set[object]:
    """The values of `column`'s identity partition field in these data files (none if the
    table's spec has no such field)."""
    schema = table.schema()
    positions = [
        i
        for i, f in enumerate(table.spec().fields)
        if schema.find_column_name(f.source_id) == column and str(f.transform) == "identity"
    ]
    return {data_file.partition[positions[0]] for data_file in data_files} if positions else set()


def summary_value(snapshot: Snapshot, key: str) -> str | None:
    """A property of a snapshot's summary (None if absent)."""
    return snapshot.summary.get(key) if snapshot.summary is not None else None


def _summary_int(snapshot: Snapshot, key: str) -> int:
    value = snapshot.summary.get(key) if snapshot.summary is not None else None
    return int(value) if value else 0


def _result(
    table: Table,
    manifest: Manifest,
    plan: DayPlan,
    previous: Snapshot | None,
    rows_written: int,
    attempts: int,
) -> CommitResult:
    # Our snapshots are consecutive; other days' commits may already sit on top of them.
    files_written = records_deleted = records_added = 0
    snapshot_id: int | None = None
    for snapshot in ancestors_of(table.current_snapshot(), table.metadata):
        ours = (
            snapshot.summary is not None
            and snapshot.summary.get(SUMMARY_DIGEST) == (manifest.digest)
            and snapshot.summary.get(SUMMARY_DAY) == manifest.day
        )
        if previous is not None and snapshot.snapshot_id == previous.snapshot_id:
            break
        if not ours:
            if snapshot_id is None:
                continue
            break
        snapshot_id = snapshot_id or snapshot.snapshot_id
        files_written += _summary_int(snapshot, "added-data-files")
        records_deleted += _summary_int(snapshot, "deleted-records")
        records_added += _summary_int(snapshot, "added-records")
    # A copy-on-write delete removes whole files and re-adds their surviving rows.
    rows_deleted = records_deleted - (records_added - rows_written)
    return CommitResult(
        day=manifest.day,
        outcome="replaced" if plan.rewrite_keys else "appended",
        snapshot_id=snapshot_id,
        manifest_digest=manifest.digest,
        rows_written=rows_written,
        rows_deleted=rows_deleted,
        data_files_written=files_written,
        files_added=list(plan.added),
        files_changed=list(plan.changed),
        files_removed=list(plan.removed),
        attempts=attempts,
    )
