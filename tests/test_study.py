"""The local training service's tuning rules, pure (submitter_local.training.study): grid enumeration, scale types,
random search and the stand-in for Bayesian optimisation, cloudml-hypertune's metric file, the median early
stopping rule, the failed-trials rule, trainingOutput and resuming a study.
"""

from __future__ import annotations

import json
import math
import statistics

import pytest

from submitter_local.training.study import (
    DEFAULT_METRIC_TAG,
    Param,
    StudyError,
    StudySpec,
    Suggester,
    TrialRecord,
    check_resumable,
    failure_verdict,
    median_rule_stops,
    ranked,
    read_metric_file,
    training_output,
)


def spec(*params: dict, **hp) -> StudySpec:
    return StudySpec.from_training_input({"hyperparameters": {"goal": "MAXIMIZE", "params": list(params), **hp}})


INT = {"parameterName": "depth", "type": "INTEGER", "minValue": 2, "maxValue": 4}
CAT = {"parameterName": "criterion", "type": "CATEGORICAL", "categoricalValues": ["gini", "entropy"]}
DISC = {"parameterName": "rate", "type": "DISCRETE", "discreteValues": [0.5, 1, 4]}
DOUBLE = {"parameterName": "lr", "type": "DOUBLE", "minValue": 0.001, "maxValue": 0.1}


# -- the spec ---------------------------------------------------------------------------------------------------
def test_the_spec_takes_the_documented_defaults():
    s = StudySpec.from_training_input({"hyperparameters": {"params": [INT]}})
    assert (s.goal, s.metric_tag, s.max_trials, s.max_parallel, s.max_failed) == (
        "MAXIMIZE", "training/hptuning/metric", 1, 1, 0) and DEFAULT_METRIC_TAG == s.metric_tag
    assert s.algorithm == "ALGORITHM_UNSPECIFIED" and not s.early_stopping and s.resume_from is None


@pytest.mark.parametrize("hp, words", [
    ({"params": []}, "at least one parameter"),
    ({"params": [INT, INT]}, "unique"),
    ({"params": [{**DOUBLE, "minValue": 1, "maxValue": 0}]}, "minValue <= maxValue"),
    ({"params": [{**INT, "maxValue": 4.5}]}, "whole-number"),
    ({"params": [{**DOUBLE, "minValue": 0, "scaleType": "UNIT_LOG_SCALE"}]}, "strictly positive"),
    ({"params": [{"parameterName": "c", "type": "CATEGORICAL"}]}, "categoricalValues"),
    ({"params": [DOUBLE], "algorithm": "GRID_SEARCH"}, "GRID_SEARCH works only with"),
    ({"params": [INT], "goal": "UP"}, "MAXIMIZE or MINIMIZE"),
])
def test_a_spec_the_study_cannot_run_is_refused_with_the_reason(hp, words):
    with pytest.raises(StudyError, match=words):
        StudySpec.from_training_input({"hyperparameters": hp})


def test_trial_args_are_parameter_name_equals_value_in_the_params_order():
    s = spec(INT, CAT)
    assert s.args({"criterion": "gini", "depth": "3"}) == ["--depth=3", "--criterion=gini"]


# -- grid search ------------------------------------------------------------------------------------------------
def test_grid_search_enumerates_every_combination_first_parameter_slowest():
    s = spec(INT, CAT, DISC, algorithm="GRID_SEARCH", maxTrials=100)
    suggester = Suggester(s, "job")
    points = []
    while (values := suggester.suggest()) is not None:
        points.append((values["depth"], values["criterion"], values["rate"]))
    assert len(points) == 3 * 2 * 3 == len(set(points))
    assert points[:4] == [("2", "gini", "0.5"), ("2", "gini", "1"), ("2", "gini", "4"), ("2", "entropy", "0.5")]
    assert points[-1] == ("4", "entropy", "4")


def test_grid_search_skips_the_points_a_resumed_study_already_tried():
    s = spec(INT, algorithm="GRID_SEARCH")
    suggester = Suggester(s, "job", tried=[{"depth": "2"}, {"depth": "4"}])
    assert suggester.suggest() == {"depth": "3"} and suggester.suggest() is None


