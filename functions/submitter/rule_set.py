"""The loaded trigger rules of a deployment (`RuleSet`), apart from the rules' logic in `triggers.py`.

Why a module of its own: `Settings` holds a RuleSet, and every process reads settings, but only the ones that
load or apply rules need `triggers` (a large module, with the YAML loader): a CLI command that only reads a job's
status should not pay for importing it. `triggers` re-exports RuleSet.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .reasons import Violation
    from .triggers import Rule


@dataclasses.dataclass(frozen=True)
class RuleSet:
    """The rules of a deployment as loaded: the well-formed ones and, by name, the problems of the others.

    Attributes:
        rules: rules whose structure is valid (their templates are checked when the function starts using them).
        broken: rule name (or `rules[i]` when it has none) -> (digest, the violations): rules that never fire.
        source: the file they came from ("" when there is none).
    """

    rules: tuple[Rule, ...] = ()
    broken: Mapping[str, tuple[str, tuple[Violation, ...]]] = dataclasses.field(default_factory=dict)
    source: str = ""

    @property
    def buckets(self) -> tuple[str, ...]:
        """The buckets the rules watch, sorted."""
        return tuple(sorted({r.bucket for r in self.rules}))

    def for_bucket(self, bucket: str) -> list[Rule]:
        """The rules that watch `bucket`, in file order."""
        return [r for r in self.rules if r.bucket == bucket]

    def get(self, name: str) -> Rule | None:
        """The well-formed rule named `name`, or None."""
        return next((r for r in self.rules if r.name == name), None)

    def names(self) -> list[str]:
        """Every rule name, well-formed or broken, in file order."""
        return [r.name for r in self.rules] + [n for n in self.broken if self.get(n) is None]
