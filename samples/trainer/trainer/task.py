"""Train a RandomForestClassifier on scikit-learn's bundled wine dataset, or on a folder of CSV files.

Usage::

    python -m trainer.task --job-dir gs://bucket/path [--data gs://bucket/folder/]
        [--n-estimators 100] [--max-depth N] [--test-size 0.25] [--seed 42] [--fail]

``--data`` names a folder (``gs://bucket/folder/`` or a local directory): every ``*.csv`` directly in it (names
starting with ``_`` or ``.`` are skipped, such as the ``_SUCCESS`` marker), each with a header row, numeric feature
columns and the class label in the last column, all with the same header. Without it, the wine dataset.

Writes ``model.joblib`` and ``metrics.json`` (with the data files it read) to ``--job-dir`` (a local path or
a ``gs://`` URI). ``--fail`` exits with status 1 before training, so callers can
check that a failed job is reported as FAILED.
"""

import argparse
import json
import os
import sys
import tempfile

DATASET = "wine"


def log(message):
    """Print a progress line to stdout and flush it (job logs are streamed)."""
    print(f"[trainer] {message}", flush=True)


def parse_args(argv=None):
    """Parse the command line (``job-dir`` plus hyperparameters)."""
    parser = argparse.ArgumentParser(
        prog="trainer.task", description="Train a RandomForest on the wine dataset."
    )
    parser.add_argument(
        "--job-dir", required=True,
        help="where outputs go: gs://bucket/path or a local directory",
    )
    parser.add_argument(
        "--data", default=None,
        help="a folder of CSV files to train on (gs://bucket/folder/ or a local directory); default: the wine dataset",
    )
    parser.add_argument("--n-estimators", type=int, default=100)
    parser.add_argument("--max-depth", type=int, default=None)
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
        "test_size": args.test_size,
        "seed": args.seed,
    }


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
        n_estimators=args.n_estimators, max_depth=args.max_depth, random_state=args.seed
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

    with tempfile.TemporaryDirectory() as tmp:
        model_path = os.path.join(tmp, "model.joblib")
        metrics_path = os.path.join(tmp, "metrics.json")
        joblib.dump(model, model_path)
        with open(metrics_path, "w") as fh:
            json.dump(metrics, fh, indent=2)
            fh.write("\n")
        client = io.storage_client() if io.is_gcs(args.job_dir) else None
        for name, path in (("model.joblib", model_path), ("metrics.json", metrics_path)):
            log(f"wrote {io.write_file(args.job_dir, name, path, client=client)}")

    log("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
