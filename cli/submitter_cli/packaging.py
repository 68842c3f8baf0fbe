"""The packages of a submission: `--packages`, `--package-path` and `--staging-bucket`, as gcloud means them.

gcloud (`command_lib/ml_engine/jobs_prep.py`): `--package-path` names the package folder itself (it must hold
`__init__.py`); its *parent* is the build context; the parent's `setup.py` is used when there is one, otherwise a
minimal one is generated (`setup(name=<folder name>, packages=find_packages(include=[<folder name>]))`), and
`setup.py sdist` builds it. Local packages are uploaded to `gs://<staging bucket>/<job>/<sha256 of all of them>/`
and named in packageUris after the gs:// ones.

The submitter differs in two ways, both documented: without `--staging-bucket`, local packages ride in the drop
folder (gcloud would stage them under `--job-dir` or refuse), and a `--package-path` that is a project folder
(holding pyproject.toml or setup.py, no `__init__.py`) is built as it is. The user's tree is never written to:
a generated setup.py goes into a copy.
"""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import click

from submitter import naming

# jobs_prep.DEFAULT_SETUP_FILE, the setup.py gcloud generates for a package folder whose parent has none.
DEFAULT_SETUP_FILE = """\
from setuptools import setup, find_packages

if __name__ == '__main__':
    setup(
        name='{package_name}',
        packages=find_packages(include=['{package_name}'])
    )
"""
PROJECT_FILES = ("pyproject.toml", "setup.py")


@dataclasses.dataclass
class Packages:
    """The packages a submission brings.

    Attributes:
        in_drop: local files uploaded into the drop folder (inspected offline).
        staged: gs:// staging URI -> local file, uploaded to the staging bucket before the drop (inspected offline).
        remote: gs:// URIs given as they are (read and inspected by the function, not offline).
        flag_uris: packageUris the package flags imply (gcloud's order: gs:// ones, then uploaded ones), or None
            when no package flag was given (the file's packageUris, or the drop's packages, stand).
    """

    in_drop: list[Path]
    staged: dict[str, Path]
    remote: list[str]
    flag_uris: list[str] | None

    def local_uris(self, bucket: str, folder: str) -> dict[str, Path]:
        """Every local file by the gs:// URI it will have (drop folder or staging)."""
        return {**{f"gs://{bucket}/{folder}/{p.name}": p for p in self.in_drop}, **self.staged}


def build_package(package_path: Path, out_dir: Path, isolation: bool) -> Path:
    """Build an sdist of `--package-path` the way gcloud does; returns the .tar.gz.

    Raises:
        click.ClickException: not a package (no `__init__.py`) nor a project folder, or the build failed.
    """
    package_path = package_path.resolve()
    if (package_path / "__init__.py").is_file():
        root = package_path.parent
        if not (root / "setup.py").is_file():
            # Build from a copy: gcloud writes the generated setup.py into the user's folder and removes it after.
            root = out_dir / "context"
            shutil.copytree(package_path, root / package_path.name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            (root / "setup.py").write_text(DEFAULT_SETUP_FILE.format(package_name=package_path.name))
    elif any((package_path / name).is_file() for name in PROJECT_FILES):
        root = package_path  # a project folder: our extension, built as it is
    else:
        raise click.ClickException(f"--package-path {package_path} is not a valid Python package: it holds no "
                                   "__init__.py (and no pyproject.toml or setup.py). Point it at the package folder "
                                   "(e.g. ./trainer, whose parent may hold setup.py)")
    dist = out_dir / "dist"
    cmd = [sys.executable, "-m", "build", "--sdist", "--outdir", str(dist), str(root)]
    if not isolation:
        cmd.insert(4, "--no-isolation")
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise click.ClickException(f"building an sdist of {package_path} failed:\n{result.stderr[-1500:]}")
    return next(dist.glob("*.tar.gz"))


def staging_uris(paths: list[Path], staging_bucket: str, job_id: str) -> dict[str, Path]:
    """gcloud's staging layout: `gs://<bucket>/<job>/<sha256 of every file's bytes, in order>/<file name>`."""
    bucket = staging_bucket.removeprefix("gs://").rstrip("/")
    if not staging_bucket.startswith("gs://") or "/" in bucket or not naming.GCS_URI_RE.fullmatch(f"gs://{bucket}/x"):
        raise click.UsageError(f"--staging-bucket: {staging_bucket!r} is not gs://BUCKET")
    digest = hashlib.sha256()
    for path in paths:
        with path.open("rb") as stream:
            for chunk in iter(lambda: stream.read(1 << 20), b""):
                digest.update(chunk)
    names = [p.name for p in paths]
    if len(set(names)) != len(names):
        raise click.UsageError("--packages: several packages have the same file name")
    return {f"gs://{bucket}/{job_id}/{digest.hexdigest()}/{p.name}": p for p in paths}


def split_packages(raw: str | None) -> tuple[list[Path], list[str]]:
    """`--packages` -> (local files, gs:// URIs)."""
    local, remote = [], []
    for item in filter(None, (p.strip() for p in (raw or "").split(","))):
        if item.startswith("gs://"):
            remote.append(item)
        else:
            path = Path(item)
            if not path.is_file():
                raise click.UsageError(f"--packages: {item} is not a file")
            local.append(path)
    return local, remote


def resolve_packages(kw: dict[str, Any], out_dir: Path, staging_job: str, drop_files: list[Path] | None = None,
                     *, bucket: str, folder: str) -> Packages:
    """The packages of a command line: `--packages`, a built `--package-path`, `--staging-bucket`.

    Args:
        kw: the command's keyword arguments.
        out_dir: where a built sdist goes (a temporary directory that outlives the upload).
        staging_job: the job segment of staging URIs (the jobId, or the drop folder name when none is given).
        drop_files: packages already in a local drop folder (`submitter validate DROP_FOLDER`): not flags.
        bucket / folder: the drop bucket and folder local packages ride in when there is no staging bucket.
    """
    local, remote = split_packages(kw.get("packages"))
    if kw.get("package_path"):
        local.append(build_package(kw["package_path"], out_dir, bool(kw.get("build_isolation"))))
    flagged = bool(local or remote)
    staging = kw.get("staging_bucket")
    staged = staging_uris(local, staging, staging_job) if staging and local else {}
    in_drop = list(drop_files or []) + ([] if staged else local)
    flag_local = list(staged) if staged else [f"gs://{bucket}/{folder}/{p.name}" for p in local]
    return Packages(in_drop=in_drop, staged=staged, remote=remote,
                    flag_uris=remote + flag_local if flagged else None)
