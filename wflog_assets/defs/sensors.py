"""The sensor on the source prefix: a run for each day whose files are new or changed."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import time
from dataclasses import dataclass, field

import dagster as dg

from wflog_assets.defs.partitions import partition_day
from wflog_assets.defs.resources import LogSourceResource
from wflog_assets.source.arrivals import HourMark, look, marks_of, neighbours_reached
from wflog_assets.source.listing import list_day, list_days
from wflog_assets.source.stores import ObjectStore

SENSOR_NAME = "wflog_source_sensor"
DIGEST_TAG = "wflog/manifest-digest"
LOGS_ASSET = dg.AssetKey("workflow_logs")
# A day is listed whole (changed and deleted files, days without hour folders) at least this
# often; in between, a tick lists its hour folders from the newest keys seen (`arrivals`).
FULL_SWEEP_S = 1800


@dataclass
class SensorCursor:
    """The newest day folder seen (a tick lists from `last_day - lookback` on), and per day the
    marks of its hour folders and when it was last listed whole."""

    last_day: str | None = None
    marks: dict[str, dict[str, list[object]]] = field(default_factory=dict)
    swept: dict[str, float] = field(default_factory=dict)

    @classmethod
    def parse(cls, raw: str | None) -> SensorCursor:
        return cls(**json.loads(raw)) if raw else cls()

    def dump(self) -> str:
        return json.dumps({"last_day": self.last_day, "marks": self.marks, "swept": self.swept})

    def day_marks(self, day: str) -> dict[str, HourMark]:
        return {h: HourMark.load(m) for h, m in self.marks.get(day, {}).items()}

    def keep(self, day: str, marks: dict[str, HourMark], swept: float | None = None) -> None:
        self.marks[day] = {h: m.dump() for h, m in marks.items()}
        if swept is not None:
            self.swept[day] = swept

    def forget_before(self, day: str) -> None:
        self.marks = {d: m for d, m in self.marks.items() if d >= day}
        self.swept = {d: t for d, t in self.swept.items() if d >= day}


def committed_digest(instance: dg.DagsterInstance, day: str) -> str | None:
    """The manifest digest of the day's last `workflow_logs` materialization."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=LOGS_ASSET, asset_partitions=[day]), limit=1
    ).records
    if not records or records[0].asset_materialization is None:
        return None
    value = records[0].asset_materialization.metadata.get("manifest_digest")
    return None if value is None else str(value.value)


ACTIVE_STATUSES = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]
ENDED_UNSUCCESSFUL = [dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED]


def days_in_flight(instance: dg.DagsterInstance, job_name: str) -> set[str]:
    """Days with a run of the job queued or running: a new file of such a day waits for the
    next tick (the running run's successor picks it up), so runs of one day never pile up."""
    records = instance.get_run_records(dg.RunsFilter(job_name=job_name, statuses=ACTIVE_STATUSES))
    return {
        r.dagster_run.tags["dagster/partition"] for r in records if "dagster/partition" in r.dagster_run.tags
    }


def failed_runs(instance: dg.DagsterInstance, job_name: str, day: str) -> int:
    """How many runs of the day failed, if its latest run failed (or was canceled); else 0.
    Part of the run key of the retry, so that each failure is retried once by the next tick."""
    by_day = dg.RunsFilter(job_name=job_name, tags={"dagster/partition": day})
    latest = instance.get_run_records(by_day, limit=1)
    if not latest or latest[0].dagster_run.status not in ENDED_UNSUCCESSFUL:
        return 0
    return len(
        instance.get_run_records(
            dg.RunsFilter(job_name=job_name, tags={"dagster/partition": day}, statuses=ENDED_UNSUCCESSFUL)
        )
    )


