"""Maintenance of the production table: monthly compaction and snapshot expiry, and the
compaction of each closed day."""

import datetime as dt
import time
from typing import Any

import dagster as dg
from pydantic import Field

from wflog_assets.defs.partitions import partition_day, partition_month
from wflog_assets.defs.resources import IcebergCatalogResource
from wflog_assets.iceberg.maintenance import (
    CompactionResult,
    OrphanCleanup,
    compact_day,
    compact_month,
    expire_snapshots,
    manifest_count,
    remove_orphan_files,
)

GROUP = "maintenance"
MAINTENANCE_JOB = "maintain_workflow_logs"


def compaction_metadata(label: str, result: CompactionResult) -> dict[str, dg.MetadataValue]:
    """What a compaction did, for a materialization (`label`: what was compacted)."""
    return {
        label: dg.MetadataValue.text(result.month),
        "partitions": dg.MetadataValue.int(result.partitions),
        "partitions_compacted": dg.MetadataValue.int(result.partitions_compacted),
        "files_before": dg.MetadataValue.int(result.files_before),
        "files_after": dg.MetadataValue.int(result.files_after),
        "rows_rewritten": dg.MetadataValue.int(result.rows),
        "snapshot_id": dg.MetadataValue.text(str(result.snapshot_id)),
        "commit_attempts": dg.MetadataValue.int(result.attempts),
    }


def orphan_metadata(orphans: OrphanCleanup) -> dict[str, dg.MetadataValue]:
    return {
        "orphan_files_removed": dg.MetadataValue.int(orphans.files),
        "orphan_bytes_removed": dg.MetadataValue.int(orphans.bytes),
        "orphan_files_too_recent": dg.MetadataValue.int(orphans.too_recent),
    }


ORPHAN_WINDOW_DESCRIPTION = (
    "Files in the table's folder that no snapshot references (written by runs killed before "
    "their commit, or left by snapshot expiry: data files, manifests, manifest lists, day state "
    "files) are deleted once older than this many hours; newer ones may belong to a run still "
    "committing."
)


class DayCompactionConfig(dg.Config):
    """How a closed day's compaction run treats the table."""

    remove_orphans_older_than_hours: int = Field(default=72, ge=1, description=ORPHAN_WINDOW_DESCRIPTION)


class MaintenanceConfig(dg.Config):
    """How a month's maintenance run treats the table."""

    expire_snapshots_older_than_days: int = Field(
        default=7,
        ge=0,
        description="Snapshots older than this many days are expired after compaction (the "
        "current one never is); 0 expires every older snapshot. Time travel reaches "
        "back this far.",
    )
    remove_orphans_older_than_hours: int = Field(default=72, ge=1, description=ORPHAN_WINDOW_DESCRIPTION)


def build_maintenance(
    monthly: dg.MonthlyPartitionsDefinition,
    workflow_logs: dg.AssetsDefinition,
    run_tags: dict[str, str],
) -> tuple[dg.AssetsDefinition, Any, Any]:  # Any: define_asset_job's and the schedule's types
    """The maintenance asset, its job (runs tagged like the ingest runs: they commit to the same
    table) and a schedule on the 2nd of each month for the month before (off until started)."""

    @dg.asset(
        partitions_def=monthly,
        group_name=GROUP,
        kinds={"iceberg"},
        deps=[workflow_logs],
    )
    def workflow_logs_maintenance(
        context: dg.AssetExecutionContext,
        config: MaintenanceConfig,
        iceberg: IcebergCatalogResource,
    ) -> dg.MaterializeResult[None]:
        """The month's files compacted to one sorted file per partition; old snapshots and orphans removed."""
        started = time.monotonic()
        year, month = partition_month(context.partition_key)
        catalog = iceberg.load_catalog()
        iceberg.ensure_table(catalog=catalog)
        identifier = iceberg.layout_identifier()
        result = compact_month(lambda: catalog.load_table(identifier), year, month)
        cutoff = dt.datetime.now(dt.UTC) - dt.timedelta(days=config.expire_snapshots_older_than_days)
        table = catalog.load_table(identifier)
        expired = expire_snapshots(table, cutoff)
        table = catalog.load_table(identifier)
        window = dt.timedelta(hours=config.remove_orphans_older_than_hours)
        orphans = remove_orphan_files(table, dt.datetime.now(dt.UTC) - window)
        context.log.info(
            f"{identifier} {result.month}: {result.partitions_compacted} of {result.partitions} "
            f"partitions compacted ({result.files_before} -> {result.files_after} files, "
            f"{result.rows} rows), {expired} snapshots expired, {orphans.files} orphan "
            f"files removed ({orphans.bytes} bytes)"
        )
        return dg.MaterializeResult(
            metadata={
                **compaction_metadata("month", result),
                "manifests": dg.MetadataValue.int(manifest_count(table)),
                "snapshots_expired": dg.MetadataValue.int(expired),
                "snapshots_kept": dg.MetadataValue.int(len(table.snapshots())),
                **orphan_metadata(orphans),
                "duration_s": dg.MetadataValue.float(round(time.monotonic() - started, 3)),
            }
        )

    job = dg.define_asset_job(
        MAINTENANCE_JOB,
        selection=dg.AssetSelection.assets(workflow_logs_maintenance),
        description="Compact a month of the workflow_logs table and expire old snapshots.",
        tags=run_tags,
    )
    schedule = dg.build_schedule_from_partitioned_job(
        job,
        hour_of_day=3,
        day_of_month=2,
        default_status=dg.DefaultScheduleStatus.STOPPED,
    )
    return workflow_logs_maintenance, job, schedule


