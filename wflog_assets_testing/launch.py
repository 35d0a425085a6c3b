"""Runs launched the way the daemon launches them: created with the code location's origin
(`wflog_assets.definitions`, configured from the environment) and started by the instance's run
launcher, not executed in the calling process."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
from dagster._core.definitions.reconstruct import ReconstructableRepository

from wflog_assets.definitions import INGEST_JOB
from wflog_assets.defs.launcher import run_start
from wflog_assets_testing.dagster_stack import until

ROOT = Path(__file__).resolve().parents[1]
FINISHED = {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}


def instance_with_launcher(home: Path, launcher: str) -> dg.DagsterInstance:
    """A SQLite-backed instance under `home` whose runs `launcher` (a class of
    `wflog_assets.defs.launcher`) starts."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(
        f"run_launcher:\n  module: wflog_assets.defs.launcher\n  class: {launcher}\n"
        "telemetry:\n  enabled: false\n"
    )
    return dg.DagsterInstance.from_config(str(home))


def create_day_run(instance: dg.DagsterInstance, day: str, job_name: str = INGEST_JOB) -> str:
    """The job's run of `day`, created (not launched) with the code location's origin; its id."""
    recon = ReconstructableRepository.for_module(
        "wflog_assets.definitions", "defs", working_directory=str(ROOT)
    ).get_reconstructable_job(job_name)
    run = instance.create_run_for_job(
        job_def=recon.get_definition(),
        job_code_origin=recon.get_python_origin(),
        tags={"dagster/partition": day},
        status=dg.DagsterRunStatus.NOT_STARTED,
    )
    return run.run_id


def launch_day(instance: dg.DagsterInstance, day: str, job_name: str = INGEST_JOB) -> str:
    """Create the job's run of `day` and launch it with the instance's run launcher; its id."""
    run_id = create_day_run(instance, day, job_name)
    instance.launch_run(run_id, workspace=None)  # type: ignore[arg-type]
    return run_id


def wait_for(instance: dg.DagsterInstance, run_id: str, timeout_s: float = 300) -> dg.DagsterRun:
    """The run once it finished (TimeoutError after `timeout_s`)."""

    def finished() -> dg.DagsterRun | None:
        run = instance.get_run_by_id(run_id)
        return run if run is not None and run.status in FINISHED else None

    return until(f"run {run_id} to finish", finished, timeout_s, every_s=0.02)


def run_worker_pid(instance: dg.DagsterInstance, run_id: str) -> int | None:
    """The process that started the run (its RUN_START event's), once it started."""
    start = run_start(instance, run_id)
    return start.dagster_event.pid if start is not None and start.dagster_event is not None else None
