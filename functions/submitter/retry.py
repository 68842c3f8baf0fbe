"""Bounded retries with jitter for transient faults (google-api-core's Retry).

Only errors the retry table calls transient are retried; after the deadline
the last error propagates so the invocation fails and Eventarc redelivers.
"""

from __future__ import annotations

from typing import Callable, TypeVar

from google.api_core import exceptions as core_exceptions
from google.api_core.retry import Retry

from .backends.errors import BackendError

T = TypeVar("T")

TRANSIENT_CORE = (core_exceptions.ServiceUnavailable, core_exceptions.DeadlineExceeded,
                  core_exceptions.InternalServerError, core_exceptions.TooManyRequests,
                  core_exceptions.BadGateway, core_exceptions.GatewayTimeout)


def is_transient(exc: BaseException) -> bool:
    """True for faults a retry can fix: transient BackendErrors, GCS/Pub/Sub 5xx/429, connection errors."""
    if isinstance(exc, BackendError):
        return exc.transient
    return isinstance(exc, TRANSIENT_CORE + (ConnectionError, TimeoutError))


def call_with_retries(fn: Callable[[], T], *, deadline_s: float = 30.0, initial_s: float = 0.5,
                      maximum_s: float = 8.0) -> T:
    """Call `fn`, retrying transient faults with exponential backoff and jitter.

    Args:
        fn: the call.
        deadline_s: total seconds of retrying before the last error is raised.
        initial_s / maximum_s: first and largest delay between tries (seconds).
    Raises:
        whatever `fn` raised, once permanent or once the deadline passed.
    """
    retry = Retry(predicate=is_transient, initial=initial_s, maximum=maximum_s, multiplier=2.0, timeout=deadline_s)
    try:
        return retry(fn)()
    except core_exceptions.RetryError as exc:
        raise (exc.cause or exc) from None
