"""Issue 12, point 4: an incomplete drop says what it waits for. Its status document is WAITING with the missing
files, since when and when the sweep rejects it; it is written only when what is missing changes, never over a
verdict a concurrent event wrote; `submitter drop-status` shows it and exits 3."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest
from click.testing import CliRunner

from submitter.drops import DropRef, status_key
from submitter.errors import TransientError
from submitter.model import DropStatus
from submitter.records import StatusDocument
from submitter_cli import main as cli

from conftest import BASELINE_TARBALL, BASELINE_YAML, NOW, World, make_tarball

EXTRA = make_tarball({"PKG-INFO": b"Metadata-Version: 2.1\nName: extra\nVersion: 1.0\n",
                      "setup.py": b"from setuptools import setup\nsetup(name='extra', version='1.0')\n",
                      "extra/__init__.py": b""}, top="extra-1.0")

NAMED = BASELINE_YAML.replace(b"  args:", b"  packageUris: [gs://drop-bucket/incoming/w-1/trainer-0.1.tar.gz, "
                              b"gs://drop-bucket/incoming/w-1/extra-1.0.tar.gz]\n  args:")


def status_of(w: World, folder: str) -> StatusDocument | None:
    return w.ledger.status(status_key("drop-bucket", folder))


def status_token(w: World, folder: str) -> int:
    found = w.store.get(status_key("drop-bucket", folder))
    assert found is not None
    return found[1]


def test_a_drop_waiting_for_named_packages_says_which_since_when_and_until_when():
    w = World()
    w.put("incoming/w-1/job.yaml", NAMED)
    out = w.deliver("incoming/w-1/job.yaml")
    assert out.action == "waiting"
    status = status_of(w, "incoming/w-1")
    assert status is not None and status.state is DropStatus.WAITING
    assert status.missing == ("trainer-0.1.tar.gz", "extra-1.0.tar.gz")
    assert status.waiting_since == NOW
    assert status.reject_after == NOW + dt.timedelta(seconds=w.settings.incomplete_drop_s)
    assert status.key == out.job_id and status.origin["drop"]["folder"] == "incoming/w-1"
    assert "INCOMPLETE_DROP" in (status.message or "") and w.messages() == []  # nothing is published

    # The same event again (a redelivery): what is missing did not change, so no status write.
    before, puts = status_token(w, "incoming/w-1"), w.store.requests.get("replace", 0)
    w.deliver("incoming/w-1/job.yaml")
    assert status_token(w, "incoming/w-1") == before and w.store.requests.get("replace", 0) == puts

    # One package arrives: the status names what is still missing, with the first sighting's time.
    w.clock.advance(60)
    w.put("incoming/w-1/trainer-0.1.tar.gz", BASELINE_TARBALL)
    w.deliver("incoming/w-1/trainer-0.1.tar.gz")
    status = status_of(w, "incoming/w-1")
    assert status.missing == ("extra-1.0.tar.gz",) and status.waiting_since == NOW

    # The last one completes the drop: the verdict replaces the WAITING status.
    w.put("incoming/w-1/extra-1.0.tar.gz", EXTRA)
    assert w.deliver("incoming/w-1/extra-1.0.tar.gz").action == "submitted"
    assert status_of(w, "incoming/w-1").state is DropStatus.SUBMITTED


def test_a_package_without_its_job_yaml_waits_for_job_yaml():
    w = World()
    w.put("incoming/w-2/trainer-0.1.tar.gz", BASELINE_TARBALL)
    w.deliver("incoming/w-2/trainer-0.1.tar.gz")
    status = status_of(w, "incoming/w-2")
    assert status.state is DropStatus.WAITING and status.missing == ("job.yaml",) and status.key is None
    w.put("incoming/w-2/job.yaml", BASELINE_YAML)
    assert w.deliver("incoming/w-2/job.yaml").action == "submitted"
    assert status_of(w, "incoming/w-2").state is DropStatus.SUBMITTED


def test_the_sweep_rejects_a_waiting_drop_at_the_time_its_status_announced():
    w = World()
    w.put("incoming/w-3/job.yaml", NAMED.replace(b"w-1", b"w-3"))
    w.deliver("incoming/w-3/job.yaml")
    announced = status_of(w, "incoming/w-3").reject_after
    w.clock.advance((announced - w.clock.now()).total_seconds() - 1)
    assert w.handler.sweep() == []
    w.clock.advance(1)
    [outcome] = w.handler.sweep()
    assert outcome.action == "rejected"
    assert status_of(w, "incoming/w-3").state is DropStatus.REJECTED


def test_a_verdict_written_after_the_listing_is_not_overwritten_by_waiting():
    w = World()
    origin = DropRef("drop-bucket", "incoming/w-4", "incoming/w-4/job.yaml", 5).origin()
    seen_at = NOW
    verdict = StatusDocument(state=DropStatus.SUBMITTED, key="w_4_5", time=NOW + dt.timedelta(seconds=1),
                             origin=origin.fields)
    w.ledger.write_status(origin, verdict)
    waiting = StatusDocument(state=DropStatus.WAITING, key="w_4_5", time=NOW + dt.timedelta(seconds=2),
                             origin=origin.fields, missing=("x.tar.gz",))
    assert not w.ledger.write_waiting(origin, waiting, seen_at)  # a concurrent event completed it
    assert status_of(w, "incoming/w-4").state is DropStatus.SUBMITTED
    older = dataclasses.replace(verdict, time=NOW - dt.timedelta(hours=1))  # an earlier generation's verdict
    w.ledger.write_status(origin, older)
    assert w.ledger.write_waiting(origin, waiting, seen_at)
    assert status_of(w, "incoming/w-4").state is DropStatus.WAITING


@pytest.fixture
def cli_on(monkeypatch):
    """`submitter drop-status` reading a World's ledger."""
    from submitter_cli import drops

    def use(w: World):
        for key, value in {"SUBMITTER_PROJECT": "demo-project", "SUBMITTER_DROP_BUCKET": "drop-bucket",
                           "SUBMITTER_OUTPUT_BUCKET": "drop-outputs", "SUBMITTER_STATE_BUCKET": "drop-state",
                           "SUBMITTER_TOPIC": "training-job-events", "SUBMITTER_DROP_PREFIX": "incoming/"}.items():
            monkeypatch.setenv(key, value)
        monkeypatch.setattr(drops, "ledger", lambda settings: w.ledger)
    return use


