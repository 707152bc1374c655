"""Progress of long runs: a tqdm bar (rate, ETA) on a terminal, periodic log lines otherwise.

When the number of events is not known in advance (reading EventStoreDB), but the range of
commit positions is, the total is estimated from how far along that range the run is, and
refined as it goes.
"""

from __future__ import annotations

import logging
import sys
import time
from types import TracebackType
from typing import Any

from tqdm import tqdm

log = logging.getLogger(__name__)

LOG_EVERY_SECONDS = 5.0


class Progress:
    def __init__(
        self,
        label: str,
        total: int | None = None,
        *,
        span: tuple[int, int | None] | None = None,
        terminal: bool | None = None,
    ) -> None:
        self.label = label
        self.total = total
        self.span = span if span is not None and span[1] is not None else None
        self.done = 0
        self.started = time.monotonic()
        self._last_log = self.started
        self._bar: tqdm[Any] | None = None
        if sys.stderr.isatty() if terminal is None else terminal:
            self._bar = tqdm(total=total, desc=label, unit="ev", unit_scale=True, smoothing=0.1)

    def update(self, count: int, position: int | None = None) -> None:
        self.done += count
        if position is not None:
            self._estimate(position)
        if self._bar is not None:
            self._bar.update(count)
            return
        now = time.monotonic()
        if now - self._last_log >= LOG_EVERY_SECONDS:
            self._last_log = now
            self.log_line(now)

    def _estimate(self, position: int) -> None:
        if self.span is None:
            return
        start, end = self.span
        assert end is not None
        covered = position - start
        if covered <= 0 or end <= start:
            return
        estimate = max(self.done, round(self.done * (end - start) / covered))
        self.total = estimate
        if self._bar is not None:
            self._bar.total = estimate

    def log_line(self, now: float | None = None) -> None:
        elapsed = (now or time.monotonic()) - self.started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        if self.total:
            eta = (self.total - self.done) / rate if rate else float("inf")
            log.info(
                "%s: %d of %d events, %.0f events/s, ETA %.0f s",
                self.label,
                self.done,
                self.total,
                rate,
                eta,
            )
        else:
            log.info("%s: %d events, %.0f events/s", self.label, self.done, rate)

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
