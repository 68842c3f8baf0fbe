"""Following the events topic from a client (demo, CLI, consumers).

Each follower uses a subscription of its own, created for it and deleted
afterwards, so it never steals messages from another consumer. A new
subscription sees only messages published after it exists: create it before
the action whose events you want.
"""

from __future__ import annotations

import json
import queue
import uuid
from collections.abc import Iterator

from submitter.model import published_state


class EventFollower:
    """A temporary subscription on `topic` that yields decoded events.

    Args:
        topic: `projects/P/topics/T`.
        name_hint: readable part of the subscription name.
    Usage:
        with EventFollower(topic, "demo") as follower:
            ... do something ...
            for event in follower.events(timeout_s=300): ...
    """

    def __init__(self, topic: str, name_hint: str = "follower"):
        self.topic = topic
        project = topic.split("/")[1]
        self.subscription = f"projects/{project}/subscriptions/{name_hint}-{uuid.uuid4().hex[:8]}"
        self._queue: queue.Queue = queue.Queue()
        self._subscriber = None
        self._future = None

    def __enter__(self) -> EventFollower:
        from google.cloud import pubsub_v1

        self._subscriber = pubsub_v1.SubscriberClient()
        self._subscriber.create_subscription(request={"name": self.subscription, "topic": self.topic,
                                                      "enable_message_ordering": True,
                                                      "ack_deadline_seconds": 30})
        self._future = self._subscriber.subscribe(self.subscription, callback=self._on_message)
        return self

    def _on_message(self, message) -> None:
        try:
            data = json.loads(message.data.decode("utf-8"))
        except ValueError:
            data = {"undecodable": message.data[:200].decode("utf-8", "replace")}
        self._queue.put({"attributes": dict(message.attributes), "data": data, "messageId": message.message_id})
        message.ack()

    def events(self, timeout_s: float, dedupe: bool = True) -> Iterator[dict]:
        """Yield {"attributes", "data", "messageId"} as they arrive; stops after `timeout_s` without one.

        With `dedupe`, duplicates (same `ce-id`; Pub/Sub is at-least-once) are yielded once.
        """
        seen: set[str] = set()
        while True:
            try:
                event = self._queue.get(timeout=timeout_s)
            except queue.Empty:
                return
            key = event["attributes"].get("ce-id", event["messageId"])
            if dedupe and key in seen:
                continue
            seen.add(key)
            yield event

    def __exit__(self, *exc) -> None:
        if self._future is not None:
            self._future.cancel()
            try:
                self._future.result(timeout=10)
            except Exception:  # the cancelled stream reports its cancellation here
                pass
        if self._subscriber is not None:
            try:
                self._subscriber.delete_subscription(request={"subscription": self.subscription})
            finally:
                self._subscriber.close()


def is_final(event: dict) -> bool:
    """True for an event after which nothing more comes for that job or drop."""
    try:
        state = published_state(event["data"]["state"])
    except (KeyError, TypeError):
        return False
    return state is not None and state.is_terminal
