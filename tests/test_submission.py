"""The upload path against in-memory doubles: verdicts, ignored events, pinned reads, 409 adoption."""

from __future__ import annotations

import hashlib
import json

from conftest import BASELINE_TARBALL, BASELINE_YAML, World, baseline_files, make_tarball


def test_baseline_drop_submits_once_with_completed_spec(world):
    out = world.drop("incoming/run-001")
    assert out.action == "submitted"
    assert world.api.count("create") == 1
    job = world.api.jobs[out.job_id]
    ti = job["trainingInput"]
    sha = hashlib.sha256(BASELINE_TARBALL).hexdigest()  # the job runs an immutable copy of the dropped bytes
    assert ti["packageUris"] == [f"gs://drop-outputs/staging/{sha}/package.tar.gz"]
    assert ti["args"] == ["--epochs", "3"]  # the service adds --job-dir itself; we never do
    assert ti["jobDir"] == "gs://drop-outputs/run-001"
    assert job["labels"] == {"team": "vision", "submitter": "drop"}
    [msg] = world.publisher.messages
    assert msg.attributes["state"] == "SUBMITTED" and msg.attributes["jobId"] == out.job_id
    assert msg.ordering_key == out.job_id
    data = json.loads(msg.data)
    assert data["drop"] == {"bucket": "drop-bucket", "folder": "incoming/run-001",
                            "object": "incoming/run-001/job.yaml", "generation": str(world.storage.info(
                                "drop-bucket", "incoming/run-001/job.yaml").generation)}


def test_job_id_is_derived_from_folder_and_generation(world):
    out = world.drop("incoming/run-001", spec_generation=1718000000000001)
    assert out.job_id == "run_001_1718000000000001"


def test_defaults_fill_region_runtime_and_job_dir_in_outputs_bucket(world):
    out = world.drop("incoming/run-002", spec=b"trainingInput:\n  pythonModule: trainer.task\n")
    ti = world.api.jobs[out.job_id]["trainingInput"]
    assert ti["region"] == "us-central1"
    assert (ti["runtimeVersion"], ti["pythonVersion"]) == ("2.11", "3.7")
    assert ti["jobDir"] == f"gs://drop-outputs/incoming/run-002/{out.job_id}"
    assert ti["scaleTier"] == "BASIC"


def test_top_level_training_input_fields_are_accepted(world):
    out = world.drop("incoming/run-003", spec=b"pythonModule: trainer.task\nregion: us-central1\n")
    assert out.action == "submitted"
    assert world.api.jobs[out.job_id]["trainingInput"]["pythonModule"] == "trainer.task"


def test_job_yaml_first_then_package_submits_on_second_event(world):
    world.put("incoming/run-005/job.yaml", BASELINE_YAML)
    first = world.deliver("incoming/run-005/job.yaml")
    assert first.action == "waiting" and not world.publisher.messages
    world.put("incoming/run-005/package.tar.gz", BASELINE_TARBALL)
    second = world.deliver("incoming/run-005/package.tar.gz")
    assert second.action == "submitted"
    assert world.publisher.states() == ["SUBMITTED"]


def test_redelivery_is_a_duplicate(world):
    out = world.drop("incoming/run-001")
    again = world.deliver("incoming/run-001/job.yaml", event_id="evt-B")
    assert again.action == "duplicate"
    assert world.api.count("create") == 1 and world.publisher.states() == ["SUBMITTED"]
    assert out.job_id == again.job_id


def test_not_yaml_is_rejected_once_naming_the_file_and_line(world):
    out = world.drop("incoming/run-010", spec=b"trainingInput:\n  pythonModule: [unclosed\n")
    assert out.action == "rejected"
    [data] = world.messages()
    assert data["state"] == "REJECTED" and data["reason"] == "YAML_INVALID"
    assert "incoming/run-010/job.yaml" in data["message"] and "line" in data["message"]
    assert world.api.count("create") == 0


def test_missing_python_module_is_rejected(world):
    out = world.drop("incoming/run-011", spec=b"trainingInput:\n  region: us-central1\n")
    assert out.action == "rejected"
    [data] = world.messages()
    assert data["violations"][0]["field"] == "trainingInput.pythonModule"
    assert "required" in data["message"]


def test_package_that_is_not_gzip_tar_is_rejected(world):
    out = world.drop("incoming/run-012", package=b"this is not a tarball")
    assert out.action == "rejected"
    [data] = world.messages()
    assert data["reason"] == "PACKAGE_INVALID" and "package.tar.gz" in data["message"]
    assert "gzip" in data["message"]


