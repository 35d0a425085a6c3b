"""Process-wide settings a run applies when it starts: Arrow's allocator and the cycle collector.

Nothing here runs at import: the catalog resource applies them when a run starts and ends
(`start_run`, `end_run`), and the `wflog-assets` command when it starts (`prepare_command`).

**Allocator.** pyarrow's default on Linux is mimalloc, which keeps freed pages resident: a day's
run, whose batches come and go all the time, peaked 15-25% higher with it than with jemalloc for
the same work (docs/benchmarks.md). `start_run` makes jemalloc the pool pyarrow's calls allocate
from (Parquet and JSON reads, compute kernels, tables built in Python take it as their default);
a few C++ paths (Parquet decompression buffers of `iter_batches`, dataset scans) use the pool
Arrow chose at its first allocation, which only `ARROW_DEFAULT_MEMORY_POOL` in the process's
environment decides: the `wflog-assets` command sets it for itself, a deployment sets it in the
code server's environment (docs/operations.md). An operator's value is honoured by both.

**Cycle collector.** A run worker holds Dagster's, pyiceberg's, SQLAlchemy's, boto3's and
pyarrow's modules: several hundred thousand tracked objects that outlive the run. `gc.freeze()`
moves every object alive now out of the collector's walks (reference counting still frees
them); a run freezes what is alive when it starts and gives it back when it ends, so a
long-lived process (a test session, a code server) keeps nothing frozen after a run.
"""

from __future__ import annotations

import gc
import os
import sys
from collections.abc import Callable
from typing import Any

LEAN_POOL = "jemalloc"


def prepare_command() -> None:
    """At the start of a `wflog-assets` command, before Arrow loads: Arrow's own first choice is
    the lean pool too, unless the operator named one in ARROW_DEFAULT_MEMORY_POOL."""
    if sys.platform == "linux" and "pyarrow" not in sys.modules:
        os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", LEAN_POOL)


def use_lean_allocator() -> str:
    """Make the pool ARROW_DEFAULT_MEMORY_POOL names (jemalloc when unset) the default of
    pyarrow's calls, if it is not already; the backend now in use."""
    import pyarrow as pa

    wanted = os.environ.get("ARROW_DEFAULT_MEMORY_POOL") or LEAN_POOL
    pools: dict[str, Callable[[], Any]] = {
        "jemalloc": pa.jemalloc_memory_pool,
        "mimalloc": pa.mimalloc_memory_pool,
        "system": pa.system_memory_pool,
    }
    if pa.default_memory_pool().backend_name != wanted and wanted in pools:
        try:
            pa.set_memory_pool(pools[wanted]())
        except NotImplementedError:  # a pyarrow built without it
            pa.set_memory_pool(pa.system_memory_pool())
    return str(pa.default_memory_pool().backend_name)


def start_run() -> None:
    """At a run's start: Arrow's lean allocator, and what is alive now (modules, definitions)
    kept out of the run's collections."""
    use_lean_allocator()
    gc.freeze()


def end_run() -> None:
    """At a run's end: everything back under the collector, cycles included."""
    gc.unfreeze()
