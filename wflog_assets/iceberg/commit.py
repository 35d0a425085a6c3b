"""One Iceberg commit per day: the day's data files, its state file and its checkpoint
(day, manifest digest, rows) in the same atomic snapshot, re-planned against the fresh table
when a concurrent commit lands first (`plan.py` makes the plan).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.exceptions import CommitFailedException, CommitStateUnknownException
from pyiceberg.expressions import And
from pyiceberg.manifest import DataFile
from pyiceberg.table import Table, TableProperties
from pyiceberg.table.snapshots import Snapshot, ancestors_of

from wflog_assets.iceberg import data_files as day_writer
from wflog_assets.iceberg._compat import check_pyarrow_schema_compatible, property_as_bool
from wflog_assets.iceberg.checkpoint import (
    SUMMARY_DAY,
    SUMMARY_DAY_STATE,
    CommittedDay,
    write_state,
)
from wflog_assets.iceberg.data_files import WrittenFiles
from wflog_assets.iceberg.expressions import is_in
from wflog_assets.iceberg.plan import (
    SUMMARY_DAY_ROWS,
    SUMMARY_DIGEST,
    SUMMARY_SOURCE_FILES,
    DayPlan,
    ReadPlan,
    committed_state,
    current_snapshot_id,
    day_filter,
    last_day_snapshot,
    plan_day,
    summary_int,
    summary_value,
)
from wflog_assets.iceberg.retry import commit_with_retries, without_library_retries
from wflog_assets.iceberg.runs import MemoryRun, SortedRun
from wflog_assets.iceberg.schema import (
    SOURCE_FILE,
)
from wflog_assets.manifest import Manifest
from wflog_assets.phases import PhaseTimes


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
            and planned.snapshot_id == current_snapshot_id(table)
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
        files_written += summary_int(snapshot, "added-data-files")
        records_deleted += summary_int(snapshot, "deleted-records")
        records_added += summary_int(snapshot, "added-records")
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
