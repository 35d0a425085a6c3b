"""The source sensor, ticked with build_sensor_context on a real instance and real storage."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import dagster as dg

from wflog_assets.day import day_prefix
from wflog_assets.definitions import INGEST_JOB, build_definitions
from wflog_assets.defs.resources import SqliteCatalogResource
from wflog_assets.defs.sensors import SENSOR_NAME, SensorCursor
from wflog_assets.manifest import ManifestEntry
from wflog_assets.source.arrivals import look, marks_of
from wflog_assets.source.listing import list_day
from wflog_assets.source.stores import LocalObjectStore
from wflog_assets.tools.generate import (
    GeneratorSettings,
    generate_day,
    generate_late_file,
    gzip_lines,
    writer_flushes,
)
from wflog_assets_testing.backends import START, Backend
from wflog_assets_testing.oracle import expected_rows_for_days, table_rows

SMALL = GeneratorSettings(rows_per_day=600, files_per_day=3, workflows_per_day=5)
D1, D2, D3, D4 = (dt.date(2025, 12, d) for d in (1, 2, 3, 4))


class Ticker:
    """Ticks the sensor like the daemon would, carrying the cursor between ticks."""

    def __init__(self, backend: Backend, instance: dg.DagsterInstance):
        self.backend = backend
        self.instance = instance
        self.defs = backend.definitions()
        self.sensor = self.defs.resolve_sensor_def(SENSOR_NAME)
        self.cursor: str | None = None

    def tick(self) -> dg.SensorResult:
        with dg.build_sensor_context(
            instance=self.instance,
            cursor=self.cursor,
            definitions=self.defs,
            resources={"log_source": self.backend.resources["log_source"]},
        ) as context:
            result = self.sensor(context)
        assert isinstance(result, dg.SensorResult)
        self.cursor = result.cursor
        return result

    def run_all(self, result: dg.SensorResult) -> list[dg.ExecuteInProcessResult]:
        return [self.backend.run_day(r.partition_key, self.instance) for r in result.run_requests]


def _write(backend: Backend, day: dt.date) -> None:
    for key, data in generate_day(day, SMALL):
        backend.store.write(key, data)


def _logs(result: dg.ExecuteInProcessResult) -> dict[str, object]:
    (mat,) = result.asset_materializations_for_node("workflow_logs")
    return {k: v.value for k, v in mat.metadata.items()}


def test_sensor_requests_new_late_and_changed_days_and_nothing_else(
    backend: Backend, instance: dg.DagsterInstance
):
    for day in (D1, D2, D3):
        _write(backend, day)
    ticker = Ticker(backend, instance)

    first = ticker.tick()
    assert [r.partition_key for r in first.run_requests] == ["2025-12-01", "2025-12-02", "2025-12-03"]
    assert [r.run_key for r in first.run_requests] == [
        f"{d.isoformat()}:{list_day(backend.store, d).digest[:20]}" for d in (D1, D2, D3)
    ]
    assert SensorCursor.parse(ticker.cursor).last_day == "2025-12-03"
    # a repeated tick before the runs happened asks for the same run keys (Dagster dedupes them)
    again = Ticker(backend, instance).tick()
    assert [r.run_key for r in again.run_requests] == [r.run_key for r in first.run_requests]
    ticker.run_all(first)

    idle = ticker.tick()
    assert idle.run_requests == []
    assert idle.skip_reason is not None
    assert "none new or changed" in idle.skip_reason.skip_message

    late_key, late = generate_late_file(D2, SMALL, index=0, rows=33)
    backend.store.write(late_key, late)
    late_tick = ticker.tick()
    assert [r.partition_key for r in late_tick.run_requests] == ["2025-12-02"]
    (late_run,) = ticker.run_all(late_tick)
    assert _logs(late_run)["outcome"] == "appended"
    assert _logs(late_run)["rows_written"] == 33

    victim = list_day(backend.store, D3).entries[0].key
    backend.store.write(victim, generate_late_file(D3, SMALL, index=1, rows=12)[1])
    changed_tick = ticker.tick()
    assert [r.partition_key for r in changed_tick.run_requests] == ["2025-12-03"]
    (changed_run,) = ticker.run_all(changed_tick)
    assert _logs(changed_run)["outcome"] == "replaced"
    assert _logs(changed_run)["source_files_changed"] == [victim]

    _write(backend, D4)
    new_day = ticker.tick()
    assert [r.partition_key for r in new_day.run_requests] == ["2025-12-04"]
    ticker.run_all(new_day)
    assert SensorCursor.parse(ticker.cursor).last_day == "2025-12-04"
    assert ticker.tick().run_requests == []
    assert table_rows(backend.table()) == expected_rows_for_days(backend.store, [D1, D2, D3, D4])


def test_sensor_cursor_limits_relisting_to_the_lookback_window(
    backend: Backend, instance: dg.DagsterInstance
):
    for day in (D1, dt.date(2025, 12, 9)):
        _write(backend, day)
    ticker = Ticker(backend, instance)
    ticker.run_all(ticker.tick())
    late_key, late = generate_late_file(D1, SMALL, index=0, rows=5)
    backend.store.write(late_key, late)
    # D1 is 8 days before the newest day seen: outside the default 3-day look-back
    result = ticker.tick()
    assert result.run_requests == []
    assert "since 2025-12-06" in result.skip_reason.skip_message


WRITER_DAY = dt.date(2025, 12, 10)


class CountingStore(LocalObjectStore):
    """A local store that counts the objects its listings return."""

    listed = 0

    def list(self, prefix: str, start_after: str | None = None) -> Iterator[ManifestEntry]:
        for entry in super().list(prefix, start_after):
            self.listed += 1
            yield entry


def test_a_tick_lists_hour_folders_from_the_newest_keys_seen(tmp_path: Path):
    store = CountingStore(tmp_path)
    for key, lines in writer_flushes(WRITER_DAY, 600, seed=3):
        store.write(key, gzip_lines(lines))
    marks = marks_of(list_day(store, WRITER_DAY))
    store.listed = 0
    changed, marks = look(store, WRITER_DAY, marks)
    assert not changed
    quiet = store.listed
    assert quiet < 10  # the last minutes of the active hour folders, not the day's 600 files
    _, lines = next(writer_flushes(WRITER_DAY, 1, seed=4))
    hour = f"{day_prefix(WRITER_DAY)}hour=23/"
    last = max(e.key for e in store.list(hour))
    stamp = int(last[len(hour) :].split("_", 1)[0])
    # a flush uploaded late, named a minute before the newest file of its hour: still seen
    store.write(f"{hour}{stamp - 60 * 10**9}_000777_prod-eu-1_app.json.gz", gzip_lines(lines))
    store.listed = 0
    changed, marks = look(store, WRITER_DAY, marks)
    assert changed
    assert store.listed <= quiet + 1
    assert look(store, WRITER_DAY, marks)[0] is False


def test_writer_days_are_requested_from_new_keys_and_a_failed_run_is_requested_again(
    backend: Backend, instance: dg.DagsterInstance
):
    for key, lines in writer_flushes(WRITER_DAY, 40, seed=6):
        backend.store.write(key, gzip_lines(lines))
    ticker = Ticker(backend, instance)
    first = ticker.tick()  # a day seen for the first time is listed whole
    assert [r.run_key.split(":")[1] for r in first.run_requests] == [
        list_day(backend.store, WRITER_DAY).digest[:20]
    ]
    ticker.run_all(first)
    idle = ticker.tick()
    assert idle.run_requests == []
    assert "nothing new: 2025-12-10" in idle.skip_reason.skip_message
    key, lines = next(writer_flushes(WRITER_DAY, 1, seed=7))
    backend.store.write(key.replace("_000000_", "_000999_"), gzip_lines(lines))
    new = ticker.tick()
    assert [(r.partition_key, r.run_key.split(":")[1]) for r in new.run_requests] == [("2025-12-10", "new")]
    # the run for the new file fails (the catalog is down): the next tick requests it again
    down = {**backend.resources, "iceberg": SqliteCatalogResource(data_dir="/proc/none")}
    job = build_definitions(down, START).resolve_job_def(INGEST_JOB)
    failed = job.execute_in_process(
        partition_key="2025-12-10", instance=instance, raise_on_error=False, tags=new.run_requests[0].tags
    )
    assert not failed.success
    retry = ticker.tick()
    assert [r.run_key for r in retry.run_requests] == ["2025-12-10:retry:1"]
    ticker.run_all(retry)
    assert ticker.tick().run_requests == []
    assert table_rows(backend.table()) == expected_rows_for_days(backend.store, [WRITER_DAY])
