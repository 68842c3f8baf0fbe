"""`submitter watch [JOB_ID]`: a job's state now, then each transition as it is published.

Sources, in this order (the order matters):
  1. a subscription of its own on the events topic (`SUBMITTER_TOPIC`), created first: a new
     subscription sees only messages published after it exists, so creating it before reading the
     current state loses no transition in between (`submitter.follow.EventFollower`, deleted on exit);
  2. the training API's current state: `jobs.get JOB_ID`, or without JOB_ID the active jobs this
     submitter created (`jobs.list` with the active-state filter and the submitter label). A job the API
     does not know may be a drop the submitter REJECTED or could not submit (SUBMIT_FAILED): for jobIds
     derived from a drop folder, the verdict is looked up in the submitter's state bucket;
  3. the events, deduplicated by `ce-id` and never backwards: an event whose `seq` is lower than the one
     already printed for that job, or repeats the state printed, is skipped.

Output, one line per state: `<time>  <jobId>  <STATE>  [reason]`, with errorMessage / message and
violations indented below; the line read from the API ends in `(training API)`, a verdict read from the
state bucket in `(submitter's records)`. With `--json`, one JSON object per line: for an event, its data
(schemas/job-event.v1.schema.json) plus `"origin": "topic"` and `"ceId"`; for the current state,
`{"origin": "api" | "ledger", "jobId", "state", "seq", "terminal", "time", "reason", "errorMessage",
"message", "jobDir", "labels"}` (+ "violations", "drop" from the ledger; seq/terminal null for a state the
submitter does not know).

Exit codes with JOB_ID: 0 SUCCEEDED; 1 FAILED, CANCELLED, REJECTED, SUBMIT_FAILED; 2 `--timeout` passed
before a final state (click's usage errors are 2 as well); 3 the watch itself failed (settings, topic,
training API); 130 Ctrl-C. A job already final when watch starts is printed and exits at once.
Without JOB_ID: follows every job until Ctrl-C or `--timeout`, then exits 0 (3 on failure).
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from collections.abc import Callable
from typing import Any

import click

from .common import load_settings

POLL_S = 1.0  # how often the follow loop checks the deadline while no message arrives
EXIT_SUCCEEDED, EXIT_FAILED, EXIT_TIMEOUT, EXIT_ERROR, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


class WatchError(click.ClickException):
    """The watch itself could not run (exit 3, so it is never mistaken for a FAILED job)."""

    exit_code = EXIT_ERROR


def exit_code_for(state: str) -> int | None:
    """The exit code for a final state (0 only for SUCCEEDED), None while the job is not final."""
    from submitter.model import published_state

    s = published_state(state)
    if s is None or not s.is_terminal:
        return None
    return EXIT_SUCCEEDED if s.is_success else EXIT_FAILED


def _seq(state: str) -> int | None:
    from submitter.model import published_state

    s = published_state(state)
    return None if s is None else s.rank


def _now() -> str:
    return _rfc3339(None)


def _rfc3339(iso: str | None) -> str:
    """An ISO timestamp (or now) as the events print it: UTC, milliseconds, `Z`."""
    try:
        when = dt.datetime.fromisoformat(iso) if iso else dt.datetime.now(dt.UTC)
    except ValueError:
        when = dt.datetime.now(dt.UTC)
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Tracker:
    """What has been printed: ce-ids seen, and per job the last (seq, state). Pure; used per watch."""

    def __init__(self) -> None:
        self.ids: set[str] = set()
        self.last: dict[str, tuple[int, str]] = {}

    def accept(self, job_id: str, state: str, seq: int | None, event_id: str | None = None) -> bool:
        """True when this state is news for the job: a new ce-id, not lower than what was printed,
        not the state printed last. Records it when accepted."""
        if event_id is not None:
            if event_id in self.ids:
                return False
            self.ids.add(event_id)
        if seq is None:
            return True  # a state the submitter does not rank (e.g. STATE_UNSPECIFIED): shown, not recorded
        last = self.last.get(job_id)
        if last is not None and (seq < last[0] or (seq, state) == last):
            return False
        self.last[job_id] = (seq, state)
        return True


def api_entry(job: Any) -> dict[str, Any]:
    """The printable entry for a backend's JobStatus (`origin: api`)."""
    state = job.state.value if job.state is not None else (job.api_state or "STATE_UNSPECIFIED")
    seq = _seq(state)
    return {"origin": "api", "jobId": job.handle.key, "state": state, "seq": seq,
            "terminal": None if seq is None else exit_code_for(state) is not None, "time": _now(),
            "reason": "JOB_FAILED" if state == "FAILED" else None, "errorMessage": job.error_message,
            "message": None, "jobDir": job.output_dir, "labels": job.labels}


def event_entry(event: dict[str, Any]) -> dict[str, Any]:
    """The printable entry for a received event: its data plus `origin: topic` and `ceId`."""
    return {**event["data"], "origin": "topic", "ceId": event["attributes"].get("ce-id")}


