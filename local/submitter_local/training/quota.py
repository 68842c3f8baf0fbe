"""The create quota of the local training service: how many creates a window admits (pure: no I/O, the clock is
injected).

Google limits how fast jobs are created per project and region (AI Platform Training: `jobs.create` requests per
minute per region; Vertex AI: 60 "job or LRO submission requests" per minute per region, customJobs and
hyperparameterTuningJobs alike) and answers 429 RESOURCE_EXHAUSTED beyond it. `CreateQuota` counts the creates it
admits per key in a sliding window: a create is admitted while fewer than `limit` creates were admitted in the last
`window_s` seconds, and charged when admitted; a refused create charges nothing (a client retrying in a loop does not
push its own wait back), as Google counts a rate quota. The service builds the 429 itself (`errors.rate_limited`).

Thread-safe: the HTTP server serves each request on its own thread, and a check and its charge happen under one
lock, so N concurrent creates never admit more than `limit`.

    quota = CreateQuota(limit=3, window_s=60.0)        # clock: time.monotonic
    decision = quota.admit(("ml.googleapis.com", "demo-project", "us-central1"))
    decision.admitted, decision.retry_after_s          # (True, 0.0), or (False, seconds until a slot frees)
"""

from __future__ import annotations

import collections
import dataclasses
import threading
import time
from collections.abc import Callable, Hashable


@dataclasses.dataclass(frozen=True)
class Decision:
    """One create's answer: `admitted` (and charged), or refused with `retry_after_s` (> 0), the seconds until the
    oldest charge in the window expires; `used` is how many creates the window holds after this decision."""

    admitted: bool
    retry_after_s: float
    used: int


class CreateQuota:
    """At most `limit` admitted creates per key in any `window_s` seconds (a sliding window).

    Args:
        limit: creates admitted per window and key (at least 1).
        window_s: the window's length in seconds (positive; Google's rate quotas are per minute: 60).
        clock: monotonic seconds (tests pass a virtual clock).
    Raises:
        ValueError: a limit below 1 or a window that is not positive.
    """

    def __init__(self, limit: int, window_s: float = 60.0, clock: Callable[[], float] = time.monotonic):
        if limit < 1:
            raise ValueError("the create quota's limit must be at least 1")
        if not window_s > 0:
            raise ValueError("the create quota's window must be positive")
        self.limit = limit
        self.window_s = window_s
        self._clock = clock
        self._lock = threading.Lock()
        self._charged: dict[Hashable, collections.deque[float]] = {}  # key -> times of admitted creates, oldest first
        self.refused = 0  # creates refused so far, every key

    def admit(self, key: Hashable) -> Decision:
        """Admit and charge one create of `key` (e.g. (service, project, region)) if its window has room."""
        with self._lock:
            now = self._clock()
            times = self._charged.get(key)
            if times is None:
                times = self._charged[key] = collections.deque()
            while times and times[0] <= now - self.window_s:  # a charge leaves the window window_s after it was made
                times.popleft()
            if len(times) < self.limit:
                times.append(now)
                return Decision(True, 0.0, len(times))
            self.refused += 1
            return Decision(False, max(times[0] + self.window_s - now, 0.001), len(times))

    def used(self, key: Hashable) -> int:
        """Creates of `key` charged in the current window."""
        with self._lock:
            now = self._clock()
            return sum(1 for t in self._charged.get(key, ()) if t > now - self.window_s)


__all__ = ["CreateQuota", "Decision"]
