"""Materialization and check metadata of the daily assets, built in one place."""

from __future__ import annotations

from collections import Counter

import dagster as dg
from pyiceberg.schema import Schema

from wflog_assets.day import utc_text
from wflog_assets.iceberg.commit import CommitResult
from wflog_assets.iceberg.plan import ReadPlan
from wflog_assets.manifest import Manifest
from wflog_assets.quality.checks import CheckOutcome
from wflog_assets.quality.quarantine import StagedDay
from wflog_assets.staging.pieces import StagedRuns

MANIFEST_PREVIEW_ROWS = 200
KEY_LIST_LIMIT = 1000


def keys_value(keys: list[str]) -> dg.MetadataValue:
    """A list of keys for metadata, cut (and said so) past KEY_LIST_LIMIT."""
    if len(keys) <= KEY_LIST_LIMIT:
        return dg.MetadataValue.json(keys)
    return dg.MetadataValue.json({"first": keys[:KEY_LIST_LIMIT], "total": len(keys)})


MANIFEST_TABLE_SCHEMA = dg.TableSchema(
    columns=[
        dg.TableColumn("key", "string"),
        dg.TableColumn("size", "int"),
        dg.TableColumn("etag", "string"),
        dg.TableColumn("last_modified", "string"),
        dg.TableColumn("format", "string"),
    ]
)


REJECTED_TABLE_SCHEMA = dg.TableSchema(
    columns=[
        dg.TableColumn("key", "string"),
        dg.TableColumn("line", "int", description="-1: the whole file"),
        dg.TableColumn("reason", "string"),
    ]
)


QUARANTINE_TABLE_SCHEMA = dg.TableSchema(
    columns=[
        dg.TableColumn("key", "string"),
        dg.TableColumn("reason", "string"),
        dg.TableColumn("rows", "int", description="records kept out for this reason"),
    ]
)


def manifest_metadata(manifest: Manifest, source: str) -> dict[str, dg.MetadataValue]:
    preview = manifest.entries[:MANIFEST_PREVIEW_ROWS]
    return {
        "source": dg.MetadataValue.text(source),
        "file_count": dg.MetadataValue.int(len(manifest.entries)),
        "total_bytes": dg.MetadataValue.int(manifest.total_bytes),
        "manifest_digest": dg.MetadataValue.text(manifest.digest),
        "manifest": dg.MetadataValue.table(
            records=[
                dg.TableRecord(
                    {
                        "key": e.key,
                        "size": e.size,
                        "etag": e.etag,
                        "last_modified": e.last_modified,
                        "format": e.format,
                    }
                )
                for e in preview
            ],
            schema=MANIFEST_TABLE_SCHEMA,
        ),
        "manifest_preview_rows": dg.MetadataValue.int(len(preview)),
        "files_by_format": dg.MetadataValue.json(dict(Counter(e.format for e in manifest.entries))),
        "ignored_objects": keys_value(list(manifest.ignored)),
    }


def column_schema(schema: Schema) -> dg.TableSchema:
    """The table's columns as Dagster's catalog shows them (`dagster/column_schema`)."""
    return dg.TableSchema(
        columns=[dg.TableColumn(f.name, str(f.field_type), description=f.doc or "") for f in schema.fields]
    )


def commit_metadata(
    result: CommitResult, manifest: Manifest, identifier: str, layout: str, duration_s: float
) -> dict[str, dg.MetadataValue]:
    """What a commit of a day did, and what the day holds after it."""
    written_keys = set(result.files_added) | set(result.files_changed)
    source_bytes = sum(e.size for e in manifest.entries if e.key in written_keys)
    # Dagster's own keys: the catalog shows the table's name and the day's rows
    standard: dict[str, dg.MetadataValue] = {"dagster/table_name": dg.MetadataValue.text(identifier)}
    if result.day_rows is not None:
        standard["dagster/row_count"] = dg.MetadataValue.int(result.day_rows)
    return {
        **standard,
        "table": dg.MetadataValue.text(identifier),
        "layout": dg.MetadataValue.text(layout),
        "outcome": dg.MetadataValue.text(result.outcome),
        "snapshot_id": dg.MetadataValue.text(str(result.snapshot_id)),
        "rows_written": dg.MetadataValue.int(result.rows_written),
        "rows_deleted": dg.MetadataValue.int(result.rows_deleted),
        "data_files_written": dg.MetadataValue.int(result.data_files_written),
        "source_files_ingested": dg.MetadataValue.int(len(written_keys)),
        "source_files_in_day": dg.MetadataValue.int(len(manifest.entries)),
        "source_files_added": keys_value(result.files_added),
        "source_files_changed": keys_value(result.files_changed),
        "source_files_removed": keys_value(result.files_removed),
        "source_bytes_ingested": dg.MetadataValue.int(source_bytes),
        "manifest_digest": dg.MetadataValue.text(result.manifest_digest),
        "commit_attempts": dg.MetadataValue.int(result.attempts),
        "phase_seconds": dg.MetadataValue.json(result.times),
        "day_rows": dg.MetadataValue.int(-1 if result.day_rows is None else result.day_rows),
        "duration_s": dg.MetadataValue.float(round(duration_s, 3)),
    }


