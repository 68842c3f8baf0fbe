"""Core of the drop submitter.

Pure logic (events, drop protocol, job spec, naming, state rules, message
envelope) lives in modules with no I/O; adapters (GCS, training backends,
Pub/Sub, state store) sit behind small interfaces so the Cloud Function, the
CLI and the tests share one core.
"""
