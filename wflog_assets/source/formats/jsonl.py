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
TEXT_BLOCK = 8 << 20  # decompressed bytes of whole lines parsed and normalized at a time
BATCH_TEXT_LIMIT = 4 << 20  # a small file that inflates past this is read on its own, by blocks
MAX_LINE_BYTES = 32 << 20  # a longer line is a rejected line, never a run's memory
LINE_TOO_LONG = f"a line longer than {MAX_LINE_BYTES >> 20} MiB: not read"
FAST = "arrow"
SLOW = "lines"
_STRING = pa.large_string()


@dataclass
class JsonLinesRead:
    table: pa.Table
    issues: list[LineIssue]
    path: str  # FAST or SLOW


def read_json_lines(data: bytes, key: str) -> JsonLinesRead:
    """Parse a whole `.json.gz` object into a table of records (`extra` as a struct), with its
    rejected lines (one block: `read_parts` reads a file in bounded blocks instead)."""
    tables, issues, paths = [], [], set()
    for block in _blocks(data, key, block_bytes=None):
        parsed = _parse_block(block.text, key, block.first_line) if block.text else None
        if parsed is not None:
            tables.append(parsed.table)
            issues.extend(parsed.issues)
            paths.add(parsed.path)
        issues.extend(block.issues)
    table = pa.concat_tables(tables) if tables else _records_table([], [])
    path = SLOW if SLOW in paths else FAST  # any block read line by line
    return JsonLinesRead(table=table, issues=_with_empty_file(issues, table.num_rows, key), path=path)


def _parse_block(text: bytes, key: str, first_line: int) -> JsonLinesRead:
    """Whole lines of a file: Arrow's reader, or line by line where Arrow cannot be exact."""
    try:
        table = pj.read_json(pa.BufferReader(text), read_options=pj.ReadOptions(block_size=BLOCK_SIZE))
    except (pa.ArrowInvalid, OSError, EOFError, RecursionError):
        return _lines(text, key, first_line)
    if _too_deep(table):
        return _lines(text, key, first_line)  # reject only the lines that nest too deeply
    timestamps = table.column(TIMESTAMP) if TIMESTAMP in table.column_names else None
    if (
        timestamps is None
        or timestamps.null_count
        or (not pa.types.is_floating(timestamps.type) and not pa.types.is_integer(timestamps.type))
    ):
        return _lines(text, key, first_line)  # find the lines without a usable timestamp
    if any(_loses_digits(c.combine_chunks()) for c in table.columns):
        return _lines(text, key, first_line)  # Python's json keeps every digit of an integer
    return JsonLinesRead(table=table, issues=[], path=FAST)


@dataclass
class _Block:
    """Whole lines of a file (each ending in a newline) and what stopped the stream after them."""

    text: bytes
    first_line: int  # the number of its first line in the file
    issues: list[LineIssue]
    last: bool = False


GZIP_MAGIC = b"\x1f\x8b"
COMPRESSED_TWICE = "compressed twice: a gzip stream inside the gzip stream (write the lines, gzip them once)"
# what a file named .json.gz holds instead of gzip, by its first bytes
_NOT_GZIP = {
    b"\x28\xb5\x2f\xfd": "zstd data",
    b"BZh": "bzip2 data",
    b"\xfd7zXZ\x00": "xz data",
    b"\x04\x22\x4d\x18": "lz4 data",
    b"PK\x03\x04": "a zip archive",
    b"PAR1": "a Parquet file",
}


def _what_it_is(head: bytes) -> str | None:
    """What a file that is not gzip holds, from its first bytes, if it is recognisable."""
    for magic, name in _NOT_GZIP.items():
        if head.startswith(magic):
            return name
    return "uncompressed text" if head.lstrip()[:1] in (b"{", b"[") else None


def _inflate(data: bytes, chunk: int) -> Iterator[bytes | str | None]:
    """`_inflate_members`, refusing a file whose content is itself gzip (compressed twice)."""
    first = True
    for item in _inflate_members(data, chunk):
        if first and isinstance(item, bytes) and item:
            first = False
            if item.startswith(GZIP_MAGIC):
                yield COMPRESSED_TWICE
                return
        yield item


def _inflate_members(data: bytes, chunk: int) -> Iterator[bytes | str | None]:
    """The decompressed bytes of every gzip member, `chunk` bytes at most at a time (0: all at
    once); last, why the stream stopped early (a str) or None. Arrow's decompressor (C++,
    every member) reads a sound file; a stream it refuses is read again by zlib's, which tells
    how far it goes and why it stops (the bytes already given are not given twice)."""
    produced = 0
    try:
        stream = pa.input_stream(pa.BufferReader(data), compression="gzip")
        while out := (stream.read(chunk) if chunk else stream.read()):
            produced += len(out)
            yield out
            if not chunk:
                break
        yield None
        return
    except OSError:
        pass
    for item in _zlib_inflate(data, chunk):
        if isinstance(item, bytes) and produced:
            item, produced = item[produced:], max(0, produced - len(item))
            if not item:
                continue
        yield item


