"""``fleetplan solve``, ``query``, ``capacity`` and ``explain``: the optimiser's commands.

Exit codes: 0 a plan (optimal or feasible within the time limit), 1 infeasible (with the
conflicting constraint families) or no plan within the time limit, 2 bad input.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from solver.catalog import Catalog, load_catalog
from solver.cli import EXIT_INFEASIBLE
from solver.cli.estimate_cmd import check_engine_flag
from solver.cli.calibrate_cmd import calibration_options, capacity_uncertainty, planning_inputs, plan_uncertainty
from solver.cli.output import emit_json, fmt, progress_bar, table
from solver.errors import InputError, unknown_id
from solver.cli.params import FiniteFloat, positive
from solver.optimize import DEFAULT_TIME_LIMIT_S, DEFAULT_WORKERS
from solver.diagnose import causes, diagnosis
from solver.plan import Plan, SolveStatus, Termination
from solver.problem import MAX_GPUS, MAX_MS, MAX_RPS, MAX_TOKENS, Problem, load_problem, query_problem
from solver.labels import (
    axis_targets, config_label, latency_percentiles, plan_extras, plan_table_rows,
    share_of_target,
)

# OR-Tools (solver.api, solver.pareto) is imported inside the commands that solve, so that
# `fleetplan --help` and the commands that do not solve stay fast.

MAX_TIME_LIMIT_S = 86_400.0

def _time_limit(f):  # type: ignore[no-untyped-def]
    f = click.option("--workers", type=click.IntRange(1, 64), default=DEFAULT_WORKERS, show_default=True,
                     help="CP-SAT worker threads (results are deterministic for a given count).")(f)
    return click.option("--time-limit", "time_limit", type=FiniteFloat(0.01, MAX_TIME_LIMIT_S), default=DEFAULT_TIME_LIMIT_S,
                        show_default=True, help="Solver time limit, seconds; the best plan and its gap are returned.")(f)


def _print_plan(plan: Plan, problem: Problem, cat: Catalog) -> None:
    head = f"{plan.problem}: {plan.status.value}"
    if plan.status.has_plan:
        gap = f", gap {plan.gap:.2%}" if plan.gap else ""
        head += f" — ${plan.cost_usd_per_hour:,.2f}/h, {plan.gpus} GPUs{gap} ({plan.solve_seconds:.2f}s)"
        click.echo(head)
        rows = plan_table_rows(cat, problem, plan)
        cols = list(dict.fromkeys(k for r in rows for k in r))
        click.echo(table(rows, cols))
        if plan.systems:
            click.echo("")
            click.echo(table([s.to_dict() for s in plan.systems],
                             ["accelerator", "system", "gpus_used", "gpus_provisioned", "nodes",
                              "power_kw", "cost_usd_per_hour"]
                             + (["gpus_owned", "gpus_rented", "owned_usd_per_gpu_hour"]
                                if any(s.gpus_owned for s in plan.systems) else [])))
        click.echo("")
        for name, c in (plan.unit_costs.models if plan.unit_costs is not None else {}).items():
            click.echo(f"{name}: ${fmt(c.usd_per_million_input_tokens)} per 1M input tokens, "
                       f"${fmt(c.usd_per_million_output_tokens)} per 1M output, ${fmt(c.usd_per_million_tokens)} "
                       f"per 1M tokens (both), ${fmt(c.usd_per_1k_requests)} per 1k requests (at peak)")
        for note in plan.notes:
            click.echo(note)
        return
    click.echo(f"{head} ({plan.solve_seconds:.2f}s)")
    if plan.explanation and plan.conflict_termination is Termination.UNKNOWN_AT_TIME_LIMIT:
        for line in plan.explanation:
            click.echo(line)
    elif plan.explanation:
        click.echo("No plan meets all of these together:")
        for line in plan.explanation:
            click.echo(f"  - {line}")
    elif plan.status.value == "unknown":
        click.echo("No plan found within the time limit (this does not prove infeasibility); raise --time-limit.")
    if plan.status is SolveStatus.INFEASIBLE:
        diag = diagnosis(problem, cat, plan)
        if diag["causes"]:
            click.echo("Causes in the catalog:")
            for line in diag["causes"]:
                click.echo(f"  - {line}")
        if diag["remedies"]:
            click.echo("What would make it feasible:")
            for r in diag["remedies"]:
                click.echo(f"  - {r.sentence(problem.fleet)}")
        elif not diag["causes"]:
            click.echo("Lifting the fleet limits (inventory, budget, power, whole nodes) does not help: "
                       "a target, format or model choice has to change.")


def _plan_json(plan: Plan, problem: Problem, cat: Catalog) -> dict:  # type: ignore[type-arg]
    out = {**plan.to_dict(), **plan_extras(problem, plan)}
    if plan.status is SolveStatus.INFEASIBLE:
        diag = diagnosis(problem, cat, plan)
        out["causes"] = diag["causes"]
        out["remedies"] = [r.to_dict() for r in diag["remedies"]]
    return out


def _finish(plan: Plan, problem: Problem, cat: Catalog, as_json: bool, extra: dict | None = None) -> None:  # type: ignore[type-arg]
    if as_json:
        emit_json({**_plan_json(plan, problem, cat), **(extra or {}).get("json", {})})
    else:
        _print_plan(plan, problem, cat)
        for line in (extra or {}).get("lines", []):
            click.echo(line)
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
@click.option("--points", type=click.IntRange(2, 50), default=5, show_default=True,
              help="Settings of the Pareto sweep.")
@click.option("--json", "as_json", is_flag=True,
              help="Print the plan as JSON (with a 'pareto' object unless --no-pareto).")
@calibration_options
def solve(problem_file: Path, time_limit: float, workers: int, with_pareto: bool, axis: str | None,
          points: int, as_json: bool, calibration: Path | None, confidence: float | None) -> None:
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
    from solver.pareto import AXIS_KEY, default_axis, pareto, parse_axes

    cat = load_catalog()
    problem = load_problem(problem_file, cat)
    cat, problem, applied = planning_inputs(cat, problem, calibration, confidence)
    axes = parse_axes(axis or default_axis(problem))
    if any(a == "quality" for a in axes):
        raise InputError("--axis: solve sweeps a latency axis (ttft, tpot, e2e); use `fleetplan pareto --axis quality`")
    from solver.candidates import TableCache

    cache = TableCache()  # the plan's shape evaluations, reused by its confidence summary
    plan = api.solve(problem, cat, time_limit, workers, cache=cache)
    extra = plan_uncertainty(problem, cat, plan, applied, time_limit, workers, cache)
    front = None
    if with_pareto and plan.status.has_plan:
        with progress_bar(not as_json, "Pareto sweep") as update:
            front = pareto(problem, cat, axes, points, time_limit, workers, progress=update, base_plan=plan)
    if as_json:
        out = {**_plan_json(plan, problem, cat), **extra["json"]}
        if front is not None:
            out["pareto"] = front.to_dict()
        emit_json(out)
    else:
        _print_plan(plan, problem, cat)
        for line in extra["lines"]:
            click.echo(line)
        if front is not None:
            click.echo("")
            pcts = {v[axes[0]] for v in latency_percentiles(problem).values()} if axes[0] != "quality" else set()
            which = f"p{pcts.pop():g} " if len(pcts) == 1 else ""
            click.echo(f"Pareto set, cost vs worst {which}{axes[0].upper()} ({len(front.points)} plans, {front.solves} solves):")
            key = AXIS_KEY[axes[0]]
            multi = len(axis_targets(problem, axes[0])) > 1
            rows = [{"cost_usd_per_hour": p["cost_usd_per_hour"], key: p[key],
                     "worst_share_of_target": share_of_target(problem, axes[0], p) if multi else None,
                     "plan": "; ".join(f"{d['model']}: {d['replicas']}x {config_label(d)}" for d in p["deployments"])}
                    for p in front.to_dict()["points"]]
            cols = ["cost_usd_per_hour", key] + (["worst_share_of_target"] if multi else []) + ["plan"]
            click.echo(table(rows, cols))
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

    cat = load_catalog()
    problem = load_problem(problem_file, cat)
    cat, problem, _ = planning_inputs(cat, problem, None, None)  # the file's calibration: key
    ex = api.explain(problem, cat, time_limit, workers)
    if as_json:
        emit_json({**ex.to_dict(), **plan_extras(problem, ex.plan)})
    else:
        _print_plan(ex.plan, problem, cat)
        if ex.bindings:
            click.echo("")
            click.echo("Constraint families (binding: relaxing it would change the plan):")
            for b in ex.bindings:
                mark = "BINDS" if b.binding else "slack"
                click.echo(f"  {mark}  {b.name:<28} {b.description}; {b.detail}")
    if not ex.plan.status.has_plan:
        sys.exit(EXIT_INFEASIBLE)


def _targets(f):  # type: ignore[no-untyped-def]
    tokens = click.IntRange(1, MAX_TOKENS)
    opts = [
        click.option("--model", required=True, help="Catalog model id."),
        click.option("--isl", type=tokens, required=True,
                     help="Prompt tokens, p50 (also p90/p99 unless --isl-p90/--isl-p99 are given)."),
        click.option("--isl-p90", type=tokens, default=None, help="Prompt tokens, p90 (default: --isl)."),
        click.option("--isl-p99", type=tokens, default=None, help="Prompt tokens, p99 (default: --isl-p90)."),
        click.option("--osl", type=tokens, required=True,
                     help="Output tokens, p50 (also p90/p99 unless --osl-p90/--osl-p99 are given)."),
        click.option("--osl-p90", type=tokens, default=None, help="Output tokens, p90 (default: --osl)."),
        click.option("--osl-p99", type=tokens, default=None, help="Output tokens, p99 (default: --osl-p90)."),
        click.option("--ttft-p99-ms", type=positive(MAX_MS), default=None, help="p99 TTFT target."),
        click.option("--tpot-p99-ms", type=positive(MAX_MS), default=None, help="p99 TPOT target."),
        click.option("--e2e-p99-ms", type=positive(MAX_MS), default=None, help="p99 end-to-end target."),
        click.option("--quant", "quants", multiple=True, help="Allowed quantisation (repeatable; default all)."),
        click.option("--kv-dtype", "kv_dtypes", multiple=True, help="Allowed KV-cache dtype (repeatable; default all)."),
        click.option("--prefix-hit-rate", type=FiniteFloat(0.0, 0.999), default=0.0, show_default=True,
                     help="Share of each prompt served from the prefix cache, in [0, 1)."),
        click.option("--shared-prefix-tokens", type=click.IntRange(0, MAX_TOKENS), default=0, show_default=True,
                     help="Cached shared prefix (e.g. a 2000-token system prompt) whose KV each replica "
                          "holds once, taken off the memory for sequences."),
        click.option("--max-quality-loss", "max_loss", type=FiniteFloat(0.0, 100.0), default=None,
                     help="Largest published quality loss of a format, accuracy points (default: formats "
                          "losing more than 1 point only when named with --quant)."),
        click.option("--pricing", type=click.Choice(["on-demand", "reserved", "spot"]), default="on-demand", show_default=True),
        click.option("--engine", default=None,
                     help="serving engine: vllm (default), sglang or tensorrt-llm (catalogs/engines.yaml)."),
        click.option("--json", "as_json", is_flag=True, help="Print JSON."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def _with_engine(cat: Catalog, problem: Problem, engine: str | None, gpus: tuple[str, ...]) -> Problem:
    """The problem with ``--engine`` set on its model; an unknown engine, or one that runs on none
    of the given accelerators, is one ``--engine:`` line."""
    if engine is None:
        return problem
    if engine not in cat.engines:
        raise InputError("--engine: " + unknown_id("engine", engine, cat.engines))
    for g in gpus:
        check_engine_flag(cat, engine, g, None)
    return problem.model_copy(update={"models": [m.model_copy(update={"engine": engine}) for m in problem.models]})


def _lengths(p50: int, p90: int | None, p99: int | None) -> tuple[int, int, int]:
    """(p50, p90, p99) from the flags: an absent percentile takes the one below it."""
    p90 = p90 if p90 is not None else p50
    return p50, p90, p99 if p99 is not None else p90


def _flag_problem(o: dict, rps: float, gpus: list[str] | None, headroom: float, max_configs: int = 2):  # type: ignore[no-untyped-def]
    """The one-model problem the flags of query/capacity describe (validated like a file)."""
    _need_target(o["ttft_p99_ms"], o["tpot_p99_ms"], o["e2e_p99_ms"])
    cat = load_catalog()
    problem = query_problem(
        o["model"], rps, _lengths(o["isl"], o["isl_p90"], o["isl_p99"]),
        _lengths(o["osl"], o["osl_p90"], o["osl_p99"]), o["ttft_p99_ms"], o["tpot_p99_ms"], o["e2e_p99_ms"],
        gpus=gpus, quants=list(o["quants"]) or None, kv_dtypes=list(o["kv_dtypes"]) or None,
        headroom=headroom, prefix_hit_rate=o["prefix_hit_rate"],
        shared_prefix_tokens=o["shared_prefix_tokens"], pricing=o["pricing"],
        max_configs=max_configs, max_quality_loss_points=o["max_loss"], cat=cat)
    return cat, _with_engine(cat, problem, o["engine"], tuple(gpus or ()))


def _need_target(ttft: float | None, tpot: float | None, e2e: float | None) -> None:
    if ttft is None and tpot is None and e2e is None:
        raise InputError("give at least one of --ttft-p99-ms, --tpot-p99-ms, --e2e-p99-ms")


@click.command()
@_targets
@click.option("--rps", type=positive(MAX_RPS), required=True, help="Peak requests/s to serve.")
@click.option("--gpu", "gpus", multiple=True, help="Allowed accelerator (repeatable; default all).")
@click.option("--headroom", type=FiniteFloat(0, 10), default=0.0, show_default=True,
              help="Extra capacity above --rps (0.2 = 20%).")
@_time_limit
@calibration_options
def query(rps: float, gpus: tuple[str, ...], headroom: float, time_limit: float, workers: int,
          as_json: bool, calibration: Path | None, confidence: float | None, **flags: object) -> None:
    """Cheapest configuration that serves --rps within the p99 targets (no problem file).

    \b
      fleetplan query --model llama-3.1-8b --isl 1000 --isl-p99 4000 --osl 200 --osl-p99 800 \\
          --rps 20 --ttft-p99-ms 800 --tpot-p99-ms 40 --gpu h100-sxm
    """
    cat, problem = _flag_problem(flags, rps, list(gpus) or None, headroom)
    from solver import api

    cat, problem, applied = planning_inputs(cat, problem, calibration, confidence)
    from solver.candidates import TableCache

    cache = TableCache()  # the plan's shape evaluations, reused by its confidence summary
    plan = api.query(problem, cat, time_limit, workers, cache)
    _finish(plan, problem, cat, as_json, plan_uncertainty(problem, cat, plan, applied, time_limit, workers, cache))


@click.command()
@_targets
@click.option("--gpu", required=True, help="Accelerator id.")
@click.option("--gpus", "n_gpus", type=click.IntRange(1, MAX_GPUS), required=True, help="GPUs available.")
@click.option("--max-configs", type=click.IntRange(1, 8), default=2, show_default=True,
              help="Distinct configurations allowed in the split.")
@_time_limit
@calibration_options
def capacity(gpu: str, n_gpus: int, max_configs: int, time_limit: float, workers: int, as_json: bool,
             calibration: Path | None, confidence: float | None, **flags: object) -> None:
    """Most traffic --gpus GPUs of --gpu serve within the p99 targets, with the best
    configuration(s) and replica split. The rate is what the planner counts (capacity rounded
    down to 0.001 req/s per replica), so `query` at that rate is servable by the same GPUs.

    \b
      fleetplan capacity --model llama-3.1-8b --gpu h100-sxm --gpus 8 --isl 3000 --osl 200 \\
          --ttft-p99-ms 300
    """
    model = flags["model"]
    cat, problem = _flag_problem(flags, 1.0, [gpu], 0.0, max_configs)
    from solver import api

    cat, problem, applied = planning_inputs(cat, problem, calibration, confidence)
    ans = api.capacity(problem, cat, n_gpus, time_limit, workers)
    extra = capacity_uncertainty(problem, cat, n_gpus, ans, applied, time_limit, workers)
    if as_json:
        emit_json({**ans.to_dict(), **extra["json"]})
    else:
        for line in extra["lines"]:
            click.echo(line)
        click.echo(f"{model} on {n_gpus} x {gpu}: {ans.status.value}")
        if ans.status.has_plan:
            click.echo(f"  {fmt(ans.requests_per_s)} req/s, {fmt(ans.output_tokens_per_s)} output tokens/s "
                       f"({fmt(ans.output_tokens_per_s_per_gpu)} per GPU), {ans.gpus_used} GPUs used, "
                       f"${ans.cost_usd_per_hour:,.2f}/h")
            click.echo(table(list(ans.deployments), ["quant", "kv_dtype", "tp", "pp", "ep", "max_batch", "replicas",
                                                     "total_gpus", "total_capacity_rps", "ttft_p99_ms",
                                                     "tpot_p99_ms"]))
        for line in ans.explanation:
            click.echo(f"  - {line}")
        for line in causes(problem, cat):
            click.echo(f"  - cause: {line}")
    if not ans.status.has_plan:
        sys.exit(EXIT_INFEASIBLE)
