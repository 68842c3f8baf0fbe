"""`submitter trials JOB_ID [--plot study.png] [--json]`: a hyperparameter tuning job's trials, best first.

Reads the job through the deployment's backend (`find` by key, as `submitter status` does), so it shows the study
as the training API reports it now, while it runs and after: ml v1 `trainingOutput.trials[]` and Vertex
`HyperparameterTuningJob.trials[]` both arrive as the neutral `model.Study`. `--plot` writes a PNG (matplotlib,
from requirements-dev.txt: the CLI is never deployed): the objective per trial, with the best so far, and the
objective against each parameter. Exit 0; 1 when the job is not found or is not a tuning job.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import click

from submitter.model import JobStatus, Study, Trial

from .common import backend as _backend_for
from .common import call as _call
from .common import load_settings as _settings


def table(status: JobStatus) -> list[str]:
    """The study as text lines: a summary line, then one row per trial, best first.

    Example::

        tune_1  RUNNING  MAXIMIZE accuracy  3 of 6 trials, 2 succeeded, 0 failed; best: trial 2 (0.9778)
          #  trial  state      accuracy  step  n-estimators  max-depth  criterion
          1      2  SUCCEEDED    0.9778     1            57          9  entropy
          2      1  SUCCEEDED    0.9556     1            12          3  gini
          -      3  RUNNING           -     -           140          6  gini
    """
    study = status.study
    assert study is not None
    best = study.best()
    failed = sum(1 for t in study.trials if t.state is not None and t.state.value == "FAILED")
    head = (f"{status.handle.key or status.handle.name}  {status.state.value if status.state else status.api_state}  "
            f"{study.goal} {study.metric_tag}  {len(study.trials)} of {study.max_trials or '?'} trials, "
            f"{study.completed_count} succeeded, {failed} failed; best: "
            + (f"trial {best.trial_id} ({_number(best.final.value)})" if best and best.final else "none yet"))
    names = _parameter_names(study)
    header = ["#", "trial", "state", study.metric_tag, "step", *names]
    rows = []
    rank = 0
    for trial in study.ranked():
        scored = trial.final is not None and trial.state is not None and trial.state.value == "SUCCEEDED"
        rank += scored
        state = (trial.state.value if trial.state else "?") + (" (stopped early)" if trial.stopped_early else "")
        rows.append([str(rank) if scored else "-", trial.trial_id, state,
                     _number(trial.final.value) if trial.final else "-",
                     str(trial.final.step) if trial.final else "-",
                     *(trial.hyperparameters.get(n, "") for n in names)])
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    numeric = {0, 1, 3, 4}

    def line(cells: list[str]) -> str:
        return "  " + "  ".join(str(c).rjust(w) if i in numeric else str(c).ljust(w)
                                for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    return [head, line(header), *(line(r) for r in rows)]


def as_json(status: JobStatus) -> dict[str, Any]:
    """{"jobId", "state", "tuning": <the events' trial summary>, "trials": [best first, as the events carry them]}."""
    study = status.study
    assert study is not None
    return {"jobId": status.handle.key, "state": status.state.value if status.state else status.api_state,
            "tuning": study.summary(), "trials": [t.as_dict() for t in study.ranked()]}


def plot(study: Study, path: Path, title: str = "") -> Path:
    """Write a PNG of the study to `path`: the objective of each trial by trial id, with the best value so far as a
    step line, then one panel per parameter with the objective against its values (categories on their own
    positions; a numeric axis on a log scale when its values span more than two decades). Trials without a final
    metric are left out. Returns `path`.
    Raises:
        click.ClickException: matplotlib is not installed.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise click.ClickException("--plot needs matplotlib: pip install -r requirements-dev.txt") from None
    scored = sorted((t for t in study.trials if t.final is not None), key=lambda t: _id(t.trial_id))
    names = _parameter_names(study)
    panels = 1 + len(names)
    cols = min(panels, 3)
    rows = math.ceil(panels / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.5 * cols, 3.6 * rows), squeeze=False)
    flat = [ax for row in axes for ax in row]
    best = study.best()
    ax = flat[0]
    ids = [_id(t.trial_id) for t in scored]
    values = [t.final.value for t in scored]  # type: ignore[union-attr]
    ax.scatter(ids, values, color="tab:blue", zorder=3, label="trial")
    running: list[float] = []
    for v in values:
        running.append(v if not running else (max if study.goal == "MAXIMIZE" else min)(running[-1], v))
    if ids:
        ax.step(ids, running, where="post", color="tab:orange", label="best so far")
    if best is not None and best.final is not None:
        ax.scatter([_id(best.trial_id)], [best.final.value], s=160, facecolors="none", edgecolors="tab:red",
                   zorder=4, label=f"best: trial {best.trial_id}")
    ax.set_xlabel("trial")
    ax.set_ylabel(study.metric_tag)
    ax.set_title(f"{study.metric_tag} per trial ({study.goal.lower()})")
    ax.legend(fontsize="small")
    for ax, name in zip(flat[1:], names):
        _parameter_panel(ax, name, scored, best, study.metric_tag)
    for ax in flat[panels:]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _parameter_panel(ax: Any, name: str, scored: list[Trial], best: Trial | None, tag: str) -> None:
    raw = [t.hyperparameters.get(name) for t in scored]
    numbers = [_float(v) for v in raw]
    ys = [t.final.value for t in scored]  # type: ignore[union-attr]
    if all(n is not None for n in numbers):
        xs = [float(n) for n in numbers]  # type: ignore[arg-type]
        if xs and min(xs) > 0 and max(xs) / min(xs) > 100:
            ax.set_xscale("log")
    else:
        categories = sorted({str(v) for v in raw})
        xs = [float(categories.index(str(v))) for v in raw]
        ax.set_xticks(range(len(categories)), categories)
    ax.scatter(xs, ys, color="tab:blue", zorder=3)
    if best is not None and best in scored:
        i = scored.index(best)
        ax.scatter([xs[i]], [ys[i]], s=160, facecolors="none", edgecolors="tab:red", zorder=4)
    ax.set_xlabel(name)
    ax.set_ylabel(tag)
    ax.set_title(f"{tag} against {name}")


def _parameter_names(study: Study) -> list[str]:
    names: dict[str, None] = {}
    for trial in sorted(study.trials, key=lambda t: _id(t.trial_id)):
        names.update(dict.fromkeys(trial.hyperparameters))
    return list(names)


def _float(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _id(trial_id: str) -> float:
    return float(trial_id) if trial_id.isdigit() else math.inf


def _number(value: float) -> str:
    return f"{value:.6g}"


@click.command("trials")
@click.argument("job_id")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="also write a PNG: the objective per trial and against each parameter")
@click.option("--json", "json_out", is_flag=True, help="print the trials as JSON (best first)")
def trials(job_id: str, plot_path: Path | None, json_out: bool) -> None:
    """Show a hyperparameter tuning job's trials, best first (works while the study runs)."""
    from submitter.naming import JOB_ID_RULE, is_valid_job_id

    if not is_valid_job_id(job_id):
        raise click.UsageError(f"{job_id!r} is not a jobId ({JOB_ID_RULE})")
    backend = _backend_for(_settings())
    status = _call(lambda: backend.find(job_id))
    if status is None:
        raise click.ClickException(f"job {job_id} not found in the training API")
    if status.study is None:
        raise click.ClickException(f"job {job_id} is not a hyperparameter tuning job (no trainingInput."
                                   "hyperparameters)")
    if json_out:
        click.echo(json.dumps(as_json(status), indent=2))
    else:
        for text in table(status):
            click.echo(text)
    if plot_path is not None:
        written = plot(status.study, plot_path, title=f"{job_id} ({status.state.value if status.state else '?'})")
        click.echo(f"wrote {written}", err=json_out)
