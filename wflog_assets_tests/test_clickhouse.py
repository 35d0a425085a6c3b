"""ClickHouse CSV exports: converted to source chunk files, then ingested by the daily assets."""

from __future__ import annotations

import datetime as dt
import gzip
import json
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from wflog_assets.cli import main as cli_main
from wflog_assets.errors import ExportFormatError
from wflog_assets.source.stores import LocalObjectStore
from wflog_assets.tools.clickhouse import COLUMNS, convert_export
from wflog_assets_testing.backends import Backend, embedded_backend
from wflog_assets_testing.oracle import table_rows

EPOCH = dt.datetime(1970, 1, 1)
LINEAGE = ("source_file", "source_etag")


def ch_field(value: str | None) -> str:
    """A value as ClickHouse's CSV output writes it: quoted, quotes doubled, NULL as \\N."""
    return "\\N" if value is None else '"' + value.replace('"', '""') + '"'


def ch_csv(rows: list[tuple[str | None, ...]], header: tuple[str, ...] = COLUMNS) -> bytes:
    lines = [",".join(f'"{h}"' for h in header)]
    lines += [",".join(ch_field(v) for v in row) for row in rows]
    return ("\n".join(lines) + "\n").encode()


def _ts(text: str) -> float:
    fmt = "%Y-%m-%d %H:%M:%S.%f" if "." in text else "%Y-%m-%d %H:%M:%S"
    return (dt.datetime.strptime(text, fmt) - EPOCH).total_seconds()


def expected(row: tuple[str | None, ...]) -> dict[str, Any]:
    """The table row for one export row, straight from source-data.md's mapping."""
    stamp, severity, tenant, body, name, node = row
    assert stamp is not None
    ts = _ts(stamp)
    extra = dict.fromkeys(
        (
            "activity_id",
            "activity_type",
            "atlan-argo-workflow-name",
            "atlan-argo-workflow-node",
            "attempt",
            "client_host",
            "duration_ms",
            "heartbeat_timeout",
            "log_type",
            "method",
            "namespace",
            "path",
            "request_id",
            "run_id",
            "schedule_to_close_timeout",
            "schedule_to_start_timeout",
            "start_to_close_timeout",
            "status_code",
            "task_queue",
            "trace_id",
            "url",
            "workflow_id",
            "workflow_type",
        )
    )
    extra.update({"atlan-argo-workflow-name": name, "atlan-argo-workflow-node": node, "trace_id": name})
    return {
        "timestamp": ts,
        "level": "WARNING" if severity == "WARN" else severity,
        "logger_name": tenant,
        "message": body,
        "file": None,
        "line": None,
        "function": None,
        "trace_id": name,
        "atlan_argo_workflow_name": name,
        "atlan_argo_workflow_node": node,
        "extra": extra,
        "month": dt.datetime.fromtimestamp(ts, tz=dt.UTC).month,
        "extra_other": [],
    }


