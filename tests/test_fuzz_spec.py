"""Bad input never crashes: thousands of random, type-confused job specs go through the whole check
pipeline (schema, rules, policy) and through the drop handler; each ends in violations that name a field
path, or in exactly one verdict, never an exception (an exception would be a 500 and a retry storm)."""

from __future__ import annotations

import json
import random

import yaml

from submitter.policy import Policy
from submitter.spec import SpecDefaults as DropContext
from submitter.validation import check_text

from conftest import World

VALUES = [None, 0, -1, 1.5, True, "", "x", "{{a}}", "<bucket>", [], [1, "a", None], {}, {"a": 1}, {"type": "X"},
          [{"parameterName": 1}], "1800s", 10 ** 30, "CUSTOM", "n1-standard-8", "gs://b/p.tar.gz"]
FIELDS = ["jobId", "labels", "trainingInput", "etag", "pythonModule", "scaleTier", "masterType", "workerCount",
          "workerType", "masterConfig", "workerConfig", "args", "packageUris", "jobDir", "region", "runtimeVersion",
          "pythonVersion", "scheduling", "hyperparameters", "serviceAccount", "acceleratorConfig", "params",
          "diskConfig", "evaluatorCount", "parameterServerCount", "imageUri", "goal", "maxTrials", "count", "type",
          "maxWaitTime", "priority", "discreteValues", "minValue", "maxValue", "scaleType", "algorithm"]
CTX = DropContext(("gs://drop-bucket/incoming/r/p.tar.gz",), "gs://drop-outputs/x", "us-central1", "2.11", "3.7",
                  {"submitter": "drop"})


def random_value(rng: random.Random, depth: int = 0):
    if depth > 3 or rng.random() < 0.4:
        return rng.choice(VALUES)
    if rng.random() < 0.6:
        return {rng.choice(FIELDS): random_value(rng, depth + 1) for _ in range(rng.randint(1, 5))}
    return [random_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]


def random_specs(seed: int, n: int):
    rng = random.Random(seed)
    for _ in range(n):
        ti = random_value(rng, 1) if rng.random() < 0.3 else {
            rng.choice(FIELDS): random_value(rng, 2) for _ in range(rng.randint(1, 8))}
        doc = {"trainingInput": ti}
        if rng.random() < 0.3:
            doc["labels"] = random_value(rng, 2)
        if rng.random() < 0.2:
            doc["jobId"] = random_value(rng, 2)
        yield yaml.safe_dump(doc)


ROOTS = ("jobId", "labels", "trainingInput", "etag", "job.yaml")


def test_check_pipeline_never_raises_and_every_violation_names_a_field_path():
    invalid = 0
    for text in random_specs(seed=7, n=3000):
        result = check_text(text, "job.yaml", CTX, "j_1", Policy())
        for v in result.violations:
            shown = v.as_dict()
            assert shown["field"].startswith(ROOTS), shown  # a path in the Job resource, or the file
            assert shown["message"] and shown["reason"].isupper()
            json.dumps(shown)  # publishable as is
        assert result.valid == (not result.violations)
        invalid += not result.valid
    assert invalid > 2500  # the generator does produce broken specs: the properties above were exercised


def test_drop_handler_gives_every_random_spec_exactly_one_verdict():
    w = World()
    for i, text in enumerate(random_specs(seed=11, n=300)):
        before = len(w.publisher.messages)
        out = w.drop(f"incoming/fuzz-{i}", spec=text.encode())
        assert out.action in ("submitted", "rejected", "waiting", "submit_failed"), out
        published = w.publisher.messages[before:]
        if out.action == "waiting":  # it named a package of its folder that is not there
            assert published == []
        else:
            assert [m.attributes["state"] for m in published] == [out.action.upper()]
