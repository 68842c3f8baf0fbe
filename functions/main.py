"""Cloud Function entry points (functions-framework). Thin: all logic is in the `submitter` package.

- `on_object_finalized`: CloudEvent function for `google.cloud.storage.object.v1.finalized` on the drop
  bucket. Returns normally for everything but transient faults (errors.TransientError: answered 500, so
  Eventarc redelivers).
- `reconcile`: HTTP function called on a schedule (Cloud Scheduler; every second on the local stack);
  publishes the state changes of submitted jobs and answers a JSON summary.
"""

import json

import functions_framework

from submitter.app import get_app


@functions_framework.cloud_event
def on_object_finalized(cloud_event):
    """Storage finalize event -> at most one training job and its SUBMITTED/REJECTED event."""
    get_app().handle_cloud_event(cloud_event.get_attributes(), cloud_event.get_data())


@functions_framework.http
def reconcile(request):
    """Scheduled tick -> publish each newly observed job state; answers a JSON summary."""
    report = get_app().reconcile()
    body = {"followed": report.followed, "apiCalls": report.api_calls, "skipped": report.skipped,
            "published": [{"jobId": j, "state": s} for j, s in report.published]}
    return json.dumps(body), 200, {"Content-Type": "application/json"}
