"""A run whose worker dies with the daemon (a killed `dagster dev`) does not stay *Started*: on
the instance the project writes (`cli.EMBEDDED_INSTANCE_YAML`), run monitoring fails it after
the restart, and the source sensor requests the day again until it is exact.

weed mini (S3 + REST catalog), dagster-webserver and dagster-daemon as processes, the sensor
started over GraphQL with a 5 s interval.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import signal
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import dagster as dg
import pytest

from wflog_assets.cli import EMBEDDED_INSTANCE_YAML
from wflog_assets.defs.launcher import run_start, worker_alive
from wflog_assets.defs.sensors import SENSOR_NAME
from wflog_assets.tools.generate import gzip_lines, writer_flushes
from wflog_assets_testing.backends import rest_backend, rest_env
from wflog_assets_testing.dagster_stack import DagsterStack, until
from wflog_assets_testing.oracle import expected_rows_for_days, table_rows
from wflog_assets_testing.weed import WeedServer

MONITORING_POLL_S = 30  # `poll_interval_seconds` of the embedded instance
UNFINISHED = ("QUEUED", "NOT_STARTED", "STARTING", "STARTED", "CANCELING")


def _worker_pid(home: Path, run_id: str) -> int | None:
    """The process that started the run (its RUN_START event's), read from the instance."""
    with dg.DagsterInstance.from_config(str(home)) as instance:
        start = run_start(instance, run_id)
    return start.dagster_event.pid if start is not None and start.dagster_event is not None else None


def test_worker_health_tells_a_live_process_from_a_gone_or_reused_one():
    now = time.time()
    assert worker_alive(os.getpid(), now)
    assert not worker_alive(os.getpid(), now - 3600 * 24 * 365 * 30)  # started after the "run"
    assert not worker_alive(2**22 + 12345, now)  # beyond pid_max: no such process


def test_the_health_result_is_the_one_run_monitoring_reads():
    from dagster._core.launcher.base import CheckRunHealthResult
    from dagster._core.launcher.base import WorkerStatus as DagstersWorkerStatus

    from wflog_assets.defs.launcher import HealthResult, LocalCheckedRunLauncher, WorkerStatus

    # the test may name Dagster's private module; the package takes them from the public signature
    assert HealthResult is CheckRunHealthResult
    assert WorkerStatus is DagstersWorkerStatus
    launcher = LocalCheckedRunLauncher()
    with dg.DagsterInstance.ephemeral() as instance:
        launcher.register_instance(instance)
        run = instance.create_run_for_job(
            dg.GraphDefinition("g").to_job(), status=dg.DagsterRunStatus.STARTED
        )
        result = launcher.check_run_worker_health(run)
    assert isinstance(result, CheckRunHealthResult)
    assert result.status is DagstersWorkerStatus.UNKNOWN


@pytest.mark.integration
def test_a_run_killed_with_the_daemon_is_failed_by_monitoring_and_its_day_requested_again(
    weed: WeedServer, tmp_path: Path
):
    run = uuid.uuid4().hex[:10]
    backend = rest_backend(weed, run)
    today = dt.datetime.now(dt.UTC).date()
    with ThreadPoolExecutor(max_workers=8) as pool:
        for key, lines in writer_flushes(today, 600, seed=7):
            pool.submit(backend.store.write, key, gzip_lines(lines))
    home = tmp_path / "dagster_home"
    env = {**os.environ, **rest_env(weed, run), "WFLOG_SENSOR_INTERVAL_S": "5"}
    stack = DagsterStack(home, env, EMBEDDED_INSTANCE_YAML)
    try:
        stack.wait_ready()
        stack.start_sensor(SENSOR_NAME)

        def started() -> tuple[str, int] | None:
            for r in stack.partition_runs(today.isoformat()):
                if r["status"] == "STARTED":
                    pid = _worker_pid(home, r["runId"])
                    return (r["runId"], pid) if pid else None
            return None

        killed_run, pid = until("a sensor run of the day to start", started, timeout_s=180, every_s=0.5)
        stack.kill_daemon_group()
        with contextlib.suppress(ProcessLookupError):  # in case it was not in the daemon's group
            os.kill(pid, signal.SIGKILL)
        # SIGKILL is delivered and the process torn down asynchronously (its memory freed, its
        # orphaned entry reaped): gone within seconds, not at once
        until("the killed worker to be gone", lambda: not worker_alive(pid, time.time()), 30, 0.2)
        status = {r["runId"]: r["status"] for r in stack.partition_runs(today.isoformat())}
        assert status[killed_run] == "STARTED"  # nothing left to say it ended

        stack.start_daemon()
        time.sleep(MONITORING_POLL_S + 15)  # the restarted daemon's monitoring has polled
        status = {r["runId"]: r["status"] for r in stack.partition_runs(today.isoformat())}
        assert status[killed_run] == "FAILURE", status
        assert not [s for r, s in status.items() if r == killed_run and s in UNFINISHED]

        def settled_after_retry() -> list[dict[str, object]] | None:
            runs = stack.partition_runs(today.isoformat())
            done = runs and runs[0]["runId"] != killed_run and runs[0]["status"] not in UNFINISHED
            return runs if done else None

        runs = until("a later tick's run of the day", settled_after_retry, timeout_s=240)
        assert runs[0]["status"] == "SUCCESS", runs
        tags = {t["key"]: t["value"] for t in runs[0]["tags"]}
        assert tags["dagster/run_key"] == f"{today.isoformat()}:retry:1", tags  # the sensor's retry
        assert not [r for r in runs if r["status"] in UNFINISHED], runs
    finally:
        stack.stop()
    assert table_rows(backend.table()) == expected_rows_for_days(backend.store, [today])
