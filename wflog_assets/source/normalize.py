"""Source chunk tables -> rows in the target schema, with Arrow compute only (no per-row Python).

The writer infers each file's Parquet schema from the records it buffered, so a file may carry
`extra` children typed `null`, miss some children, type numbers as int64 or string, and order the
children differently. Every one of those is mapped to the one target schema here; a value that
cannot be cast is a `NormalizationError` naming the file and the column, never a silent null.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from wflog_assets.day import MAX_UNIX_SECONDS
from wflog_assets.errors import NormalizationError
from wflog_assets.iceberg.schema import (
    ARROW_SCHEMA,
    EXTRA_ARROW_TYPE,
    EXTRA_FIELDS,
    EXTRA_OTHER,
    MONTH,
    SOURCE_ETAG,
    SOURCE_FILE,
    SOURCE_STRING_COLUMNS,
    TIMESTAMP,
    WORKFLOW_NAME,
    WORKFLOW_NAME_FALLBACK,
    WORKFLOW_NODE,
    WORKFLOW_NODE_FALLBACK,
)
from wflog_assets.source.jsontext import MAX_NESTING, json_text, string_map, type_depth
from wflog_assets.source.rejects import LineIssue
from wflog_assets.source.routing import WRITER_NAME

REQUIRED_COLUMNS: tuple[str, ...] = (TIMESTAMP, "extra")
# App-level records (no workflow context) get `app:<deployment>_<app>` as their workflow name.
APP_WORKFLOW_PREFIX = "app:"
APP_DEPLOYMENT_KEY = "deployment_name"
APP_NAME_KEY = "app_name"
NESTED_TOO_DEEP = "a value nested too deeply"
# A JSON number written as text: what a timestamp given as a string may hold.
NUMBER_TEXT = r"^\s*-?[0-9]+(\.[0-9]*)?([eE][-+]?[0-9]+)?\s*$"
LEVEL_ALIASES: dict[str, str] = {"WARN": "WARNING"}

_STRING = pa.large_string()


@dataclass
class NormalizedFile:
    """One source file's rows in the target schema, and what was noticed on the way."""

    key: str
    table: pa.Table
    ignored_columns: list[str] = field(default_factory=list)
    other_extra_keys: list[str] = field(default_factory=list)  # kept in `extra_other`
    issues: list[LineIssue] = field(default_factory=list)  # lines that could not be taken
    reader: str = "parquet"
    # a batch of several small files parsed together: every key in it (`key` is the first)
    batch_keys: tuple[str, ...] = ()

    @property
    def keys(self) -> tuple[str, ...]:
        """The source files whose rows this holds."""
        return self.batch_keys or (self.key,)


def _cast(values: pa.Array, target: pa.DataType, key: str, column: str) -> pa.Array:
    if values.type == target:
        return values
    if pa.types.is_nested(values.type):
        raise NormalizationError(key, column, f"nested type {values.type} cannot become {target}")
    try:
        return pc.cast(values, target, safe=True)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise NormalizationError(key, column, f"cannot cast {values.type} to {target}: {exc}") from exc


def _timestamps(values: pa.Array, key: str) -> pa.Array:
    """Unix seconds as float64, by one rule for both formats: numbers as they are, a number
    written as text (`"1764633600.5"`) as that number, other text null (the row is then
    quarantined), integers of any size as numbers (a nanosecond value's row is quarantined);
    a float32 column is refused, its values already rounded by up to 128 s."""
    t = values.type
    if pa.types.is_floating(t) and t.bit_width < 64:
        raise NormalizationError(key, TIMESTAMP, f"{t} rounds Unix seconds by up to 128 s: write float64")
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        numeric = pc.match_substring_regex(values, NUMBER_TEXT)
        return pc.cast(pc.if_else(numeric, pc.utf8_trim_whitespace(values), None), pa.float64())
    if pa.types.is_integer(t):
        # exact up to 2^53, far beyond any Unix second; a larger value (nanoseconds) is only
        # rounded, and its row is then quarantined as not seconds, like any other bad value
        return pc.cast(values, pa.float64(), safe=False)
    return _cast(values, pa.float64(), key, TIMESTAMP)


