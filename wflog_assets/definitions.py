"""The code location's only entry point."""

from __future__ import annotations

from collections.abc import Mapping

import dagster as dg

from wflog_assets.defs import settings
from wflog_assets.defs.assets import build_log_assets
from wflog_assets.defs.layout_study import build_layout_study
from wflog_assets.defs.maintenance import build_day_compaction, build_maintenance
from wflog_assets.defs.partitions import daily_partitions, monthly_partitions
from wflog_assets.defs.resources import IcebergCatalogResource, LocalLogSource
from wflog_assets.defs.sensors import build_source_sensor

INGEST_JOB = "ingest_workflow_logs"
LAYOUT_JOB = "load_layout_tables"
# Run tag naming the Iceberg table a run commits to: the production run queue limits runs per
# table with it (wflog_assets/deploy/dagster.yaml, tag_concurrency_limits).
TABLE_TAG = "wflog/iceberg_table"


def build_definitions(
    resources: Mapping[str, object],
    start_date: str,
    sensor_lookback_days: int = 3,
    sensor_interval_s: int = 60,
    end_date: str | None = None,
) -> dg.Definitions:
    """Assets, job, sensor and resources for one configuration (tests pass their own)."""
    partitions = daily_partitions(start_date, end_date)
    source = resources.get("log_source")
    assets = build_log_assets(partitions, "file" if isinstance(source, LocalLogSource) else "s3")
    catalog = resources.get("iceberg")
    tags = {TABLE_TAG: catalog.identifier()} if isinstance(catalog, IcebergCatalogResource) else {}
    ingest = dg.define_asset_job(
        INGEST_JOB,
        selection=dg.AssetSelection.assets(*assets),
        description="List, normalize and commit one day of workflow logs.",
        tags=tags,
    )
    study = build_layout_study(partitions, assets)
    layout_tables = dg.define_asset_job(
        LAYOUT_JOB,
        selection=dg.AssetSelection.assets(*study[:-1]),
        description="Load staged days into the bucket layouts' tables (the layout study).",
    )
    sensor = build_source_sensor(ingest, partitions, sensor_lookback_days, sensor_interval_s)
    maintenance, maintenance_job, maintenance_schedule = build_maintenance(
        monthly_partitions(start_date), assets[-1], tags
    )
    compaction, compaction_job, compaction_sensor = build_day_compaction(
        partitions, assets[-1], tags, lookback_days=sensor_lookback_days
    )
    # A day's steps form a chain (list -> normalize -> commit) with nothing to run in parallel,
    # and the staged batches cross steps as Parquet files, not memory: running them in the run's
    # own process saves two interpreter start-ups per run (bench/bench_scale_out.py).
    return dg.Definitions(
        assets=[*assets, *study, maintenance, compaction],
        jobs=[ingest, layout_tables, maintenance_job, compaction_job],
        sensors=[sensor, compaction_sensor],
        schedules=[maintenance_schedule],
        resources=dict(resources),
        executor=dg.in_process_executor,
    )


@dg.definitions
def defs() -> dg.Definitions:
    """Definitions configured from the environment (README, "Configuration")."""
    return build_definitions(
        settings.resources_from_env(),
        settings.start_date(),
        sensor_lookback_days=settings.sensor_lookback_days(),
        sensor_interval_s=settings.sensor_interval_s(),
        end_date=settings.end_date(),
    )
