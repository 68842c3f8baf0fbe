"""Time, injectable: the wall clock, a monotonic clock and sleeping.

Everything that waits or compares times takes a `Clock`, so tests run on a virtual clock instead of
sleeping, and a wait that would spin a core for ten seconds under a no-op sleep cannot happen.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Protocol


class Clock(Protocol):
    """Wall time (aware UTC datetimes), monotonic seconds, and sleeping."""

    def now(self) -> dt.datetime:
        """The current time, timezone-aware UTC."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes backwards (for deadlines)."""
        ...

    def sleep(self, seconds: float) -> None:
        """Wait `seconds`."""
        ...


class SystemClock:
    """The real clock."""

    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC)

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


class FakeClock:
    """A virtual clock: `sleep` advances both clocks at once, nothing waits for real.

    Args:
        start: the initial wall time (aware).
        real_sleep: also sleep for real (for tests where other threads must make progress while one waits).
    """

    def __init__(self, start: dt.datetime, real_sleep: bool = False):
        self._now = start
        self._mono = 0.0
        self.real_sleep = real_sleep
        self.slept: list[float] = []

    def now(self) -> dt.datetime:
        return self._now

    def monotonic(self) -> float:
        return self._mono

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        if self.real_sleep:
            time.sleep(seconds)
        self.advance(seconds)

    def advance(self, seconds: float) -> None:
        """Move both clocks forward by `seconds`."""
        self._now += dt.timedelta(seconds=seconds)
        self._mono += seconds


def iso(value: dt.datetime) -> str:
    """An aware datetime as stored in records (ISO 8601 with offset)."""
    return value.isoformat()


def parse_iso(value: str) -> dt.datetime:
    """Inverse of `iso`; a naive value is taken as UTC."""
    parsed = dt.datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def rfc3339(value: dt.datetime) -> str:
    """UTC with milliseconds and `Z`, as messages carry it: 2024-06-10T12:00:05.000Z."""
    return value.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
