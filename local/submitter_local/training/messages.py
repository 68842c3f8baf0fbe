"""The text of a FAILED job's `errorMessage`: cause first, scrubbed, printable (pure functions).

A job's errorMessage leaves the service: the submitter publishes it on the topic, `submitter
watch` prints it on a terminal. So:

* the cause comes first: the failing exception (`ValueError: the model diverged`) or pip's
  error line (`ERROR: No matching distribution found for tensorflow==2.8.0`), then the
  status sentence the cloud used, then the trimmed tail of stderr (`failure_message`);
* values of the service's own settings (SUBMITTER_*, endpoints, credentials) that a trainer
  printed are replaced by `[redacted:NAME]` (`Scrubber`);
* control characters and terminal escape sequences are shown escaped (`\\x1b[31m`), never
  passed through (`escape_controls`); newlines and tabs stay.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping

#: One line of a Python traceback's last line: `pkg.module.SomeError: text` or a bare `KeyError`.
_EXCEPTION_LINE = re.compile(
    r"^(?:[A-Za-z_][\w]*\.)*(?:[A-Za-z_]\w*(?:Error|Exception|Exit|Interrupt|Warning|Fault)|"
    r"StopIteration|GeneratorExit|KeyboardInterrupt)(?::\s.*)?$")
#: pip's own failure lines, most specific first.
_PIP_ERROR = re.compile(r"^(?:ERROR|error): (?!Exception:$)(.+)$")
#: C0 controls except tab and newline, DEL, and C1 controls (ESC starts terminal sequences).
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")

#: Names of settings whose values never leave the service (matched case-insensitively).
SECRET_NAME_PATTERNS: tuple[str, ...] = (
    r"SUBMITTER_.*", r".*_EMULATOR_HOST", r".*ENDPOINT.*", r".*_URL", r".*TOKEN.*", r".*SECRET.*",
    r".*PASSWORD.*", r".*PASSWD.*", r".*CREDENTIAL.*", r".*_KEY", r".*API_KEY.*", r"CLOUDSDK_.*",
    r"BOTO_CONFIG", r"GOOGLE_APPLICATION_CREDENTIALS",
)
_SECRET_NAME = re.compile("|".join(f"(?:{p})" for p in SECRET_NAME_PATTERNS), re.IGNORECASE)
#: Values too short or too common to redact without mangling ordinary text.
_MIN_SECRET_LEN = 4
_HARMLESS_VALUES = frozenset({"true", "false", "none", "null", "yes", "no", "0", "1"})


def escape_controls(text: str) -> str:
    """`text` with control characters shown as Python escapes (`\\x1b`, `\\r`, `\\x00`).

    Tabs and newlines are kept; everything in C0 (but \\t, \\n), DEL and C1 is escaped, so
    an ANSI sequence `ESC[31m` becomes the visible text `\\x1b[31m`."""
    def esc(m: re.Match[str]) -> str:
        c = m.group(0)
        return {"\r": "\\r", "\x0b": "\\v", "\x0c": "\\f", "\x08": "\\b"}.get(c, f"\\x{ord(c):02x}")
    return _CONTROLS.sub(esc, text)


def cause_line(text: str) -> str | None:
    """The line that names the failure in a trainer's or pip's stderr, or None.

    The last Python exception line (`ValueError: bad`, `pkg.mod.CustomError: ...`,
    `SystemExit: 3`) wins; otherwise pip's most informative `ERROR: ...` line (a "No matching
    distribution" line over the generic ones); otherwise None."""
    lines = [ln.rstrip() for ln in text.splitlines() if ln.strip()]
    for ln in reversed(lines):
        if not ln.startswith((" ", "\t")) and _EXCEPTION_LINE.match(ln):
            return ln
    pip_errors = [m.group(0) for ln in lines if (m := _PIP_ERROR.match(ln.strip()))]
    for preferred in ("No matching distribution", "Could not find a version", "ResolutionImpossible",
                      "Cannot install", "Failed building wheel", "Failed to build"):
        for ln in pip_errors:
            if preferred in ln:
                return ln
    return pip_errors[-1] if pip_errors else None


