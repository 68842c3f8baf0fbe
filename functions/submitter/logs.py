"""Structured logs: one JSON object per line, the shape Cloud Logging indexes.

Fields: severity, message, time, plus context such as jobId, drop, eventId.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys

from .text import safe_text

# Log lines carry untrusted text (object names, spec values): made valid UTF-8, escaped and capped.
MAX_LOG_MESSAGE_CHARS = 20_000
MAX_LOG_FIELD_CHARS = 2_000
_CONTEXT_KEYS = ("jobId", "drop", "eventId", "object", "generation", "state", "reason", "messageIds", "outcome")


class JsonFormatter(logging.Formatter):
    """Formats a LogRecord as a JSON line; context comes from `extra={"ctx": {...}}`."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "severity": "WARNING" if record.levelname == "WARN" else record.levelname,
            "message": safe_text(record.getMessage(), MAX_LOG_MESSAGE_CHARS),
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(),
            "logger": record.name,
        }
        ctx = getattr(record, "ctx", None) or {}
        entry.update({k: safe_text(v, MAX_LOG_FIELD_CHARS) if isinstance(v, str) else v
                      for k, v in ctx.items() if v is not None})
        if record.exc_info:
            entry["stack_trace"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def configure(level: int = logging.INFO) -> None:
    """Send the `submitter` loggers to stdout as JSON lines (idempotent)."""
    logger = logging.getLogger("submitter")
    if any(isinstance(h.formatter, JsonFormatter) for h in logger.handlers):
        return
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False


def get(name: str) -> logging.Logger:
    """A logger under the `submitter` hierarchy."""
    return logging.getLogger(f"submitter.{name}")


__all__ = ["configure", "get", "JsonFormatter", "_CONTEXT_KEYS"]
