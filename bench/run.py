"""Issue 18's benchmark: every figure as a ratio against a baseline measured in the same run -> bench/RESULTS.md.

    make bench          python -m bench.run --runs 5             (every row, full sizes)
    make bench-smoke    python -m bench.run --smoke              (1 run each, small sizes, a few minutes)
    python -m bench.run --rows 1,3,5 --runs 7 --out /tmp/RESULTS.md

Rows (README "Benchmarks" says what each means): 1 cold start, 2 one drop in-process (time, memory), 3 storage
requests per drop, 4 CLI vs gcloud, 5 burst on the local stack, 6 trivial job vs gcloud local train, 7 state
change -> event delay, 8 reconciler API calls per tick, 9 burst against a create quota on a virtual clock.
Timed figures are the median of --runs interleaved runs (baseline, product, baseline, ...) with min and max;
counts and the simulation are deterministic and run once. Nothing here asserts a timing: a target that does
not hold is reported as such. A row that cannot run (no gcloud, a stack that does not start) says why.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import shlex
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from . import REPO
from .common import Row, machine, unmeasured

ALL_ROWS = (1, 2, 3, 4, 5, 6, 7, 8, 9)
SLOW_ROWS = {5: 3}  # row -> most runs in a full run: a 500-drop burst takes about a minute on a 2-core machine


def _rows(spec: str) -> set[int]:
    rows = {int(x) for x in spec.split(",") if x.strip()}
    if not rows <= set(ALL_ROWS):
        raise argparse.ArgumentTypeError(f"rows are 1..9, got {spec}")
    return rows


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5, help="interleaved runs per timed figure (default 5)")
    parser.add_argument("--smoke", action="store_true", help="1 run each, small sizes (bench-smoke)")
    parser.add_argument("--rows", type=_rows, default=set(ALL_ROWS), help="comma-separated rows, e.g. 1,3,5")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "RESULTS.md", help="where to write the table")
    args = parser.parse_args(argv)
    if args.smoke:
        args.runs = 1
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    return args


def sections(args: argparse.Namespace) -> list[tuple[set[int], Callable[[], list[Row]]]]:
    """(rows, how to measure them), in the order they run; each imported only when it runs."""
    runs, smoke = args.runs, args.smoke

    def slow(row: int) -> int:
        return runs if smoke else min(runs, SLOW_ROWS.get(row, runs))

    def stack(rows: set[int]) -> Callable[[], list[Row]]:
        def go() -> list[Row]:
            from . import stack_rows

            out = []
            if 5 in rows:
                out += stack_rows.run(slow(5), smoke, {5})
            if rows & {6, 7}:
                out += stack_rows.run(runs, smoke, rows & {6, 7})
            return out
        return go

    def module(name: str, *extra: object) -> Callable[[], list[Row]]:
        def go() -> list[Row]:
            import importlib

            rows: list[Row] = importlib.import_module(f"bench.{name}").run(runs, smoke, *extra)
            return rows
        return go

    return [({2, 3}, module("in_process")), ({8}, module("reconciler_calls")), ({9}, module("simulation")),
            ({1}, module("cold_start")), ({4}, module("cli_vs_gcloud")), ({5, 6, 7}, stack(args.rows & {5, 6, 7}))]


PLACEHOLDER = {1: ("1", "cold start", "≤ 1.15×"), 2: ("2", "one drop in-process", "≤ 1.5×"),
               3: ("3", "storage requests per drop", "≤ 8"), 4: ("4", "CLI vs gcloud", "≤ 0.4× / 0.3×"),
               5: ("5", "burst on the stack", "≤ 2×"), 6: ("6", "trivial job", "≤ 1.0×"),
               7: ("7 (local)", "state change → event", "p95 ≤ 5 s"), 8: ("8", "reconciler calls", "≤ N/100 + fin."),
               9: ("9", "burst against quota (simulated)", "≤ 1.2×")}


def measure(args: argparse.Namespace, say: Callable[[str], None]) -> list[Row]:
    """Every selected row; a section that fails becomes rows saying why (the run goes on)."""
    results: list[Row] = []
    for rows, go in sections(args):
        wanted = rows & args.rows
        if not wanted:
            continue
        start = time.monotonic()
        say(f"rows {','.join(map(str, sorted(wanted)))} ...")
        try:
            found = [r for r in go() if r.number in wanted]
        except Exception as exc:  # one failing row must not cost the others
            traceback.print_exc()
            why = f"{type(exc).__name__}: {str(exc)[:300]}".replace("\n", " ")
            found = [unmeasured(n, *PLACEHOLDER[n], why) for n in sorted(wanted)]
        say(f"rows {','.join(map(str, sorted(wanted)))} done in {time.monotonic() - start:.0f} s")
        results += found
    return sorted(results, key=lambda r: r.number)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render(rows: list[Row], args: argparse.Namespace, command: str, started: dt.datetime, seconds: float) -> str:
    """RESULTS.md: machine, date, command, the table, then each row's notes."""
    holds = {True: "yes", False: "no", None: "—"}
    load = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    lines = [
        "# Benchmark results (issue 18)",
        "",
        "Generated by `bench/run.py`; README.md's \"Benchmarks\" section says how to read it. Ratios are figure ÷ "
        "baseline, both measured in this run; timed figures show the median of the interleaved runs with "
        "(min–max, n). \"holds\" compares the median (or the count) with the issue's target.",
        "",
        f"- Machine: {machine()}; load average at the end {load} (shared with other work: noisy)",
        f"- Date: {started:%Y-%m-%d %H:%M} UTC; the run took {seconds / 60:.1f} min",
        f"- Command: `{command}`" + (" (smoke: 1 run each, small sizes)" if args.smoke else
                                     f" ({args.runs} interleaved runs; row 5: "
                                     f"{min(args.runs, SLOW_ROWS[5])} runs of the 500-drop burst, 30-60 s each "
                                     "on 2 cores)"),
        "",
        "| # | Figure | Baseline (same run) | Ratio | Target | Holds |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {_cell(r.label)} | {_cell(r.figure)} | {_cell(r.baseline)} | {_cell(r.ratio)} | "
                     f"{_cell(r.target)} | {holds[r.holds]} |")
    lines += ["", "## Notes", ""]
    lines += [f"- **{r.label}**: {r.note}" for r in rows if r.note]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Measure, print the table, write --out."""
    args = parse_args(argv)
    logging.disable(logging.WARNING)  # the product's own warnings (retired runtime, 429s) would drown the output
    started = dt.datetime.now(dt.UTC)
    t0 = time.monotonic()
    command = "python -m bench.run " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    rows = measure(args, lambda line: print(f"[bench {time.monotonic() - t0:6.0f} s] {line}", flush=True))
    text = render(rows, args, command.strip(), started, time.monotonic() - t0)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
