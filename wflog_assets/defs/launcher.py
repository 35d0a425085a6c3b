"""Dagster's local run launcher, plus the worker health check that run monitoring needs to fail a
run whose process is gone (a killed `dagster dev`, an OOM-killed or SIGKILLed run worker).

`DefaultRunLauncher` cannot tell a live run from a dead one, so without this a run whose worker
died stays *Started* for ever and its day stays *Materializing*. With it, the daemon's run
monitoring (`run_monitoring` in the instance's `dagster.yaml`) marks such a run *Failure* at its
next poll, and the source sensor requests the day again (`defs/sensors.py`).

It judges the process on the host where it runs, so it is for one host (the embedded default,
`dagster dev`, a single VM); on Kubernetes the dagster-k8s launcher checks its own Jobs.

`PreloadedRunLauncher` also starts each run worker warm. Dagster's code server starts a fresh
interpreter per run, which imports Dagster, pyarrow, pyiceberg, SQLAlchemy and boto3 again:
1.6 s of a 2.7 s run for one late file of a day (docs/benchmarks.md, "The current writer's
stream"). It
runs each run as `dagster api execute_run` does instead, in a process forked from a template
process (`defs/warm.py`) that has imported those libraries once. The project's own modules are
not in the template, so every run imports them afresh and picks up edited code as the code
server does; only the package's process settings (`__init__`, `allocator`, `heap`) and the
template itself load once per launcher process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from dagster import DagsterEventType, DagsterInstance, DagsterRun, DefaultRunLauncher, EventLogEntry
from dagster._core.errors import DagsterLaunchFailedError
from dagster._core.launcher.base import CheckRunHealthResult, LaunchRunContext, WorkerStatus

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


class LocalCheckedRunLauncher(DefaultRunLauncher):
    """`DefaultRunLauncher` whose runs' worker processes run monitoring can check."""

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: DagsterRun) -> CheckRunHealthResult:
        start = run_start(self._instance, run.run_id)
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


def run_start(instance: DagsterInstance, run_id: str) -> EventLogEntry | None:
    """The run's RUN_START event, written by its worker process (whose pid it carries)."""
    records = instance.get_records_for_run(run_id, of_type=DagsterEventType.RUN_START, limit=1).records
    return records[0].event_log_entry if records else None


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


# Run tag: the worker's process and when it was forked ("<pid>@<epoch s>"), for `terminate`.
WORKER_TAG = "wflog/run_worker"


class PreloadedRunLauncher(LocalCheckedRunLauncher):
    """`LocalCheckedRunLauncher` whose run workers are forked from a template process that has
    loaded Dagster and the data libraries once (`defs/warm.py`), not started as fresh
    interpreters."""

    def launch_run(self, context: LaunchRunContext) -> None:
        from dagster._grpc.types import ExecuteRunArgs
        from dagster._serdes import serialize_value

        run = context.dagster_run
        origin = run.job_code_origin
        if not hasattr(os, "fork") or origin is None or not _same_interpreter(origin.executable_path):
            super().launch_run(context)  # through the code server, as Dagster does
            return
        args = ExecuteRunArgs(job_origin=origin, run_id=run.run_id, instance_ref=self._instance.get_ref())
        pid = _TEMPLATE.fork(serialize_value(args), dict(os.environ))
        self._instance.add_run_tags(run.run_id, {WORKER_TAG: f"{pid}@{time.time():.3f}"})
        self._run_ids.add(run.run_id)

    def terminate(self, run_id: str) -> bool:
        """Interrupt the run's worker (what the code server does on cancel): the run ends
        *Canceled*."""
        run = self._instance.get_run_by_id(run_id)
        if run is None or run.is_finished or WORKER_TAG not in run.tags:
            return bool(super().terminate(run_id))
        pid, launched = run.tags[WORKER_TAG].split("@")
        self._instance.report_run_canceling(run)
        if not worker_alive(int(pid), float(launched)):
            return False
        os.kill(int(pid), signal.SIGINT)
        return True


class _Template:
    """This process's template (`python -m wflog_assets.defs.warm`), started at the first
    launch and again if it died."""

    def __init__(self) -> None:
        self._process: subprocess.Popen[str] | None = None
        self._lock = threading.Lock()

    def fork(self, serialized_args: str, environment: dict[str, str]) -> int:
        """A new run worker for the run; its pid."""
        with self._lock:
            if self._process is None or self._process.poll() is not None:
                self._process = subprocess.Popen(
                    [sys.executable, "-m", "wflog_assets.defs.warm"],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                )
            assert self._process.stdin is not None and self._process.stdout is not None
            try:
                self._process.stdin.write(json.dumps({"args": serialized_args, "env": environment}) + "\n")
                self._process.stdin.flush()
                answer = self._process.stdout.readline()
            except BrokenPipeError:  # it ended since the check above
                answer = ""
        if not answer:
            raise DagsterLaunchFailedError(
                "the run workers' template process (python -m wflog_assets.defs.warm) ended before "
                "forking a worker: its error is in the daemon's log; the next launch starts a new one"
            )
        return int(json.loads(answer)["pid"])


_TEMPLATE = _Template()


def _same_interpreter(executable: str | None) -> bool:
    """Whether the code location runs on this process's interpreter (else its code server must
    start the run: another virtualenv, another Python)."""
    if not executable:
        return False
    return os.path.realpath(executable) == os.path.realpath(sys.executable)
