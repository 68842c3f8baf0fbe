"""Event relay: the local stand-in for Eventarc's Cloud Storage trigger.

gcp-storage-emulator sends no notifications, so the relay polls the watched
buckets' object listings (the drop bucket and the data buckets, as one
Eventarc trigger per bucket would deliver them) and turns every new object
generation into a `google.cloud.storage.object.v1.finalized` CloudEvent, POSTed to the function
in binary content mode with the attributes and data Eventarc sends (`data` is
the object resource; `generation`, `metageneration` and `size` are strings).
Like Eventarc with retries on, a non-2xx answer is redelivered with
exponential backoff (compressed: 0.5 s to 10 s, for `--retry-window` seconds),
and deliveries for different objects run concurrently (up to `--workers`, 16), in no particular order.

Run: python -m submitter_local.relay --storage http://127.0.0.1:PORT --bucket drop-bucket [--bucket drop-data ...]
     --function-url URL
"""

from __future__ import annotations

import argparse
import concurrent.futures
import logging
import random
import signal
import threading
import time
import uuid

import requests
from cloudevents.conversion import to_binary, to_structured
from cloudevents.http import CloudEvent

FINALIZED = "google.cloud.storage.object.v1.finalized"
WORKERS = 16
log = logging.getLogger("relay")


def storage_event(resource: dict) -> CloudEvent:
    """The CloudEvent Eventarc would deliver for one object resource (a GCS JSON API object dict)."""
    bucket, name = resource["bucket"], resource["name"]
    attributes = {
        "id": str(uuid.uuid4()),
        "type": FINALIZED,
        "source": f"//storage.googleapis.com/projects/_/buckets/{bucket}",
        "subject": f"objects/{name}",
        "time": resource.get("updated") or resource.get("timeCreated"),
        "datacontenttype": "application/json",
    }
    data = {k: v for k, v in resource.items() if k not in ("acl", "mediaLink")}
    for key in ("generation", "metageneration", "size"):
        if key in data:
            data[key] = str(data[key])
    return CloudEvent(attributes, data)


class Relay:
    """Polls buckets and delivers finalize events to a function URL.

    Args:
        storage_url: the GCS emulator's base URL.
        bucket: the watched bucket, or several (the drop bucket and the data buckets).
        function_url: where CloudEvents are POSTed.
        interval_s: seconds between listings.
        retry_window_s: how long a failing delivery is retried.
        workers: deliveries in flight at once (Eventarc's cap is the function's instances × concurrency).
    """

    def __init__(self, storage_url: str, bucket: str | list[str], function_url: str, interval_s: float = 0.25,
                 retry_window_s: float = 1800.0, workers: int = WORKERS):
        self.buckets = [bucket] if isinstance(bucket, str) else list(bucket)
        self.storage_url, self.function_url = storage_url.rstrip("/"), function_url
        self.interval_s, self.retry_window_s = interval_s, retry_window_s
        self.seen: dict[tuple[str, str], str] = {}
        self.stopping = threading.Event()
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=workers)
        self.http = requests.Session()
        # a connection per worker (and one for listing), kept alive; requests' default pool keeps 10
        adapter = requests.adapters.HTTPAdapter(pool_connections=2, pool_maxsize=workers + 1)
        self.http.mount("http://", adapter)

    @property
    def bucket(self) -> str:
        """The first watched bucket (the drop bucket)."""
        return self.buckets[0]

    def list_objects(self, bucket: str | None = None) -> list[dict]:
        """Every object resource in `bucket` (default: the first watched one)."""
        answer = self.http.get(f"{self.storage_url}/storage/v1/b/{bucket or self.bucket}/o", timeout=10)
        answer.raise_for_status()
        return answer.json().get("items") or []

    def poll_once(self) -> int:
        """List each watched bucket once and schedule a delivery for each new generation; returns how many."""
        new = 0
        for bucket in self.buckets:
            for resource in self.list_objects(bucket):
                key, generation = (bucket, resource["name"]), str(resource.get("generation"))
                if self.seen.get(key) == generation:
                    continue
                self.seen[key] = generation
                self.pool.submit(self.deliver, storage_event(resource))
                new += 1
        return new

    def deliver(self, event: CloudEvent) -> bool:
        """POST one event, retrying non-2xx and connection errors with backoff within the retry window.

        Binary content mode, as Eventarc sends; an object name that HTTP headers cannot carry (non-Latin-1
        characters in `ce-subject`) goes in structured mode, which functions-framework accepts too.
        """
        try:
            return self._deliver(event)
        except Exception:  # a worker thread's error would otherwise vanish
            log.exception("delivery of %s failed", event["subject"])
            return False

    def _deliver(self, event: CloudEvent) -> bool:
        try:
            event["subject"].encode("latin-1")
            headers, body = to_binary(event)
        except UnicodeEncodeError:
            headers, body = to_structured(event)
        deadline = time.monotonic() + self.retry_window_s
        delay = 0.5
        while not self.stopping.is_set():
            try:
                answer = self.http.post(self.function_url, data=body, headers=headers, timeout=120)
                if 200 <= answer.status_code < 300:
                    log.info("delivered %s #%s -> %s", event["subject"], event.data.get("generation"),
                             answer.status_code)
                    return True
                log.warning("delivery of %s answered %s; retrying", event["subject"], answer.status_code)
            except requests.RequestException as exc:
                log.warning("delivery of %s failed: %s; retrying", event["subject"], exc)
            if time.monotonic() + delay > deadline:
                log.error("giving up on %s after the retry window", event["subject"])
                return False
            self.stopping.wait(delay * (0.5 + random.random()))
            delay = min(delay * 2, 10.0)
        return False

    def run(self) -> None:
        """Poll until stopped; listing errors (emulator restarting) are logged and retried."""
        while not self.stopping.is_set():
            try:
                self.poll_once()
            except requests.RequestException as exc:
                log.warning("listing %s failed: %s", ", ".join(f"gs://{b}" for b in self.buckets), exc)
            self.stopping.wait(self.interval_s)
        self.pool.shutdown(wait=False, cancel_futures=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--storage", required=True, help="GCS emulator URL")
    parser.add_argument("--bucket", required=True, action="append", help="a watched bucket (repeat for several)")
    parser.add_argument("--function-url", required=True)
    parser.add_argument("--interval", type=float, default=0.25)
    parser.add_argument("--retry-window", type=float, default=1800.0)
    parser.add_argument("--workers", type=int, default=WORKERS, help="deliveries in flight at once")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s relay %(levelname)s %(message)s")
    relay = Relay(args.storage, args.bucket, args.function_url, args.interval, args.retry_window, args.workers)
    signal.signal(signal.SIGTERM, lambda *_: relay.stopping.set())
    try:
        relay.run()
    except KeyboardInterrupt:
        relay.stopping.set()


if __name__ == "__main__":
    main()
