"""Arrow values -> their JSON text, vectorised (no per-row Python).

Used to keep `extra` values of any JSON type losslessly in string columns: numbers and
booleans as their JSON literal, objects and lists as compact JSON. Inside objects, members
that are null are left out (Arrow's JSON inference cannot tell a null member from a missing one).
"""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.compute as pc

_STRING = pa.large_string()
# JSON requires these escaped inside strings; backslash first so later escapes stay intact.
_ESCAPES = [
    ("\\", "\\\\"),
    ('"', '\\"'),
    ("\n", "\\n"),
    ("\r", "\\r"),
    ("\t", "\\t"),
    ("\b", "\\b"),
    ("\f", "\\f"),
]
_OTHER_CONTROL = [chr(c) for c in range(0x20) if chr(c) not in "\n\r\t\b\f"]
# Deepest nesting of objects and lists in one value of a record or of its `extra` (deeper
# values reject their line or file): the text of a value is built recursively, and no log
# needs more. `{"a": 1}` and `[1]` nest 1 level.
MAX_NESTING = 64


def type_depth(t: pa.DataType) -> int:
    """How deeply a type nests structs and lists (0 for a scalar), without recursion."""
    deepest, stack = 0, [(t, 0)]
    while stack:
        current, depth = stack.pop()
        deepest = max(deepest, depth)
        if pa.types.is_struct(current):
            stack.extend((current.field(i).type, depth + 1) for i in range(current.num_fields))
        elif pa.types.is_list(current) or pa.types.is_large_list(current) or pa.types.is_map(current):
            stack.append(
                (current.value_type if not pa.types.is_map(current) else current.item_type, depth + 1)
            )
    return deepest


def value_depth(value: object) -> int:
    """How deeply a parsed JSON value nests objects and lists, without recursion."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        current, depth = stack.pop()
        deepest = max(deepest, depth)
        if isinstance(current, dict):
            stack.extend((v, depth + 1) for v in current.values())
        elif isinstance(current, list):
            stack.extend((v, depth + 1) for v in current)
    return deepest


def _lit(text: str) -> pa.Scalar:
    return pa.scalar(text, _STRING)


def _join(*parts: pa.Array | str) -> pa.Array:
    """Concatenate element-wise; a null part makes the result null."""
    args = [_lit(p) if isinstance(p, str) else p for p in parts]
    return pc.binary_join_element_wise(*args, _lit(""))


def _quote(values: pa.Array) -> pa.Array:
    text = pc.cast(values, _STRING)
    for raw, escaped in _ESCAPES:
        text = pc.replace_substring(text, raw, escaped)
    if pc.any(pc.match_substring_regex(text, "[\\x00-\\x07\\x0b\\x0e-\\x1f]")).as_py():
        for char in _OTHER_CONTROL:
            text = pc.replace_substring(text, char, f"\\u{ord(char):04x}")
    return _join('"', text, '"')


def json_text(values: pa.Array, top_level_strings_raw: bool = True) -> pa.Array:
    """JSON text of each value (null stays null). Strings stay raw unless nested."""
    t = values.type
    if pa.types.is_null(t):
        return pa.nulls(len(values), _STRING)
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return pc.cast(values, _STRING) if top_level_strings_raw else _quote(values)
    if pa.types.is_boolean(t) or pa.types.is_integer(t) or pa.types.is_floating(t):
        return pc.cast(values, _STRING)
    if pa.types.is_struct(t):
        return _struct_text(values)
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return _list_text(values)
    return pc.cast(values, _STRING)  # timestamps etc.: Arrow's canonical text


def _struct_text(values: pa.StructArray) -> pa.Array:
    # Each present member is `"name":value,`; absent ones are "". (pyarrow's variadic join with
    # null_handling="skip" drops all-null rows, so it is not used.) A JSON value never ends
    # with a comma, so trimming trailing commas removes exactly the last separator.
    members = [pa.repeat(_lit(""), len(values))]
    for i in range(values.type.num_fields):
        name = values.type.field(i).name
        child = json_text(pc.struct_field(values, [i]), top_level_strings_raw=False)
        member = _join(json.dumps(name, ensure_ascii=False) + ":", child, ",")
        members.append(pc.fill_null(member, _lit("")))
    body = pc.utf8_rtrim(_join(*members), characters=",")
    return pc.if_else(pc.is_null(values), pa.scalar(None, _STRING), _join("{", body, "}"))


def _list_text(values: pa.ListArray) -> pa.Array:
    flat = json_text(values.values, top_level_strings_raw=False)
    flat = pc.fill_null(flat, _lit("null"))
    rebuilt = pa.LargeListArray.from_arrays(pc.cast(values.offsets, pa.int64()), flat)
    text = _join("[", pc.binary_join(rebuilt, _lit(",")), "]")
    return pc.if_else(pc.is_null(values), pa.scalar(None, _STRING), text)


def string_map(names: list[str], columns: list[pa.Array], n: int) -> pa.MapArray:
    """Per row, a map of `names[i]` -> `columns[i]` for the columns that are non-null there."""
    key_type = _STRING
    if not names:
        offsets = pa.repeat(pa.scalar(0, pa.int32()), n + 1)
        return pa.MapArray.from_arrays(offsets, pa.array([], key_type), pa.array([], _STRING))
    values = pa.concat_arrays([pc.cast(c, _STRING) for c in columns])
    keys = pa.concat_arrays([pa.repeat(pa.scalar(name, key_type), n) for name in names])
    row_ids = pc.subtract(pc.cumulative_sum(pa.repeat(pa.scalar(1, pa.int64()), n)), 1)
    rows = pa.concat_arrays([row_ids] * len(names))
    present = pc.is_valid(values)
    keys, values, rows = keys.filter(present), values.filter(present), rows.filter(present)
    order = pc.sort_indices(rows)  # stable: keeps the key order within a row
    keys, values = keys.take(order), values.take(order)
    counts = pa.repeat(pa.scalar(0, pa.int64()), n)
    for column in columns:
        counts = pc.add(counts, pc.cast(pc.is_valid(column), pa.int64()))
    ends = pc.cumulative_sum(counts)
    offsets = pa.concat_arrays([pa.array([0], pa.int32()), pc.cast(ends, pa.int32())])
    return pa.MapArray.from_arrays(offsets, keys, values)
