"""The pyiceberg internals `wflog_assets/iceberg/_compat.py` fences: an upgrade that moves or
reshapes one fails here, by name, instead of deep inside a day's commit."""

from __future__ import annotations

import inspect

import pyiceberg

from wflog_assets.iceberg import _compat


def _parameters(function: object) -> list[str]:
    return list(inspect.signature(function).parameters)  # type: ignore[arg-type]


def test_the_pyiceberg_internals_used_are_where_and_what_they_were():
    assert pyiceberg.__version__.startswith("0.12."), (
        f"pyiceberg {pyiceberg.__version__}: re-check every name in wflog_assets/iceberg/_compat.py "
        "(and this test) against the new version"
    )
    assert _parameters(_compat.check_pyarrow_schema_compatible)[:2] == ["requested_schema", "provided_schema"]
    assert "format_version" in _parameters(_compat.check_pyarrow_schema_compatible)
    assert _parameters(_compat.get_parquet_writer_kwargs) == ["table_properties"]
    assert _parameters(_compat.to_requested_schema)[:3] == ["requested_schema", "file_schema", "batch"]
    assert {"include_field_ids", "format_model"} <= set(_parameters(_compat.to_requested_schema))
    # the helpers the day writer computes statistics, partition values and locations with
    assert _parameters(_compat.compute_statistics_plan) == ["schema", "table_properties"]
    assert _parameters(_compat.data_file_statistics_from_parquet_metadata)[:3] == [
        "parquet_metadata",
        "stats_columns",
        "parquet_column_mapping",
    ]
    assert _parameters(_compat.parquet_path_to_id_mapping) == ["schema"]
    assert _parameters(_compat.pyarrow_to_schema)[:1] == ["schema"]
    assert _parameters(_compat.sanitize_column_names) == ["schema"]
    assert _parameters(_compat.load_location_provider) == ["table_location", "table_properties"]
    assert {"field", "value"} <= set(_compat.PartitionFieldValue.__dataclass_fields__)
    assert callable(_compat.FileFormatFactory.get)
    # the reader of single data files, schemas as Arrow, bounds and properties
    assert _parameters(_compat.ArrowScan.__init__)[:5] == [
        "self",
        "table_metadata",
        "io",
        "projected_schema",
        "row_filter",
    ]
    assert callable(_compat.ArrowScan.to_record_batches)
    assert "include_field_ids" in _parameters(_compat.schema_to_pyarrow)
    assert _parameters(_compat.from_bytes) == ["primitive_type", "b"]
    assert _parameters(_compat.property_as_int) == ["properties", "property_name", "default"]
    assert _parameters(_compat.property_as_bool) == ["properties", "property_name", "default"]
    assert _parameters(_compat.clear_manifest_cache) == []