def test_python_module_missing_from_package_names_candidates(world):
    files = baseline_files()
    files.pop("trainer/task.py")
    files["trainer/legacy/__init__.py"] = b""
    files["trainer/legacy/task.py"] = b""
    out = world.drop("incoming/run-009", package=make_tarball(files))
    assert out.action == "rejected"
    [data] = world.messages()
    assert data["reason"] == "MODULE_NOT_IN_PACKAGE"
    assert "trainer.legacy.task" in data["message"] and "trainer/task.py" in data["message"]


def test_trainingInput_list_rejected_and_never_raises(world):
    out = world.drop("incoming/run-007", spec=b"trainingInput: [this, is, a, list]\n")
    assert out.action == "rejected"
    [data] = world.messages()
    assert data["violations"][0]["field"] == "trainingInput" and "mapping" in data["message"]
    assert world.deliver("incoming/run-007/job.yaml").action == "duplicate"
    assert len(world.messages()) == 1


def test_ignored_objects_publish_nothing(world):
    world.put("incoming/run-020/sub/package.tar.gz", BASELINE_TARBALL)
    cases = {
        "incoming/": world.deliver("incoming/", generation=5, size=0),
        "subfolder": world.deliver("incoming/run-020/sub/package.tar.gz"),
        "own write": world.deliver("incoming/run-020/status.json", generation=6, size=10,
                                   metadata={"written-by": "submitter"}),
        "other file": world.deliver("incoming/run-020/README.md", generation=7, size=10),
        "zero-byte": world.deliver("incoming/run-020/job.yaml", generation=8, size=0),
        "outside prefix": world.deliver("elsewhere/run-020/job.yaml", generation=9, size=10),
    }
    assert {k: v.action for k, v in cases.items()} == dict.fromkeys(cases, "ignored")
    assert not world.publisher.messages and not world.api.calls


def test_stale_generation_is_ignored_not_rejected(world):
    world.put("incoming/run-002/package.tar.gz", BASELINE_TARBALL)
    world.put("incoming/run-002/job.yaml", BASELINE_YAML, generation=2002)
    late = world.deliver("incoming/run-002/job.yaml", generation=2001, size=0)
    assert late.action == "ignored"
    stale = world.deliver("incoming/run-002/job.yaml", generation=2001, size=213)
    assert stale.action == "ignored" and "stale" in stale.detail
    assert world.deliver("incoming/run-002/job.yaml").action == "submitted"
    assert world.publisher.states() == ["SUBMITTED"]


def test_old_event_is_ignored(world):
    world.put("incoming/run-007b/package.tar.gz", BASELINE_TARBALL)
    world.put("incoming/run-007b/job.yaml", BASELINE_YAML)
    out = world.deliver("incoming/run-007b/job.yaml", time="2024-06-09T06:00:00Z")
    assert out.action == "ignored" and "older than" in out.detail
    assert not world.api.calls


def test_409_with_same_spec_adopts_and_publishes_submitted_once():
    w = World()
    w.put("incoming/run-014/package.tar.gz", BASELINE_TARBALL)
    info = w.put("incoming/run-014/job.yaml", BASELINE_YAML.replace(b'["--epochs", "3"]', b"[]"))
    job_id = f"run_014_{info.generation}"
    # The first invocation created the job and died before publishing; the server echoes no args/scaleTier.
    w.api.jobs[job_id] = {"jobId": job_id, "state": "RUNNING", "trainingInput": {
        "pythonModule": "trainer.task", "region": "us-central1", "runtimeVersion": "2.11", "pythonVersion": "3.7",
        "jobDir": "gs://drop-outputs/run-001",
        "packageUris": [f"gs://drop-outputs/staging/{hashlib.sha256(BASELINE_TARBALL).hexdigest()}/package.tar.gz"],
        "scheduling": {"maxRunningTime": "172800s"}}}
    out = w.deliver("incoming/run-014/job.yaml")
    assert out.action == "adopted"
    assert w.publisher.states() == ["SUBMITTED"]
    w.reconciler.tick()
    assert w.publisher.states() == ["SUBMITTED", "RUNNING"]