def test_discrete_values_keep_the_form_written_in_the_spec():
    p = Param.from_spec(DISC)
    assert [p.format(v) for v in p.grid()] == ["0.5", "1", "4"]


# -- scale types ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("scale, middle", [
    ("UNIT_LINEAR_SCALE", (1 + 100) / 2),
    ("NONE", (1 + 100) / 2),
    ("UNIT_LOG_SCALE", math.sqrt(1 * 100)),
    ("UNIT_REVERSE_LOG_SCALE", 1 + 100 - math.sqrt(1 * 100)),
])
def test_each_scale_maps_the_unit_interval_onto_the_range(scale, middle):
    p = Param.from_spec({"parameterName": "v", "type": "DOUBLE", "minValue": 1, "maxValue": 100, "scaleType": scale})
    assert p.from_unit(0.0) == pytest.approx(1) and p.from_unit(1.0) == pytest.approx(100)
    assert p.from_unit(0.5) == pytest.approx(middle)
    points = [p.from_unit(i / 100) for i in range(101)]
    assert points == sorted(points)  # monotonic
    for u in (0.1, 0.37, 0.9):
        assert p.to_unit(p.from_unit(u)) == pytest.approx(u)


def test_log_scales_spread_values_where_the_api_says():
    def draws(scale):
        s = spec({"parameterName": "v", "type": "DOUBLE", "minValue": 1, "maxValue": 1000, "scaleType": scale},
                 algorithm="RANDOM_SEARCH")
        suggester = Suggester(s, "seed")
        return [float(suggester.suggest()["v"]) for _ in range(400)]

    log, reverse, linear = draws("UNIT_LOG_SCALE"), draws("UNIT_REVERSE_LOG_SCALE"), draws("UNIT_LINEAR_SCALE")
    # log: as many values below sqrt(1 * 1000) ~ 31.6 as above; linear: most of them above
    assert 0.4 < sum(v < 31.6 for v in log) / 400 < 0.6
    assert sum(v < 31.6 for v in linear) / 400 < 0.1
    # reverse log: "values close to the top of the feasible space are spread out more": mirrored, dense near 1000
    assert 0.4 < sum(v > 1000 + 1 - 31.6 for v in reverse) / 400 < 0.6
    assert all(1 <= v <= 1000 for v in log + reverse + linear)


@pytest.mark.parametrize("scale", ["UNIT_LINEAR_SCALE", "UNIT_LOG_SCALE", "UNIT_REVERSE_LOG_SCALE"])
def test_integers_cover_their_whole_range_on_every_scale_endpoints_included(scale):
    p = Param.from_spec({"parameterName": "n", "type": "INTEGER", "minValue": 1, "maxValue": 5, "scaleType": scale})
    values = {p.from_unit(i / 1000) for i in range(1001)}
    assert values == {1, 2, 3, 4, 5} and p.format(3) == "3"


# -- random search and the stand-in -----------------------------------------------------------------------------
def test_random_search_is_deterministic_per_job_and_within_bounds():
    s = spec(DOUBLE, INT, CAT, algorithm="RANDOM_SEARCH", maxTrials=20)
    a = [Suggester(s, "projects/p/jobs/tune_1").suggest() for _ in range(1)]
    b = [Suggester(s, "projects/p/jobs/tune_1").suggest() for _ in range(1)]
    other = Suggester(s, "projects/p/jobs/tune_2").suggest()
    assert a == b and a[0] != other
    suggester = Suggester(s, "job")
    for _ in range(20):
        v = suggester.suggest()
        assert 0.001 <= float(v["lr"]) <= 0.1 and v["depth"] in {"2", "3", "4"} and v["criterion"] in CAT[
            "categoricalValues"]


def test_random_search_avoids_repeating_a_point_of_a_small_space_while_it_can():
    s = spec(INT, CAT, algorithm="RANDOM_SEARCH", maxTrials=6)
    suggester = Suggester(s, "job")
    points = {tuple(sorted(suggester.suggest().items())) for _ in range(6)}
    assert len(points) == 6  # all 3 x 2 points


