"""Bad input: rows and files that do not go into the table, and where they go instead.

Nothing is dropped without a record. The staged batch of a day carries every row read, plus
one record per file or line that could not be read, each with `quarantine_reason` (null for a
good row). `workflow_logs` commits the good rows and writes the rest to the quarantine table
`<table>_quarantine` (the table's columns + `quarantine_day` + `quarantine_reason`), replacing
that day's quarantine in one commit, so a re-run never duplicates it.

Row rules (vectorized; the UTF-8 repair runs only for a column that fails validation):
- no workflow name (null or empty after the fallbacks)   -> quarantined
- timestamp NaN, infinite or not in seconds             -> quarantined
- timestamp outside the partition's UTC day              -> quarantined, unless a neighbouring
  day's run takes the row (`source.routing`: a writer pod's local day filed it next door)
- invalid UTF-8 in a text column                         -> quarantined, bytes kept as `\\xNN`
File and line rules (`source.read_manifest`, `jsonlines`):
- unreadable / truncated / garbage Parquet, zero bytes, uncastable or missing columns
                                                         -> one record for the file
- a JSON line that is not JSON, has no timestamp, ...    -> one record for the line
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.catalog import Catalog
from pyiceberg.expressions import And, BooleanExpression
from pyiceberg.schema import Schema
from pyiceberg.table import Table
from pyiceberg.types import NestedField, StringType

from wflog_assets.day import Day
from wflog_assets.iceberg._compat import schema_to_pyarrow
from wflog_assets.iceberg.catalogs import open_or_create
from wflog_assets.iceberg.expressions import equal, is_in
from wflog_assets.iceberg.plan import current_snapshot_id
from wflog_assets.iceberg.schema import (
    ARROW_SCHEMA,
    SOURCE_ETAG,
    SOURCE_FILE,
    TABLE_SCHEMA,
    TIMESTAMP,
    WORKFLOW_NAME,
    sort_for_table,
)
from wflog_assets.manifest import Manifest
from wflog_assets.quality.rules import no_workflow_name, not_unix_seconds, outside_day
from wflog_assets.source.reading import DayRead
from wflog_assets.source.rejects import FileReject, LineIssue
from wflog_assets.source.routing import taken_elsewhere

QUARANTINE_REASON = "quarantine_reason"
QUARANTINE_DAY = "quarantine_day"
QUARANTINE_SUFFIX = "_quarantine"
_STRING = pa.large_string()

STAGED_SCHEMA: pa.Schema = ARROW_SCHEMA.append(pa.field(QUARANTINE_REASON, _STRING))
QUARANTINE_SCHEMA = Schema(
    *TABLE_SCHEMA.fields,
    NestedField(
        300,
        QUARANTINE_DAY,
        StringType(),
        required=False,
        doc="the day partition whose run kept the row out",
    ),
    NestedField(
        301,
        QUARANTINE_REASON,
        StringType(),
        required=False,
        doc="why the row (or the file / line it stands for) is not in the table",
    ),
)

NO_WORKFLOW_NAME = "no workflow name"
OUTSIDE_DAY = "timestamp outside the day"
NOT_UNIX_SECONDS = "timestamp is not Unix seconds (NaN, infinite, or milliseconds/nanoseconds)"
INVALID_UTF8 = "invalid UTF-8"


def _first_reason(reasons: Sequence[pa.Array]) -> pa.Array:
    out = reasons[0]
    for reason in reasons[1:]:
        out = pc.coalesce(out, reason)
    return out


def _utf8_repair(values: pa.Array) -> tuple[pa.Array, pa.Array | None]:
    """Text with invalid UTF-8 escaped as `\\xNN`, and which elements had it (None: none)."""
    try:
        values.validate(full=True)
        return values, None
    except pa.ArrowInvalid:
        pass
    raw = values.view(pa.large_binary() if pa.types.is_large_string(values.type) else pa.binary())
    fixed, bad = [], []
    for value in raw.to_pylist():
        text = None if value is None else value.decode("utf-8", "backslashreplace")
        fixed.append(text)
        bad.append(text is not None and text.encode("utf-8") != value)
    return pa.array(fixed, values.type), pa.array(bad, pa.bool_())


def _text_columns(schema: pa.Schema) -> list[str]:
    return [f.name for f in schema if pa.types.is_large_string(f.type) or pa.types.is_string(f.type)]


def screen_rows(rows: pa.Table, day: Day) -> pa.Table:
    """`rows` (table schema) with `quarantine_reason`: null for a good row."""
    n = rows.num_rows
    nothing = pa.nulls(n, _STRING)
    reasons: list[pa.Array] = []
    # invalid UTF-8 first: every other check reads text
    if n:
        try:
            rows.validate(full=True)
        except pa.ArrowInvalid:
            rows, utf8 = _repair_table(rows)
            reasons.append(
                pc.if_else(utf8, pa.scalar(f"{INVALID_UTF8} (bytes kept as \\xNN)", _STRING), nothing)
            )
    missing = no_workflow_name(rows.column(WORKFLOW_NAME))
    reasons.append(pc.if_else(missing, pa.scalar(NO_WORKFLOW_NAME, _STRING), nothing))
    implausible = not_unix_seconds(rows.column(TIMESTAMP))
    reasons.append(pc.if_else(implausible, pa.scalar(NOT_UNIX_SECONDS, _STRING), nothing))
    outside = outside_day(rows.column(TIMESTAMP), *day.bounds)
    reasons.append(pc.if_else(outside, pa.scalar(f"{OUTSIDE_DAY} {day.key} (UTC)", _STRING), nothing))
    reason = _first_reason(reasons) if n else pa.array([], _STRING)
    return rows.append_column(pa.field(QUARANTINE_REASON, _STRING), reason)


def _repair_table(rows: pa.Table) -> tuple[pa.Table, pa.Array]:
    """Escape invalid UTF-8 in every text column (top level, `extra` children, `extra_other`)."""
    rows = rows.combine_chunks()
    bad = pa.repeat(pa.scalar(False), rows.num_rows)

    def replace(name: str, array: pa.Array) -> None:
        nonlocal rows
        rows = rows.set_column(rows.schema.get_field_index(name), name, array)

    for name in _text_columns(rows.schema):
        fixed, rows_bad = _utf8_repair(rows.column(name).chunk(0))
        if rows_bad is not None:
            replace(name, fixed)
            bad = pc.or_(bad, rows_bad)
    extra = rows.column("extra").chunk(0)
    children = [_utf8_repair(pc.struct_field(extra, [i])) for i in range(extra.type.num_fields)]
    if any(rows_bad is not None for _, rows_bad in children):
        replace(
            "extra",
            pa.StructArray.from_arrays(
                [fixed for fixed, _ in children], fields=list(extra.type), mask=pc.is_null(extra)
            ),
        )
        for _, rows_bad in children:
            if rows_bad is not None:
                bad = pc.or_(bad, rows_bad)
    other = rows.column("extra_other").chunk(0)
    keys, keys_bad = _utf8_repair(other.keys)
    items, items_bad = _utf8_repair(other.items)
    if keys_bad is not None or items_bad is not None:
        replace(
            "extra_other",
            pa.MapArray.from_arrays(other.offsets, keys, items, type=other.type, mask=pc.is_null(other)),
        )
        element_bad = pc.or_(
            keys_bad if keys_bad is not None else pa.repeat(False, len(keys)),
            items_bad if items_bad is not None else pa.repeat(False, len(items)),
        )
        parents = pc.list_parent_indices(other).filter(element_bad)
        bad = pc.or_(
            bad, pc.is_in(pa.array(range(rows.num_rows), pa.int64()), value_set=pc.cast(parents, pa.int64()))
        )
    return rows, bad


def record_rows(records: Sequence[tuple[str, str, str]]) -> pa.Table:
    """One staged record per (key, etag, reason) for a file or line that gave no rows."""
    n = len(records)
    columns = {f.name: pa.nulls(n, f.type) for f in STAGED_SCHEMA}
    columns[SOURCE_FILE] = pa.array([r[0] for r in records], _STRING)
    columns[SOURCE_ETAG] = pa.array([r[1] for r in records], _STRING)
    columns[QUARANTINE_REASON] = pa.array([r[2] for r in records], _STRING)
    return pa.Table.from_pydict(columns, schema=STAGED_SCHEMA)


def split_staged(staged: pa.Table) -> tuple[pa.Table, pa.Table]:
    """(good rows in the table schema, quarantined records with their reason)."""
    if QUARANTINE_REASON not in staged.column_names:  # staged before quarantine existed
        return staged, STAGED_SCHEMA.empty_table()
    reason = staged.column(QUARANTINE_REASON)
    if reason.null_count == len(reason):  # nothing kept out: no copy of the rows
        return staged.drop_columns([QUARANTINE_REASON]), staged.schema.empty_table()
    good = staged.filter(pc.is_null(reason)).drop_columns([QUARANTINE_REASON])
    return good, staged.filter(pc.is_valid(reason))


def ensure_quarantine_table(catalog: Catalog, identifier: str) -> Table:
    return open_or_create(catalog, identifier, schema=QUARANTINE_SCHEMA)


def write_quarantine(
    table: Table, day: str, quarantined: pa.Table, files: Collection[str] | None = None
) -> int | None:
    """Replace the day's quarantine records of `files` (default: of every file of the day) with
    `quarantined`, in one commit; None if nothing to do."""
    where: BooleanExpression = equal(QUARANTINE_DAY, day)
    if files is not None:
        if not files:
            return None
        where = And(where, is_in(SOURCE_FILE, sorted(files)))
    existing = table.scan(row_filter=where, selected_fields=(QUARANTINE_DAY,)).to_arrow().num_rows
    if existing == 0 and quarantined.num_rows == 0:
        return None
    rows = quarantined.append_column(
        pa.field(QUARANTINE_DAY, _STRING), pa.repeat(pa.scalar(day, _STRING), quarantined.num_rows)
    )
    target = schema_to_pyarrow(QUARANTINE_SCHEMA, include_field_ids=False)
    rows = rows.select(target.names).cast(target)
    if existing:
        table.overwrite(rows, overwrite_filter=where, snapshot_properties={"wflog.day": day})
    else:
        table.append(rows, snapshot_properties={"wflog.day": day})
    return current_snapshot_id(table)


def day_quarantine(table: Table, day: str) -> pa.Table:
    """Every record the quarantine holds for a day (whichever run kept it out), by file."""
    return table.scan(
        row_filter=equal(QUARANTINE_DAY, day), selected_fields=(SOURCE_FILE, SOURCE_ETAG, QUARANTINE_REASON)
    ).to_arrow()


@dataclass
class StagedDay:
    """A day's staged batch (`STAGED_SCHEMA`) and what was kept out of the table, and why."""

    table: pa.Table
    accepted_rows: int
    quarantined: pa.Table  # one row per (source_file, quarantine_reason): `rows`
    rejected_files: list[FileReject]
    line_issues: list[LineIssue] = field(default_factory=list)


