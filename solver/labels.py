"""Labels and unit figures for answers people read: configuration labels with the full
parallelism, latency columns named for their percentile, unit costs, and latency shares of each
model's own target. Plain functions of the problem and the plan; no plotting, no solver, so
every command can import them cheaply."""

from __future__ import annotations

from typing import Any

from solver.catalog import Catalog
from solver.plan import Plan
from solver.problem import Problem

LATENCY_KEYS = {"ttft": "ttft_p99_ms", "tpot": "tpot_p99_ms", "e2e": "e2e_p99_ms"}
"""Latency axis -> the (stable) field name holding it; the value is at the target's percentile."""


def parallel_label(tp: int, pp: int, ep: int, moe_tp: int | None = 0) -> str:
    """Full parallelism of a replica: ``TP4 PP2 EP1``, plus ``MoE-TP<m>`` when each expert group
    is split over ``m`` GPUs under attention DP, and ``DP<n>`` when experts span more GPUs than
    TP (attention then runs data-parallel over ``stage / TP`` groups)."""
    stage = max(tp, ep * moe_tp if moe_tp else ep)
    return (f"TP{tp} PP{pp} EP{ep}" + (f" MoE-TP{moe_tp}" if moe_tp else "")
            + (f" DP{stage // tp}" if stage > tp else ""))


def config_label(d: Any) -> str:
    """One configuration, every field that tells two apart: ``h100-sxm fp8/kv-fp8 TP4 PP1 EP1,
    batch 64`` (``d`` is a Deployment or its dict)."""
    get = (lambda k: d.get(k)) if isinstance(d, dict) else (lambda k: getattr(d, k, None))
    part = get("partition")
    share = f" ({part})" if part else ""
    if get("serving_mode") == "disaggregated":
        return f"{get('accelerator')} {get('quant')}/kv-{get('kv_dtype')} {pools_label(get('pools'))}"
    return (f"{get('accelerator')}{share} {get('quant')}/kv-{get('kv_dtype')} "
            f"{parallel_label(get('tp'), get('pp'), get('ep'), get('moe_tp'))}, batch {get('max_batch')}")


def pools_label(pools: Any) -> str:
    """A disaggregated unit: ``disaggregated 2x prefill TP1 PP1 EP1 + 1x decode TP2 PP1 EP1
    batch 64`` (``pools``: the deployment's pools or their dicts)."""
    get = ((lambda p, k: p.get(k)) if pools and isinstance(pools[0], dict)
           else (lambda p, k: getattr(p, k, None)))
    dec = next((p for p in pools if get(p, "role") == "decode"), None)

    def on(p: Any) -> str:  # a mixed unit's prefill pool names its accelerator and format
        mixed = dec is not None and get(p, "accelerator") and get(p, "accelerator") != get(dec, "accelerator")
        return f" on {get(p, 'accelerator')} {get(p, 'quant')}" if mixed else ""

    parts = [f"{get(p, 'replicas')}x {get(p, 'role')} {parallel_label(get(p, 'tp'), get(p, 'pp'), get(p, 'ep'))}"
             + on(p) + (f" batch {get(p, 'max_batch')}" if get(p, 'role') == "decode" else "") for p in pools]
    return "disaggregated " + " + ".join(parts)


def latency_percentiles(problem: Problem) -> dict[str, dict[str, float]]:
    """Per model: the percentile each latency figure of a plan is at (the target's, else 99)."""
    return {d.name: {k: d.slo.percentile(k) for k in ("ttft", "tpot", "e2e")} for d in problem.models}


def plan_table_rows(cat: Catalog, problem: Problem, plan: Plan) -> list[dict[str, Any]]:
    """The plan's deployments as rows for a text table: latency keys named for their actual
    percentile (``ttft_p90_ms``), the format's published quality loss, full parallelism."""
    pcts = latency_percentiles(problem)
    shared = any(dep.partition for dep in plan.deployments)
    expert_tp = any(dep.moe_tp for dep in plan.deployments)
    rows = []
    for dep in plan.deployments:
        d = dep.to_dict()
        row = {k: d[k] for k in ("model", "serving_mode", "accelerator", "quant")}
        if shared:  # a column only where some replica runs on a GPU share
            row["gpu_share"] = dep.partition or "whole"
        row["quality_loss_points"] = cat.quantization(dep.quant).quality_loss.points
        # moe_tp: a column only where some replica splits its expert groups under attention DP
        row.update({k: d[k] for k in ("kv_dtype", "tp", "pp", "ep") + (("moe_tp",) if expert_tp else ())
                    + ("max_batch", "replicas")})
        row.update(total_gpus=d["total_gpus"], load_rps=d["load_rps"], total_capacity_rps=d["total_capacity_rps"])
        for k in ("ttft", "tpot", "e2e"):
            row[f"{k}_p{pcts[dep.model][k]:g}_ms"] = d[f"{k}_p99_ms"]
        row["cost_usd_per_hour"] = d["cost_usd_per_hour"]
        if dep.pools:  # the pools of a unit, under it
            row["tp"] = row["pp"] = row["ep"] = row["max_batch"] = None
            rows.append(row)
            for pool in dep.pools:
                other = pool.accelerator is not None and pool.accelerator != dep.accelerator  # a mixed unit
                rows.append({"model": "", "serving_mode": f"  {pool.role} x{pool.replicas}",
                             **({"accelerator": pool.accelerator, "quant": pool.quant} if other else {}),
                             "tp": pool.tp, "pp": pool.pp, "ep": pool.ep, "max_batch": pool.max_batch,
                             # the pool's totals over the deployment's units, as in the row above
                             "total_gpus": pool.gpus_per_replica * pool.replicas * dep.replicas,
                             "load_rps": pool.load_rps * pool.replicas * dep.replicas,
                             "total_capacity_rps": pool.capacity_rps_per_replica * pool.replicas * dep.replicas})
            continue
        rows.append(row)
    return rows


def plan_extras(problem: Problem, plan: Plan) -> dict[str, Any]:
    """What a plan's JSON carries beside ``Plan.to_dict``: the percentile of every latency field
    (the field names keep ``_p99_`` for stable scripting; the value is at this percentile). Unit
    costs come with the plan itself (``Plan.unit_costs``)."""
    return {"latency_percentiles": latency_percentiles(problem)}


def axis_targets(problem: Problem, axis: str) -> dict[str, float]:
    """Model name -> its target (ms) on a latency axis, for models that have one."""
    if axis not in LATENCY_KEYS:
        return {}
    return {d.name: getattr(d.slo, axis).max_ms for d in problem.models if getattr(d.slo, axis) is not None}


def per_model_values(axis: str, point: dict[str, Any]) -> dict[str, float]:
    """Model name -> the point's worst latency (ms) of that model on a latency axis."""
    key = LATENCY_KEYS[axis]
    out: dict[str, float] = {}
    for d in point["deployments"]:
        out[d["model"]] = max(out.get(d["model"], 0.0), d[key])
    return out


def share_of_target(problem: Problem, axis: str, point: dict[str, Any]) -> float | None:
    """A Pareto point's worst latency as a share of each model's own target (1.0 = at target):
    the one axis on which models with targets of 150 ms and 3,000 ms are compared fairly; None
    without targets."""
    vals = per_model_values(axis, point)
    shares = [vals[m] / t for m, t in axis_targets(problem, axis).items() if m in vals]
    return max(shares) if shares else None
