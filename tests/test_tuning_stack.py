"""The sample tuning drop end to end on the real local stack (Pub/Sub emulator, GCS emulator, the local training
service running real trials of the sample trainer, functions-framework, relay, scheduler), checked as a consumer
sees it: every trial arrives once as a trialCompleted event that honours its contract, the trial count and
parallelism limits hold, the SUCCEEDED event names the best trial, and its metric equals the best value in
trainingOutput and the accuracy in the best trial's own metrics.json. `make demo-tuning` runs the same checks
(`submitter_local.demo_tuning.check`)."""

from __future__ import annotations

import pytest
import requests
import yaml
from test_contract import validate_message, validate_trial_message

from submitter_local.demo import read_metrics
from submitter_local.demo_tuning import JOB_YAML, check, follow, most_at_once

from conftest import running_stack

pytestmark = [pytest.mark.stack, pytest.mark.usefixtures("runtime_required")]


@pytest.fixture(scope="module")
def tuned(tmp_path_factory, sample_package):
    """The sample tuning drop run to its final state once: (env, final state, events, printed lines)."""
    with running_stack(tmp_path_factory.mktemp("stack"), min_state_seconds=0.5, reconcile_interval_s=0.5) as (s, env):
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
    assert check(events, spec, log, best_metrics) == []
    hp = spec["trainingInput"]["hyperparameters"]
    assert 1 <= most_at_once(log) <= hp["maxParallelTrials"]
    assert final["tuning"]["completedTrialCount"] == hp["maxTrials"] == len(final["trainingOutput"]["trials"])
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
