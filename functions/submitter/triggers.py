"""Data-triggered training, as pure decisions (no I/O): trigger rules, object matching, batches, substitution,
quiet-period windows and the overlap gate.

A **trigger rule** (loaded from `SUBMITTER_TRIGGER_RULES_FILE`, see `load_rules`) says which objects of a data
bucket are new data, how they are grouped into **batches**, and which job template to run on each batch. A batch
becomes exactly one job through the same `Submitter.submit` a drop goes through; `trigger_handler.py` does the
I/O around these decisions, `submitter triggers test` runs the same code offline.

Rules file (YAML, read with the job.yaml loader: safe, no aliases, bounded)::

    rules:
      - name: nightly-csv                   # [a-z][a-z0-9_-]{0,39}; unique; names jobs, keys and labels
        bucket: vision-data                 # the data bucket (one of SUBMITTER_DATA_BUCKETS)
        match: "incoming/*/*.csv"           # a glob on the raw object name ...
        # prefix: incoming/                 # ... or a prefix (exactly one of match / prefix)
        batch: {mode: marker, marker: _SUCCESS}   # per_object | marker | quiet (with quiet_seconds: N)
        overlap: queue                      # parallel (default) | skip | queue
        packages: [gs://vision-artifacts/trainer-1.2.0.tar.gz]
        job:                                # the job template: a job.yaml (the Job resource)
          trainingInput:
            pythonModule: trainer.task
            args: ["--data", "gs://${bucket}/${folder}/"]

Globs: `*` and `?` match within one path segment (never `/`), `[abc]` / `[!abc]` one character of a set, `**`
any number of whole segments (`data/**/*.csv`); everything else is literal; names are the raw object names
(never URL-decoded). Files whose name starts with `_` or `.` are never data (the Hadoop/Spark convention for
`_SUCCESS`, `_temporary/`, `.crc` files), nor are folder placeholders (`name/`) or zero-byte objects.

Batching (`batch.mode`):
- `per_object`: each matching object generation is a batch (identity: rule, object, generation).
- `marker`: a folder's batch closes when its completion marker (`batch.marker`, default `_SUCCESS`) is written
  into a folder the rule watches (the glob's folder part, or under the prefix); the batch is the data objects
  directly in that folder when the marker is handled, listed once (identity: rule, folder, marker generation).
  A new generation of the marker is a new batch.
- `quiet`: matching objects of one folder join an open window; the scheduled sweep closes a window when no
  matching object was created in it for `quiet_seconds` (identity: rule, folder, the window's first object).

Substitutions (in string *values* of the parsed template, never in its YAML text, so a value can never add
structure; `$$` is a literal `$`; an unknown `${name}` makes the rule invalid): see `VARIABLES`.

Overlap (`overlap`), per rule: `parallel` starts every batch at once; `skip` refuses a batch while the rule's
previous job is active (REJECTED, reason OVERLAP_SKIPPED, naming that job); `queue` keeps it, in order, and the
scheduled sweep starts the next queued batch once the previous job is final (at most `MAX_QUEUE` batches).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any, TypeAlias

import yaml

from . import naming
from .clock import iso, parse_iso
from .errors import SpecRejected
from .model import Origin
from .reasons import Reason, Violation
from .rule_set import RuleSet
from .spec import ParsedSpec, load_yaml_document, spec_from_document

DEFAULT_MARKER = "_SUCCESS"
MAX_EVENT_OBJECTS = 100  # object names an event (and a batch record) carries; `count` has the full number
MAX_LISTED_OBJECTS = 1000  # object names a folder record keeps per batch (redelivery and late-object checks)
MAX_RECENT_BATCHES = 10  # closed batches a folder record remembers (for events redelivered within a day)
MAX_QUEUE = 100  # batches a `queue` rule holds while its previous job runs; more are skipped
RULE_NAME_RE = re.compile(r"[a-z][a-z0-9_-]{0,39}")
TRIGGER_LABEL = "submitter-trigger"  # label naming the rule on every job a rule starts

#: Every substitution a template may use, with what it holds.
VARIABLES: dict[str, str] = {
    "bucket": "the data bucket",
    "object": "the object that closed the batch: the object itself (per_object), the marker (marker), the window's "
              "last object (quiet); its raw name",
    "generation": "that object's generation, in decimal",
    "folder": "the batch's folder: the object's parent, no trailing slash (\"\" at the bucket root)",
    "date": "the UTC date (YYYY-MM-DD) at which that object was created (the event's time)",
    "batch_id": "the batch's jobId: letters, digits and underscores, unique per batch (safe in paths)",
    "rule": "the rule's name",
}
_RULE_KEYS = {"name", "bucket", "match", "prefix", "batch", "overlap", "packages", "job", "description"}
_BATCH_KEYS = {"mode", "marker", "quiet_seconds"}


class BatchMode(enum.StrEnum):
    """How a rule groups new objects into batches."""

    PER_OBJECT = "per_object"
    MARKER = "marker"
    QUIET = "quiet"


class Overlap(enum.StrEnum):
    """What a rule does with a new batch while its previous job is still active."""

    PARALLEL = "parallel"
    SKIP = "skip"
    QUEUE = "queue"


class ObjectRole(enum.StrEnum):
    """What an object is to a rule."""

    DATA = "data"
    MARKER = "marker"


class TemplateError(ValueError):
    """A substitution could not be made (an unknown name, an unterminated `${`, a value with control characters)."""


# -- globs ------------------------------------------------------------------------------------------------------
def glob_regex(pattern: str) -> re.Pattern[str]:
    """The regular expression of a glob on object names (see the module docstring for the syntax).

    Raises:
        ValueError: an unterminated `[` set.
    """
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:[^/]*/)*")  # zero or more whole segments
            i += 3
        elif pattern.startswith("/**", i) and i + 3 == n:
            out.append("(?:/.*)?")  # the folder itself or anything below it
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif c == "*":
            out.append("[^/]*")
            i += 1
        elif c == "?":
            out.append("[^/]")
            i += 1
        elif c == "[":
            end = pattern.find("]", i + 2 if pattern.startswith("[!", i) or pattern.startswith("[]", i) else i + 1)
            if end < 0:
                raise ValueError(f"unterminated '[' at character {i + 1}")
            body = pattern[i + 1:end]
            if body.startswith("!"):
                body = "^" + body[1:]
            out.append("[" + body.replace("\\", "\\\\") + "]")
            i = end + 1
        else:
            out.append(re.escape(c))
            i += 1
    return re.compile("".join(out), re.DOTALL)


def split_name(name: str) -> tuple[str, str]:
    """(folder, file name) of an object name; the folder has no trailing slash ("" at the bucket root)."""
    folder, _, filename = name.rpartition("/")
    return folder, filename


def is_hidden(filename: str) -> bool:
    """Files named `_*` or `.*` are never data (Hadoop/Spark: `_SUCCESS`, `_temporary`, `.part-0.crc`)."""
    return filename.startswith(("_", "."))


# -- rules --------------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Rule:
    """One trigger rule, as loaded (its template not yet checked: see `trigger_handler.check_rules`).

    Attributes:
        name: the rule's name.
        bucket: the data bucket it watches.
        match / prefix: the glob or the prefix on raw object names (exactly one is set).
        mode / marker / quiet_s: how objects are grouped (the marker's file name; the quiet period in seconds).
        overlap: parallel, skip or queue.
        packages: gs:// URIs of the packages the job installs (filled into packageUris when the template has none).
        template: the job template as parsed (the Job mapping with raw scalars), `${...}` not yet substituted.
        source: where it was written ("triggers.yaml: rules[0]"), for messages.
        digest: SHA-256 of the rule as written: a changed rule is checked and reported again.
    """

    name: str
    bucket: str
    match: str | None
    prefix: str | None
    mode: BatchMode
    marker: str
    quiet_s: float
    overlap: Overlap
    packages: tuple[str, ...]
    template: ParsedSpec
    source: str
    digest: str

    @property
    def pattern(self) -> str:
        """The match, as written: the glob, or `prefix*`."""
        return self.match if self.match is not None else f"{self.prefix}*"

    @property
    def literal_prefix(self) -> str:
        """The part of object names every match starts with (before the first wildcard)."""
        if self.prefix is not None:
            return self.prefix
        text = self.match or ""
        cut = min((i for i in (text.find(c) for c in "*?[") if i >= 0), default=len(text))
        return text[:cut]

    def role(self, name: str) -> ObjectRole | None:
        """What object `name` is to this rule: DATA, the MARKER of a folder the rule watches (marker mode), or
        None (not this rule's)."""
        folder, filename = split_name(name)
        if not filename:
            return None
        if self.mode is BatchMode.MARKER and filename == self.marker and self._watches_folder(folder, name):
            return ObjectRole.MARKER
        if is_hidden(filename):
            return None
        if self.prefix is not None:
            return ObjectRole.DATA if name.startswith(self.prefix) else None
        return ObjectRole.DATA if _compiled(self.match or "").fullmatch(name) else None

    def _watches_folder(self, folder: str, name: str) -> bool:
        if self.prefix is not None:
            return name.startswith(self.prefix)
        folder_glob = (self.match or "").rpartition("/")[0]
        last = (self.match or "").rpartition("/")[2]
        if last == "**":  # "data/**": any folder at or below data/
            folder_glob = f"{folder_glob}/**" if folder_glob else "**"
        return _compiled(folder_glob).fullmatch(folder) is not None


_GLOBS: dict[str, re.Pattern[str]] = {}


def _compiled(glob: str) -> re.Pattern[str]:
    if glob not in _GLOBS:
        _GLOBS[glob] = glob_regex(glob)
    return _GLOBS[glob]


def load_rules(text: str, source: str) -> RuleSet:
    """Parse a rules file (YAML; an empty file or `rules: []` has no rules).

    A rule with a problem is kept aside in `broken` with every violation (it never fires); the others load.

    Args:
        text: the file's content.
        source: its path, for messages.
    Raises:
        ValueError: the file as a whole is not a rules file (not YAML, not a mapping with a `rules` list).
    """
    try:
        root, doc = load_yaml_document(text, source)
    except SpecRejected as exc:
        raise ValueError("; ".join(f"{v.field} {v.message}" for v in exc.violations)) from None
    if doc is None:
        return RuleSet(source=source)
    if not isinstance(doc, dict) or set(doc) - {"rules"}:
        raise ValueError(f"{source}: must be a mapping with one key, rules (a list of trigger rules)")
    items = doc.get("rules") or []
    if not isinstance(items, list):
        raise ValueError(f"{source}: rules must be a list of trigger rules")
    nodes = _item_nodes(root)
    rules: list[Rule] = []
    broken: dict[str, tuple[str, tuple[Violation, ...]]] = {}
    for i, item in enumerate(items):
        where = f"{source}: rules[{i}]"
        digest = hashlib.sha256(json.dumps(item, sort_keys=True, default=str).encode()).hexdigest()
        name = item.get("name") if isinstance(item, dict) else None
        label = name if isinstance(name, str) and RULE_NAME_RE.fullmatch(name) else f"rules[{i}]"
        if label in broken or any(r.name == label for r in rules):
            broken[f"rules[{i}]"] = (digest, (Violation(f"{where}.name", f"rule name {label!r} is used twice; rule "
                                                        "names must be unique", Reason.RULE_INVALID, label),))
            continue
        rule, problems = _parse_rule(item, nodes[i] if i < len(nodes) else None, where, digest)
        if rule is None or problems:
            broken[label] = (digest, tuple(problems))
        else:
            rules.append(rule)
    return RuleSet(rules=tuple(rules), broken=broken, source=source)


def _item_nodes(root: yaml.Node | None) -> list[yaml.Node | None]:
    """The node of each rule in `rules:` (for the raw text of the templates' plain scalars)."""
    if not isinstance(root, yaml.MappingNode):
        return []
    for key, value in root.value:
        if isinstance(key, yaml.ScalarNode) and key.value == "rules" and isinstance(value, yaml.SequenceNode):
            return list(value.value)
    return []


def _child(node: yaml.Node | None, name: str) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value == name:
                return value  # type: ignore[no-any-return]
    return None


def _parse_rule(item: Any, node: yaml.Node | None, where: str, digest: str) -> tuple[Rule | None, list[Violation]]:
    def bad(field: str, message: str, value: Any = None) -> None:
        problems.append(Violation(f"{where}.{field}" if field else where, message, Reason.RULE_INVALID, value))

    problems: list[Violation] = []
    if not isinstance(item, dict):
        bad("", "a rule is a mapping (name, bucket, match or prefix, batch, overlap, packages, job)", item)
        return None, problems
    for key in sorted(set(item) - _RULE_KEYS, key=str):
        bad(str(key), f"unknown key; a rule has {', '.join(sorted(_RULE_KEYS))}")
    name = item.get("name")
    if not isinstance(name, str) or not RULE_NAME_RE.fullmatch(name):
        bad("name", "is required: 1-40 lowercase letters, digits, '-' and '_', starting with a letter (it names "
            "the rule's jobs and records)", name)
    bucket = item.get("bucket")
    if not isinstance(bucket, str) or not naming.BUCKET_RE.fullmatch(bucket):
        bad("bucket", "is required: the data bucket's name (not gs://...)", bucket)
    match, prefix = item.get("match"), item.get("prefix")
    if (match is None) == (prefix is None):
        bad("match", "give exactly one of match (a glob on object names) and prefix")
    elif match is not None:
        if not isinstance(match, str) or not match or match.startswith("/"):
            bad("match", "must be a glob on object names, e.g. incoming/*/*.csv (no leading '/', no gs://)", match)
        else:
            try:
                glob_regex(match)
            except ValueError as exc:
                bad("match", f"is not a glob: {exc}", match)
    elif not isinstance(prefix, str) or prefix.startswith(("/", "gs://")):
        bad("prefix", "must be an object-name prefix, e.g. incoming/ (no leading '/', no gs://)", prefix)
    batch = item.get("batch", {"mode": BatchMode.PER_OBJECT.value})
    mode, marker, quiet_s = BatchMode.PER_OBJECT, DEFAULT_MARKER, 0.0
    if not isinstance(batch, dict):
        bad("batch", "must be a mapping: {mode: per_object | marker | quiet, marker: _SUCCESS, quiet_seconds: N}",
            batch)
    else:
        for key in sorted(set(batch) - _BATCH_KEYS, key=str):
            bad(f"batch.{key}", f"unknown key; batch has {', '.join(sorted(_BATCH_KEYS))}")
        raw_mode = batch.get("mode", BatchMode.PER_OBJECT.value)
        if raw_mode not in {m.value for m in BatchMode}:
            bad("batch.mode", f"must be one of {', '.join(m.value for m in BatchMode)}", raw_mode)
        else:
            mode = BatchMode(raw_mode)
        raw_marker = batch.get("marker", DEFAULT_MARKER)
        if "marker" in batch and mode is not BatchMode.MARKER:
            bad("batch.marker", "is only for mode: marker")
        if not isinstance(raw_marker, str) or not raw_marker or "/" in raw_marker:
            bad("batch.marker", "must be a file name such as _SUCCESS", raw_marker)
        else:
            marker = raw_marker
        raw_quiet = batch.get("quiet_seconds")
        if mode is BatchMode.QUIET:
            if isinstance(raw_quiet, bool) or not isinstance(raw_quiet, (int, float)) or not 0 < raw_quiet <= 86400:
                bad("batch.quiet_seconds", "mode quiet needs quiet_seconds: the seconds without a new matching "
                    "object after which a window closes (0 < N <= 86400)", raw_quiet)
            else:
                quiet_s = float(raw_quiet)
        elif raw_quiet is not None:
            bad("batch.quiet_seconds", "is only for mode: quiet")
    raw_overlap = item.get("overlap", Overlap.PARALLEL.value)
    overlap = Overlap.PARALLEL
    if raw_overlap not in {o.value for o in Overlap}:
        bad("overlap", f"must be one of {', '.join(o.value for o in Overlap)}", raw_overlap)
    else:
        overlap = Overlap(raw_overlap)
    packages = item.get("packages", [])
    if not isinstance(packages, list) or not all(isinstance(p, str) and naming.GCS_URI_RE.fullmatch(p)
                                                 for p in packages):
        bad("packages", "must be a list of gs://bucket/path.tar.gz URIs", packages)
        packages = []
    if "${" in json.dumps(packages):
        bad("packages", "are not templated: name fixed package URIs")
    template: ParsedSpec | None = None
    job = item.get("job")
    if not isinstance(job, dict):
        bad("job", "is required: the job template, a Job resource as in job.yaml (trainingInput: ...)", job)
    else:
        try:
            template = spec_from_document(job, _child(node, "job"), filename=f"{where}.job")
        except SpecRejected as exc:
            problems.extend(exc.violations)
        else:
            problems.extend(template_problems(template.job, f"{where}.job"))
            if "jobId" in template.job:
                bad("job.jobId", "a rule's jobs are named per batch (the batch_id); remove jobId",
                    template.job["jobId"])
    if problems or template is None:
        return None, problems
    return Rule(name=str(name), bucket=str(bucket), match=match, prefix=prefix, mode=mode, marker=marker,
                quiet_s=quiet_s, overlap=overlap, packages=tuple(packages), template=template, source=where,
                digest=digest), []


# -- substitution -------------------------------------------------------------------------------------------------
_TOKEN_RE = re.compile(r"\$(\$|\{([^{}]*)\}|\{)")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def substitute_text(text: str, values: Mapping[str, str]) -> str:
    """`text` with `${name}` replaced by `values[name]` and `$$` by `$`, in one pass: a substituted value is never
    read again (an object named `${folder}` stays that text).

    Raises:
        TemplateError: an unknown name, an unterminated `${`, or a value holding control characters (object names
            with CR or LF cannot exist in Cloud Storage; none is ever put into a job).
    """
    def one(m: re.Match[str]) -> str:
        if m.group(1) == "$":
            return "$"
        name = m.group(2)
        if name is None:
            raise TemplateError(f"unterminated '${{' in {text!r}; write $$ for a literal $")
        if name not in values:
            known = ", ".join(f"${{{k}}}" for k in VARIABLES)
            raise TemplateError(f"unknown substitution ${{{name}}}; known: {known}")
        value = values[name]
        if _CONTROL_RE.search(value):
            raise TemplateError(f"${{{name}}} would hold control characters ({value!r}); nothing is substituted")
        return value

    return _TOKEN_RE.sub(one, text)


def substitute(job: Any, values: Mapping[str, str]) -> Any:
    """A copy of a parsed template with every string value substituted (`substitute_text`); mapping keys,
    numbers, booleans and the structure are left as they are, so a value (an object name) can only ever become
    part of a string, never a new field.

    Raises:
        TemplateError: as `substitute_text`.
    """
    if isinstance(job, str):
        return substitute_text(job, values)
    if isinstance(job, dict):
        return {k: substitute(v, values) for k, v in job.items()}
    if isinstance(job, list):
        return [substitute(v, values) for v in job]
    return job


def template_problems(job: Any, where: str) -> list[Violation]:
    """Every substitution problem in a template, with its field path: unknown names, unterminated `${`, and
    `${...}` in mapping keys (substitution happens only in values)."""
    out: list[Violation] = []
    placeholder = dict.fromkeys(VARIABLES, "x")
    stack: list[tuple[Any, str]] = [(job, "")]
    while stack:
        item, path = stack.pop()
        field = f"{where}.{path}" if path else where
        if isinstance(item, str):
            try:
                substitute_text(item, placeholder)
            except TemplateError as exc:
                out.append(Violation(field, str(exc), Reason.RULE_INVALID, item))
        elif isinstance(item, dict):
            for key, value in item.items():
                if isinstance(key, str) and "${" in key:
                    out.append(Violation(f"{field}.{key}", "substitutions are made in values only, not in keys",
                                         Reason.RULE_INVALID, key))
                stack.append((value, f"{path}.{key}" if path else str(key)))
        elif isinstance(item, list):
            stack.extend((v, f"{path}[{i}]") for i, v in enumerate(item))
    return sorted(out, key=lambda v: v.field)


# -- batches ------------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Batch:
    """One batch of new data for one rule: what becomes one job.

    Attributes:
        rule / mode / bucket / folder: the rule, its batching and the batch's place.
        object / generation / time: the object that closed the batch (per_object: the object; marker: the marker;
            quiet: the window's last object), its generation and its creation time (the event's time).
        number: the generation that identifies the batch (the object's, the marker's, the window's first object's).
        objects: names of the batch's data objects (the first MAX_EVENT_OBJECTS); `count` is how many there are.
    """

    rule: str
    mode: BatchMode
    bucket: str
    folder: str
    object: str
    generation: int
    time: dt.datetime
    number: int
    objects: tuple[str, ...]
    count: int

    @property
    def where(self) -> str:
        """The object (per_object) or the folder (marker, quiet) the batch is about."""
        return self.object if self.mode is BatchMode.PER_OBJECT else self.folder

    @property
    def identity(self) -> str:
        """rule, bucket, object or folder, and number, NUL-separated: what makes the batch this batch."""
        return "\0".join((self.rule, self.bucket, self.where, str(self.number)))

    @property
    def batch_id(self) -> str:
        """The batch's job key (its jobId): deterministic, valid, unique per batch identity."""
        return naming.derive_batch_job_id(self.rule, self.where, self.number, self.identity)

    @property
    def record_key(self) -> str:
        """Where the batch's claim and verdict live in the state store."""
        return f"triggers/batches/{self.rule}/{self.batch_id}"

    @property
    def status_key(self) -> str:
        """The batch's status document in the state store."""
        return f"status/triggers/{self.rule}/{self.batch_id}.json"

    def trigger_field(self) -> dict[str, Any]:
        """The `trigger` field of events and status documents."""
        return {"rule": self.rule, "mode": self.mode.value, "batchId": self.batch_id, "folder": self.folder,
                "count": self.count, "objects": list(self.objects[:MAX_EVENT_OBJECTS])}

    def origin(self) -> Origin:
        """The batch as the submission core sees it: `drop` names the data bucket, the batch folder and the object
        that closed the batch (the message schema's required field), `trigger` the rule and the batch."""
        drop = {"bucket": self.bucket, "folder": self.folder, "object": self.object, "generation": str(self.generation)}
        return Origin(record_key=self.record_key, fields={"drop": drop, "trigger": self.trigger_field()},
                      status_key=self.status_key, name=f"trigger {self.rule}: gs://{self.bucket}/{self.where}",
                      bucket=self.bucket)

    def variables(self) -> dict[str, str]:
        """The substitution values (`VARIABLES`) of this batch."""
        return {"bucket": self.bucket, "object": self.object, "generation": str(self.generation),
                "folder": self.folder, "date": self.time.astimezone(dt.UTC).date().isoformat(),
                "batch_id": self.batch_id, "rule": self.rule}

    def to_doc(self) -> dict[str, Any]:
        """The batch as stored in records (generations as decimal strings, times ISO 8601); `from_doc` inverts."""
        return {"rule": self.rule, "mode": self.mode.value, "bucket": self.bucket, "folder": self.folder,
                "object": self.object, "generation": str(self.generation), "time": iso(self.time),
                "number": str(self.number), "objects": list(self.objects), "count": self.count,
                "batchId": self.batch_id}

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> Batch:
        return cls(rule=str(doc["rule"]), mode=BatchMode(doc["mode"]), bucket=str(doc["bucket"]),
                   folder=str(doc["folder"]), object=str(doc["object"]), generation=int(doc["generation"]),
                   time=parse_iso(doc["time"]), number=int(doc["number"]), objects=tuple(doc.get("objects") or ()),
                   count=int(doc.get("count", 0)))


def placeholder_batch(rule: Rule) -> Batch:
    """A batch with placeholder values, to check a rule's template when the rule is loaded."""
    folder = rule.literal_prefix.rpartition("/")[0] or "folder"
    name = f"{folder}/{rule.marker if rule.mode is BatchMode.MARKER else 'object'}"
    return Batch(rule=rule.name, mode=rule.mode, bucket=rule.bucket, folder=folder, object=name, generation=1,
                 time=dt.datetime(1970, 1, 1, tzinfo=dt.UTC), number=1, objects=(name,), count=1)


def instantiate(rule: Rule, batch: Batch) -> ParsedSpec:
    """The rule's template with the batch's values substituted (`substitute`), as a ParsedSpec for the planner;
    the raw text of plain scalars and the parse warnings are the template's.

    Raises:
        TemplateError: a substitution could not be made.
    """
    job = substitute(rule.template.job, batch.variables())
    return ParsedSpec(job=job, warnings=list(rule.template.warnings), raw_scalars=dict(rule.template.raw_scalars))


def object_batch(rule: Rule, name: str, generation: int, time: dt.datetime) -> Batch:
    """The batch of one object (per_object mode)."""
    folder, _ = split_name(name)
    return Batch(rule=rule.name, mode=rule.mode, bucket=rule.bucket, folder=folder, object=name, generation=generation,
                 time=time, number=generation, objects=(name,), count=1)


def marker_batch(rule: Rule, marker: str, generation: int, time: dt.datetime, listed: ListedBatch) -> Batch:
    """The batch a marker closes (marker mode), with the objects listed when it was handled."""
    folder, _ = split_name(marker)
    return Batch(rule=rule.name, mode=rule.mode, bucket=rule.bucket, folder=folder, object=marker,
                 generation=generation, time=time, number=generation,
                 objects=tuple(n for n, _ in listed.objects[:MAX_EVENT_OBJECTS]), count=listed.count)


def window_batch(rule: Rule, bucket: str, folder: str, window: Window) -> Batch:
    """The batch of a closed quiet-period window."""
    name, generation = window.last
    return Batch(rule=rule.name, mode=rule.mode, bucket=bucket, folder=folder, object=name, generation=generation,
                 time=window.last_time, number=window.first[1],
                 objects=tuple(n for n, _ in window.objects[:MAX_EVENT_OBJECTS]), count=window.count)


# -- folder records: what was batched in a folder (marker and quiet modes) ------------------------------------------
ObjectRef: TypeAlias = tuple[str, int]


@dataclasses.dataclass(frozen=True)
class Window:
    """An open (or closing) quiet-period window: the objects that joined it, the first (its identity) and the last.

    Attributes:
        first / last: (name, generation) of the first and the last object that joined.
        opened / last_time: creation times of the first and the last object.
        count: how many objects joined; `objects` names the first MAX_LISTED_OBJECTS of them.
        closed_at: when the sweep closed it (None while open).
    """

    first: ObjectRef
    last: ObjectRef
    opened: dt.datetime
    last_time: dt.datetime
    count: int
    objects: tuple[ObjectRef, ...]
    closed_at: dt.datetime | None = None

    def to_doc(self) -> dict[str, Any]:
        return {"first": _ref_doc(self.first), "last": _ref_doc(self.last), "opened": iso(self.opened),
                "lastTime": iso(self.last_time), "count": self.count, "objects": [_ref_doc(o) for o in self.objects],
                "closedAt": iso(self.closed_at) if self.closed_at else None}

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> Window:
        return cls(first=_ref(doc["first"]), last=_ref(doc["last"]), opened=parse_iso(doc["opened"]),
                   last_time=parse_iso(doc["lastTime"]), count=int(doc["count"]),
                   objects=tuple(_ref(o) for o in doc.get("objects") or ()),
                   closed_at=parse_iso(doc["closedAt"]) if doc.get("closedAt") else None)


@dataclasses.dataclass(frozen=True)
class ListedBatch:
    """A batch a folder closed: its id, when it closed (marker: listed; quiet: swept), and its objects (the first
    MAX_LISTED_OBJECTS; `count` is the full number)."""

    batch_id: str
    closed_at: dt.datetime
    count: int
    objects: tuple[ObjectRef, ...]

    @property
    def complete(self) -> bool:
        """True when `objects` names every object of the batch."""
        return len(self.objects) >= self.count

    def to_doc(self) -> dict[str, Any]:
        return {"batchId": self.batch_id, "closedAt": iso(self.closed_at), "count": self.count,
                "objects": [_ref_doc(o) for o in self.objects]}

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> ListedBatch:
        return cls(batch_id=str(doc["batchId"]), closed_at=parse_iso(doc["closedAt"]), count=int(doc["count"]),
                   objects=tuple(_ref(o) for o in doc.get("objects") or ()))


def _ref_doc(ref: ObjectRef) -> list[str]:
    return [ref[0], str(ref[1])]


def _ref(doc: Any) -> ObjectRef:
    return str(doc[0]), int(doc[1])


@dataclasses.dataclass(frozen=True)
class FolderRecord:
    """What a rule batched in one folder: the open window, a window being closed, the recent closed batches.

    One document per (rule, bucket, folder), always written with compare-and-set, so concurrent events and the
    sweep never lose an object: an event joins `open`; the sweep moves a quiet `open` to `closing`, submits it,
    then moves it to `recent`. Redelivered events are recognised in any of the three; an object created before a
    recent batch closed but not in it is late (reported on that batch, never started).
    """

    rule: str
    bucket: str
    folder: str
    open: Window | None = None
    closing: Window | None = None
    recent: tuple[ListedBatch, ...] = ()

    def to_doc(self) -> dict[str, Any]:
        return {"rule": self.rule, "bucket": self.bucket, "folder": self.folder,
                "open": self.open.to_doc() if self.open else None,
                "closing": self.closing.to_doc() if self.closing else None,
                "recent": [b.to_doc() for b in self.recent]}

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> FolderRecord:
        return cls(rule=str(doc["rule"]), bucket=str(doc["bucket"]), folder=str(doc["folder"]),
                   open=Window.from_doc(doc["open"]) if doc.get("open") else None,
                   closing=Window.from_doc(doc["closing"]) if doc.get("closing") else None,
                   recent=tuple(ListedBatch.from_doc(b) for b in doc.get("recent") or ()))

    def batch(self, batch_id: str) -> ListedBatch | None:
        """The recent batch `batch_id` of this folder (its listing), or None."""
        return next((b for b in self.recent if b.batch_id == batch_id), None)

    def with_listed(self, listed: ListedBatch, keep_after: dt.datetime) -> FolderRecord:
        """This record with one more closed batch; batches closed before `keep_after` (older than any event that
        can still arrive) and beyond MAX_RECENT_BATCHES are forgotten."""
        kept = [b for b in self.recent if b.closed_at >= keep_after and b.batch_id != listed.batch_id]
        return dataclasses.replace(self, recent=tuple([*kept, listed][-MAX_RECENT_BATCHES:]))


def folder_key(rule: str, bucket: str, folder: str) -> str:
    """The state-store key of a folder record (the folder hashed: any object name fits)."""
    digest = hashlib.sha256(f"{bucket}/{folder}".encode("utf-8", "surrogatepass")).hexdigest()[:32]
    return f"triggers/folders/{rule}/{digest}.json"


@dataclasses.dataclass(frozen=True)
class Joined:
    """The object joined the folder's open window (opening one when there was none)."""

    record: FolderRecord
    opened: bool


@dataclasses.dataclass(frozen=True)
class Seen:
    """A redelivered event: the object is already in a window or a batch (`batch_id` when in a closed one)."""

    batch_id: str | None


@dataclasses.dataclass(frozen=True)
class Late:
    """The object is not part of batch `batch_id`, which closed before it arrived: reported, never started."""

    batch_id: str


@dataclasses.dataclass(frozen=True)
class AwaitingMarker:
    """A data object of a marker rule in a folder whose marker has not been handled yet: nothing to do now."""


JoinDecision: TypeAlias = Joined | Seen | Late


def join_window(rule: Rule, record: FolderRecord, ref: ObjectRef, created: dt.datetime) -> JoinDecision:
    """Where an object of a quiet rule goes (pure).

    - `Seen`: a redelivery: the object is in the open or closing window or a recent batch.
    - `Late`: created before the folder's last window closed, yet not in it (its event came late): reported on
      that batch. For a batch too large to list in full, such an object may be a redelivery: `Seen`, never started.
    - `Joined`: anything else joins the open window (an object created after a window closed opens the next one).
    """
    for window in (record.open, record.closing):
        if window is not None and ref in window.objects:
            return Seen(None)
    for listed in record.recent:
        if ref in listed.objects:
            return Seen(listed.batch_id)
    closed: list[tuple[dt.datetime, str, bool]] = [(b.closed_at, b.batch_id, b.complete) for b in record.recent]
    if record.closing is not None and record.closing.closed_at is not None:
        closed.append((record.closing.closed_at, window_batch(rule, record.bucket, record.folder,
                                                              record.closing).batch_id,
                       len(record.closing.objects) >= record.closing.count))
    if closed:
        closed_at, batch_id, complete = max(closed)
        if created <= closed_at:
            return Late(batch_id) if complete else Seen(batch_id)
    window = record.open
    if window is None:
        window = Window(first=ref, last=ref, opened=created, last_time=created, count=1, objects=(ref,))
        return Joined(dataclasses.replace(record, open=window), opened=True)
    objects = window.objects + ((ref,) if len(window.objects) < MAX_LISTED_OBJECTS else ())
    newer = created >= window.last_time
    window = dataclasses.replace(window, count=window.count + 1, objects=objects,
                                 last=ref if newer else window.last,
                                 last_time=created if newer else window.last_time)
    return Joined(dataclasses.replace(record, open=window), opened=False)


def window_due(window: Window, now: dt.datetime, quiet_s: float) -> bool:
    """True when no object joined `window` for `quiet_s` seconds (by the objects' creation times)."""
    return (now - window.last_time).total_seconds() >= quiet_s


def marker_data(record: FolderRecord | None, ref: ObjectRef) -> Seen | Late | AwaitingMarker:
    """What a data object event of a marker rule means (pure): `AwaitingMarker` before the folder's first batch;
    `Seen` when the folder's latest batch lists it (a redelivery; also for a batch too large to list in full);
    otherwise `Late`: it arrived after that batch's marker was handled and is not part of it."""
    if record is None or not record.recent:
        return AwaitingMarker()
    newest = max(record.recent, key=lambda b: b.closed_at)
    if ref in newest.objects or not newest.complete:
        return Seen(newest.batch_id)
    return Late(newest.batch_id)


# -- overlap ------------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class RuleState:
    """A rule's overlap record (skip and queue rules): the batch it started last and the batches waiting."""

    active: Batch | None = None
    active_since: dt.datetime | None = None
    queue: tuple[Batch, ...] = ()

    def to_doc(self) -> dict[str, Any]:
        return {"active": self.active.to_doc() if self.active else None,
                "activeSince": iso(self.active_since) if self.active_since else None,
                "queue": [b.to_doc() for b in self.queue]}

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> RuleState:
        return cls(active=Batch.from_doc(doc["active"]) if doc.get("active") else None,
                   active_since=parse_iso(doc["activeSince"]) if doc.get("activeSince") else None,
                   queue=tuple(Batch.from_doc(b) for b in doc.get("queue") or ()))


def rule_state_key(rule: str) -> str:
    """The state-store key of a rule's overlap record."""
    return f"triggers/overlap/{rule}.json"


def rule_status_key(rule: str) -> str:
    """The state-store key of a rule's status document (valid, or broken with its violations)."""
    return f"triggers/status/{rule}.json"


class Gate(enum.StrEnum):
    """The overlap gate's answer for a batch."""

    START = "start"  # submit it now (it is now the rule's active batch)
    SKIP = "skip"  # refuse it: the previous job is active
    QUEUE = "queue"  # keep it: it starts when the previous job is final
    QUEUED = "queued"  # it is already in the queue (a redelivery)


def gate(state: RuleState, batch: Batch, overlap: Overlap, active_running: bool,
         now: dt.datetime) -> tuple[Gate, RuleState]:
    """Decide a new batch of a skip or queue rule (pure).

    Args:
        state: the rule's overlap record.
        batch: the batch.
        overlap: SKIP or QUEUE (PARALLEL never reaches the gate).
        active_running: the rule's active batch is still being decided or its job is not final.
        now: for `active_since`.
    Returns:
        (what to do, the record to write: unchanged for SKIP and QUEUED).
    """
    if state.active is not None and state.active.batch_id == batch.batch_id:
        return Gate.START, state  # this batch is the active one (a redelivery, a resumed submission)
    if any(b.batch_id == batch.batch_id for b in state.queue):
        return Gate.QUEUED, state
    if state.active is None or not active_running:
        if overlap is Overlap.QUEUE and state.queue:
            return _enqueue(state, batch)  # earlier batches go first: the sweep starts them in order
        return Gate.START, dataclasses.replace(state, active=batch, active_since=now)
    if overlap is Overlap.QUEUE:
        return _enqueue(state, batch)
    return Gate.SKIP, state


def _enqueue(state: RuleState, batch: Batch) -> tuple[Gate, RuleState]:
    if len(state.queue) >= MAX_QUEUE:
        return Gate.SKIP, state
    return Gate.QUEUE, dataclasses.replace(state, queue=(*state.queue, batch))


def next_queued(state: RuleState, now: dt.datetime) -> tuple[Batch, RuleState] | None:
    """The queue's head made the active batch (the previous one is final), or None for an empty queue."""
    if not state.queue:
        return None
    head = state.queue[0]
    return head, RuleState(active=head, active_since=now, queue=state.queue[1:])


def restrict(rules: RuleSet, data_buckets: tuple[str, ...], reserved: Mapping[str, str]) -> RuleSet:
    """The rule set with every rule that cannot receive events, or must not, moved to `broken`: its bucket is not
    one of `data_buckets` (no trigger delivers that bucket's events), or is a bucket the submitter owns.

    Args:
        rules: the loaded rules.
        data_buckets: the deployment's data buckets.
        reserved: bucket -> why a rule may not watch it (the drop bucket, the state bucket).
    """
    kept: list[Rule] = []
    broken = dict(rules.broken)
    for rule in rules.rules:
        why = reserved.get(rule.bucket)
        if why is None and rule.bucket not in data_buckets:
            named = ", ".join(data_buckets) or "none"
            why = (f"is not a data bucket of this deployment (SUBMITTER_DATA_BUCKETS: {named}): no trigger delivers "
                   "its events; add it to the deployment's data_buckets")
        if why is None:
            kept.append(rule)
        else:
            broken[rule.name] = (rule.digest, (Violation(f"{rule.source}.bucket", f"{rule.bucket} {why}",
                                                         Reason.RULE_INVALID, rule.bucket),))
    return dataclasses.replace(rules, rules=tuple(kept), broken=broken)
