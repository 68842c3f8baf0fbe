"""Row 8: training-API calls per reconciler tick for 100, 1,000 and 10,000 followed jobs, on the in-memory doubles.

Uses tests/test_reconciler_scale.py's own rig (`Rig`, `seed`, `Calls`): the real Reconciler and the real ml v1
adapter over FakeMlApi. The measured tick is the second one: after a first tick published every job's QUEUED,
a tenth of the jobs finish and a further fifth start RUNNING. The baseline is what a poller that calls `get`
per job makes: N calls. Counts are deterministic, so one run each.
"""

from __future__ import annotations

import math

from .common import Row

FINAL = ("SUCCEEDED", "FAILED", "CANCELLED")


def calls_for(n: int) -> tuple[int, int, int]:
    """(list calls, get calls, jobs that finished) in the measured tick for `n` followed jobs."""
    from test_reconciler_scale import Calls, Rig, seed

    rig = Rig()
    ids = seed(rig.ledger, rig.api, n)
    rig.reconciler.tick()
    finished = ids[: n // 10]
    for k, jid in enumerate(finished):
        rig.api.set_state(jid, FINAL[k % 3])
    for jid in ids[n // 10: n // 10 + n // 5]:
        rig.api.set_state(jid, "RUNNING")
    calls = Calls(rig.api)
    rig.reconciler.tick()
    lists, gets = calls()
    return lists, gets, len(finished)


def run(runs: int, smoke: bool) -> list[Row]:
    """One row per size (smoke: 100 and 1,000)."""
    rows = []
    for n in (100, 1_000) if smoke else (100, 1_000, 10_000):
        lists, gets, finished = calls_for(n)
        total = lists + gets
        bound = math.ceil(n / 100) + finished
        rows.append(Row(8, f"8 (N={n:,})", f"API calls in one tick, {n:,} active jobs: {total:,} "
                                           f"({lists} list pages + {gets} get)",
                        f"a get per job: {n:,} calls", f"{total / n:.3f}×",
                        f"≤ ceil(N/100) + finished = {bound:,}", total <= bound,
                        f"{finished:,} jobs finished since the previous tick; tests/test_reconciler_scale.py's rig"))
    return rows