def _without_lineage(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = [{k: v for k, v in r.items() if k not in LINEAGE} for r in rows]
    return sorted(out, key=lambda r: (r["timestamp"], r["message"] or ""))


GOOD_ROWS: list[tuple[str | None, ...]] = [
    ("2025-12-01 00:00:00", "INFO", "app.sql", "plain", "atlan-wf-1", "atlan-wf-1-fetch-1"),
    (
        "2025-12-01 08:15:30.5",
        "WARN",
        "app.sql",
        'he said "hi", then left',
        "atlan-wf-1",
        "atlan-wf-1-fetch-1",
    ),
    (
        "2025-12-01 09:00:00.123456",
        "ERROR",
        "app.http",
        'Traceback (most recent call last):\n  File "a.py", line 3\nValueError: a, b, "c"',
        "atlan-wf-1",
        "atlan-wf-1-extract-2",
    ),
    ("2025-12-01 10:00:00.000001", "NOTICE", "app.x", None, "atlan-wf-2", None),
    ("2025-12-01 23:59:59.999999", "INFO", None, "", "atlan-wf-2", "n"),
    (
        "2025-12-02 00:00:00",
        "CRITICAL",
        "app.ü",
        "naïve café ✓ 日本語\r\nline two",
        "atlan-wf-3",
        "atlan-wf-3-x",
    ),
    (
        "2025-12-02 12:34:56.75",
        "DEBUG",
        "app.x",
        "commas,,, and \\ backslash \\N literal",
        "atlan-wf-3",
        "atlan-wf-3-x",
    ),
]
DAYS = [dt.date(2025, 12, 1), dt.date(2025, 12, 2)]


def _run_days(
    backend: Backend, instance: dg.DagsterInstance, staging: dict[str, object] | None = None
) -> None:
    for day in DAYS:
        backend.run_day(day, instance, staging)


def test_export_converted_then_ingested_equals_the_csv_rows_field_by_field(
    backend: Backend, instance: dg.DagsterInstance, tmp_path: Path
):
    export = tmp_path / "export.csv"
    export.write_bytes(ch_csv(GOOD_ROWS))
    result = convert_export(export, backend.store, rows_per_file=3)
    assert (result.rows_read, result.rows_written, result.rows_rejected) == (7, 7, 0)
    assert result.rows_by_day == {"2025-12-01": 5, "2025-12-02": 2}
    assert len(result.files) == 3  # 5 rows of day 1 in files of 3, day 2 in one
    assert all(
        k.startswith(("year=2025/month=12/day=01/chunk-ch", "year=2025/month=12/day=02/"))
        for k in result.files
    )
    _run_days(backend, instance)
    assert _without_lineage(table_rows(backend.table())) == _without_lineage([expected(r) for r in GOOD_ROWS])


def test_gzip_export_converts_to_the_same_rows(tmp_path: Path):
    plain, packed = tmp_path / "e.csv", tmp_path / "e.csv.gz"
    plain.write_bytes(ch_csv(GOOD_ROWS))
    packed.write_bytes(gzip.compress(plain.read_bytes(), mtime=0))
    a = embedded_backend(tmp_path / "a")
    b = embedded_backend(tmp_path / "b")
    convert_export(plain, a.store)
    convert_export(packed, b.store)
    with dg.DagsterInstance.ephemeral() as instance:
        _run_days(a, instance)
        _run_days(b, instance)
    assert _without_lineage(table_rows(a.table())) == _without_lineage(table_rows(b.table()))


BAD_EXPORT: list[tuple[str, str | None]] = [
    # (raw row text, reason it is rejected or None); some rows span several lines
    (ch_csv([GOOD_ROWS[2]]).decode().split("\n", 1)[1].rstrip("\n"), None),
    ('"2025-12-01 11:00:00","INFO","app.x","too few"', "expected 6 fields, found 4"),
    (ch_csv([GOOD_ROWS[0]]).decode().split("\n", 1)[1].rstrip("\n"), None),
    ('"yesterday","INFO","app.x","bad time","atlan-wf-1","n"', "unparsable timestamp 'yesterday'"),
    ('"2025-12-01 11:00:00","INFO","app.x","too","many","a","b"', "expected 6 fields, found 7"),
    ('\\N,"INFO","app.x","no time","atlan-wf-1","n"', "empty timestamp"),
    (
        '"2025-02-30 10:00:00","INFO","app.x","no such day","atlan-wf-1","n"',
        "unparsable timestamp '2025-02-30 10:00:00'",
    ),
    ('"2025-12-01 11:00:00","INFO","app.x","a\nmulti-line","and too few"', "expected 6 fields, found 5"),
    (
        '"2025-12-01T11:00:00","INFO","app.x","ISO T","atlan-wf-1","n"',
        "unparsable timestamp '2025-12-01T11:00:00'",
    ),
    (ch_csv([GOOD_ROWS[4]]).decode().split("\n", 1)[1].rstrip("\n"), None),
]


def _expected_rejects() -> list[tuple[int, str]]:
    """(line where the row starts, reason): line 1 is the header."""
    out, line = [], 2
    for text, reason in BAD_EXPORT:
        if reason is not None:
            out.append((line, reason))
        line += 1 + text.count("\n")
    return out


def _bad_export(path: Path) -> Path:
    header = ",".join(f'"{h}"' for h in COLUMNS)
    path.write_text(header + "\n" + "\n".join(text for text, _ in BAD_EXPORT) + "\n")
    return path


@pytest.mark.parametrize("block_size", [1 << 20, 256])
def test_bad_rows_go_to_the_rejects_file_with_line_and_reason_and_good_rows_convert(
    tmp_path: Path, block_size: int
):
    export = _bad_export(tmp_path / "bad.csv")
    lines = export.read_text().split("\n")
    store = LocalObjectStore(tmp_path / "out")
    result = convert_export(export, store, block_size=block_size)
    rejects = [json.loads(x) for x in (tmp_path / "out" / result.rejects_key).read_text().splitlines()]
    wanted = _expected_rejects()
    assert [
        (r["line"], r["reason"][: len(reason)]) for r, (_, reason) in zip(rejects, wanted, strict=True)
    ] == wanted
    assert wanted[0][0] == 5
    assert wanted[-1][0] == 13
    texts = [text for text, reason in BAD_EXPORT if reason is not None]
    for r, text in zip(rejects, texts, strict=True):  # the line where the row starts
        assert lines[r["line"] - 1] == text.split("\n")[0], r
    assert (result.rows_read, result.rows_written, result.rows_rejected) == (10, 3, 7)


def test_cli_exits_non_zero_on_rejects_unless_allowed(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    export = _bad_export(tmp_path / "bad.csv")
    assert cli_main(["convert-clickhouse", str(export), "--dest", str(tmp_path / "o1")]) == 1
    err = capsys.readouterr().err
    assert "line 5: expected 6 fields, found 4" in err
    assert "--allow-rejects" in err
    assert (
        cli_main(["convert-clickhouse", str(export), "--dest", str(tmp_path / "o2"), "--allow-rejects"]) == 0
    )
    good = tmp_path / "good.csv"
    good.write_bytes(ch_csv(GOOD_ROWS))
    assert cli_main(["convert-clickhouse", str(good), "--dest", str(tmp_path / "o3")]) == 0
    assert "7 rows read, 7 written" in capsys.readouterr().out


def test_wrong_header_is_refused_with_what_to_do(tmp_path: Path):
    export = tmp_path / "e.csv"
    export.write_bytes(ch_csv(GOOD_ROWS, header=("ts", "sev", "t", "b", "w", "n")))
    with pytest.raises(ExportFormatError, match="CSVWithNames"):
        convert_export(export, LocalObjectStore(tmp_path / "out"))


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_converting_twice_gives_identical_files_and_ingesting_after_both_no_duplicates(
    tmp_path: Path, instance: dg.DagsterInstance
):
    export = tmp_path / "export.csv"
    many = [
        (
            f"2025-12-0{1 + i % 2} {i % 24:02d}:{i % 60:02d}:{i % 60:02d}.{i:06d}",
            "INFO",
            "app",
            f'message {i}, "quoted"\nsecond line',
            f"atlan-wf-{i % 5}",
            f"n{i % 3}",
        )
        for i in range(5_000)
    ]
    export.write_bytes(ch_csv(many))
    a, b = LocalObjectStore(tmp_path / "a"), LocalObjectStore(tmp_path / "b")
    first = convert_export(export, a, rows_per_file=1_000, max_buffered_rows=1_500, block_size=1 << 16)
    second = convert_export(export, b, rows_per_file=1_000, max_buffered_rows=1_500, block_size=1 << 16)
    assert first.files == second.files
    assert len(first.files) >= 5
    assert _files(tmp_path / "a") == _files(tmp_path / "b")

    backend = embedded_backend(tmp_path / "ingest")
    convert_export(export, backend.store, rows_per_file=1_000)
    _run_days(backend, instance)
    convert_export(export, backend.store, rows_per_file=1_000)  # the same export again
    _run_days(backend, instance)
    assert _without_lineage(table_rows(backend.table())) == _without_lineage([expected(r) for r in many])


def _random_rows(seed: int, n: int) -> list[tuple[str | None, ...]]:
    import random

    rng = random.Random(seed)
    rows: list[tuple[str | None, ...]] = []
    for i in range(n):
        stamp = dt.datetime(2025, 12, 1) + dt.timedelta(seconds=rng.uniform(0, 2 * 86_400))
        body = rng.choice(("plain", 'with "quotes", commas', "two\nlines", "naïve ✓", None))
        rows.append((stamp.strftime("%Y-%m-%d %H:%M:%S.%f"), "INFO", "app", body, f"atlan-wf-{i % 4}", "n"))
    return rows


@pytest.mark.parametrize("seed", [1, 2])
def test_invalid_utf8_in_any_string_column_is_a_reject_with_its_line_and_the_rest_converts(
    tmp_path: Path, seed: int
):
    import random

    rng = random.Random(seed)
    rows = _random_rows(seed, 400)
    starts = [2 + sum(1 + (r[3] or "").count("\n") for r in rows[:i]) for i in range(len(rows))]
    plain = [i for i, r in enumerate(rows) if r[3] == "plain"]
    hit = sorted(rng.sample(plain, 12))
    text = ch_csv(rows).split(b"\n")
    for i in hit:  # bytes that are not UTF-8 inside the Body, the tenant or the node
        column = rng.choice((b'"plain"', b'"app"', b'"n"'))
        line = text[starts[i] - 1]
        text[starts[i] - 1] = line.replace(column, column[:2] + b"\xff\xfe" + column[2:], 1)
    export = tmp_path / "export.csv"
    export.write_bytes(b"\n".join(text))
    store = LocalObjectStore(tmp_path / "out")
    result = convert_export(export, store, rows_per_file=50, block_size=1 << 12)
    assert [r.line for r in result.rejects] == [starts[i] for i in hit]
    assert all("is not UTF-8" in r.reason and "\\xff\\xfe" in r.text for r in result.rejects)
    assert (result.rows_written, result.rows_read) == (len(rows) - len(hit), len(rows))


def test_a_failed_conversion_leaves_no_file_behind(tmp_path: Path):
    export = tmp_path / "export.csv"
    export.write_bytes(ch_csv(_random_rows(3, 3_000)))
    store = LocalObjectStore(tmp_path / "out")

    def fail_late(progress: Any) -> None:
        if progress.rows_written >= 2_000:  # chunk files already written by then
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        convert_export(export, store, rows_per_file=500, block_size=1 << 14, on_progress=fail_late)
    assert _files(tmp_path / "out") == {}
    result = convert_export(export, store, rows_per_file=500, block_size=1 << 14)
    assert set(_files(tmp_path / "out")) == set(result.files)
    assert result.rows_written == 3_000


def test_the_same_content_gives_the_same_files_whatever_its_name_or_compression(tmp_path: Path):
    body = ch_csv(_random_rows(4, 2_000))
    (tmp_path / "a.csv").write_bytes(body)
    (tmp_path / "renamed.csv.gz").write_bytes(gzip.compress(body, mtime=0))
    for name, out in (("a.csv", "x"), ("renamed.csv.gz", "y")):
        convert_export(tmp_path / name, LocalObjectStore(tmp_path / out), rows_per_file=300)
    assert _files(tmp_path / "x") == _files(tmp_path / "y") != {}


@pytest.mark.parametrize("seed", [5, 6])
def test_the_same_rows_in_another_order_are_one_export_and_land_once(
    tmp_path: Path, instance: dg.DagsterInstance, seed: int
):
    import random

    rows = _random_rows(seed, 1_500)
    shuffled = random.Random(seed).sample(rows, len(rows))
    changed = [*rows[:7], (rows[7][0], "ERROR", *rows[7][2:]), *rows[8:]]
    (tmp_path / "a.csv").write_bytes(ch_csv(rows))
    (tmp_path / "b.csv.gz").write_bytes(gzip.compress(ch_csv(shuffled)))
    (tmp_path / "c.csv").write_bytes(ch_csv(changed))
    backend = embedded_backend(tmp_path / "ingest")
    first = convert_export(tmp_path / "a.csv", backend.store, rows_per_file=400)
    _run_days(backend, instance)
    again = convert_export(tmp_path / "b.csv.gz", backend.store, rows_per_file=250, block_size=1 << 14)
    assert again.export_id == first.export_id
    assert set(again.files) != set(first.files)
    chunks = {k for k in _files(tmp_path / "ingest" / "source") if k.startswith("year=")}
    assert chunks == set(again.files)  # the first conversion's cut is gone
    assert sorted(again.removed_files) == sorted(first.files)
    # its rows leave the table when the days are ingested with deletes (never by default)
    _run_days(backend, instance, {"vanished_files": "delete", "max_vanished_fraction": 1.0})
    assert _without_lineage(table_rows(backend.table())) == _without_lineage([expected(r) for r in rows])
    other = convert_export(tmp_path / "c.csv", LocalObjectStore(tmp_path / "other"), rows_per_file=400)
    assert other.export_id != first.export_id  # one field of one row differs


def test_a_corrected_reexport_is_named_beside_the_first_and_replaces_it_when_asked(
    tmp_path: Path, instance: dg.DagsterInstance, capsys: pytest.CaptureFixture[str]
):
    rows = _random_rows(5, 600)
    fixed = [*rows[:3], (rows[3][0], "ERROR", *rows[3][2:]), *rows[4:]]
    (tmp_path / "first.csv").write_bytes(ch_csv(rows))
    (tmp_path / "fixed.csv").write_bytes(ch_csv(fixed))
    backend = embedded_backend(tmp_path / "ingest")
    first = convert_export(tmp_path / "first.csv", backend.store, rows_per_file=200)
    _run_days(backend, instance)
    dest = str(tmp_path / "ingest" / "source")
    assert cli_main(["convert-clickhouse", str(tmp_path / "fixed.csv"), "--dest", dest]) == 0
    warning = capsys.readouterr().err
    assert f"other exports: {first.export_id} ({len(first.files)} files)" in warning
    assert "--replace" in warning
    assert {k for k in _files(tmp_path / "ingest" / "source") if k.startswith("year=")} > set(first.files)
    # asked to replace: the first export's files go, the days hold the fixed rows once
    assert cli_main(["convert-clickhouse", str(tmp_path / "fixed.csv"), "--dest", dest, "--replace"]) == 0
    assert "other exports" not in capsys.readouterr().err
    chunks = {k for k in _files(tmp_path / "ingest" / "source") if k.startswith("year=")}
    assert not chunks & set(first.files)
    _run_days(backend, instance, {"vanished_files": "delete", "max_vanished_fraction": 1.0})
    assert _without_lineage(table_rows(backend.table())) == _without_lineage([expected(r) for r in fixed])


def test_time_zones_are_honoured_or_refused_and_nanoseconds_never_change_the_day(tmp_path: Path):
    rows = [
        ("2025-12-01 23:59:59.999999999", "INFO", "app", "last ns", "atlan-wf-1", "n"),
        ("2025-12-02 05:29:59", "INFO", "app", "kolkata morning", "atlan-wf-1", "n"),
    ]
    typed = ch_csv(rows).split(b"\n", 1)
    types = b'"DateTime64(9, \'Asia/Kolkata\')","LowCardinality(String)","String","String","String","String"'
    export = tmp_path / "typed.csv"
    export.write_bytes(typed[0] + b"\n" + types + b"\n" + typed[1])
    store = LocalObjectStore(tmp_path / "out")
    result = convert_export(export, store)
    assert result.rows_by_day == {"2025-12-01": 2}  # 05:29:59 in Kolkata is 23:59:59 UTC
    plain = tmp_path / "plain.csv"
    plain.write_bytes(ch_csv(rows))
    utc = convert_export(plain, LocalObjectStore(tmp_path / "utc"))
    assert utc.rows_by_day == {"2025-12-01": 1, "2025-12-02": 1}
    told = convert_export(plain, LocalObjectStore(tmp_path / "told"), timezone="Asia/Kolkata")
    assert told.rows_by_day == {"2025-12-01": 2}
    with pytest.raises(ExportFormatError, match=r"Asia/Kolkata.*told 'Europe/Paris'"):
        convert_export(export, LocalObjectStore(tmp_path / "refused"), timezone="Europe/Paris")
    assert not (tmp_path / "refused").exists()
