"""The sample tuning drop end to end on the real local stack (Pub/Sub emulator, GCS emulator, the local training
service running real trials of the sample trainer, functions-framework, relay, scheduler), on each backend: ml v1
(a tuning Job) and Vertex AI (a HyperparameterTuningJob of the local Vertex API). Checked as a consumer sees it:
every trial arrives once as a trialCompleted event that honours its contract, the trial count and parallelism
limits hold, the SUCCEEDED event names the best trial, and its metric equals the best value among the job
resource's own trials and the accuracy in the best trial's own metrics.json. `make demo-tuning [BACKEND=vertex]`
runs the same checks (`submitter_local.demo_tuning.check`)."""

from __future__ import annotations

import pytest
import requests
import yaml
from test_contract import validate_message, validate_trial_message

from submitter_local.demo import read_metrics
from submitter_local.demo_tuning import JOB_YAML, check, follow, job_trials, most_at_once

from conftest import running_stack

pytestmark = [pytest.mark.stack, pytest.mark.usefixtures("runtime_required")]


@pytest.fixture(scope="module", params=["ml_v1", "vertex"])
def tuned(request, tmp_path_factory, sample_package):
    """The sample tuning drop run to its final state once per backend: (env, final state, events, printed lines,
    the job's log)."""
    with running_stack(tmp_path_factory.mktemp("stack"), min_state_seconds=0.5, reconcile_interval_s=0.5,
                       backend=request.param) as (s, env):
        lines: list[str] = []
        state, events = follow(env, sample_package, JOB_YAML.read_bytes(), "incoming/tuning-e2e", timeout_s=300,
                               out=lines.append)
        job_id = events[-1]["data"]["jobId"] if events else None
        log = requests.get(f"{env['TRAINING_API_ENDPOINT']}/local/v1/projects/{env['PROJECT']}/jobs/{job_id}/logs",
                           timeout=30).text if job_id else ""
        yield env, state, events, lines, log


def test_the_sample_tuning_drop_succeeds_and_names_its_best_trial(tuned):
    env, state, events, lines, log = tuned
    assert state == "SUCCEEDED", lines
    spec = yaml.safe_load(JOB_YAML.read_bytes())
    final = events[-1]["data"]
    best = final["tuning"]["bestTrial"]
    best_metrics = read_metrics(env, f"{final['jobDir'].rstrip('/')}/{best['trialId']}")
    listed = job_trials(env, final)  # the job resource's own trials, read from the training service
    assert check(events, spec, log, best_metrics, listed) == []
    hp = spec["trainingInput"]["hyperparameters"]
    assert final["backend"] == env["SUBMITTER_BACKEND"]
    assert 1 <= most_at_once(log) <= hp["maxParallelTrials"]
    assert final["tuning"]["completedTrialCount"] == hp["maxTrials"] == len(listed)
    assert all(t["state"] == "SUCCEEDED" for t in listed)
    assert best["objectiveValue"] == max(t["objectiveValue"] for t in listed)
    assert best_metrics["hyperparameters"]["criterion"] == best["hyperparameters"]["criterion"]
    assert str(best_metrics["hyperparameters"]["n_estimators"]) == best["hyperparameters"]["n-estimators"]


def test_every_message_honours_its_contract_and_trials_precede_the_terminal_event(tuned):
    env, state, events, lines, log = tuned
    trial_ids = []
    for event in events:
        attributes, data = event["attributes"], event["data"]
        if attributes["ce-type"] == "dev.drop-submitter.job.v1.trialCompleted":
            validate_trial_message(attributes, data)
            trial_ids.append(data["trialId"])
        else:
            validate_message(attributes, data)
    assert sorted(trial_ids, key=int) == [str(i) for i in range(1, 7)]  # each once (the follower dedupes ce-ids)
    states = [e["data"]["state"] for e in events if "state" in e["data"]]
    assert states[-1] == "SUCCEEDED" and "RUNNING" in states
    assert events[-1]["data"]["state"] == "SUCCEEDED"  # no trial after the terminal event
