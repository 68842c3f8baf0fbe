"""Durable job records in SQLite (`<data_dir>/jobs.sqlite3`).

One row per job: the resource JSON exactly as the API serves it, plus columns the service
queries on (state, createTime, priority, creation sequence) and an internal JSON blob
(`runtime`: process group id, run token) that is never served. All access goes through one
connection guarded by a lock, so every method is atomic and safe to call from any thread;
`update()` is the compare-and-set primitive the scheduler and the API race through.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .model import TERMINAL_STATES, new_etag, rfc3339

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    project      TEXT    NOT NULL,
    job_id       TEXT    NOT NULL,
    seq          INTEGER NOT NULL,   -- creation order; ties on createTime (whole seconds)
    state        TEXT    NOT NULL,
    create_time  TEXT    NOT NULL,   -- RFC 3339, as in the resource
    created_at   REAL    NOT NULL,   -- epoch seconds, for maxWaitTime
    priority     INTEGER NOT NULL DEFAULT 0,
    state_since  REAL    NOT NULL,   -- epoch seconds the current state was entered
    job          TEXT    NOT NULL,   -- the Job resource JSON
    runtime      TEXT    NOT NULL DEFAULT '{}',
    PRIMARY KEY (project, job_id)
);
CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs (state);
"""


class AlreadyExists(Exception):
    """A job with this (project, jobId) exists."""


@dataclass
class JobRecord:
    """One stored job. `job` is the API resource dict; `runtime` is internal bookkeeping."""

    project: str
    job_id: str
    seq: int
    state: str
    create_time: str
    created_at: float
    priority: int
    state_since: float
    job: dict[str, Any]
    runtime: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str]:
        return (self.project, self.job_id)

    @property
    def sort_key(self) -> tuple[str, int]:
        """List order key: newest createTime first, then newest creation."""
        return (self.create_time, self.seq)


@dataclass
class Change:
    """What `update()`'s callback wants done; None fields are left as they are.

    `state` also refreshes state_since, sets endTime for terminal states and startTime
    when `start` is true. Every change of the served resource gets a new etag; `runtime`
    (internal bookkeeping) alone does not.
    """

    state: str | None = None
    error_message: str | None = None
    labels: dict[str, str] | None = None
    runtime: dict[str, Any] | None = None  # merged into the stored runtime blob
    start: bool = False
    training_output: dict[str, Any] | None = None


