"""Issue 10 on the real local stack: each hostile drop gets exactly one verdict within a minute, and the
function's memory stays under 200 MiB throughout (its peak resident set, read from /proc when done).

The same inputs on the in-memory doubles, one by one, are in test_hostile_inputs.py.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import tarfile
import time
from pathlib import Path

import pytest

from submitter_local.stack import REPO

from conftest import BASELINE_YAML, running_stack

pytestmark = pytest.mark.stack
MEMORY_LIMIT_MIB = 200


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with running_stack(tmp_path_factory.mktemp("stack"), min_state_seconds=0.5, reconcile_interval_s=0.5) as s:
        yield s


def tar_gz(members: list[tuple[tarfile.TarInfo, bytes]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", format=tarfile.GNU_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data else None)
    return buf.getvalue()


def member(name: str, data: bytes = b"", kind: bytes = tarfile.REGTYPE, target: str = "") -> tuple:
    info = tarfile.TarInfo(name)
    info.type, info.size, info.linkname = kind, len(data), target
    return info, data


def pax_bomb(record_bytes: int = 256 * 1024 * 1024) -> bytes:
    """A gzip tar whose first header is a PAX extended header of `record_bytes` (zeros): ~255 KB compressed."""
    header = tarfile.TarInfo("././@PaxHeader")
    header.type, header.size = tarfile.XHDTYPE, record_bytes
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb") as gz:
        gz.write(header.tobuf(format=tarfile.USTAR_FORMAT))
        chunk = b"\0" * (1024 * 1024)
        for _ in range(record_bytes // len(chunk)):
            gz.write(chunk)
    return out.getvalue()


def peak_rss_mib(pid: int) -> float:
    """The highest resident set of a process group's members so far (VmHWM), in MiB."""
    peak = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.getpgid(int(entry.name)) != pid:
                continue
            for line in (entry / "status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]) / 1024)
        except (OSError, ProcessLookupError):
            continue
    return peak


def test_each_hostile_drop_gets_one_verdict_within_a_minute_and_the_function_stays_small(stack, sample_package):
    from google.cloud import storage

    from submitter_cli.follow import EventFollower

    s, env = stack
    os.environ["STORAGE_EMULATOR_HOST"] = env["STORAGE_EMULATOR_HOST"]
    os.environ["PUBSUB_EMULATOR_HOST"] = env["PUBSUB_EMULATOR_HOST"]
    bucket = storage.Client(project=env["PROJECT"]).bucket(env["BUCKET"])
    outputs = storage.Client(project=env["PROJECT"]).bucket(env["OUTPUT_BUCKET"])
    good_package = Path(sample_package).read_bytes()
    spec = (REPO / "samples" / "job.yaml").read_bytes()
    huge_args = ("trainingInput:\n  pythonModule: trainer.task\n  args: [" + ",".join(["1"] * 330_000)
                 + "]\n").encode()
    outputs.blob("ext/x.tar.gz").upload_from_string(b"not a tarball")
    external = BASELINE_YAML.replace(b"  args:", b"  packageUris: [gs://drop-outputs/ext/x.tar.gz]\n  args:")
    drops = {
        "hostile-args": (huge_args, good_package),
        "hostile-bytes": (spec, tar_gz([member("trainer-\udcff/setup.py"), member("other/x.py")])),
        "hostile-name": (spec, tar_gz([member("trainer-0.1/" + "a" * (16 * 1024 * 1024))])),
        "hostile-pax": (spec, pax_bomb()),
        "hostile-external": (external, good_package),
        "hostile-links": (spec, tar_gz([member("trainer-0.1/setup.py"),
                                        member("trainer-0.1/x", kind=tarfile.SYMTYPE, target=".."),
                                        member("trainer-0.1/y", kind=tarfile.SYMTYPE, target="x/.."),
                                        member("trainer-0.1/y/escaped.txt", b"boo")])),
    }
    pid = next(p["pid"] for p in json.loads(s.state_file.read_text())["processes"] if p["name"] == "function")
    with EventFollower(env["TOPIC"], "hostile") as follower:
        victim_folder = "incoming/hostile-victim"
        bucket.blob(f"{victim_folder}/trainer-0.1.0.tar.gz").upload_from_string(good_package)
        victim_spec = bucket.blob(f"{victim_folder}/job.yaml")
        victim_spec.upload_from_string(spec)
        victim = f"hostile_victim_{victim_spec.generation}"
        waited = time.monotonic() + 60
        while time.monotonic() < waited and not any(e["data"]["jobId"] == victim
                                                    for e in follower.events(timeout_s=2, dedupe=False)):
            pass  # the victim's job exists before another drop names its id
        dropped_at = {}
        for name, (job_yaml, package) in drops.items():
            bucket.blob(f"incoming/{name}/package.tar.gz").upload_from_string(package)
            blob = bucket.blob(f"incoming/{name}/job.yaml")
            blob.upload_from_string(job_yaml)
            dropped_at[f"{name.replace('-', '_')}_{blob.generation}"] = time.monotonic()
        attacker_spec = spec.replace(b"trainingInput:", f"jobId: {victim}\ntrainingInput:".encode()).replace(
            b"n-estimators", b"n-trees")
        bucket.blob("incoming/hostile-attacker/trainer-0.1.0.tar.gz").upload_from_string(good_package)
        attacker = bucket.blob("incoming/hostile-attacker/job.yaml")
        attacker.upload_from_string(attacker_spec)
        dropped_at[f"hostile_attacker_{attacker.generation}"] = time.monotonic()
        seen: dict[str, list[tuple[str, float]]] = {}
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and not set(dropped_at) <= set(seen):
            for event in follower.events(timeout_s=2, dedupe=False):
                data = event["data"]
                seen.setdefault(data["jobId"], []).append((data["state"], time.monotonic()))
                if set(dropped_at) <= set(seen):
                    break
        for _ in follower.events(timeout_s=3, dedupe=False):  # redeliveries of anything already seen
            pass
    assert set(dropped_at) <= set(seen), {k: seen.get(k) for k in dropped_at}
    for job_id, at in dropped_at.items():
        verdicts = [(state, when) for state, when in seen[job_id] if state in ("REJECTED", "SUBMIT_FAILED")]
        assert len({state for state, _ in verdicts}) == 1, (job_id, seen[job_id])
        assert verdicts[0][1] - at < 60, (job_id, verdicts[0][1] - at)
    assert [state for state, _ in seen[f"hostile_attacker_{attacker.generation}"]][0] == "SUBMIT_FAILED"
    assert all(state not in ("REJECTED", "SUBMIT_FAILED") for state, _ in seen.get(victim, []))
    peak = peak_rss_mib(pid)
    print(f"function peak resident set: {peak:.0f} MiB")  # shown with -s; the closing note quotes it
    assert peak < MEMORY_LIMIT_MIB, f"the function peaked at {peak:.0f} MiB"