@dataclass
class _Tick:
    """One tick's decisions, day by day."""

    instance: dg.DagsterInstance
    store: ObjectStore
    job_name: str
    cursor: SensorCursor
    now: float
    requests: list[dg.RunRequest] = field(default_factory=list)
    notes: dict[str, list[str]] = field(default_factory=dict)
    reached: set[dt.date] = field(default_factory=set)  # neighbours that new files may concern

    def note(self, what: str, day: str) -> None:
        self.notes.setdefault(what, []).append(day)

    def sweep(self, day: dt.date) -> None:
        """List the day whole: request it if its manifest differs from the last committed one."""
        manifest = list_day(self.store, day)
        self.cursor.keep(manifest.day, marks_of(manifest), swept=self.now)
        if not manifest.entries:
            return
        if committed_digest(self.instance, manifest.day) == manifest.digest:
            self.note("unchanged", manifest.day)
            return
        self.requests.append(
            dg.RunRequest(
                partition_key=manifest.day,
                run_key=f"{manifest.day}:{manifest.digest[:20]}",
                tags={DIGEST_TAG: manifest.digest},
            )
        )

    def look(self, day: dt.date) -> None:
        """List the day's hour folders from the newest keys seen: request it if they changed."""
        key = day.isoformat()
        before = self.cursor.day_marks(key)
        changed, marks = look(self.store, day, before)
        self.cursor.keep(key, marks)
        if not changed:
            self.note("nothing new", key)
            return
        seen = hashlib.sha256(
            json.dumps(sorted((h, m.dump()) for h, m in marks.items())).encode()
        ).hexdigest()[:20]
        self.requests.append(dg.RunRequest(partition_key=key, run_key=f"{key}:new:{seen}"))
        self.reached.update(neighbours_reached(day, before, marks))

    def neighbours_of_changes(self, days: list[dt.date], in_flight: set[str]) -> None:
        """Sweep the neighbours that new files may concern: a writer in another time zone
        files records of one UTC day in the next day's folder (`source.routing`)."""
        requested = {r.partition_key for r in self.requests}
        for day in sorted(self.reached & set(days)):
            if day.isoformat() not in requested and day.isoformat() not in in_flight:
                self.sweep(day)

    def day(self, day: dt.date, in_flight: set[str], sweep_every_s: float) -> None:
        key = day.isoformat()
        if key in in_flight:
            self.note("run queued or running", key)  # its marks stay: the next tick sees the files
            return
        failed = failed_runs(self.instance, self.job_name, key)
        if failed:
            self.requests.append(dg.RunRequest(partition_key=key, run_key=f"{key}:retry:{failed}"))
            self.note(f"retried after {failed} failed run(s)", key)
            return
        last_sweep = self.cursor.swept.get(key)
        if last_sweep is None or self.now - last_sweep >= sweep_every_s or not (self.cursor.marks.get(key)):
            self.sweep(day)
        else:
            self.look(day)

    def reason(self) -> str:
        return "; ".join(f"{what}: {', '.join(days)}" for what, days in self.notes.items())


def build_source_sensor(
    job: dg.JobDefinition | dg.UnresolvedAssetJobDefinition,
    partitions_def: dg.TimeWindowPartitionsDefinition,
    lookback_days: int = 3,
    interval_s: int = 60,
    sweep_every_s: float = FULL_SWEEP_S,
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
        days = [d for d in list_days(store, since, today) if partitions_def.has_partition_key(d.isoformat())]
        tick = _Tick(context.instance, store, job.name, cursor, time.time())
        in_flight = days_in_flight(context.instance, job.name)
        for day in days:
            tick.day(day, in_flight, sweep_every_s)
        tick.neighbours_of_changes(days, in_flight)
        cursor.last_day = max([cursor.last_day or "", *(d.isoformat() for d in days)]) or None
        cursor.forget_before(since.isoformat())
        if not tick.requests:
            return dg.SensorResult(
                skip_reason=dg.SkipReason(
                    f"{len(days)} day folder(s) since {since.isoformat()}, none new or changed "
                    f"({tick.reason() or 'no files'})"
                ),
                cursor=cursor.dump(),
            )
        context.log.info(
            f"requesting {[r.partition_key for r in tick.requests]} "
            f"({tick.reason() or 'new or changed files'})"
        )
        return dg.SensorResult(run_requests=tick.requests, cursor=cursor.dump())

    return wflog_source_sensor
