"""The daily asset graph: raw_log_chunks -> normalized_log_batches -> workflow_logs."""

import atexit
import shutil
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Callable, Sequence

import dagster as dg
import pyarrow as pa
import pyarrow.fs as pafs
from pyiceberg.catalog import Catalog

from wflog_assets.defs.partitions import partition_day
from wflog_assets.defs.resources import IcebergCatalogResource, LogSourceResource
from wflog_assets.iceberg.commit import CommitResult, commit_day, plan_reads
from wflog_assets.iceberg.data_files import SortedRun
from wflog_assets.iceberg.schema import DEFAULT_LAYOUT
from wflog_assets.quality.checks import CHECKS, CheckOutcome, DuplicateFinder, day_checks
from wflog_assets.quality.quarantine import (
    QUARANTINE_SUFFIX,
    StagedDay,
    day_quarantine,
    ensure_quarantine_table,
    summarize,
    write_quarantine,
)
from wflog_assets.source.listing import list_day
from wflog_assets.source.manifest import Manifest
from wflog_assets.source.normalize import sort_for_table
from wflog_assets.staging.pieces import StagedRuns, stage_in_pieces

GROUP = "workflow_logs"
STAGING_IO_MANAGER = "staging_io_manager"
MANIFEST_PREVIEW_ROWS = 200
# One run per day: each day is one commit and one Dagster run, so a backfill's days fail,
# retry and show status independently; the run queue decides how many days run at once.
BACKFILL_POLICY = dg.BackfillPolicy.multi_run(max_partitions_per_run=1)
KEY_LIST_LIMIT = 1000


def _keys(keys: list[str]) -> dg.MetadataValue:
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


def _manifest_metadata(manifest: Manifest, source: str) -> dict[str, dg.MetadataValue]:
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
        "ignored_objects": _keys(list(manifest.ignored)),
    }


def commit_layout_day(
    context: dg.AssetExecutionContext,
    iceberg: IcebergCatalogResource,
    catalog: Catalog,
    layout: str,
    manifest: pa.Table,
    rows: pa.Table | list[SortedRun],
    observe: Callable[[pa.Table], None] | None = None,
    staged: StagedRuns | None = None,
) -> tuple[dg.MaterializeResult, CommitResult]:
    """Commit one day's good rows (a table, or sorted runs) to `layout`'s table in one snapshot."""
    started = time.monotonic()
    day_manifest = Manifest.from_arrow(manifest)
    identifier = iceberg.layout_identifier(layout)
    iceberg.ensure_table(layout, catalog)
    if isinstance(rows, pa.Table) and layout != DEFAULT_LAYOUT:  # ordered for production
        rows = sort_for_table(rows, layout)
    result = commit_day(
        lambda: catalog.load_table(identifier),
        day_manifest,
        rows,
        observe=observe,
        staged=None if staged is None or staged.read_keys is None else staged.read_keys,
        planned=None if staged is None else staged.planned,
    )
    context.log.info(
        f"{result.day} -> {identifier}: {result.outcome}, {result.rows_written} "
        f"rows written, {result.rows_deleted} deleted, snapshot {result.snapshot_id}"
    )
    written_keys = set(result.files_added) | set(result.files_changed)
    source_bytes = sum(e.size for e in day_manifest.entries if e.key in written_keys)
    return dg.MaterializeResult(
        metadata={
            "table": dg.MetadataValue.text(identifier),
            "layout": dg.MetadataValue.text(layout),
            "outcome": dg.MetadataValue.text(result.outcome),
            "snapshot_id": dg.MetadataValue.text(str(result.snapshot_id)),
            "rows_written": dg.MetadataValue.int(result.rows_written),
            "rows_deleted": dg.MetadataValue.int(result.rows_deleted),
            "data_files_written": dg.MetadataValue.int(result.data_files_written),
            "source_files_ingested": dg.MetadataValue.int(len(written_keys)),
            "source_files_in_day": dg.MetadataValue.int(len(day_manifest.entries)),
            "source_files_added": _keys(result.files_added),
            "source_files_changed": _keys(result.files_changed),
            "source_files_removed": _keys(result.files_removed),
            "source_bytes_ingested": dg.MetadataValue.int(source_bytes),
            "manifest_digest": dg.MetadataValue.text(result.manifest_digest),
            "commit_attempts": dg.MetadataValue.int(result.attempts),
            "phase_seconds": dg.MetadataValue.json(result.times),
            "day_rows": dg.MetadataValue.int(-1 if result.day_rows is None else result.day_rows),
            "duration_s": dg.MetadataValue.float(round(time.monotonic() - started, 3)),
        }
    ), result


