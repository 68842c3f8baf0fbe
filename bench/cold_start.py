"""Row 1: cold start of the function: process start -> 2xx for its first finalize CloudEvent.

Product: `functions-framework --source functions/main.py --target on_object_finalized` (as the local stack starts
it), with the stack's SUBMITTER_* settings pointed at an in-process storage emulator. The first event is the
finalize event of a drop's package (job.yaml not yet there), Eventarc-shaped and sent in binary mode as the
relay sends it: the function builds its settings and clients, lists the drop folder and records that the drop
waits (answer 204). Baseline: a bare Python process that imports the same client libraries (google-api-python-
client, google-cloud-pubsub, google-cloud-storage, functions-framework) and answers one HTTP request. Both
are timed from Popen to the first answer, the client retrying the connection every 5 ms.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

import requests

from . import REPO
from .common import PROJECT, Row, Spread, clean_env, interleaved

BARE = r"""
import sys, http.server
import googleapiclient.discovery, google.cloud.pubsub_v1, google.cloud.storage, functions_framework

class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length") or 0))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass

http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).handle_request()
"""
BUCKETS = ("drop-bucket", "drop-outputs", "drop-state")


def free_port() -> int:
    """A free TCP port (the stack's helper)."""
    from submitter_local.stack import free_port as stack_free_port

    return stack_free_port()


def first_answer(argv: list[str], env: dict[str, str], url: str, headers: dict[str, str], body: bytes,
                 cwd: Path) -> float:
    """Seconds from starting `argv` to the first 2xx answer to POST url; the process is stopped after."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        while True:
            try:
                answer = requests.post(url, data=body, headers=headers, timeout=60)
                break
            except requests.ConnectionError:
                if proc.poll() is not None:
                    raise RuntimeError(f"{argv[0]} exited: {proc.stderr.read().decode()[-800:]}") from None
                time.sleep(0.005)
        elapsed = time.perf_counter() - start
        if not 200 <= answer.status_code < 300:
            raise RuntimeError(f"{argv[0]} answered {answer.status_code}: {answer.text[:300]}")
        return elapsed
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        proc.stderr.close()


def run(runs: int, smoke: bool) -> list[Row]:
    """Row 1."""
    from cloudevents.conversion import to_binary

    from submitter_local import storage_emulator
    from submitter_local.relay import storage_event
    from submitter_local.stack import Stack, StackConfig

    server = storage_emulator.start("127.0.0.1", 0)
    try:
        for bucket in BUCKETS:
            requests.post(f"{server.url}/storage/v1/b", params={"project": PROJECT}, json={"name": bucket},
                          timeout=10).raise_for_status()
        stack_env = {"TOPIC": f"projects/{PROJECT}/topics/training-job-events",
                     "TRAINING_API_ENDPOINT": "http://127.0.0.1:9"}  # never called for a waiting drop
        settings = Stack(StackConfig(data_buckets=(), trigger_rules=None)).function_settings(stack_env)
        env = clean_env(**settings, STORAGE_EMULATOR_HOST=server.url, PUBSUB_EMULATOR_HOST="127.0.0.1:9",
                        PYTHONPATH=f"{REPO / 'functions'}{os.pathsep}{REPO / 'local'}")
        ff = str(Path(sys.executable).with_name("functions-framework"))

        def event(i: int) -> tuple[dict[str, str], bytes]:
            name = f"incoming/cold-{i}/trainer-0.1.tar.gz"
            requests.post(f"{server.url}/upload/storage/v1/b/drop-bucket/o", params={"uploadType": "media",
                          "name": name}, data=b"\x1f\x8b not read: the drop waits for job.yaml", timeout=10,
                          headers={"Content-Type": "application/gzip"}).raise_for_status()
            resource = requests.get(f"{server.url}/storage/v1/b/drop-bucket/o/{quote(name, safe='')}",
                                    timeout=10).json()
            headers, body = to_binary(storage_event(resource))
            return headers, body

        with tempfile.TemporaryDirectory(prefix="bench-cold-") as tmp:
            cwd = Path(tmp)

            def baseline(i: int) -> float:
                port = free_port()
                headers, body = event(1000 + i)
                return first_answer([sys.executable, "-c", BARE, str(port)], env, f"http://127.0.0.1:{port}",
                                    headers, body, cwd)

            def product(i: int) -> float:
                port = free_port()
                headers, body = event(i)
                argv = [ff, "--source", str(REPO / "functions" / "main.py"), "--target", "on_object_finalized",
                        "--signature-type", "cloudevent", "--host", "127.0.0.1", "--port", str(port)]
                before = state_objects()
                elapsed = first_answer(argv, env, f"http://127.0.0.1:{port}", headers, body, cwd)
                if state_objects() <= before:  # the function did the drop's work, not only answer
                    raise RuntimeError("the function answered without recording the waiting drop")
                return elapsed

            def state_objects() -> int:
                listed = requests.get(f"{server.url}/storage/v1/b/drop-state/o", timeout=10).json()
                return len(listed.get("items") or [])

            baseline(-1)  # warm-up of both: the first start of anything pays for a cold page cache
            product(-1)
            base, prod, ratios = interleaved(runs, baseline, product)
    finally:
        server.stop()
    r = Spread.of(ratios)
    return [Row(1, "1", f"cold start to 2xx for the first finalize event: {Spread.of(prod).show(' s', 3)}",
                f"bare process importing the same client libraries, one request: {Spread.of(base).show(' s', 3)}",
                r.show(), "≤ 1.15×", r.median <= 1.15,
                "functions-framework serving functions/main.py; the event is a drop's package (the drop then waits "
                "for job.yaml: settings, clients, a folder listing and the pending record); in-process storage "
                "emulator; one unmeasured warm-up start of each first")]
