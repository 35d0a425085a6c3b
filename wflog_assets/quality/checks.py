"""Per-day checks of the table after a commit, with their evidence (no Dagster here).

ERROR checks say the table is wrong for the day; WARN checks say the source had bad input
that was kept out of the table (it is in the quarantine table) or looks suspicious.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.expressions import AlwaysTrue, And
from pyiceberg.manifest import DataFile
from pyiceberg.table import FileScanTask, Table
from pyiceberg.types import DoubleType, StringType

from wflog_assets.day import Day, utc_text
from wflog_assets.iceberg._compat import ArrowScan, from_bytes, schema_to_pyarrow
from wflog_assets.iceberg.expressions import is_in, starts_with
from wflog_assets.iceberg.plan import day_filter, rows_within
from wflog_assets.iceberg.runs import MemoryRun, SortedRun, partition_blocks
from wflog_assets.iceberg.schema import (
    LAYOUTS,
    MONTH,
    SORT_ORDER,
    SOURCE_FILE,
    TABLE_SCHEMA,
    TIMESTAMP,
    WORKFLOW_NAME,
    WORKFLOW_NODE,
)
from wflog_assets.quality.quarantine import StagedDay
from wflog_assets.quality.rules import no_workflow_name, outside_day
from wflog_assets.source.routing import neighbours

ERROR = "ERROR"
WARN = "WARN"
DUPLICATE_KEY: tuple[str, ...] = (TIMESTAMP, WORKFLOW_NAME, WORKFLOW_NODE, "level", "logger_name", "message")
EXAMPLES = 10


@dataclass(frozen=True)
class CheckOutcome:
    name: str
    passed: bool
    severity: str
    description: str
    metadata: dict[str, Any] = field(default_factory=dict)


CHECKS: dict[str, tuple[str, str]] = {
    "row_count_parity": (ERROR, "Rows in the table for the day = rows accepted from its files."),
    "no_null_workflow_names": (ERROR, "No row of the day lacks a workflow name."),
    "timestamps_inside_day": (
        ERROR,
        "Every row from the day's folder lies in the UTC day or a neighbouring one (a writer's time zone).",
    ),
    "schema_as_declared": (ERROR, "Schema, partition spec and sort order are the declared ones."),
    "source_fully_ingested": (WARN, "No file, line or row of the day was rejected or quarantined."),
    "no_duplicate_rows": (
        WARN,
        "No identical log row comes from two different files among those this run wrote "
        "(a copy of an earlier run's file is not looked for: rows_judged says how many).",
    ),
}


def _outcome(name: str, passed: bool, **metadata: object) -> CheckOutcome:
    severity, description = CHECKS[name]
    return CheckOutcome(name, passed, severity, description, metadata)


@dataclass
class _DayFacts:
    rows: int = 0
    null_names: int = 0
    outside: int = 0
    min_ts: float | None = None
    max_ts: float | None = None

    def widen(self, low: float, high: float) -> None:
        """Take rows whose timestamps span [low, high] into the day's range."""
        self.min_ts = low if self.min_ts is None else min(self.min_ts, low)
        self.max_ts = high if self.max_ts is None else max(self.max_ts, high)


def _day_facts(table: Table, day: Day) -> _DayFacts:
    """Counts over the day's rows in the table, in bounded memory.

    A data file whose rows all lie in the day (its timestamp bounds; every file a day's commit
    writes) is counted from its column statistics: record count, null counts, timestamp and
    name bounds. Any other file (compacted with other days) is read, one batch at a time.
    `outside` counts the rows of the day's folder's files that lie outside both the day and
    its neighbours (`_folder_outside`).
    """
    schema = table.schema()
    ids = {name: schema.find_field(name).field_id for name in (WORKFLOW_NAME, TIMESTAMP)}
    start, end = day.bounds
    facts = _DayFacts()
    to_read: list[FileScanTask] = [  # the files whose statistics cannot answer for them
        task
        for task in table.scan(row_filter=day_filter(day)).plan_files()
        if not _count_from_statistics(task.file, ids, start, end, facts)
    ]
    projected = schema.select(WORKFLOW_NAME, TIMESTAMP)
    scan = ArrowScan(table.metadata, table.io, projected, row_filter=day_filter(day))
    for task in to_read:
        for batch in scan.to_record_batches([task]):
            _count_batch(batch, facts)
    facts.outside = _folder_outside(table, day)
    return facts


