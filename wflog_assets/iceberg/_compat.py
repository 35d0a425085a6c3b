"""The only place that touches pyiceberg internals (names with a leading underscore).

pyiceberg 0.12 has no public API for these: writing Parquet data files the way its own
`append` does (writer options, schema projection, statistics from the footer, partition
values, the table's location provider), checking an Arrow schema against the table's, and
listing a table's folder. Private names (leading underscore) and undocumented helpers alike
come through here. `test_compat.py` fails loudly when an upgrade moves them.
"""

from __future__ import annotations

import pyarrow.fs as pafs
from pyiceberg.io import FileIO
from pyiceberg.io.fileformat import FileFormatFactory
from pyiceberg.io.pyarrow import (
    PyArrowFileIO,
    compute_statistics_plan,
    data_file_statistics_from_parquet_metadata,
    parquet_path_to_id_mapping,
    pyarrow_to_schema,
)
from pyiceberg.io.pyarrow import (
    _check_pyarrow_schema_compatible as check_pyarrow_schema_compatible,
)
from pyiceberg.io.pyarrow import _get_parquet_writer_kwargs as get_parquet_writer_kwargs
from pyiceberg.io.pyarrow import _to_requested_schema as to_requested_schema
from pyiceberg.partitioning import PartitionFieldValue
from pyiceberg.schema import sanitize_column_names
from pyiceberg.table.locations import load_location_provider


def arrow_filesystem(io: FileIO, location: str) -> tuple[pafs.FileSystem, str]:
    """The pyarrow filesystem a table's FileIO reads `location` with, and the path in it
    (pyiceberg caches one per scheme in `fs_by_scheme`, an attribute its type does not declare):
    listing a table's folder (orphan files) needs it, and FileIO has no listing."""
    if not isinstance(io, PyArrowFileIO):
        raise TypeError(f"listing files needs pyiceberg's PyArrowFileIO, the table uses {type(io).__name__}")
    scheme, netloc, path = PyArrowFileIO.parse_location(location, io.properties)
    filesystem: pafs.FileSystem = io.fs_by_scheme(scheme, netloc)
    return filesystem, path


__all__ = [
    "FileFormatFactory",
    "PartitionFieldValue",
    "arrow_filesystem",
    "check_pyarrow_schema_compatible",
    "compute_statistics_plan",
    "data_file_statistics_from_parquet_metadata",
    "get_parquet_writer_kwargs",
    "load_location_provider",
    "parquet_path_to_id_mapping",
    "pyarrow_to_schema",
    "sanitize_column_names",
    "to_requested_schema",
]
