"""Train a RandomForestClassifier on scikit-learn's bundled wine dataset, or on a folder of CSV files.

Usage::

    python -m trainer.task --job-dir gs://bucket/path [--data gs://bucket/folder/] [--n-estimators 100]
        [--max-depth N] [--criterion gini|entropy] [--test-size 0.25] [--seed 42] [--fail]

``--data`` names a folder (``gs://bucket/folder/`` or a local directory): every ``*.csv`` directly in it (names
starting with ``_`` or ``.`` are skipped, such as the ``_SUCCESS`` marker), each with a header row, numeric feature
columns and the class label in the last column, all with the same header. Without it, the wine dataset.

Writes ``model.joblib`` and ``metrics.json`` (with the data files it read) to ``--job-dir`` (a local path or
a ``gs://`` URI; on Vertex AI it defaults to ``$AIP_MODEL_DIR``, which Vertex sets
from the job's baseOutputDirectory). ``--fail`` exits with status 1 before
training, so callers can check that a failed job is reported as FAILED. In a
multi-replica job only the primary replica writes outputs (the others train and
exit), so replicas never overwrite each other's files.

Hyperparameter tuning, as AI Platform trainers do it: each trial gets its values as
``--<parameterName>=<value>`` (``--n-estimators=57``), and the trainer reports its
test accuracy with the ``cloudml-hypertune`` package under the tag ``accuracy``
(the job's ``hyperparameterMetricTag``) on every run. When ``TF_CONFIG``'s ``task.trial`` is set
(a tuning trial), the outputs go to ``<job-dir>/<trial>/`` so trials never overwrite
each other's model, as Google's samples do.
"""

import argparse
import json
import os
import sys
import tempfile

DATASET = "wine"
METRIC_TAG = "accuracy"  # the tuning job's hyperparameterMetricTag (samples/tuning/job.yaml)


def log(message):
    """Print a progress line to stdout and flush it (job logs are streamed)."""
    print(f"[trainer] {message}", flush=True)


def parse_args(argv=None):
    """Parse the command line (``job-dir`` plus hyperparameters)."""
    parser = argparse.ArgumentParser(
        prog="trainer.task", description="Train a RandomForest on the wine dataset."
    )
    model_dir = os.environ.get("AIP_MODEL_DIR")
    parser.add_argument(
        "--job-dir", required=not model_dir, default=model_dir,
        help="where outputs go: gs://bucket/path or a local directory (default: $AIP_MODEL_DIR)",
    )
    parser.add_argument(
        "--data", default=None,
        help="a folder of CSV files to train on (gs://bucket/folder/ or a local directory); default: the wine dataset",
    )
    parser.add_argument("--n-estimators", type=int, default=100)
    parser.add_argument("--max-depth", type=int, default=None)
    parser.add_argument("--criterion", choices=["gini", "entropy"], default="gini")
    parser.add_argument("--test-size", type=float, default=0.25)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--fail", action="store_true",
        help="exit with status 1 without training (for testing failure handling)",
    )
    return parser.parse_args(argv)


def hyperparameters(args):
    """The hyperparameters recorded in metrics.json."""
    return {
        "n_estimators": args.n_estimators,
        "max_depth": args.max_depth,
        "criterion": args.criterion,
        "test_size": args.test_size,
        "seed": args.seed,
    }


def is_primary(environ=os.environ):
    """True unless TF_CONFIG or Vertex's CLUSTER_SPEC names this replica a worker, parameter server or evaluator."""
    for name, primary in (("CLUSTER_SPEC", ("workerpool0",)), ("TF_CONFIG", ("master", "chief"))):
        try:
            task = json.loads(environ[name])["task"]
        except (KeyError, ValueError, TypeError):
            continue
        return task.get("type") in primary
    return True


def trial_id():
    """The tuning trial this process runs (TF_CONFIG task.trial, as AI Platform sets it, else CLOUD_ML_TRIAL_ID,
    which cloudml-hypertune reads), or None outside a tuning job."""
    try:
        task = json.loads(os.environ.get("TF_CONFIG") or "{}").get("task") or {}
    except ValueError:
        task = {}
    trial = task.get("trial") or os.environ.get("CLOUD_ML_TRIAL_ID")
    return str(trial) if trial else None


