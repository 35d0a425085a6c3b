"""Dagster's local run launcher, plus the worker health check that run monitoring needs to fail a
run whose process is gone (a killed `dagster dev`, an OOM-killed or SIGKILLed run worker).

`DefaultRunLauncher` cannot tell a live run from a dead one, so without this a run whose worker
died stays *Started* for ever and its day stays *Materializing*. With it, the daemon's run
monitoring (`run_monitoring` in the instance's `dagster.yaml`) marks such a run *Failure* at its
next poll, and the source sensor requests the day again (`defs/sensors.py`).

It judges the process on the host where it runs, so it is for one host (the embedded default,
`dagster dev`, a single VM); on Kubernetes the dagster-k8s launcher checks its own Jobs.
"""

from __future__ import annotations

import os
from pathlib import Path

from dagster import DagsterEventType, DagsterRun, DefaultRunLauncher
from dagster._core.launcher.base import CheckRunHealthResult, WorkerStatus

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


class LocalCheckedRunLauncher(DefaultRunLauncher):
    """`DefaultRunLauncher` whose runs' worker processes run monitoring can check."""

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: DagsterRun) -> CheckRunHealthResult:
        records = self._instance.get_records_for_run(
            run.run_id, of_type=DagsterEventType.RUN_START, limit=1
        ).records
        start = records[0].event_log_entry if records else None
        if start is None or start.dagster_event is None:
            return CheckRunHealthResult(WorkerStatus.UNKNOWN, "the run has not started yet")
        pid = start.dagster_event.pid
        if pid is None:
            return CheckRunHealthResult(WorkerStatus.UNKNOWN, "the run's start names no process")
        if worker_alive(pid, start.timestamp):
            return CheckRunHealthResult(WorkerStatus.RUNNING)
        return CheckRunHealthResult(
            WorkerStatus.FAILED, f"run worker process {pid} is gone (killed, or its host restarted)"
        )


def worker_alive(pid: int, started_at: float) -> bool:
    """Whether process `pid`, which started a run at `started_at` (epoch seconds), still runs:
    it exists, is not a zombie, and (where /proc tells) did not start after the run did (a new
    process that reused the number)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        lines = Path("/proc/stat").read_text().splitlines()
        boot = next(float(line.split()[1]) for line in lines if line.startswith("btime"))
    except (OSError, StopIteration):
        return True  # no /proc here: the process exists, that is all one can tell
    fields = stat.rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
    state, started_ticks = fields[0], int(fields[19])
    return state not in ("Z", "X") and boot + started_ticks / _CLOCK_TICKS <= started_at + 2
