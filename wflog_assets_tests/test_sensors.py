"""The source sensor, ticked with build_sensor_context on a real instance and real storage."""

from __future__ import annotations

import datetime as dt

import dagster as dg

from wflog_assets.defs.sensors import SENSOR_NAME, SensorCursor
from wflog_assets.source.listing import list_day
from wflog_assets.tools.generate import GeneratorSettings, generate_day, generate_late_file
from wflog_assets_tests.conftest import Backend
from wflog_assets_tests.oracle import expected_rows_for_days, table_rows

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
            instance=self.instance, cursor=self.cursor, definitions=self.defs,
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
        backend: Backend, instance: dg.DagsterInstance):
    for day in (D1, D2, D3):
        _write(backend, day)
    ticker = Ticker(backend, instance)

    first = ticker.tick()
    assert [r.partition_key for r in first.run_requests] == ["2025-12-01", "2025-12-02", "2025-12-03"]
    assert [r.run_key for r in first.run_requests] == [
        f"{d.isoformat()}:{list_day(backend.store, d).digest[:20]}:0" for d in (D1, D2, D3)]
    assert SensorCursor.parse(ticker.cursor).last_day == "2025-12-03"
    # a repeated tick before the runs happened asks for the same run keys (Dagster dedupes them)
    again = Ticker(backend, instance).tick()
    assert [r.run_key for r in again.run_requests] == [r.run_key for r in first.run_requests]
    ticker.run_all(first)

    idle = ticker.tick()
    assert idle.run_requests == [] and idle.skip_reason is not None
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
        backend: Backend, instance: dg.DagsterInstance):
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
