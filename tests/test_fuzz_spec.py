"""Bad input never crashes: thousands of random, type-confused job specs go through the whole check
pipeline (schema, essentials, semantic rules, policy) and through the drop handler; each ends in a
list of violations or a verdict, never an exception (an exception would be a 500 and a retry storm)."""

from __future__ import annotations

import random

import yaml

from conftest import World
from submitter.policy import Policy
from submitter.spec import DropContext
from submitter.validation import check_text

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


def test_check_pipeline_never_raises_on_random_specs():
    for text in random_specs(seed=7, n=3000):
        result = check_text(text, "job.yaml", CTX, "j_1", Policy())
        assert isinstance(result.violations, list)


def test_drop_handler_never_raises_on_random_specs():
    w = World()
    for i, text in enumerate(random_specs(seed=11, n=300)):
        out = w.drop(f"incoming/fuzz-{i}", spec=text.encode())
        assert out.action in ("submitted", "rejected", "waiting", "submit_failed"), out
