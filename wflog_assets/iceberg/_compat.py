"""The only place that touches pyiceberg internals: names with a leading underscore, and the
undocumented helpers this project relies on.

pyiceberg 0.12 has no public API for these: writing Parquet data files the way its own `append`
does (writer options, schema projection, statistics from the footer, partition values, the
table's location provider), checking an Arrow schema against the table's, reading one data
file's rows with pyiceberg's own reader (`ArrowScan`), an Iceberg schema as Arrow without field
ids, decoding statistics bounds, table properties as numbers, and listing a table's folder.
`test_compat.py` fails loudly when an upgrade moves or reshapes one of them.
"""

from __future__ import annotations

import pyarrow.fs as pafs
from pyiceberg.conversions import from_bytes
from pyiceberg.io import FileIO
from pyiceberg.io.fileformat import FileFormatFactory
from pyiceberg.io.pyarrow import (
    ArrowScan,
    PyArrowFileIO,
    compute_statistics_plan,
    data_file_statistics_from_parquet_metadata,
    parquet_path_to_id_mapping,
    pyarrow_to_schema,
    schema_to_pyarrow,
)
from pyiceberg.io.pyarrow import _check_pyarrow_schema_compatible as check_pyarrow_schema_compatible
from pyiceberg.io.pyarrow import _get_parquet_writer_kwargs as get_parquet_writer_kwargs
from pyiceberg.io.pyarrow import _to_requested_schema as to_requested_schema
from pyiceberg.manifest import clear_manifest_cache
from pyiceberg.partitioning import PartitionFieldValue, PartitionKey
from pyiceberg.schema import sanitize_column_names
from pyiceberg.table.locations import load_location_provider
from pyiceberg.typedef import Record
from pyiceberg.utils.properties import property_as_bool, property_as_int


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
    "ArrowScan",
    "FileFormatFactory",
    "PartitionFieldValue",
    "PartitionKey",
    "Record",
    "arrow_filesystem",
    "check_pyarrow_schema_compatible",
    "clear_manifest_cache",
    "compute_statistics_plan",
    "data_file_statistics_from_parquet_metadata",
    "from_bytes",
    "get_parquet_writer_kwargs",
    "load_location_provider",
    "parquet_path_to_id_mapping",
    "property_as_bool",
    "property_as_int",
    "pyarrow_to_schema",
    "sanitize_column_names",
    "schema_to_pyarrow",
    "to_requested_schema",
]
