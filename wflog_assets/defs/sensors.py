"""The sensor on the source prefix: a run for each day whose files are new or changed."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass

import dagster as dg

from wflog_assets.defs.partitions import partition_day
from wflog_assets.defs.resources import LogSourceResource
from wflog_assets.source.listing import list_day, list_days

SENSOR_NAME = "wflog_source_sensor"
DIGEST_TAG = "wflog/manifest-digest"
LOGS_ASSET = dg.AssetKey("workflow_logs")


@dataclass(frozen=True)
class SensorCursor:
    """The newest day folder seen; a tick lists from `last_day - lookback` on."""

    last_day: str | None = None

    @classmethod
    def parse(cls, raw: str | None) -> SensorCursor:
        return cls(**json.loads(raw)) if raw else cls()

    def dump(self) -> str:
        return json.dumps({"last_day": self.last_day})


def committed_digest(instance: dg.DagsterInstance, day: str) -> str | None:
    """The manifest digest of the day's last `workflow_logs` materialization."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=LOGS_ASSET, asset_partitions=[day]), limit=1
    ).records
    if not records or records[0].asset_materialization is None:
        return None
    value = records[0].asset_materialization.metadata.get("manifest_digest")
    return None if value is None else str(value.value)


ACTIVE_STATUSES = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED,
                   dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED]
ENDED_UNSUCCESSFUL = [dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED]


def days_in_flight(instance: dg.DagsterInstance, job_name: str) -> set[str]:
    """Days with a run of the job queued or running: a new file of such a day waits for the
    next tick (the running run's successor picks it up), so runs of one day never pile up."""
    records = instance.get_run_records(dg.RunsFilter(job_name=job_name, statuses=ACTIVE_STATUSES))
    return {r.dagster_run.tags["dagster/partition"] for r in records
            if "dagster/partition" in r.dagster_run.tags}


def failed_attempts(instance: dg.DagsterInstance, day: str, digest: str) -> int:
    """Runs requested for this day and manifest that failed or were canceled: part of the run
    key, so that a failed run is requested again on the next tick."""
    return len(instance.get_run_records(dg.RunsFilter(
        tags={"dagster/partition": day, DIGEST_TAG: digest}, statuses=ENDED_UNSUCCESSFUL)))


def build_source_sensor(
    job: dg.JobDefinition | dg.UnresolvedAssetJobDefinition,
    partitions_def: dg.TimeWindowPartitionsDefinition,
    lookback_days: int = 3,
    interval_s: int = 60,
) -> dg.SensorDefinition:
    if lookback_days < 0:
        raise ValueError(f"WFLOG_SENSOR_LOOKBACK_DAYS={lookback_days}: use 0 or more days")
    first_day = partition_day(partitions_def.get_first_partition_key() or "")

    @dg.sensor(
        name=SENSOR_NAME,
        job=job,
        minimum_interval_seconds=interval_s,
        default_status=dg.DefaultSensorStatus.STOPPED,
        description=f"Requests a run for each day whose source files are new or changed "
        f"(late files included, {lookback_days} days back from the newest day seen).",
    )
    def wflog_source_sensor(
        context: dg.SensorEvaluationContext, log_source: LogSourceResource
    ) -> dg.SensorResult:
        cursor = SensorCursor.parse(context.cursor)
        today = dt.datetime.now(dt.UTC).date()
        since = first_day
        if cursor.last_day is not None:
            since = max(first_day, partition_day(cursor.last_day) - dt.timedelta(days=lookback_days))
        store = log_source.object_store()
        days = [d for d in list_days(store, since, today)
                if partitions_def.has_partition_key(d.isoformat())]
        requests: list[dg.RunRequest] = []
        unchanged = 0
        in_flight = days_in_flight(context.instance, job.name)
        waiting: list[str] = []
        for day in days:
            if day.isoformat() in in_flight:
                waiting.append(day.isoformat())
                continue
            manifest = list_day(store, day)
            if not manifest.entries:
                continue
            if committed_digest(context.instance, manifest.day) == manifest.digest:
                unchanged += 1
                continue
            retry = failed_attempts(context.instance, manifest.day, manifest.digest)
            if retry:
                context.log.info(f"{manifest.day}: the last run for these files failed "
                                 f"({retry} time(s)): requesting it again")
            requests.append(dg.RunRequest(
                partition_key=manifest.day,
                run_key=f"{manifest.day}:{manifest.digest[:20]}:{retry}",
                tags={DIGEST_TAG: manifest.digest},
            ))
        newest = max([cursor.last_day or "", *(d.isoformat() for d in days)]) or None
        next_cursor = SensorCursor(last_day=newest).dump()
        if not requests:
            return dg.SensorResult(
                skip_reason=dg.SkipReason(
                    f"{len(days)} day folder(s) since {since.isoformat()}: {unchanged} unchanged "
                    f"since their last materialization, {len(waiting)} with a run queued or "
                    f"running ({', '.join(waiting) or 'none'}), none new or changed"
                ),
                cursor=next_cursor,
            )
        context.log.info(f"requesting {[r.partition_key for r in requests]}")
        return dg.SensorResult(run_requests=requests, cursor=next_cursor)

    return wflog_source_sensor
