"""cloudbuild.yaml: parses, every step has an id and a valid waitFor, the pipeline has the promised stages."""

from __future__ import annotations

import re

import pytest
import yaml
from infra_hcl import REPO, load


@pytest.fixture(scope="module")
def build():
    return yaml.safe_load((REPO / "cloudbuild.yaml").read_text())


def test_every_step_has_a_unique_id(build):
    ids = [step.get("id") for step in build["steps"]]
    assert all(ids), "every step needs an id"
    assert len(ids) == len(set(ids))


def test_wait_for_names_earlier_steps(build):
    seen: set[str] = set()
    for step in build["steps"]:
        for dep in step.get("waitFor", []):
            assert dep == "-" or dep in seen, f"{step['id']} waits for {dep}, which is not an earlier step"
        seen.add(step["id"])
    assert all("waitFor" in step for step in build["steps"][1:]), "explicit waitFor on every step after the first"


def test_pipeline_stages_and_their_order(build):
    steps = {s["id"]: s for s in build["steps"]}
    for stage in ("install", "lint", "test", "stage", "tf-init", "tf-plan", "tf-apply", "smoke"):
        assert stage in steps, f"missing step {stage}"

    def needs(step_id: str) -> set[str]:
        """Every step `step_id` transitively waits for."""
        out: set[str] = set()
        todo = [d for d in steps[step_id].get("waitFor", []) if d != "-"]
        while todo:
            dep = todo.pop()
            if dep not in out:
                out.add(dep)
                todo += [d for d in steps[dep].get("waitFor", []) if d != "-"]
        return out

    assert {"lint", "test", "stage", "tf-init"} <= needs("tf-plan"), "nothing is planned before checks and tests"
    assert needs("tf-apply") >= {"tf-plan"}
    assert "tf-apply" in needs("smoke")
    assert "plan" in steps["tf-plan"]["args"] and "tfplan" in " ".join(steps["tf-apply"]["args"])


def test_tests_deselect_stack_tests_and_say_why(build):
    test = next(s for s in build["steps"] if s["id"] == "test")
    assert "-m 'not stack'" in " ".join(test["args"])
    pyproject = (REPO / "pyproject.toml").read_text()
    assert '"stack:' in pyproject, "the stack marker the build deselects is declared"
    header = (REPO / "cloudbuild.yaml").read_text().split("substitutions:")[0]
    assert "not stack" in header and "Java" in header


def test_smoke_waits_for_submitted_on_the_status_document(build):
    smoke = next(s for s in build["steps"] if s["id"] == "smoke")
    script = smoke["args"][-1]
    assert "samples/job.yaml" in script and "SUBMITTED" in script
    assert "status_prefix" in script and "state_bucket" in script
    assert {"status_prefix", "state_bucket", "drop_bucket", "drop_prefix"} <= set(load().outputs)


def test_substitutions_are_declared_and_used(build):
    text = (REPO / "cloudbuild.yaml").read_text()
    used = set(re.findall(r"\$\{?(_[A-Z_]+)", text))
    declared = set(build["substitutions"])
    assert used == declared, f"used but not declared: {used - declared}; declared but unused: {declared - used}"


def test_build_runs_with_the_logging_option_a_user_service_account_needs(build):
    assert build["options"]["logging"] == "CLOUD_LOGGING_ONLY"


def test_configure_step_sets_every_variable_without_default():
    configure = (REPO / "cloudbuild.yaml").read_text()
    required = {name for name, body in load().variables.items() if "default" not in body}
    for name in required:
        assert f'"{name}"' in configure, f"cloudbuild.yaml does not set the required variable {name}"


def test_the_guide_names_every_value_a_user_must_supply_and_nothing_else():
    """infra/README.md "Values you supply" == the Terraform variables without default (+ optional REGION and
    NOTIFY_EMAILS), and `make deploy` passes each of them on."""
    guide = (REPO / "infra" / "README.md").read_text()
    table = guide.split("## Values you supply", 1)[1].split("\n## ", 1)[0]
    rows = dict(re.findall(r"^\| `([A-Z_]+)` \|.*\| (yes|no)[^|]*\|$", table, flags=re.M))
    assert rows == {"PROJECT": "yes", "UPLOADERS": "yes", "REGION": "no", "NOTIFY_EMAILS": "no"}
    make_to_tf = {"PROJECT": "project_id", "UPLOADERS": "uploaders", "REGION": "region",
                  "NOTIFY_EMAILS": "notification_emails"}
    variables = load().variables
    required = {name for name, body in variables.items() if "default" not in body}
    assert {make_to_tf[k] for k, v in rows.items() if v == "yes"} == required
    makefile = (REPO / "Makefile").read_text()
    deploy = makefile.split("\ndeploy:", 1)[1].split("\n\n", 1)[0]
    for make_var in ("REGION", "UPLOADERS", "NOTIFY_EMAILS"):
        assert f"$({make_var})" in deploy, f"make deploy does not pass {make_var}"
    assert "$(PROJECT)" in deploy
