"""Issue 14: refusals name the remedy. Recorded Google error payloads (the shape of
https://cloud.google.com/apis/design/errors, with google.rpc ErrorInfo, QuotaFailure and Help details) go
through the classifier the adapters use, and through a whole drop, and the message a user reads says what
to do: which API to enable, which permission to grant to whom on what, which quota, which project."""

from __future__ import annotations

import json

import pytest

from submitter.backends.google_errors import CallContext, classify
from submitter.errors import BackendRefused, BackendUnavailable

from conftest import World

CTX = CallContext(project="demo-project", region="us-central1",
                  identity="drop-submitter@demo-project.iam.gserviceaccount.com", api="ml.googleapis.com")

SERVICE_DISABLED = {"error": {"code": 403, "status": "PERMISSION_DENIED", "message": (
    "AI Platform Training & Prediction API has not been used in project 123456 before or it is disabled."),
    "details": [
        {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "SERVICE_DISABLED",
         "domain": "googleapis.com",
         "metadata": {"service": "ml.googleapis.com", "consumer": "projects/123456",
                      "activationUrl": "https://console.developers.google.com/apis/api/ml.googleapis.com/overview"}},
        {"@type": "type.googleapis.com/google.rpc.Help", "links": [
            {"description": "Google developers console API activation",
             "url": "https://console.developers.google.com/apis/api/ml.googleapis.com/overview?project=123456"}]}]}}

IAM_DENIED = {"error": {"code": 403, "status": "PERMISSION_DENIED", "message": (
    "Permission 'aiplatform.customJobs.create' denied on resource "
    "'//aiplatform.googleapis.com/projects/demo-project/locations/us-central1' (or it may not exist)."),
    "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "IAM_PERMISSION_DENIED",
                 "domain": "aiplatform.googleapis.com",
                 "metadata": {"permission": "aiplatform.customJobs.create",
                              "resource": "projects/demo-project/locations/us-central1"}}]}}

PROJECT_NOT_FOUND = {"error": {"code": 404, "status": "NOT_FOUND",
                               "message": "Project 'projects/demo-projcet' not found or permission denied."}}

QUOTA = {"error": {"code": 429, "status": "RESOURCE_EXHAUSTED", "message": "Quota exceeded.", "details": [
    {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [
        {"subject": "project:demo-project", "description": "The request for 8 NVIDIA_TESLA_V100 accelerators "
                                                           "exceeds the allowed maximum of 0 in us-central1."}]},
    {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "RATE_LIMIT_EXCEEDED",
     "domain": "googleapis.com", "metadata": {"quota_metric": "ml.googleapis.com/gpus_per_region"}}]}}


def test_service_disabled_names_the_api_the_project_and_the_command():
    err = classify(403, json.dumps(SERVICE_DISABLED), CTX)
    assert isinstance(err, BackendRefused) and err.reason == "PERMISSION_DENIED"
    assert "gcloud services enable ml.googleapis.com --project 123456" in err.message
    assert "console.developers.google.com/apis/api/ml.googleapis.com" in err.message


def test_permission_denied_names_the_permission_the_resource_and_the_identity():
    err = classify(403, json.dumps(IAM_DENIED), CTX)
    assert "drop-submitter@demo-project.iam.gserviceaccount.com" in err.message
    assert "aiplatform.customJobs.create" in err.message
    assert "projects/demo-project/locations/us-central1" in err.message and "roles/aiplatform.user" in err.message


def test_a_bare_404_points_at_the_project_and_region():
    err = classify(404, json.dumps(PROJECT_NOT_FOUND), CTX)
    assert err.reason == "NOT_FOUND"
    assert "Check that project demo-project and region us-central1 exist" in err.message


def test_quota_names_the_quota_and_is_permanent():
    err = classify(429, json.dumps(QUOTA), CTX)
    assert isinstance(err, BackendRefused) and err.reason == "QUOTA_EXCEEDED"
    assert "ml.googleapis.com/gpus_per_region" in err.message and "allowed maximum of 0" in err.message
    plain = classify(429, json.dumps({"error": {"code": 429, "status": "RESOURCE_EXHAUSTED", "message": "slow"}}))
    assert isinstance(plain, BackendUnavailable)


@pytest.mark.parametrize("payload, words", [(SERVICE_DISABLED, "gcloud services enable ml.googleapis.com"),
                                            (IAM_DENIED, "aiplatform.customJobs.create"),
                                            (QUOTA, "ml.googleapis.com/gpus_per_region")])
def test_the_remedy_reaches_the_submit_failed_event_and_the_status(payload, words):
    w = World()
    code = payload["error"]["code"]
    w.api.errors["create"] = [(code, payload)]
    out = w.drop("incoming/refused")
    assert out.action == "submit_failed"
    [data] = [json.loads(m.data) for m in w.publisher.messages]
    assert data["state"] == "SUBMIT_FAILED" and words in data["message"]
    assert words in w.ledger.status("status/drop-bucket/incoming/refused.json").message
