"""The production shape, reduced for CI: PostgreSQL-backed instance (the shipped dagster.yaml),
queued runs, a job backfill of 10 days over GraphQL with 2 runs at once, and the daemon
SIGKILLed and restarted in the middle. bench/bench_scale_out.py runs the full 90 days."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from wflog_assets.tools.generate import GeneratorSettings
from wflog_assets_testing.dagster_stack import PRODUCTION_DAGSTER_YAML
from wflog_assets_testing.load import ASSETS, LoadSettings, run_load
from wflog_assets_testing.postgres import PostgresServer, running_postgres
from wflog_assets_testing.weed import WeedServer

pytestmark = pytest.mark.integration  # weed mini, PostgreSQL or Dagster processes


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    with running_postgres() as server:
        yield server


@pytest.fixture
def pg_database(postgres: PostgresServer) -> Iterator[str]:
    with postgres.database() as name:
        yield name
    assert name not in postgres.psql("SELECT datname FROM pg_database").split()


def test_production_instance_config_loads_postgres_storage_and_run_queue(
    postgres: PostgresServer, pg_database: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    for key, value in {**postgres.env(pg_database), "DAGSTER_MAX_CONCURRENT_RUNS": "3"}.items():
        monkeypatch.setenv(key, value)
    (tmp_path / "dagster.yaml").write_text(PRODUCTION_DAGSTER_YAML.read_text())
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        queue = instance.get_concurrency_config().run_queue_config
        assert queue.max_concurrent_runs == 3
        limits = {limit["key"]: limit for limit in queue.tag_concurrency_limits}
        assert limits["wflog/iceberg_table"]["limit"] == 4
        assert limits["dagster/partition"]["limit"] == 1
        assert instance.run_retries_enabled
        assert instance.run_retries_max_retries == 2
        assert instance.run_monitoring_enabled
    tables = postgres.psql("SELECT tablename FROM pg_tables WHERE schemaname='public'", pg_database)
    assert {"runs", "event_logs", "jobs"} <= set(tables.split())


def test_ten_day_backfill_with_daemon_killed_midway_lands_exact_rows(
    weed: WeedServer, postgres: PostgresServer, pg_database: str, tmp_path: Path
):
    settings = LoadSettings(
        days=10,
        first_day=dt.date(2025, 11, 26),
        max_concurrent_runs=2,
        data=GeneratorSettings(rows_per_day=1500, files_per_day=3, workflows_per_day=6),
        kill_daemon_after_runs=3,
        timeout_s=900,
    )
    report = run_load(weed, postgres, pg_database, tmp_path, settings)
    print(report.as_dict())
    assert report.daemon_restarts == 1
    assert report.days_succeeded == 10
    assert report.runs_succeeded == 10
    # A run the killed daemon had dequeued but not launched stays STARTING until run monitoring
    # fails it; the instance's run retries then run that day again. Nothing else may fail.
    assert report.runs_failed == report.runs_retried <= 2
    assert report.max_runs_in_progress <= 2
    assert report.partitions_materialized == dict.fromkeys(ASSETS, 10)
    assert report.rows_per_day_ok
    assert report.duplicate_rows == 0
    assert report.snapshots == 10  # one commit per day, none twice
    assert report.run_peak_rss_mib["processes"] >= 10  # every run worker was seen and measured
