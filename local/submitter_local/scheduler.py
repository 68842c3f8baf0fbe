"""Local stand-in for Cloud Scheduler: POSTs to the reconcile function every `--interval` seconds, and, given
`--changes`, also as soon as the local training service reports a job change.

Run: python -m submitter_local.scheduler --url http://127.0.0.1:PORT --interval 1 \
         [--changes http://127.0.0.1:TRAINING_PORT/local/v1/changes]

With `--changes` the period is only the safety net: between calls the scheduler long-polls the training service's
change counter (a local extension, not Google's API) and calls `reconcile` once it moved, at most one call per
`--min-gap` seconds. This is the local counterpart of the cloud design's option of triggering on the training
service's own state-change logs. The reconciler still publishes only what it reads from the training API, so a
cue never invents or reorders a state; a missed cue costs at most one period.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
import time

import requests

log = logging.getLogger("scheduler")

MIN_GAP_S = 0.25  # default floor between two reconcile calls when cued by changes (a burst coalesces into one tick)


def run(url: str, interval_s: float, stopping: threading.Event, changes_url: str | None = None,
        min_gap_s: float = MIN_GAP_S) -> None:
    """Call `url` every `interval_s` seconds, and early whenever `changes_url` reports a change, until `stopping`
    is set; failures are logged, never fatal."""
    http = requests.Session()
    seen = _changes(http, changes_url, None, 0.0) if changes_url else None
    while not stopping.is_set():
        started = time.monotonic()
        _reconcile(http, url)
        if changes_url is None:
            stopping.wait(interval_s)
            continue
        stopping.wait(max(0.0, min_gap_s - (time.monotonic() - started)))
        if seen is None:  # no counter to wait on yet: take the current one
            seen = _changes(http, changes_url, None, 0.0)
        remaining = interval_s - (time.monotonic() - started)
        if remaining > 0 and not stopping.is_set():
            now = _changes(http, changes_url, seen, remaining) if seen is not None else None
            if now is None:  # the training service is unreachable: fall back to the period
                stopping.wait(max(0.0, interval_s - (time.monotonic() - started)))
            seen = now


def _reconcile(http: requests.Session, url: str) -> None:
    try:
        answer = http.post(url, json={}, timeout=60)
        if answer.status_code >= 300:
            log.warning("reconcile answered %s: %s", answer.status_code, answer.text[:300])
        elif '"published": []' not in answer.text:
            log.info("reconcile: %s", answer.text[:500])
    except requests.RequestException as exc:
        log.warning("reconcile call failed: %s", exc)


def _changes(http: requests.Session, url: str, after: int | None, wait_s: float) -> int | None:
    """The training service's change counter once it exceeds `after` (or after `wait_s`); None when unreachable."""
    params: dict[str, str] = {"timeout": f"{wait_s:.3f}"}
    if after is not None:
        params["after"] = str(after)
    try:
        answer = http.get(url, params=params, timeout=wait_s + 10)
        answer.raise_for_status()
        return int(answer.json()["changes"])
    except (requests.RequestException, ValueError, KeyError, TypeError) as exc:
        log.debug("change cue unavailable: %s", exc)
        return None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True, help="the reconcile function")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between calls (the safety net)")
    parser.add_argument("--changes", help="the training service's /local/v1/changes: also call once it moved")
    parser.add_argument("--min-gap", type=float, default=MIN_GAP_S, help="seconds between cued calls, at least")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s scheduler %(levelname)s %(message)s")
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    try:
        run(args.url, args.interval, stopping, args.changes, args.min_gap)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