def render(entry: dict[str, Any], as_json: bool) -> str:
    """One JSON line, or the readable line(s) `<time>  <jobId>  <STATE>  [reason]` + indented details."""
    if as_json:
        return json.dumps(entry, ensure_ascii=False, sort_keys=True)
    line = f"{entry.get('time') or ''}  {entry.get('jobId')}  {entry.get('state')}"
    if entry.get("reason"):
        line += f"  {entry['reason']}"
    if entry.get("origin") == "api":
        line += "  (training API)"
    elif entry.get("origin") == "ledger":
        line += "  (submitter's records)"
    lines = [line]
    for v in entry.get("violations") or []:
        lines.append(f"    {v.get('field')}: {v.get('message')}  [{v.get('reason')}]")
    text = entry.get("errorMessage") or (None if entry.get("violations") else entry.get("message"))
    if text:
        lines.append("    " + str(text).rstrip("\n").replace("\n", "\n    "))
    if entry.get("state") == "SUCCEEDED" and entry.get("jobDir"):
        lines.append(f"    outputs: {entry['jobDir']}")
    return "\n".join(lines)


def find_verdict(settings, ledger, job_id: str) -> dict[str, Any] | None:  # type: ignore[no-untyped-def]
    """A REJECTED or SUBMIT_FAILED verdict recorded for `job_id`, when the jobId was derived from a drop
    folder and the job.yaml generation (`run_001_1718000000000001`); None otherwise.

    Reads the state bucket: lists the drops' status documents and matches each folder's derived jobId.
    """
    from submitter import naming
    from submitter.drops import DropRef, status_key
    from submitter.model import Verdict

    generations = naming.generations_in(job_id)
    if not generations:
        return None
    head = f"status/{settings.drop_bucket}/{settings.drop_prefix}"
    for key in sorted(ledger.store.versions(head)):
        folder = key[len(f"status/{settings.drop_bucket}/"):].removesuffix(".json")
        name = folder[len(settings.drop_prefix):]
        generation = next((g for g in generations if naming.derive_job_id(name, g) == job_id), None)
        if generation is None:
            continue
        drop = DropRef(settings.drop_bucket, folder, f"{folder}/job.yaml", generation)
        verdict = ledger.verdict(drop.origin())
        status = ledger.status(status_key(settings.drop_bucket, folder))
        same = status is not None and status.key == job_id
        state = verdict.state.value if verdict else (status.state.value if same and status else None)
        if state in (Verdict.REJECTED.value, Verdict.SUBMIT_FAILED.value):
            return {"origin": "ledger", "jobId": job_id, "state": state, "seq": _seq(state), "terminal": True,
                    "time": _rfc3339(status.time.isoformat()) if same and status else _now(),
                    "reason": status.reason if same and status else None, "errorMessage": None,
                    "message": status.message if same and status else None,
                    "violations": list(status.violations) if same and status else [], "jobDir": None, "labels": {},
                    "drop": drop.as_dict()}
    return None


def _current_job(settings, backend, ledger_factory, job_id: str) -> dict[str, Any] | None:  # type: ignore[no-untyped-def]
    from submitter.errors import BackendError
    from submitter.retry import call_with_retries

    try:
        found = call_with_retries(lambda: backend.find(job_id), deadline_s=20)
    except BackendError as exc:
        raise WatchError(f"training API: {exc}") from None
    if found is not None:
        return api_entry(found)
    try:
        return find_verdict(settings, ledger_factory(), job_id)
    except Exception:  # best effort: the state bucket may not be readable by this user
        return None


def _current_active(settings, backend) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    from submitter.errors import BackendError

    out, token = [], None
    try:
        while True:
            page, token = backend.list_active(page_token=token)
            out += [api_entry(j) for j in page if j.labels.get(settings.job_label_key) == settings.job_label_value]
            if not token:
                return out
    except BackendError as exc:
        raise WatchError(f"training API: {exc}") from None


def _poll(backend: Any, job_id: str, tracker: Tracker, as_json: bool, echo: Callable[[str], None],
          note: Callable[[str], None], clock: Any, deadline: float | None, timeout_s: float | None) -> int:
    """Follow a job no event will come for by reading it from the training API every POLL_S seconds."""
    from submitter.errors import BackendUnavailable

    while deadline is None or clock.monotonic() < deadline:
        clock.sleep(POLL_S)
        try:
            found = backend.find(job_id)
        except BackendUnavailable:
            continue  # a passing fault: ask again at the next poll
        if found is None:
            continue
        entry = api_entry(found)
        if tracker.accept(job_id, entry["state"], entry["seq"]):
            echo(render(entry, as_json))
        code = exit_code_for(entry["state"])
        if code is not None:
            return code
    note(f"{job_id}: no final state within {timeout_s:g}s")
    return EXIT_TIMEOUT


