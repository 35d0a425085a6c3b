"""The generator produces the variations the real writer produces (source-data.md)."""

from __future__ import annotations

import datetime as dt
import io
from collections import Counter

import pyarrow as pa
import pyarrow.parquet as pq

from wflog_assets.tools.generate import GeneratorSettings, generate_day, generate_late_file

DAY = dt.date(2025, 12, 29)
SETTINGS = GeneratorSettings(rows_per_day=4_000, files_per_day=16, workflows_per_day=20)


def _files() -> list[tuple[str, pa.Table]]:
    return [(k, pq.read_table(io.BytesIO(b))) for k, b in generate_day(DAY, SETTINGS)]


def test_files_vary_like_the_real_writer():
    files = _files()
    extra_types = [t.schema.field("extra").type for _, t in files]
    child_types = Counter((f.name, str(f.type)) for st in extra_types for f in st)
    assert any(t == "null" for (_, t) in child_types), "no null-typed child"
    assert {"int64", "string"} <= {t for (n, t) in child_types if n == "attempt"}
    assert len({tuple(f.name for f in st) for st in extra_types}) == len(files), "same order"
    assert len({frozenset(f.name for f in st) for st in extra_types}) > 1, "no missing child"
    with_month = ["month" in t.column_names for _, t in files]
    assert any(with_month)
    assert not all(with_month)
    names = [r["atlan-argo-workflow-name"] for _, t in files for r in t.column("extra").to_pylist()]
    counts = Counter(names).most_common()
    assert counts[0][1] > 10 * counts[-1][1], "workflow sizes are not long-tailed"
    assert all(n.startswith("atlan-") and "-cron-" in n for n, _ in counts)


def test_generation_is_deterministic_and_inside_the_day():
    assert [k for k, _ in generate_day(DAY, SETTINGS)] == [k for k, _ in generate_day(DAY, SETTINGS)]
    start = dt.datetime(2025, 12, 29, tzinfo=dt.UTC).timestamp()
    for key, table in _files():
        assert key.startswith("year=2025/month=12/day=29/chunk-")
        stamps = table.column("timestamp").to_pylist()
        assert all(start <= s < start + 86_400 for s in stamps)


def test_late_file_lands_in_the_day_with_a_later_stamp():
    key, data = generate_late_file(DAY, SETTINGS, index=0, rows=10)
    assert key.startswith("year=2025/month=12/day=29/")
    stamp_ms = int(key.rsplit("part", 1)[1].removesuffix(".parquet"))
    assert stamp_ms > dt.datetime(2025, 12, 30, tzinfo=dt.UTC).timestamp() * 1000
    assert pq.read_table(io.BytesIO(data)).num_rows == 10
