"""Making untrusted text safe to publish, store and print (pure).

Object names, YAML values, package member names and trainer output reach messages, status documents
and terminals. Each goes through `safe_text` first: valid UTF-8 (undecodable bytes and lone surrogates
replaced), control characters and terminal escape sequences escaped as `\\xNN`/`\\uNNNN`, and capped in
length with a visible mark.
"""

from __future__ import annotations

import re

TRUNCATED = "…[truncated]"
# C0 controls except tab and newline, DEL, and C1 controls (ESC-initiated escape sequences start with \x1b).
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_SURROGATE_RE = re.compile(r"[\ud800-\udfff]")


def safe_text(value: str | bytes, max_chars: int | None = None, *, keep_newlines: bool = True) -> str:
    """`value` as printable, valid UTF-8 text of at most `max_chars` characters.

    Args:
        value: text, or bytes (decoded as UTF-8 with replacement).
        max_chars: cap on the result's length, mark included; None for no cap.
        keep_newlines: False escapes newlines and tabs as well (single-line contexts).
    Returns:
        The text with lone surrogates replaced by U+FFFD, control characters written as `\\xNN`
        (ESC becomes `\\x1b`, so an escape sequence prints as plain text), cut with "…[truncated]".
    """
    if isinstance(value, bytes):
        text = value.decode("utf-8", errors="replace")
    else:
        text = _SURROGATE_RE.sub("\ufffd", value)
    if max_chars is not None and len(text) > max_chars:
        text = text[: max(0, max_chars - len(TRUNCATED))]
        cut = True
    else:
        cut = False
    text = _CONTROL_RE.sub(lambda m: f"\\x{ord(m.group()):02x}", text)
    if not keep_newlines:
        text = text.replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r")
    if max_chars is not None and len(text) > max_chars:  # escapes made it longer again
        text, cut = text[: max(0, max_chars - len(TRUNCATED))], True
    return text + TRUNCATED if cut else text


def truncate_utf8(text: str, max_bytes: int) -> str:
    """Cut `text` to at most `max_bytes` UTF-8 bytes on a character boundary, marking the cut."""
    raw = text.encode("utf-8", errors="replace")
    if len(raw) <= max_bytes:
        return text
    budget = max_bytes - len(TRUNCATED.encode("utf-8"))
    return raw[:budget].decode("utf-8", errors="ignore") + TRUNCATED
