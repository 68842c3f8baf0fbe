"""`submitter triggers list` and `submitter triggers test RULE OBJECT_NAME`: the deployment's data-trigger rules,
checked offline exactly as the function checks them (`trigger_handler.check_rules`: each template instantiated
through the same planner), and a dry run of what one object would start."""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
from typing import Any

import click

from submitter.clock import SystemClock
from submitter.planning import Planner, SpecInput
from submitter.reasons import Reason, Violation
from submitter.settings import ENV_PREFIX, LOCAL_DEFAULTS, Settings, SettingsError
from submitter.trigger_handler import batch_defaults, check_rules
from submitter.triggers import (
    BatchMode,
    ListedBatch,
    ObjectRole,
    Rule,
    TemplateError,
    Window,
    instantiate,
    marker_batch,
    object_batch,
    split_name,
    window_batch,
)

from .local_files import LocalPackages

_RULES_OPTION = click.option("--rules", "rules_file", type=click.Path(exists=True, dir_okay=False), default=None,
                             help="a rules file to check instead of SUBMITTER_TRIGGER_RULES_FILE")


def _load(rules_file: str | None) -> tuple[Settings, Planner, list[Rule], dict[str, tuple[str, list[Violation]]]]:
    """The deployment's settings (the local stack's names when no SUBMITTER_* variable is set), with `rules_file`
    instead of SUBMITTER_TRIGGER_RULES_FILE when given, and its rules checked."""
    configured = any(k.startswith(ENV_PREFIX) for k in os.environ)
    env = dict(os.environ) if configured else dict(LOCAL_DEFAULTS)
    if rules_file:
        env[f"{ENV_PREFIX}TRIGGER_RULES_FILE"] = rules_file
    try:
        settings = Settings.from_env(env)
    except SettingsError as exc:
        raise click.UsageError(str(exc)) from None
    from submitter.backends import build_backend  # the deployment's backend checks too (Vertex: the CustomJob)

    planner = Planner(settings, LocalPackages({}), SystemClock(), backend=build_backend(settings))
    rules, broken = check_rules(settings, planner)
    return settings, planner, rules, broken


def _describe(rule: Rule) -> str:
    mode = rule.mode.value
    if rule.mode is BatchMode.MARKER:
        mode += f" ({rule.marker})"
    elif rule.mode is BatchMode.QUIET:
        mode += f" ({rule.quiet_s:g}s)"
    return f"gs://{rule.bucket}/{rule.pattern}  batch={mode}  overlap={rule.overlap.value}"


@click.group()
def triggers() -> None:
    """Data-trigger rules: new data in a bucket starts a job from a template."""


@triggers.command("list")
@_RULES_OPTION
@click.option("--json", "as_json", is_flag=True, help="print the rules as JSON")
def list_rules(rules_file: str | None, as_json: bool) -> None:
    """List the trigger rules (SUBMITTER_TRIGGER_RULES_FILE, or --rules FILE), each checked as the function checks
    it when it loads the rules: a rule marked BROKEN never fires, with every reason. Exit 0 when every rule can fire,
    1 when one cannot."""
    settings, _, rules, broken = _load(rules_file)
    source = settings.trigger_rules.source
    if as_json:
        click.echo(json.dumps({"source": source, "dataBuckets": list(settings.data_buckets),
                               "rules": [{"name": r.name, "bucket": r.bucket, "match": r.match, "prefix": r.prefix,
                                          "mode": r.mode.value, "marker": r.marker if r.mode is BatchMode.MARKER
                                          else None, "quietSeconds": r.quiet_s or None, "overlap": r.overlap.value,
                                          "packages": list(r.packages), "valid": True} for r in rules] +
                                         [{"name": n, "valid": False, "violations": [v.as_dict() for v in vs]}
                                          for n, (_, vs) in broken.items()]}, indent=2))
        sys.exit(1 if broken else 0)
    if not source:
        click.echo("no trigger rules (SUBMITTER_TRIGGER_RULES_FILE is not set; --rules FILE checks a file)")
        return
    click.echo(f"{source}: {len(rules)} rule{'s' if len(rules) != 1 else ''} can fire"
               + (f", {len(broken)} broken" if broken else "")
               + f"; data buckets: {', '.join(settings.data_buckets) or 'none'}")
    for rule in rules:
        click.echo(f"  {rule.name:<24} {_describe(rule)}")
    for name, (_, violations) in broken.items():
        click.echo(f"  {name:<24} BROKEN (never fires):")
        for v in violations:
            click.echo(f"      {v.field}: {v.message}  [{v.reason.value}]")
    sys.exit(1 if broken else 0)