def _log_kept_out(context: dg.AssetExecutionContext, staged: StagedRuns, summary: StagedDay) -> None:
    """A warning per rejected file or line and per quarantined file and reason (the first 50)."""
    for reject in staged.rejected[:50]:
        context.log.warning(f"file not ingested: {reject.key}: {reject.reason}")
    for issue in staged.line_issues[:50]:
        context.log.warning(f"line not ingested: {issue.key} line {issue.line}: {issue.reason}")
    for row in summary.quarantined.slice(0, 50).to_pylist():
        context.log.warning(
            f"quarantined: {row['source_file']}: {row['rows']} record(s): {row['quarantine_reason']}"
        )


def _staged_metadata(
    manifest: Manifest, to_read: Manifest, staged: StagedRuns, summary: StagedDay
) -> dict[str, dg.MetadataValue]:
    """What `normalized_log_batches` read, staged and kept out."""
    removed = staged.planned.plan.removed if staged.planned is not None else ()
    rejected = [(r.key, -1, r.reason) for r in staged.rejected] + [
        (i.key, i.line if i.line is not None else -1, i.reason) for i in staged.line_issues
    ]
    metadata: dict[str, dg.MetadataValue] = {
        "rows": dg.MetadataValue.int(staged.accepted_rows),
        "source_files": dg.MetadataValue.int(staged.source_files),
        "files_in_day": dg.MetadataValue.int(len(manifest.entries)),
        "files_read": dg.MetadataValue.int(len(to_read.entries)),
        "files_already_committed": dg.MetadataValue.int(len(manifest.entries) - len(to_read.entries)),
        "files_gone": dg.MetadataValue.int(len(removed)),
        "rejected_files": dg.MetadataValue.int(len(staged.rejected)),
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
        metadata["min_timestamp"] = dg.MetadataValue.float(staged.min_timestamp)
        metadata["max_timestamp"] = dg.MetadataValue.float(staged.max_timestamp)
    return metadata


def _check_results(outcomes: list[CheckOutcome]) -> list[dg.AssetCheckResult]:
    return [
        dg.AssetCheckResult(
            check_name=o.name,
            passed=o.passed,
            description=o.description,
            severity=dg.AssetCheckSeverity(o.severity),
            metadata=o.metadata,
        )
        for o in outcomes
    ]


def build_log_assets(partitions_def: dg.PartitionsDefinition) -> Sequence[dg.AssetsDefinition]:
    """The three daily assets, sharing `partitions_def`."""
    with warnings.catch_warnings():
        # backfill_policy is beta in Dagster 1.13; we use it deliberately (one run per day)
        warnings.filterwarnings("ignore", message=".*backfill_policy", category=dg.BetaWarning)
        return _build_log_assets(partitions_def)


def _build_log_assets(partitions_def: dg.PartitionsDefinition) -> Sequence[dg.AssetsDefinition]:
    raw = _raw_log_chunks_asset(partitions_def)
    normalized = _normalized_log_batches_asset(partitions_def)
    return [raw, normalized, _workflow_logs_asset(partitions_def, raw, normalized)]


def _raw_log_chunks_asset(partitions_def: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    @dg.asset(
        partitions_def=partitions_def,
        backfill_policy=BACKFILL_POLICY,
        io_manager_key=STAGING_IO_MANAGER,
        group_name=GROUP,
        kinds={"s3", "parquet"},
    )
    def raw_log_chunks(
        context: dg.AssetExecutionContext, log_source: LogSourceResource
    ) -> dg.MaterializeResult[pa.Table]:
        """Manifest of the day's chunk files in the source (key, size, ETag, last-modified)."""
        manifest = list_day(log_source.object_store(), partition_day(context.partition_key))
        context.log.info(
            f"{len(manifest.entries)} files, {manifest.total_bytes} bytes for "
            f"{manifest.day} in {log_source.describe()}"
        )
        if manifest.ignored:
            context.log.warning(
                f"{len(manifest.ignored)} object(s) under the day are not chunk files "
                f"(.parquet / .json.gz) and were not read: {list(manifest.ignored)[:20]}"
            )
        return dg.MaterializeResult(
            value=manifest.to_arrow(),
            metadata=_manifest_metadata(manifest, log_source.describe()),
        )

    return raw_log_chunks


def _normalized_log_batches_asset(partitions_def: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    @dg.asset(
        partitions_def=partitions_def,
        backfill_policy=BACKFILL_POLICY,
        io_manager_key=STAGING_IO_MANAGER,
        group_name=GROUP,
        kinds={"pyarrow", "parquet"},
    )
    def normalized_log_batches(
        context: dg.AssetExecutionContext,
        raw_log_chunks: pa.Table,
        log_source: LogSourceResource,
        iceberg: IcebergCatalogResource,
    ) -> dg.MaterializeResult[StagedRuns]:
        """The rows of the day's new and changed files as sorted runs, plus everything kept out."""
        started = time.monotonic()
        manifest = Manifest.from_arrow(raw_log_chunks)
        planned = plan_reads(iceberg.existing_table(iceberg.load_catalog()), manifest)
        plan = planned.plan
        wanted = set(plan.write_keys)
        to_read = Manifest.build(manifest.day, (e for e in manifest.entries if e.key in wanted))
        context.log.info(
            f"{len(to_read.entries)} of {len(manifest.entries)} files to read "
            f"({len(plan.added)} new, {len(plan.changed)} changed), {len(plan.removed)} gone"
        )
        spill = tempfile.mkdtemp(prefix="wflog-spill-")
        atexit.register(shutil.rmtree, spill, ignore_errors=True)
        staged = stage_in_pieces(
            log_source.object_store(),
            to_read,
            pafs.LocalFileSystem(),
            spill,
            max_workers=log_source.read_workers,
            piece_rows=log_source.piece_rows,
            part_rows=log_source.part_rows,
            fetch_workers=log_source.fetch_workers,
        )
        staged.planned = planned
        summary = staged.summary()
        _log_kept_out(context, staged, summary)
        metadata = _staged_metadata(manifest, to_read, staged, summary)
        metadata["duration_s"] = dg.MetadataValue.float(round(time.monotonic() - started, 3))
        return dg.MaterializeResult(value=staged, metadata=metadata)

    return normalized_log_batches


def _workflow_logs_asset(
    partitions_def: dg.PartitionsDefinition,
    raw_log_chunks: dg.AssetsDefinition,
    normalized_log_batches: dg.AssetsDefinition,
) -> dg.AssetsDefinition:
    @dg.asset(
        partitions_def=partitions_def,
        backfill_policy=BACKFILL_POLICY,
        group_name=GROUP,
        kinds={"iceberg"},
        check_specs=[
            dg.AssetCheckSpec(name, asset="workflow_logs", description=description)
            for name, (_, description) in CHECKS.items()
        ],
        ins={
            "manifest": dg.AssetIn(key=raw_log_chunks.key),
            "normalized_log_batches": dg.AssetIn(key=normalized_log_batches.key),
        },
    )
    def workflow_logs(
        context: dg.AssetExecutionContext,
        manifest: pa.Table,
        normalized_log_batches: StagedRuns,
        iceberg: IcebergCatalogResource,
    ) -> dg.MaterializeResult:
        """The Iceberg table of workflow logs: the day committed in one snapshot."""
        catalog = iceberg.load_catalog()
        staged_runs = normalized_log_batches
        quarantined = staged_runs.kept_out
        seen = DuplicateFinder()  # fed by the write's own pass over the rows
        committed, result = commit_layout_day(
            context,
            iceberg,
            catalog,
            DEFAULT_LAYOUT,
            manifest,
            staged_runs.readable(),
            observe=seen.add,
            staged=staged_runs,
        )
        day = Manifest.from_arrow(manifest).day
        quarantine_id = iceberg.identifier(QUARANTINE_SUFFIX)
        replaced = (
            None if staged_runs.read_keys is None else set(staged_runs.read_keys) | set(result.files_removed)
        )
        quarantine = ensure_quarantine_table(catalog, quarantine_id)
        snapshot = write_quarantine(quarantine, day, quarantined, replaced)
        expected = (
            result.day_rows
            if result.outcome == "unchanged"
            else (result.rows_kept + staged_runs.accepted_in(result.files_added + result.files_changed))
        )
        outcomes = day_checks(
            catalog.load_table(iceberg.layout_identifier()),
            day,
            staged_runs.summary(),
            staged_runs.readable(),
            seen=seen,
            expected_rows=expected,
            kept=summarize(day_quarantine(quarantine, day)),
        )
        staged_runs.discard()  # committed: the table holds the rows now
        metadata = {
            **(committed.metadata or {}),
            "quarantine_table": dg.MetadataValue.text(quarantine_id),
            "quarantined_records": dg.MetadataValue.int(quarantined.num_rows),
            "quarantine_snapshot_id": dg.MetadataValue.text(str(snapshot)),
        }
        return dg.MaterializeResult(metadata=metadata, check_results=_check_results(outcomes))

    return workflow_logs