def test_the_stand_in_explores_then_alternates_random_points_with_steps_around_the_best_trial():
    s = spec({"parameterName": "x", "type": "DOUBLE", "minValue": 0, "maxValue": 100}, maxTrials=40)
    suggester = Suggester(s, "job")
    scored = [({"x": "10.0"}, 0.1), ({"x": "90.0"}, 0.9)]
    points = [float(suggester.suggest(scored)["x"]) for _ in range(40)]
    exploit, explore = points[1::2], points[0::2]  # every other suggestion works near the best (x=90)
    assert statistics.median(abs(v - 90) for v in exploit) < 15
    assert statistics.median(abs(v - 90) for v in explore) > 15
    # fewer than max(2, maxParallelTrials) trials with a metric: exactly random search's points
    random_search = Suggester(spec({"parameterName": "x", "type": "DOUBLE", "minValue": 0, "maxValue": 100},
                                   algorithm="RANDOM_SEARCH"), "job")
    early = Suggester(s, "job")
    assert [early.suggest(scored[:1]) for _ in range(4)] == [random_search.suggest() for _ in range(4)]


# -- the metric file --------------------------------------------------------------------------------------------
def hypertune_lines(*entries) -> str:
    """Lines as cloudml-hypertune writes them (values and steps as strings)."""
    return "".join(json.dumps({"timestamp": t, "trial": "3", tag: str(v), "global_step": str(step),
                               "checkpoint_path": ""}, sort_keys=True) + "\n" for t, tag, v, step in entries)


def test_the_metric_file_yields_the_job_s_tag_in_time_order_and_names_other_tags():
    text = hypertune_lines((2.0, "accuracy", 0.8, 20), (1.0, "accuracy", 0.5, 10), (1.5, "loss", 0.3, 10))
    reading = read_metric_file(text + '{"timestamp": 3.0, "accur', "accuracy")  # a line being rewritten
    assert reading.measurements == ((10, 0.5), (20, 0.8)) and reading.other_tags == ("loss",)


def test_non_finite_and_unparsable_values_are_not_measurements():
    text = hypertune_lines((1.0, "m", "nan", 1), (2.0, "m", "inf", 2), (3.0, "m", "oops", 3), (4.0, "m", 1.5, 0))
    assert read_metric_file(text, "m").measurements == ((0, 1.5),)
    assert read_metric_file("", "m").measurements == ()


# -- early stopping ---------------------------------------------------------------------------------------------
def test_the_median_rule_stops_a_trial_strictly_worse_than_the_median_of_completed_running_averages():
    completed = [[(1, 0.8), (2, 0.9)], [(1, 0.6), (2, 0.7)], [(1, 0.2), (5, 0.9)]]
    # at step 1 the running averages are 0.8, 0.6, 0.2: median 0.6
    assert median_rule_stops("MAXIMIZE", [(1, 0.5)], completed)
    assert not median_rule_stops("MAXIMIZE", [(1, 0.6)], completed)  # equal is not strictly worse
    assert not median_rule_stops("MAXIMIZE", [(0, 0.1), (1, 0.7)], completed)  # its best counts
    # at step 2: averages 0.85, 0.65, 0.2: median 0.65
    assert median_rule_stops("MAXIMIZE", [(2, 0.64)], completed)
    assert median_rule_stops("MINIMIZE", [(1, 0.61)], completed) and not median_rule_stops(
        "MINIMIZE", [(1, 0.59)], completed)


def test_the_median_rule_needs_a_measurement_and_a_completed_trial_measured_by_then():
    assert not median_rule_stops("MAXIMIZE", [], [[(1, 0.9)]])
    assert not median_rule_stops("MAXIMIZE", [(1, 0.0)], [])
    assert not median_rule_stops("MAXIMIZE", [(1, 0.0)], [[(5, 0.9)]])  # nothing reported by step 1


# -- failed trials ----------------------------------------------------------------------------------------------
def test_max_failed_trials_fails_the_job_once_reached_whatever_succeeded():
    s = spec(INT, maxTrials=10, maxFailedTrials=2)
    assert failure_verdict(s, failed=1, succeeded=0) is None
    assert "maxFailedTrials (2)" in failure_verdict(s, failed=2, succeeded=5)