def _run_facts(table: Table, day: Day, written: list[DataFile]) -> _DayFacts:
    """Counts over the rows a run's commit added (its data files), as `_day_facts` counts a
    day: from statistics where they tell (every file a day's commit writes), else read.
    `outside` counts the rows outside the day and both its neighbours."""
    schema = table.schema()
    ids = {name: schema.find_field(name).field_id for name in (WORKFLOW_NAME, TIMESTAMP)}
    start, end = day.bounds
    before, after = neighbours(day)
    low, high = before.start, after.bounds[1]
    scan = ArrowScan(table.metadata, table.io, schema.select(WORKFLOW_NAME, TIMESTAMP), AlwaysTrue())
    facts = _DayFacts()
    for data_file in written:
        if _count_from_statistics(data_file, ids, start, end, facts):
            continue
        for batch in scan.to_record_batches([FileScanTask(data_file)]):
            _count_batch(batch, facts)
            facts.outside += pc.sum(outside_day(batch.column(TIMESTAMP), low, high)).as_py() or 0
    return facts


def _folder_outside(table: Table, day: Day) -> int:
    """Rows of the day's folder's files that lie outside the day and both its neighbours (the
    farthest a writer's time zone can file a record): none, if routing and the quarantine work.
    Files whose statistics show only this folder's keys inside that window are not read."""
    schema = table.schema()
    file_id, ts_id = schema.find_field(SOURCE_FILE).field_id, schema.find_field(TIMESTAMP).field_id
    before, after = neighbours(day)
    low, high = before.start, after.bounds[1]
    # its rows lie in its day or a neighbour (or are counted here): only those months' manifests
    months = sorted({before.month, day.month, after.month})
    where = And(is_in(MONTH, months), starts_with(SOURCE_FILE, day.prefix))
    scan = ArrowScan(table.metadata, table.io, schema.select(SOURCE_FILE, TIMESTAMP), row_filter=where)
    outside = 0
    for task in table.scan(row_filter=where).plan_files():
        data_file = task.file
        first = _bound(data_file.lower_bounds, file_id, StringType())
        last = _bound(data_file.upper_bounds, file_id, StringType())
        if (
            isinstance(first, str)
            and isinstance(last, str)
            and first.startswith(day.prefix)
            and last.startswith(day.prefix)
            and rows_within(data_file, ts_id, low, high)
        ):
            continue
        for batch in scan.to_record_batches([task]):
            outside += pc.sum(outside_day(batch.column(TIMESTAMP), low, high)).as_py() or 0
    return outside


def _bound(bounds: dict[int, bytes] | None, field_id: int, type_: object) -> Any:
    raw = (bounds or {}).get(field_id)
    return None if raw is None else from_bytes(type_, raw)  # type: ignore[arg-type]


def _count_from_statistics(
    data_file: DataFile, ids: dict[str, int], start: float, end: float, facts: _DayFacts
) -> bool:
    """Add a whole-day file's facts from its statistics; False if they cannot tell."""
    lower, upper = data_file.lower_bounds, data_file.upper_bounds
    nulls = data_file.null_value_counts or {}
    name_low = _bound(lower, ids[WORKFLOW_NAME], StringType())
    ts_low = _bound(lower, ids[TIMESTAMP], DoubleType())
    ts_high = _bound(upper, ids[TIMESTAMP], DoubleType())
    if name_low is None or ts_low is None or ts_high is None:
        return False
    if not str(name_low) or str(name_low)[0] <= " ":  # may hold blank names: read the file
        return False
    if not rows_within(data_file, ids[TIMESTAMP], start, end):
        return False  # rows of other days too: read the file, filtered to the day
    facts.rows += data_file.record_count
    facts.null_names += nulls.get(ids[WORKFLOW_NAME], 0)
    facts.widen(float(ts_low), float(ts_high))
    return True


def _count_batch(batch: pa.RecordBatch, facts: _DayFacts) -> None:
    if batch.num_rows == 0:
        return
    names, ts = batch.column(WORKFLOW_NAME), batch.column(TIMESTAMP)
    facts.rows += batch.num_rows
    facts.null_names += pc.sum(no_workflow_name(names)).as_py() or 0
    bounds = pc.min_max(ts).as_py()
    if bounds["min"] is not None:
        facts.widen(bounds["min"], bounds["max"])


