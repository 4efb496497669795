"""``fleetplan pareto`` and ``fleetplan report``: trade-off sweeps and shareable reports."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from solver.cli.calibrate_cmd import calibration_options, planning_inputs
from solver.cli.output import emit_json, progress_bar, table
from solver.cli.params import FiniteFloat
from solver.errors import InputError
from solver.labels import config_label

# solver.pareto (OR-Tools) and solver.report (matplotlib) are imported inside the commands.
AXES = ("ttft", "tpot", "e2e", "quality")
"""The same as ``solver.pareto.AXES`` (a test keeps them equal), for the help text."""
AXIS_HELP = (f"Axis to trade against cost: {', '.join(AXES)}; two axes separated by a comma "
             "(e.g. ttft,quality) give a cost x latency x quality set.")


MAX_POINTS = 50
MAX_TIME_LIMIT_S = 86_400.0


def _check_points(points: int) -> None:
    if not 2 <= points <= MAX_POINTS:
        raise InputError(f"--points must be >= 2 and <= {MAX_POINTS} (got {points})")


@click.command("pareto")
@click.argument("problem_file", type=click.Path(path_type=Path))
@click.option("--axis", "axis", default="ttft", show_default=True, help=AXIS_HELP)
@click.option("--points", default=6, show_default=True, type=int,
              help="Settings per axis to solve at (>= 2); dominated plans are dropped.")
@click.option("--time-limit", "time_limit", default=10.0, show_default=True, type=FiniteFloat(0.01, MAX_TIME_LIMIT_S),
              help="Seconds (deterministic time) per solve.")
@click.option("--json", "as_json", is_flag=True, help="Print {axes, solves, points: [...]} as JSON.")
@calibration_options
def pareto_cmd(problem_file: Path, axis: str, points: int, time_limit: float, as_json: bool,
               calibration: Path | None, confidence: float | None) -> None:
    """Plans that trade cost against p99 latency (or quality): the non-dominated set.

    Each latency target is scaled from the tightest any candidate could meet up to twice the
    stated target; each point is a full, verified plan. Example:

    \b
      fleetplan pareto problems/chat-assistant-70b.yaml --axis ttft --points 6
    """
    from solver.catalog import load_catalog
    from solver.pareto import AXIS_KEY, pareto, parse_axes
    from solver.problem import load_problem

    axes = parse_axes(axis)
    _check_points(points)
    cat = load_catalog()
    problem = load_problem(problem_file, cat)
    cat, problem, applied = planning_inputs(cat, problem, calibration, confidence)
    with progress_bar(not as_json, "sweeping") as update:
        res = pareto(problem, cat, axes, points, time_limit, progress=update)
    if as_json:
        emit_json({**res.to_dict(), "calibration": applied.model_dump() if applied else None,
                   "confidence": problem.confidence})
    else:
        if applied:
            click.echo(applied.line())
        rows = []
        for i, p in enumerate(res.to_dict()["points"], 1):
            row = {"#": i, "cost_usd_per_hour": p["cost_usd_per_hour"]}
            row |= {AXIS_KEY[a]: p[AXIS_KEY[a]] for a in axes}
            row["plan"] = "; ".join(f"{d['model']}: {d['replicas']}x {config_label(d)}" for d in p["deployments"])
            rows.append(row)
        click.echo(f"{problem.name}: {len(rows)} Pareto-optimal plans from {res.solves} solves")
        click.echo(table(rows, ["#", "cost_usd_per_hour"] + [AXIS_KEY[a] for a in axes] + ["plan"]))
    if not res.points:
        sys.exit(1)


@click.command("report")
@click.argument("problem_files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", "out", type=click.Path(path_type=Path),
              help="Output prefix for one problem: writes OUT.md, OUT.html and OUT.json.")
@click.option("--out-dir", "out_dir", type=click.Path(path_type=Path),
              help="Folder for several problems: each writes DIR/<problem file stem>.{md,html,json}.")
@click.option("--axis", "axis", default="ttft", show_default=True, help=AXIS_HELP)
@click.option("--points", default=5, show_default=True, type=int, help="Pareto settings per axis (>= 2).")
@click.option("--time-limit", "time_limit", default=10.0, show_default=True, type=FiniteFloat(0.01, MAX_TIME_LIMIT_S),
              help="Seconds (deterministic time) per solve.")
@click.option("--json", "as_json", is_flag=True, help="Print the written paths as JSON.")
@calibration_options
def report_cmd(problem_files: tuple[Path, ...], out: Path | None, out_dir: Path | None, axis: str,
               points: int, time_limit: float, as_json: bool, calibration: Path | None,
               confidence: float | None) -> None:
    """Solve and write a report: the plan, memory budget, binding constraints, Pareto set,
    assumptions and plots (Markdown, self-contained HTML, JSON).

    \b
      fleetplan report problems/chat-assistant-70b.yaml --out reports/chat-assistant-70b
      fleetplan report problems/*.yaml --out-dir reports      # regenerate every example

    An infeasible problem still gets a report, explaining which constraints conflict; the
    exit code is then 1 (0 when every problem has a plan, 2 for bad input).
    """
    from solver.catalog import load_catalog
    from solver.pareto import parse_axes
    from solver.problem import load_problem
    from solver.report import make_report, write_report

    axes = parse_axes(axis)
    _check_points(points)
    if (out is None) == (out_dir is None):
        raise InputError("give exactly one of --out PREFIX (one problem) or --out-dir DIR")
    if out is not None and len(problem_files) != 1:
        raise InputError("--out takes one problem; use --out-dir for several")
    base = load_catalog()
    # every problem's calibration is checked before anything is written
    problems = [(f, *planning_inputs(base, load_problem(f, base), calibration, confidence)[:2])
                for f in problem_files]
    written: list[str] = []
    infeasible = False
    for path, cat, problem in problems:
        prefix = out if out is not None else out_dir / path.stem  # type: ignore[operator]
        with progress_bar(not as_json, f"{problem.name}") as update:
            content = make_report(problem, cat, axes, points, time_limit, progress=update)
        infeasible |= not content.feasible
        written += [str(p) for p in write_report(content, prefix)]
    if as_json:
        emit_json({"written": written})
    else:
        for w in written:
            click.echo(f"wrote {w}")
    if infeasible:
        sys.exit(1)
