"""`submitter logs JOB_ID [--replica master-0] [--follow]`: a job's training output, where the backend offers it.

Sources:
  - the local training service (an endpoint override `SUBMITTER_TRAINING_API_ENDPOINT` is set): its
    extension `GET {endpoint}/local/v1/projects/{project}/jobs/{jobId}/logs?replica=<type>-<index>&offset=N`,
    text/plain (the replica's combined stdout and stderr from byte N), next offset in `X-Next-Offset`;
    no replica means the primary (`master-0`). See local/submitter_local/training/api.py.
  - the cloud backends write job output to Cloud Logging, which this command does not read; it prints the
    `gcloud logging read` filter to use and exits 1. AI Platform Training (ml_v1): `resource.type="ml_job"
    AND resource.labels.job_id="<jobId>"`. Vertex AI (vertex): the job is looked up by its key first, because
    Vertex logs custom jobs under their numeric id: `resource.type="ml_job" AND resource.labels.job_id="<id>"`,
    and a replica as `resource.labels.task_name="workerpool<pool>-<index>"` (the filter gcloud's own
    `gcloud ai custom-jobs stream-logs` uses: googlecloudsdk/command_lib/ai/log_util.py).

Exit codes: 0 the output was printed (with --follow: the job reached a final state); 1 no logs here (cloud
backend), unknown job or replica, or the service cannot be reached.
"""

from __future__ import annotations

import sys
import time
from urllib.parse import urlparse

import click

from .common import load_settings

HTTP_TIMEOUT_S = 30
FOLLOW_INTERVAL_S = 1.0


def cloud_logging_hint(project: str, job_id: str, replica: str | None) -> str:
    """Where a cloud job's output is, with the Cloud Logging filter to read it."""
    query = f'resource.type="ml_job" AND resource.labels.job_id="{job_id}"'
    if replica:
        kind, _, index = replica.rpartition("-")
        query += f' AND labels.task_name="{kind}-replica-{index}"'
    return ("The cloud backend keeps job output in Cloud Logging; this command reads logs only from the local "
            "training service (SUBMITTER_TRAINING_API_ENDPOINT). Read them with:\n"
            f"  gcloud logging read '{query}' --project={project} --order=asc --format='value(textPayload)'")


# TF_CONFIG task names -> Vertex worker pools (workerPoolSpecs[0] primary, [1] workers, [2] parameter servers,
# [3] evaluators: https://cloud.google.com/vertex-ai/docs/training/distributed-training).
VERTEX_POOLS = {"master": 0, "chief": 0, "worker": 1, "ps": 2, "evaluator": 3}


def vertex_logging_hint(project: str, resource_name: str, replica: str | None) -> str:
    """Where a Vertex AI custom job's output is: the Cloud Logging filter for its numeric id (and replica)."""
    job_id = resource_name.rsplit("/", 1)[-1]
    query = f'resource.type="ml_job" AND resource.labels.job_id="{job_id}"'
    if replica:
        kind, _, index = replica.rpartition("-")
        if kind not in VERTEX_POOLS or not index.isdigit():
            raise click.UsageError(f"--replica {replica!r}: give master-0, worker-N, ps-N or evaluator-N")
        query += f' AND resource.labels.task_name="workerpool{VERTEX_POOLS[kind]}-{index}"'
    return ("Vertex AI keeps job output in Cloud Logging; this command reads logs only from the local training "
            f"service (SUBMITTER_TRAINING_API_ENDPOINT). {resource_name} logs under job id {job_id}. Read them "
            f"with:\n  gcloud logging read '{query}' --project={project} --order=asc --format='value(textPayload)'")


def _vertex_hint(settings, job_id: str, replica: str | None) -> str:  # type: ignore[no-untyped-def]
    from .common import backend, call

    found = call(lambda: backend(settings).find(job_id))
    if found is None:
        raise click.ClickException(f"job {job_id} not found in Vertex AI (looked for the label the submitter puts "
                                   "on its jobs, in the default and allowed regions)")
    return vertex_logging_hint(settings.project, found.handle.name, replica)


def _local_endpoint(endpoint: str | None) -> bool:
    """True for an endpoint override that is not one of Google's hosts (the local training service)."""
    return bool(endpoint) and not (urlparse(endpoint).hostname or "").endswith("googleapis.com")


def _fetch(url: str, replica: str | None, offset: int) -> tuple[bytes, int]:
    import requests

    params = {"offset": offset}
    if replica:
        params["replica"] = replica
    try:
        answer = requests.get(url, params=params, timeout=HTTP_TIMEOUT_S)
    except requests.RequestException as exc:
        raise click.ClickException(f"training service at {url} cannot be reached: {exc}") from None
    if answer.status_code != 200:
        try:
            error = answer.json()["error"]
            detail = f"{error.get('code')} {error.get('status')}: {error.get('message')}"
        except (ValueError, KeyError, TypeError):
            detail = f"{answer.status_code}: {answer.text[:300]}"
        raise click.ClickException(f"training service: {detail}")
    return answer.content, int(answer.headers.get("X-Next-Offset") or offset + len(answer.content))


@click.command()
@click.argument("job_id")
@click.option("--replica", default=None, metavar="TYPE-INDEX",
              help="replica as in TF_CONFIG: master-0 (default: the primary), worker-1, ps-0, evaluator-0")
@click.option("--follow", "-f", is_flag=True, help="keep printing new output until the job is final")
def logs(job_id: str, replica: str | None, follow: bool) -> None:
    """Print a job's training output (stdout and stderr of one replica), from the local training service.

    For the cloud backend, prints the Cloud Logging filter to use instead and exits 1.
    """
    settings = load_settings()
    if not _local_endpoint(settings.training_api_endpoint):
        if settings.backend == "vertex":
            click.echo(_vertex_hint(settings, job_id, replica), err=True)
        else:
            click.echo(cloud_logging_hint(settings.project, job_id, replica), err=True)
        sys.exit(1)
    url = (f"{settings.training_api_endpoint.rstrip('/')}/local/v1/projects/{settings.project}/jobs/"
           f"{job_id}/logs")
    out = click.get_binary_stream("stdout")
    offset = 0
    while True:
        data, offset = _fetch(url, replica, offset)
        out.write(data)
        out.flush()
        if not follow:
            return
        if _final(settings, job_id):
            data, offset = _fetch(url, replica, offset)  # what was written before the job ended
            out.write(data)
            out.flush()
            return
        time.sleep(FOLLOW_INTERVAL_S)


def _final(settings, job_id: str) -> bool:  # type: ignore[no-untyped-def]
    from submitter.backends import build_backend
    from submitter.errors import BackendRefused, BackendUnavailable

    try:
        found = build_backend(settings).find(job_id)
    except BackendUnavailable:
        return False
    except BackendRefused as exc:
        raise click.ClickException(f"training API: {exc}") from None
    return found is not None and found.state is not None and found.state.is_terminal


__all__ = ["logs", "cloud_logging_hint", "vertex_logging_hint"]
