"""A downstream consumer of the submitter's job events: acts when a job SUCCEEDED or FAILED.

    python examples/consumer.py SUBSCRIPTION [--topic projects/P/topics/T] [--project P]
                                [--timeout SECONDS] [--max-actions N]

SUBSCRIPTION is a name (in --project) or a full `projects/P/subscriptions/S` path; a consumer needs a
subscription of its own (a shared one splits the messages between readers). When it does not exist it is
created on --topic (default `$SUBMITTER_TOPIC`) with message ordering on; it then sees only messages
published from then on. The project defaults to `$SUBMITTER_PROJECT` or `$GOOGLE_CLOUD_PROJECT`; on the
local stack, `source .local/stack.env` first (PUBSUB_EMULATOR_HOST sends the client to the emulator).

The message contract is schemas/job-event.v1.schema.json (data) and job-event.v1.attributes.schema.json
(attributes). Each message is a CloudEvent in the Pub/Sub binding's attribute convention (`ce-id`,
`ce-source`, `ce-type`, ...). The Python `cloudevents` SDK has no Pub/Sub binding (and functions-framework
3.x pins cloudevents<=1.12), so `to_cloudevent` does the mapping in a few lines. Delivery is at least once:
`handle` drops duplicates by (source, id), which the submitter makes deterministic per (jobId, state).

`handle` holds all the logic and does no I/O (tests call it directly); `main` runs a streaming pull and
prints what `handle` returns. Exit 0 at --timeout, after --max-actions printed lines, or on Ctrl-C;
1 when the subscription cannot be found or created, or the stream fails.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import threading
import time
from collections.abc import Mapping

from cloudevents.exceptions import GenericException
from cloudevents.http import CloudEvent

EVENT_TYPE = "dev.drop-submitter.job.v1.stateChanged"


def to_cloudevent(attributes: Mapping[str, str], data: bytes) -> CloudEvent:
    """A Pub/Sub message in the CloudEvents Pub/Sub binding -> CloudEvent.

    `ce-<name>` attributes are the CloudEvent's attributes (`ce-id` -> `id`, ...), `content-type` is its
    `datacontenttype`, and JSON data is decoded. Plain attributes (jobId, state, terminal, reason: copies of
    data fields for subscription filters) are not CloudEvent attributes and are left out.

    Raises:
        cloudevents.exceptions.GenericException: required CloudEvent attributes are missing.
        ValueError: the data is not the JSON it claims to be.
    """
    ce = {key[3:]: value for key, value in attributes.items() if key.startswith("ce-")}
    content_type = attributes.get("content-type") or attributes.get("ce-datacontenttype")
    if content_type:
        ce["datacontenttype"] = content_type
    payload = json.loads(data.decode("utf-8")) if (content_type or "").startswith("application/json") else data
    return CloudEvent(ce, payload)


class Seen:
    """(source, id) pairs already handled; thread-safe, keeps the most recent `size`."""

    def __init__(self, size: int = 100_000):
        self._keys: collections.OrderedDict[tuple[str, str], None] = collections.OrderedDict()
        self._size, self._lock = size, threading.Lock()

    def add(self, key: tuple[str, str]) -> bool:
        """Remember `key`; False when it was already there (a duplicate)."""
        with self._lock:
            if key in self._keys:
                return False
            self._keys[key] = None
            if len(self._keys) > self._size:
                self._keys.popitem(last=False)
            return True


def handle(message_attributes: dict, data: bytes, seen: Seen | None = None) -> str | None:
    """Decide what to do with one message; returns the line to print, or None to just acknowledge it.

    - SUCCEEDED: where the model is (`data.jobDir`, the job's output directory); for a hyperparameter tuning job
      also its best trial (`data.tuning.bestTrial`: id, metric, hyperparameters), picked without another call.
    - FAILED: the job's `errorMessage`.
    - anything else (other states, other event types, messages that are not CloudEvents): None.
    - a duplicate (same ce-source and ce-id as one already in `seen`): None.

    Args:
        message_attributes: the Pub/Sub message's attributes.
        data: the message's data bytes.
        seen: duplicates memory shared across calls (None: no deduplication).
    """
    try:
        event = to_cloudevent(message_attributes, data)
    except (GenericException, ValueError):
        return None  # not one of ours: nothing to do, acknowledge it
    if event["type"] != EVENT_TYPE or not isinstance(event.data, dict):
        return None
    if seen is not None and not seen.add((event["source"], event["id"])):
        return None
    body = event.data
    if body.get("state") == "SUCCEEDED":
        best = (body.get("tuning") or {}).get("bestTrial")
        if best:
            values = " ".join(f"--{k}={v}" for k, v in sorted(best["hyperparameters"].items()))
            return (f"{body.get('jobId')} SUCCEEDED: model in {body.get('jobDir')}; best trial {best['trialId']} "
                    f"({body['tuning']['hyperparameterMetricTag']} {best['objectiveValue']}): {values}")
        return f"{body.get('jobId')} SUCCEEDED: model in {body.get('jobDir')}"
    if body.get("state") == "FAILED":
        message = (body.get("errorMessage") or "(no errorMessage)").rstrip("\n").replace("\n", "\n    ")
        return f"{body.get('jobId')} FAILED: {message}"
    return None


def ensure_subscription(subscriber, subscription: str, topic: str | None) -> bool:
    """Create `subscription` on `topic` unless it exists; True when it was created."""
    from google.api_core.exceptions import AlreadyExists, NotFound

    try:
        subscriber.get_subscription(request={"subscription": subscription})
        return False
    except NotFound:
        if not topic:
            raise SystemExit(f"consumer: {subscription} does not exist; give --topic (or SUBMITTER_TOPIC) to create "
                             "it") from None
    try:
        subscriber.create_subscription(request={"name": subscription, "topic": topic,
                                                "enable_message_ordering": True, "ack_deadline_seconds": 60})
        return True
    except AlreadyExists:  # another consumer process created it meanwhile
        return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Act on SUCCEEDED and FAILED job events.")
    parser.add_argument("subscription", help="subscription name or projects/P/subscriptions/S")
    parser.add_argument("--project",
                        default=os.environ.get("SUBMITTER_PROJECT") or os.environ.get("GOOGLE_CLOUD_PROJECT"))
    parser.add_argument("--topic", default=os.environ.get("SUBMITTER_TOPIC"),
                        help="topic to create the subscription on when it is missing")
    parser.add_argument("--timeout", type=float, default=None, help="stop after SECONDS")
    parser.add_argument("--max-actions", type=int, default=None, help="stop after printing N lines")
    args = parser.parse_args(argv)

    from google.cloud import pubsub_v1

    subscriber = pubsub_v1.SubscriberClient()
    path = args.subscription
    if not path.startswith("projects/"):
        if not args.project:
            parser.error("give --project (or SUBMITTER_PROJECT) or a full subscription path")
        path = subscriber.subscription_path(args.project, path)
    topic = args.topic
    if topic and not topic.startswith("projects/") and args.project:
        topic = f"projects/{args.project}/topics/{topic}"
    try:
        created = ensure_subscription(subscriber, path, topic)
    except SystemExit as exc:
        print(exc, file=sys.stderr)
        return 1
    print(f"consumer: {'created and ' if created else ''}listening on {path}", file=sys.stderr, flush=True)

    seen, done, lock, acted = Seen(), threading.Event(), threading.Lock(), [0]

    def callback(message) -> None:
        try:
            line = handle(dict(message.attributes), message.data, seen)
        except Exception as exc:  # a bug here must not lose the message: let Pub/Sub redeliver it
            print(f"consumer: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
            message.nack()
            return
        if line:
            with lock:
                print(line, flush=True)
                acted[0] += 1
                if args.max_actions and acted[0] >= args.max_actions:
                    done.set()
        message.ack()

    future = subscriber.subscribe(path, callback=callback,
                                  flow_control=pubsub_v1.types.FlowControl(max_messages=100))
    code = 0
    deadline = None if args.timeout is None else time.monotonic() + args.timeout
    try:
        while not done.is_set() and not future.done():
            wait = 1.0 if deadline is None else min(1.0, deadline - time.monotonic())
            if wait <= 0:
                break
            done.wait(wait)
        if future.done() and not done.is_set():
            future.result()  # raises the stream's error
    except KeyboardInterrupt:
        pass
    except Exception as exc:
        print(f"consumer: the stream failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        code = 1
    finally:
        future.cancel()
        try:
            future.result(timeout=10)
        except Exception:  # the cancelled stream reports its cancellation here
            pass
        subscriber.close()
    return code


if __name__ == "__main__":
    sys.exit(main())
