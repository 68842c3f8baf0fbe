"""infra/stage_source.py: what Terraform deploys as the function source, and its content hash."""

from __future__ import annotations

import importlib.util
import shutil
import zipfile

import pytest
from infra_hcl import INFRA, REPO

spec = importlib.util.spec_from_file_location("stage_source", INFRA / "stage_source.py")
stage_source = importlib.util.module_from_spec(spec)
spec.loader.exec_module(stage_source)


@pytest.fixture
def staged(tmp_path):
    archive = stage_source.stage(tmp_path / "function-source", INFRA / "policy.yaml")
    return tmp_path / "function-source", archive


def test_requirements_sit_beside_main_and_stay_the_top_level_file(staged):
    out, archive = staged
    assert (out / "main.py").is_file()
    assert (out / "requirements.txt").read_bytes() == (REPO / "requirements.txt").read_bytes()
    names = zipfile.ZipFile(archive).namelist()
    assert "main.py" in names and "requirements.txt" in names and "policy.yaml" in names
    assert not (REPO / "functions" / "requirements.txt").exists(), "the top-level file is the one source of truth"


def test_archive_holds_the_package_without_bytecode(staged):
    _, archive = staged
    names = zipfile.ZipFile(archive).namelist()
    expected = {p.relative_to(REPO / "functions").as_posix() for p in (REPO / "functions" / "submitter").rglob("*.py")
                if "__pycache__" not in p.parts}
    assert expected <= set(names)
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    assert names == sorted(names)


def test_policy_is_staged_where_the_settings_point(staged):
    out, _ = staged
    assert (out / "policy.yaml").read_bytes() == (INFRA / "policy.yaml").read_bytes()
    settings_tf = (INFRA / "settings.tf").read_text()
    assert 'policy_path_in_function = "/workspace/policy.yaml"' in settings_tf


def test_same_content_same_bytes(tmp_path, staged):
    _, first = staged
    second = stage_source.stage(tmp_path / "again" / "function-source", INFRA / "policy.yaml")
    assert first.read_bytes() == second.read_bytes()
    assert stage_source.sha256(first) == stage_source.sha256(second)


def test_changed_content_changes_the_hash(tmp_path, staged):
    _, first = staged
    functions = tmp_path / "functions"
    shutil.copytree(REPO / "functions", functions, ignore=shutil.ignore_patterns("__pycache__"))
    (functions / "main.py").write_text((functions / "main.py").read_text() + "\n# changed\n")
    changed = stage_source.stage(tmp_path / "changed" / "function-source", INFRA / "policy.yaml", functions=functions)
    assert stage_source.sha256(changed) != stage_source.sha256(first)


def test_bad_policy_is_refused(tmp_path, capsys):
    bad = tmp_path / "policy.yaml"
    bad.write_text("max_replicas: many\n")
    assert stage_source.main(["--policy", str(bad), "--out", str(tmp_path / "out")]) == 1
    assert "max_replicas" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_trigger_rules_are_staged_where_the_settings_point(staged):
    out, archive = staged
    assert (out / "triggers.yaml").read_bytes() == (INFRA / "triggers.yaml").read_bytes()
    assert "triggers.yaml" in zipfile.ZipFile(archive).namelist()
    settings_tf = (INFRA / "settings.tf").read_text()
    assert 'triggers_path_in_function = "/workspace/triggers.yaml"' in settings_tf
    stage_source.check_triggers(INFRA / "triggers.yaml", INFRA / "policy.yaml")  # the shipped file loads


GOOD_RULE = """rules:
  - name: nightly
    bucket: vision-data
    match: "incoming/*/*.csv"
    batch: {mode: marker}
    packages: [gs://vision-data/packages/trainer-1.0.tar.gz]
    job:
      trainingInput: {pythonModule: trainer.task, args: ["--data", "gs://${bucket}/${folder}/"]}
"""


@pytest.mark.parametrize("rules, words", [
    ("rules: {nightly: 1}\n", "rules must be a list"),
    (GOOD_RULE.replace("mode: marker", "mode: hourly"), "batch.mode"),
    (GOOD_RULE.replace("${folder}", "${folderr}"), "unknown substitution ${folderr}"),
    (GOOD_RULE.replace("pythonModule: trainer.task", "pythonModule: trainer.task, scaleTier: PREMIUM_1"),
     "scaleTier"),  # the staged policy does not allow PREMIUM_1
])
def test_an_invalid_trigger_rule_is_refused_before_staging(tmp_path, capsys, rules, words):
    path = tmp_path / "triggers.yaml"
    path.write_text(rules)
    assert stage_source.main(["--triggers", str(path), "--out", str(tmp_path / "out")]) == 1
    assert words in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    path.write_text(GOOD_RULE)
    assert stage_source.main(["--triggers", str(path), "--out", str(tmp_path / "out")]) == 0