def test_409_with_different_spec_is_submit_failed_naming_nothing_of_the_other_job():
    w = World()
    w.put("incoming/run-014/package.tar.gz", BASELINE_TARBALL)
    info = w.put("incoming/run-014/job.yaml", BASELINE_YAML)
    job_id = f"run_014_{info.generation}"
    w.api.jobs[job_id] = {"jobId": job_id, "state": "RUNNING", "trainingInput": {"pythonModule": "other.task"}}
    out = w.deliver("incoming/run-014/job.yaml")
    assert out.action == "submit_failed"
    [data] = w.messages()
    assert data["reason"] == "JOB_ID_CONFLICT" and "already exists" in data["message"]
    assert "pythonModule" not in data["message"] and "other.task" not in data["message"]  # not ours to publish


def test_quota_failure_is_permanent_and_reported_once(world):
    world.api.fail("create", 429, "RESOURCE_EXHAUSTED", "Quota failure", details=[
        {"@type": "type.googleapis.com/google.rpc.QuotaFailure",
         "violations": [{"description": "The request for 2 T4 accelerators exceeds the allowed maximum of 0"}]}])
    out = world.drop("incoming/run-015")
    assert out.action == "submit_failed"
    [data] = world.messages()
    assert data["reason"] == "QUOTA_EXCEEDED" and "allowed maximum of 0" in data["message"]


def test_transient_create_error_is_retried_then_submits(world):
    world.api.fail("create", 503, "UNAVAILABLE", "try again")
    out = world.drop("incoming/run-016")
    assert out.action == "submitted" and world.api.count("create") == 2


def test_publish_failure_raises_and_redelivery_publishes_without_second_job(world):
    import pytest

    from submitter.errors import PublishFailed as PublishError

    world.put("incoming/run-017/package.tar.gz", BASELINE_TARBALL)
    world.put("incoming/run-017/job.yaml", BASELINE_YAML)
    world.publisher.fail_next = 1
    with pytest.raises(PublishError):
        world.deliver("incoming/run-017/job.yaml")
    out = world.deliver("incoming/run-017/job.yaml", event_id="evt-redelivered")
    assert out.action == "adopted"
    assert len(world.api.jobs) == 1 and world.publisher.states() == ["SUBMITTED"]


def test_oversized_job_yaml_is_rejected_without_reading_it():
    w = World(max_spec_bytes=1000)
    out = w.drop("incoming/run-big", spec=b"# padding\n" * 200 + BASELINE_YAML)
    assert out.action == "rejected" and w.storage.reads == 0
    [data] = w.messages()
    assert data["reason"] == "SPEC_TOO_LARGE" and "at most 1000 bytes" in data["message"]


def test_two_versions_of_one_distribution_are_rejected():
    from conftest import make_tarball

    w = World()
    w.put("incoming/run-two/trainer-0.2.tar.gz", make_tarball(baseline_files(), top="trainer-0.2"))
    out = w.drop("incoming/run-two")  # adds package.tar.gz holding trainer-0.1
    assert out.action == "rejected"
    [data] = w.messages()
    assert data["reason"] == "PACKAGE_INVALID" and "distribution 'trainer'" in data["message"]


def test_a_package_replaced_or_deleted_after_submission_changes_nothing_and_the_status_says_so():
    w = World()
    out = w.drop("incoming/run-050")
    [staged] = w.api.jobs[out.job_id]["trainingInput"]["packageUris"]
    staged_name = staged.removeprefix("gs://drop-outputs/")
    assert w.storage.objects[("drop-outputs", staged_name)][1] == BASELINE_TARBALL
    w.put("incoming/run-050/package.tar.gz", b"different bytes")  # re-uploaded while the job waits
    assert w.deliver("incoming/run-050/package.tar.gz").action == "duplicate"
    [_, note] = w.ledger.status("status/drop-bucket/incoming/run-050.json").notes
    assert "uploaded again after job" in note and "runs the bytes it was submitted with" in note
    w.storage.delete("drop-bucket", "incoming/run-050/package.tar.gz")
    assert w.storage.objects[("drop-outputs", staged_name)][1] == BASELINE_TARBALL  # the copy is the job's
    w.api.set_state(out.job_id, "SUCCEEDED")
    w.reconciler.tick()
    assert staged in w.storage.stamped  # the retention clock of the copy starts when the job ends


def test_the_same_package_is_staged_once_for_many_jobs():
    w = World()
    first, second = w.drop("incoming/run-051"), w.drop("incoming/run-052")
    uris = {w.api.jobs[o.job_id]["trainingInput"]["packageUris"][0] for o in (first, second)}
    assert len(uris) == 1 and w.storage.requests["copy"] == 2  # content-addressed: the second copy is a no-op
