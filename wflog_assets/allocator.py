"""Which allocator Arrow's buffers come from, for the whole process.

pyarrow's default on Linux is mimalloc, which keeps freed pages resident: a day's run, whose
batches come and go all the time, peaked 15-25% higher with it than with jemalloc for the same
work (docs/benchmarks.md, "Arrow's allocator"). `ARROW_DEFAULT_MEMORY_POOL`, when the operator
sets it, still decides.

Arrow reads that variable once per process, at its first allocation, and its C++ code (Parquet
and IPC readers, compute kernels) allocates from that choice; `pyarrow.set_memory_pool` only
changes what pyarrow's Python calls allocate from. So the choice is made in two places:
`choose_before_arrow` when the package is imported (in a Dagster run worker that is before any
Arrow allocation), and `use_lean_allocator` when a run starts (for a process where Arrow was
loaded before the package).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

LEAN_POOL = "jemalloc"


def choose_before_arrow() -> None:
    """Name jemalloc in ARROW_DEFAULT_MEMORY_POOL if the operator named nothing and Arrow is not
    loaded yet (Linux: pyarrow's wheels there carry jemalloc)."""
    if sys.platform == "linux" and "pyarrow" not in sys.modules:
        os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", LEAN_POOL)


def use_lean_allocator() -> str:
    """Make the pool ARROW_DEFAULT_MEMORY_POOL names (jemalloc when unset) the default of
    pyarrow's Python calls, if it is not already; the backend now in use."""
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