def tail(text: str, lines: int = 20, chars: int = 4000) -> str:
    """The last `lines` lines of `text`, at most `chars` characters (keeping the end)."""
    out = "\n".join(text.rstrip().splitlines()[-lines:])
    return out[-chars:]


def read_text_tail(path: os.PathLike[str] | str, limit: int = 65536) -> str:
    """The last `limit` bytes of a file as text ("" if the file is missing)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - limit))
            data = f.read()
    except OSError:
        return ""
    return data.decode("utf-8", "replace")


class Scrubber:
    """Replaces the values of the service's own settings in text that leaves the service.

    `secrets` maps a name (e.g. `SUBMITTER_STATE_BUCKET`, `training API URL`) to its value;
    `from_environ` picks them out of an environment by name (`SECRET_NAME_PATTERNS`), leaving
    out any value the trainer was given anyway (`allowed_values`, e.g. the storage emulator
    endpoint and the project id), so a trainer's legitimate output is not mangled. Values
    shorter than 4 characters or as common as "true" are never redacted.
    """

    def __init__(self, secrets: Mapping[str, str]):
        usable = {v: k for k, v in secrets.items()
                  if v and len(v) >= _MIN_SECRET_LEN and v.lower() not in _HARMLESS_VALUES}
        # longest first, so a URL is replaced before the host:port inside it
        self._pairs = sorted(usable.items(), key=lambda kv: -len(kv[0]))

    @classmethod
    def from_environ(cls, environ: Mapping[str, str], allowed_values: Iterable[str] = (),
                     extra: Mapping[str, str] | None = None) -> Scrubber:
        """A scrubber for the settings in `environ` whose names look like ours or like secrets,
        plus `extra` (name -> value), minus `allowed_values`."""
        allowed = {v for v in allowed_values if v}
        secrets = {k: v for k, v in environ.items() if _SECRET_NAME.fullmatch(k) and v not in allowed}
        for k, v in (extra or {}).items():
            if v not in allowed:
                secrets[k] = v
        # URL values also leak as their host:port part (an error may print only the netloc)
        for k, v in list(secrets.items()):
            m = re.match(r"^[a-z][a-z0-9+.-]*://([^/]+)", v)
            if m and m.group(1) not in allowed and f"{k} host" not in secrets:
                secrets[f"{k} host"] = m.group(1)
        return cls(secrets)

    def allowing(self, text: str) -> Scrubber:
        """A scrubber that leaves alone every value occurring in `text` (e.g. the job's own spec:
        its project, its package and jobDir buckets are the job's data, not the service's)."""
        kept = Scrubber({})
        kept._pairs = [(v, n) for v, n in self._pairs if v not in text]
        return kept

    def __call__(self, text: str) -> str:
        for value, name in self._pairs:
            if value in text:
                text = text.replace(value, f"[redacted:{name.removesuffix(' host')}]")
        return text


def failure_message(status_sentence: str, stderr_text: str, scrub: Scrubber | None = None,
                    lines: int = 20, chars: int = 4000, hint: str | None = None) -> str:
    """errorMessage for a failure: `<cause>\\n<status sentence> <stderr tail>`, scrubbed and
    escaped; without a recognisable cause, `<status sentence> <stderr tail>`. A `hint` (what to
    do about the cause) follows the cause line in parentheses.

    E.g. ("The replica master 0 exited with a non-zero status of 3.", stderr) ->
    "ValueError: the model diverged\\nThe replica master 0 exited with a non-zero status of 3.
    Traceback ...". The result is at most about `chars` + len(status) + 300 characters."""
    scrub = scrub or Scrubber({})
    cleaned = scrub(stderr_text)
    cause = cause_line(cleaned)
    body = tail(cleaned, lines, chars)
    message = f"{status_sentence} {body}".rstrip()
    if cause:
        message = f"{cause[:300]}" + (f" ({hint})" if hint else "") + f"\n{message}"
    return escape_controls(message)
