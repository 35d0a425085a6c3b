"""The table itself: its properties (statistics, writer settings, metadata hygiene) and
`ensure_table`, which creates it or checks an existing one's layout.
"""

from __future__ import annotations

from pyiceberg.catalog import Catalog
from pyiceberg.partitioning import PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.table import Table, TableProperties
from pyiceberg.table.sorting import SortOrder

from wflog_assets.errors import TableLayoutError
from wflog_assets.iceberg.catalogs import open_or_create
from wflog_assets.iceberg.locations import LOCATION_PROVIDER
from wflog_assets.iceberg.schema import (
    LAYOUTS,
    SORT_ORDER,
    SOURCE_FILE,
    TABLE_SCHEMA,
)

# Full min/max bounds for `source_file`. The default metrics mode truncates strings to 16
# characters ("year=2025/month="), which cannot tell days apart: every per-day scan (the
# checkpoint, the checks) then planned and read every data file of the table, and each run got
# slower as history grew (a 90-day backfill: 6 s runs at day 1, 95 s at day 50).
SOURCE_FILE_METRICS = f"{TableProperties.METRICS_MODE_COLUMN_CONF_PREFIX}.{SOURCE_FILE}"

# Metadata hygiene for a table committed all day (a run a minute): each commit deletes the
# metadata.json files beyond the last 10, appends merge manifests once 16 pile up (every plan,
# the P0 query's too, reads every manifest of the month: bench/bench_long_haul.py), and runs
# expire snapshots older than an hour, keeping at least 12 (`maintenance.expire_by_policy`), as
# RisingWave's Iceberg sink does: time travel reaches back an hour. Iceberg's own properties,
# so every engine honours them; set only where a table does not name them (an operator's stay).
MIN_SNAPSHOTS_TO_KEEP = "history.expire.min-snapshots-to-keep"
HYGIENE_PROPERTIES: dict[str, str] = {
    TableProperties.METADATA_DELETE_AFTER_COMMIT_ENABLED: "true",
    TableProperties.METADATA_PREVIOUS_VERSIONS_MAX: "10",
    TableProperties.MANIFEST_MERGE_ENABLED: "true",
    TableProperties.MANIFEST_MIN_MERGE_COUNT: "16",
    TableProperties.MAX_SNAPSHOT_AGE_MS: str(3600 * 1000),
    MIN_SNAPSHOTS_TO_KEEP: "12",
}

DEFAULT_TABLE_PROPERTIES: dict[str, str] = {
    **HYGIENE_PROPERTIES,
    SOURCE_FILE_METRICS: "full",
    "write.parquet.compression-codec": "zstd",
    # Row groups of 32k rows: the P0 query prunes and stops early by row group, so a LIMIT 100
    # on a workflow of 400k rows reads one row group instead of the whole file.
    "write.parquet.row-group-limit": str(32 * 1024),
    # partition folders bounded for any workflow name (`iceberg/locations.py`)
    TableProperties.WRITE_PY_LOCATION_PROVIDER_IMPL: LOCATION_PROVIDER,
}


def ensure_table(
    catalog: Catalog,
    identifier: str,
    layout: str = "wf_month",
    properties: dict[str, str] | None = None,
) -> Table:
    """Create the namespace and table if missing; refuse a table laid out differently."""
    spec = LAYOUTS[layout]
    table = open_or_create(
        catalog,
        identifier,
        schema=TABLE_SCHEMA,
        partition_spec=spec,
        sort_order=SORT_ORDER,
        properties={**DEFAULT_TABLE_PROPERTIES, **(properties or {})},
    )
    upgrades = {  # a table made by an earlier version
        name: DEFAULT_TABLE_PROPERTIES[name]
        for name in (SOURCE_FILE_METRICS, TableProperties.WRITE_PY_LOCATION_PROVIDER_IMPL)
        if table.properties.get(name) != DEFAULT_TABLE_PROPERTIES[name]
    }
    upgrades.update(
        {name: value for name, value in HYGIENE_PROPERTIES.items() if name not in table.properties}
    )
    if upgrades:
        with table.transaction() as tx:
            tx.set_properties(upgrades)
    missing = [f.name for f in TABLE_SCHEMA.fields if f.name not in table.schema().column_names]
    if missing:  # a table made by an earlier version: add the new optional columns
        with table.update_schema() as update:
            update.union_by_name(TABLE_SCHEMA)
    # Compare by column name: a REST catalog may assign its own field ids on create.
    if _spec_by_name(table.schema(), table.spec()) != _spec_by_name(TABLE_SCHEMA, spec):
        raise TableLayoutError(
            f"table {identifier} is partitioned by {table.spec()}, expected layout {layout!r} "
            f"({spec}); point WFLOG_TABLE at another table or drop this one"
        )
    if _sort_by_name(table.schema(), table.sort_order()) != _sort_by_name(TABLE_SCHEMA, SORT_ORDER):
        raise TableLayoutError(
            f"table {identifier} has sort order {table.sort_order()}, expected timestamp DESC"
        )
    return table


def _spec_by_name(schema: Schema, spec: PartitionSpec) -> list[tuple[str | None, str]]:
    return [(schema.find_column_name(f.source_id), str(f.transform)) for f in spec.fields]


def _sort_by_name(schema: Schema, order: SortOrder) -> list[tuple[str | None, str, str]]:
    return [(schema.find_column_name(f.source_id), str(f.direction), str(f.null_order)) for f in order.fields]
