"""The `filter` of `jobs.list`: a pure parser and evaluator for a subset of AIP-160.

Sources: `ml.v1.json` jobs.list `filter` (examples `jobId:census*`,
`jobId:rnn* AND state:FAILED`) and https://google.aip.dev/160 (grammar, precedence).

Supported:
    restriction  FIELD OP VALUE, OP one of `:` `=` `!=`
    FIELD        `jobId` (or `job_id`), `state`, `labels.KEY`; also `labels:KEY` (has key)
    VALUE        a bare word or a "double" / 'single' quoted string (backslash escapes);
                 `*` is a wildcard, so `jobId:abc*` is a prefix match
    combination  `AND`, `OR`, `NOT` (upper case), `-` before a term, parentheses,
                 juxtaposition means AND
Precedence as in AIP-160: `OR` binds tighter than `AND` (`a AND b OR c` = `a AND (b OR c)`).
`state` compares case-insensitively; jobId and labels are case-sensitive. A missing label
never matches `:`/`=` and always matches `!=`.

`parse(text)` returns a `Node` with `.matches(job_dict) -> bool`, or raises `FilterError`
(the HTTP layer turns it into 400 INVALID_ARGUMENT). An empty filter matches everything.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


class FilterError(ValueError):
    """The filter text is not valid; `args[0]` says where and why."""


@dataclass(frozen=True)
class _Tok:
    kind: str  # WORD, STRING, OP, LPAREN, RPAREN, END
    text: str
    pos: int


_OPS = ("!=", "=", ":")
_UNSUPPORTED_OPS = ("<=", ">=", "<", ">")
_WORD_END = set(" \t\r\n()=:!<>\"'")


def _tokenize(text: str) -> list[_Tok]:
    toks: list[_Tok] = []
    i = 0
    while i < len(text):
        c = text[i]
        if c.isspace():
            i += 1
        elif c in "()":
            toks.append(_Tok("LPAREN" if c == "(" else "RPAREN", c, i))
            i += 1
        elif text.startswith(_UNSUPPORTED_OPS, i):
            raise FilterError(f"comparison operators <, <=, >, >= are not supported (position {i})")
        elif text.startswith(_OPS, i):
            op = next(o for o in _OPS if text.startswith(o, i))
            toks.append(_Tok("OP", op, i))
            i += len(op)
        elif c == "!":
            raise FilterError(f"unexpected '!' at position {i}")
        elif c in "\"'":
            start, i, buf = i, i + 1, []
            while True:
                if i >= len(text):
                    raise FilterError(f"unterminated string starting at position {start}")
                if text[i] == "\\" and i + 1 < len(text):
                    buf.append(text[i + 1])
                    i += 2
                elif text[i] == c:
                    i += 1
                    break
                else:
                    buf.append(text[i])
                    i += 1
            toks.append(_Tok("STRING", "".join(buf), start))
        else:
            start = i
            while i < len(text) and text[i] not in _WORD_END:
                i += 1
            toks.append(_Tok("WORD", text[start:i], start))
    toks.append(_Tok("END", "", len(text)))
    return toks


class Node:
    """A parsed filter expression."""

    def matches(self, job: dict[str, Any]) -> bool:  # pragma: no cover - abstract
        raise NotImplementedError

    def states(self) -> frozenset[str] | None:
        """A superset of the (upper-case) states a matching job can be in, or None when any state can match.

        Lets the store skip jobs by their state column before reading them; `matches` still decides.
        """
        return None


@dataclass(frozen=True)
class And(Node):
    parts: tuple[Node, ...]

    def matches(self, job: dict[str, Any]) -> bool:
        return all(p.matches(job) for p in self.parts)

    def states(self) -> frozenset[str] | None:
        known = [s for s in (p.states() for p in self.parts) if s is not None]
        return frozenset.intersection(*known) if known else None


@dataclass(frozen=True)
class Or(Node):
    parts: tuple[Node, ...]

    def matches(self, job: dict[str, Any]) -> bool:
        return any(p.matches(job) for p in self.parts)

    def states(self) -> frozenset[str] | None:
        each = [p.states() for p in self.parts]
        return None if any(s is None for s in each) else frozenset().union(*each)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Not(Node):
    part: Node

    def matches(self, job: dict[str, Any]) -> bool:
        return not self.part.matches(job)


@dataclass(frozen=True)
class MatchAll(Node):
    def matches(self, job: dict[str, Any]) -> bool:
        return True


def _glob(pattern: str, case_insensitive: bool = False) -> Callable[[str], bool]:
    rx = re.compile("^" + ".*".join(re.escape(p) for p in pattern.split("*")) + "$",
                    re.IGNORECASE if case_insensitive else 0)
    return lambda s: bool(rx.match(s))


@dataclass(frozen=True)
class Restriction(Node):
    """`field op value`: field is `jobId`, `state`, `labels.KEY` or `labels` (with `:`)."""

    field: str
    op: str
    value: str

    def matches(self, job: dict[str, Any]) -> bool:
        if self.field == "labels":  # labels:KEY -> the job has that label key
            return any(_glob(self.value)(k) for k in job.get("labels", {}))
        if self.field.startswith("labels."):
            actual = job.get("labels", {}).get(self.field[len("labels."):])
        elif self.field == "state":
            actual = job.get("state", "")
        else:
            actual = job.get("jobId", "")
        if actual is None:
            return self.op == "!="
        hit = _glob(self.value, case_insensitive=self.field == "state")(actual)
        return not hit if self.op == "!=" else hit

    def states(self) -> frozenset[str] | None:
        if self.field == "state" and self.op != "!=" and "*" not in self.value:
            return frozenset({self.value.upper()})
        return None


_FIELD_ALIASES = {"jobId": "jobId", "job_id": "jobId", "state": "state"}


class _Parser:
    def __init__(self, text: str):
        self.toks = _tokenize(text)
        self.i = 0

    def peek(self) -> _Tok:
        return self.toks[self.i]

    def take(self) -> _Tok:
        t = self.toks[self.i]
        self.i += 1
        return t

    def is_kw(self, word: str) -> bool:
        t = self.peek()
        return t.kind == "WORD" and t.text == word

    def starts_term(self) -> bool:
        t = self.peek()
        return t.kind == "LPAREN" or (t.kind == "WORD" and t.text not in ("AND", "OR"))

    # expression = sequence {AND sequence}
    def expression(self) -> Node:
        parts = [self.sequence()]
        while self.is_kw("AND"):
            self.take()
            parts.append(self.sequence())
        return parts[0] if len(parts) == 1 else And(tuple(parts))

    # sequence = factor {factor}   (implicit AND)
    def sequence(self) -> Node:
        parts = [self.factor()]
        while self.starts_term():
            parts.append(self.factor())
        return parts[0] if len(parts) == 1 else And(tuple(parts))

    # factor = term {OR term}
    def factor(self) -> Node:
        parts = [self.term()]
        while self.is_kw("OR"):
            self.take()
            parts.append(self.term())
        return parts[0] if len(parts) == 1 else Or(tuple(parts))

    # term = [NOT | -] simple
    def term(self) -> Node:
        t = self.peek()
        if self.is_kw("NOT"):
            self.take()
            return Not(self.simple())
        if t.kind == "WORD" and t.text.startswith("-"):
            self.take()
            if t.text == "-":
                return Not(self.simple())
            # `-state:RUNNING`: the minus is glued to the field name
            self.toks.insert(self.i, _Tok("WORD", t.text[1:], t.pos + 1))
            return Not(self.simple())
        return self.simple()

    def simple(self) -> Node:
        t = self.take()
        if t.kind == "LPAREN":
            node = self.expression()
            close = self.take()
            if close.kind != "RPAREN":
                raise FilterError(f"expected ')' at position {close.pos}")
            return node
        if t.kind != "WORD" or t.text in ("AND", "OR", "NOT"):
            where = "end of filter" if t.kind == "END" else f"{t.text!r} at position {t.pos}"
            raise FilterError(f"expected a field name, got {where}")
        field = t.text
        op = self.take()
        if op.kind != "OP":
            raise FilterError(f"expected ':', '=' or '!=' after {field!r} at position {op.pos} "
                              "(bare values are not supported)")
        val = self.take()
        if val.kind not in ("WORD", "STRING") or (val.kind == "WORD" and val.text in ("AND", "OR", "NOT")):
            where = "end of filter" if val.kind == "END" else f"{val.text!r} at position {val.pos}"
            raise FilterError(f"expected a value after {field}{op.text}, got {where}")
        return Restriction(self.field_name(field, op.text, t.pos), op.text, val.text)

    @staticmethod
    def field_name(field: str, op: str, pos: int) -> str:
        if field in _FIELD_ALIASES:
            return _FIELD_ALIASES[field]
        if field.startswith("labels.") and len(field) > len("labels."):
            return field
        if field == "labels" and op == ":":
            return "labels"
        raise FilterError(f"unsupported filter field {field!r} at position {pos}: use jobId, state or labels.KEY")


def parse(text: str | None) -> Node:
    """Parse a jobs.list filter; raises FilterError when it is not valid."""
    if text is None or not text.strip():
        return MatchAll()
    p = _Parser(text)
    node = p.expression()
    rest = p.peek()
    if rest.kind != "END":
        raise FilterError(f"unexpected {rest.text!r} at position {rest.pos}")
    return node
