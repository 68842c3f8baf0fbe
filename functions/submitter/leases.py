"""Leases on state-store keys: one decider per input, one reconcile tick at a time.

A lease is a create-only document `{owner, time, expires}`. The holder renews it while it works; a lease
past `expires` belongs to a holder that died (killed, timed out) and is taken over with a
generation-match write, so of two racing takers exactly one wins. Leases are short (shorter than
Eventarc's redelivery backoff grows), so a killed invocation never strands an input for long.

A lease may share its key with the final document it guards (a claim lives at its input's verdict key, and
the verdict is written by replacing the claim's generation): `take(..., final=...)` never takes such a
document over and hands it to the caller instead, so one create proves that no final document existed.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable

from .clock import Clock, iso, parse_iso
from .state_store import Document, StateStore


@dataclasses.dataclass(frozen=True)
class Lease:
    """A held lease: its key, this holder's owner id and the document's generation token."""

    key: str
    owner: str
    token: int


class LeaseLost(Exception):
    """Another holder took the lease over (ours had expired): stop, do not write as the holder."""


class Leases:
    """Acquire, renew and release leases in a StateStore.

    Args:
        store: where lease documents live.
        clock: wall time for expiry.
    """

    def __init__(self, store: StateStore, clock: Clock):
        self.store, self.clock = store, clock

    def _doc(self, owner: str, lease_s: float) -> dict[str, str]:
        now = self.clock.now()
        return {"owner": owner, "time": iso(now), "expires": iso(now + dt.timedelta(seconds=lease_s))}

    def acquire(self, key: str, owner: str, lease_s: float) -> Lease | None:
        """Take the lease on `key` for `lease_s` seconds; None while another live holder has it.

        A holder's own lease is returned as is; an expired one is taken over (one racer wins).
        """
        return self.take(key, owner, lease_s)[0]

    def take(self, key: str, owner: str, lease_s: float, *,
             final: Callable[[Document], bool] | None = None) -> tuple[Lease | None, Document | None]:
        """Take the lease on `key`, or say what holds the key instead.

        Args:
            final: recognises a document that settles the key for good (e.g. a verdict): it is never taken
                over, whatever its age.
        Returns:
            (the lease, None) when taken (created: one request; an expired lease is taken over with a
            generation-match write); (None, the document found) when a live lease or a final document holds
            the key; (None, None) when another racer took an expired lease over first.
        """
        doc = self._doc(owner, lease_s)
        token = self.store.create(key, doc)
        if token is not None:
            return Lease(key, owner, token), None
        found = self.store.get(key)
        if found is None:
            token = self.store.create(key, doc)
            return (Lease(key, owner, token), None) if token is not None else (None, None)
        held, current = found
        if final is not None and final(held):
            return None, held
        if held.get("owner") == owner:
            return Lease(key, owner, current), None
        if not _expired(held, self.clock.now()):
            return None, held
        token = self.store.replace(key, doc, current)
        return (Lease(key, owner, token), None) if token is not None else (None, None)

    def renew(self, lease: Lease, lease_s: float) -> Lease:
        """Extend a held lease by `lease_s` from now.

        Raises:
            LeaseLost: the lease was taken over or removed since it was acquired or last renewed.
        """
        token = self.store.replace(lease.key, self._doc(lease.owner, lease_s), lease.token)
        if token is None:
            raise LeaseLost(f"lease {lease.key} is no longer held by {lease.owner}")
        return dataclasses.replace(lease, token=token)

    def release(self, lease: Lease) -> None:
        """Give the lease up now (only if it is still this holder's version)."""
        self.store.delete(lease.key, token=lease.token)


def _expired(doc: dict[str, object], now: dt.datetime) -> bool:
    expires = doc.get("expires")
    if isinstance(expires, str):
        return parse_iso(expires) <= now
    return True  # a malformed lease document protects nothing
