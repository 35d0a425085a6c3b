"""Through Dagster itself: dagster-webserver + dagster-daemon, a backfill launched over GraphQL
(the UI's path), and the sensor launching a run for a newly uploaded day."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from wflog_assets.defs.sensors import DIGEST_TAG, SENSOR_NAME
from wflog_assets.generate import GeneratorSettings, generate_day
from wflog_assets_tests.conftest import Backend, rest_backend, rest_env
from wflog_assets_tests.oracle import expected_rows_for_days, table_rows
from wflog_assets_tests.weed import WeedServer, free_ports

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ASSETS = ["raw_log_chunks", "normalized_log_batches", "workflow_logs"]
SMALL = GeneratorSettings(rows_per_day=500, files_per_day=2, workflows_per_day=4)
DAYS = [dt.date(2025, 12, 1) + dt.timedelta(days=i) for i in range(3)]
NEW_DAY = dt.date(2025, 12, 4)
DAGSTER_YAML = """
run_coordinator:
  module: dagster._core.run_coordinator
  class: QueuedRunCoordinator
  config:
    max_concurrent_runs: 2
telemetry:
  enabled: false
"""


class Dagster:
    """A webserver and a daemon as separate processes, and a GraphQL client."""

    def __init__(self, home: Path, env: dict[str, str]):
        (port,) = free_ports(1)
        self.url = f"http://127.0.0.1:{port}/graphql"
        home.mkdir(parents=True, exist_ok=True)
        (home / "dagster.yaml").write_text(DAGSTER_YAML)
        env = {**env, "DAGSTER_HOME": str(home)}
        workspace = ["-w", str(ROOT / "workspace.yaml")]
        self.procs = [
            subprocess.Popen([str(BIN / "dagster-webserver"), *workspace, "-h", "127.0.0.1",
                              "-p", str(port)], cwd=ROOT, env=env, start_new_session=True,
                             stdout=open(home / "webserver.log", "wb"), stderr=subprocess.STDOUT),
            subprocess.Popen([str(BIN / "dagster-daemon"), "run", *workspace], cwd=ROOT, env=env,
                             start_new_session=True, stdout=open(home / "daemon.log", "wb"),
                             stderr=subprocess.STDOUT),
        ]

    def query(self, text: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        body = json.dumps({"query": text, "variables": variables or {}}).encode()
        request = urllib.request.Request(self.url, data=body,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            payload = json.load(response)
        assert "errors" not in payload, payload
        return payload["data"]

    def wait_ready(self, timeout_s: float = 120) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert all(p.poll() is None for p in self.procs), "a Dagster process exited"
            try:
                data = self.query("{ workspaceOrError { ... on Workspace { locationEntries {"
                                  " name locationOrLoadError { __typename } } } } }")
                entries = data["workspaceOrError"]["locationEntries"]
                if entries and entries[0]["locationOrLoadError"]["__typename"] == "RepositoryLocation":
                    self.location = entries[0]["name"]
                    return
            except (urllib.error.URLError, ConnectionError):
                pass
            time.sleep(1)
        raise TimeoutError("dagster-webserver did not load the code location")

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


def _until(what: str, check, timeout_s: float = 300, every_s: float = 2):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every_s)
    raise TimeoutError(f"timed out waiting for {what}")


@pytest.fixture
def stack(weed: WeedServer, tmp_path: Path) -> Iterator[tuple[Dagster, Backend]]:
    run = uuid.uuid4().hex[:10]
    backend = rest_backend(weed, run)
    env = {**os.environ, **rest_env(weed, run), "WFLOG_SENSOR_INTERVAL_S": "5"}
    dagster = Dagster(tmp_path / "dagster_home", env)
    try:
        dagster.wait_ready()
        yield dagster, backend
    finally:
        dagster.stop()
    assert all(p.poll() is not None for p in dagster.procs)


def _write(backend: Backend, day: dt.date) -> None:
    for key, data in generate_day(day, SMALL):
        backend.store.write(key, data)


def test_ui_backfill_then_sensor_run_for_a_new_day(stack: tuple[Dagster, Backend]):
    dagster, backend = stack
    for day in DAYS:
        _write(backend, day)

    launched = dagster.query(
        """mutation($params: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $params) {
             __typename ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message } } }""",
        {"params": {"partitionNames": [d.isoformat() for d in DAYS],
                    "assetSelection": [{"path": [a]} for a in ASSETS]}},
    )["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched
    backfill_id = launched["backfillId"]

    def backfill_done() -> str | None:
        status = dagster.query(
            "query($id: String!) { partitionBackfillOrError(backfillId: $id) {"
            " ... on PartitionBackfill { status } } }", {"id": backfill_id},
        )["partitionBackfillOrError"]["status"]
        assert status not in ("FAILED", "COMPLETED_FAILED", "CANCELED"), status
        return status if status in ("COMPLETED", "COMPLETED_SUCCESS") else None

    _until("the backfill", backfill_done, timeout_s=420)
    stats = dagster.query("{ assetNodes { assetKey { path } partitionStats { numMaterialized } } }")
    materialized = {n["assetKey"]["path"][-1]: n["partitionStats"]["numMaterialized"]
                    for n in stats["assetNodes"] if n["assetKey"]["path"][-1] in ASSETS}
    assert materialized == dict.fromkeys(ASSETS, len(DAYS))
    assert table_rows(backend.table()) == expected_rows_for_days(backend.store, DAYS)

    started = dagster.query(
        """mutation($s: SensorSelector!) { startSensor(sensorSelector: $s) {
             __typename ... on Sensor { sensorState { status } } } }""",
        {"s": {"repositoryLocationName": dagster.location, "repositoryName": "__repository__",
               "sensorName": SENSOR_NAME}},
    )["startSensor"]
    assert started["sensorState"]["status"] == "RUNNING", started
    _write(backend, NEW_DAY)

    def new_day_run() -> dict[str, Any] | None:
        runs = dagster.query(
            """query($day: String!) { runsOrError(filter: {tags: [{key: "dagster/partition", value: $day}]}) {
                 ... on Runs { results { status tags { key value } } } } }""",
            {"day": NEW_DAY.isoformat()},
        )["runsOrError"]["results"]
        assert all(r["status"] not in ("FAILURE", "CANCELED") for r in runs), runs
        return next((r for r in runs if r["status"] == "SUCCESS"), None)

    run = _until("the sensor's run for the new day", new_day_run, timeout_s=300)
    tags = {t["key"]: t["value"] for t in run["tags"]}
    assert tags["dagster/sensor_name"] == SENSOR_NAME
    assert DIGEST_TAG in tags
    assert table_rows(backend.table()) == expected_rows_for_days(backend.store, [*DAYS, NEW_DAY])