def report_metric(accuracy):
    """Report the tuning metric as AI Platform and Vertex AI read it: cloudml-hypertune writes a JSON line to
    $CLOUD_ML_HP_METRIC_FILE (default /tmp/hypertune/output.metrics), tagged with $CLOUD_ML_TRIAL_ID."""
    import hypertune

    hypertune.HyperTune().report_hyperparameter_tuning_metric(
        hyperparameter_metric_tag=METRIC_TAG, metric_value=accuracy, global_step=1)


def load_csv_folder(path):
    """Read every CSV of folder ``path`` (see the module docstring).

    Returns:
        ([(location, row count), ...], features as a float array, labels as an int array).
    Raises:
        ValueError: no CSV, a header that differs between files, or a value that is not a number.
    """
    import csv

    import numpy as np

    from trainer import io

    header, rows, files = None, [], []
    for location, text in io.read_folder(path):
        reader = csv.reader(text.splitlines())
        first = next(reader, None)
        if header is None:
            header = first
        elif first != header:
            raise ValueError(f"{location}: header {first} differs from the first file's {header}")
        body = [row for row in reader if row]
        files.append((location, len(body)))
        rows += body
    try:
        data = np.array(rows, dtype=float)
    except ValueError as exc:
        raise ValueError(f"the CSV files in {path} hold a value that is not a number: {exc}") from None
    if data.ndim != 2 or data.shape[1] < 2 or len(data) < 4:
        raise ValueError(f"the CSV files in {path} need at least 4 rows of features and a label")
    return files, data[:, :-1], data[:, -1].astype(int)


def main(argv=None):
    """Run the training job; return the process exit status."""
    args = parse_args(argv)
    if args.fail:
        print("trainer: error: --fail given, failing on purpose", file=sys.stderr, flush=True)
        return 1

    # Heavy imports live here so ``import trainer.task`` stays cheap.
    import joblib
    from sklearn.datasets import load_wine
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.metrics import accuracy_score, f1_score
    from sklearn.model_selection import train_test_split

    from trainer import io

    log(f"job dir: {args.job_dir}")
    log(f"hyperparameters: {json.dumps(hyperparameters(args), sort_keys=True)}")

    if args.data:
        files, X, y = load_csv_folder(args.data)
        dataset, stratify = "csv", None
        for location, rows in files:
            log(f"read {location}: {rows} rows")
    else:
        files = []
        X, y = load_wine(return_X_y=True)
        dataset, stratify = DATASET, y
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=args.test_size, random_state=args.seed, stratify=stratify
    )
    log(f"loaded {dataset}: {len(X_train)} train / {len(X_test)} test rows")

    model = RandomForestClassifier(
        n_estimators=args.n_estimators, max_depth=args.max_depth, criterion=args.criterion,
        random_state=args.seed,
    )
    log("training RandomForestClassifier")
    model.fit(X_train, y_train)

    predictions = model.predict(X_test)
    metrics = {
        "accuracy": float(accuracy_score(y_test, predictions)),
        "f1_macro": float(f1_score(y_test, predictions, average="macro")),
        "n_train": int(len(X_train)),
        "n_test": int(len(X_test)),
        "dataset": dataset,
        "hyperparameters": hyperparameters(args),
    }
    if args.data:
        metrics.update(data=args.data, data_files=[location for location, _ in files], n_rows=int(len(X)))
    log(f"accuracy={metrics['accuracy']:.4f} f1_macro={metrics['f1_macro']:.4f}")
    if not is_primary():
        log("not the primary replica: the outputs and the tuning metric are the primary's")
        return 0
    # Reported on every run, as AI Platform trainers do: only a tuning job reads it.
    report_metric(metrics["accuracy"])
    trial = trial_id()
    if trial:
        metrics["trial"] = trial
        log(f"trial {trial}: reported {METRIC_TAG}={metrics['accuracy']:.4f} with cloudml-hypertune")
    out_dir = f"{args.job_dir.rstrip('/')}/{trial}" if trial else args.job_dir

    with tempfile.TemporaryDirectory() as tmp:
        model_path = os.path.join(tmp, "model.joblib")
        metrics_path = os.path.join(tmp, "metrics.json")
        joblib.dump(model, model_path)
        with open(metrics_path, "w") as fh:
            json.dump(metrics, fh, indent=2)
            fh.write("\n")
        client = io.storage_client() if io.is_gcs(out_dir) else None
        for name, path in (("model.joblib", model_path), ("metrics.json", metrics_path)):
            log(f"wrote {io.write_file(out_dir, name, path, client=client)}")

    log("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
