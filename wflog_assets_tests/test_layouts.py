"""The layout study: three layouts' tables, the P0 query (pruning, early stop) and the report."""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyiceberg.catalog.sql import SqlCatalog

from wflog_assets.cli import main as cli_main
from wflog_assets.definitions import LAYOUT_JOB
from wflog_assets.defs import settings
from wflog_assets.iceberg.commit import commit_day
from wflog_assets.iceberg.query import P0Query, p0_query, workflow_row_counts
from wflog_assets.iceberg.schema import (
    ARROW_SCHEMA,
    LAYOUTS,
    SORT_ORDER,
    TABLE_SCHEMA,
    WORKFLOW_NAME,
    WORKFLOW_NODE,
    sort_for_table,
)
from wflog_assets.iceberg.tables import ensure_table
from wflog_assets.manifest import Manifest, ManifestEntry
from wflog_assets.tools.generate import GeneratorSettings, generate_day
from wflog_assets_testing.backends import Backend, embedded_backend
from wflog_assets_testing.oracle import expected_rows_for_days, table_rows

DAYS = [dt.date(2025, 12, 1), dt.date(2025, 12, 2), dt.date(2025, 12, 3)]
SMALL = GeneratorSettings(rows_per_day=2_000, files_per_day=4, workflows_per_day=40)
P0_COLUMNS = ("timestamp", "level", "message", WORKFLOW_NODE)


def _load_days(backend: Backend, instance: dg.DagsterInstance, days: list[dt.date]) -> None:
    for day in days:
        for key, data in generate_day(day, SMALL):
            backend.store.write(key, data)
    layouts_job = backend.definitions().resolve_job_def(LAYOUT_JOB)
    for day in days:
        backend.run_day(day, instance)
        assert layouts_job.execute_in_process(partition_key=day.isoformat(), instance=instance).success


def _layout_table(backend: Backend, layout: str):  # -> pyiceberg Table
    return backend.catalog.load_catalog().load_table(backend.catalog.layout_identifier(layout))


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Backend, dg.DagsterInstance]]:
    """Three days in all three layouts on the embedded backend, shared by the read-only tests."""
    backend = embedded_backend(tmp_path_factory.mktemp("study"))
    with dg.DagsterInstance.ephemeral() as instance:
        _load_days(backend, instance, DAYS)
        yield backend, instance


def test_each_layout_table_has_its_spec_sort_order_and_the_same_rows(
    backend: Backend, instance: dg.DagsterInstance
):
    _load_days(backend, instance, DAYS[:2])
    expected = expected_rows_for_days(backend.store, DAYS[:2])
    for layout, spec in LAYOUTS.items():
        table = _layout_table(backend, layout)
        assert [
            (table.schema().find_column_name(f.source_id), str(f.transform)) for f in table.spec().fields
        ] == [(TABLE_SCHEMA.find_column_name(f.source_id), str(f.transform)) for f in spec.fields]
        (sort_field,) = table.sort_order().fields
        assert table.schema().find_column_name(sort_field.source_id) == "timestamp"
        assert sort_field.direction == SORT_ORDER.fields[0].direction
        assert table_rows(table) == expected, layout
        assert len(table.snapshots()) == 2  # one commit per day
        for task in table.scan().plan_files():
            with table.io.new_input(task.file.file_path).open() as f:
                stamps = pq.read_table(f, columns=["timestamp"]).column(0).to_pylist()
            assert stamps == sorted(stamps, reverse=True), (layout, task.file.file_path)


def test_rematerializing_a_layout_day_writes_nothing(study: tuple[Backend, dg.DagsterInstance]):
    backend, instance = study
    before = {layout: len(_layout_table(backend, layout).snapshots()) for layout in LAYOUTS}
    result = (
        backend.definitions()
        .resolve_job_def(LAYOUT_JOB)
        .execute_in_process(partition_key=DAYS[0].isoformat(), instance=instance)
    )
    outcomes = {
        m.metadata["layout"].value: m.metadata["outcome"].value
        for m in result.get_asset_materialization_events()
        for m in [m.materialization]
    }
    assert outcomes == {"wf_bucket": "unchanged", "wf_bucket_month": "unchanged"}
    assert {layout: len(_layout_table(backend, layout).snapshots()) for layout in LAYOUTS} == before


def _brute_force(rows: list[dict[str, Any]], q: P0Query) -> list[dict[str, Any]]:
    hits = [
        r
        for r in rows
        if r[WORKFLOW_NAME] == q.workflow
        and (q.node is None or r[WORKFLOW_NODE] == q.node)
        and (q.start is None or r["timestamp"] >= q.start)
        and (q.end is None or r["timestamp"] < q.end)
    ]
    hits.sort(key=lambda r: r["timestamp"], reverse=True)
    return [{c: r[c] for c in P0_COLUMNS} for r in hits[: q.limit]]