def run_watch(settings, backend, follower_factory: Callable[[], Any], job_id: str | None, as_json: bool,
              timeout_s: float | None, echo: Callable[[str], None] = click.echo,
              note: Callable[[str], None] = lambda m: click.echo(m, err=True),
              ledger_factory: Callable[[], Any] | None = None, clock: Any = None,
              refusal_id: str | None = None) -> int:
    """The watch loop; returns the exit code (see the module docstring). Testable with fakes.

    Args:
        settings: Settings (topic, labels, state bucket).
        backend: the training backend (current state).
        follower_factory: returns a context manager with `.events(timeout_s)` (an EventFollower).
        job_id: the job to watch, or None for all jobs.
        as_json / timeout_s: the options.
        echo / note: where lines (stdout) and notes (stderr) go.
        ledger_factory: returns the submitter's Ledger (verdicts of drops); default: the state bucket's.
        clock: whose `monotonic()` measures --timeout (a FakeClock in tests); the system clock by default.
        refusal_id: the drop's own derived jobId when the spec names another one: a REJECTED or SUBMIT_FAILED
            for the drop is published under it (a drop only speaks for itself), and ends the watch too.
    """
    from submitter.clock import SystemClock

    clock = clock or SystemClock()
    if ledger_factory is None:
        def ledger_factory():
            from submitter.app import App

            return App(settings).ledger

    deadline = None if timeout_s is None else clock.monotonic() + timeout_s
    tracker = Tracker()
    try:
        follower_cm = follower_factory()
        follower = follower_cm.__enter__()  # the subscription exists from here on
    except Exception as exc:
        raise WatchError(f"cannot subscribe to {settings.topic}: {type(exc).__name__}: {exc}") from None
    try:
        if job_id:
            current = _current_job(settings, backend, ledger_factory, job_id)
            if current is None:
                note(f"{job_id}: not in the training API (yet); waiting for its events")
            else:
                tracker.accept(job_id, current["state"], current["seq"])
                echo(render(current, as_json))
                code = exit_code_for(current["state"])
                if code is not None:
                    return code
                if current["origin"] == "api" and (current.get("labels") or {}).get(
                        settings.job_label_key) != settings.job_label_value:
                    # Submitted another way (gcloud, a console): no event will come for it, so ask the API.
                    note(f"{job_id} was not submitted by this submitter; following it through the training API")
                    return _poll(backend, job_id, tracker, as_json, echo, note, clock, deadline, timeout_s)
        else:
            for current in _current_active(settings, backend):
                tracker.accept(current["jobId"], current["state"], current["seq"])
                echo(render(current, as_json))
            note(f"following every job on {settings.topic}; Ctrl-C to stop")
        while True:
            remaining = None if deadline is None else deadline - clock.monotonic()
            if remaining is not None and remaining <= 0:
                if job_id:
                    note(f"{job_id}: no final state within {timeout_s:g}s")
                    return EXIT_TIMEOUT
                return EXIT_SUCCEEDED
            for event in follower.events(timeout_s=POLL_S if remaining is None else min(POLL_S, remaining)):
                data = event.get("data") or {}
                if "undecodable" in data or "state" not in data or "jobId" not in data:
                    note(f"skipped a message that is not a job event (messageId {event.get('messageId')})")
                    continue
                refused = refusal_id is not None and data["jobId"] == refusal_id and data["state"] in (
                    "REJECTED", "SUBMIT_FAILED")
                if job_id and data["jobId"] != job_id and not refused:
                    continue
                if not tracker.accept(data["jobId"], data["state"], data.get("seq"),
                                      event["attributes"].get("ce-id") or event.get("messageId")):
                    continue
                echo(render(event_entry(event), as_json))
                code = exit_code_for(data["state"])
                if job_id and code is not None:
                    return code
                if deadline is not None and clock.monotonic() >= deadline:
                    break
    finally:
        try:
            follower_cm.__exit__(None, None, None)  # deletes the temporary subscription
        except Exception as exc:
            note(f"could not delete the temporary subscription: {type(exc).__name__}: {exc}")


@click.command()
@click.argument("job_id", required=False)
@click.option("--json", "as_json", is_flag=True, help="one JSON object per line")
@click.option("--timeout", "timeout_s", type=click.FloatRange(min=0), default=None, metavar="SECONDS",
              help="stop after SECONDS (exit 2 with JOB_ID when the job is not final by then)")
def watch(job_id: str | None, as_json: bool, timeout_s: float | None) -> None:
    """Print a job's current state, then each state change as it is published.

    With JOB_ID, exits when the job is final: 0 SUCCEEDED; 1 FAILED, CANCELLED, REJECTED, SUBMIT_FAILED;
    2 after --timeout; 3 when the watch cannot run. Without JOB_ID, follows every job until Ctrl-C or
    --timeout.
    """
    from submitter.backends import build_backend

    from .follow import EventFollower

    settings = load_settings()
    backend = build_backend(settings)
    try:
        code = run_watch(settings, backend, lambda: EventFollower(settings.topic, "watch"), job_id, as_json,
                         timeout_s)
    except KeyboardInterrupt:
        code = EXIT_INTERRUPTED if job_id else EXIT_SUCCEEDED
    sys.stdout.flush()
    sys.exit(code)


__all__ = ["watch", "run_watch", "Tracker", "render", "exit_code_for", "find_verdict"]