def _zlib_inflate(data: bytes, chunk: int) -> Iterator[bytes | str | None]:
    """`_inflate` by zlib, member by member, saying why the stream stops early."""
    rest, members, produced = data, 0, False
    while True:
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        pending = rest
        try:
            while True:
                out = inflater.decompress(pending, chunk)
                if out:
                    produced = True
                    yield out
                pending = inflater.unconsumed_tail
                if inflater.eof or (not pending and not out):
                    break
            tail = b"" if inflater.eof else inflater.flush()
        except zlib.error as exc:
            what = _what_it_is(data[:8]) if not produced else None
            yield (
                f"not a gzip stream: it is {what}"
                if what
                else f"not a gzip stream: {exc}"
                if not produced
                else f"bad gzip data in member {members + 1}: {exc}"
            )
            return
        if tail:
            yield tail
        if not inflater.eof:
            yield "truncated gzip stream: the file ends before the compressed data does"
            return
        members += 1
        rest = inflater.unused_data
        if not rest.strip(b"\0"):  # the end (zero padding is allowed after a member)
            yield None
            return


def _blocks(data: bytes, key: str, block_bytes: int | None) -> Iterator[_Block]:
    """The file's decompressed lines in blocks of about `block_bytes` (None: one block), cut
    at line ends, so a file of any size is parsed a block at a time; the last block carries
    why the stream stopped early, with the incomplete last line's number. With blocks, a line
    longer than `MAX_LINE_BYTES` is dropped as it streams by and reported as a rejected line."""
    pending: list[bytes] = []
    size, line = 0, 1
    skipping = False  # inside a line too long to keep
    for item in _inflate(data, block_bytes or 0):
        if isinstance(item, bytes) and skipping:
            end = item.find(b"\n")
            if end < 0:
                continue
            yield _Block(b"", line, [LineIssue(key, line, LINE_TOO_LONG)])
            item, line, skipping = item[end + 1 :], line + 1, False
            if not item:
                continue
        if isinstance(item, bytes):
            pending.append(item)
            size += len(item)
            if block_bytes is not None and size >= block_bytes:
                joined = _joined(pending)
                cut = joined.rfind(b"\n") + 1
                if cut:
                    text, rest = joined[:cut], joined[cut:]
                    pending, size = ([rest] if rest else []), len(rest)
                    yield _Block(text, line, [])
                    line += text.count(b"\n")
                elif len(joined) > MAX_LINE_BYTES:
                    pending, size, skipping = [], 0, True
                else:
                    pending = [joined]  # one line longer than a block: it is read whole
            continue
        if skipping:  # the file ends inside the long line
            yield _Block(b"", line, [LineIssue(key, line, LINE_TOO_LONG)], last=True)
            return
        joined = _joined(pending)
        cut = joined.rfind(b"\n") + 1
        text, last = (joined, b"") if cut == len(joined) else (joined[:cut], joined[cut:])
        issues: list[LineIssue] = []
        if item is None and last:
            text += last + b"\n"  # a last line without its newline
        elif item is not None and last:
            issues.append(LineIssue(key, line + text.count(b"\n"), f"incomplete last line: {item}"))
        elif item is not None:
            issues.append(LineIssue(key, None, item))
        yield _Block(text, line, issues, last=True)
        return


def _joined(pieces: list[bytes]) -> bytes:
    return pieces[0] if len(pieces) == 1 else b"".join(pieces)


def _with_empty_file(issues: list[LineIssue], anything: int | bool, key: str) -> list[LineIssue]:
    """`issues`, or the one issue of a file without a line at all."""
    return issues if anything or issues else [LineIssue(key, None, "empty file: no lines")]


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


def _lines(text: bytes, key: str, first_line: int = 1) -> JsonLinesRead:
    """Whole lines parsed one by one: every good line kept, every bad one reported by number."""
    issues: list[LineIssue] = []
    lines = text.split(b"\n")
    if lines and not lines[-1]:
        lines.pop()  # the text ends with a newline
    records: list[dict[str, Any]] = []
    extra_keys: dict[str, None] = {}
    for number, line in enumerate(lines, start=first_line):
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
    if (
        line is not None
        and (isinstance(line, bool) or not isinstance(line, int))
        and not (isinstance(line, str) and line.strip().lstrip("-").isdigit())
    ):
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
    """The file decompressed, parsed and normalized `TEXT_BLOCK` bytes of lines at a time (a
    file of any size stays bounded in memory), with its rejected lines. A block whose values
    Arrow typed in a way the table cannot take is read line by line, which rejects only the
    lines that hold such values."""
    rows = 0
    reported = False
    for block in _blocks(data, entry.key, TEXT_BLOCK):
        parsed = (
            _parse_block(block.text, entry.key, block.first_line) if block.text else _lines(b"", entry.key)
        )
        try:
            normalized = normalize_table(parsed.table, entry.key, entry.etag)
        except NormalizationError:
            if parsed.path != FAST:
                raise
            parsed = _lines(block.text, entry.key, block.first_line)
            normalized = normalize_table(parsed.table, entry.key, entry.etag)
        rows += normalized.table.num_rows
        issues = parsed.issues + block.issues
        reported = reported or bool(issues)
        normalized.issues = _with_empty_file(issues, rows or reported, entry.key) if block.last else issues
        normalized.reader = parsed.path
        yield normalized


# Exact integers above this cannot share a float64 column with fractions without losing digits.
_EXACT_FLOAT_INT = float(2**53)


def _decompressed(data: bytes, limit: int = BATCH_TEXT_LIMIT) -> bytes | None:
    """Every gzip member of a small file; None if it is not a complete gzip stream or
    decompresses to more than `limit` bytes (a file for the block-by-block path)."""
    out = bytearray()
    for item in _inflate(data, 1 << 20):
        if isinstance(item, str):
            return None
        if item is None:
            return bytes(out)
        out += item
        if len(out) > limit:
            return None
    return None


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