def test_p0_results_are_identical_across_layouts_and_equal_a_brute_force_filter_and_sort(
    study: tuple[Backend, dg.DagsterInstance],
):
    backend, _ = study
    rows = table_rows(_layout_table(backend, "wf_month"))
    counts = workflow_row_counts(_layout_table(backend, "wf_month"))
    heavy, tiny = counts.column(0)[0].as_py(), counts.column(0)[-1].as_py()
    heavy_rows = sorted((r for r in rows if r[WORKFLOW_NAME] == heavy), key=lambda r: r["timestamp"])
    node = heavy_rows[len(heavy_rows) // 2][WORKFLOW_NODE]
    mid = heavy_rows[len(heavy_rows) // 2]["timestamp"]
    queries = [
        P0Query(heavy, limit=100),
        P0Query(heavy, limit=None),
        P0Query(heavy, node=node, limit=10),
        P0Query(heavy, start=heavy_rows[10]["timestamp"], end=mid, limit=50),
        P0Query(heavy, start=mid, limit=5),
        P0Query(tiny, limit=1000),  # fewer rows than the limit
        P0Query(heavy, limit=0),
        P0Query("atlan-no-such-workflow", limit=10),
    ]
    for q in queries:
        expected = _brute_force(rows, q)
        assert q.limit == 0 or q.workflow.startswith("atlan-no") or expected, q
        for layout in LAYOUTS:
            got = p0_query(
                _layout_table(backend, layout),
                q.workflow,
                node=q.node,
                start=q.start,
                end=q.end,
                limit=q.limit,
                columns=P0_COLUMNS,
            )
            assert got.rows.to_pylist() == expected, (layout, q)


def test_p0_on_wf_month_plans_only_that_workflows_files_and_fewer_than_the_bucket_layouts(
    study: tuple[Backend, dg.DagsterInstance],
):
    backend, _ = study
    tables = {layout: _layout_table(backend, layout) for layout in LAYOUTS}
    names = workflow_row_counts(tables["wf_month"]).column(0).to_pylist()
    all_files = list(tables["wf_month"].scan().plan_files())
    fewer = 0
    for name in names:
        result = p0_query(tables["wf_month"], name, limit=10)
        planned = {
            t.file.file_path
            for t in tables["wf_month"].scan(row_filter=P0Query(name).row_filter()).plan_files()
        }
        own = {t.file.file_path for t in all_files if t.file.partition[0] == name}
        assert planned == own, name
        assert result.files_planned == len(own) >= 1, name
        bucket = {
            layout: p0_query(tables[layout], name, limit=10) for layout in ("wf_bucket", "wf_bucket_month")
        }
        for layout, other in bucket.items():
            assert other.files_planned >= result.files_planned, (layout, name)
            assert other.rows.to_pylist() == result.rows.to_pylist(), (layout, name)
        small = names.index(name) >= len(names) // 2
        fewer += small and all(b.files_planned > result.files_planned for b in bucket.values())
    assert fewer >= len(names) // 4  # most small workflows: strictly fewer files than buckets


def _one_workflow_day(rows: int) -> tuple[pa.Table, Manifest]:
    t0 = dt.datetime(2025, 12, 5, tzinfo=dt.UTC).timestamp()
    key = "year=2025/month=12/day=05/chunk-0-part1.parquet"
    data = {f.name: pa.nulls(rows, f.type) for f in ARROW_SCHEMA}
    data.update(
        {
            "timestamp": pa.array([t0 + i * 0.5 for i in range(rows)]),
            WORKFLOW_NAME: pa.array(["atlan-heavy-1-cron-2"] * rows, pa.large_string()),
            "message": pa.array([f"m{i}" for i in range(rows)], pa.large_string()),
            "month": pa.array([12] * rows, pa.int64()),
            "source_file": pa.array([key] * rows, pa.large_string()),
            "source_etag": pa.array(["e1"] * rows, pa.large_string()),
        }
    )
    table = pa.Table.from_pydict(data, schema=ARROW_SCHEMA)
    manifest = Manifest.build("2025-12-05", [ManifestEntry(key, 1, "e1", "t")])
    return sort_for_table(table), manifest


def test_p0_limit_reads_one_row_group_of_a_sorted_workflow_not_all_its_rows(tmp_path: Path):
    catalog = SqlCatalog("t", uri=f"sqlite:///{tmp_path}/c.db", warehouse=tmp_path.as_uri())
    table = ensure_table(catalog, "ns.logs", properties={"write.parquet.row-group-limit": "1000"})
    rows, manifest = _one_workflow_day(20_000)
    commit_day(lambda: catalog.load_table("ns.logs"), manifest, rows)
    table = catalog.load_table("ns.logs")

    top = p0_query(table, "atlan-heavy-1-cron-2", limit=100, columns=("timestamp", "message"))
    assert top.rows.column("message").to_pylist() == [f"m{i}" for i in range(19_999, 19_899, -1)]
    assert top.files_planned == top.files_read == 1
    assert top.row_groups_read == 1
    assert top.rows_scanned == 1000

    everything = p0_query(table, "atlan-heavy-1-cron-2", limit=None, columns=("timestamp",))
    assert everything.rows.num_rows == everything.rows_scanned == 20_000
    assert everything.bytes_read > top.bytes_read


def _figures_consistent(figures: list[dict[str, Any]], report_md: str) -> None:
    roles = {f["role"] for f in figures}
    assert {"heaviest", "median", "tiny"} <= roles
    assert {f["layout"] for f in figures} == set(LAYOUTS)
    for f in figures:
        row = (
            f"| `{f['workflow']}` | {f['role']} | {f['shape']} | {f['layout']} "
            f"| {f['files_planned']} | {f['files_read']} | {f['bytes_read']:,} "
            f"| {f['rows_matched']:,} |"
        )
        assert row in report_md
        assert f["cold_p90_s"] >= f["cold_median_s"] > 0
        assert f["warm_p90_s"] >= f["warm_median_s"] > 0
    matched: dict[str, set[int]] = {}
    for f in figures:
        matched.setdefault(f["workflow"], set()).add(f["rows_matched"])
    assert all(len(v) == 1 for v in matched.values())  # the same rows on every layout


def test_report_asset_materializes_with_consistent_table_plot_and_figures(
    study: tuple[Backend, dg.DagsterInstance],
):
    backend, instance = study
    defs = backend.definitions()
    result = dg.materialize(
        [defs.resolve_assets_def("layout_benchmark_report")],
        instance=instance,
        run_config={"ops": {"layout_benchmark_report": {"config": {"repetitions": 2}}}},
    )
    (mat,) = result.asset_materializations_for_node("layout_benchmark_report")
    meta = {k: v.value for k, v in mat.metadata.items()}
    figures = meta["figures"]
    _figures_consistent(figures, meta["report"])
    png = base64.b64decode(meta["plot"].split("base64,", 1)[1].rstrip(")"))
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    counts = {
        r[WORKFLOW_NAME]: r["count_all"]
        for r in workflow_row_counts(_layout_table(backend, "wf_month")).to_pylist()
    }
    for f in figures:
        assert f["rows_matched"] == counts[f["workflow"]]
        assert f["rows_returned"] == (
            min(100, counts[f["workflow"]]) if f["shape"] == "limit 100" else counts[f["workflow"]]
        )
    assert "| wf_month | 1.399 s | 9 | 436,985 |" in meta["seed_comparison"]


def test_cli_query_and_report_read_the_configured_tables(
    study: tuple[Backend, dg.DagsterInstance],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
):
    backend, _ = study
    for setting in settings.ENV_SETTINGS:
        monkeypatch.delenv(setting.name, raising=False)
    monkeypatch.setenv("WFLOG_DATA_DIR", backend.catalog.data_dir)
    heavy = workflow_row_counts(_layout_table(backend, "wf_month")).column(0)[0].as_py()
    assert (
        cli_main(
            [
                "query",
                "--workflow",
                heavy,
                "--limit",
                "3",
                "--layout",
                "wf_bucket",
                "--start",
                "2025-12-01T00:00",
                "--end",
                "2025-12-04",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "P0 query on wf_bucket" in out
    assert ": 3 rows;" in out
    rows = dict(
        zip(*workflow_row_counts(_layout_table(backend, "wf_month")).to_pydict().values(), strict=True)
    )
    assert cli_main(["query", "--workflow", heavy, "--limit", "all"]) == 0
    assert f": {rows[heavy]} rows;" in capsys.readouterr().out
    monkeypatch.setenv("WFLOG_TABLE", "not_there")
    with pytest.raises(SystemExit, match=r"no table workflow_logs\.not_there yet"):
        cli_main(["query", "--workflow", heavy])
    monkeypatch.delenv("WFLOG_TABLE")

    stem = tmp_path / "report"
    assert cli_main(["report", "--out", str(stem), "--repetitions", "1"]) == 0
    figures = json.loads(stem.with_suffix(".json").read_text())
    _figures_consistent(figures, stem.with_suffix(".md").read_text())
    assert stem.with_suffix(".png").read_bytes().startswith(b"\x89PNG")


def test_the_report_compares_only_workflows_every_layout_holds_alike_and_says_what_it_left_out(
    backend: Backend, instance: dg.DagsterInstance
):
    from wflog_assets.tools.report import pick_comparable

    _load_days(backend, instance, DAYS[:1])
    for key, data in generate_day(DAYS[1], SMALL):  # a second day in wf_month only
        backend.store.write(key, data)
    backend.run_day(DAYS[1], instance)

    def load(layout: str):  # -> pyiceberg Table
        return _layout_table(backend, layout)

    picked, left_out = pick_comparable(load, list(LAYOUTS))
    rows = {
        layout: dict(zip(*workflow_row_counts(load(layout)).to_pydict().values(), strict=True))
        for layout in LAYOUTS
    }
    alike = {w for w in rows["wf_month"] if len({rows[layout].get(w) for layout in LAYOUTS}) == 1}
    assert picked
    assert {w for w, _ in picked} <= alike
    assert set(left_out) == set(rows["wf_month"]) - alike != set()
    some = next(iter(left_out))
    assert left_out[some] == {layout: rows[layout].get(some, 0) for layout in LAYOUTS}