def _nulls(n: int, type_: pa.DataType) -> pa.Array:
    return pa.nulls(n, type=type_)


def month_of(timestamps: pa.Array) -> pa.Array:
    """Month (1-12, UTC) of Unix-seconds doubles; null for null, NaN, infinite and values
    too large to be seconds (such rows are quarantined, `quality.rules.not_unix_seconds`)."""
    seconds = pc.if_else(pc.less(pc.abs(timestamps), MAX_UNIX_SECONDS), timestamps, None)
    micros = pc.cast(pc.floor(pc.multiply(seconds, 1_000_000.0)), pa.int64())
    return pc.cast(pc.month(pc.cast(micros, pa.timestamp("us", tz="UTC"))), pa.int64())


def normalize_table(
    source: pa.Table, key: str, etag: str = "", lineage: tuple[pa.Array, pa.Array] | None = None
) -> NormalizedFile:
    """Map one source file's table to the target schema (unsorted).

    `key` and `etag` identify the source object version; every row carries them (lineage).
    `lineage`: per-row keys and ETags instead, for a batch of several files parsed together.
    """
    for required in REQUIRED_COLUMNS:
        if required not in source.column_names:
            raise NormalizationError(key, required, "required column is missing from the file")
    source = source.combine_chunks()
    n = source.num_rows

    def column(name: str) -> pa.Array | None:
        if name not in source.column_names:
            return None
        chunked = source.column(name)
        return chunked.chunk(0) if chunked.num_chunks else pa.array([], type=chunked.type)

    timestamp = _timestamps(column(TIMESTAMP), key)
    out: dict[str, pa.Array] = {TIMESTAMP: timestamp}
    for name in SOURCE_STRING_COLUMNS:
        values = column(name)
        out[name] = _nulls(n, _STRING) if values is None else _cast(values, _STRING, key, name)
    out["level"] = _normalize_levels(out["level"])
    line = column("line")
    out["line"] = _nulls(n, pa.int64()) if line is None else _cast(line, pa.int64(), key, "line")

    extra, other = _normalize_extra(column("extra"), n, key)
    out["trace_id"] = pc.struct_field(extra, "trace_id")
    if lineage is None:
        out[SOURCE_FILE] = pa.repeat(pa.scalar(key, _STRING), n)
        out[SOURCE_ETAG] = pa.repeat(pa.scalar(etag, _STRING), n)
    else:
        out[SOURCE_FILE], out[SOURCE_ETAG] = (pc.cast(a, _STRING) for a in lineage)
    out[WORKFLOW_NAME] = pc.coalesce(
        _named(pc.struct_field(extra, "atlan-argo-workflow-name")),
        _named(pc.struct_field(extra, WORKFLOW_NAME_FALLBACK)),
        app_workflow(other, out[SOURCE_FILE], key if lineage is None else None),
    )
    node_fallback = other.get(WORKFLOW_NODE_FALLBACK, _nulls(n, _STRING))
    out[WORKFLOW_NODE] = pc.coalesce(pc.struct_field(extra, "atlan-argo-workflow-node"), node_fallback)
    out["extra"] = extra
    out[EXTRA_OTHER] = string_map(list(other), list(other.values()), n).cast(
        ARROW_SCHEMA.field(EXTRA_OTHER).type
    )
    out[MONTH] = month_of(timestamp)
    table = pa.Table.from_arrays([out[f.name] for f in ARROW_SCHEMA], schema=ARROW_SCHEMA)
    known = {TIMESTAMP, "line", "extra", MONTH, *SOURCE_STRING_COLUMNS}
    ignored = sorted(c for c in source.column_names if c not in known)
    return NormalizedFile(key=key, table=table, ignored_columns=ignored, other_extra_keys=sorted(other))