def test_drop_status_shows_waiting_and_exits_3(cli_on):
    w = World()
    w.put("incoming/w-5/job.yaml", NAMED.replace(b"w-1", b"w-5"))
    w.deliver("incoming/w-5/job.yaml")
    cli_on(w)
    res = CliRunner().invoke(cli, ["drop-status", "incoming/w-5"])
    assert res.exit_code == 3
    assert "WAITING  for trainer-0.1.tar.gz, extra-1.0.tar.gz" in res.output
    assert "incomplete since 2024-06-10T12:00:05" in res.output and "rejected as INCOMPLETE_DROP" in res.output
    hinted = CliRunner().invoke(cli, ["drop-status", "w-5"])
    assert hinted.exit_code == 3 and "try incoming/w-5" in hinted.output


# -- the WAITING status is the incomplete-drop record the sweep reads -----------------------------------------
def due_keys(w: World) -> list[str]:
    return [k for k in w.store.all_keys() if k.startswith("due/")]


def test_the_waiting_status_is_the_only_record_of_an_incomplete_drop_and_a_verdict_replaces_it():
    w = World(incomplete_drop_s=600)
    w.put("incoming/w-5/trainer-0.1.tar.gz", BASELINE_TARBALL)
    w.deliver("incoming/w-5/trainer-0.1.tar.gz")
    assert status_of(w, "incoming/w-5").state is DropStatus.WAITING and len(due_keys(w)) == 1
    assert [k for k in w.store.all_keys() if k.startswith("status/")] == ["status/drop-bucket/incoming/w-5.json"]
    w.put("incoming/w-5/job.yaml", BASELINE_YAML)
    assert w.deliver("incoming/w-5/job.yaml").action == "submitted"
    w.clock.advance(601)
    assert w.handler.sweep() == [] and due_keys(w) == []  # completed: its index entry goes, nothing is rejected
    assert status_of(w, "incoming/w-5").state is DropStatus.SUBMITTED and w.publisher.states() == ["SUBMITTED"]


