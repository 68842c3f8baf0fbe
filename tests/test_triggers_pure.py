"""Issue 15, pure parts (functions/submitter/triggers.py): rules as loaded, object matching, substitution safety,
batch identities, quiet windows and the overlap gate. No I/O."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest
import yaml

from submitter import naming
from submitter.triggers import (
    MAX_QUEUE,
    Batch,
    BatchMode,
    FolderRecord,
    Gate,
    Joined,
    Late,
    ListedBatch,
    ObjectRole,
    Overlap,
    RuleState,
    Seen,
    TemplateError,
    Window,
    gate,
    glob_regex,
    instantiate,
    join_window,
    load_rules,
    marker_data,
    next_queued,
    object_batch,
    restrict,
    substitute,
    substitute_text,
    window_batch,
)

T0 = dt.datetime(2024, 6, 10, 12, 0, tzinfo=dt.UTC)
TEMPLATE = """
    job:
      trainingInput:
        scaleTier: BASIC
        pythonModule: trainer.task
        args: ["--data", "gs://${bucket}/${folder}/", "--object", "${object}"]
"""


def rules(*bodies: str) -> str:
    """A rules file with one rule per body (YAML lines of one rule, without the leading dash)."""
    out = ["rules:"]
    for body in bodies:
        lines = body.strip("\n").splitlines()
        indent = len(lines[0]) - len(lines[0].lstrip())
        out.append("  - " + lines[0][indent:])
        out += ["    " + line[indent:] for line in lines[1:]]
    return "\n".join(out) + "\n"


def rule(body: str = "", template: str = TEMPLATE, **kw):
    text = rules(f"""
    name: {kw.get('name', 'r1')}
    bucket: data-bucket
    {body or 'match: "incoming/*/*.csv"'}
    packages: [gs://artifacts/trainer-0.1.tar.gz]
    """ + template)
    loaded = load_rules(text, "triggers.yaml")
    assert not loaded.broken, loaded.broken
    return loaded.rules[0]


# -- matching ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("pattern, name, matches", [
    ("incoming/*/*.csv", "incoming/a/x.csv", True),
    ("incoming/*/*.csv", "incoming/a/b/x.csv", False),  # * never crosses a slash
    ("incoming/*/*.csv", "incoming/a/x.csv.tmp", False),
    ("data/**/*.csv", "data/x.csv", True),  # ** is zero or more whole segments
    ("data/**/*.csv", "data/2024/06/10/x.csv", True),
    ("data/**", "data/a/b", True),
    ("logs/day-??/[!x]*.json", "logs/day-07/a.json", True),
    ("logs/day-??/[!x]*.json", "logs/day-07/x.json", False),
    ("a+b (1)/*.csv", "a+b (1)/x.csv", True),  # everything else is literal, names are raw
    ("a%20b/*.csv", "a b/x.csv", False),  # never URL-decoded
])
def test_globs(pattern, name, matches):
    assert bool(glob_regex(pattern).fullmatch(name)) is matches


def test_roles_hidden_files_are_never_data_and_markers_only_in_watched_folders():
    marker = rule('match: "incoming/*/*.csv"\n    batch: {mode: marker}')
    assert marker.role("incoming/a/x.csv") is ObjectRole.DATA
    assert marker.role("incoming/a/_SUCCESS") is ObjectRole.MARKER
    assert marker.role("incoming/a/b/_SUCCESS") is None  # a folder the glob does not watch
    assert marker.role("other/a/_SUCCESS") is None
    assert marker.role("incoming/a/_x.csv") is None and marker.role("incoming/a/.x.csv") is None
    per_object = rule('prefix: "raw/"')
    assert per_object.role("raw/x") is ObjectRole.DATA and per_object.role("raw/_SUCCESS") is None
    assert per_object.role("raw/a/.crc") is None and per_object.role("cooked/x") is None
    deep = rule('match: "data/**"\n    batch: {mode: marker, marker: DONE}')
    assert deep.role("data/2024/06/DONE") is ObjectRole.MARKER and deep.role("data/DONE") is ObjectRole.MARKER


# -- rules as loaded --------------------------------------------------------------------------------------------
def test_a_valid_rule_loads_with_its_settings():
    r = rule('match: "q/*/*"\n    batch: {mode: quiet, quiet_seconds: 30}\n    overlap: queue')
    assert (r.name, r.bucket, r.mode, r.quiet_s, r.overlap) == ("r1", "data-bucket", BatchMode.QUIET, 30.0,
                                                                 Overlap.QUEUE)
    assert r.packages == ("gs://artifacts/trainer-0.1.tar.gz",) and r.literal_prefix == "q/"


@pytest.mark.parametrize("body, field, words", [
    ('match: "x/*"\n    color: blue', "color", "unknown key"),
    ('match: "x/*"\n    batch: {mode: hourly}', "batch.mode", "per_object, marker, quiet"),
    ('match: "x/*"\n    batch: {mode: quiet}', "batch.quiet_seconds", "needs quiet_seconds"),
    ('match: "x/*"\n    batch: {mode: per_object, quiet_seconds: 5}', "batch.quiet_seconds", "only for mode: quiet"),
    ('match: "x/*"\n    overlap: sometimes', "overlap", "parallel, skip, queue"),
    ('match: "x/*"\n    prefix: "x/"', "match", "exactly one"),
    ('match: "x/[abc"', "match", "unterminated"),
    ('match: "gs://b/x/*"', "match", None),
])
def test_a_malformed_rule_is_broken_with_the_field_and_the_fix(body, field, words):
    text = rules(f"""
    name: bad
    bucket: data-bucket
    {body}
    packages: [gs://artifacts/t.tar.gz]
    """ + TEMPLATE)
    if field == "match" and words is None:  # gs:// in a glob: a literal the bucket's names never hold; allowed
        assert load_rules(text, "triggers.yaml").rules
        return
    loaded = load_rules(text, "triggers.yaml")
    assert not loaded.rules
    [(digest, violations)] = loaded.broken.values()
    assert any(v.field.endswith(field) and words in v.message for v in violations), violations
    assert all(v.reason == "RULE_INVALID" for v in violations)


@pytest.mark.parametrize("template, words", [
    ('\n    job:\n      trainingInput: {args: ["${colour}"]}\n', "unknown substitution ${colour}"),
    ('\n    job:\n      trainingInput: {args: ["${bucket"]}\n', "unterminated"),
    ('\n    job:\n      labels: {"${rule}": x}\n      trainingInput: {}\n', "values only"),
    ('\n    job:\n      jobId: fixed\n      trainingInput: {}\n', "remove jobId"),
    ('\n    job: [not, a, job]\n', "the job template"),
])
def test_a_template_with_a_bad_substitution_is_broken(template, words):
    text = rules("\n    name: bad\n    bucket: data-bucket\n    match: 'x/*'" + template)
    loaded = load_rules(text, "triggers.yaml")
    assert not loaded.rules and words in str(loaded.broken["bad"][1]), loaded.broken


def test_names_must_be_unique_and_other_rules_still_load():
    text = rules(*(f"\n    name: {n}\n    bucket: data-bucket\n    match: '{m}/*'" + TEMPLATE
                   for n, m in (("a", "x"), ("a", "y"), ("b", "z"))))
    loaded = load_rules(text, "triggers.yaml")
    assert [r.name for r in loaded.rules] == ["a", "b"] and "used twice" in str(loaded.broken["rules[1]"])


@pytest.mark.parametrize("text", ["rules: {a: 1}\n", "- name: x\n", "rules: [\n", "other: 1\n"])
def test_a_file_that_is_not_a_rules_file_is_a_configuration_error(text):
    with pytest.raises(ValueError):
        load_rules(text, "triggers.yaml")


def test_an_empty_file_has_no_rules_and_aliases_are_refused():
    assert load_rules("", "t.yaml").rules == () and load_rules("rules: []\n", "t.yaml").rules == ()
    with pytest.raises(ValueError, match="aliases"):
        load_rules("rules:\n  - &a {name: x}\n  - *a\n", "t.yaml")


def test_rules_on_a_bucket_no_trigger_delivers_or_the_submitter_owns_are_broken():
    text = rules(*(f"\n    name: {n}\n    bucket: {b}\n    match: 'x/*'" + TEMPLATE
                   for n, b in (("a", "data-bucket"), ("b", "other-bucket"), ("c", "drop-state"))))
    restricted = restrict(load_rules(text, "t.yaml"), ("data-bucket", "drop-state"), {"drop-state": "is the state "
                                                                                      "bucket"})
    assert [r.name for r in restricted.rules] == ["a"]
    assert "not a data bucket" in str(restricted.broken["b"]) and "state bucket" in str(restricted.broken["c"])


# -- substitution -----------------------------------------------------------------------------------------------
VALUES = {"bucket": "data-bucket", "object": "o", "generation": "7", "folder": "f", "date": "2024-06-10",
          "batch_id": "r1_f_7_abcdef12", "rule": "r1"}


def test_substitution_is_one_pass_and_dollar_dollar_is_a_dollar():
    assert substitute_text("gs://${bucket}/${folder}/ costs $$5 ($x)", VALUES) == "gs://data-bucket/f/ costs $5 ($x)"
    assert substitute_text("${object}", {**VALUES, "object": "${folder}"}) == "${folder}"  # never read again
    with pytest.raises(TemplateError, match="unknown substitution"):
        substitute_text("${nope}", VALUES)


@pytest.mark.parametrize("name", ['a": x\n  masterType: huge', "a\r\nmasterType: huge", "a\x00b", "a\x1b[31m"])
def test_a_value_with_control_characters_is_refused_not_substituted(name):
    with pytest.raises(TemplateError, match="control characters"):
        substitute({"trainingInput": {"args": ["${object}"]}}, {**VALUES, "object": name})


@pytest.mark.parametrize("name", ['a" masterType: huge', "x: {masterType: huge}", "- masterType: huge",
                                  "'; masterType: huge #", "{{masterType}}", "&a *a !!python/object", "ü/日本.csv"])
def test_an_object_name_that_looks_like_yaml_stays_one_plain_string_value(name):
    r = rule()
    batch = object_batch(r, f"incoming/f/{name}", 7, T0)
    job = instantiate(r, batch).job
    ti = job["trainingInput"]
    assert ti["args"] == ["--data", f"gs://data-bucket/{batch.folder}/", "--object", f"incoming/f/{name}"]
    assert set(ti) == {"scaleTier", "pythonModule", "args"} and "masterType" not in yaml.safe_dump(ti).split(":")[0]
    assert r.template.job["trainingInput"]["args"][1] == "gs://${bucket}/${folder}/"  # the template is untouched


def test_only_string_values_are_substituted():
    job = {"trainingInput": {"workerCount": 3, "enableWebAccess": False, "args": ["${generation}"]},
           "labels": {"day": "${date}"}}
    assert substitute(job, VALUES) == {"trainingInput": {"workerCount": 3, "enableWebAccess": False, "args": ["7"]},
                                       "labels": {"day": "2024-06-10"}}


# -- batch identities -------------------------------------------------------------------------------------------
def test_batch_ids_are_deterministic_valid_and_distinct():
    r = rule()
    a = object_batch(r, "incoming/a-b/x.csv", 1718000000000001, T0)
    b = object_batch(r, "incoming/a_b/x.csv", 1718000000000001, T0)
    assert a.batch_id == object_batch(r, "incoming/a-b/x.csv", 1718000000000001, T0 + dt.timedelta(hours=1)).batch_id
    assert a.batch_id != b.batch_id and naming.is_valid_job_id(a.batch_id) and naming.is_valid_job_id(b.batch_id)
    assert a.batch_id.startswith("r1_incoming_a_b_x_csv_1718000000000001_")
    long = object_batch(r, "incoming/" + "ラ" * 400 + "/x.csv", 5, T0)
    assert naming.is_valid_job_id(long.batch_id) and len(long.batch_id) <= 128
    assert Batch.from_doc(a.to_doc()) == a
    assert a.origin().fields["trigger"]["batchId"] == a.batch_id
    assert a.variables()["date"] == "2024-06-10"


# -- quiet windows ----------------------------------------------------------------------------------------------
def test_a_window_collects_objects_then_a_closed_window_sends_late_and_new_objects_apart():
    r = rule('match: "q/*/*"\n    batch: {mode: quiet, quiet_seconds: 30}')
    record = FolderRecord("r1", "data-bucket", "q/f")
    for i in range(3):
        decision = join_window(r, record, (f"q/f/{i}", i + 1), T0 + dt.timedelta(seconds=i))
        assert isinstance(decision, Joined) and decision.opened is (i == 0)
        record = decision.record
    assert isinstance(join_window(r, record, ("q/f/1", 2), T0), Seen)  # a redelivery
    window = record.open
    assert window.count == 3 and window.first == ("q/f/0", 1) and window.last == ("q/f/2", 3)
    batch = window_batch(r, "data-bucket", "q/f", window)
    assert batch.number == 1 and batch.object == "q/f/2" and batch.count == 3
    closed_at = T0 + dt.timedelta(seconds=40)
    record = dataclasses.replace(record, open=None).with_listed(
        ListedBatch(batch.batch_id, closed_at, 3, window.objects), T0 - dt.timedelta(days=1))
    assert join_window(r, record, ("q/f/1", 2), T0) == Seen(batch.batch_id)  # redelivered after the close
    assert join_window(r, record, ("q/f/x", 9), T0 + dt.timedelta(seconds=35)) == Late(batch.batch_id)
    after = join_window(r, record, ("q/f/y", 10), closed_at + dt.timedelta(seconds=1))
    assert isinstance(after, Joined) and after.opened and after.record.open.first == ("q/f/y", 10)


def test_a_folder_record_round_trips_and_forgets_old_batches():
    window = Window(("a", 1), ("b", 2), T0, T0, 2, (("a", 1), ("b", 2)))
    record = FolderRecord("r1", "data-bucket", "f", open=window, closing=dataclasses.replace(window, closed_at=T0))
    assert FolderRecord.from_doc(record.to_doc()) == record
    for i in range(15):
        record = record.with_listed(ListedBatch(f"b{i}", T0 + dt.timedelta(hours=i), 1, (("a", i),)),
                                    T0 + dt.timedelta(hours=3))
    assert [b.batch_id for b in record.recent] == [f"b{i}" for i in range(5, 15)]


def test_marker_data_waits_is_seen_or_is_late():
    ref = ("in/f/a.csv", 1)
    assert marker_data(None, ref).__class__.__name__ == "AwaitingMarker"
    record = FolderRecord("r1", "data-bucket", "in/f").with_listed(ListedBatch("b1", T0, 1, (ref,)), T0)
    assert marker_data(record, ref) == Seen("b1")
    assert marker_data(record, ("in/f/b.csv", 2)) == Late("b1")
    assert marker_data(record, ("in/f/a.csv", 3)) == Late("b1")  # a new generation of a listed object


# -- overlap ----------------------------------------------------------------------------------------------------
def batches(n):
    r = rule()
    return [object_batch(r, f"incoming/f/{i}.csv", i + 1, T0) for i in range(n)]


def test_skip_starts_when_idle_and_refuses_while_the_previous_job_runs():
    a, b = batches(2)
    decision, state = gate(RuleState(), a, Overlap.SKIP, False, T0)
    assert decision is Gate.START and state.active == a
    assert gate(state, a, Overlap.SKIP, True, T0)[0] is Gate.START  # the active batch itself (a redelivery)
    assert gate(state, b, Overlap.SKIP, True, T0) == (Gate.SKIP, state)
    assert gate(state, b, Overlap.SKIP, False, T0)[1].active == b


def test_queue_keeps_order_never_twice_and_is_bounded():
    a, b, c = batches(3)
    _, state = gate(RuleState(), a, Overlap.QUEUE, False, T0)
    decision, state = gate(state, b, Overlap.QUEUE, True, T0)
    assert decision is Gate.QUEUE
    assert gate(state, b, Overlap.QUEUE, True, T0)[0] is Gate.QUEUED
    decision, state = gate(state, c, Overlap.QUEUE, False, T0)  # idle, but b waits first
    assert decision is Gate.QUEUE and [x.batch_id for x in state.queue] == [b.batch_id, c.batch_id]
    head, state = next_queued(state, T0)
    assert head == b and state.active == b and state.queue == (c,)
    assert RuleState.from_doc(state.to_doc()) == state
    r = rule()
    full = RuleState(active=a, active_since=T0,
                     queue=tuple(object_batch(r, f"other/{i}.csv", i + 1, T0) for i in range(MAX_QUEUE)))
    assert gate(full, c, Overlap.QUEUE, True, T0)[0] is Gate.SKIP
