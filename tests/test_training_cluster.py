"""Multi-replica jobs on the local training service: one process per replica, TF_CONFIG laid
out as the cloud lays it out, per-replica logs, failure, cancel and restart of a whole cluster.

The trainer (`trainer.replica`) writes what it sees to `<--out>/<type>-<index>.json` (written
atomically), including its pid and the pid of a grandchild that ignores SIGTERM, so the tests
can prove that every replica's whole process group is gone. Workers and parameter servers
then sleep, as a parameter server's `server.join()` would; the master waits until every
replica has reported and exits (or sleeps, as asked); the replica named by `--fail-as` also
waits for every report, then exits with status 4.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import pytest
import requests
from google.auth.credentials import AnonymousCredentials
from googleapiclient.errors import HttpError
from test_training_service import (  # noqa: F401  (fixtures are used by name)
    BUCKET,
    PARENT,
    PROJECT,
    RUNTIME_PYTHON,
    TERMINAL,
    _start_cli,
    alive,
    envs_dir,
    error_of,
    job_body,
    job_pids,
    jobs_api,
    make_sdist,
    make_service,
    wait_for,
    wait_gone,
)

from submitter_local import storage_emulator
from submitter_local.training import cluster

pytestmark = [pytest.mark.stack, pytest.mark.usefixtures("runtime_required")]

REPLICA = r'''
"""Records TF_CONFIG; see tests/test_training_cluster.py."""
import argparse, json, os, subprocess, sys, time
p = argparse.ArgumentParser()
p.add_argument("--out", required=True)
p.add_argument("--expect", type=int, default=1)
p.add_argument("--fail-as", default="")
p.add_argument("--master", choices=["finish", "sleep"], default="finish")
p.add_argument("--job-dir")
args = p.parse_args()
tf = json.loads(os.environ["TF_CONFIG"])
name = "%s-%d" % (tf["task"]["type"], tf["task"]["index"])
child = subprocess.Popen(["sh", "-c", "trap '' TERM; sleep 120"])  # SIGTERM-proof grandchild
report = {"tf_config": tf, "pid": os.getpid(), "child": child.pid, "cwd": os.getcwd(), "argv": sys.argv[1:]}
tmp = os.path.join(args.out, name + ".tmp")
with open(tmp, "w") as f:
    json.dump(report, f)
os.rename(tmp, os.path.join(args.out, name + ".json"))
print("REPLICA " + name, flush=True)
print("stderr of " + name, file=sys.stderr, flush=True)


def wait_for_everyone():
    end = time.time() + 60
    while len([n for n in os.listdir(args.out) if n.endswith(".json")]) < args.expect:
        if time.time() > end:
            sys.exit("not every replica reported")
        time.sleep(0.05)


if name == args.fail_as:
    wait_for_everyone()  # so the test sees every replica before the job ends
    print("RuntimeError: replica %s gave up" % name, file=sys.stderr)
    sys.exit(4)
if tf["task"]["type"] in ("master", "chief") and args.master == "finish":
    wait_for_everyone()
    sys.exit(0)
time.sleep(120)
'''


@pytest.fixture(scope="module")
def gcs(tmp_path_factory):
    """The fixed storage emulator with bucket `drops` holding the replica trainer."""
    server = storage_emulator.start("127.0.0.1", 0)
    patched = pytest.MonkeyPatch()  # module-scoped fixtures cannot use the monkeypatch fixture
    patched.setenv("STORAGE_EMULATOR_HOST", server.url)
    from google.cloud import storage

    client = storage.Client(project=PROJECT, credentials=AnonymousCredentials())
    path = make_sdist(tmp_path_factory.mktemp("sdists"), "trainer", {"replica": REPLICA})
    client.create_bucket(BUCKET).blob(f"packages/{path.name}").upload_from_filename(str(path))
    yield f"gs://{BUCKET}/packages"
    server.stop()
    patched.undo()


def custom_body(job_id: str, gcs: str, out: Path, *extra_args: str, workers: int = 2, ps: int = 1,
                evaluators: int = 0, expect: int | None = None) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    os.chmod(out, 0o777)  # replicas run as an unprivileged account; the service shares `out` with them
    expect = expect if expect is not None else 1 + workers + ps + evaluators
    ti = dict(scaleTier="CUSTOM", masterType="n1-standard-4", args=["--out", str(out), "--expect", str(expect),
                                                                    *extra_args])
    if workers:
        ti.update(workerType="n1-standard-4", workerCount=workers)
    if ps:
        ti.update(parameterServerType="n1-highmem-8", parameterServerCount=ps)
    if evaluators:
        ti.update(evaluatorType="n1-standard-4", evaluatorCount=evaluators)
    return job_body(job_id, gcs, module="trainer.replica", **ti)


def reports(out: Path) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in out.glob("*.json")}


def wait_reports(out: Path, count: int, timeout: float = 30.0) -> dict[str, dict]:
    end = time.monotonic() + timeout
    while len(found := reports(out)) < count:
        if time.monotonic() > end:
            raise AssertionError(f"only {sorted(found)} reported within {timeout}s")
        time.sleep(0.05)
    return found


def all_pids(job_id: str, replicas: int) -> list[int]:
    """Host pids of every replica and its SIGTERM-proof grandchild (the pids in the reports are
    the replicas' own, inside their PID namespaces)."""
    return job_pids(job_id, expect=2 * replicas)


def replica_log(svc, job_id: str, replica: str | None = None) -> requests.Response:
    params = {"replica": replica} if replica else {}
    return requests.get(f"{svc.url}/local/v1/projects/{PROJECT}/jobs/{job_id}/logs", params=params, timeout=10)


# --------------------------------------------------------------------------- pure layout rules

@pytest.mark.parametrize("ti, cap, expected, requested", [
    ({}, 2, ["master-0"], {"master": 1, "worker": 0, "ps": 0, "evaluator": 0}),
    ({"scaleTier": "BASIC_GPU"}, 2, ["master-0"], {"master": 1, "worker": 0, "ps": 0, "evaluator": 0}),
    ({"scaleTier": "STANDARD_1"}, 2, ["master-0", "worker-0", "worker-1", "ps-0", "ps-1"],
     {"master": 1, "worker": 4, "ps": 3, "evaluator": 0}),
    ({"scaleTier": "STANDARD_1"}, 10, ["master-0"] + [f"worker-{i}" for i in range(4)] + [f"ps-{i}" for i in range(3)],
     {"master": 1, "worker": 4, "ps": 3, "evaluator": 0}),
    ({"scaleTier": "PREMIUM_1"}, 100,
     ["master-0"] + [f"worker-{i}" for i in range(19)] + [f"ps-{i}" for i in range(11)],
     {"master": 1, "worker": 19, "ps": 11, "evaluator": 0}),
    ({"scaleTier": "BASIC_TPU"}, 2, ["master-0"], {"master": 1, "worker": 1, "ps": 0, "evaluator": 0}),
    ({"scaleTier": "CUSTOM", "masterType": "n1-standard-4", "workerType": "cloud_tpu", "workerCount": "1"}, 2,
     ["master-0"], {"master": 1, "worker": 1, "ps": 0, "evaluator": 0}),
    ({"scaleTier": "CUSTOM", "masterType": "m", "workerType": "w", "workerCount": "3", "evaluatorType": "e",
      "evaluatorCount": "1"}, 0, ["master-0"], {"master": 1, "worker": 3, "ps": 0, "evaluator": 1}),
])
def test_replica_plan_for_tiers(ti, cap, expected, requested):
    plan = cluster.plan(ti, cap)
    assert plan.names() == expected
    assert plan.requested == requested
    run = {t: sum(1 for r in plan.replicas if r.type == t) for t in ("worker", "ps", "evaluator")}
    tpu = ti.get("scaleTier") == "BASIC_TPU" or ti.get("workerType") == "cloud_tpu"
    if any(run[t] < requested[t] for t in run):  # every local difference is said out loud
        assert plan.notes and all(("TPU" in n) == tpu for n in plan.notes if "worker" in n)
    else:
        assert plan.notes == ()


def test_primary_is_chief_only_for_custom_containers_asking_for_it():
    runtime_job = {"runtimeVersion": "2.11", "useChiefInTfConfig": True}
    assert cluster.primary_type(runtime_job) == "master"
    assert "no effect" in cluster.plan(runtime_job, 2).notes[0]
    assert cluster.primary_type({"masterConfig": {"imageUri": "gcr.io/p/i"}}) == "master"
    container_job = {"masterConfig": {"imageUri": "gcr.io/p/i"}, "useChiefInTfConfig": True,
                     "scaleTier": "CUSTOM", "masterType": "m", "workerType": "w", "workerCount": "1",
                     "evaluatorType": "e", "evaluatorCount": "1"}
    plan = cluster.plan(container_job, 2)
    assert plan.names() == ["chief-0", "worker-0", "evaluator-0"]
    addresses = {"chief-0": "h:1", "worker-0": "h:2"}
    evaluator = plan.replicas[2]
    assert cluster.tf_config(plan, addresses, evaluator, container_job) == {
        "cluster": {"chief": ["h:1"], "worker": ["h:2"]},  # never the evaluator
        "task": {"type": "evaluator", "index": 0},
        "job": container_job,
        "environment": "cloud",
    }


def test_consumed_ml_units_estimate():
    assert cluster.consumed_ml_units(4, 1800) == 2.0
    assert cluster.consumed_ml_units(1, 1) == round(1 / 3600, 6)
    assert cluster.consumed_ml_units(0, 100) == 0


# --------------------------------------------------------------------------- real clusters

def test_custom_cluster_gives_each_replica_the_cloud_tf_config(make_service, gcs, tmp_path):
    out = tmp_path / "reports"
    svc = make_service(shared_paths=(out,))
    jobs = jobs_api(svc)
    body = custom_body("cluster_1", gcs, out, workers=2, ps=1)
    body["trainingInput"]["jobDir"] = f"gs://{BUCKET}/out/cluster_1"
    created = jobs.create(parent=PARENT, body=body).execute()

    job, _ = wait_for(jobs, "cluster_1", TERMINAL, timeout=60)
    assert job["state"] == "SUCCEEDED", job
    found = reports(out)
    assert sorted(found) == ["master-0", "ps-0", "worker-0", "worker-1"]
    clusters = {json.dumps(r["tf_config"]["cluster"], sort_keys=True) for r in found.values()}
    assert len(clusters) == 1, "every replica sees the same cluster"
    spec = found["master-0"]["tf_config"]["cluster"]
    assert set(spec) == {"master", "worker", "ps"}
    assert [len(spec["master"]), len(spec["worker"]), len(spec["ps"])] == [1, 2, 1]
    addresses = spec["master"] + spec["worker"] + spec["ps"]
    assert all(re.fullmatch(r"127\.0\.0\.1:\d+", a) for a in addresses) and len(set(addresses)) == 4
    for name, r in found.items():
        kind, index = name.split("-")
        tf = r["tf_config"]
        assert tf["task"] == {"type": kind, "index": int(index)}
        assert tf["job"] == created["trainingInput"]  # the TrainingInput as the API serves it
        assert tf["environment"] == "cloud"
        assert r["argv"][-2:] == ["--job-dir", f"gs://{BUCKET}/out/cluster_1"]
        assert Path(r["cwd"]).name == name  # each replica has its own working directory
    # workers and the parameter server were still sleeping: stopped when the master finished
    wait_gone(job_pids("cluster_1", expect=0))

    for name in found:
        text = replica_log(svc, "cluster_1", name).text
        assert f"REPLICA {name}" in text and f"stderr of {name}" in text
        assert all(f"REPLICA {other}" not in text for other in found if other != name)
    assert replica_log(svc, "cluster_1").text == replica_log(svc, "cluster_1", "master-0").text
    missing = replica_log(svc, "cluster_1", "worker-2")
    assert missing.status_code == 404 and missing.json()["error"]["status"] == "NOT_FOUND"
    assert replica_log(svc, "cluster_1", "master-0.stdout").status_code == 404  # only replica names
    assert 0 < job["trainingOutput"]["consumedMLUnits"] < 1


def test_evaluators_run_outside_the_cluster_and_counts_are_capped(make_service, gcs, tmp_path):
    out = tmp_path / "reports"
    svc = make_service(max_replicas_per_type=1, shared_paths=(out,))
    jobs = jobs_api(svc)
    jobs.create(parent=PARENT, body=custom_body("capped", gcs, out, workers=3, ps=0, evaluators=1,
                                                expect=3)).execute()
    job, _ = wait_for(jobs, "capped", TERMINAL, timeout=60)
    assert job["state"] == "SUCCEEDED", job
    found = reports(out)
    assert sorted(found) == ["evaluator-0", "master-0", "worker-0"]
    assert found["evaluator-0"]["tf_config"]["cluster"] == found["master-0"]["tf_config"]["cluster"]
    assert set(found["master-0"]["tf_config"]["cluster"]) == {"master", "worker"}
    assert "3 worker replica(s) requested, 1 run locally" in replica_log(svc, "capped").text
    wait_gone(job_pids("capped", expect=0))


@pytest.mark.parametrize("fail_as, label", [("worker-1", "worker 1"), ("master-0", "master 0")])
def test_a_failing_replica_fails_the_job_and_stops_the_rest(make_service, gcs, tmp_path, fail_as, label):
    out = tmp_path / "reports"
    svc = make_service(shared_paths=(out,))
    jobs = jobs_api(svc)
    job_id = "fails_" + fail_as.replace("-", "_")
    jobs.create(parent=PARENT, body=custom_body(job_id, gcs, out, "--fail-as", fail_as, "--master", "sleep",
                                                workers=2, ps=1)).execute()
    wait_reports(out, 4)
    job, _ = wait_for(jobs, job_id, TERMINAL, timeout=30)
    assert job["state"] == "FAILED"
    assert job["errorMessage"].startswith(f"RuntimeError: replica {fail_as} gave up\n"
                                          f"The replica {label} exited with a non-zero status of 4. ")
    assert job["errorMessage"].endswith(f"RuntimeError: replica {fail_as} gave up")
    wait_gone(job_pids(job_id, expect=0))
    assert "non-zero status of 4" in replica_log(svc, job_id, fail_as).text


def test_cancel_stops_every_replica_process_group(make_service, gcs, tmp_path):
    out = tmp_path / "reports"
    svc = make_service(shared_paths=(out,))
    jobs = jobs_api(svc)
    jobs.create(parent=PARENT, body=custom_body("cancel_me", gcs, out, "--master", "sleep",
                                                workers=2, ps=1)).execute()
    wait_reports(out, 4)
    pids = all_pids("cancel_me", 4)
    assert jobs.get(name=f"{PARENT}/jobs/cancel_me").execute()["state"] == "RUNNING"

    assert jobs.cancel(name=f"{PARENT}/jobs/cancel_me", body={}).execute() == {}
    job, _ = wait_for(jobs, "cancel_me", TERMINAL, timeout=15)
    assert job["state"] == "CANCELLED" and job["errorMessage"] == "Job cancelled by the user (jobs.cancel)."
    wait_gone(pids)  # leaders die of SIGTERM, the SIGTERM-proof grandchildren of the group SIGKILL
    assert job["trainingOutput"]["consumedMLUnits"] > 0


def test_service_stop_mid_job_kills_the_cluster_and_restart_fails_the_job(make_service, gcs, tmp_path):
    data_dir = tmp_path / "data"
    out = tmp_path / "reports"
    svc1 = make_service(data_dir=data_dir, shared_paths=(out,))
    jobs = jobs_api(svc1)
    jobs.create(parent=PARENT, body=custom_body("restarted", gcs, out, "--master", "sleep",
                                                workers=2, ps=1)).execute()
    wait_reports(out, 4)
    pids = all_pids("restarted", 4)
    svc1.stop()
    wait_gone(pids)

    svc2 = make_service(data_dir=data_dir)
    job = jobs_api(svc2).get(name=f"{PARENT}/jobs/restarted").execute()
    assert job["state"] == "FAILED"
    assert job["errorMessage"] == ("The local training service restarted while the job was RUNNING; "
                                   "its processes are gone.")


def test_crashed_service_leftover_replicas_are_all_killed_on_restart(gcs, tmp_path, envs_dir):
    data_dir = tmp_path / "crash"
    out = tmp_path / "reports"
    out.mkdir()
    proc, url = _start_cli(data_dir, "--kill-grace-seconds", "1", "--envs-dir", str(envs_dir), "--share-path", str(out))
    try:
        body = custom_body("orphans", gcs, out, "--master", "sleep", workers=2, ps=1)
        assert requests.post(f"{url}/v1/{PARENT}/jobs", json=body, timeout=10).status_code == 200
        wait_reports(out, 4)
        pids = all_pids("orphans", 4)
    finally:
        proc.kill()  # a crash: the service cleans nothing up
        proc.wait()
    assert all(alive(p) for p in pids), "the replicas outlived their service"

    proc, url = _start_cli(data_dir, "--paused", "--envs-dir", str(envs_dir))
    try:
        wait_gone(pids)
        job = requests.get(f"{url}/v1/{PARENT}/jobs/orphans", timeout=10).json()
        assert job["state"] == "FAILED"
        assert job["errorMessage"].startswith("The local training service restarted while the job was RUNNING")
    finally:
        proc.terminate()
        assert proc.wait(timeout=15) == 0


def test_logs_of_unknown_job_is_404(make_service):
    svc = make_service(paused=True)
    answer = replica_log(svc, "nope", "worker-0")
    assert answer.status_code == 404
    with pytest.raises(HttpError) as e:
        jobs_api(svc).get(name=f"{PARENT}/jobs/nope").execute()
    assert error_of(e.value)["status"] == "NOT_FOUND"
