"""Pub/Sub adapter: one lazily built publisher per instance, ordering keys, every future awaited.

The publisher batches in a background thread; a function that returns before the futures resolve
loses messages, so `publish` waits for each one (with a timeout) and raises if any failed. A failed
publish pauses its ordering key until `resume_publish`, which is called before raising so the
redelivered invocation can publish again.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any, Protocol

from .envelope import OutgoingMessage
from .errors import PublishFailed


class Publisher(Protocol):
    """Publishes encoded messages to the events topic."""

    def publish(self, messages: Sequence[OutgoingMessage]) -> list[str]:
        """Publish in order and wait for all; returns message ids. Raises errors.PublishFailed."""
        ...


class PubSubPublisher:
    """Publishes OutgoingMessages to one topic (google-cloud-pubsub, message ordering on).

    Args:
        topic: full topic path `projects/P/topics/T`.
        timeout_s: seconds to wait for each publish future.
        client: a `pubsub_v1.PublisherClient` with message ordering enabled (tests); built lazily otherwise.
    """

    def __init__(self, topic: str, timeout_s: float = 30.0, client: Any = None):
        self.topic = topic
        self.timeout_s = timeout_s
        self._client = client
        self._lock = threading.Lock()

    @property
    def client(self) -> Any:
        """The PublisherClient (built on first use)."""
        with self._lock:
            if self._client is None:
                from google.cloud import pubsub_v1

                self._client = pubsub_v1.PublisherClient(
                    publisher_options=pubsub_v1.types.PublisherOptions(enable_message_ordering=True))
            return self._client

    def publish(self, messages: Sequence[OutgoingMessage]) -> list[str]:
        """Publish `messages` in order and wait for all of them.

        Returns:
            The Pub/Sub message ids, in order.
        Raises:
            PublishFailed: any publish failed or timed out; the message names the topic (e.g. "topic ... not
                found") and the ordering keys were resumed.
        """
        client = self.client
        futures = [(m, client.publish(self.topic, m.data, ordering_key=m.ordering_key, **m.attributes))
                   for m in messages]
        ids, errors = [], []
        for message, future in futures:
            try:
                ids.append(future.result(timeout=self.timeout_s))
            except Exception as exc:  # every failure of a future is a failed publish: NotFound, timeout, ...
                try:
                    client.resume_publish(self.topic, message.ordering_key)
                except RuntimeError:
                    pass  # the key was not paused (our wait timed out while the publish is still in flight)
                errors.append(_describe(self.topic, exc))
        if errors:
            raise PublishFailed("; ".join(errors))
        return ids


def _describe(topic: str, exc: BaseException) -> str:
    from google.api_core.exceptions import NotFound

    if isinstance(exc, NotFound):
        return f"topic {topic} not found (create it, or check SUBMITTER_TOPIC)"
    if isinstance(exc, TimeoutError) or type(exc).__name__ == "TimeoutError":
        return f"publishing to {topic} did not complete in time"
    return f"publishing to {topic} failed: {type(exc).__name__}: {exc}"
