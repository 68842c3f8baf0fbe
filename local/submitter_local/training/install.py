"""A job's installation: its packages as wheels, their declared requirements, the per-job
environment, and a plain-words diagnosis when pip cannot meet a requirement.

The cloud ran `pip install <packageUris>` on the runtime image. Locally that is split so a
code-only change costs seconds (see `envs.py`):

1. `build_wheels`: `pip wheel --no-deps` turns each sdist into a wheel (wheels pass through);
2. `declared_requirements`: the wheels' `Requires-Dist` lines, minus the job's own packages;
   these (plus the runtime) key the cached dependency-set environment;
3. `install_job_env`: a per-job venv on top of that environment gets the wheels with
   `--no-deps --no-index`.

`diagnose` reads pip's output after a failure and names the requirement, its pin and the reason
("no release matching it has a wheel or source distribution for Python 3.11; it has one for
Python 3.7, the job's pythonVersion"), so the FAILED errorMessage starts with the cause.
"""

from __future__ import annotations

import dataclasses
import email.parser
import functools
import hashlib
import os
import re
import shutil
import subprocess
import zipfile
from collections.abc import Callable
from pathlib import Path

from . import messages
from .envs import Env, EnvCache, InstallFailed, PipLog, child_base_env, make_venv

_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
_NO_MATCH = re.compile(r"No matching distribution found for (\S+)")
_FROM_VERSIONS = re.compile(r"Could not find a version that satisfies the requirement (\S+) "
                            r"(?:\(from [^)]*\) )?\(from versions: ([^)]*)\)")
_COLLECTING = re.compile(r"^Collecting (\S+)(?: \(from (\S+?)(?:\[.*?\])?(?:==\S+)?\))?")
_SDIST = re.compile(r"(?:Downloading|Using cached|File was already downloaded|Processing) \S*?([A-Za-z0-9._-]+)"
                    r"\.(?:tar\.gz|zip|tar\.bz2)\b")
_FAILED_BUILD = re.compile(r"Failed to build '([^']+)'|Failed building wheel for (\S+)|"
                           r"Encountered error while generating package metadata\.\s*\n\s*╰─> (?!See above)(\S+)")


