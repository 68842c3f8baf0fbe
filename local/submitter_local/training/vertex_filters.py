"""The `filter` of Vertex AI's `customJobs.list` (pure): a parser of the subset `aiplatform.v1.json` documents.

Source: the `filter` parameter of `projects.locations.customJobs.list` in the aiplatform v1 discovery document
bundled with google-api-python-client: "Supported fields: `display_name` supports `=`, `!=` comparisons, and `:`
wildcard. `state` supports `=`, `!=` comparisons. `create_time` supports `=`, `!=`, `<`, `<=`, `>`, `>=`
comparisons. `create_time` must be in RFC 3339 format. `labels` supports general map functions that is:
`labels.key=value` - key:value equality `labels.key:*` - key existence", with the examples
`state="JOB_STATE_SUCCEEDED" AND display_name:"my_job_*"`, `state!="JOB_STATE_FAILED" OR display_name="my_job"`,
`NOT display_name="my_job"`, `create_time>"2021-05-18T00:00:00Z"`, `labels.keyA=valueA`, `labels.keyB:*`.
Grammar and precedence from https://google.aip.dev/160: AND, OR, NOT, parentheses; OR binds tighter than AND.

`compile_filter(text)` returns a predicate over CustomJob dicts (a `Filter`, whose `states` are the job states it
can match, so the service reads only those jobs), or raises `FilterError` for anything outside that subset (the
HTTP layer answers 400 INVALID_ARGUMENT). An empty filter matches every job. Values are bare
words or double-quoted JSON strings. `display_name:"run_*"` is a wildcard match (`*` any run of characters).
Timestamps compare as instants (fractional seconds and offsets allowed).

The in-memory Vertex API of the tests (`tests/fake_vertex.py`) uses this same parser.
"""

from __future__ import annotations

import datetime as _dt
import json
import re
from collections.abc import Callable
from typing import Any

Predicate = Callable[[dict[str, Any]], bool]


class FilterError(ValueError):
    """A filter outside the documented subset; `args[0]` says what."""


_TOKEN = re.compile(r'\s*(?:(\()|(\))|(AND|OR|NOT)\b|([A-Za-z_][\w.-]*)\s*(!=|<=|>=|=|:|<|>)\s*'
                    r'("(?:[^"\\]|\\.)*"|[^\s()]+))')


class Filter:
    """A compiled filter: call it on a CustomJob dict. `states` is the set of `state` values it can match
    (e.g. {"JOB_STATE_RUNNING"} for `state="JOB_STATE_RUNNING" AND ...`), or None when any state can match."""

    def __init__(self, predicate: Predicate, states: frozenset[str] | None):
        self.predicate, self.states = predicate, states

    def __call__(self, job: dict[str, Any]) -> bool:
        return self.predicate(job)


def compile_filter(text: str | None) -> Filter:
    """A predicate over CustomJob dicts for a `customJobs.list` filter, with the states it can match.

    Raises:
        FilterError: an unknown field, an operator the field does not support, a bad timestamp, an unbalanced
            parenthesis, or text that is not a filter.
    """
    tokens: list[tuple[str | None, ...]] = []
    text = (text or "").strip()
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise FilterError(f"cannot parse {text[pos:]!r}")
        tokens.append(m.groups())
        pos = m.end()
    if not tokens:
        return Filter(lambda job: True, None)
    expr, rest = _and(tokens)
    if rest:
        raise FilterError(f"unexpected {_show(rest[0])}")
    return expr


def _show(token: tuple[str | None, ...]) -> str:
    return repr("".join(t for t in token if t))


def _and(tokens: list[tuple[str | None, ...]]) -> tuple[Filter, list[tuple[str | None, ...]]]:
    left, tokens = _or(tokens)
    while tokens and tokens[0][2] == "AND":
        right, tokens = _or(tokens[1:])
        states = right.states if left.states is None else (
            left.states if right.states is None else left.states & right.states)  # both must hold
        left = Filter((lambda a, b: lambda job: a(job) and b(job))(left, right), states)
    return left, tokens


def _or(tokens: list[tuple[str | None, ...]]) -> tuple[Filter, list[tuple[str | None, ...]]]:
    left, tokens = _unary(tokens)  # AIP-160: OR binds tighter than AND
    while tokens and tokens[0][2] == "OR":
        right, tokens = _unary(tokens[1:])
        states = None if left.states is None or right.states is None else left.states | right.states
        left = Filter((lambda a, b: lambda job: a(job) or b(job))(left, right), states)
    return left, tokens


def _unary(tokens: list[tuple[str | None, ...]]) -> tuple[Filter, list[tuple[str | None, ...]]]:
    if not tokens:
        raise FilterError("a term is missing")
    head = tokens[0]
    if head[2] == "NOT":
        inner, rest = _unary(tokens[1:])
        return Filter(lambda job: not inner(job), None), rest  # a complement: any state may match
    if head[0]:
        inner, rest = _and(tokens[1:])
        if not rest or not rest[0][1]:
            raise FilterError("unbalanced parenthesis")
        return inner, rest[1:]
    if head[3]:
        return _restriction(str(head[3]), str(head[4]), str(head[5])), tokens[1:]
    raise FilterError(f"unexpected {_show(head)}")


def _glob(pattern: str) -> Callable[[str], bool]:
    rx = re.compile("^" + ".*".join(re.escape(p) for p in pattern.split("*")) + "$", re.DOTALL)
    return lambda s: bool(rx.match(s))


def _instant(text: str) -> _dt.datetime:
    try:
        return _dt.datetime.fromisoformat(text.replace("z", "Z").replace("Z", "+00:00"))
    except ValueError:
        raise FilterError(f"create_time must be an RFC 3339 timestamp, got {text!r}") from None


_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "=": lambda a, b: a == b, "!=": lambda a, b: a != b, "<": lambda a, b: a < b, "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b, ">=": lambda a, b: a >= b}


def _restriction(field: str, op: str, raw: str) -> Filter:
    if field == "state" and op == "=":
        value = _value(raw)
        return Filter(lambda job: job.get("state") == value, frozenset({value}))
    return Filter(_predicate(field, op, raw), None)


def _value(raw: str) -> str:
    if raw.startswith('"'):
        try:
            return str(json.loads(raw))
        except ValueError:
            raise FilterError(f"bad string {raw}") from None
    return raw


def _predicate(field: str, op: str, raw: str) -> Predicate:
    value = _value(raw)
    if field == "state" and op in ("=", "!="):
        return lambda job: (job.get("state") == value) == (op == "=")
    if field.startswith("labels.") and len(field) > len("labels."):
        key = field[len("labels."):]
        if op == ":" and value == "*":
            return lambda job: key in (job.get("labels") or {})
        if op in ("=", "!="):
            return lambda job: ((job.get("labels") or {}).get(key) == value) == (op == "=")
    if field in ("display_name", "displayName"):
        if op in ("=", "!="):
            return lambda job: (job.get("displayName") == value) == (op == "=")
        if op == ":":
            match = _glob(value)
            return lambda job: match(str(job.get("displayName") or ""))
    if field in ("create_time", "createTime") and op in _COMPARE:
        when, compare = _instant(value), _COMPARE[op]
        return lambda job: bool(job.get("createTime")) and compare(_instant(str(job["createTime"])), when)
    raise FilterError(f"unsupported restriction {field}{op}{raw} (supported: display_name =, != and : wildcard; "
                      "state =, !=; create_time =, !=, <, <=, >, >=; labels.KEY=VALUE, labels.KEY:*)")


__all__ = ["Filter", "FilterError", "compile_filter"]
