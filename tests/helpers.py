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


def assert_published_life(states: list[str], final: str) -> None:
    """A job's published states as a consumer sees them: SUBMITTED first, `final` last, each state once and
    in the order of a job's life. The reconciler publishes what it observes, so a short state may be skipped
    between two polls; it is never invented and never out of order."""
    ranks = [State(s).rank for s in states]
    assert states[0] == "SUBMITTED" and states[-1] == final, states
    assert len(set(states)) == len(states) and ranks == sorted(ranks), states
    assert set(states) <= {"SUBMITTED", "QUEUED", "PREPARING", "RUNNING", "CANCELLING", final}, states
