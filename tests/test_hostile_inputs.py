"""Issue 10 on the in-memory doubles: every hostile input gets exactly one verdict that fits in a message,
inspection cannot be bypassed and stays bounded, and a drop can only speak for itself.

(The same inputs on the real local stack, with the function's memory measured, are in test_hostile_stack.py.)
"""

from __future__ import annotations

import io
import json
import tarfile

import pytest

from submitter.package import PackageRejected, inspect_package

from conftest import BASELINE_TARBALL, BASELINE_YAML, World, baseline_files, make_tarball

MAX_MESSAGE = 10 * 1024 * 1024


def verdicts(w: World) -> list[dict]:
    return [json.loads(m.data) for m in w.publisher.messages]


def one_verdict(w: World, state: str) -> dict:
    [data] = verdicts(w)
    assert data["state"] == state, data
    assert all(len(m.data) < MAX_MESSAGE for m in w.publisher.messages)
    return data


def tarball_with(members: list[tuple[tarfile.TarInfo, bytes]], fmt: int = tarfile.GNU_FORMAT) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", format=fmt) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data else None)
    return buf.getvalue()


def member(name: str, data: bytes = b"", kind: bytes = tarfile.REGTYPE, target: str = "") -> tuple:
    info = tarfile.TarInfo(name)
    info.type, info.size, info.linkname = kind, len(data), target
    return info, data


# -- 1. verdicts that fit -------------------------------------------------------------------------------
def test_a_spec_with_330000_args_is_refused_for_its_size_before_it_is_built():
    w = World()
    spec = ("trainingInput:\n  pythonModule: trainer.task\n  args: [" + ",".join(["1"] * 330_000) + "]\n").encode()
    assert w.drop("incoming/huge-args", spec=spec).action == "rejected"
    data = one_verdict(w, "REJECTED")
    assert data["reason"] == "SPEC_TOO_LARGE" and "more than 10000 values" in data["message"]


def test_thousands_of_violations_give_one_rejected_that_fits_with_a_summary():
    w = World()
    spec = ("trainingInput:\n  pythonModule: trainer.task\n  args: [" + ",".join(["1"] * 5_000) + "]\n").encode()
    assert w.drop("incoming/many-args", spec=spec).action == "rejected"
    data = one_verdict(w, "REJECTED")
    assert len(data["violations"]) == 100 and data["violations"][-1]["field"] == "(more)"
    assert "more problems" in data["violations"][-1]["message"]
    status = w.ledger.status("status/drop-bucket/incoming/many-args.json")
    assert status is not None and len(status.violations) == 100


def test_a_package_whose_top_folder_is_not_utf8_gets_one_verdict():
    w = World()
    package = tarball_with([member("trainer-\udcff/setup.py"), member("other/x.py")])  # \udcff: byte 0xff
    assert w.drop("incoming/bad-bytes", package=package).action == "rejected"
    data = one_verdict(w, "REJECTED")
    assert data["reason"] == "PACKAGE_INVALID" and "trainer-\ufffd" in data["message"]  # shown, not a crash
    json.dumps(data, ensure_ascii=False).encode("utf-8")  # valid UTF-8 all the way


def test_a_package_with_a_16_mb_member_name_is_refused_unread():
    w = World()
    package = tarball_with([member("trainer-0.1/" + "a" * (16 * 1024 * 1024))])
    assert w.drop("incoming/long-name", package=package).action == "rejected"
    data = one_verdict(w, "REJECTED")
    assert "GNU long-name header" in data["message"] and len(data["message"]) < 10_000


def test_a_lone_surrogate_in_an_object_name_is_ignored_not_a_500():
    w = World()
    data = {"bucket": "drop-bucket", "name": "incoming/run-\ud800/job.yaml", "generation": "5", "size": "10"}
    outcome = w.app.handle_cloud_event({"id": "e1", "type": "google.cloud.storage.object.v1.finalized"}, data)
    assert outcome.action == "ignored" and "UTF-8" in outcome.detail and not w.publisher.messages


def test_terminal_escapes_in_a_value_are_escaped_in_the_verdict():
    w = World()
    w.drop("incoming/escapes", spec=b'trainingInput:\n  pythonModule: "trainer.task"\n  region: "\\e[31mred"\n')
    data = one_verdict(w, "REJECTED")
    assert "\x1b" not in json.dumps(data, ensure_ascii=False) and "\\x1b[31mred" in data["message"]


# -- 2. inspection: bounded and not bypassed --------------------------------------------------------------
class CountingStream(io.BytesIO):
    """A byte stream that counts what was read from it."""

    def __init__(self, data: bytes):
        super().__init__(data)
        self.taken = 0

    def read(self, size=-1):
        chunk = super().read(size)
        self.taken += len(chunk)
        return chunk


@pytest.mark.parametrize("kind, words", [(tarfile.XHDTYPE, "PAX extended header"),
                                         (tarfile.GNUTYPE_LONGNAME, "GNU long-name header")])
def test_an_extended_header_claiming_256_mb_is_refused_before_it_is_read(kind, words):
    import gzip

    header = tarfile.TarInfo("././@PaxHeader" if kind == tarfile.XHDTYPE else "././@LongLink")
    header.type, header.size = kind, 256 * 1024 * 1024
    raw = header.tobuf(format=tarfile.USTAR_FORMAT) + b"\0" * 4096  # the record's body is never there
    stream = CountingStream(gzip.compress(raw))
    with pytest.raises(PackageRejected, match=words):
        inspect_package(stream, "p.tar.gz")
    assert stream.taken < 64 * 1024


