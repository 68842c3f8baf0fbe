"""Job states and the rules about them (pure).

API states are the ml v1 `GoogleCloudMlV1__Job.state` enum verbatim (discovery
document `ml.v1.json`). SUBMITTED, REJECTED and SUBMIT_FAILED are the
submitter's own verdicts about a drop. Terminal and successful are kept apart:
only SUCCEEDED is success.
"""

from __future__ import annotations

import enum


class State(str, enum.Enum):
    """A state published for a job or a drop."""

    SUBMITTED = "SUBMITTED"
    REJECTED = "REJECTED"
    SUBMIT_FAILED = "SUBMIT_FAILED"
    QUEUED = "QUEUED"
    PREPARING = "PREPARING"
    RUNNING = "RUNNING"
    CANCELLING = "CANCELLING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def rank(self) -> int:
        """Position in a job's life; a job never moves to a lower rank.

        SUBMITTED 0 < QUEUED 1 < PREPARING 2 < RUNNING 3 < CANCELLING 4 < final 5.
        The rank doubles as the message sequence number, so it increases even
        when two publishers race.
        """
        return _RANK[self]

    @property
    def is_terminal(self) -> bool:
        """True for states after which nothing more is published for the job or drop."""
        return self.rank == _FINAL_RANK

    @property
    def is_success(self) -> bool:
        """True only for SUCCEEDED."""
        return self is State.SUCCEEDED


_FINAL_RANK = 5
_RANK = {
    State.SUBMITTED: 0,
    State.QUEUED: 1,
    State.PREPARING: 2,
    State.RUNNING: 3,
    State.CANCELLING: 4,
    State.SUCCEEDED: _FINAL_RANK,
    State.FAILED: _FINAL_RANK,
    State.CANCELLED: _FINAL_RANK,
    State.REJECTED: _FINAL_RANK,
    State.SUBMIT_FAILED: _FINAL_RANK,
}

# States the training API reports for a job that has not finished.
ACTIVE_API_STATES = (State.QUEUED, State.PREPARING, State.RUNNING, State.CANCELLING)


def observed_state(job: dict) -> State | None:
    """The state a training-API job resource reports, or None when it says nothing.

    Args:
        job: a `GoogleCloudMlV1__Job` dict.
    Returns:
        The State, or None for a missing key, STATE_UNSPECIFIED, or a value this
        submitter does not know (so a poller keeps waiting instead of guessing).
    """
    raw = job.get("state")
    if not raw or raw == "STATE_UNSPECIFIED":
        return None
    try:
        state = State(raw)
    except ValueError:
        return None
    if state in (State.SUBMITTED, State.REJECTED, State.SUBMIT_FAILED):
        return None  # never reported by the API
    return state
