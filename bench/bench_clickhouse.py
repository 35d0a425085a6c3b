"""ClickHouse CSV conversion: rows/s and peak RSS, against plain pyarrow reading the same file.

    .venv/bin/python bench/bench_clickhouse.py [--sizes-mb 250 1100] [--rows-per-file 250000]

For each size, an export is generated (ClickHouse's CSV quoting: quoted strings, doubled
quotes, \\N, multi-line bodies with commas), then two child processes run on it:
the baseline (pyarrow's streaming CSV reader, same options, nothing else) and the converter
(read + map + group by day + write chunk files). Each child reports its own time and peak RSS
(ru_maxrss), so generation does not count. Peak RSS should not grow with the export's size.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = r"""
import json, resource, sys, time
from pathlib import Path
mode, export, out, rows_per_file = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
started = time.perf_counter()
if mode == "baseline":
    import pyarrow as pa, pyarrow.csv as pcsv
    from wflog_assets.tools.clickhouse import BLOCK_SIZE, COLUMNS
    reader = pcsv.open_csv(export,
        read_options=pcsv.ReadOptions(use_threads=False, block_size=BLOCK_SIZE),
        parse_options=pcsv.ParseOptions(newlines_in_values=True),
        convert_options=pcsv.ConvertOptions(column_types=dict.fromkeys(COLUMNS, pa.string()),
            null_values=["\\N", ""], strings_can_be_null=True))
    rows = sum(b.num_rows for b in reader)
    files = 0
else:
    from wflog_assets.tools.clickhouse import convert_export
    from wflog_assets.source.stores import LocalObjectStore
    result = convert_export(export, LocalObjectStore(out), rows_per_file=rows_per_file)
    rows, files = result.rows_written, len(result.files)
seconds = time.perf_counter() - started
print(json.dumps({"rows": rows, "files": files, "seconds": seconds,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def _field(value: str | None) -> str:
    return "\\N" if value is None else '"' + value.replace('"', '""') + '"'


def generate(path: Path, megabytes: int, seed: int = 5) -> int:
    """Write a ClickHouse-style export of about `megabytes` MB; return its row count."""
    rng = random.Random(seed)
    start = 1_764_547_200  # 2025-12-01
    severities = ("INFO", "INFO", "INFO", "DEBUG", "WARN", "ERROR", "CRITICAL")
    names = [
        f"atlan-{c}-{1_600_000_000 + i}-cron-{start + i * 977}"
        for i, c in enumerate(("salesforce", "snowflake", "tableau", "dbt") * 50)
    ]
    target, written, rows = megabytes * 1_000_000, 0, 0
    with path.open("w", encoding="utf-8") as f:
        f.write('"Timestamp","SeverityText","TenantName","Body","WorkflowName","WorkflowNode"\n')
        while written < target:
            lines = []
            for _ in range(20_000):
                ts = start + rows * 0.37  # about 230k rows a day: an export spans days
                stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(int(ts)))
                if rows % 3:
                    stamp += f".{int(ts * 1e6) % 1_000_000:06d}"
                name = rng.choice(names)
                body = (
                    f'Processed batch {rows}, status="ok", rows={rng.randrange(10**5)}'
                    if rows % 11
                    else f'Traceback (most recent call last):\n  File "a.py", line {rows % 900}'
                    f"\nValueError: bad value, {'x' * rng.randrange(400)}"
                )
                node = None if rows % 17 == 0 else f"{name}-step-{rows % 7}"
                lines.append(
                    ",".join(
                        (
                            _field(stamp),
                            _field(rng.choice(severities)),
                            _field("application_sdk.activities.common"),
                            _field(body),
                            _field(name),
                            _field(node),
                        )
                    )
                )
                rows += 1
            block = "\n".join(lines) + "\n"
            f.write(block)
            written += len(block.encode())
    return rows


def run_child(mode: str, export: Path, out: Path, rows_per_file: int) -> dict[str, float]:
    completed = subprocess.run(
        [sys.executable, "-c", CHILD, mode, str(export), str(out), str(rows_per_file)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(completed.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes-mb", type=int, nargs="+", default=[250, 1100])
    parser.add_argument("--rows-per-file", type=int, default=250_000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="wflog-bench-ch-"))
    print(
        "| export | rows | baseline s | convert s | ratio | convert rows/s | MB/s "
        "| baseline peak RSS | convert peak RSS | chunk files |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for mb in args.sizes_mb:
        export = work / f"export-{mb}mb.csv"
        rows = generate(export, mb)
        size_mb = export.stat().st_size / 1e6
        base = run_child("baseline", export, work / "unused", args.rows_per_file)
        conv = run_child("convert", export, work / f"out-{mb}", args.rows_per_file)
        assert conv["rows"] == base["rows"] == rows, (conv, base, rows)
        print(
            f"| {size_mb:,.0f} MB | {rows:,} | {base['seconds']:.1f} | {conv['seconds']:.1f} "
            f"| {conv['seconds'] / base['seconds']:.2f}x | {rows / conv['seconds']:,.0f} "
            f"| {size_mb / conv['seconds']:.1f} | {base['peak_rss_mb']:,.0f} MB "
            f"| {conv['peak_rss_mb']:,.0f} MB | {conv['files']} |"
        )
        export.unlink()
    print(
        f"(this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MB "
        f"peak, generation only; outputs under {work})"
    )


if __name__ == "__main__":
    main()
