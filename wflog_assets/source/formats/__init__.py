"""The registry of source file formats, keyed by file suffix.

A format is one module with a `read_parts(data, entry, part_rows)` generator that yields the
file's rows normalized to the table schema, a part at a time; adding a format is that module
plus one entry in `FORMATS`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from wflog_assets.manifest import ManifestEntry
from wflog_assets.source.formats import jsonl, parquet
from wflog_assets.source.normalize import NormalizedFile

PartReader = Callable[[bytes, ManifestEntry, int], Iterator[NormalizedFile]]


@dataclass(frozen=True)
class SourceFormat:
    """A kind of chunk file: its name in the manifest, its key suffix, and its reader."""

    name: str
    suffix: str
    read_parts: PartReader


# What the writers produce: Parquet chunks (until 2026) and gzip JSON lines (application-sdk 3.52+).
FORMATS: tuple[SourceFormat, ...] = (
    SourceFormat(parquet.NAME, ".parquet", parquet.read_parts),
    SourceFormat(jsonl.NAME, ".json.gz", jsonl.read_parts),
)
_BY_NAME = {f.name: f for f in FORMATS}


def format_of(key: str) -> SourceFormat | None:
    """The chunk format of an object key, or None for anything else."""
    for fmt in FORMATS:
        if key.endswith(fmt.suffix):
            return fmt
    return None


def format_named(name: str) -> SourceFormat:
    """The format a manifest entry names."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise ValueError(f"unknown source format {name!r}: known are {sorted(_BY_NAME)}") from None