@triggers.command("test")
@click.argument("rule_name", metavar="RULE")
@click.argument("object_name")
@_RULES_OPTION
@click.option("--generation", type=int, default=1, show_default=True, help="the object's generation")
@click.option("--json", "as_json", is_flag=True, help="print the result as JSON")
def test_rule(rule_name: str, object_name: str, rules_file: str | None, generation: int, as_json: bool) -> None:
    """Dry run: what OBJECT_NAME (a raw object name in the rule's bucket) would start under RULE, and the job it
    would submit, checked by the same planner as every job (offline: packages named by gs:// URI are not read).

    Exit 0 when the object starts (or joins) a valid job, 1 when it matches nothing or the job would be rejected,
    2 for an unknown rule."""
    settings, planner, rules, broken = _load(rules_file)
    rule = next((r for r in rules if r.name == rule_name), None)
    if rule is None:
        if rule_name in broken:
            click.echo(f"rule {rule_name} is BROKEN and never fires:")
            for v in broken[rule_name][1]:
                click.echo(f"    {v.field}: {v.message}  [{v.reason.value}]")
            sys.exit(1)
        known = ", ".join([r.name for r in rules] + list(broken)) or "none"
        raise click.UsageError(f"no trigger rule {rule_name!r} (rules: {known})")
    role = rule.role(object_name)
    now = dt.datetime.now(dt.UTC)
    folder, _ = split_name(object_name)
    if role is None:
        what = (f"gs://{rule.bucket}/{object_name} is not matched by rule {rule.name} ({_describe(rule)}); objects "
                "named _* or .* are never data")
        _finish(as_json, {"rule": rule.name, "object": object_name, "role": None, "message": what}, what, 1)
    if rule.mode is BatchMode.PER_OBJECT:
        batch = object_batch(rule, object_name, generation, now)
        what = "a batch of its own: this job starts when it is written"
    elif role is ObjectRole.MARKER:
        batch = marker_batch(rule, object_name, generation, now, ListedBatch("", now, 0, ()))
        what = (f"the marker of gs://{rule.bucket}/{folder}/: it closes the folder's batch (the data objects in the "
                "folder when it is handled) and starts this job")
    elif rule.mode is BatchMode.MARKER:
        marker = f"{folder}/{rule.marker}" if folder else rule.marker
        batch = marker_batch(rule, marker, generation, now, ListedBatch("", now, 1, ((object_name, generation),)))
        what = (f"data of gs://{rule.bucket}/{folder}/: part of the batch started when {marker} is written "
                f"(shown with that marker at generation {generation})")
    else:
        window = Window((object_name, generation), (object_name, generation), now, now, 1,
                        ((object_name, generation),))
        batch = window_batch(rule, rule.bucket, folder, window)
        what = (f"data of gs://{rule.bucket}/{folder}/: it joins the folder's window, which becomes a batch once no "
                f"new object arrived for {rule.quiet_s:g}s (shown as a window of this object alone)")
    violations: list[Violation] = []
    job: dict[str, Any] = {}
    warnings: list[str] = []
    try:
        parsed = instantiate(rule, batch)
    except TemplateError as exc:
        violations.append(Violation(f"{rule.source}.job", str(exc), Reason.SPEC_INVALID))
    else:
        plan = planner.plan(SpecInput(parsed=parsed, defaults=batch_defaults(settings, rule, batch)),
                            batch.batch_id, inspect_unlisted=False)
        violations, job, warnings = plan.violations, plan.job, plan.warnings
    result = {"rule": rule.name, "object": object_name, "role": role.value, "message": what,
              "batch": batch.to_doc(), "valid": not violations, "jobId": batch.batch_id,
              "violations": [v.as_dict() for v in violations], "warnings": warnings, "job": job}
    lines = [f"gs://{rule.bucket}/{object_name} under rule {rule.name}: {what}", f"  jobId: {batch.batch_id}"]
    if violations:
        lines.append(f"  the job would be REJECTED: {len(violations)} problem{'s' if len(violations) != 1 else ''}")
        lines += [f"    {v.field}: {v.message}  [{v.reason.value}]" for v in violations]
    else:
        import yaml

        lines += [f"  warning: {w}" for w in warnings]
        lines.append("  the job it would submit:")
        lines.append("    " + yaml.safe_dump(job, sort_keys=False, allow_unicode=True).rstrip().replace("\n", "\n    "))
    _finish(as_json, result, "\n".join(lines), 1 if violations else 0)


def _finish(as_json: bool, result: dict[str, Any], text: str, code: int) -> None:
    click.echo(json.dumps(result, indent=2, default=str) if as_json else text)
    sys.exit(code)
