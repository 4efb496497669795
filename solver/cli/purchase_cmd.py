"""``fleetplan purchase``: what to buy in every hour of a day (or week) of demand."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from solver.cli.output import emit_json, fmt, table
from solver.cli.params import FiniteFloat

EXIT_INFEASIBLE = 1


@click.command("purchase")
@click.argument("problem_file", type=click.Path(path_type=Path))
@click.option("--spot-allowance", type=float, default=None,
              help="Offer spot capacity: the share (0-1) of spot replicas that may be interrupted at once; "
                   "spot counts at (1 - allowance) of its capacity. Default: the problem's "
                   "purchasing.spot_interruption_allowance (none: no spot).")
@click.option("--reserved/--no-reserved", default=None,
              help="Offer the catalog's reserved/committed rows (default: the problem's purchasing.reserved, true).")
@click.option("--min-warm", type=click.IntRange(min=1), default=None,
              help="Non-spot replicas each model keeps every hour (default: its min_replicas).")
@click.option("--alternatives", type=int, default=None,
              help="Configurations per model (0-4) offered to every hour besides the peak plan's "
                   "(default: the problem's purchasing.alternatives, 0).")
@click.option("--load-gb-s", type=FiniteFloat(0.0, None, lo_open=True), default=None,
              help="Weight load bandwidth for the scale-up lead time, GB/s (default: the host link).")
@click.option("--time-limit", type=FiniteFloat(0.1, 3600), default=30.0, show_default=True,
              help="Seconds for each of the two solves (configuration, then schedule).")
@click.option("--json", "as_json", is_flag=True, help="Print the peak plan, the schedule and unit costs as JSON.")
def purchase(problem_file: Path, spot_allowance: float | None, reserved: bool | None, min_warm: int | None,
             alternatives: int | None, load_gb_s: float | None, time_limit: float, as_json: bool) -> None:
    """What to buy in every hour of PROBLEM_FILE's demand: a reserved/committed base held all
    day, on-demand and (with --spot-allowance) spot replicas per hour, at the least cost for
    the period.

    The configuration is planned at the peak hour (as `fleetplan solve` does); then a CP-SAT
    model over the hours (traffic.hourly_rps: 24 or 168 rates per model) chooses the replicas on
    each price tier, keeping a warm minimum and paying the scale-up lead time (weights / load
    bandwidth) for every replica started; while it loads, in the hour before, it holds its GPUs
    against inventory, owned GPUs and power. A disaggregated unit whose prefill pool runs on
    another accelerator is bought as two pools, each on its own accelerator's tiers, one prefill
    part per unit every hour (never on spot). Prints one row per hour (demand, replicas per tier,
    utilisation, cost, $/M tokens) and unit costs at peak and over the period.

    \b
      fleetplan purchase problems/diurnal-chat.yaml
      fleetplan purchase problems/diurnal-chat.yaml --spot-allowance 0.3 --json
      fleetplan purchase problems/diurnal-chat.yaml --alternatives 2
    """
    from solver.catalog import load_catalog
    from solver.problem import load_problem
    from solver.purchase_plan import plan_purchases

    cat = load_catalog()
    problem = load_problem(problem_file, cat)
    out = plan_purchases(problem, cat, time_limit_s=time_limit, spot_allowance=spot_allowance,
                         reserved=reserved, min_warm=min_warm, load_gb_s=load_gb_s,
                         alternatives=alternatives)
    d = out.to_dict()
    if as_json:
        emit_json(d)
    else:
        _print(d)
    if out.result is None or out.result.schedule is None or out.violations:
        sys.exit(EXIT_INFEASIBLE)


def _print(d: dict) -> None:  # type: ignore[type-arg]
    plan = d["peak_plan"]
    s = d.get("schedule")
    if s is None:
        click.echo(f"no schedule: the peak plan is {plan['status']}"
                   + (f" / the schedule search ended {d['schedule_status']}" if "schedule_status" in d else ""))
        return
    click.echo(f"Peak plan: ${plan['cost_usd_per_hour']:.2f}/h ({plan['gpus']} GPUs at the problem's "
               "pricing and owned cost)")
    for i, p in enumerate(s["pools"]):
        serves = (f"{fmt(p['capacity_rps'])} req/s per replica" if p.get("unit_of") is None
                  else "runs with each unit, serves nothing alone")
        click.echo(f"  pool {i} {p['model']}: {p['config']}, {p['gpus_per_replica']} GPU(s)/replica, "
                   f"{serves}, lead {p['lead_hours'] * 3600:.0f} s")
    click.echo("Tiers used:")
    for t in s["tiers"]:
        extra = (f", term {t['term_months']} months" if t["term_months"] else "") + \
                (f", {t['discount']:.1%} below its on-demand" if t["discount"] is not None else "")
        click.echo(f"  {t['kind']:<9} {t['provider']:<10} ${t['usd_per_gpu_hour']:g}/GPU-h ({t['price_id']}{extra})")
    rows = []
    for r in s["hourly"]:
        reps = {k: sum(m[k] for m in r["replicas"].values()) for k in ("owned", "reserved", "on-demand", "spot")}
        rows.append({"hour": r["hour"], "demand_rps": round(sum(r["demand_rps"].values()), 2),
                     "capacity_rps": round(sum(r["capacity_rps"].values()), 2),
                     **reps, "util": None if r["utilisation"] is None else round(r["utilisation"], 3),
                     "cost_usd": round(r["cost_usd"], 2),
                     "usd_per_m_tok": None if r["usd_per_million_tokens"] is None else round(r["usd_per_million_tokens"], 3)})
    click.echo(table(rows, list(rows[0])))
    pk, mn = d["unit_costs"]["peak"], d["unit_costs"]["mean"]
    click.echo(f"Cost over {s['hours']} h: ${s['cost_usd']:,.2f} (mean ${s['cost_usd_per_hour_mean']:.2f}/h; "
               f"the peak plan held all period: ${plan['cost_usd_per_hour'] * s['hours']:,.2f})")
    for key, label in (("usd_per_million_input_tokens", "$/M input"), ("usd_per_million_output_tokens", "$/M output"),
                       ("usd_per_million_tokens", "$/M blended"), ("usd_per_1k_requests", "$/1k requests")):
        click.echo(f"  {label:<14} peak {fmt(pk[key]) if pk else '-':>8}   mean over the period {fmt(mn[key]):>8}")
    if d["violations"]:
        click.echo("SCHEDULE FAILS ITS CHECK (a bug):")
        for v in d["violations"]:
            click.echo(f"  {v}")
