"""Keep a year of daily commits fast: compact a month's files per partition, expire old
snapshots (no Dagster import).

Each day lands as at least one data file per (workflow, month) partition it touches, so a
workflow that logs every day of a month ends up with ~30 files in its partition, and every
commit adds a manifest. `compact_month` rewrites each partition of one month that holds more
than one data file into one file (or several where the rows exceed the table's target file
size), sorted `timestamp DESC`, in **one** commit that replaces exactly the files it read: the
rows, their lineage columns and so the checkpoint stay the same. A commit that loses the race
against an ingest run is re-planned from the fresh table, never rebased.
"""

from __future__ import annotations

import calendar
import contextlib
import datetime as dt
from collections import defaultdict
from collections.abc import Callable, Collection
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.fs as pafs
from pyiceberg.expressions import (
    AlwaysTrue,
    And,
    BooleanExpression,
)
from pyiceberg.manifest import DataFile, ManifestFile
from pyiceberg.table import FileScanTask, Table, TableProperties
from pyiceberg.table.snapshots import Snapshot

from wflog_assets.day import Day
from wflog_assets.errors import CompactionConflictError
from wflog_assets.iceberg._compat import ArrowScan, arrow_filesystem, property_as_int
from wflog_assets.iceberg.checkpoint import SUMMARY_DAY_STATE, SUMMARY_MAINTENANCE
from wflog_assets.iceberg.commit import delete_files, write_data_files
from wflog_assets.iceberg.expressions import at_least, equal, is_in, less_than
from wflog_assets.iceberg.plan import day_filter, rows_within
from wflog_assets.iceberg.retry import commit_with_retries, without_library_retries
from wflog_assets.iceberg.schema import MONTH, TIMESTAMP, WORKFLOW_NAME, sort_for_table
from wflog_assets.iceberg.tables import MIN_SNAPSHOTS_TO_KEEP

SUMMARY_MONTH = "wflog.month"


@dataclass(frozen=True)
class CompactionResult:
    month: str  # what was compacted: YYYY-MM, or YYYY-MM-DD for a day
    partitions: int  # partitions of the month in the table
    partitions_compacted: int
    files_before: int  # data files of the compacted partitions before
    files_after: int
    rows: int  # rows rewritten (equal before and after)
    snapshot_id: int | None  # None: nothing to compact
    attempts: int


def month_filter(year: int, month: int) -> And:
    """Rows of one calendar month (UTC): the `month` partition value and the timestamp range,
    since `month` alone (1-12) does not tell years apart."""
    start = dt.datetime(year, month, 1, tzinfo=dt.UTC)
    days = calendar.monthrange(year, month)[1]
    end = start + dt.timedelta(days=days)
    return And(
        equal(MONTH, month), at_least(TIMESTAMP, start.timestamp()), less_than(TIMESTAMP, end.timestamp())
    )


FilePredicate = Callable[[Table, DataFile], bool]


def _plan(
    table: Table, where: BooleanExpression, only: FilePredicate | None
) -> dict[tuple[object, ...], list[FileScanTask]]:
    groups: dict[tuple[object, ...], list[FileScanTask]] = defaultdict(list)
    for task in table.scan(row_filter=where).plan_files():
        if only is None or only(table, task.file):
            groups[(task.file.spec_id, *task.file.partition)].append(task)  # type: ignore[misc]
    return groups


def _read(table: Table, tasks: list[FileScanTask]) -> pa.Table:
    """The rows of these files, projected onto the current schema (older files may lack newer
    columns), every row: no filter, whatever the scan that planned them matched."""
    whole = [FileScanTask(t.file, delete_files=t.delete_files) for t in tasks]
    return ArrowScan(table.metadata, table.io, table.schema(), row_filter=AlwaysTrue()).to_table(whole)