def _named(values: pa.Array) -> pa.Array:
    """Null where a name is empty or only whitespace, so that the next source of a name (the
    `workflow_id` fallback, then the `app:` stand-in) is taken, as for a missing name."""
    blank = pc.fill_null(pc.equal(pc.utf8_trim_whitespace(values), ""), False)
    return pc.if_else(blank, pa.scalar(None, values.type), values)


def app_workflow(other: dict[str, pa.Array], files: pa.Array, key: str | None = None) -> pa.Array:
    """The workflow-name stand-in of an app-level record (no workflow context: worker start-up,
    heartbeats, HTTP access lines): `app:<deployment>_<app>`, from its writer file's name
    (`<epoch_ns>_<seq>_<deployment>_<app>.json.gz`: one value for every record of a process),
    else from `extra.deployment_name` and `extra.app_name` when the record has both; null when
    neither says (the row is then quarantined as having no workflow name). `key`: the one file
    all rows come from."""
    n = len(files)
    deployment, app = other.get(APP_DEPLOYMENT_KEY), other.get(APP_NAME_KEY)
    from_extra = (
        pc.binary_join_element_wise(
            pc.cast(deployment, _STRING), pc.cast(app, _STRING), pa.scalar("_", _STRING)
        )
        if deployment is not None and app is not None
        else _nulls(n, _STRING)
    )
    if key is not None:  # one file: its name, once
        match = WRITER_NAME.search(key)
        from_name = pa.repeat(pa.scalar(None if match is None else match["origin"], _STRING), n)
    else:
        found = pc.extract_regex(files, WRITER_NAME.pattern)
        from_name = pc.if_else(pc.is_valid(found), pc.struct_field(found, "origin"), None)
    origin = pc.coalesce(pc.cast(from_name, _STRING), pc.cast(from_extra, _STRING))
    return pc.binary_join_element_wise(
        pa.scalar(APP_WORKFLOW_PREFIX, _STRING), origin, pa.scalar("", _STRING)
    )


def _normalize_levels(levels: pa.Array) -> pa.Array:
    for alias, canonical in LEVEL_ALIASES.items():
        levels = pc.if_else(pc.equal(levels, alias), pa.scalar(canonical, _STRING), levels)
    return levels


def _extra_text(values: pa.Array, key: str, column: str) -> pa.Array:
    try:
        return json_text(values)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise NormalizationError(key, column, f"cannot turn {values.type} into text: {exc}") from exc


def _normalize_extra(extra: pa.Array | None, n: int, key: str) -> tuple[pa.StructArray, dict[str, pa.Array]]:
    """The known children as a struct of strings, and every other child as JSON text."""
    if extra is None or pa.types.is_null(extra.type):
        children = [_nulls(n, _STRING) for _ in EXTRA_FIELDS]
        return pa.StructArray.from_arrays(children, fields=list(EXTRA_ARROW_TYPE)), {}
    if not pa.types.is_struct(extra.type):
        raise NormalizationError(key, "extra", f"expected a struct, found {extra.type}")
    depth = max((type_depth(f.type) for f in extra.type), default=0)
    if depth > MAX_NESTING:
        raise NormalizationError(key, "extra", f"{NESTED_TOO_DEEP}: {depth} levels (limit {MAX_NESTING})")
    present = [extra.type.field(i).name for i in range(extra.type.num_fields)]
    texts = {
        name: _extra_text(pc.struct_field(extra, [i]), key, f"extra.{name}")  # parent nulls kept
        for i, name in enumerate(present)
    }
    children = [texts.get(name, _nulls(n, _STRING)) for name in EXTRA_FIELDS]
    mask = pc.is_null(extra) if extra.null_count else None
    struct = pa.StructArray.from_arrays(children, fields=list(EXTRA_ARROW_TYPE), mask=mask)
    other = {name: texts[name] for name in sorted(set(present).difference(EXTRA_FIELDS))}
    return struct, other


def empty_table() -> pa.Table:
    return ARROW_SCHEMA.empty_table()