FILE_PREFIX = "file: "


def summarize(staged: pa.Table) -> StagedDay:
    """What a staged batch holds: accepted rows, and the records kept out, by file and reason."""
    if QUARANTINE_REASON not in staged.column_names:
        return StagedDay(staged, staged.num_rows, _EMPTY_SUMMARY, [])
    kept_out = staged.filter(pc.is_valid(staged.column(QUARANTINE_REASON))).select(
        [SOURCE_FILE, SOURCE_ETAG, QUARANTINE_REASON]
    )
    summary = kept_out.group_by([SOURCE_FILE, QUARANTINE_REASON]).aggregate([([], "count_all")])
    summary = summary.rename_columns([SOURCE_FILE, QUARANTINE_REASON, "rows"]).sort_by(
        [(SOURCE_FILE, "ascending"), (QUARANTINE_REASON, "ascending")]
    )
    files = [
        FileReject(r[SOURCE_FILE], r[SOURCE_ETAG], r[QUARANTINE_REASON][len(FILE_PREFIX) :])
        for r in kept_out.to_pylist()
        if r[QUARANTINE_REASON].startswith(FILE_PREFIX)
    ]
    return StagedDay(staged, staged.num_rows - kept_out.num_rows, summary, files)


_EMPTY_SUMMARY = pa.table(
    {
        SOURCE_FILE: pa.array([], _STRING),
        QUARANTINE_REASON: pa.array([], _STRING),
        "rows": pa.array([], pa.int64()),
    }
)


