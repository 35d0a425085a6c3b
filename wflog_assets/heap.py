"""The cycle collector and a run worker's heap.

A run worker holds Dagster's, pyiceberg's, SQLAlchemy's, boto3's and pyarrow's modules: about a
million tracked objects that live as long as the process. CPython's cycle collector walks every
one of them on each full collection, and loading those modules, then a run that makes objects
per file (manifest entries, lineage pairs, events), sets off several. For one late file in a day
of 20,000, that was 0.4 s of the 1.6 s of imports and 0.4 s of the 1.4 s run
(docs/benchmarks.md, "The current writer's stream").

`gc.freeze()` moves every object alive now to a generation that no collection walks. What it
holds is still freed by reference counting; only its reference cycles wait for `gc.unfreeze()`.
So the package freezes what its imports loaded (objects that live as long as the process), and
a run freezes what is alive when it starts and unfreezes it when it ends (`hold_for_run`,
`release_after_run`), which leaves a long-lived process (a test session, a code server) with
nothing frozen for good but its modules.
"""

from __future__ import annotations

import gc


def keep_loaded() -> None:
    """After imports: what is alive now (modules, classes, definitions) lives as long as the
    process; keep it out of every later collection."""
    gc.freeze()


def hold_for_run() -> None:
    """At a run's start: what is alive now outlives the run; the run's collections skip it."""
    gc.freeze()


def release_after_run() -> None:
    """At a run's end: back under the collector, cycles included."""
    gc.unfreeze()
