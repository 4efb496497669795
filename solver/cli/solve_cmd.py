"""``fleetplan solve``, ``query``, ``capacity`` and ``explain``: the optimiser's commands.

Exit codes: 0 a plan (optimal or feasible within the time limit), 1 infeasible (with the
conflicting constraint families) or no plan within the time limit, 2 bad input.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from typing import TYPE_CHECKING

from solver.cli import EXIT_INFEASIBLE
from solver.cli.output import emit_json, fmt, progress_bar, table
from solver.errors import InputError
from solver.optimize import DEFAULT_TIME_LIMIT_S, DEFAULT_WORKERS

if TYPE_CHECKING:
    from solver.plan import Plan

# The library (OR-Tools, numpy, the catalog) is imported inside each command, so that
# `fleetplan --help` and the commands that do not solve stay fast.

_DEPLOY_COLS = ["model", "accelerator", "quant", "kv_dtype", "tp", "pp", "ep", "max_batch",
                "replicas", "gpus", "load_rps", "capacity_rps", "ttft_p99_ms", "tpot_p99_ms",
                "e2e_p99_ms", "cost_usd_per_hour"]


def _time_limit(f):  # type: ignore[no-untyped-def]
    f = click.option("--workers", type=click.IntRange(1, 64), default=DEFAULT_WORKERS, show_default=True,
                     help="CP-SAT worker threads (results are deterministic for a given count).")(f)
    return click.option("--time-limit", "time_limit", type=click.FloatRange(min=0.01), default=DEFAULT_TIME_LIMIT_S,
                        show_default=True, help="Solver time limit, seconds; the best plan and its gap are returned.")(f)


def _print_plan(plan: Plan) -> None:
    head = f"{plan.problem}: {plan.status.value}"
    if plan.status.has_plan:
        gap = f", gap {plan.gap:.2%}" if plan.gap else ""
        head += f" — ${plan.cost_usd_per_hour:,.2f}/h, {plan.gpus} GPUs{gap} ({plan.solve_seconds:.2f}s)"
        click.echo(head)
        rows = [d.to_dict() for d in plan.deployments]
        click.echo(table(rows, _DEPLOY_COLS))
        if plan.systems:
            click.echo("")
            click.echo(table([s.to_dict() for s in plan.systems],
                             ["accelerator", "system", "gpus_used", "gpus_provisioned", "nodes",
                              "power_kw", "cost_usd_per_hour"]))
        return
    click.echo(f"{head} ({plan.solve_seconds:.2f}s)")
    from solver.plan import Termination

    if plan.explanation and plan.conflict_termination is Termination.UNKNOWN_AT_TIME_LIMIT:
        for line in plan.explanation:
            click.echo(line)
    elif plan.explanation:
        click.echo("No plan meets all of these together:")
        for line in plan.explanation:
            click.echo(f"  - {line}")
    elif plan.status.value == "unknown":
        click.echo("No plan found within the time limit (this does not prove infeasibility); raise --time-limit.")


def _finish(plan: Plan, as_json: bool) -> None:
    if as_json:
        emit_json(plan)
    else:
        _print_plan(plan)
    if not plan.status.has_plan:
        sys.exit(EXIT_INFEASIBLE)


@click.command()
@click.argument("problem_file", type=click.Path(path_type=Path))
@_time_limit
@click.option("--pareto/--no-pareto", "with_pareto", default=True, show_default=True,
              help="Also sweep the cost-latency Pareto set (a few extra solves).")
@click.option("--axis", default=None,
              help="Latency axis of the Pareto set: ttft, tpot or e2e "
                   "(default: ttft if any model targets it, else tpot, else e2e).")
@click.option("--points", type=click.IntRange(min=2), default=5, show_default=True,
              help="Settings of the Pareto sweep.")
@click.option("--json", "as_json", is_flag=True,
              help="Print the plan as JSON (with a 'pareto' object unless --no-pareto).")
def solve(problem_file: Path, time_limit: float, workers: int, with_pareto: bool, axis: str | None,
          points: int, as_json: bool) -> None:
    """Cheapest fleet for PROBLEM_FILE that meets every target and limit, and beside it the
    Pareto set of plans trading cost against p99 latency.

    Prints the deployments (configuration, replicas, load share, p99 latencies at that load,
    cost) and the GPUs provisioned per node shape; an infeasible problem prints the minimal set
    of conflicting constraint families, one sentence each (exit 1).

    \b
      fleetplan solve problems/chat-assistant-70b.yaml
      fleetplan solve problems/multi-model-fleet.yaml --no-pareto --json
    """
    from solver import api
    from solver.catalog import load_catalog
    from solver.pareto import AXIS_KEY, default_axis, pareto, parse_axes
    from solver.problem import load_problem

    cat = load_catalog()
    problem = load_problem(problem_file, cat)
    axes = parse_axes(axis or default_axis(problem))
    if any(a == "quality" for a in axes):
        raise InputError("--axis: solve sweeps a latency axis (ttft, tpot, e2e); use `fleetplan pareto --axis quality`")
    plan = api.solve(problem, cat, time_limit, workers)
    front = None
    if with_pareto and plan.status.has_plan:
        with progress_bar(not as_json, "Pareto sweep") as update:
            front = pareto(problem, cat, axes, points, time_limit, workers, progress=update, base_plan=plan)
    if as_json:
        out = plan.to_dict()
        if front is not None:
            out["pareto"] = front.to_dict()
        emit_json(out)
    else:
        _print_plan(plan)
        if front is not None:
            click.echo("")
            click.echo(f"Pareto set, cost vs worst p99 {axes[0].upper()} ({len(front.points)} plans, {front.solves} solves):")
            key = AXIS_KEY[axes[0]]
            rows = [{"cost_usd_per_hour": p["cost_usd_per_hour"], key: p[key],
                     "plan": "; ".join(f"{d['model']}: {d['replicas']}x {d['accelerator']} {d['quant']} TP{d['tp']}"
                                       for d in p["deployments"])}
                    for p in front.to_dict()["points"]]
            click.echo(table(rows, ["cost_usd_per_hour", key, "plan"]))
    if not plan.status.has_plan:
        sys.exit(EXIT_INFEASIBLE)


@click.command()
@click.argument("problem_file", type=click.Path(path_type=Path))
@_time_limit
@click.option("--json", "as_json", is_flag=True, help="Print the plan and bindings as JSON.")
def explain(problem_file: Path, time_limit: float, workers: int, as_json: bool) -> None:
    """Solve PROBLEM_FILE and say which constraint families bind the plan.

    Each family is relaxed alone and the plan re-optimised: a family binds when relaxing it
    lowers the cost (latency targets also bind when they set a replica's capacity).
    """
    from solver import api
    from solver.catalog import load_catalog
    from solver.problem import load_problem

    cat = load_catalog()
    problem = load_problem(problem_file, cat)
    ex = api.explain(problem, cat, time_limit, workers)
    if as_json:
        emit_json(ex)
    else:
        _print_plan(ex.plan)
        if ex.bindings:
            click.echo("")
            click.echo("Constraint families (binding: relaxing it would change the plan):")
            for b in ex.bindings:
                mark = "BINDS" if b.binding else "slack"
                click.echo(f"  {mark}  {b.name:<28} {b.description}; {b.detail}")
    if not ex.plan.status.has_plan:
        sys.exit(EXIT_INFEASIBLE)


def _targets(f):  # type: ignore[no-untyped-def]
    opts = [
        click.option("--model", required=True, help="Catalog model id."),
        click.option("--isl", type=click.IntRange(min=1), required=True, help="Prompt tokens (used as p50/p90/p99)."),
        click.option("--osl", type=click.IntRange(min=1), required=True, help="Output tokens (used as p50/p90/p99)."),
        click.option("--ttft-p99-ms", type=click.FloatRange(min=0, min_open=True), default=None, help="p99 TTFT target."),
        click.option("--tpot-p99-ms", type=click.FloatRange(min=0, min_open=True), default=None, help="p99 TPOT target."),
        click.option("--e2e-p99-ms", type=click.FloatRange(min=0, min_open=True), default=None, help="p99 end-to-end target."),
        click.option("--quant", "quants", multiple=True, help="Allowed quantisation (repeatable; default all)."),
        click.option("--max-quality-loss", "max_loss", type=click.FloatRange(min=0), default=None,
                     help="Largest quality loss of a format, accuracy points (default: no limit)."),
        click.option("--pricing", type=click.Choice(["on-demand", "reserved", "spot"]), default="on-demand", show_default=True),
        click.option("--json", "as_json", is_flag=True, help="Print JSON."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def _need_target(ttft: float | None, tpot: float | None, e2e: float | None) -> None:
    if ttft is None and tpot is None and e2e is None:
        raise InputError("give at least one of --ttft-p99-ms, --tpot-p99-ms, --e2e-p99-ms")


@click.command()
@_targets
@click.option("--rps", type=click.FloatRange(min=0, min_open=True), required=True, help="Peak requests/s to serve.")
@click.option("--gpu", "gpus", multiple=True, help="Allowed accelerator (repeatable; default all).")
@click.option("--headroom", type=click.FloatRange(0, 10), default=0.0, show_default=True,
              help="Extra capacity above --rps (0.2 = 20%).")
@_time_limit
def query(model: str, isl: int, osl: int, ttft_p99_ms: float | None, tpot_p99_ms: float | None,
          e2e_p99_ms: float | None, quants: tuple[str, ...], max_loss: float | None, pricing: str,
          as_json: bool, rps: float,
          gpus: tuple[str, ...], headroom: float, time_limit: float, workers: int) -> None:
    """Cheapest configuration that serves --rps within the p99 targets (no problem file)."""
    _need_target(ttft_p99_ms, tpot_p99_ms, e2e_p99_ms)
    from solver import api
    from solver.catalog import load_catalog

    cat = load_catalog()
    problem = api.single_model_problem(model, rps, isl, osl, ttft_p99_ms, tpot_p99_ms, e2e_p99_ms,
                                       gpus or None, quants or None, headroom, pricing, cat=cat,
                                       max_quality_loss_points=max_loss)
    _finish(api.query(problem, cat, time_limit, workers), as_json)


@click.command()
@_targets
@click.option("--gpu", required=True, help="Accelerator id.")
@click.option("--gpus", "n_gpus", type=click.IntRange(min=1), required=True, help="GPUs available.")
@click.option("--max-configs", type=click.IntRange(1, 8), default=2, show_default=True,
              help="Distinct configurations allowed in the split.")
@_time_limit
def capacity(model: str, isl: int, osl: int, ttft_p99_ms: float | None, tpot_p99_ms: float | None,
             e2e_p99_ms: float | None, quants: tuple[str, ...], max_loss: float | None, pricing: str,
             as_json: bool, gpu: str,
             n_gpus: int, max_configs: int, time_limit: float, workers: int) -> None:
    """Most traffic --gpus GPUs of --gpu serve within the p99 targets, with the best
    configuration(s) and replica split."""
    _need_target(ttft_p99_ms, tpot_p99_ms, e2e_p99_ms)
    from solver import api
    from solver.catalog import load_catalog

    cat = load_catalog()
    problem = api.single_model_problem(model, 1.0, isl, osl, ttft_p99_ms, tpot_p99_ms, e2e_p99_ms,
                                       [gpu], quants or None, 0.0, pricing, max_configs, cat=cat,
                                       max_quality_loss_points=max_loss)
    ans = api.capacity(problem, cat, n_gpus, time_limit, workers)
    if as_json:
        emit_json(ans.to_dict())
    else:
        click.echo(f"{model} on {n_gpus} x {gpu}: {ans.status.value}")
        if ans.status.has_plan:
            click.echo(f"  {fmt(ans.requests_per_s)} req/s, {fmt(ans.output_tokens_per_s)} output tokens/s "
                       f"({fmt(ans.output_tokens_per_s_per_gpu)} per GPU), {ans.gpus_used} GPUs used, "
                       f"${ans.cost_usd_per_hour:,.2f}/h")
            click.echo(table(list(ans.deployments), ["quant", "kv_dtype", "tp", "pp", "ep", "max_batch", "replicas",
                                                     "gpus", "capacity_rps", "ttft_p99_ms", "tpot_p99_ms"]))
        for line in ans.explanation:
            click.echo(f"  - {line}")
    if not ans.status.has_plan:
        sys.exit(EXIT_INFEASIBLE)
