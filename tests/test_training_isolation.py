"""Jobs kept apart and trainers kept away from the service (issue 10 point 5, issue 13 point 4).

Each test runs real trainers on the local training service, driven through the ml v1 API:
what a trainer can see (environment, processes, files, its user), what leaves the service in
errorMessage (scrubbed, escaped, cause first), two jobs writing the same /tmp path at once,
and a cancel that ends a child which left the job's process group.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
from google.auth.credentials import AnonymousCredentials
from test_training_service import (  # noqa: F401  (fixtures are used by name)
    BUCKET,
    PARENT,
    PROJECT,
    RUNTIME_PYTHON,
    TERMINAL,
    envs_dir,
    job_body,
    job_pids,
    jobs_api,
    logs,
    make_sdist,
    make_service,
    wait_for,
    wait_for_log,
    wait_gone,
)

from submitter_local import storage_emulator
from submitter_local.training import gcs_access, replica_env

pytestmark = [pytest.mark.stack, pytest.mark.usefixtures("runtime_required")]

SNOOP = r'''
"""Prints everything it can see: its environment, every process (cmdline, and environ where
readable), its user, and whether it can read the path given as --probe."""
import argparse, json, os
p = argparse.ArgumentParser(); p.add_argument("--probe", default=""); p.add_argument("--job-dir")
args = p.parse_args()
print("ENV " + json.dumps(dict(os.environ), sort_keys=True))
for pid in sorted((d for d in os.listdir("/proc") if d.isdigit()), key=int):
    try:
        cmd = open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        continue
    try:
        env = open(f"/proc/{pid}/environ", "rb").read().replace(b"\0", b" ").decode(errors="replace")
    except OSError as e:
        env = f"<{e.strerror}>"
    print(f"PROC {pid} {cmd} || {env}")
print("UID " + str(os.getuid()))
print("PROBE " + json.dumps({"path": args.probe, "exists": os.path.exists(args.probe) if args.probe else None}))
print("TMP " + json.dumps(sorted(os.listdir("/tmp"))))
'''

LEAK = r'''
"""Fails after printing what it read from the file given as argv[1] (a stray config file holding
one of the service's settings) and terminal escape sequences."""
import sys
endpoint = open(sys.argv[1]).read().strip()
print("connecting to " + endpoint, file=sys.stderr)
print("\x1b[31mred alert\x1b[0m \x07bell", file=sys.stderr)
raise ConnectionError("cannot reach " + endpoint)
'''

MODELFILE = r'''
"""Writes its job id to the hard-coded /tmp/modelfile and /tmp/hypertune/output.metrics (as
Google's samples do), waits until the other job has written too, then reads both back and
uploads the model to its jobDir."""
import argparse, json, os, time
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage
p = argparse.ArgumentParser(); p.add_argument("--rendezvous", required=True); p.add_argument("--peers", type=int)
p.add_argument("--job-dir", required=True)
args = p.parse_args()
me = os.environ["CLOUD_ML_JOB_ID"]
with open("/tmp/modelfile", "w") as f:
    f.write("model of " + me)
os.makedirs("/tmp/hypertune", exist_ok=True)
with open("/tmp/hypertune/output.metrics", "w") as f:
    f.write(json.dumps({"job": me}) + "\n")
open(os.path.join(args.rendezvous, me), "w").close()
end = time.time() + 60
while len(os.listdir(args.rendezvous)) < args.peers and time.time() < end:
    time.sleep(0.05)
model = open("/tmp/modelfile").read()
metrics = open("/tmp/hypertune/output.metrics").read()
print("READ " + json.dumps({"model": model, "metrics": metrics, "tmpdir": os.environ.get("TMPDIR")}))
bucket, _, prefix = args.job_dir[len("gs://"):].partition("/")
client = storage.Client(project=os.environ["GOOGLE_CLOUD_PROJECT"], credentials=AnonymousCredentials())
client.bucket(bucket).blob(prefix + "/modelfile").upload_from_string(model)
'''

DETACH = r'''
"""Starts a child in its own session (it leaves the process group), then sleeps."""
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"], start_new_session=True)
print(f"DETACHED {child.pid}", flush=True)
time.sleep(300)
'''


@pytest.fixture(scope="module")
def gcs(tmp_path_factory):
    """A storage emulator with bucket `drops` holding the isolation trainers."""
    server = storage_emulator.start("127.0.0.1", 0)
    patched = pytest.MonkeyPatch()
    patched.setenv("STORAGE_EMULATOR_HOST", server.url)
    from google.cloud import storage

    bucket = storage.Client(project=PROJECT, credentials=AnonymousCredentials()).create_bucket(BUCKET)
    path = make_sdist(tmp_path_factory.mktemp("sdists"), "trainer",
                      {"snoop": SNOOP, "leak": LEAK, "modelfile": MODELFILE, "detach": DETACH},
                      requires=("google-cloud-storage",))
    bucket.blob(f"packages/{path.name}").upload_from_filename(str(path))
    yield f"gs://{BUCKET}/packages"
    server.stop()
    patched.undo()


@pytest.fixture
def our_settings(monkeypatch):
    """Settings of the kind the local stack gives the service's process: none may reach a trainer."""
    values = {
        "SUBMITTER_STATE_BUCKET": "secret-state-bucket-41",
        "SUBMITTER_TOPIC": "projects/demo-project/topics/secret-topic-41",
        "SUBMITTER_TRAINING_API_ENDPOINT": "http://127.0.0.1:59141",
        "PUBSUB_EMULATOR_HOST": "127.0.0.1:59142",
        "FUNCTION_URL": "http://127.0.0.1:59143",
        "TRAINING_API_ENDPOINT": "http://127.0.0.1:59141",
        "GOOGLE_APPLICATION_CREDENTIALS": "/secret/credentials-41.json",
        "SOME_API_TOKEN": "tok-0123456789-secret",
    }
    for k, v in values.items():
        monkeypatch.setenv(k, v)
    return values


def test_a_trainer_sees_nothing_of_the_service(make_service, gcs, our_settings):
    svc = make_service()
    iso = svc.stats()["isolation"]
    jobs = jobs_api(svc)
    jobs.create(parent=PARENT, body=job_body("snoop", gcs, module="trainer.snoop",
                                             args=["--probe", str(svc.config.data_dir / "jobs.sqlite3")])).execute()
    job, _ = wait_for(jobs, "snoop", TERMINAL, timeout=120)
    assert job["state"] == "SUCCEEDED", job
    text = logs(svc, "snoop")
    trainer_output = "\n".join(ln for ln in text.splitlines() if not ln.startswith(("[local-training]",)))
    env = json.loads(re.search(r"^ENV (.*)$", text, re.M).group(1))

    # the environment is the allowlist: the cloud's variables, the storage emulator, ordinary ones
    assert not [k for k in env if k.startswith("SUBMITTER_")]
    assert set(env) <= {"TF_CONFIG", "CLOUD_ML_JOB_ID", "GOOGLE_CLOUD_PROJECT", "STORAGE_EMULATOR_HOST", "PATH",
                        "HOME", "TMPDIR", "USER", "LOGNAME", "LANG", "LC_ALL", "PYTHONUNBUFFERED",
                        *replica_env.PASS_THROUGH, *gcs_access.VARIABLES}, env
    assert env["STORAGE_EMULATOR_HOST"] == os.environ["STORAGE_EMULATOR_HOST"]  # gs:// data is allowed
    for name, value in our_settings.items():  # nothing of ours in anything it printed
        assert value not in trainer_output, name
    assert svc.url not in trainer_output and f":{svc.port}" not in trainer_output

    procs = re.findall(r"^PROC (\d+) (.*)$", text, re.M)
    if iso["namespaces"]:
        # its own process table: itself (and the sandbox's init), nothing of the service's
        assert len(procs) <= 3, procs
        others = [cmd for _, cmd in procs if "sandbox_init.py" not in cmd and "trainer.snoop" not in cmd]
        assert others == [], others
        probe = json.loads(re.search(r"^PROBE (.*)$", text, re.M).group(1))
        assert probe["exists"] is False, "the job store must be hidden from trainers"
        # a /tmp of its own: empty but for the way to its own files when those live under /tmp (the
        # data dir in tests; the runtime venv in a clone under /tmp)
        on_the_way = {Path(p).relative_to("/tmp").parts[0] for p in (svc.config.data_dir, RUNTIME_PYTHON)
                      if str(p).startswith("/tmp/")}
        assert set(json.loads(re.search(r"^TMP (.*)$", text, re.M).group(1))) <= on_the_way
    if iso["user"]:
        assert re.search(r"^UID (\d+)$", text, re.M).group(1) != "0"
    else:  # the host could not give an unprivileged account: the log says why
        assert any(n for n in iso["notes"]), iso


def test_error_message_is_scrubbed_escaped_and_cause_first(make_service, gcs, our_settings, tmp_path):
    secret = our_settings["SUBMITTER_TRAINING_API_ENDPOINT"]
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "stray.cfg").write_text(secret + "\n")
    os.chmod(shared, 0o755)
    svc = make_service(shared_paths=(shared,))
    jobs = jobs_api(svc)
    jobs.create(parent=PARENT, body=job_body("leaky", gcs, module="trainer.leak",
                                             args=[str(shared / "stray.cfg"), "x y"])).execute()
    job, _ = wait_for(jobs, "leaky", TERMINAL, timeout=120)
    assert job["state"] == "FAILED"
    msg = job["errorMessage"]
    # (two of our settings hold this value: either name may be shown)
    assert re.match(r"ConnectionError: cannot reach \[redacted:(SUBMITTER_)?TRAINING_API_ENDPOINT\]\n"
                    r"The replica master 0 exited with a non-zero status of 1\. ", msg), msg
    assert secret not in msg and "59141" not in msg
    assert "\x1b" not in msg and "\x07" not in msg
    assert "\\x1b[31mred alert\\x1b[0m \\x07bell" in msg  # shown, not interpreted
    # the shell-quoted command line in the log
    assert f"Running command: python -m trainer.leak {shared / 'stray.cfg'} 'x y'" in logs(svc, "leaky")


def test_two_jobs_writing_the_same_tmp_path_keep_their_own(make_service, gcs, tmp_path):
    rendezvous = tmp_path / "rendezvous"
    rendezvous.mkdir()
    os.chmod(rendezvous, 0o777)
    svc = make_service(max_running=2, shared_paths=(rendezvous,))
    if not svc.stats()["isolation"]["namespaces"]:
        pytest.skip("this host gives replicas no private /tmp (documented): " + "; ".join(
            svc.stats()["isolation"]["notes"]))
    jobs = jobs_api(svc)
    for job_id in ("model_a", "model_b"):
        jobs.create(parent=PARENT, body=job_body(job_id, gcs, module="trainer.modelfile",
                                                 args=["--rendezvous", str(rendezvous), "--peers", "2"],
                                                 jobDir=f"gs://{BUCKET}/out/{job_id}")).execute()
    from google.cloud import storage

    bucket = storage.Client(project=PROJECT, credentials=AnonymousCredentials()).bucket(BUCKET)
    for job_id in ("model_a", "model_b"):
        job, _ = wait_for(jobs, job_id, TERMINAL, timeout=120)
        assert job["state"] == "SUCCEEDED", job
        read = json.loads(re.search(r"^READ (.*)$", logs(svc, job_id), re.M).group(1))
        assert read["model"] == f"model of {job_id}"
        assert json.loads(read["metrics"]) == {"job": job_id}
        assert bucket.blob(f"out/{job_id}/modelfile").download_as_text() == f"model of {job_id}"
    assert sorted(os.listdir(rendezvous)) == ["model_a", "model_b"]  # they did run at the same time


@pytest.mark.parametrize("isolation", ["auto", "off"])
def test_cancel_ends_a_child_in_its_own_session(make_service, gcs, isolation):
    svc = make_service(isolation=isolation, kill_grace_seconds=0.5)
    jobs = jobs_api(svc)
    job_id = f"detach_{isolation}"
    jobs.create(parent=PARENT, body=job_body(job_id, gcs, module="trainer.detach")).execute()
    wait_for(jobs, job_id, {"RUNNING"}, timeout=120)
    wait_for_log(svc, job_id, r"DETACHED \d+")
    pids = job_pids(job_id, expect=2)  # the trainer and its detached child
    sessions = {int(open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()[3]) for p in pids}
    assert len(sessions) == 2, "the child runs in a session of its own"
    jobs.cancel(name=f"{PARENT}/jobs/{job_id}", body={}).execute()
    assert wait_for(jobs, job_id, TERMINAL, timeout=30)[0]["state"] == "CANCELLED"
    wait_gone(pids)


def test_an_exposed_path_reached_through_a_symlink_in_a_masked_directory_stays_visible(tmp_path):
    """A runtime linked into the stack's directory (`.local/runtime -> /shared/runtime`, as worktrees share one) is
    still reachable at the linked path when that directory is masked: the job environments name it that way."""
    from submitter_local.training import sandbox

    shared, stack = tmp_path / "shared-runtime", tmp_path / "stack"
    (shared / "lib").mkdir(parents=True)
    (shared / "lib" / "marker.txt").write_text("runtime library\n")
    stack.mkdir()
    (stack / "runtime").symlink_to(shared)
    work, tmp, home = stack / "work", tmp_path / "tmp", tmp_path / "home"
    for d in (tmp_path, shared, shared / "lib", stack):
        os.chmod(d, 0o755)
    os.chmod(shared / "lib" / "marker.txt", 0o644)
    iso = sandbox.HostIsolation.detect(RUNTIME_PYTHON, "drop-trainer", [])
    if not iso.namespaces:
        pytest.skip("no mount namespaces here: nothing is masked")
    sandbox.prepare_dirs(iso, work, tmp, home)
    linked = str(stack / "runtime" / "lib" / "marker.txt")
    spec = sandbox.ReplicaSpec(argv=[str(RUNTIME_PYTHON), "-c", f"print(open({linked!r}).read(), end='')"],
                               env={"PATH": "/usr/bin:/bin"}, cwd=str(work), tmp=str(tmp),
                               exposes=[str(stack / "runtime"), str(work)], masks=[str(stack)],
                               run_dir=tmp_path / "run", name="probe")
    proc = sandbox.launch(iso, spec, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = proc.communicate(timeout=60)
    assert sandbox.read_status(spec.status_file, proc.returncode) == 0, err.decode()
    assert out.decode() == "runtime library\n"
