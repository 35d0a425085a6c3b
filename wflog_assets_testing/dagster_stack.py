"""dagster-webserver and dagster-daemon as separate processes, and a GraphQL client for them
(the UI's own path). Used by the end-to-end tests and by bench/bench_scale_out.py."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, TypeVar

from wflog_assets_testing.weed import free_ports

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PRODUCTION_DAGSTER_YAML = ROOT / "wflog_assets" / "deploy" / "dagster.yaml"
T = TypeVar("T")


QUEUED_DAGSTER_YAML = """
run_launcher:
  module: wflog_assets.defs.launcher
  class: LocalCheckedRunLauncher
run_coordinator:
  module: dagster
  class: QueuedRunCoordinator
  config:
    max_concurrent_runs: {max_runs}
telemetry:
  enabled: false
"""


@contextmanager
def running_stack(home: Path, env: dict[str, str], max_runs: int = 2) -> Iterator[DagsterStack]:
    """A webserver and a daemon on a fresh DAGSTER_HOME with a queued run coordinator, ready;
    stopped (with everything they spawned) on exit."""
    stack = DagsterStack(home, env, QUEUED_DAGSTER_YAML.format(max_runs=max_runs))
    try:
        stack.wait_ready()
        yield stack
    finally:
        stack.stop()
    assert all(p.poll() is not None for p in stack.procs)


class DagsterStack:
    """A webserver and a daemon on one DAGSTER_HOME; the daemon can be killed and restarted."""

    def __init__(self, home: Path, env: dict[str, str], dagster_yaml: str):
        (port,) = free_ports(1)
        self.url = f"http://127.0.0.1:{port}/graphql"
        self.home = home
        home.mkdir(parents=True, exist_ok=True)
        (home / "dagster.yaml").write_text(dagster_yaml)
        self.env = {**env, "DAGSTER_HOME": str(home)}
        self.workspace = ["-w", str(ROOT / "workspace.yaml")]
        self.location = ""
        self.daemons: list[subprocess.Popen[bytes]] = []
        self.webserver = self._spawn(
            "webserver", [str(BIN / "dagster-webserver"), *self.workspace, "-h", "127.0.0.1", "-p", str(port)]
        )
        # the daemon starts once the webserver has created the instance's storage (`wait_ready`):
        # started together on a fresh DAGSTER_HOME, both create its tables and one of them dies
        self.daemon: subprocess.Popen[bytes] | None = None

    def _spawn(self, name: str, cmd: list[str]) -> subprocess.Popen[bytes]:
        with open(self.home / f"{name}.log", "ab") as log:  # the child keeps its own descriptor
            return subprocess.Popen(
                cmd, cwd=ROOT, env=self.env, start_new_session=True, stdout=log, stderr=subprocess.STDOUT
            )

    @property
    def procs(self) -> list[subprocess.Popen[bytes]]:
        return [self.webserver] + ([self.daemon] if self.daemon is not None else [])

    def start_daemon(self) -> subprocess.Popen[bytes]:
        self.daemon = self._spawn("daemon", [str(BIN / "dagster-daemon"), "run", *self.workspace])
        self.daemons.append(self.daemon)
        return self.daemon

    def kill_daemon(self) -> None:
        """SIGKILL the daemon process alone, as a crash would: runs it already launched go on."""
        assert self.daemon is not None, "the daemon was never started"
        os.kill(self.daemon.pid, signal.SIGKILL)
        self.daemon.wait(timeout=30)

    def kill_daemon_group(self) -> None:
        """SIGKILL the daemon with everything it spawned (its code server, the run workers it
        launched), as when `dagster dev` is killed: nothing is left to report a run's end."""
        assert self.daemon is not None, "the daemon was never started"
        _signal_group(self.daemon.pid, signal.SIGKILL)
        self.daemon.wait(timeout=30)

    def query(self, text: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        body = json.dumps({"query": text, "variables": variables or {}}).encode()
        request = urllib.request.Request(self.url, data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            payload = json.load(response)
        assert "errors" not in payload, payload
        data: dict[str, Any] = payload["data"]
        return data

    def wait_ready(self, timeout_s: float = 120) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert all(p.poll() is None for p in self.procs), "a Dagster process exited"
            try:
                data = self.query(
                    "{ workspaceOrError { ... on Workspace { locationEntries {"
                    " name locationOrLoadError { __typename } } } } }"
                )
                entries = data["workspaceOrError"]["locationEntries"]
                if entries and entries[0]["locationOrLoadError"]["__typename"] == "RepositoryLocation":
                    self.location = entries[0]["name"]
                    if self.daemon is None:
                        self.start_daemon()
                    return
            except (urllib.error.URLError, ConnectionError):
                pass
            time.sleep(1)
        raise TimeoutError("dagster-webserver did not load the code location")

    def start_sensor(self, name: str) -> None:
        """Turn a sensor on, as its toggle in the UI does."""
        started = self.query(
            """mutation($s: SensorSelector!) { startSensor(sensorSelector: $s) {
                 __typename ... on Sensor { sensorState { status } } } }""",
            {
                "s": {
                    "repositoryLocationName": self.location,
                    "repositoryName": "__repository__",
                    "sensorName": name,
                }
            },
        )["startSensor"]
        assert started["sensorState"]["status"] == "RUNNING", started

    def partition_runs(self, partition: str) -> list[dict[str, Any]]:
        """runId, status, startTime, endTime and tags of every run of a partition, newest first."""
        runs: list[dict[str, Any]] = self.query(
            """query($day: String!) { runsOrError(filter: {tags: [{key: "dagster/partition", value: $day}]}) {
                 ... on Runs { results { runId status startTime endTime tags { key value } } } } }""",
            {"day": partition},
        )["runsOrError"]["results"]
        return runs

    def settled_runs(self, partition: str, timeout_s: float = 120) -> list[dict[str, Any]]:
        """`partition_runs` once none of them is queued, starting or running (a tick may request
        a run of the day just as the last file became queryable)."""
        deadline = time.monotonic() + timeout_s
        while True:
            runs = self.partition_runs(partition)
            busy = [r for r in runs if r["status"] in ("QUEUED", "NOT_STARTED", "STARTING", "STARTED")]
            if not busy or time.monotonic() > deadline:
                return runs
            time.sleep(2)

    def launch_asset_backfill(
        self, assets: list[str], partitions: list[str], tags: dict[str, str] | None = None
    ) -> str:
        """A backfill of assets' partitions (the asset graph's *Materialize* → *Launch backfill*,
        with the dialog's tags, which every run of the backfill carries)."""
        launched = self.query(
            """mutation($params: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $params) {
                 __typename ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message } } }""",
            {
                "params": {
                    "partitionNames": partitions,
                    "assetSelection": [{"path": [a]} for a in assets],
                    "tags": [{"key": k, "value": v} for k, v in (tags or {}).items()],
                }
            },
        )["launchPartitionBackfill"]
        assert launched["__typename"] == "LaunchBackfillSuccess", launched
        return str(launched["backfillId"])

    def backfill_status(self, backfill_id: str) -> str:
        return str(
            self.query(
                "query($id: String!) { partitionBackfillOrError(backfillId: $id) {"
                " ... on PartitionBackfill { status } } }",
                {"id": backfill_id},
            )["partitionBackfillOrError"]["status"]
        )

    def backfill_finished(self, backfill_id: str) -> bool:
        """True once the backfill completed; a failed or canceled backfill is an error."""
        status = self.backfill_status(backfill_id)
        if status in ("FAILED", "COMPLETED_FAILED", "CANCELED"):
            raise AssertionError(f"backfill {backfill_id} ended {status}; see {self.home}")
        return status in ("COMPLETED", "COMPLETED_SUCCESS")

    def wait_backfill(self, backfill_id: str, timeout_s: float) -> bool:
        return until("the backfill", lambda: self.backfill_finished(backfill_id), timeout_s=timeout_s)

    def stop(self) -> None:
        """Stop the webserver and every daemon started, with what they spawned (process groups)."""
        groups = [self.webserver, *self.daemons]
        for proc in groups:
            _signal_group(proc.pid, signal.SIGTERM)
        for proc in groups:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                _signal_group(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        for proc in self.daemons[:-1]:  # a killed daemon's code server may outlive it
            _signal_group(proc.pid, signal.SIGKILL)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def until(what: str, check: Callable[[], T | None], timeout_s: float = 300, every_s: float = 2) -> T:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every_s)
    raise TimeoutError(f"timed out waiting for {what}")