def compact(
    load_table: Callable[[], Table],
    where: BooleanExpression,
    label: str,
    only: FilePredicate | None = None,
    max_attempts: int = 6,
    base_backoff_s: float = 0.2,
    min_files: int = 2,
) -> CompactionResult:
    """Rewrite the files that `where` plans (those `only` accepts), partition by partition,
    where a partition has at least `min_files`: into one sorted file (split only past the
    target file size), all in one commit, re-planned from the fresh table if it loses a race."""
    written: list[DataFile] = []

    def attempt(number: int) -> CompactionResult | None:
        nonlocal written
        table = without_library_retries(load_table())
        delete_files(table, written)  # files of a plan that lost the race
        written = []
        groups = _plan(table, where, only)
        todo = {
            key: tasks
            for key, tasks in groups.items()
            if len(tasks) >= max(2, min_files) and not any(t.delete_files for t in tasks)
        }
        if not todo:
            return CompactionResult(label, len(groups), 0, 0, 0, 0, None, number)
        old: list[DataFile] = [t.file for tasks in todo.values() for t in tasks]
        rows = 0
        for tasks in todo.values():
            data = sort_for_table(_read(table, tasks))
            rows += data.num_rows
            written.extend(write_data_files(table, data).data_files)
        tx = table.transaction()
        summary = {SUMMARY_MAINTENANCE: "compact", SUMMARY_MONTH: label}
        with tx.update_snapshot(snapshot_properties=summary).overwrite() as rewrite:
            for data_file in old:
                rewrite.delete_data_file(data_file)
            for data_file in written:
                rewrite.append_data_file(data_file)
        tx.commit_transaction()
        snapshot = load_table().current_snapshot()
        snapshot_id = snapshot.snapshot_id if snapshot else None
        return CompactionResult(
            label, len(groups), len(todo), len(old), len(written), rows, snapshot_id, number
        )

    return commit_with_retries(
        attempt,
        f"compacting {label}",
        max_attempts,
        base_backoff_s,
        give_up=lambda: delete_files(load_table(), written),
        error=CompactionConflictError,
    )


def compact_month(
    load_table: Callable[[], Table], year: int, month: int, max_attempts: int = 6, base_backoff_s: float = 0.2
) -> CompactionResult:
    """Every partition of the month with more than one data file, as one sorted file."""
    return compact(
        load_table,
        month_filter(year, month),
        f"{year:04d}-{month:02d}",
        max_attempts=max_attempts,
        base_backoff_s=base_backoff_s,
    )


def holds_only(day: dt.date) -> FilePredicate:
    """Files whose rows all lie in `day` (full timestamp bounds)."""
    start, end = Day(day).bounds

    def accepts(table: Table, data_file: DataFile) -> bool:
        return rows_within(data_file, table.schema().find_field(TIMESTAMP).field_id, start, end)

    return accepts


def compact_day(
    load_table: Callable[[], Table], day: dt.date, max_attempts: int = 6, base_backoff_s: float = 0.2
) -> CompactionResult:
    """A closed day's files, one per partition: each incremental commit of the day added at
    most one file to every partition it touched; files holding other days are left alone."""
    return compact(
        load_table,
        day_filter(Day(day)),
        day.isoformat(),
        holds_only(day),
        max_attempts=max_attempts,
        base_backoff_s=base_backoff_s,
    )


# The open day's rolling rule: a partition of a day holding more data files than this is
# compacted by the run that added the last one, so a partition of the open day holds at most
# this many files (and the P0 query of today plans at most this many per workflow).
OPEN_DAY_MAX_FILES = 16


