"""Small helpers shared by tests."""

from __future__ import annotations

from submitter.model import JobState, Verdict


class _AllStates:
    """Every published state, verdicts first, iterable and callable like an Enum (`State("RUNNING")`)."""

    members = [*Verdict, *JobState]

    def __iter__(self):
        return iter(self.members)

    def __len__(self):
        return len(self.members)

    def __call__(self, value):
        for member in self.members:
            if member.value == value:
                return member
        raise ValueError(value)

    def __getattr__(self, name):
        for member in self.members:
            if member.name == name:
                return member
        raise AttributeError(name)


State = _AllStates()
