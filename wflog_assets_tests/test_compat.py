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
