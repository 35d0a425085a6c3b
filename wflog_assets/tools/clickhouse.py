"""ClickHouse CSV exports -> chunk files in the source layout (no Dagster here).

An export (`Timestamp,SeverityText,TenantName,Body,WorkflowName,WorkflowNode`, with a header,
optionally `.csv.gz`) is read by pyarrow's streaming CSV reader in fixed-size blocks, mapped
with Arrow compute, grouped by the UTC day of each row, and written as Parquet chunk files
shaped like the old log writer's:

    <dest>/year=YYYY/month=MM/day=DD/chunk-ch<export id>-<seq>-part<first ts ms>.parquet

so the daily assets and the sensor ingest them like any other chunk. Memory is bounded by the
block size and `max_buffered_rows`, not by the export's size.

Mapping: Timestamp (`YYYY-MM-DD HH:MM:SS[.fffffffff]`, UTC) -> `timestamp` (Unix seconds);
SeverityText -> `level` (WARN -> WARNING, anything else kept as written); TenantName ->
`logger_name`; Body -> `message`; WorkflowName -> `extra.atlan-argo-workflow-name` and
`extra.trace_id`; WorkflowNode -> `extra.atlan-argo-workflow-node`. `\\N` and unquoted empty
fields are null; a quoted `""` is an empty string.

Bad rows are never guessed: a row with the wrong number of fields, an empty or unparsable
timestamp, or text that is not UTF-8 goes to `<dest>/_rejects/<export id>.rejects.jsonl` with
its physical line number in the export (1 = the header) and the reason.

All or nothing: chunk files are written under `<dest>/_incoming/<run>/` (outside the `year=`
folders, so no day lists them) and moved into place only once the whole export converted; a
failed conversion removes what it wrote. Same rows, one copy: the export id is of the export's
rows as a multiset (`ContentId`), so the same rows in any order, plain or gzip, under any file
name, have one id, and a conversion removes the files an earlier conversion of the same id left
in the days it wrote (another order or `--rows-per-file` cuts them differently); the table drops
their rows when those days are ingested with `vanished_files: delete` (a run never deletes rows
of vanished files by itself).

Time: `Timestamp` is read as UTC, or in the zone the export states: `timezone=` (the CLI's
`--timezone`), or a `CSVWithNamesAndTypes` export's type line (`DateTime64(9, 'Asia/Kolkata')`);
an export whose type line names another zone than the one given is refused. Digits past the
microsecond are dropped (a float64 of Unix seconds holds about 0.2 us): 23:59:59.999999999
stays on its day.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from wflog_assets.day import day_prefix
from wflog_assets.errors import ExportFormatError
from wflog_assets.source.stores import ObjectStore

COLUMNS: tuple[str, ...] = (
    "Timestamp",
    "SeverityText",
    "TenantName",
    "Body",
    "WorkflowName",
    "WorkflowNode",
)
REJECTS_FOLDER = "_rejects"
CHUNK_PREFIX = "chunk-ch"  # chunk-ch<export id>-<seq>-part<first ms>.parquet
_PENDING_ID = "0pending0000"  # a conversion's files until its content id is known
INCOMING_FOLDER = "_incoming"
DEFAULT_ROWS_PER_FILE = 250_000
BLOCK_SIZE = 8 << 20
_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
_FRACTION = r"^(\.[0-9]{1,9})?$"
_SECONDS_PER_DAY = 86_400
_STRING = pa.string()

EXTRA_TYPE = pa.struct(
    [
        ("atlan-argo-workflow-name", _STRING),
        ("atlan-argo-workflow-node", _STRING),
        ("trace_id", _STRING),
    ]
)
CHUNK_SCHEMA = pa.schema(
    [
        ("timestamp", pa.float64()),
        ("level", _STRING),
        ("logger_name", _STRING),
        ("message", _STRING),
        ("extra", EXTRA_TYPE),
    ]
)


@dataclass(frozen=True)
class Reject:
    line: int  # physical line in the export where the row starts (1 = header)
    reason: str
    text: str  # the row as read: raw text, or its fields as JSON


@dataclass
class ConversionResult:
    export_id: str
    rows_read: int = 0
    rows_written: int = 0
    rejects: list[Reject] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    rows_by_day: dict[str, int] = field(default_factory=dict)
    rejects_key: str | None = None
    # chunk files of an earlier conversion of the same rows (or, with `replace`, of any other
    # export) in the days written, removed from the source: the table drops their rows only
    # when those days are ingested with `vanished_files: delete`
    removed_files: list[str] = field(default_factory=list)
    # other exports' chunk files left in the days written (id -> files): a corrected export
    # of the same days lands beside them unless converted with `replace`
    other_exports: dict[str, int] = field(default_factory=dict)

    @property
    def rows_rejected(self) -> int:
        return len(self.rejects)


class ContentId:
    """The id of an export's rows as a multiset: the sum, modulo 2^128, of a BLAKE2b digest of
    each row (its fields length-prefixed, nulls marked; a row refused for its field count, its
    raw text), with the time zone its times are read in. The same rows in any order, plain or
    gzip, under any file name, have one id; one row more, less or changed gives another."""

    _MOD = 1 << 128

    def __init__(self, zone: str) -> None:
        self.total = int.from_bytes(hashlib.blake2b(f"wflog-clickhouse-v3\n{zone}".encode()).digest()[:16])

    def add_rows(self, batch: pa.RecordBatch) -> None:
        fields = []
        for column in batch.columns:
            raw = column.cast(pa.binary())  # as read, valid UTF-8 or not
            sized = pc.binary_join_element_wise(
                pc.cast(pc.cast(pc.binary_length(raw), pa.string()), pa.binary()), raw, b":"
            )
            fields.append(pc.fill_null(sized, b"-"))  # a field is `<length>:<bytes>`, a null `-`
        rows = pc.binary_join_element_wise(*fields, b",")
        self._add(rows.to_pylist())

    def add_texts(self, rejects: list[Reject]) -> None:
        self._add([b"!" + r.text.encode("utf-8", "surrogateescape") for r in rejects])

    def _add(self, values: list[bytes]) -> None:
        total = sum(int.from_bytes(hashlib.blake2b(v, digest_size=16).digest()) for v in values)
        self.total = (self.total + total) % self._MOD

    def hexdigest(self) -> str:
        return f"{self.total:032x}"[:12]


def parse_timestamps(text: pa.Array, timezone: str = "UTC") -> tuple[pa.Array, pa.Array]:
    """(Unix seconds as double, valid mask) for ClickHouse `YYYY-MM-DD HH:MM:SS[.f...]` text,
    a local time of `timezone` (ambiguous and skipped times of a DST change: the earliest).

    Computed as (whole seconds * 10^6 + microseconds) / 10^6 in float64: exact integers until
    the one division, so the double is the correctly rounded microsecond, which never reaches
    the next second (digits past the microsecond are dropped, not rounded).
    """
    head = pc.utf8_slice_codeunits(text, 0, 19)
    whole = pc.strptime(head, format=_TIME_FORMAT, unit="s", error_is_null=True)
    rest = pc.utf8_slice_codeunits(text, 19, 40)
    # strptime rolls 2025-02-30 over to March 2nd: the parsed time must print as written
    separator_ok = pc.equal(pc.strftime(whole, format=_TIME_FORMAT), head)
    fraction_ok = pc.match_substring_regex(rest, _FRACTION)
    valid = pc.fill_null(pc.and_(pc.and_(pc.is_valid(whole), separator_ok), fraction_ok), False)
    digits = pc.utf8_rpad(pc.utf8_slice_codeunits(rest, 1, 7), 6, "0")
    micros_part = pc.cast(pc.if_else(valid, digits, "000000"), pa.int64())
    if timezone != "UTC":
        whole = pc.assume_timezone(whole, timezone, ambiguous="earliest", nonexistent="earliest")
    seconds = pc.cast(pc.cast(whole, pa.int64()), pa.float64())
    micros = pc.add(pc.multiply(seconds, 1e6), pc.cast(micros_part, pa.float64()))
    return pc.if_else(valid, pc.divide(micros, 1e6), pa.scalar(None, pa.float64())), valid


def _utf8_rejects(batch: pa.RecordBatch, starts: pa.Array) -> tuple[pa.Array, list[Reject]]:
    """(rows whose text is all UTF-8, rejects for the others): a String column of ClickHouse
    holds any bytes, and the CSV is read without validating them."""
    bad: set[int] = set()
    rejects: list[Reject] = []
    for name in COLUMNS:
        column = batch.column(name)
        try:
            column.validate(full=True)
            continue
        except pa.ArrowInvalid:
            pass
        for row, value in enumerate(column.view(pa.binary()).to_pylist()):
            if value is None or row in bad:
                continue
            try:
                value.decode("utf-8")
            except UnicodeDecodeError:
                bad.add(row)
                text = value.decode("utf-8", "backslashreplace")
                rejects.append(Reject(starts[row].as_py(), f"{name} is not UTF-8", text))
    good = pa.array([row not in bad for row in range(batch.num_rows)], pa.bool_())
    return good, rejects


def _levels(values: pa.Array) -> pa.Array:
    return pc.if_else(pc.equal(values, "WARN"), pa.scalar("WARNING"), values)


def to_chunk_rows(batch: pa.RecordBatch, timestamps: pa.Array) -> pa.Table:
    """Map export columns to the chunk schema (timestamps already parsed)."""
    name = batch.column("WorkflowName")
    extra = pa.StructArray.from_arrays([name, batch.column("WorkflowNode"), name], fields=list(EXTRA_TYPE))
    return pa.Table.from_arrays(
        [
            timestamps,
            _levels(batch.column("SeverityText")),
            batch.column("TenantName"),
            batch.column("Body"),
            extra,
        ],
        schema=CHUNK_SCHEMA,
    )


class _LineTracker:
    """Physical line numbers of records, from newlines inside fields and skipped rows' text.

    pyarrow numbers records (1 = the header), not lines; a Body with newlines spans several.
    """

    def __init__(self, first_line: int = 2) -> None:
        self.next_line = first_line  # line 1 is the header (2 its types, if any)
        self.next_record = 2
        self.invalid: list[tuple[int, str, int]] = []  # (record number, raw text, fields)

    def on_invalid(self, row: Any) -> str:
        self.invalid.append((row.number, row.text, row.actual_columns))
        return "skip"

    def lines_of(self, batch: pa.RecordBatch) -> tuple[pa.Array, list[Reject]]:
        """Start line of each row of `batch`, and the rejects for rows skipped among them."""
        n = batch.num_rows
        if n == 0:
            return pa.array([], pa.int64()), []
        spans = pa.repeat(pa.scalar(1, pa.int64()), n)
        for column in batch.columns:
            spans = pc.add(spans, pc.fill_null(pc.count_substring(column, "\n"), 0))
        starts = pc.add(pc.subtract(pc.cumulative_sum(spans), spans), self.next_line)
        records = pa.array(range(self.next_record, self.next_record + n), pa.int64())
        placed: list[Reject] = []
        pending, self.invalid = sorted(self.invalid), []
        for number, text, found in pending:
            if number > records[-1].as_py():  # after this batch's last row
                self.invalid.append((number, text, found))
                continue
            after = pc.greater_equal(records, number)
            shift = pc.cast(after, pa.int64())
            placed.append(_field_count_reject(starts[pc.index(after, True).as_py()].as_py(), text, found))
            records = pc.add(records, shift)
            starts = pc.add(starts, pc.multiply(shift, 1 + text.count("\n")))
        self.next_line = starts[-1].as_py() + spans[-1].as_py()
        self.next_record = records[-1].as_py() + 1
        return starts, placed

    def finish(self) -> list[Reject]:
        """Rejects for rows skipped after the last parsed row."""
        placed = []
        for _, text, found in sorted(self.invalid):
            placed.append(_field_count_reject(self.next_line, text, found))
            self.next_line += 1 + text.count("\n")
        self.invalid = []
        return placed


def _field_count_reject(line: int, text: str, found: int) -> Reject:
    return Reject(line, f"expected {len(COLUMNS)} fields, found {found}", text)


class _DayFiles:
    """Per-day row buffers flushed as deterministic chunk files."""

    def __init__(
        self,
        store: ObjectStore,
        export: str,
        rows_per_file: int,
        max_buffered_rows: int,
        result: ConversionResult,
        incoming: str,
    ) -> None:
        self.store, self.export, self.result = store, export, result
        self.incoming = incoming  # where files wait until the whole export converted
        self.rows_per_file, self.max_buffered = rows_per_file, max_buffered_rows
        self.buffers: dict[int, list[pa.Table]] = {}
        self.counts: dict[int, int] = {}
        self.seq: dict[int, int] = {}

    def add(self, rows: pa.Table) -> None:
        days = pc.cast(pc.floor(pc.divide(rows.column("timestamp"), _SECONDS_PER_DAY)), pa.int64())
        for day in pc.unique(days).to_pylist():
            part = rows.filter(pc.equal(days, day))
            self.buffers.setdefault(day, []).append(part)
            self.counts[day] = self.counts.get(day, 0) + part.num_rows
            while self.counts[day] >= self.rows_per_file:
                self._flush(day, self.rows_per_file)
        while sum(self.counts.values()) > self.max_buffered:
            self._flush(max(self.counts, key=lambda d: (self.counts[d], d)), None)

    def close(self) -> None:
        for day in sorted(self.counts):
            if self.counts[day]:
                self._flush(day, None)

    def _flush(self, day: int, rows: int | None) -> None:
        table = pa.concat_tables(self.buffers.pop(day))
        take = table.num_rows if rows is None else rows
        chunk, rest = table.slice(0, take), table.slice(take)
        self.buffers[day] = [rest] if rest.num_rows else []
        self.counts[day] = rest.num_rows
        seq = self.seq.get(day, 0)
        self.seq[day] = seq + 1
        date = pa.scalar(day * _SECONDS_PER_DAY * 1000, pa.timestamp("ms")).as_py().date()
        first_ms = int(chunk.column("timestamp")[0].as_py() * 1000)
        key = f"{day_prefix(date)}chunk-ch{self.export}-{seq:05d}-part{first_ms}.parquet"
        sink = io.BytesIO()
        pq.write_table(chunk, sink, compression="zstd")
        self.store.write(self.incoming + key, sink.getvalue())
        self.result.files.append(key)
        self.result.rows_written += chunk.num_rows
        self.result.rows_by_day[date.isoformat()] = (
            self.result.rows_by_day.get(date.isoformat(), 0) + chunk.num_rows
        )


def _open(path: Path) -> pa.NativeFile:
    compression = "gzip" if path.name.endswith(".gz") else None
    return pa.input_stream(str(path), compression=compression)


_ZONE = re.compile(r"DateTime64?\(\s*(?:\d+\s*,\s*)?'([^']+)'\s*\)")


def _check_header(path: Path, timezone: str | None) -> tuple[bool, str]:
    """(whether a type line follows the names, the export's time zone)."""
    with _open(path) as stream:
        head = stream.read(8192).split(b"\n", 2)
    rows = list(csv.reader(h.decode("utf-8", "replace").strip() for h in head[:2]))
    names = [n.strip() for n in rows[0]] if rows else []
    if names != list(COLUMNS):
        raise ExportFormatError(
            f"{path}: header is {names}, expected {list(COLUMNS)}: export with "
            "`FORMAT CSVWithNames` (or CSVWithNamesAndTypes) and these columns in this order"
        )
    types = [t.strip() for t in rows[1]] if len(rows) > 1 else []
    if len(types) != len(COLUMNS) or not types[0].startswith("DateTime"):
        return False, timezone or "UTC"
    match = _ZONE.search(types[0])
    stated = match[1] if match else None
    if stated is not None and timezone is not None and stated != timezone:
        raise ExportFormatError(
            f"{path}: Timestamp is {types[0]} but the conversion was told {timezone!r}: "
            "drop the option, or export with toTimeZone(Timestamp, 'UTC')"
        )
    return True, stated or timezone or "UTC"


def convert_export(
    path: str | os.PathLike[str],
    store: ObjectStore,
    rows_per_file: int = DEFAULT_ROWS_PER_FILE,
    max_buffered_rows: int | None = None,
    block_size: int = BLOCK_SIZE,
    on_progress: Callable[[ConversionResult], None] | None = None,
    timezone: str | None = None,
    replace: bool = False,
) -> ConversionResult:
    """Convert one export into chunk files in `store`, all or nothing; rejects go to
    `_rejects/` in the store. `timezone`: the zone of the export's local times (default UTC,
    or what its type line says). `replace`: the export replaces, in each day it writes, the
    chunk files of every other export (a corrected re-export of those days)."""
    if rows_per_file < 1:
        raise ValueError(f"rows_per_file={rows_per_file}: use 1 or more")
    source = Path(path)
    typed, zone = _check_header(source, timezone)
    result = ConversionResult(export_id=_PENDING_ID)
    content = ContentId(zone)
    days = _DayFiles(
        store,
        _PENDING_ID,  # named once the whole export is read: the id is of all its rows
        rows_per_file,
        max_buffered_rows or 2 * rows_per_file,
        result,
        incoming=f"{INCOMING_FOLDER}/{uuid.uuid4().hex}/",
    )
    moved: list[str] = []
    try:
        _convert(source, result, days, typed, zone, block_size, on_progress, content)
        result.export_id = content.hexdigest()
        for key in result.files:  # every file converted: put them in place under the export's id
            final = key.replace(f"chunk-ch{_PENDING_ID}-", f"chunk-ch{result.export_id}-")
            store.move(days.incoming + key, final)
            moved.append(final)
        result.files = moved
    except BaseException:
        for key in [*(days.incoming + k for k in result.files), *moved]:
            store.delete(key)
        raise
    _remove_earlier_conversions(store, result, replace)
    if result.rejects:
        result.rejects.sort(key=lambda r: r.line)
        result.rejects_key = f"{REJECTS_FOLDER}/{result.export_id}.rejects.jsonl"
        body = "".join(
            json.dumps({"line": r.line, "reason": r.reason, "row": r.text}, ensure_ascii=False) + "\n"
            for r in result.rejects
        )
        store.write(result.rejects_key, body.encode())
    return result


def _remove_earlier_conversions(store: ObjectStore, result: ConversionResult, replace: bool) -> None:
    """Delete the chunk files an earlier conversion of the same rows left (another order or
    `--rows-per-file` names them differently), and with `replace` those of any other export,
    in the days written: the days then hold each row once. Other exports' files left in place
    are counted in `other_exports`."""
    kept = set(result.files)
    for folder in sorted({key.rsplit("/", 1)[0] + "/" for key in kept}):
        for entry in list(store.list(folder)):
            name = entry.key.rsplit("/", 1)[-1]
            if entry.key in kept or not name.startswith(CHUNK_PREFIX):
                continue
            export_id = name[len(CHUNK_PREFIX) :].split("-", 1)[0]
            if export_id == result.export_id or replace:
                store.delete(entry.key)
                result.removed_files.append(entry.key)
            else:
                result.other_exports[export_id] = result.other_exports.get(export_id, 0) + 1


def _convert(
    source: Path,
    result: ConversionResult,
    days: _DayFiles,
    typed: bool,
    zone: str,
    block_size: int,
    on_progress: Callable[[ConversionResult], None] | None,
    content: ContentId,
) -> None:
    """Read the export block by block into `days` (rows), `result` (rejects) and `content`."""
    lines = _LineTracker(first_line=3 if typed else 2)
    reader = pcsv.open_csv(
        _open(source),
        read_options=pcsv.ReadOptions(
            use_threads=False, block_size=block_size, skip_rows_after_names=int(typed)
        ),
        parse_options=pcsv.ParseOptions(newlines_in_values=True, invalid_row_handler=lines.on_invalid),
        convert_options=pcsv.ConvertOptions(
            column_types=dict.fromkeys(COLUMNS, _STRING),
            null_values=["\\N", ""],
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,
            check_utf8=False,
        ),
    )
    for batch in reader:
        starts, skipped = lines.lines_of(batch)
        content.add_rows(batch)
        content.add_texts(skipped)
        result.rejects.extend(skipped)
        result.rows_read += batch.num_rows + len(skipped)
        utf8, bad_text = _utf8_rejects(batch, starts)
        if bad_text:
            result.rejects.extend(bad_text)
            batch, starts = batch.filter(utf8), starts.filter(utf8)
        timestamps, valid = parse_timestamps(batch.column("Timestamp"), zone)
        if not pc.all(valid).as_py():
            bad = pc.invert(valid)
            for row, line in zip(batch.filter(bad).to_pylist(), starts.filter(bad).to_pylist(), strict=True):
                reason = (
                    "empty timestamp"
                    if row["Timestamp"] is None
                    else f"unparsable timestamp {row['Timestamp']!r}: expected "
                    "YYYY-MM-DD HH:MM:SS[.ffffff] (UTC)"
                )
                result.rejects.append(Reject(line, reason, json.dumps(row, ensure_ascii=False)))
            batch, timestamps = batch.filter(valid), timestamps.filter(valid)
        days.add(to_chunk_rows(batch, timestamps))
        if on_progress is not None:
            on_progress(result)
    tail = lines.finish()
    content.add_texts(tail)
    result.rejects.extend(tail)
    result.rows_read += len(tail)
    days.close()
