"""The local Cloud Scheduler stand-in (submitter_local.scheduler): its period, and the early call it makes when the
training service reports a change (the cue behind the local stack's prompt state events)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest

from submitter_local import scheduler


class _Fake:
    """A reconcile endpoint that counts calls and a /changes endpoint with a counter the test moves."""

    def __init__(self) -> None:
        self.calls = 0
        self.polls = 0
        self.changes = 0
        self.cond = threading.Condition()

    def bump(self) -> None:
        with self.cond:
            self.changes += 1
            self.cond.notify_all()

    def wait_calls(self, n: int, timeout_s: float) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: self.calls >= n, timeout=timeout_s)


@pytest.fixture
def fake() -> Iterator[tuple[_Fake, str]]:
    state = _Fake()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _send(self, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:  # reconcile
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with state.cond:
                state.calls += 1
                state.cond.notify_all()
            self._send({"published": []})

        def do_GET(self) -> None:  # /changes?after=N&timeout=S
            query = parse_qs(urlparse(self.path).query)
            after = int(query["after"][0]) if "after" in query else None
            with state.cond:
                state.polls += 1
                if after is not None:
                    state.cond.wait_for(lambda: state.changes > after, timeout=float(query["timeout"][0]))
                value = state.changes
            self._send({"changes": value})

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield state, f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def _run(url: str, interval_s: float, changes_url: str | None) -> threading.Event:
    stopping = threading.Event()
    threading.Thread(target=scheduler.run, args=(url, interval_s, stopping, changes_url), daemon=True).start()
    return stopping


def test_a_change_calls_reconcile_at_once_instead_of_after_the_period(fake):
    state, base = fake
    stopping = _run(f"{base}/reconcile", 60.0, f"{base}/changes")
    try:
        assert state.wait_calls(1, 10)  # the first call goes out at start
        time.sleep(0.5)
        assert state.calls == 1  # nothing changed: the next call waits for the 60 s period
        state.bump()
        assert state.wait_calls(2, 10)  # a change: called long before the period
        state.bump()
        state.bump()
        assert state.wait_calls(3, 10)
    finally:
        stopping.set()
        state.bump()  # release the long poll so the thread ends


def test_without_the_cue_the_period_alone_calls(fake):
    state, base = fake
    stopping = _run(f"{base}/reconcile", 0.2, None)
    try:
        assert state.wait_calls(3, 10)
        assert state.polls == 0  # `--cloud-schedule` runs this way: no cue is asked for
    finally:
        stopping.set()


def test_an_unreachable_training_service_falls_back_to_the_period(fake):
    state, base = fake
    stopping = _run(f"{base}/reconcile", 0.2, "http://127.0.0.1:9/changes")  # port 9: nothing listens
    try:
        assert state.wait_calls(3, 10)  # still called, on the period
    finally:
        stopping.set()
