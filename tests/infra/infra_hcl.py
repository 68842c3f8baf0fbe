"""Reading infra/*.tf for the tests: python-hcl2 with quotes stripped, one index of blocks by kind.

Expressions come back as strings wrapped in `${...}`; plain strings come back bare. Nothing is evaluated:
the tests assert on what the configuration says (references, literals), since no Terraform provider is
reachable from here.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

import hcl2
from hcl2 import SerializationOptions

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra"

_OPTIONS = SerializationOptions(strip_string_quotes=True, with_comments=False, explicit_blocks=False)


@dataclasses.dataclass(frozen=True)
class Block:
    """One `resource`/`data` block: its type, name, body and the file it is in."""

    type: str
    name: str
    body: dict[str, Any]
    file: str

    @property
    def address(self) -> str:
        return f"{self.type}.{self.name}"


@dataclasses.dataclass
class Config:
    resources: list[Block]
    data: list[Block]
    variables: dict[str, dict[str, Any]]
    outputs: dict[str, dict[str, Any]]
    locals: dict[str, Any]
    files: dict[str, str]  # file name -> raw text

    def of_type(self, type_: str) -> list[Block]:
        return [b for b in self.resources if b.type == type_]

    def get(self, type_: str, name: str) -> Block:
        for block in self.resources:
            if block.type == type_ and block.name == name:
                return block
        raise KeyError(f"{type_}.{name} is not defined in infra/")

    def iam_members(self) -> list[Block]:
        return [b for b in self.resources if b.type.endswith("_iam_member")]


def parse_file(path: Path) -> dict[str, Any]:
    with path.open() as f:
        return hcl2.load(f, serialization_options=_OPTIONS)


@lru_cache(maxsize=1)
def load() -> Config:
    cfg = Config(resources=[], data=[], variables={}, outputs={}, locals={}, files={})
    for path in sorted(INFRA.glob("*.tf")):
        cfg.files[path.name] = path.read_text()
        doc = parse_file(path)
        for kind, target in (("resource", cfg.resources), ("data", cfg.data)):
            for entry in doc.get(kind, []):
                for type_, named in entry.items():
                    for name, body in named.items():
                        target.append(Block(type_, name, body, path.name))
        for entry in doc.get("variable", []):
            cfg.variables.update(entry)
        for entry in doc.get("output", []):
            cfg.outputs.update(entry)
        for entry in doc.get("locals", []):
            cfg.locals.update(entry)
    return cfg


def one(body: dict[str, Any], key: str) -> dict[str, Any]:
    """The single nested block `key` (hcl2 returns blocks as lists)."""
    value = body[key]
    assert isinstance(value, list) and len(value) == 1, f"expected one {key} block, got {value!r}"
    return value[0]


def ref(expression: Any) -> str:
    """`${google_x.y.attr}` -> `google_x.y.attr` (an expression without its wrapper)."""
    assert isinstance(expression, str) and expression.startswith("${") and expression.endswith("}"), expression
    return expression[2:-1]


def walk(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """Every (path, leaf) in a parsed body."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield from walk(v, f"{path}.{k}" if path else k)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from walk(v, f"{path}[{i}]")
    else:
        yield path, value


def comment_before(text: str, type_: str, name: str) -> str:
    """The comment lines directly above `resource "type" "name" {` (empty if none)."""
    lines = text.splitlines()
    pattern = re.compile(rf'^resource\s+"{re.escape(type_)}"\s+"{re.escape(name)}"\s*\{{')
    for i, line in enumerate(lines):
        if pattern.match(line):
            comment = []
            j = i - 1
            while j >= 0 and lines[j].lstrip().startswith("#"):
                comment.insert(0, lines[j].lstrip("# ").rstrip())
                j -= 1
            return " ".join(comment).strip()
    raise AssertionError(f'resource "{type_}" "{name}" not found in the text')
