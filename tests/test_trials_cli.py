"""`submitter trials JOB_ID`: the study as a table (best first) while it runs and after, `--json`, `--plot` (a real
PNG written with matplotlib), on the in-memory ml v1 API behind the real adapter; and `submitter watch` printing
trial events."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from test_contract import TUNING_YAML, api_trial
from test_watch_cli import FakeFollower

from submitter.trial_events import TrialEvent, encode_trial
from submitter_cli import main
from submitter_cli.watch import run_watch

from conftest import World

ENV = {"SUBMITTER_PROJECT": "demo-project", "SUBMITTER_DROP_BUCKET": "drop-bucket",
       "SUBMITTER_OUTPUT_BUCKET": "drop-outputs", "SUBMITTER_STATE_BUCKET": "drop-state",
       "SUBMITTER_TOPIC": "training-job-events", "SUBMITTER_DROP_PREFIX": "incoming/"}


@pytest.fixture
def tuning(monkeypatch):
    import os

    import submitter.backends

    for name in [n for n in os.environ if n.startswith("SUBMITTER_")]:
        monkeypatch.delenv(name)
    world = World()
    monkeypatch.setattr(submitter.backends, "build_backend", lambda settings, transport=None: world.backend)
    job_id = world.drop("incoming/tune", spec=TUNING_YAML).job_id
    return world, job_id


def running_study(world, job_id):
    world.api.set_state(job_id, "RUNNING", trainingOutput={"isHyperparameterTuningJob": True, "trials": [
        api_trial("2", "SUCCEEDED", 0.97, 9), api_trial("1", "SUCCEEDED", 0.91, 4), api_trial("3", "FAILED", None, 7),
        api_trial("4", "RUNNING", None, 11)]})


def test_the_table_lists_trials_best_first_while_the_study_runs(tuning):
    world, job_id = tuning
    running_study(world, job_id)
    result = CliRunner().invoke(main, ["trials", job_id], env=ENV)
    assert result.exit_code == 0, result.output
    head, header, *rows = result.output.splitlines()
    assert head.startswith(f"{job_id}  RUNNING  MAXIMIZE accuracy  4 of 4 trials, 2 succeeded, 1 failed; best: trial 2")
    assert header.split() == ["#", "trial", "state", "accuracy", "step", "max-depth"]
    assert [r.split()[:4] for r in rows] == [["1", "2", "SUCCEEDED", "0.97"], ["2", "1", "SUCCEEDED", "0.91"],
                                           ["-", "3", "FAILED", "-"], ["-", "4", "RUNNING", "-"]]
    assert rows[0].split()[-1] == "9"


def test_json_gives_the_summary_and_the_trials_best_first(tuning):
    world, job_id = tuning
    running_study(world, job_id)
    result = CliRunner().invoke(main, ["trials", job_id, "--json"], env=ENV)
    data = json.loads(result.output)
    assert data["tuning"]["bestTrial"]["trialId"] == "2" and [t["trialId"] for t in data["trials"]] == [
        "2", "1", "3", "4"]


def test_plot_writes_a_png_of_the_objective_per_trial_and_against_each_parameter(tuning, tmp_path):
    world, job_id = tuning
    running_study(world, job_id)
    out = tmp_path / "plots" / "study.png"
    result = CliRunner().invoke(main, ["trials", job_id, "--plot", str(out)], env=ENV)
    assert result.exit_code == 0, result.output
    assert f"wrote {out}" in result.output
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert width > height  # two panels side by side: per trial, and against max-depth


def test_a_job_that_is_not_a_study_or_not_found_exits_1(tuning):
    world, _ = tuning
    plain = world.drop("incoming/plain").job_id
    result = CliRunner().invoke(main, ["trials", plain], env=ENV)
    assert result.exit_code == 1 and "not a hyperparameter tuning job" in result.output
    missing = CliRunner().invoke(main, ["trials", "no_such_job"], env=ENV)
    assert missing.exit_code == 1 and "not found" in missing.output


def test_watch_prints_each_trial_once_and_the_best_trial_with_success(tuning):
    world, job_id = tuning
    running_study(world, job_id)
    world.reconciler.tick()
    world.api.set_state(job_id, "SUCCEEDED", trainingOutput={"trials": [
        api_trial("2", "SUCCEEDED", 0.97, 9), api_trial("1", "SUCCEEDED", 0.91, 4), api_trial("3", "FAILED")]})
    world.reconciler.tick()
    events = [{"attributes": dict(m.attributes), "data": json.loads(m.data), "messageId": str(i)}
              for i, m in enumerate(world.publisher.messages)]
    events = events[1:] + events[2:3]  # the current state comes from the API; one trial delivered twice
    world.api.set_state(job_id, "RUNNING")
    lines, notes = [], []
    code = run_watch(world.settings, world.backend, lambda: FakeFollower([], events), job_id, False, None,
                     echo=lines.append, note=notes.append, ledger_factory=lambda: world.ledger)
    text = "\n".join(lines)
    assert code == 0 and not notes
    assert text.count("trial 2 SUCCEEDED  accuracy 0.97 at step 10  --max-depth=9") == 1
    assert "trial 3 FAILED  no metric" in text
    assert "best trial: 2 (accuracy 0.97): --max-depth=9" in text
    assert text.index("trial 1 SUCCEEDED") < text.index("SUCCEEDED\n")


def test_trial_events_render_as_json_lines_with_their_ce_id(tuning):
    from submitter.model import JobState, Measurement, Study, Trial
    from submitter_cli.watch import render_trial

    from conftest import NOW

    trial = Trial("5", JobState.SUCCEEDED, {"lr": "0.1"}, final=Measurement(3, 0.5), stopped_early=True)
    message = encode_trial(TrialEvent("run_5", trial, Study("MAXIMIZE", "m", (trial,)), JobState.RUNNING,
                                      {"drop": {"bucket": "b", "folder": "f", "object": "f/job.yaml",
                                                "generation": "1"}}, NOW),
                           source="//drop-submitter/projects/p/buckets/b")
    event = {"attributes": dict(message.attributes), "data": json.loads(message.data)}
    assert json.loads(render_trial(event, True))["ceId"] == "run_5/trial/5"
    assert "trial 5 SUCCEEDED (stopped early)  m 0.5 at step 3  --lr=0.1" in render_trial(event, False)