DAY_COMPACTION_JOB = "compact_closed_days"
DAY_COMPACTION_SENSOR = "wflog_day_compaction_sensor"
WRITTEN = ("appended", "replaced")


def _latest_storage_id(instance: dg.DagsterInstance, key: dg.AssetKey, day: str) -> int:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, asset_partitions=[day]), limit=1
    ).records
    return records[0].storage_id if records else 0


def written_since(instance: dg.DagsterInstance, logs: dg.AssetKey, day: str, after: int) -> bool:
    """Whether a `workflow_logs` run of the day wrote rows after storage id `after`."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=logs, asset_partitions=[day], after_storage_id=after), limit=1000
    ).records
    for record in records:
        mat = record.asset_materialization
        outcome = mat.metadata.get("outcome") if mat is not None else None
        if outcome is not None and outcome.value in WRITTEN:
            return True
    return False


def build_day_compaction(
    daily: dg.TimeWindowPartitionsDefinition,
    workflow_logs: dg.AssetsDefinition,
    run_tags: dict[str, str],
    grace_hours: int = 2,
    lookback_days: int = 3,
    interval_s: int = 300,
) -> tuple[dg.AssetsDefinition, Any, dg.SensorDefinition]:
    """A closed day's files compacted to one per partition: the asset, its job, and a sensor
    that requests it once a day has ended (plus `grace_hours`) and after every later run of the
    day that wrote rows (a late file adds a file; the day is compacted again)."""

    @dg.asset(
        name="workflow_logs_day_compaction",
        partitions_def=daily,
        group_name=GROUP,
        kinds={"iceberg"},
        deps=[workflow_logs],
    )
    def day_compaction(
        context: dg.AssetExecutionContext, config: DayCompactionConfig, iceberg: IcebergCatalogResource
    ) -> dg.MaterializeResult[None]:
        """The day's data files compacted to one sorted file per (workflow, month) partition."""
        started = time.monotonic()
        day = partition_day(context.partition_key)
        catalog = iceberg.load_catalog()
        identifier = iceberg.layout_identifier()
        result = compact_day(lambda: catalog.load_table(identifier), day)
        # what snapshot expiry (after every ingest commit) left behind, once a day
        window = dt.timedelta(hours=config.remove_orphans_older_than_hours)
        orphans = remove_orphan_files(catalog.load_table(identifier), dt.datetime.now(dt.UTC) - window)
        context.log.info(
            f"{identifier} {day}: {result.partitions_compacted} of "
            f"{result.partitions} partitions compacted ({result.files_before} -> "
            f"{result.files_after} files, {result.rows} rows); {orphans.files} orphan files removed"
        )
        return dg.MaterializeResult(
            metadata={
                **compaction_metadata("day", result),
                **orphan_metadata(orphans),
                "duration_s": dg.MetadataValue.float(round(time.monotonic() - started, 3)),
            }
        )

    job = dg.define_asset_job(
        DAY_COMPACTION_JOB,
        selection=dg.AssetSelection.assets(day_compaction),
        description="Compact a closed day of the workflow_logs table to one file per partition.",
        tags=run_tags,
    )

    @dg.sensor(
        name=DAY_COMPACTION_SENSOR,
        job=job,
        minimum_interval_seconds=interval_s,
        default_status=dg.DefaultSensorStatus.STOPPED,
        description=f"Compacts each day {grace_hours} h after it ended (UTC), and again "
        f"after a late file was ingested ({lookback_days} days back).",
    )
    def day_compaction_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        closed = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=grace_hours)).date()
        requests: list[dg.RunRequest] = []
        for back in range(1, lookback_days + 1):
            day = (closed - dt.timedelta(days=back)).isoformat()
            if not daily.has_partition_key(day):
                continue
            compacted = _latest_storage_id(context.instance, day_compaction.key, day)
            if written_since(context.instance, workflow_logs.key, day, compacted):
                requests.append(dg.RunRequest(partition_key=day, run_key=f"{day}:{compacted}"))
        if not requests:
            return dg.SensorResult(
                skip_reason=dg.SkipReason(
                    f"no closed day (ended {grace_hours} h ago or earlier) has rows written since "
                    f"its last compaction"
                )
            )
        return dg.SensorResult(run_requests=requests)

    return day_compaction, job, day_compaction_sensor