def canonical_name(name: str) -> str:
    """PEP 503 normalised project name: `Scikit_Learn` -> `scikit-learn`."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(req: str) -> str:
    """The canonical project name of a PEP 508 requirement string ("" when it has none)."""
    m = _NAME.match(req)
    return canonical_name(m.group(1)) if m else ""


@dataclasses.dataclass(frozen=True)
class Wheel:
    """A built (or given) wheel of one of the job's packages: its file, canonical project name,
    version and `Requires-Dist` lines as written (markers and extras included)."""

    path: Path
    name: str
    version: str
    requires: tuple[str, ...]

    @property
    def label(self) -> str:
        """`trainer 0.1`: how messages name the package."""
        return f"{self.name} {self.version}"


def read_wheel(path: Path) -> Wheel:
    """The metadata of wheel `path`. Raises InstallFailed when it has no readable METADATA."""
    try:
        with zipfile.ZipFile(path) as z:
            meta_name = next(n for n in z.namelist() if re.fullmatch(r"[^/]+\.dist-info/METADATA", n))
            meta = email.parser.Parser().parsestr(z.read(meta_name).decode("utf-8", "replace"))
    except (OSError, zipfile.BadZipFile, StopIteration) as e:
        raise InstallFailed(f"{path.name} is not a readable wheel: {e!r}", command="wheel") from None
    return Wheel(path, canonical_name(meta.get("Name", "")), meta.get("Version", ""),
                 tuple(meta.get_all("Requires-Dist") or ()))


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def build_wheels(cache: EnvCache, package_files: list[Path], out_dir: Path, pip_log: PipLog,
                 interrupted: Callable[[], bool], on_note: Callable[[str], None] = lambda text: None) -> list[Wheel]:
    """Wheels for `package_files`, in the given order: `.whl` files are used as they are; an
    sdist is built with `pip wheel --no-deps` (as `pip install` would build it), once per
    distinct sdist bytes: the wheel is kept in `<envs_dir>/.wheels/<sha256>/` and reused.

    Raises InstallFailed (command "wheel") when a build fails, Interrupted on a cancel."""
    out_dir.mkdir(parents=True, exist_ok=True)
    found: dict[Path, Path] = {}
    to_build: list[Path] = []
    for p in package_files:
        if p.name.endswith(".whl"):
            found[p] = p
            continue
        cached = list((cache.root / ".wheels" / _sha256(p)).glob("*.whl"))
        if cached:
            found[p] = cached[0]
            on_note(f"Reusing the wheel built earlier from these bytes of {p.name}: {cached[0].name}.")
        else:
            to_build.append(p)
    if to_build:
        on_note("Building " + ", ".join(p.name for p in to_build) + " (pip wheel --no-deps).")
        before = set(out_dir.glob("*.whl"))
        cmd = [str(cache.runtime_python), "-m", "pip", "wheel", "--no-deps", "--no-input",
               "--disable-pip-version-check", *cache.pip_args, "-w", str(out_dir), *map(str, to_build)]
        rc, output, stderr = pip_log.run(cmd, interrupted, cache.poll)
        if rc != 0:
            raise InstallFailed(stderr, output, command="wheel")
        new = sorted(set(out_dir.glob("*.whl")) - before)
        # pip names wheels after the project; match them to their sdists by name
        for sdist in to_build:
            stem = canonical_name(re.sub(r"\.(tar\.gz|zip|tar\.bz2|tgz)$", "", sdist.name).rsplit("-", 1)[0])
            match = next((w for w in new if canonical_name(w.name.split("-")[0]) == stem), None)
            if match is None and len(to_build) == 1 and len(new) == 1:
                match = new[0]
            if match is None:
                raise InstallFailed(f"pip built no wheel recognisably from {sdist.name} (built: "
                                    f"{', '.join(w.name for w in new) or 'none'})", output, command="wheel")
            keep = cache.root / ".wheels" / _sha256(sdist)
            keep.mkdir(parents=True, exist_ok=True)
            part = keep / f".{match.name}.{os.getpid()}.part"
            shutil.copy2(match, part)
            os.replace(part, keep / match.name)  # readers see the whole wheel or none
            found[sdist] = match
    return [read_wheel(found[p]) for p in package_files]


def declared_requirements(wheels: list[Wheel]) -> dict[str, str]:
    """The union of the wheels' `Requires-Dist` lines, except those naming one of the wheels
    themselves (a job's packages may depend on each other). Returns requirement -> the label
    of the first package declaring it ("trainer 0.1"). Markers stay: pip evaluates them."""
    own = {w.name for w in wheels}
    out: dict[str, str] = {}
    for w in wheels:
        for req in w.requires:
            req = req.strip()
            if req and requirement_name(req) not in own:
                out.setdefault(req, w.label)
    return out


#: Installs wheels into a venv with PyPA's `installer` (run by the runtime interpreter: 0.2 s
#: where `pip --python` needs 1.5 s): argv = [venv dir, wheel...].
_INSTALL_WHEELS = """
import sys, sysconfig
from installer import install
from installer.destinations import SchemeDictionaryDestination
from installer.sources import WheelFile
env = sys.argv[1]
scheme = sysconfig.get_paths(vars={"base": env, "platbase": env, "installed_base": env, "installed_platbase": env})
scheme["headers"] = env + "/include/site/python%d.%d" % sys.version_info[:2]
dest = SchemeDictionaryDestination({k: scheme[k] for k in ("purelib", "platlib", "headers", "scripts", "data")},
                                   interpreter=env + "/bin/python", script_kind="posix")
for path in sys.argv[2:]:
    with WheelFile.open(path) as source:
        install(source, dest, {"INSTALLER": b"local-training"})
    print("Installed " + path.rsplit("/", 1)[-1])
"""


@functools.cache
def _has_installer_in(runtime_python: str) -> bool:
    done = subprocess.run([runtime_python, "-c", "import installer"], capture_output=True, env=child_base_env())
    return done.returncode == 0


def install_job_env(cache: EnvCache, base: Env | None, wheels: list[Wheel], dest: Path, pip_log: PipLog,
                    interrupted: Callable[[], bool]) -> Path:
    """Create the job's own venv at `dest` on top of `base` (None = the runtime venv) and install
    the wheels into it without their dependencies (those are in `base`): with `installer` when
    the runtime has it, else `pip install --no-deps --no-index`. Returns its interpreter.
    Raises InstallFailed, Interrupted."""
    if dest.exists():
        shutil.rmtree(dest)
    parent_dirs = [str(base.site_packages)] if base else cache.runtime_site_dirs()
    python = make_venv(cache.runtime_python, dest, parent_dirs)
    if not wheels:
        return python
    if _has_installer_in(str(cache.runtime_python)):
        cmd = [str(cache.runtime_python), "-c", _INSTALL_WHEELS, str(dest), *[str(w.path) for w in wheels]]
    else:
        cmd = cache.pip_command(python) + ["install", "--no-deps", "--no-index", "--no-input",
                                           "--disable-pip-version-check", "--no-warn-script-location",
                                           *[str(w.path) for w in wheels]]
    rc, output, stderr = pip_log.run(cmd, interrupted, cache.poll)
    if rc != 0:
        raise InstallFailed(stderr, output)
    return python


# -- diagnosis ------------------------------------------------------------------------------------

def _has_wheel_for(cache: EnvCache, requirement: str, python_version: str, timeout: float = 60) -> bool | None:
    """True when an index offers a wheel matching `requirement` for CPython `python_version`
    (asked with `pip install --dry-run --only-binary=:all: --python-version`); None when pip
    could not be asked."""
    cmd = [str(cache.runtime_python), "-m", "pip", "install", "--dry-run", "--quiet", "--no-deps",
           "--ignore-installed", "--only-binary=:all:", "--python-version", python_version,
           "--disable-pip-version-check", "--no-input", *cache.pip_args, requirement]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=child_base_env())
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode == 0:
        return True
    return False if "No matching distribution" in done.stderr else None


def diagnose(failure: InstallFailed, requirements: dict[str, str], cache: EnvCache,
             job_python: str | None) -> str:
    """One sentence naming what pip could not do, for the top of errorMessage.

    `requirements` maps each declared requirement to the package declaring it; `job_python` is
    the job's pythonVersion ("3.7") or None. Examples:

    * `tensorflow==2.8.0 (required by trainer 0.1) cannot be installed on the local runtime's
      Python 3.11: no release matching it has a wheel or source distribution for Python 3.11
      (releases available here: 2.12.0 ... 2.20.0); it has a wheel for Python 3.7, the job's
      pythonVersion.`
    * `pandas==1.4.1 (required by trainer 0.1) has no wheel for Python 3.11, so pip built its
      source distribution, and that failed: <the build's error line>`
    * otherwise pip's own error line (`messages.cause_line`)."""
    local = cache.runtime_info().version
    text = failure.output
    stripped = "\n".join(ln.strip() for ln in text.splitlines())
    by_name = {requirement_name(r): (r, who) for r, who in requirements.items()}

    def who(req: str) -> str:
        declared = by_name.get(requirement_name(req))
        if declared:
            return f"{declared[0]} (required by {declared[1]})"
        return req

    m = _FROM_VERSIONS.search(text) or _NO_MATCH.search(text)
    if m:
        req = m.group(1)
        versions = [v.strip() for v in m.group(2).split(",")] if m.re is _FROM_VERSIONS else []
        versions = [v for v in versions if v and v != "none"]
        if versions:
            shown = ", ".join(versions[:3]) + (f" ... {versions[-1]}" if len(versions) > 3 else "")
            reason = (f"no release matching it has a wheel or source distribution for Python {local} "
                      f"(releases available here: {shown})")
        else:
            reason = f"no release of it can be found for Python {local} on the configured indexes"
        sentence = f"{who(req)} cannot be installed on the local runtime's Python {local}: {reason}"
        if job_python and job_python != local and versions:
            elsewhere = _has_wheel_for(cache, by_name.get(requirement_name(req), (req,))[0], job_python)
            if elsewhere:
                sentence += f"; it has a wheel for Python {job_python}, the job's pythonVersion"
        return sentence + "." + _other_pins_without_wheels(cache, requirements, {requirement_name(req)})
    # a source build that failed: pip names the project in its last error lines
    failed = _FAILED_BUILD.search(text)
    building = (failed.group(1) or failed.group(2) or failed.group(3)) if failed else None
    if building is None:  # older pips: the last "Collecting X" before the error
        for ln in stripped.splitlines():
            c = _COLLECTING.match(ln)
            if c:
                building = c.group(1)
    cause = _build_error_line(stripped)
    if failed and building and failure.command != "wheel":
        sdists = [m.group(1) for ln in stripped.splitlines() if (m := _SDIST.search(ln))]
        if any(canonical_name(sd.rsplit("-", 1)[0]) == requirement_name(building) for sd in sdists):
            declared = by_name.get(requirement_name(building), (building,))[0]
            wheel_here = _has_wheel_for(cache, declared, local)
            prefix = f"has no wheel for Python {local}, so pip built its source distribution, and that" \
                if wheel_here is False else "could not be built from its source distribution: the build"
            return (f"{who(building)} {prefix} failed: {cause or 'see the install log above'}."
                    + _other_pins_without_wheels(cache, requirements, {requirement_name(building)}))
    if failure.command == "wheel":
        return f"Building the job's package failed: {cause or messages.cause_line(text) or 'see the log'}"
    return messages.cause_line(text) or (messages.tail(failure.stderr, 1) or "pip failed without a message")


def _other_pins_without_wheels(cache: EnvCache, requirements: dict[str, str], skip: set[str]) -> str:
    """` Also without a wheel for Python 3.11: pandas==1.4.1.` for the other exactly pinned
    (`==`) requirements pip did not get to, or "" (one dry-run query per pin; failures only)."""
    local = cache.runtime_info().version
    missing = [r for r in requirements if "==" in r and ";" not in r and requirement_name(r) not in skip
               and _has_wheel_for(cache, r, local) is False]
    return f" Also without a wheel for Python {local}: {', '.join(missing)}." if missing else ""


def _build_error_line(stripped_text: str) -> str | None:
    """The most telling line of a failed build: the last exception line printed by the build
    backend (pip indents it), else the last `error:` line of a compiler or setup.py."""
    lines = [ln for ln in stripped_text.splitlines() if ln]
    for ln in reversed(lines):
        if messages.cause_line(ln) == ln and not ln.startswith(("ERROR:", "error:")):
            return ln
    for ln in reversed(lines):
        if ln.lower().startswith("error:") and "subprocess-exited-with-error" not in ln \
                and "metadata-generation-failed" not in ln:
            return ln
    return None
