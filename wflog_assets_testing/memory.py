"""Memory of a day's run: one big `.json.gz` to put in a day, and the day ingested in a child
process of its own (as `wflog-assets materialize` would) to read its peak RSS. Used by the
memory tests and by `bench/bench_big_json.py`.

    python -m wflog_assets_testing.memory <embedded backend root> <YYYY-MM-DD>

prints the day's `workflow_logs` figures, its failed checks and the process's peak RSS
(`ru_maxrss`, its high-water mark) as one JSON line.
"""

from __future__ import annotations

import datetime as dt
import gc
import gzip
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


def write_big_json(
    root: Path, day: dt.date, megabytes: int, level: int = 6, cycling: bool = False
) -> tuple[str, int]:
    """One writer-named `.json.gz` of about `megabytes` MB of decompressed writer records for
    `day` under `root` (a process's flushes concatenated: an export, a backfill), its lines in
    time order, or `cycling` through the whole day again and again (every block of the file
    then spans the day); (its key, its lines)."""
    from wflog_assets.day import Day
    from wflog_assets.tools.generate import writer_flushes

    pool = [line for _, lines in writer_flushes(day, 2_000, seed=2) for line in lines]
    average = sum(len(line) + 1 for line in pool) / len(pool)
    repeat = max(1, round(megabytes * 1_000_000 / average / len(pool)))
    noon_ns = int(Day(day).start + 43_200) * 1_000_000_000
    key = f"{Day(day).prefix}hour=12/{noon_ns}_999999_prod-eu-1_atlan-application-sdk.json.gz"
    path = root / key
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wb", compresslevel=level) as out:
        if cycling:
            text = "".join(line + "\n" for line in pool).encode()
            for _ in range(repeat):
                out.write(text)
        else:
            for line in pool:
                out.write((line + "\n").encode() * repeat)
    return key, len(pool) * repeat


def ingest_in_child(root: Path, day: dt.date) -> dict[str, Any]:
    """Run the day on the embedded backend under `root` in a child process; its figures
    (`day_rows`, `outcome`, `failed_checks`, its own `peak_rss_mib`) plus `seconds`."""
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "wflog_assets_testing.memory", str(root), day.isoformat()],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"the child run of {day} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    figures: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    figures["seconds"] = round(time.perf_counter() - started, 1)
    return figures


def own_peak_kib() -> int:
    """This process's own peak RSS in KiB: VmHWM of its memory map. Not `ru_maxrss`: Linux
    folds the parent's high-water mark into it across fork and exec (a child of a test worker
    that grew to 1.1 GiB reported 1.1 GiB, its own peak being 0.55)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _main(root: str, day: str) -> None:
    import dagster as dg

    from wflog_assets_testing.backends import embedded_backend

    backend = embedded_backend(Path(root))
    with dg.DagsterInstance.ephemeral() as instance:
        result = backend.run_day(dt.date.fromisoformat(day), instance)
    (mat,) = result.asset_materializations_for_node("workflow_logs")
    failed = [c.check_name for c in result.get_asset_check_evaluations() if not c.passed]
    peak = own_peak_kib()
    figures = {k: v.value for k, v in mat.metadata.items() if k in ("day_rows", "rows_written", "outcome")}
    print(json.dumps({**figures, "failed_checks": failed, "peak_rss_mib": round(peak / 1024)}), flush=True)
    gc.freeze()  # as `wflog-assets` does before it exits


if __name__ == "__main__":
    from wflog_assets.process import prepare_command

    prepare_command()  # Arrow's allocator, before Arrow loads, as `wflog-assets` does
    _main(sys.argv[1], sys.argv[2])