class JobStore:
    """SQLite-backed job records. `path` is the database file; created if missing."""

    def __init__(self, path: Path, clock: Callable[[], float] = time.time):
        self._clock = clock
        self._lock = threading.RLock()
        # Counts changes a client can see (a job created, a state or output changed); waiters long-poll it.
        self._changes = 0
        self._changed = threading.Condition(self._lock)
        path.parent.mkdir(parents=True, exist_ok=True)
        # one shared connection, serialized by self._lock (the HTTP server is threaded)
        self._conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._conn.row_factory = sqlite3.Row
        with self._lock:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def wait_for_change(self, after: int | None, timeout_s: float) -> int:
        """The change counter once it exceeds `after`, or after `timeout_s` seconds, whichever is first.

        Args:
            after: a counter value returned earlier; None returns the current value at once.
            timeout_s: the longest wait, in seconds.
        Returns:
            The counter (jobs created plus client-visible updates since the store opened).
        """
        with self._changed:
            if after is not None:
                self._changed.wait_for(lambda: self._changes > after, timeout=max(0.0, timeout_s))
            return self._changes

    def _note_change(self) -> None:
        """Count one client-visible change and wake the waiters (called with the lock held)."""
        self._changes += 1
        self._changed.notify_all()

    @staticmethod
    def _record(row: sqlite3.Row) -> JobRecord:
        return JobRecord(
            project=row["project"], job_id=row["job_id"], seq=row["seq"], state=row["state"],
            create_time=row["create_time"], created_at=row["created_at"], priority=row["priority"],
            state_since=row["state_since"], job=json.loads(row["job"]), runtime=json.loads(row["runtime"]),
        )

    def insert(self, project: str, job_id: str, labels: dict[str, str], training_input: dict[str, Any],
               priority: int, runtime: dict[str, Any] | None = None) -> JobRecord:
        """Create a QUEUED job; raises AlreadyExists. Returns the stored record.

        `runtime` seeds the internal blob (a Vertex CustomJob records its API and resource fields there)."""
        now = self._clock()
        job: dict[str, Any] = {"jobId": job_id, "trainingInput": training_input, "createTime": rfc3339(now),
                               "state": "QUEUED", "etag": new_etag()}
        if labels:
            job["labels"] = labels
        with self._lock:
            if self._conn.execute("SELECT 1 FROM jobs WHERE project=? AND job_id=?", (project, job_id)).fetchone():
                raise AlreadyExists(job_id)
            seq = self._conn.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM jobs").fetchone()[0]
            self._conn.execute(
                "INSERT INTO jobs (project, job_id, seq, state, create_time, created_at, priority, state_since, job,"
                " runtime) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (project, job_id, seq, "QUEUED", job["createTime"], now, priority, now, json.dumps(job),
                 json.dumps(runtime or {})),
            )
            self._note_change()
            return self.get(project, job_id)  # type: ignore[return-value]

    def get(self, project: str, job_id: str) -> JobRecord | None:
        with self._lock:
            row = self._conn.execute("SELECT * FROM jobs WHERE project=? AND job_id=?", (project, job_id)).fetchone()
        return self._record(row) if row else None

    def list_project(self, project: str) -> list[JobRecord]:
        """All jobs of a project, newest createTime first (ties: newest creation first)."""
        return list(self.iter_project(project))

    def iter_project(self, project: str, *, states: Iterable[str] | None = None,
                     before: tuple[str, int] | None = None) -> Iterator[JobRecord]:
        """Jobs of a project in list order (newest createTime first, ties newest creation first), each parsed only
        when the caller gets to it: a list page reads its page, not the project's whole history.

        Args:
            states: only jobs in one of these states (None: any).
            before: only jobs whose `sort_key` is below this one (a page token's cursor).
        """
        sql, args = "SELECT * FROM jobs WHERE project = ?", [project]
        if states is not None:
            wanted = sorted(states)
            sql += f" AND state IN ({','.join('?' * len(wanted))})"
            args += wanted
        if before is not None:
            sql += " AND (create_time < ? OR (create_time = ? AND seq < ?))"
            args += [before[0], before[0], before[1]]
        with self._lock:
            rows = self._conn.execute(sql + " ORDER BY create_time DESC, seq DESC", args).fetchall()
        return (self._record(r) for r in rows)

    def queued_in_order(self) -> Iterator[JobRecord]:
        """QUEUED jobs of every project in admission order (higher priority first, then first created), each
        parsed only when the caller gets to it (a scheduling pass starts a few, not the whole queue)."""
        yield from self._in_order({"QUEUED"}, False)

    def waiting_with_max_wait(self) -> Iterator[JobRecord]:
        """QUEUED or PREPARING jobs that set trainingInput.scheduling.maxWaitTime (the only ones it can cancel)."""
        yield from self._in_order({"QUEUED", "PREPARING"}, True)

    def _in_order(self, states: set[str], with_max_wait: bool) -> Iterator[JobRecord]:
        wanted = sorted(states)
        sql = f"SELECT * FROM jobs WHERE state IN ({','.join('?' * len(wanted))})"
        if with_max_wait:
            sql += " AND json_extract(job, '$.trainingInput.scheduling.maxWaitTime') IS NOT NULL"
        with self._lock:
            rows = self._conn.execute(sql + " ORDER BY priority DESC, seq", wanted).fetchall()
        return (self._record(r) for r in rows)

    def queue_keys(self) -> list[tuple[str, str]]:
        """(project, jobId) of every QUEUED job in admission order, without reading the jobs themselves."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT project, job_id FROM jobs WHERE state = 'QUEUED' ORDER BY priority DESC, seq").fetchall()
        return [(r["project"], r["job_id"]) for r in rows]

    def queue_position(self, project: str, job_id: str) -> int:
        """1-based place of a QUEUED job in admission order among every project's QUEUED jobs; 0 when it is not
        QUEUED (or unknown)."""
        with self._lock:
            row = self._conn.execute(
                "SELECT COUNT(*) FROM jobs q, jobs j WHERE j.project = ? AND j.job_id = ? AND j.state = 'QUEUED' "
                "AND q.state = 'QUEUED' AND (q.priority > j.priority OR (q.priority = j.priority AND q.seq <= j.seq))",
                (project, job_id)).fetchone()
        return int(row[0])

    def list_prefix(self, prefix: str) -> list[JobRecord]:
        """Jobs of every project key starting with `prefix`, newest createTime first."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT * FROM jobs WHERE substr(project, 1, ?) = ? ORDER BY create_time DESC, seq DESC",
                (len(prefix), prefix)).fetchall()
        return [self._record(r) for r in rows]

    def in_states(self, states: Iterable[str]) -> list[JobRecord]:
        """Jobs of every project in any of `states`, oldest creation first."""
        states = list(states)
        marks = ",".join("?" * len(states))
        with self._lock:
            rows = self._conn.execute(f"SELECT * FROM jobs WHERE state IN ({marks}) ORDER BY seq", states).fetchall()
        return [self._record(r) for r in rows]

    def update(self, project: str, job_id: str,
               decide: Callable[[JobRecord], Change | None]) -> tuple[JobRecord | None, bool]:
        """Atomically read a job, let `decide` choose a Change (or None), and apply it.

        Returns (record after the call or None if there is no such job, whether it changed).
        `decide` runs under the store lock: keep it short and free of I/O.
        """
        with self._lock:
            rec = self.get(project, job_id)
            if rec is None:
                return None, False
            change = decide(rec)
            if change is None:
                return rec, False
            now = self._clock()
            job = rec.job
            visible = False  # only a change clients can see gets a new etag
            if change.state is not None and change.state != rec.state:
                job["state"] = change.state
                rec.state_since = now
                if change.start:
                    job["startTime"] = rfc3339(now)
                if change.state in TERMINAL_STATES:
                    job["endTime"] = rfc3339(now)
                rec.state = change.state
                visible = True
            if change.error_message is not None:
                job["errorMessage"] = change.error_message
                visible = True
            if change.training_output is not None:
                job["trainingOutput"] = change.training_output
                visible = True
            if change.labels is not None:
                if change.labels:
                    job["labels"] = change.labels
                else:
                    job.pop("labels", None)
                visible = True
            if change.runtime is not None:
                rec.runtime.update(change.runtime)
            if visible:
                job["etag"] = new_etag()
            self._conn.execute(
                "UPDATE jobs SET state=?, state_since=?, job=?, runtime=? WHERE project=? AND job_id=?",
                (rec.state, rec.state_since, json.dumps(job), json.dumps(rec.runtime), project, job_id),
            )
            if visible:
                self._note_change()
            return rec, True

    def transition(self, project: str, job_id: str, from_states: Iterable[str], to_state: str,
                   **change: Any) -> JobRecord | None:
        """Compare-and-set the state: move to `to_state` only if the job is in `from_states`.

        Extra keyword arguments are `Change` fields. Returns the updated record, or None if
        the job is missing or was not in `from_states`.
        """
        allowed = set(from_states)
        rec, changed = self.update(
            project, job_id, lambda r: Change(state=to_state, **change) if r.state in allowed else None)
        return rec if changed else None