def stage_day(read: DayRead, manifest: Manifest) -> StagedDay:
    """Screen the day's rows, sort them for the table, and add a record per rejected file/line.

    Rows that another day's run takes (`routing.taken_elsewhere`) are left out; the files and
    lines of a neighbouring folder's file are reported by that folder's day only."""
    day = manifest.utc_day
    tables = [f.table for f in read.files]
    rows = pa.concat_tables(tables) if tables else ARROW_SCHEMA.empty_table()
    elsewhere = taken_elsewhere(rows.column(SOURCE_FILE), rows.column(TIMESTAMP), day)
    if pc.any(elsewhere).as_py():
        rows = rows.filter(pc.invert(elsewhere))
    screened = sort_for_table(screen_rows(rows, day))
    issues = [i for f in read.files for i in f.issues if i.key.startswith(day.prefix)]
    etags = manifest.versions() if issues else {}  # a piece's lines rarely fail: no dict per piece
    records = [
        (r.key, r.etag, f"{FILE_PREFIX}{r.reason}") for r in read.rejected if r.key.startswith(day.prefix)
    ]
    records += [
        (
            i.key,
            etags.get(i.key, ""),
            f"line {i.line}: {i.reason}" if i.line is not None else f"{FILE_PREFIX}{i.reason}",
        )
        for i in issues
    ]
    staged = pa.concat_tables([screened, record_rows(records)]) if records else screened
    summary = summarize(staged)
    summary.line_issues = issues
    return summary
