"""Bounded exponential backoff with jitter, for reconnecting to EventStoreDB and PostgreSQL."""

from __future__ import annotations

import random
from collections.abc import Callable


class Backoff:
    """Delays of `initial * 2**n`, capped at `maximum`, each scaled by a random factor in
    [0.5, 1.0] so that many workers restarting together do not retry in lockstep."""

    def __init__(
        self,
        initial: float,
        maximum: float,
        *,
        random_factor: Callable[[], float] | None = None,
    ) -> None:
        if initial <= 0 or maximum <= 0:
            raise ValueError("backoff delays must be positive")
        self.initial = initial
        self.maximum = max(initial, maximum)
        self._random = random_factor or (lambda: random.uniform(0.5, 1.0))
        self.attempt = 0

    def next_delay(self) -> float:
        """The delay before the next attempt; each call counts one more failed attempt."""
        ceiling = min(self.maximum, self.initial * float(2 ** min(self.attempt, 62)))
        self.attempt += 1
        return ceiling * self._random()

    def reset(self) -> None:
        """Call after progress: the next failure starts again from `initial`."""
        self.attempt = 0
