"""The only place that touches pyiceberg internals (names with a leading underscore).

pyiceberg 0.12 has no public API for these: writing Parquet data files the way its own
`append` does (writer options, schema projection), checking an Arrow schema against the table's,
and merging manifests selectively. `test_compat.py` fails loudly when an upgrade moves them.
"""

from __future__ import annotations

from pyiceberg.io.pyarrow import (
    _check_pyarrow_schema_compatible as check_pyarrow_schema_compatible,
)
from pyiceberg.io.pyarrow import _get_parquet_writer_kwargs as get_parquet_writer_kwargs
from pyiceberg.io.pyarrow import _to_requested_schema as to_requested_schema
from pyiceberg.table.update.snapshot import _ManifestMergeManager as ManifestMergeManager
from pyiceberg.table.update.snapshot import _MergeAppendFiles as MergeAppendFiles

__all__ = [
    "ManifestMergeManager",
    "MergeAppendFiles",
    "check_pyarrow_schema_compatible",
    "get_parquet_writer_kwargs",
    "to_requested_schema",
]
