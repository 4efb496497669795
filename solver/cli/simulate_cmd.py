"""``fleetplan simulate``: replay a trace or a Poisson stream through a plan's replicas."""

from __future__ import annotations

from pathlib import Path

import click

from solver.catalog import load_catalog
from solver.cli.output import emit_json, fmt, table
from solver.errors import InputError
from solver.problem import load_problem
from solver.simulate import PLAN_ROUTER, ROUTERS, SimResult, build_workload, load_plan_json, replay
from solver.traffic import read_trace


def _planned(plan: dict, model: str | None) -> list[dict]:
    """The plan's own p99 figures for the replayed model, per deployment (for comparison)."""
    return [{"deployment": f"{d.get('replicas')}x {d.get('accelerator')} {d.get('quant')} TP{d.get('tp')}",
             "load_rps": d.get("load_rps"), "ttft_p99_ms": d.get("ttft_p99_ms"),
             "tpot_p99_ms": d.get("tpot_p99_ms"), "e2e_p99_ms": d.get("e2e_p99_ms")}
            for d in plan.get("deployments", []) if model is None or d.get("model") == model]


def _print(res: SimResult) -> None:
    click.echo(f"{res.label}: {res.requests:,} requests, {fmt(res.offered_rps)} req/s offered, "
               f"{res.replicas} replicas ({res.router})")
    rows = [{"metric": name, **{k: getattr(p, k) for k in ("p50_ms", "p90_ms", "p99_ms", "mean_ms")}}
            for name, p in (("ttft", res.ttft), ("tpot", res.tpot), ("e2e", res.e2e),
                            ("queue wait", res.queue_wait))]
    click.echo(table(rows, ["metric", "p50_ms", "p90_ms", "p99_ms", "mean_ms"]))
    click.echo(f"mean requests in flight per busy replica {fmt(res.mean_batch)}; replicas busy "
               f"{res.utilisation:.1%} of the time; {res.p_wait_for_slot:.2%} found no free slot")
    if res.unservable:
        click.echo(f"{res.unservable} requests never ran (their KV cache exceeds a replica's memory)")
    for t in res.targets:
        verdict = "met" if t.met else "MISSED"
        click.echo(f"{t.metric} p{t.percentile:g} <= {fmt(t.max_ms)} ms: {verdict} "
                   f"(simulated {fmt(t.simulated_ms)} ms; {t.within:.2%} of requests within)")


@click.command("simulate")
@click.argument("plan_file", type=click.Path(path_type=Path))
@click.option("--trace", "trace_file", type=click.Path(path_type=Path), default=None,
              help="Request trace to replay (CSV; see `fleetplan traffic --help`).")
@click.option("--poisson", "poisson_rps", type=float, default=None,
              help="Poisson arrivals at this rate (req/s) instead of the trace's times.")
@click.option("--problem", "problem_file", type=click.Path(path_type=Path), default=None,
              help="Problem file of the plan: targets to check, lengths for --poisson, prefix hit rate, LoRA adapters.")
@click.option("--model", default=None, help="Model (problem name) to replay, when the plan has several.")
@click.option("--cv", "--bursty", "cv", type=float, default=1.0, show_default=True,
              help="Burstiness of --poisson: coefficient of variation of the gaps between arrivals "
                   "(1 = Poisson; 3 = bursty; gamma-distributed gaps).")
@click.option("--duration", type=float, default=600.0, show_default=True, help="Seconds of Poisson arrivals.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the Poisson stream.")
@click.option("--scale", type=float, default=None, help="Multiply the trace's arrival rate by this factor.")
@click.option("--scale-to", "scale_to", type=float, default=None,
              help="Scale the trace's arrival times so that its mean rate is this (req/s).")
