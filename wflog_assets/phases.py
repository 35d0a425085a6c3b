"""Where a day's time went: seconds (and bytes) per phase, added to from several threads."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager


class PhaseTimes:
    """Seconds and bytes per phase; thread-safe (the reading threads add to it)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.bytes: dict[str, int] = {}
        self._lock = threading.Lock()

    def add(self, phase: str, seconds: float, nbytes: int = 0) -> None:
        with self._lock:
            self.seconds[phase] = self.seconds.get(phase, 0.0) + seconds
            if nbytes:
                self.bytes[phase] = self.bytes.get(phase, 0) + nbytes

    @contextmanager
    def timed(self, phase: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.add(phase, time.perf_counter() - started)

    def as_dict(self) -> dict[str, float]:
        return {k: round(v, 3) for k, v in self.seconds.items()}