def test_a_verdict_newer_than_the_listing_stands_and_no_index_entry_is_written():
    w = World()
    drop = DropRef("drop-bucket", "incoming/w-6", "incoming/w-6/job.yaml", 0)
    origin = drop.origin()
    w.ledger.write_status(origin, StatusDocument(state=DropStatus.SUBMITTED, key="w_6_9", origin=origin.fields,
                                                 time=NOW + dt.timedelta(seconds=1)))

    def describe(since):
        return StatusDocument(state=DropStatus.WAITING, key=None, time=NOW, origin=origin.fields,
                              missing=("job.yaml",), waiting_since=since)

    _, written = w.ledger.note_waiting(origin, "drop-bucket", "incoming/w-6", ("job.yaml",), describe, NOW, NOW)
    assert not written and status_of(w, "incoming/w-6").state is DropStatus.SUBMITTED and due_keys(w) == []


def test_an_index_entry_of_an_earlier_wait_never_sweeps_a_later_one_early():
    w = World(incomplete_drop_s=600)
    w.put("incoming/w-7/trainer-0.1.tar.gz", BASELINE_TARBALL)
    w.deliver("incoming/w-7/trainer-0.1.tar.gz")  # waits since NOW
    w.put("incoming/w-7/job.yaml", BASELINE_YAML)
    assert w.deliver("incoming/w-7/job.yaml").action == "submitted"
    w.clock.advance(300)
    named = BASELINE_YAML.replace(b"  args:", b"  packageUris: [gs://drop-bucket/incoming/w-7/late.tar.gz]\n  args:")
    w.put("incoming/w-7/job.yaml", named)
    assert w.deliver("incoming/w-7/job.yaml").action == "waiting"  # a new generation waits since NOW + 300 s
    w.clock.advance(301)  # the first wait's entry is due, the second's is not
    assert w.handler.sweep() == [] and len(due_keys(w)) == 1
    w.clock.advance(300)
    [swept] = w.handler.sweep()
    assert swept.action == "rejected" and due_keys(w) == []


def test_a_verdict_written_while_the_package_events_listing_was_read_is_not_overwritten_by_waiting():
    """The package event lists the folder (no job.yaml yet); before it reads the status, the job.yaml event submits the
    drop. Its `seen_at` is the listing's time, so the verdict is newer and stands (not WAITING for job.yaml forever)."""
    w = World()
    w.put("incoming/w-9/package.tar.gz", BASELINE_TARBALL)
    listed = w.storage.list_folder
    raced = []

    def list_then_race(bucket, folder):
        out = listed(bucket, folder)
        if not raced:
            raced.append(True)
            w.clock.advance(1)
            w.put("incoming/w-9/job.yaml", BASELINE_YAML)
            assert w.deliver("incoming/w-9/job.yaml").action == "submitted"
        return out

    w.storage.list_folder = list_then_race
    w.deliver("incoming/w-9/package.tar.gz")
    assert status_of(w, "incoming/w-9").state is DropStatus.SUBMITTED and due_keys(w) == []


def test_an_invocation_killed_between_the_waiting_status_and_its_index_entry_is_still_swept_after_redelivery():
    w = World()
    w.put("incoming/w-10/package.tar.gz", BASELINE_TARBALL)
    create = w.store.create

    def killed_at_the_index(key, doc):
        if key.startswith("due/"):
            raise TransientError("the instance was killed")
        return create(key, doc)

    w.store.create = killed_at_the_index
    with pytest.raises(TransientError):
        w.deliver("incoming/w-10/package.tar.gz")
    w.store.create = create
    w.clock.advance(15)
    assert w.deliver("incoming/w-10/package.tar.gz", event_id="redelivered").action == "waiting"
    w.clock.advance(w.settings.incomplete_drop_s + 60)
    w.tick()
    status = status_of(w, "incoming/w-10")
    assert status.state is DropStatus.REJECTED and status.reason == "INCOMPLETE_DROP"