@click.option("--router", type=click.Choice((PLAN_ROUTER, *ROUTERS)), default=PLAN_ROUTER,
              help="How requests are spread over replicas. Default: plan, the routing the plan "
                   "assumes: weighted for aggregated replicas, least-loaded inside a disaggregated "
                   "deployment's pools. weighted splits them in the plan's shares (each deployment's "
                   "router_weight, smooth weighted round-robin: a gateway with static weights); "
                   "least-loaded sends each to the replica with the least outstanding work (a "
                   "load-aware gateway; it overloads the small replicas of a plan that mixes sizes); "
                   "round-robin splits evenly, which overloads them more.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
def simulate(plan_file: Path, trace_file: Path | None, poisson_rps: float | None,
             problem_file: Path | None, model: str | None, cv: float, duration: float, seed: int,
             scale: float | None, scale_to: float | None, router: str, as_json: bool) -> None:
    """Replay requests through the replicas of PLAN_FILE (the output of `fleetplan solve --json`)
    with continuous batching, chunked prefill, each replica's batch cap and KV memory, and step
    times from the cost model; print p50/p90/p99 TTFT, TPOT and end-to-end latency and, with
    --problem, whether each target is met and the share of requests within it.

    \b
      fleetplan solve problems/chat-assistant-70b.yaml --no-pareto --json > plan.json
      fleetplan simulate plan.json --poisson 14.4 --problem problems/chat-assistant-70b.yaml
      fleetplan simulate plan.json --poisson 14.4 --cv 3 --problem problems/chat-assistant-70b.yaml
      fleetplan simulate plan.json --trace ../shared/traces/azure-llm-2023-conv.csv \\
          --scale-to 12 --problem problems/chat-assistant-70b.yaml
      fleetplan simulate plan.json --trace ../shared/traces/azure-llm-2023-conv.csv \\
          --scale-to 12 --problem problems/chat-assistant-70b.yaml --router least-loaded

    A disaggregated deployment replays through its prefill pool, the KV transfer and its decode
    pool (TTFT = prefill done + transfer); a model with both kinds splits requests by the plan's
    load shares. Step times use the engine each deployment names (`engine`).

    Router: by default `plan`, the routing the plan was sized for: aggregated replicas get each
    deployment's router_weight (weighted), a disaggregated deployment's pools are least-loaded.
    A plan that mixes replicas of very different capacity meets its targets only under that
    split. On the bundled problems (python benchmarks/routers.py) it meets every target at
    Poisson peak load, as least-loaded does, and more of them in bursts on mixed plans;
    --router least-loaded replays a load-aware gateway instead (better in bursts when a model's
    replicas are alike).

    Deterministic: the same inputs and --seed give the same figures.
    """
    cat = load_catalog()
    plan = load_plan_json(str(plan_file))
    problem = load_problem(problem_file, cat) if problem_file else None
    demand = None
    if problem is not None:
        names = [m.name for m in problem.models]
        name = model or (names[0] if len(names) == 1 else None)
        if name is None or name not in names:
            raise InputError(f"--model: name one of the problem's models ({', '.join(names)})")
        demand = next(m for m in problem.models if m.name == name)
        model = name
    trace = read_trace(trace_file) if trace_file else None
    workload = build_workload(
        trace, poisson_rps, duration, seed, scale, scale_to,
        demand.traffic.input_tokens if demand else None, demand.traffic.output_tokens if demand else None,
        demand.traffic.prefix_cache_hit_rate if demand else 0.0, cv)
    res = replay(plan, cat, workload, model, router, demand.slo if demand else None, demand)  # type: ignore[arg-type]
    planned = _planned(plan, model or (plan["deployments"][0].get("model") if plan["deployments"] else None))
    if as_json:
        out = res.to_dict()
        out["planned"] = planned
        if trace is not None and trace.azure:
            from solver.traffic import AZURE_CITATION
            out["trace_citation"] = AZURE_CITATION
        emit_json(out)
    else:
        _print(res)
        click.echo("the plan's own figures (at its planned load, target percentiles):")
        click.echo(table(planned, ["deployment", "load_rps", "ttft_p99_ms", "tpot_p99_ms", "e2e_p99_ms"]))
        if trace is not None and trace.azure:
            from solver.traffic import AZURE_CITATION
            click.echo(f"trace: {AZURE_CITATION}")
