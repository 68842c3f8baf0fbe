"""Local stand-in for Cloud Scheduler: POSTs to the reconcile function every `--interval` seconds.

Run: python -m submitter_local.scheduler --url http://127.0.0.1:PORT --interval 1
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading

import requests

log = logging.getLogger("scheduler")


def run(url: str, interval_s: float, stopping: threading.Event) -> None:
    """Call `url` every `interval_s` seconds until `stopping` is set; failures are logged, never fatal."""
    http = requests.Session()
    while not stopping.is_set():
        try:
            answer = http.post(url, json={}, timeout=60)
            if answer.status_code >= 300:
                log.warning("reconcile answered %s: %s", answer.status_code, answer.text[:300])
            elif '"published": []' not in answer.text:
                log.info("reconcile: %s", answer.text[:500])
        except requests.RequestException as exc:
            log.warning("reconcile call failed: %s", exc)
        stopping.wait(interval_s)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--interval", type=float, default=1.0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s scheduler %(levelname)s %(message)s")
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    try:
        run(args.url, args.interval, stopping)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
