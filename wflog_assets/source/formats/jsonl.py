"""The current writer's files: gzip-compressed JSON lines, one log record per line.

Fast path: Arrow's JSON reader, block by block, over a streaming gzip decompressor; its
inferred `extra` struct is mapped like a Parquet chunk's. Arrow refuses some files outright:
a key whose JSON type changes between lines (`"attempt": 1` then `"attempt": "1"`), a line
that is not JSON, a truncated gzip stream. Only for those files the lines are parsed one by
one, so every good line still lands and every bad one is reported with its line number;
the file is flagged `lines` in the metadata. A line without a numeric `timestamp` is rejected
the same way.
"""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from wflog_assets.errors import NormalizationError
from wflog_assets.iceberg.schema import SOURCE_STRING_COLUMNS, TIMESTAMP
from wflog_assets.manifest import ManifestEntry
from wflog_assets.source.jsontext import MAX_NESTING, type_depth, value_depth
from wflog_assets.source.normalize import NESTED_TOO_DEEP, NUMBER_TEXT, NormalizedFile, normalize_table
from wflog_assets.source.rejects import LineIssue

NAME = "jsonl.gz"
BLOCK_SIZE = 1 << 20
FAST = "arrow"
SLOW = "lines"
_STRING = pa.large_string()


@dataclass
class JsonLinesRead:
    table: pa.Table
    issues: list[LineIssue]
    path: str  # FAST or SLOW


def read_json_lines(data: bytes, key: str) -> JsonLinesRead:
    """Parse a `.json.gz` object into a table of records (`extra` as a struct)."""
    try:
        stream = pa.input_stream(pa.BufferReader(data), compression="gzip")
        table = pj.read_json(stream, read_options=pj.ReadOptions(block_size=BLOCK_SIZE))
    except (pa.ArrowInvalid, OSError, EOFError, RecursionError):
        return _read_line_by_line(data, key)
    if _too_deep(table):
        return _read_line_by_line(data, key)  # reject only the lines that nest too deeply
    timestamps = table.column(TIMESTAMP) if TIMESTAMP in table.column_names else None
    if (
        timestamps is None
        or timestamps.null_count
        or (not pa.types.is_floating(timestamps.type) and not pa.types.is_integer(timestamps.type))
    ):
        return _read_line_by_line(data, key)  # find the lines without a usable timestamp
    if any(_loses_digits(c.combine_chunks()) for c in table.columns):
        return _read_line_by_line(data, key)  # Python's json keeps every digit of an integer
    return JsonLinesRead(table=table, issues=[], path=FAST)


class DuplicateKeyError(ValueError):
    """A JSON object names a key twice: which value is meant is not for the pipeline to guess."""


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    record = dict(pairs)
    if len(record) != len(pairs):
        seen: set[str] = set()
        for name, _ in pairs:
            if name in seen:
                raise DuplicateKeyError(f"duplicate key {name!r} in one object (Arrow refuses it too)")
            seen.add(name)
    return record


def _too_deep(table: pa.Table) -> bool:
    """Whether a value of a column, or of a child of `extra`, nests deeper than `MAX_NESTING`."""
    for f in table.schema:
        if f.name == "extra" and pa.types.is_struct(f.type):
            if any(type_depth(child.type) > MAX_NESTING for child in f.type):
                return True
        elif type_depth(f.type) > MAX_NESTING:
            return True
    return False


def _nesting(record: dict[str, Any]) -> int:
    """How deeply the record's values, and its `extra`'s, nest (`_too_deep` for one line)."""
    extra = record.get("extra")
    values = [v for k, v in record.items() if k != "extra"]
    values += list(extra.values()) if isinstance(extra, dict) else [extra]
    return max((value_depth(v) for v in values), default=0)


def _gunzip(data: bytes) -> tuple[bytes, str | None]:
    """Everything that decompresses, every gzip member of it, and why it stopped early (None
    if it did not)."""
    out: list[bytes] = []
    rest = data
    while True:
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            out.append(inflater.decompress(rest) + inflater.flush())
        except zlib.error as exc:
            if not out:
                return b"", f"not a gzip stream: {exc}"
            return b"".join(out), f"bad gzip member after {len(out)}: {exc}"
        if not inflater.eof:
            return b"".join(out), "truncated gzip stream: the file ends before the compressed data does"
        rest = inflater.unused_data
        if not rest.strip(b"\0"):  # end of the file (padding zeros are allowed after a member)
            return b"".join(out), None