def _layout_matches(table: Table, layout: str) -> dict[str, object]:
    schema = table.schema()
    declared = schema_to_pyarrow(TABLE_SCHEMA, include_field_ids=False)
    actual = schema_to_pyarrow(schema, include_field_ids=False)
    spec = [(schema.find_column_name(f.source_id), str(f.transform)) for f in table.spec().fields]
    want_spec = [
        (TABLE_SCHEMA.find_column_name(f.source_id), str(f.transform)) for f in LAYOUTS[layout].fields
    ]
    order = [
        (schema.find_column_name(f.source_id), str(f.direction), str(f.null_order))
        for f in table.sort_order().fields
    ]
    want_order = [
        (TABLE_SCHEMA.find_column_name(f.source_id), str(f.direction), str(f.null_order))
        for f in SORT_ORDER.fields
    ]
    return {
        "schema_matches": actual.equals(declared),
        "missing_columns": [n for n in declared.names if n not in actual.names],
        "extra_columns": [n for n in actual.names if n not in declared.names],
        "partition_spec": [f"{t}({c})" for c, t in spec],
        "expected_partition_spec": [f"{t}({c})" for c, t in want_spec],
        "sort_order": [" ".join(x for x in o if x) for o in order],
        "expected_sort_order": [" ".join(x for x in o if x) for o in want_order],
    }


class DuplicateFinder:
    """Rows whose DUPLICATE_KEY also occurs in another file, fed block by block.

    Blocks come from the merge (`partition_blocks`): ordered by timestamp DESC, with every row
    of a timestamp in one block. Rows sharing a DUPLICATE_KEY share the timestamp, so only rows
    whose timestamp repeats within the block are grouped (most timestamps are unique).
    """

    def __init__(self) -> None:
        self.rows = 0
        self.copies = 0
        self.examples: list[dict[str, object]] = []

    def add(self, block: pa.Table) -> None:
        self.rows += block.num_rows
        if block.num_rows < 2:
            return
        ts = block.column(TIMESTAMP).combine_chunks()
        same = pc.equal(ts.slice(1), ts.slice(0, len(ts) - 1))  # ts[i + 1] == ts[i]
        if not pc.any(same).as_py():
            return
        false = pa.array([False])
        tied = pc.or_(pa.concat_arrays([same, false]), pa.concat_arrays([false, same]))
        keys = block.filter(pc.fill_null(tied, False)).select([*DUPLICATE_KEY, SOURCE_FILE])
        groups = keys.group_by(list(DUPLICATE_KEY), use_threads=False).aggregate(
            [(SOURCE_FILE, "count_distinct"), (SOURCE_FILE, "count"), (SOURCE_FILE, "distinct")]
        )
        dup = groups.filter(pc.greater(groups.column(f"{SOURCE_FILE}_count_distinct"), 1))
        if dup.num_rows == 0:
            return
        self.copies += pc.sum(pc.subtract(dup.column(f"{SOURCE_FILE}_count"), 1)).as_py() or 0
        self.examples.extend(
            {
                "timestamp": r[TIMESTAMP],
                "workflow": r[WORKFLOW_NAME],
                "message": (r["message"] or "")[:200],
                "files": sorted(r[f"{SOURCE_FILE}_distinct"]),
            }
            for r in dup.slice(0, max(0, EXAMPLES - len(self.examples))).to_pylist()
        )


def duplicate_rows(good: pa.Table | list[SortedRun]) -> tuple[int, list[dict[str, object]]]:
    """(extra copies, examples) of rows that also occur in another file of the day."""
    finder = DuplicateFinder()
    if isinstance(good, pa.Table):
        runs: list[SortedRun] = [MemoryRun.of(good, LAYOUTS["wf_month"], TABLE_SCHEMA)]
    else:
        runs = good
    for _, block in partition_blocks(runs):
        finder.add(block)
    return int(finder.copies), finder.examples