def vanished_metadata(planned: ReadPlan, result: CommitResult) -> dict[str, dg.MetadataValue]:
    """The run's rule for files gone from the source, and the gone files whose rows it kept."""
    removed = set(result.files_removed)
    return {
        "vanished_files": dg.MetadataValue.text(planned.vanished_policy),
        "source_files_vanished_kept": keys_value([k for k in planned.vanished if k not in removed]),
    }


def log_kept_out(log: dg.DagsterLogManager, staged: StagedRuns, summary: StagedDay) -> None:
    """A warning per rejected file or line and per quarantined file and reason (the first 50)."""
    for reject in staged.rejected[:50]:
        log.warning(f"file not ingested: {reject.key}: {reject.reason}")
    for issue in staged.line_issues[:50]:
        log.warning(f"line not ingested: {issue.key} line {issue.line}: {issue.reason}")
    for row in summary.quarantined.slice(0, 50).to_pylist():
        log.warning(f"quarantined: {row['source_file']}: {row['rows']} record(s): {row['quarantine_reason']}")


def staged_metadata(
    manifest: Manifest, to_read: Manifest, staged: StagedRuns, summary: StagedDay
) -> dict[str, dg.MetadataValue]:
    """What `normalized_log_batches` read, staged and kept out."""
    planned = staged.planned
    vanished = planned.vanished if planned is not None else ()
    rejected = [(r.key, -1, r.reason) for r in staged.rejected] + [
        (i.key, i.line if i.line is not None else -1, i.reason) for i in staged.line_issues
    ]
    metadata: dict[str, dg.MetadataValue] = {
        "rows": dg.MetadataValue.int(staged.accepted_rows),
        "source_files": dg.MetadataValue.int(staged.source_files),
        "files_in_day": dg.MetadataValue.int(len(manifest.entries)),
        "files_read": dg.MetadataValue.int(len(to_read.entries)),
        "files_already_committed": dg.MetadataValue.int(len(manifest.entries) - len(to_read.entries)),
        "files_gone": dg.MetadataValue.int(len(vanished)),
        "files_gone_keys": keys_value(list(vanished)),
        "vanished_files": dg.MetadataValue.text(planned.vanished_policy if planned else "keep"),
        # how the plan learned what the day holds: digest / carried (one state file) / derived
        "day_state": dg.MetadataValue.text(planned.state if planned else "none"),
        # files that gave no row: refused by a reader, or a stream that is not what its name says
        "rejected_files": dg.MetadataValue.int(len(staged.rejected) + len(staged.unreadable)),
        "workflows": dg.MetadataValue.int(len(staged.workflows)),
        "manifest_digest": dg.MetadataValue.text(manifest.digest),
        "ignored_top_level_columns": dg.MetadataValue.json(sorted(staged.ignored_columns)),
        "extra_other_keys": dg.MetadataValue.json(sorted(staged.other_extra_keys)),
        "files_by_reader": dg.MetadataValue.json(staged.files_by_reader),
        "rejected_lines": dg.MetadataValue.int(len(staged.line_issues)),
        "rejected": dg.MetadataValue.table(
            records=[
                dg.TableRecord({"key": k, "line": line, "reason": reason[:300]})
                for k, line, reason in rejected[:MANIFEST_PREVIEW_ROWS]
            ],
            schema=REJECTED_TABLE_SCHEMA,
        ),
        "quarantined_rows": dg.MetadataValue.int(staged.kept_out.num_rows),
        "quarantine": dg.MetadataValue.table(
            records=[
                dg.TableRecord(
                    {"key": r["source_file"], "reason": r["quarantine_reason"][:300], "rows": r["rows"]}
                )
                for r in summary.quarantined.slice(0, MANIFEST_PREVIEW_ROWS).to_pylist()
            ],
            schema=QUARANTINE_TABLE_SCHEMA,
        ),
        "sorted_runs": dg.MetadataValue.int(len(staged.runs)),
        "source_bytes_read": dg.MetadataValue.int(staged.times.bytes.get("fetch", 0)),
        "phase_seconds": dg.MetadataValue.json(staged.times.as_dict()),
    }
    if staged.min_timestamp is not None and staged.max_timestamp is not None:
        metadata["min_timestamp"] = dg.MetadataValue.text(utc_text(staged.min_timestamp) or "")
        metadata["max_timestamp"] = dg.MetadataValue.text(utc_text(staged.max_timestamp) or "")
    return metadata


def check_results(outcomes: list[CheckOutcome], day: str) -> list[dg.AssetCheckResult]:
    """The checks' outcomes as Dagster check results of `day` (evidence in metadata; the day
    in the description and metadata too, for any view that does not show the partition)."""
    return [
        dg.AssetCheckResult(
            check_name=o.name,
            passed=o.passed,
            description=f"{day}: {o.description}",
            severity=dg.AssetCheckSeverity(o.severity),
            metadata={"day": day, **o.metadata},
        )
        for o in outcomes
    ]