def _scalar_text(value: Any) -> str | None:
    """A JSON value as the text the table keeps (the same text the fast path produces)."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return str(int(value))
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(_drop_null_members(value), separators=(",", ":"), ensure_ascii=False)


def _drop_null_members(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_null_members(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_null_members(v) for v in value]
    return value


def _read_line_by_line(data: bytes, key: str) -> JsonLinesRead:
    raw, stopped = _gunzip(data)
    issues: list[LineIssue] = []
    lines = raw.split(b"\n")
    if stopped is not None and lines and lines[-1]:
        issues.append(LineIssue(key, len(lines), f"incomplete last line: {stopped}"))
        lines = lines[:-1]
    elif stopped is not None:
        issues.append(LineIssue(key, None, stopped))
    records: list[dict[str, Any]] = []
    extra_keys: dict[str, None] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line, object_pairs_hook=_unique_keys)
        except DuplicateKeyError as exc:
            issues.append(LineIssue(key, number, str(exc)))
            continue
        except (ValueError, UnicodeDecodeError) as exc:
            issues.append(LineIssue(key, number, f"not JSON: {exc}"))
            continue
        except RecursionError:
            issues.append(LineIssue(key, number, f"{NESTED_TOO_DEEP}: over {MAX_NESTING} levels"))
            continue
        if not isinstance(record, dict):
            issues.append(LineIssue(key, number, "not a JSON object"))
            continue
        depth = _nesting(record)
        if depth > MAX_NESTING:
            issues.append(LineIssue(key, number, f"{NESTED_TOO_DEEP}: {depth} levels (limit {MAX_NESTING})"))
            continue
        problem = _record_problem(record)
        if problem is not None:
            issues.append(LineIssue(key, number, problem))
            continue
        extra = record.get("extra")
        if isinstance(extra, dict):
            extra_keys.update(dict.fromkeys(extra))
        records.append(record)
    if not records and not issues:
        issues.append(LineIssue(key, None, "empty file: no lines"))
    return JsonLinesRead(table=_records_table(records, list(extra_keys)), issues=issues, path=SLOW)


def _record_problem(record: dict[str, Any]) -> str | None:
    ts = record.get(TIMESTAMP)
    if ts is None:
        return "no timestamp"
    if isinstance(ts, str) and re.match(NUMBER_TEXT, ts):
        return None  # a number written as text: read as that number (as in Parquet)
    if isinstance(ts, bool) or not isinstance(ts, int | float):
        return f"timestamp is not a number: {ts!r:.80}"
    line = record.get("line")
    if line is not None and (isinstance(line, bool) or not isinstance(line, int)):
        if not (isinstance(line, str) and line.strip().lstrip("-").isdigit()):
            return f"line is not an integer: {line!r:.80}"
    extra = record.get("extra")
    if extra is not None and not isinstance(extra, dict):
        return f"extra is not an object: {type(extra).__name__}"
    return None


def _records_table(records: list[dict[str, Any]], extra_keys: list[str]) -> pa.Table:
    """Records with uniform column types: strings as strings, extra values as their text."""
    n = len(records)
    columns: dict[str, pa.Array] = {
        TIMESTAMP: pa.array([float(r[TIMESTAMP]) for r in records], pa.float64()),  # text too
        "line": pc.cast(
            pa.array([None if r.get("line") is None else int(r["line"]) for r in records], pa.int64()),
            pa.int64(),
        ),
    }
    for name in SOURCE_STRING_COLUMNS:
        columns[name] = pa.array(
            [None if r.get(name) is None else _scalar_text(r[name]) for r in records], _STRING
        )
    children = [
        pa.array(
            [_scalar_text(r["extra"].get(k)) if isinstance(r.get("extra"), dict) else None for r in records],
            _STRING,
        )
        for k in extra_keys
    ]
    mask = pa.array([not isinstance(r.get("extra"), dict) for r in records], pa.bool_())
    if extra_keys:
        columns["extra"] = pa.StructArray.from_arrays(children, names=extra_keys, mask=mask)
    else:
        columns["extra"] = pa.array(
            [{} if isinstance(r.get("extra"), dict) else None for r in records], pa.struct([])
        )
    assert all(len(c) == n for c in columns.values())
    return pa.table(columns)


def read_parts(data: bytes, entry: ManifestEntry, part_rows: int) -> Iterator[NormalizedFile]:
    """The file parsed and normalized whole (one part), with its rejected lines. A value that
    Arrow typed in a way the table cannot take sends the file to the line-by-line path, which
    rejects only the lines that hold such values."""
    parsed = read_json_lines(data, entry.key)
    try:
        normalized = normalize_table(parsed.table, entry.key, entry.etag)
    except NormalizationError:
        if parsed.path != FAST:
            raise
        parsed = _read_line_by_line(data, entry.key)
        normalized = normalize_table(parsed.table, entry.key, entry.etag)
    normalized.issues = parsed.issues
    normalized.reader = parsed.path
    yield normalized


# Exact integers above this cannot share a float64 column with fractions without losing digits.
_EXACT_FLOAT_INT = float(2**53)


def _decompressed(data: bytes) -> bytes | None:
    """Every gzip member of a file; None if the file is not a complete gzip stream."""
    raw, stopped = _gunzip(data)
    return raw if stopped is None else None


def _loses_digits(values: pa.Array) -> bool:
    """Whether a float column of a batch may hold an integer that float64 rounded."""
    t = values.type
    if pa.types.is_floating(t):
        big = pc.and_(pc.equal(pc.floor(values), values), pc.greater_equal(pc.abs(values), _EXACT_FLOAT_INT))
        return bool(pc.any(big).as_py())
    if pa.types.is_struct(t):
        return any(_loses_digits(pc.struct_field(values, [i])) for i in range(t.num_fields))
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return _loses_digits(values.flatten())
    return False


def read_batch(files: list[tuple[ManifestEntry, bytes]]) -> NormalizedFile | None:
    """Many small files parsed as ONE Arrow read and normalized once, each row keeping its
    file's key and ETag; None where the batch could differ from reading the files one by one
    (a file Arrow refuses, a line without a numeric timestamp, blank or broken lines, a column
    typed differently across files, a float column that may have rounded a big integer): the
    caller then splits the batch, down to single files read by `read_parts`."""
    texts: list[bytes] = []
    counts: list[int] = []
    for _, data in files:
        raw = _decompressed(data)
        if not raw or not raw.strip():
            return None
        counts.append(raw.count(b"\n") + (0 if raw.endswith(b"\n") else 1))
        texts.append(raw if raw.endswith(b"\n") else raw + b"\n")
    try:
        table = pj.read_json(
            pa.BufferReader(b"".join(texts)), read_options=pj.ReadOptions(block_size=BLOCK_SIZE)
        )
    except (pa.ArrowInvalid, OSError, RecursionError):
        return None
    if _too_deep(table):
        return None
    timestamps = table.column(TIMESTAMP) if TIMESTAMP in table.column_names else None
    if (
        table.num_rows != sum(counts)  # a blank line somewhere: counts are off
        or timestamps is None
        or timestamps.null_count
        or not (pa.types.is_floating(timestamps.type) or pa.types.is_integer(timestamps.type))
        or any(_loses_digits(c.combine_chunks()) for c in table.columns)
    ):
        return None
    first = files[0][0]
    owner = pa.array(np.repeat(np.arange(len(files)), counts))
    keys = pa.array([e.key for e, _ in files], _STRING).take(owner)
    etags = pa.array([e.etag for e, _ in files], _STRING).take(owner)
    try:
        normalized = normalize_table(table, first.key, first.etag, lineage=(keys, etags))
    except NormalizationError:
        return None
    normalized.reader = FAST
    normalized.batch_keys = tuple(e.key for e, _ in files)
    return normalized
