"""`make demo-tuning`: the sample tuning drop end to end on the local stack (`make demo-tuning BACKEND=vertex`: on
the Vertex AI backend, where the same job.yaml becomes a HyperparameterTuningJob of the local Vertex API).

Brings the stack up with the backend asked for (or reuses the running one, restarting it for another backend),
builds the sample trainer's sdist (samples/trainer: it reports its test accuracy with cloudml-hypertune), drops
it with `samples/tuning/job.yaml` (RANDOM_SEARCH, 6 trials, 2 at a time) into the drop bucket, and prints, from a
subscription of its own, each job state and each trialCompleted event as it arrives. On SUCCEEDED it checks what a
consumer relies on and prints it:

- every trial ran: the trial events name `maxTrials` distinct trials and the job resource lists them all;
- the limits held: at most `maxParallelTrials` trials ran at once (the overlap of their start and end times is
  read from the training service's own notes in the job's log), no more than `maxTrials` in all;
- the SUCCEEDED event names the best trial, its hyperparameters and metric, and that metric equals the best value
  among the trials of the job resource itself (`job_trials`: ml v1 trainingOutput.trials, or the
  HyperparameterTuningJob's trials[], read from the training service) and the accuracy in the best trial's own
  `metrics.json` (`<jobDir>/<trialId>/metrics.json`);

then prints the study as `submitter trials` does, where the best model is, and how to plot the study. Exit 0 when
all of that holds; 1 with the reason otherwise. The stack stays up (`make down` stops it).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

import requests
import yaml

from .demo import build_sdist, read_metrics, start_local_stack
from .stack import REPO, StackError

TIMEOUT_S = 600
JOB_YAML = REPO / "samples" / "tuning" / "job.yaml"


def follow(env: dict[str, str], package: Path, job_yaml: bytes, folder: str, timeout_s: float = TIMEOUT_S,
           out=print) -> tuple[str | None, list[dict[str, Any]]]:
    """Drop `package` + `job_yaml` into `folder`; print and collect its state and trial events until a final one.

    Returns:
        (the final state or None on timeout, every event of the drop: {"attributes", "data", "messageId"}).
    """
    os.environ["PUBSUB_EMULATOR_HOST"] = env["PUBSUB_EMULATOR_HOST"]
    os.environ["STORAGE_EMULATOR_HOST"] = env["STORAGE_EMULATOR_HOST"]
    from google.cloud import storage

    from submitter_cli.dropper import upload_drop
    from submitter_cli.follow import EventFollower, is_final
    from submitter_cli.watch import TRIAL_EVENT_TYPE, event_entry, render, render_trial

    client = storage.Client(project=env["PROJECT"])
    received: list[dict[str, Any]] = []
    with EventFollower(env["TOPIC"], "demo-tuning") as follower:
        location = upload_drop(client, env["BUCKET"], folder, [package], job_yaml)
        out(f"dropped {package.name} and job.yaml into {location.uri} (job.yaml generation {location.spec_generation})")
        for event in follower.events(timeout_s=timeout_s):
            data = event["data"]
            if data.get("drop", {}).get("folder") != folder:
                continue
            received.append(event)
            if event["attributes"].get("ce-type") == TRIAL_EVENT_TYPE:
                out(render_trial(event, False))
                continue
            out(render(event_entry(event), False))
            if is_final(event):
                return data["state"], received
    return None, received


def most_at_once(job_log: str) -> int:
    """The most trials running at once, from the order of the training service's 'Trial N started' / 'Trial N
    ended' notes in the job's log."""
    running = peak = 0
    for line in job_log.splitlines():
        if re.search(r"\] Trial \d+ started", line):
            running += 1
            peak = max(peak, running)
        elif re.search(r"\] Trial \d+ ended", line):
            running -= 1
    return peak


def job_trials(env: dict[str, str], final: dict[str, Any]) -> list[dict[str, Any]]:
    """The trials of the job resource itself, read from the local training service by the final event's
    `resourceName` (ml v1 `projects/P/jobs/ID`: trainingOutput.trials; Vertex
    `projects/P/locations/L/hyperparameterTuningJobs/N`: trials[]), as [{"trialId", "state", "objectiveValue"
    (None without a final metric)}] in the resource's order."""
    name = final.get("resourceName") or f"projects/{env['PROJECT']}/jobs/{final['jobId']}"
    job = requests.get(f"{env['TRAINING_API_ENDPOINT']}/v1/{name}", timeout=30).json()
    if "/hyperparameterTuningJobs/" in name:
        return [{"trialId": t["id"], "state": t.get("state"),
                 "objectiveValue": (t.get("finalMeasurement") or {}).get("metrics", [{}])[0].get("value")}
                for t in job.get("trials") or []]
    return [{"trialId": t["trialId"], "state": t.get("state"),
             "objectiveValue": (t.get("finalMetric") or {}).get("objectiveValue")}
            for t in (job.get("trainingOutput") or {}).get("trials") or []]


