"""`make demo [BACKEND=vertex]` and `make demo-data`: the two ways in, end to end on the local stack.

`make demo` (the main job): brings the stack up (or reuses the running one), builds the sample trainer's
sdist, drops it with `samples/job.yaml` into the drop bucket, prints each state
message as it arrives on a subscription of its own, and when the job
SUCCEEDED reads the metrics back from the outputs bucket. `--backend vertex` (make demo BACKEND=vertex)
runs the function on the Vertex AI backend against the local training service's customJobs subset; the
printed lines are the same.

`make demo-data` (`--data`, data-triggered training): uploads the sdist where `samples/triggers.yaml` says the
rule's package is, drops three CSV files and then a `_SUCCESS` marker into a new folder under `incoming-data/` of
the data bucket, prints a line per state of the job the rule `csv-folders` starts, and when it SUCCEEDED shows
from its metrics that it trained on exactly those files.

Exit 0 on SUCCEEDED; 1 with a clear message otherwise.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

from .stack import REPO, Stack, StackConfig, StackError

TIMEOUT_S = 300


def sample_csv(seed: int, rows: int = 60) -> bytes:
    """A CSV the sample trainer learns from (`--data`): four features in [0, 1) and the label 1 when x1 + x2 >
    x3 + x4, with a header row; the same seed gives the same bytes."""
    rng = random.Random(seed)
    lines = ["x1,x2,x3,x4,label"]
    for _ in range(rows):
        x = [round(rng.random(), 4) for _ in range(4)]
        lines.append(",".join(str(v) for v in x) + f",{int(x[0] + x[1] > x[2] + x[3])}")
    return ("\n".join(lines) + "\n").encode()


def build_sdist(project_dir: Path, out_dir: Path) -> Path:
    """Build an sdist of `project_dir` into `out_dir` with `python -m build` (no network: --no-isolation)."""
    result = subprocess.run([sys.executable, "-m", "build", "--sdist", "--no-isolation", "--outdir", str(out_dir),
                             str(project_dir)], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"building the sdist of {project_dir} failed:\n{result.stderr[-2000:]}")
    return next(out_dir.glob("*.tar.gz"))


def run_drop(env: dict[str, str], package: Path, job_yaml: bytes, folder: str, timeout_s: float = TIMEOUT_S,
             out=print) -> tuple[str | None, list[dict]]:
    """Drop `package` + `job_yaml` into `folder` and follow its events until a final one.

    Returns:
        (final state or None on timeout, every event received for the drop).
    """
    os.environ["PUBSUB_EMULATOR_HOST"] = env["PUBSUB_EMULATOR_HOST"]
    os.environ["STORAGE_EMULATOR_HOST"] = env["STORAGE_EMULATOR_HOST"]
    from google.cloud import storage

    from submitter_cli.dropper import upload_drop
    from submitter_cli.follow import EventFollower, is_final

    client = storage.Client(project=env["PROJECT"])
    received: list[dict] = []
    with EventFollower(env["TOPIC"], "demo") as follower:
        location = upload_drop(client, env["BUCKET"], folder, [package], job_yaml)
        out(f"dropped {package.name} and job.yaml into {location.uri} (job.yaml generation {location.spec_generation})")
        for event in follower.events(timeout_s=timeout_s):
            data = event["data"]
            if data.get("drop", {}).get("folder") != folder:
                continue
            received.append(event)
            print_event(data, out)
            if is_final(event):
                return data["state"], received
    return None, received


DATA_RULE = "csv-folders"  # samples/triggers.yaml: a marker rule on gs://drop-data/incoming-data/*/*.csv
DATA_PACKAGE = "packages/trainer-0.1.0.tar.gz"  # where that rule's packages entry points


def print_event(data: dict, out=print) -> None:
    """One progress line per state (and the reason and message of a refusal or failure)."""
    line = f"{data.get('time', '')}  {data['jobId']}  {data['state']}"
    if data.get("reason"):
        line += f"  reason={data['reason']}"
    out(line)
    if data.get("errorMessage") or data.get("message"):
        out("    " + (data.get("errorMessage") or data.get("message")).replace("\n", "\n    "))


def run_data(env: dict[str, str], package: Path, folder: str, files: dict[str, bytes], marker: str = "_SUCCESS",
             timeout_s: float = TIMEOUT_S, out=print) -> tuple[str | None, list[dict]]:
    """Upload the rule's package, then `files` and the marker into `folder` of the data bucket, and follow the
    events of the batch until a final one.

    Returns:
        (final state or None on timeout, every event received for the batch).
    """
    os.environ["PUBSUB_EMULATOR_HOST"] = env["PUBSUB_EMULATOR_HOST"]
    os.environ["STORAGE_EMULATOR_HOST"] = env["STORAGE_EMULATOR_HOST"]
    from google.cloud import storage

    from submitter_cli.follow import EventFollower, is_final

    bucket = storage.Client(project=env["PROJECT"]).bucket(env["DATA_BUCKET"])
    bucket.blob(DATA_PACKAGE).upload_from_filename(str(package))
    out(f"uploaded the trainer to gs://{bucket.name}/{DATA_PACKAGE} (the rule's package)")
    received: list[dict] = []
    with EventFollower(env["TOPIC"], "demo-data") as follower:
        for name, data in files.items():
            bucket.blob(f"{folder}/{name}").upload_from_string(data, content_type="text/csv")
            out(f"wrote gs://{bucket.name}/{folder}/{name}")
        if marker:
            bucket.blob(f"{folder}/{marker}").upload_from_string(b"")
            out(f"wrote gs://{bucket.name}/{folder}/{marker} (the folder is complete)")
        for event in follower.events(timeout_s=timeout_s):
            data = event["data"]
            if (data.get("trigger") or {}).get("folder") != folder:
                continue
            received.append(event)
            print_event(data, out)
            if is_final(event):
                return data["state"], received
    return None, received


def read_metrics(env: dict[str, str], job_dir: str) -> dict:
    """metrics.json from the job's gs:// jobDir."""
    from google.cloud import storage

    bucket, _, prefix = job_dir.removeprefix("gs://").partition("/")
    blob = storage.Client(project=env["PROJECT"]).bucket(bucket).blob(f"{prefix.rstrip('/')}/metrics.json")
    return json.loads(blob.download_as_bytes())


