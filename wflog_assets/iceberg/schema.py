"""The target table, defined once: schema, partition layouts and sort order."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.partitioning import PartitionField, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.table.sorting import NullOrder, SortDirection, SortField, SortOrder
from pyiceberg.transforms import BucketTransform, IdentityTransform
from pyiceberg.types import DoubleType, LongType, MapType, NestedField, StringType, StructType

from wflog_assets.iceberg._compat import schema_to_pyarrow

# Children of the source `extra` struct that the table keeps as typed (string) columns.
# The workflow fields use hyphens in the source; Iceberg keeps the names as written.
EXTRA_FIELDS: tuple[str, ...] = (
    "activity_id",
    "activity_type",
    "atlan-argo-workflow-name",
    "atlan-argo-workflow-node",
    "attempt",
    "client_host",
    "duration_ms",
    "heartbeat_timeout",
    "log_type",
    "method",
    "namespace",
    "path",
    "request_id",
    "run_id",
    "schedule_to_close_timeout",
    "schedule_to_start_timeout",
    "start_to_close_timeout",
    "status_code",
    "task_queue",
    "trace_id",
    "url",
    "workflow_id",
    "workflow_type",
)

# Top-level string columns copied from the source file as they are.
SOURCE_STRING_COLUMNS: tuple[str, ...] = ("level", "logger_name", "message", "file", "function")

WORKFLOW_NAME = "atlan_argo_workflow_name"
WORKFLOW_NODE = "atlan_argo_workflow_node"
TIMESTAMP = "timestamp"
MONTH = "month"
SOURCE_FILE = "source_file"
SOURCE_ETAG = "source_etag"
EXTRA_OTHER = "extra_other"
# When a record carries no Argo workflow fields (Temporal-only context of the current writer),
# the workflow name and node are filled from these `extra` keys instead of staying null.
WORKFLOW_NAME_FALLBACK = "workflow_id"
WORKFLOW_NODE_FALLBACK = "workflow_run_id"

_EXTRA_FIRST_ID = 100

TABLE_SCHEMA = Schema(
    NestedField(1, TIMESTAMP, DoubleType(), required=False, doc="Unix seconds, UTC"),
    NestedField(2, "level", StringType(), required=False),
    NestedField(3, "logger_name", StringType(), required=False),
    NestedField(4, "message", StringType(), required=False),
    NestedField(5, "file", StringType(), required=False),
    NestedField(6, "line", LongType(), required=False),
    NestedField(7, "function", StringType(), required=False),
    NestedField(8, "trace_id", StringType(), required=False, doc="extra.trace_id"),
    NestedField(
        9,
        WORKFLOW_NAME,
        StringType(),
        required=False,
        doc="extra.atlan-argo-workflow-name, else extra.workflow_id, "
        "else app:<deployment>_<app> (app-level records)",
    ),
    NestedField(
        10,
        WORKFLOW_NODE,
        StringType(),
        required=False,
        doc="extra.atlan-argo-workflow-node, else extra.workflow_run_id",
    ),
    NestedField(
        11,
        "extra",
        StructType(
            *(
                NestedField(_EXTRA_FIRST_ID + i, name, StringType(), required=False)
                for i, name in enumerate(EXTRA_FIELDS)
            )
        ),
        required=False,
    ),
    NestedField(12, MONTH, LongType(), required=False, doc="month of timestamp (UTC), 1-12"),
    NestedField(
        13,
        SOURCE_FILE,
        StringType(),
        required=False,
        doc="source object key (relative to the source root) the row was read from",
    ),
    NestedField(
        14,
        SOURCE_ETAG,
        StringType(),
        required=False,
        doc="ETag of the source object version the row was read from",
    ),
    NestedField(
        15,
        EXTRA_OTHER,
        MapType(200, StringType(), 201, StringType(), value_required=False),
        required=False,
        doc="every other `extra` key: strings as written, other JSON values as JSON text",
    ),
)

ARROW_SCHEMA: pa.Schema = schema_to_pyarrow(TABLE_SCHEMA, include_field_ids=False)
EXTRA_ARROW_TYPE: pa.StructType = ARROW_SCHEMA.field("extra").type

_WF_ID = TABLE_SCHEMA.find_field(WORKFLOW_NAME).field_id
_MONTH_ID = TABLE_SCHEMA.find_field(MONTH).field_id
_TS_ID = TABLE_SCHEMA.find_field(TIMESTAMP).field_id

# The partition layouts of the proof of concept's study. `wf_month` is the production table.
LAYOUTS: dict[str, PartitionSpec] = {
    "wf_month": PartitionSpec(
        PartitionField(_WF_ID, 1000, IdentityTransform(), WORKFLOW_NAME),
        PartitionField(_MONTH_ID, 1001, IdentityTransform(), MONTH),
    ),
    "wf_bucket": PartitionSpec(
        PartitionField(_WF_ID, 1000, BucketTransform(16), f"{WORKFLOW_NAME}_bucket"),
    ),
    "wf_bucket_month": PartitionSpec(
        PartitionField(_WF_ID, 1000, BucketTransform(16), f"{WORKFLOW_NAME}_bucket"),
        PartitionField(_MONTH_ID, 1001, IdentityTransform(), MONTH),
    ),
}
DEFAULT_LAYOUT = "wf_month"

SORT_ORDER = SortOrder(
    SortField(
        source_id=_TS_ID,
        transform=IdentityTransform(),
        direction=SortDirection.DESC,
        null_order=NullOrder.NULLS_LAST,
    )
)

# Each layout's tables: the production table (wf_month) keeps the configured name; the study's
# other layouts get the layout as a suffix (`workflow_logs_wf_bucket`, ...).
LAYOUT_TABLE_SUFFIX: dict[str, str] = {
    layout: "" if layout == DEFAULT_LAYOUT else f"_{layout}" for layout in LAYOUTS
}


def table_identifier(namespace: str, table: str, layout: str = DEFAULT_LAYOUT) -> str:
    """The table of a partition layout: the configured name for wf_month, suffixed otherwise."""
    return f"{namespace}.{table}{LAYOUT_TABLE_SUFFIX[layout]}"


def arrow_sort_keys(layout: str = DEFAULT_LAYOUT) -> list[tuple[str, str, str]]:
    """How rows are ordered before they are written to a layout's table.

    Grouped by the identity-partition columns, then timestamp DESC (nulls last). The write
    splits rows by partition keeping their order, so every data file is sorted timestamp DESC
    (the declared sort order); in a bucket layout a file holds several workflows in that order.
    """
    spec = LAYOUTS[layout]
    grouping = [
        (TABLE_SCHEMA.find_column_name(f.source_id) or "", "ascending", "at_end")
        for f in spec.fields
        if isinstance(f.transform, IdentityTransform)
    ]
    return [*grouping, (TIMESTAMP, "descending", "at_end")]


# How staged rows are ordered: grouped by partition, newest first (the production layout).
ARROW_SORT_KEYS: list[tuple[str, str, str]] = arrow_sort_keys(DEFAULT_LAYOUT)


def describe_layout(layout: str) -> str:
    """One line, e.g. `identity(atlan_argo_workflow_name) + identity(month)`."""
    return " + ".join(
        f"{f.transform}({TABLE_SCHEMA.find_column_name(f.source_id)})" for f in LAYOUTS[layout].fields
    )


def sort_for_table(table: pa.Table, layout: str = DEFAULT_LAYOUT) -> pa.Table:
    """Order rows as a layout's table wants them: by partition, then timestamp DESC (nulls last)."""
    if table.num_rows == 0:
        return table
    keys = ARROW_SORT_KEYS if layout == DEFAULT_LAYOUT else arrow_sort_keys(layout)
    indices = pc.sort_indices(table, sort_keys=keys)
    return table.take(indices)