def test_packages_outside_the_drop_folder_are_inspected_too():
    w = World()
    w.storage.put("drop-outputs", "ext/x.tar.gz", b"not a tarball at all")
    spec = BASELINE_YAML.replace(b"  args:", b"  packageUris: [gs://drop-outputs/ext/x.tar.gz]\n  args:")
    assert w.drop("incoming/external", spec=spec).action == "rejected"
    data = one_verdict(w, "REJECTED")
    assert data["reason"] == "PACKAGE_INVALID" and "x.tar.gz" in data["message"] and "gzip" in data["message"]
    assert w.api.count("create") == 0


def test_a_package_named_outside_the_drop_that_does_not_exist_is_refused():
    w = World()
    spec = BASELINE_YAML.replace(b"  args:", b"  packageUris: [gs://drop-outputs/ext/missing.tar.gz]\n  args:")
    assert w.drop("incoming/external-missing", spec=spec).action == "rejected"
    assert "does not exist" in one_verdict(w, "REJECTED")["message"]


def test_chained_symlinks_that_escape_are_refused():
    files = [member("trainer-0.1/setup.py"), member("trainer-0.1/x", kind=tarfile.SYMTYPE, target=".."),
             member("trainer-0.1/y", kind=tarfile.SYMTYPE, target="x/.."),
             member("trainer-0.1/y/escaped.txt", b"boo")]
    with pytest.raises(PackageRejected, match="outside the archive|lies under the link"):
        inspect_package(io.BytesIO(tarball_with(files)), "p.tar.gz")
    inside = [member("trainer-0.1/setup.py"), member("trainer-0.1/docs", kind=tarfile.SYMTYPE, target="trainer")]
    assert inspect_package(io.BytesIO(tarball_with(inside)), "p.tar.gz").top_dir == "trainer-0.1"


# -- 3. a drop speaks only for itself -------------------------------------------------------------------
def test_a_drop_naming_another_drops_job_id_is_refused_under_its_own_key():
    w = World()
    victim = w.drop("incoming/victim").job_id
    w.api.set_state(victim, "SUCCEEDED")
    spec = BASELINE_YAML.replace(b"trainingInput:", f"jobId: {victim}\ntrainingInput:".encode()).replace(
        b'["--epochs", "3"]', b'["--epochs", "99"]')
    attacker = w.drop("incoming/attacker", spec=spec)
    assert attacker.action == "submit_failed" and attacker.job_id != victim
    [_, refused] = verdicts(w)
    assert refused["jobId"] == attacker.job_id and refused["jobId"].startswith("attacker_")
    assert refused["reason"] == "JOB_ID_CONFLICT" and "args" not in refused["message"]
    assert all(m.attributes["jobId"] != victim for m in w.publisher.messages[1:])
    assert w.publisher.states(victim) == ["SUBMITTED"]  # nothing published under the victim's id


def test_a_rejected_drop_with_an_explicit_job_id_is_reported_under_its_own_key():
    w = World()
    out = w.drop("incoming/named", spec=b"jobId: someone_elses_job\ntrainingInput: {scaleTier: HUGE}\n")
    assert out.action == "rejected" and out.job_id.startswith("named_")
    assert one_verdict(w, "REJECTED")["jobId"] == out.job_id


# -- 6. smaller items ------------------------------------------------------------------------------------
def test_duplicate_keys_are_refused_naming_the_key_and_both_lines():
    w = World()
    spec = b"trainingInput:\n  pythonModule: trainer.task\n  region: us-central1\n  pythonModule: evil.task\n"
    w.drop("incoming/dup-keys", spec=spec)
    data = one_verdict(w, "REJECTED")
    assert data["reason"] == "YAML_INVALID" and "'pythonModule' is written twice" in data["message"]
    assert "lines 2 and 4" in data["message"]


def test_the_submitter_label_is_reserved():
    w = World()
    w.drop("incoming/label", spec=BASELINE_YAML + b"  submitter: notdrop\n")
    data = one_verdict(w, "REJECTED")
    assert data["violations"][0]["field"] == "labels.submitter" and "reserved" in data["message"]


def test_a_python_module_of_the_standard_library_is_refused():
    w = World()
    files = {**baseline_files(), "json/__init__.py": b"", "json/tool.py": b"print('mine')"}
    spec = BASELINE_YAML.replace(b"pythonModule: trainer.task", b"pythonModule: json.tool")
    w.drop("incoming/stdlib", spec=spec, package=make_tarball(files))
    data = one_verdict(w, "REJECTED")
    assert data["reason"] == "MODULE_NOT_IN_PACKAGE" and "standard library" in data["message"]


@pytest.mark.parametrize("arg", ["a\x00b", "\x1b[2J", "tab\tand newline\n are fine"])
def test_control_characters_in_args(arg):
    w = World()
    spec = BASELINE_YAML.replace(b'["--epochs", "3"]', json.dumps(["--epochs", arg]).encode())
    out = w.drop("incoming/ctrl", spec=spec, package=BASELINE_TARBALL)
    assert out.action == ("submitted" if "fine" in arg else "rejected")
    if out.action == "rejected":
        assert "control character" in one_verdict(w, "REJECTED")["message"]