def start_local_stack(backend: str) -> tuple[Stack, dict[str, str]]:
    """The local stack with `backend` ("ml_v1" or "vertex"): the running one when it serves that backend, else
    (re)started; says which on stdout. Returns the Stack and its env (stack.env's values). Raises StackError."""
    stack = Stack(StackConfig(backend=backend))
    already = stack.running()
    if already and not stack.serves_config(already["env"]):
        print(f"restarting the local stack with backend {backend} (make down stops it) ...")
    elif already:
        print(f"using the running local stack (backend {backend})")
    else:
        print(f"starting the local stack with backend {backend} (make down stops it) ...")
    return stack, stack.start()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the sample drop (or, with --data, a data-triggered batch) "
                                     "end to end on the local stack.")
    parser.add_argument("--backend", choices=["ml_v1", "vertex"], default="ml_v1",
                        help="the function's training backend (make demo BACKEND=vertex)")
    parser.add_argument("--data", action="store_true",
                        help="data-triggered training: CSV files and a _SUCCESS marker into the data bucket")
    args = parser.parse_args(argv)
    backend = args.backend
    try:
        stack, env = start_local_stack(backend)
    except StackError as exc:
        print(f"demo: the local stack did not start: {exc}", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        try:
            package = build_sdist(REPO / "samples" / "trainer", Path(tmp))
        except RuntimeError as exc:
            print(f"demo: {exc}", file=sys.stderr)
            return 1
        stamp = f"{dt.datetime.now(dt.UTC):%Y%m%d-%H%M%S}"
        if args.data:
            folder = f"incoming-data/{stamp}"
            files = {f"part-{i:05d}.csv": sample_csv(i) for i in range(3)}
            state, events = run_data(env, package, folder, files)
        else:
            folder = f"{env['DROP_PREFIX']}demo-{stamp}"
            state, events = run_drop(env, package, (REPO / "samples" / "job.yaml").read_bytes(), folder)
    if state is None:
        print(f"demo: no final state within {TIMEOUT_S}s; see the logs in {stack.root / 'logs'}", file=sys.stderr)
        return 1
    if state != "SUCCEEDED":
        print(f"demo: the job ended {state}; see the message above and `{stack.root / 'logs'}`", file=sys.stderr)
        return 1
    job_dir = events[-1]["data"]["jobDir"]
    try:
        metrics = read_metrics(env, job_dir)
    except Exception as exc:  # any read failure is reported, not a traceback
        print(f"demo: the job SUCCEEDED but {job_dir}/metrics.json could not be read: {exc}", file=sys.stderr)
        return 1
    print(f"\nmetrics ({job_dir.rstrip('/')}/metrics.json):")
    for key, value in metrics.items():
        print(f"  {key}: {value}")
    if args.data:
        print(f"\nthe job trained on gs://{env['DATA_BUCKET']}/{folder}/: {', '.join(metrics.get('data_files', []))}")
    print(f"model: {job_dir.rstrip('/')}/model.joblib")
    print("\nthe local stack is still running: `source .local/stack.env` to use it, `make down` to stop it")
    return 0


if __name__ == "__main__":
    sys.exit(main())
