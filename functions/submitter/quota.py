"""The training API's create quota, as pure decisions (no I/O): when an input waits in the quota queue, in which
order queued inputs are served, what their status says.

A `jobs.create` answered 429 without a QuotaFailure (`google_errors.classify`: BackendUnavailable, reason
RATE_LIMITED) means the per-region create rate is exhausted for now (Vertex allows 60 job submissions a minute per
region). Retrying inside the invocation, or failing it so Eventarc redelivers, hammers the API with creates it is
bound to refuse and serves inputs in whatever order the backoff happens to pick. Instead the submission path
(`Submitter.submit`) queues the input in the state store and acknowledges its event; the reconcile tick drains each
region's queue oldest first through the same path, stopping at the first 429 (`App._tick`).

Records (written by `Ledger`):
  quota/<backend>/<region>/<epoch ms>/<input id>     a queued input (ordered by first-queued time): its origin, its
                                                     job key and what its handler needs to decide it again
  quota-queued/<input id>.json                       which entry holds the input (a redelivery does not queue twice)
  quota/<backend>/<region>.gate.json                 the region is rate limited: written at a 429, removed by the
                                                     tick once the region's queue is empty; while it exists, new
                                                     inputs of the region queue behind without calling jobs.create
(gates and entries share the prefix `quota/`, so a tick lists both at once; <input id> is a digest of the input's
record key, so a key stays short whatever the drop folder's name.)
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import hashlib
from collections.abc import Iterable

from .clock import iso
from .errors import BackendUnavailable
from .reasons import Reason

QUEUE_PREFIX = "quota/"
QUEUED_PREFIX = "quota-queued/"
GATE_SUFFIX = ".gate.json"


def is_rate_limited(exc: BaseException) -> bool:
    """True for a create refused only for now by the API's rate quota (429 without a QuotaFailure); a 429 with a
    QuotaFailure is a permanent QUOTA_EXCEEDED (BackendRefused) and a 5xx is API_UNAVAILABLE: neither is queued."""
    return isinstance(exc, BackendUnavailable) and exc.reason == Reason.RATE_LIMITED


def retried_in_invocation(exc: BaseException) -> bool:
    """Whether the invocation's bounded retries (`retry.call_with_retries`) should retry `exc`: every transient
    fault except a rate-limited create, which is queued instead."""
    return not is_rate_limited(exc)


class Route(enum.StrEnum):
    """What the submission path does with a valid input just before creating its job."""

    CREATE = "create"  # call jobs.create
    QUEUE = "queue"  # queue it behind the region's queued inputs, without calling jobs.create
    ALREADY_QUEUED = "already_queued"  # a redelivery of a queued input: it keeps its place


def route(*, draining: bool, gate: bool, queued: bool) -> Route:
    """Where a valid input goes (pure).

    Args:
        draining: the tick is serving this input from the queue (its turn has come).
        gate: the region's gate exists (a create was answered 429 and the queue has not emptied since).
        queued: the input already has a queue entry.
    """
    if draining:
        return Route.CREATE
    if queued:
        return Route.ALREADY_QUEUED
    return Route.QUEUE if gate else Route.CREATE


def input_id(record_key: str) -> str:
    """A short, fixed-length name for an input (its record key may be as long as a drop folder's name)."""
    return hashlib.sha256(record_key.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def entry_key(backend: str, region: str, queued_at: dt.datetime, record_key: str) -> str:
    """The queue entry of an input: sorted by key, a region's entries are in first-queued order."""
    stamp = int(queued_at.timestamp() * 1000)
    return f"{QUEUE_PREFIX}{backend}/{region}/{stamp:013d}/{input_id(record_key)}"


def queued_key(record_key: str) -> str:
    """The marker naming an input's queue entry."""
    return f"{QUEUED_PREFIX}{input_id(record_key)}.json"


def gate_key(backend: str, region: str) -> str:
    """The gate of a backend's region."""
    return f"{QUEUE_PREFIX}{backend}/{region}{GATE_SUFFIX}"


@dataclasses.dataclass(frozen=True, order=True)
class Entry:
    """A parsed queue entry key: (backend, region) is its queue, `stamp` (epoch ms) its place."""

    backend: str
    region: str
    stamp: int
    ident: str  # input_id of the input's record key
    key: str = dataclasses.field(compare=False)

    @property
    def queue(self) -> tuple[str, str]:
        return self.backend, self.region


def parse_entry(key: str) -> Entry | None:
    """The entry a key names, or None for a key that is not one."""
    if not key.startswith(QUEUE_PREFIX):
        return None
    parts = key[len(QUEUE_PREFIX):].split("/")
    if len(parts) != 4 or not parts[2].isdigit() or not all(parts):  # (a gate key has 2 parts)
        return None
    return Entry(parts[0], parts[1], int(parts[2]), parts[3], key)


def parse_gate(key: str) -> tuple[str, str] | None:
    """(backend, region) of a gate key, or None."""
    if not key.startswith(QUEUE_PREFIX) or not key.endswith(GATE_SUFFIX):
        return None
    backend, _, region = key[len(QUEUE_PREFIX):-len(GATE_SUFFIX)].partition("/")
    return (backend, region) if backend and region and "/" not in region else None


def gates(versions: dict[str, int]) -> dict[tuple[str, str], int]:
    """Each gate's (backend, region) with its generation token, from a listing of `quota/`."""
    out = {}
    for key, token in versions.items():
        parsed = parse_gate(key)
        if parsed is not None:
            out[parsed] = token
    return out


def queues(keys: Iterable[str]) -> dict[tuple[str, str], list[Entry]]:
    """Each (backend, region)'s entries, oldest first (ties by input id), from a listing of `quota/`."""
    out: dict[tuple[str, str], list[Entry]] = {}
    for key in keys:
        entry = parse_entry(key)
        if entry is not None:
            out.setdefault(entry.queue, []).append(entry)
    return {q: sorted(entries) for q, entries in sorted(out.items())}


def position(entries: Iterable[Entry], key: str) -> int:
    """1-based place of entry `key` in its queue (entries of one queue, any order); len + 1 when absent."""
    ordered = sorted(entries)
    return next((i for i, e in enumerate(ordered, 1) if e.key == key), len(ordered) + 1)


def queued_message(name: str, region: str, queued_at: dt.datetime, place: int, *, why: str) -> str:
    """What a queued input's status says."""
    return (f"{name}: queued for the training API's create quota in {region}: {why}. Queued at {iso(queued_at)}, "
            f"position {place} in the region's queue; the reconciler submits queued inputs oldest first as the quota "
            "frees up (no need to upload again).")


RATE_LIMITED_WHY = "the create quota is exhausted (429 RATE_LIMITED)"
BEHIND_WHY = "earlier inputs are waiting for the create quota (429 RATE_LIMITED)"


__all__ = ["is_rate_limited", "retried_in_invocation", "Route", "route", "input_id", "entry_key", "queued_key",
           "gate_key", "gates", "Entry", "parse_entry", "parse_gate", "queues", "position", "queued_message"]