def _source_fully_ingested(kept: StagedDay) -> CheckOutcome:
    """Nothing of the day kept out: the evidence is what was, by reason and by file."""
    quarantined = kept.quarantined
    by_reason: dict[str, int] = {}
    for r in quarantined.to_pylist():
        reason = (
            r["quarantine_reason"].split(":", 1)[0]
            if r["quarantine_reason"].startswith(("file:", "line "))
            else r["quarantine_reason"]
        )
        reason = "bad line" if reason.startswith("line ") else reason
        by_reason[reason] = by_reason.get(reason, 0) + r["rows"]
    return _outcome(
        "source_fully_ingested",
        quarantined.num_rows == 0,
        rejected_files=[
            {"key": f.key, "reason": f.reason[:300]} for f in kept.rejected_files[: EXAMPLES * 10]
        ],
        quarantined_by_reason=by_reason,
        quarantine=[
            {k: (v[:300] if isinstance(v, str) else v) for k, v in r.items()}
            for r in quarantined.slice(0, EXAMPLES * 10).to_pylist()
        ],
    )


def _scoped(outcomes: list[CheckOutcome], scope: str) -> list[CheckOutcome]:
    """The outcomes with the scope they judged (`run` or `day`) first in their metadata."""
    return [
        CheckOutcome(o.name, o.passed, o.severity, o.description, {"scope": scope, **o.metadata})
        for o in outcomes
    ]


def day_checks(
    table: Table,
    day: str,
    staged: StagedDay,
    good: pa.Table | list[SortedRun],
    layout: str = "wf_month",
    seen: DuplicateFinder | None = None,
    expected_rows: int | None = -1,
    kept: StagedDay | None = None,
    written: list[DataFile] | None = None,
) -> list[CheckOutcome]:
    """The six checks for one day, after its commit.

    Scope (metadata `scope`): the whole `day` as the table holds it, or, with `written` (the
    data files the run's commit added), the `run`: parity, names and timestamps are judged on
    those files alone (their statistics: no scan of the day), `expected_rows` being the rows
    accepted from the files it wrote. The open day, committed all day, is judged run by run.

    `seen`: a finder that was fed the day's good rows (by the write); without it, or if it saw
    a different number of rows (a partial or repeated write), `good` is read once more.
    `expected_rows`: the rows the day must hold (a run that read only some of the day's files:
    the other files' rows plus those accepted from the files it wrote; None when unknown);
    by default, the rows accepted from the staged files (a run that read every file).
    `kept`: what the quarantine holds for the whole day (`quarantine.day_quarantine`), which
    `source_fully_ingested` judges; by default what this staging kept out. Duplicates are
    looked for among the rows this run staged.
    """
    the_day = Day.parse(day)
    scope = "day" if written is None else "run"
    facts = _day_facts(table, the_day) if written is None else _run_facts(table, the_day, written)
    null_names, outside = facts.null_names, facts.outside
    bounds = {"min": facts.min_ts, "max": facts.max_ts}
    layout_facts = _layout_matches(table, layout)
    kept = kept or staged
    quarantined = kept.quarantined
    expected = staged.accepted_rows if expected_rows == -1 else expected_rows
    if seen is not None and seen.rows == staged.accepted_rows:
        copies, examples = int(seen.copies), seen.examples
    else:
        copies, examples = duplicate_rows(good)
    outcomes = [
        _outcome(
            "row_count_parity",
            expected is None or facts.rows == expected,
            table_rows=facts.rows,
            expected_rows=expected,
            accepted_rows=staged.accepted_rows,
            quarantined_records=int(pc.sum(quarantined.column("rows")).as_py() or 0),
        ),
        _outcome("no_null_workflow_names", null_names == 0, rows_without_name=int(null_names)),
        _outcome(
            "timestamps_inside_day",
            outside == 0,
            rows_outside_day=int(outside),
            day_start=utc_text(the_day.bounds[0]),
            day_end=utc_text(the_day.bounds[1]),
            window_start=utc_text(neighbours(the_day)[0].start),
            window_end=utc_text(neighbours(the_day)[1].bounds[1]),
            min_timestamp=utc_text(bounds["min"]),
            max_timestamp=utc_text(bounds["max"]),
        ),
        _outcome(
            "schema_as_declared",
            bool(layout_facts["schema_matches"])
            and layout_facts["partition_spec"] == layout_facts["expected_partition_spec"]
            and layout_facts["sort_order"] == layout_facts["expected_sort_order"],
            **layout_facts,
        ),
        _source_fully_ingested(kept),
        _outcome(
            "no_duplicate_rows",
            copies == 0,
            duplicate_copies=copies,
            examples=examples,
            rows_judged=staged.accepted_rows,
        ),
    ]
    return _scoped(outcomes, scope)
