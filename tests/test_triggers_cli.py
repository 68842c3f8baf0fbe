"""`submitter triggers list` and `submitter triggers test RULE OBJECT_NAME` (issue 15): offline, with the same checks
as the function (the rules of samples/triggers.yaml, and broken ones)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from submitter_cli import main as cli

from conftest import REPO

SAMPLE = str(REPO / "samples" / "triggers.yaml")


@pytest.fixture(autouse=True)
def no_deployment(monkeypatch):
    """No SUBMITTER_* settings: the CLI uses the local stack's names (as `submitter validate` does)."""
    import os

    for key in [k for k in os.environ if k.startswith("SUBMITTER_")]:
        monkeypatch.delenv(key)


def run(*args):
    return CliRunner().invoke(cli, ["triggers", *args])


def test_list_shows_each_rule_checked():
    res = run("list", "--rules", SAMPLE)
    assert res.exit_code == 0, res.output
    assert "2 rules can fire; data buckets: drop-data" in res.output
    assert "csv-folders" in res.output and "batch=marker (_SUCCESS)" in res.output and "overlap=queue" in res.output


def test_list_marks_a_broken_rule_with_every_reason_and_exits_1(tmp_path):
    broken = tmp_path / "triggers.yaml"
    broken.write_text((REPO / "samples" / "triggers.yaml").read_text().replace("scaleTier: BASIC", "scaleTier: HUGE",
                                                                               1))
    res = run("list", "--rules", str(broken))
    assert res.exit_code == 1
    assert "csv-folders              BROKEN (never fires)" in res.output
    assert "rules[0].job.trainingInput.scaleTier" in res.output and "quiet-csv" in res.output
    as_json = json.loads(run("list", "--rules", str(broken), "--json").output)
    assert [r["valid"] for r in as_json["rules"]] == [True, False]


def test_list_without_rules_says_so():
    res = run("list")
    assert res.exit_code == 0 and "no trigger rules" in res.output


def test_test_shows_the_job_a_marker_would_submit():
    res = run("test", "csv-folders", "incoming-data/2024-06-10/_SUCCESS", "--rules", SAMPLE, "--generation", "42",
              "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["role"] == "marker" and out["valid"]
    assert out["jobId"].startswith("csv_folders_incoming_data_2024_06_10_42_")
    assert out["job"]["trainingInput"]["args"][:2] == ["--data", "gs://drop-data/incoming-data/2024-06-10/"]
    assert out["job"]["labels"]["submitter-trigger"] == "csv-folders"


def test_test_of_a_data_object_names_the_batch_it_joins_and_of_an_unmatched_object_says_why():
    data = run("test", "quiet-csv", "quiet-data/a/1.csv", "--rules", SAMPLE)
    assert data.exit_code == 0 and "joins the folder's window" in data.output and "gs://drop-data/quiet-data/a/" in \
        data.output
    other = run("test", "csv-folders", "incoming-data/a/_temporary.csv", "--rules", SAMPLE)
    assert other.exit_code == 1 and "is not matched" in other.output
    unknown = run("test", "nope", "x", "--rules", SAMPLE)
    assert unknown.exit_code == 2 and "csv-folders, quiet-csv" in unknown.output


def test_test_keeps_a_crafted_folder_name_a_string_and_refuses_control_characters():
    folder = 'incoming-data/x": 1, masterType: huge, y: "{a: [1'
    out = json.loads(run("test", "csv-folders", f"{folder}/_SUCCESS", "--rules", SAMPLE, "--json").output)
    assert out["valid"], out["violations"]
    assert out["job"]["trainingInput"]["args"][1] == f"gs://drop-data/{folder}/"
    assert "masterType" not in out["job"]["trainingInput"] and "y" not in out["job"]
    res = run("test", "csv-folders", "incoming-data/d\n  masterType: huge/_SUCCESS", "--rules", SAMPLE)
    assert res.exit_code == 1 and "control characters" in res.output
