"""Bounded retries with jittered exponential backoff for transient faults (tenacity).

Only `TransientError`s are retried (adapters translate their libraries' failures into the error tree);
after the deadline the last error propagates, so the invocation fails and Eventarc redelivers. The
clock is injected: tests run retries on a virtual clock.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import tenacity

from .clock import Clock, SystemClock
from .errors import TransientError

T = TypeVar("T")
_SYSTEM = SystemClock()


def call_with_retries(fn: Callable[[], T], *, clock: Clock = _SYSTEM, deadline_s: float = 30.0,
                      initial_s: float = 0.5, maximum_s: float = 8.0,
                      retry_if: Callable[[BaseException], bool] | None = None) -> T:
    """Call `fn`, retrying TransientErrors with exponential backoff and full jitter.

    Args:
        fn: the call.
        clock: where time is read and slept (a FakeClock in tests).
        deadline_s: seconds of retrying after which the last error is raised.
        initial_s / maximum_s: the backoff's first and largest delay ceiling (seconds).
        retry_if: narrows which TransientErrors are retried (False: raised at once).
    Raises:
        whatever `fn` raised: at once when it is not a TransientError (or `retry_if` refuses it), else once the
        deadline passed.
    """
    start = clock.monotonic()

    def out_of_time(state: tenacity.RetryCallState) -> bool:
        return clock.monotonic() - start >= deadline_s

    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception(
            lambda exc: isinstance(exc, TransientError) and (retry_if is None or retry_if(exc))),
        stop=out_of_time,
        wait=tenacity.wait_random_exponential(multiplier=initial_s, max=maximum_s),
        sleep=clock.sleep,
        reraise=True,
    )
    return retrying(fn)