def check(events: list[dict[str, Any]], spec: dict[str, Any], job_log: str, best_metrics: dict[str, Any] | None,
          listed: list[dict[str, Any]]) -> list[str]:
    """What must hold for a consumer of a finished tuning drop (module docstring); returns the failures (none: []).

    Args:
        events: every event of the drop, the final one last; spec: the job.yaml; job_log: the job's own log;
        best_metrics: the best trial's metrics.json; listed: the job resource's trials (`job_trials`).
    """
    hp = spec["trainingInput"]["hyperparameters"]
    trials = {e["data"]["trialId"]: e["data"] for e in events
              if e["attributes"].get("ce-type") == "dev.drop-submitter.job.v1.trialCompleted"}
    final = events[-1]["data"]
    best = (final.get("tuning") or {}).get("bestTrial")
    problems = []
    if final.get("state") != "SUCCEEDED":
        return [f"the job ended {final.get('state')}"]
    if len(trials) != hp["maxTrials"] or len(listed) != hp["maxTrials"]:
        problems.append(f"{len(trials)} trial events and {len(listed)} trials in the job resource; maxTrials is "
                        f"{hp['maxTrials']}")
    at_once = most_at_once(job_log)
    if not 1 <= at_once <= hp["maxParallelTrials"]:
        problems.append(f"{at_once} trials ran at once; maxParallelTrials is {hp['maxParallelTrials']}")
    if best is None:
        return [*problems, "the SUCCEEDED event names no best trial"]
    scored = [t for t in listed if t["objectiveValue"] is not None]
    pick = max if hp["goal"] == "MAXIMIZE" else min
    top = pick(scored, key=lambda t: t["objectiveValue"]) if scored else None
    if top is None or best["objectiveValue"] != top["objectiveValue"]:
        problems.append(f"the best trial's metric {best['objectiveValue']} is not the best value in the job resource "
                        f"({top and top['objectiveValue']}, trial {top and top['trialId']})")
    if best_metrics is None or best_metrics.get("accuracy") != best["objectiveValue"]:
        problems.append(f"the best trial's metrics.json says accuracy {best_metrics and best_metrics.get('accuracy')}, "
                        f"the event {best['objectiveValue']}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the sample tuning drop end to end on the local stack.")
    parser.add_argument("--backend", choices=["ml_v1", "vertex"], default="ml_v1",
                        help="the function's training backend (make demo-tuning BACKEND=vertex)")
    backend = parser.parse_args(argv).backend
    try:
        stack, env = start_local_stack(backend)
    except StackError as exc:
        print(f"demo-tuning: the local stack did not start: {exc}", file=sys.stderr)
        return 1
    job_yaml = JOB_YAML.read_bytes()
    spec = yaml.safe_load(job_yaml)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            package = build_sdist(REPO / "samples" / "trainer", Path(tmp))
        except RuntimeError as exc:
            print(f"demo-tuning: {exc}", file=sys.stderr)
            return 1
        folder = f"{env['DROP_PREFIX']}tuning-{dt.datetime.now(dt.UTC):%Y%m%d-%H%M%S}"
        state, events = follow(env, package, job_yaml, folder)
    if state is None:
        print(f"demo-tuning: no final state within {TIMEOUT_S}s; see the logs in {stack.root / 'logs'}",
              file=sys.stderr)
        return 1
    final = events[-1]["data"]
    job_id = final["jobId"]
    if state != "SUCCEEDED":
        print(f"demo-tuning: the job ended {state}; see the message above and `submitter logs {job_id}`",
              file=sys.stderr)
        return 1
    best = final["tuning"]["bestTrial"]
    job_dir = final["jobDir"].rstrip("/")
    try:
        best_metrics = read_metrics(env, f"{job_dir}/{best['trialId']}")
    except Exception as exc:  # any read failure is reported, not a traceback
        print(f"demo-tuning: {job_dir}/{best['trialId']}/metrics.json could not be read: {exc}", file=sys.stderr)
        best_metrics = None
    log = requests.get(f"{env['TRAINING_API_ENDPOINT']}/local/v1/projects/{env['PROJECT']}/jobs/{job_id}/logs",
                       timeout=30).text
    problems = check(events, spec, log, best_metrics, job_trials(env, final))
    print()
    for line in _table(env, job_id):
        print(line)
    print(f"\nbest trial {best['trialId']}: accuracy {best['objectiveValue']:g} with "
          + " ".join(f"--{k}={v}" for k, v in best["hyperparameters"].items()))
    print(f"its model: {job_dir}/{best['trialId']}/model.joblib")
    print(f"plot the study: source {stack.env_file} && submitter trials {job_id} --plot study.png")
    if problems:
        for problem in problems:
            print(f"demo-tuning: {problem}", file=sys.stderr)
        return 1
    hp = spec["trainingInput"]["hyperparameters"]
    print(f"\nchecked ({backend}): {hp['maxTrials']} trials ran, at most {most_at_once(log)} at once "
          f"(maxParallelTrials {hp['maxParallelTrials']}), the SUCCEEDED event's best trial has the best value in the "
          f"job resource ({final.get('resourceName')}) and in its own metrics.json")
    print("the local stack is still running: `make down` stops it")
    return 0


def _table(env: dict[str, str], job_id: str) -> list[str]:
    """The study as `submitter trials JOB_ID` prints it, through the deployment's backend."""
    from submitter.backends import build_backend
    from submitter.settings import Settings
    from submitter_cli.trials import table

    saved = dict(os.environ)
    os.environ.update({k: v for k, v in env.items() if k.startswith("SUBMITTER_")})
    try:
        backend = build_backend(Settings.from_env())
        status = backend.find(job_id)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return table(status) if status is not None and status.study is not None else [json.dumps(status)]


if __name__ == "__main__":
    sys.exit(main())