def test_without_max_failed_trials_the_local_rule_fails_early_failures_only():
    s = spec(INT, maxTrials=10)
    assert failure_verdict(s, failed=2, succeeded=0) is None
    assert "none succeeded" in failure_verdict(s, failed=3, succeeded=0)
    assert failure_verdict(s, failed=7, succeeded=1) is None  # a study that found something goes on
    assert failure_verdict(spec(INT, maxTrials=2), failed=2, succeeded=0) is not None  # fewer trials than 3


# -- trainingOutput ---------------------------------------------------------------------------------------------
def test_training_output_lists_trials_best_first_by_goal_as_the_api_names_them():
    trials = [TrialRecord("1", {"depth": "2"}, "SUCCEEDED", "t0", "t1", [(0, 0.5)]),
              TrialRecord("2", {"depth": "3"}, "FAILED", "t0", "t2", [], message="boom"),
              TrialRecord("3", {"depth": "4"}, "SUCCEEDED", "t0", "t3", [(1, 0.7), (2, 0.9)], stopped_early=True),
              TrialRecord("4", {"depth": "5"}, "SUCCEEDED", "t0", "t4", [(0, 0.9)])]
    out = training_output(spec(INT), trials, 0.25)
    assert out["isHyperparameterTuningJob"] is True and out["completedTrialCount"] == "3"
    assert out["hyperparameterMetricTag"] == "training/hptuning/metric" and out["consumedMLUnits"] == 0.25
    assert [t["trialId"] for t in out["trials"]] == ["3", "4", "1", "2"]  # ties: the lower id first
    best = out["trials"][0]
    assert best["finalMetric"] == {"trainingStep": "2", "objectiveValue": 0.9} and best["isTrialStoppedEarly"]
    assert best["allMetrics"] == [{"trainingStep": "1", "objectiveValue": 0.7},
                                  {"trainingStep": "2", "objectiveValue": 0.9}]
    assert "isTrialStoppedEarly" not in out["trials"][1] and "finalMetric" not in out["trials"][3]
    assert [t.trial_id for t in ranked(spec(INT, goal="MINIMIZE"), trials)] == ["1", "3", "4", "2"]


def test_all_metrics_keep_the_last_hundred_as_cloudml_hypertune_does():
    trial = TrialRecord("1", {}, "SUCCEEDED", measurements=[(i, float(i)) for i in range(250)])
    assert len(trial.output()["allMetrics"]) == 100 and trial.output()["allMetrics"][0]["trainingStep"] == "150"


# -- resuming ---------------------------------------------------------------------------------------------------
def previous_job(state="SUCCEEDED", params=(INT,), goal="MAXIMIZE"):
    return {"jobId": "tune_1", "state": state,
            "trainingInput": {"hyperparameters": {"goal": goal, "params": list(params)}},
            "trainingOutput": {"trials": [
                {"trialId": "2", "hyperparameters": {"depth": "4"}, "state": "SUCCEEDED",
                 "finalMetric": {"trainingStep": "0", "objectiveValue": 0.9}},
                {"trialId": "1", "hyperparameters": {"depth": "2"}, "state": "FAILED"}]}}


def test_a_finished_study_with_the_same_parameters_resumes_with_its_trials():
    trials = check_resumable(spec(INT, resumePreviousJobId="tune_1"), previous_job(), "tune_1")
    assert [(t.trial_id, t.values, t.state, t.final) for t in trials] == [
        ("1", {"depth": "2"}, "FAILED", None), ("2", {"depth": "4"}, "SUCCEEDED", (0, 0.9))]


@pytest.mark.parametrize("previous, words", [
    (None, "there is no job"),
    ({"jobId": "x", "state": "SUCCEEDED", "trainingInput": {}}, "not a hyperparameter tuning job"),
    (previous_job(state="RUNNING"), "only a finished study"),
    (previous_job(params=(CAT,)), "same parameters"),
    (previous_job(goal="MINIMIZE"), "same goal"),
])
def test_resuming_anything_else_is_refused_with_the_reason(previous, words):
    with pytest.raises(StudyError, match=words):
        check_resumable(spec(INT, resumePreviousJobId="tune_1"), previous, "tune_1")