def compact_crowded(
    load_table: Callable[[], Table],
    day: dt.date,
    workflows: Collection[str],
    max_files: int = OPEN_DAY_MAX_FILES,
) -> CompactionResult:
    """Once a partition of `workflows` holds more than `max_files` data files of the day, every
    partition of the day holding at least half as many is rewritten as one file (rows and
    lineage unchanged), in one commit: the open day, committed all day, keeps a bounded number
    of files per partition, and most runs commit no compaction at all (batched, not one
    compaction commit per run). Plans only `workflows`' partitions unless it compacts."""
    label = day.isoformat()
    touched = And(day_filter(Day(day)), is_in(WORKFLOW_NAME, sorted(workflows)))
    groups = _plan(load_table(), touched, holds_only(day))
    if all(len(tasks) <= max_files for tasks in groups.values()):
        return CompactionResult(label, len(groups), 0, 0, 0, 0, None, 0)
    return compact(load_table, day_filter(Day(day)), label, holds_only(day), min_files=max(2, max_files // 2))


@dataclass(frozen=True)
class OrphanCleanup:
    files: int  # files removed from the table's data and metadata folders, referenced by no snapshot
    bytes: int
    too_recent: int  # unreferenced files left because they are newer than the window


def _reachable(table: Table, snapshots: list[Snapshot], skip: set[str] | None = None) -> set[str]:
    """Locations of the manifest lists, manifests, data files and day state files these
    snapshots reference (each manifest read once; those in `skip` not read)."""
    paths: set[str] = set()
    manifests: dict[str, ManifestFile] = {}
    for snapshot in snapshots:
        paths.add(snapshot.manifest_list)
        if snapshot.summary is not None and (state := snapshot.summary.get(SUMMARY_DAY_STATE)):
            paths.add(state)
        for manifest in snapshot.manifests(table.io):
            manifests.setdefault(manifest.manifest_path, manifest)
    for path, manifest in manifests.items():
        paths.add(path)
        if skip is not None and path in skip:
            continue
        for entry in manifest.fetch_manifest_entry(table.io, discard_deleted=False):
            paths.add(entry.data_file.file_path)
    return paths


def referenced_files(table: Table) -> set[str]:
    """Paths (in the table's filesystem) of every data file, manifest, manifest list and day
    state file that any snapshot of the table references."""
    return {arrow_filesystem(table.io, p)[1] for p in _reachable(table, table.snapshots())}


# what orphan cleanup may delete under metadata/: manifests and manifest lists (never a
# metadata.json, which the catalog and `write.metadata.delete-after-commit` manage)
_METADATA_ORPHANS = (".avro",)


def remove_orphan_files(table: Table, older_than: dt.datetime) -> OrphanCleanup:
    """Delete the files of the table's folder that no snapshot references and that were last
    modified before `older_than` (Iceberg's `remove_orphan_files`): data files of runs killed
    before their commit, and the manifests, manifest lists, data and day state files that
    snapshot expiry left behind. Newer files may belong to a run still committing: they stay."""
    location = table.location().rstrip("/")
    referenced = referenced_files(table)
    removed = size = recent = 0
    for folder, suffixes in ((f"{location}/data", None), (f"{location}/metadata", _METADATA_ORPHANS)):
        filesystem, root = arrow_filesystem(table.io, folder)
        selector = pafs.FileSelector(root, recursive=True, allow_not_found=True)
        for info in filesystem.get_file_info(selector):
            if info.type != pafs.FileType.File or info.path in referenced:
                continue
            if suffixes is not None and not info.path.endswith(suffixes):
                continue
            if info.mtime is not None and info.mtime >= older_than:
                recent += 1
                continue
            filesystem.delete_file(info.path)
            removed, size = removed + 1, size + (info.size or 0)
    return OrphanCleanup(removed, size, recent)


def expire_by_policy(table: Table, now: dt.datetime) -> int:
    """Expire the snapshots the table's own retention properties call old
    (`history.expire.max-snapshot-age-ms`, keeping `history.expire.min-snapshots-to-keep`, the
    current one and every branch or tag head), then delete the files only they referenced
    (manifest lists, manifests, data files, day state files), as Iceberg's ExpireSnapshots
    does; returns how many. Called after every commit of a day, it expires in batches: only
    once the oldest snapshot is a sixth of the window past it, so that most runs read the
    properties and do nothing else."""
    properties = table.properties
    max_age_ms = property_as_int(
        properties, TableProperties.MAX_SNAPSHOT_AGE_MS, TableProperties.MAX_SNAPSHOT_AGE_MS_DEFAULT
    )
    max_age_ms = max_age_ms or TableProperties.MAX_SNAPSHOT_AGE_MS_DEFAULT
    keep_at_least = max(1, property_as_int(properties, MIN_SNAPSHOTS_TO_KEEP, 1) or 1)
    snapshots = sorted(table.snapshots(), key=lambda s: s.timestamp_ms)
    cutoff = now.timestamp() * 1000 - max_age_ms
    if len(snapshots) <= keep_at_least or snapshots[0].timestamp_ms >= cutoff - max_age_ms / 6:
        return 0
    current = table.current_snapshot()
    protected = {ref.snapshot_id for ref in table.metadata.refs.values()}
    protected |= {s.snapshot_id for s in snapshots[-keep_at_least:]}
    if current is not None:
        protected.add(current.snapshot_id)
    old = [s for s in snapshots if s.timestamp_ms < cutoff and s.snapshot_id not in protected]
    if not old:
        return 0
    kept = [s for s in snapshots if s not in old]
    still = _reachable(table, kept)
    # what only the expired snapshots reference (a manifest both reference is read once)
    unreferenced = _reachable(table, old, skip=still) - still
    table.maintenance.expire_snapshots().by_ids([s.snapshot_id for s in old]).commit()
    for location in sorted(unreferenced):  # as Iceberg's ExpireSnapshots does, once committed
        with contextlib.suppress(OSError):  # an orphan at worst: the orphan cleanup removes it
            table.io.delete(location)
    return len(old)


def expire_snapshots(table: Table, older_than: dt.datetime) -> int:
    """Expire snapshots older than `older_than` (never the current one); returns how many."""
    current = table.current_snapshot()
    old = [
        s.snapshot_id
        for s in table.snapshots()
        if s.timestamp_ms < older_than.timestamp() * 1000
        and (current is None or s.snapshot_id != current.snapshot_id)
    ]
    if old:
        table.maintenance.expire_snapshots().by_ids(old).commit()
    return len(old)


def manifest_count(table: Table) -> int:
    """Manifests of the current snapshot (merged at commit: `commit.manifest-merge.enabled`)."""
    snapshot = table.current_snapshot()
    return len(snapshot.manifests(table.io)) if snapshot is not None else 0
