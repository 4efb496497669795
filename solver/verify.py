"""Independent re-check of a plan, from the cost model and the catalogs only.

Nothing here reads the candidate tables or the integer encoding, and nothing imports OR-Tools:
each deployment's shape is rebuilt from its ids, its terms recomputed by the cost model, its
percentile latencies recomputed at the planned load share, and every fleet limit summed again
from the deployments. A violation means the encoding, the scaling or the plan assembly is wrong;
:class:`PlanViolation` is raised and must never be caught and ignored.
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np

from solver.catalog import Catalog
from solver.costmodel import Shape, check_shape, max_concurrency, shape_terms
from solver.plan import Plan
from solver.problem import ModelDemand, Problem
from solver.queueing import RHO_MAX
from solver.slo import capacity_at_slo, latency_at_load, memory_context_tokens, slo_view

REL_TOL = 1e-6
ABS_TOL_MS = 1e-6


class PlanViolation(AssertionError):
    """A returned plan breaks a constraint: a bug in fleetplan, not in the input."""

    def __init__(self, problem: str, issues: list[str]) -> None:
        self.issues = issues
        super().__init__(f"plan for {problem!r} violates {len(issues)} constraint(s): " + "; ".join(issues))


def _over(value: float, limit: float) -> bool:
    return value > limit * (1 + REL_TOL) + ABS_TOL_MS


def _pack_nodes(sizes: list[int], per_node: int) -> int:
    """Nodes needed to place replicas of these GPU counts (first fit decreasing); a replica
    larger than a node takes whole nodes of its own."""
    nodes = 0
    free: list[int] = []
    for g in sorted(sizes, reverse=True):
        if g >= per_node:
            nodes += math.ceil(g / per_node)
            continue
        for i, f in enumerate(free):
            if f >= g:
                free[i] -= g
                break
        else:
            free.append(per_node - g)
            nodes += 1
    return nodes


def verify_plan(plan: Plan, problem: Problem, cat: Catalog) -> None:
    """Raise :class:`PlanViolation` listing every broken constraint of ``plan``."""
    if not plan.status.has_plan:
        return
    issues: list[str] = []
    demands: dict[str, ModelDemand] = {d.name: d for d in problem.models}
    fleet = problem.fleet
    covered: dict[str, float] = defaultdict(float)
    routed: dict[str, float] = defaultdict(float)
    configs: dict[str, int] = defaultdict(int)
    used: dict[tuple[str, str], list[int]] = defaultdict(list)
    cost_deploy = 0.0

    for dep in plan.deployments:
        where = f"{dep.model} on {dep.accelerator} {dep.quant} TP{dep.tp} PP{dep.pp} EP{dep.ep} B{dep.max_batch}"
        d = demands.get(dep.model)
        if d is None:
            issues.append(f"{where}: model not in the problem")
            continue
        if dep.replicas < 1:
            issues.append(f"{where}: {dep.replicas} replicas")
            continue
        configs[dep.model] += 1
        shape = Shape(d.model, dep.accelerator, dep.system, dep.quant, dep.kv_dtype, dep.tp, dep.pp, dep.ep)
        reason = check_shape(cat, shape)
        if reason:
            issues.append(f"{where}: invalid shape: {reason}")
            continue
        if d.allowed_accelerators is not None and dep.accelerator not in d.allowed_accelerators:
            issues.append(f"{where}: accelerator not allowed")
        if d.allowed_quantizations is not None and dep.quant not in d.allowed_quantizations:
            issues.append(f"{where}: quantization not allowed")
        if d.allowed_kv_dtypes is not None and dep.kv_dtype not in d.allowed_kv_dtypes:
            issues.append(f"{where}: KV dtype not allowed")
        loss = cat.quantization(dep.quant).quality_loss.points
        if d.max_quality_loss_points is not None and _over(loss, d.max_quality_loss_points):
            issues.append(f"{where}: quality loss {loss} > {d.max_quality_loss_points}")
        if shape.gpus != dep.gpus_per_replica or dep.gpus != dep.replicas * shape.gpus:
            issues.append(f"{where}: GPU count {dep.gpus} != {dep.replicas} x {shape.gpus}")
        price = cat.prices_for(dep.accelerator, fleet.pricing, fleet.provider)
        if not price or abs(price[0].usd_per_gpu_hour - dep.usd_per_gpu_hour) > 1e-9:
            issues.append(f"{where}: price {dep.usd_per_gpu_hour} is not the catalog's cheapest")
        elif abs(dep.cost_usd_per_hour - dep.gpus * price[0].usd_per_gpu_hour) > 1e-6:
            issues.append(f"{where}: cost {dep.cost_usd_per_hour} != GPUs x price")
        cost_deploy += dep.cost_usd_per_hour

        terms = shape_terms(cat, shape, d.engine)
        limit = int(np.asarray(max_concurrency(terms, memory_context_tokens(d))))
        if dep.max_batch > limit:
            issues.append(f"{where}: batch cap {dep.max_batch} exceeds the memory limit {limit}")
        view = slo_view(terms, np.array([dep.max_batch]), d)
        lam = dep.load_rps / dep.replicas
        lat = latency_at_load(view, 0, d, lam)
        if lat.utilisation > RHO_MAX * (1 + REL_TOL):
            issues.append(f"{where}: utilisation {lat.utilisation:.3f} > {RHO_MAX}")
        for name, target, got in (("ttft", d.slo.ttft, lat.ttft_ms), ("tpot", d.slo.tpot, lat.tpot_ms),
                                  ("e2e", d.slo.e2e, lat.e2e_ms)):
            if target is not None and _over(got, target.max_ms):
                issues.append(f"{where}: {name} p{target.percentile:g} {got:.2f} ms > {target.max_ms:g} ms "
                              f"at {lam:.3f} req/s per replica")
            reported = {"ttft": dep.ttft_p99_ms, "tpot": dep.tpot_p99_ms, "e2e": dep.e2e_p99_ms}[name]
            if abs(reported - got) > 1e-3 * max(1.0, got):
                issues.append(f"{where}: reported {name} {reported:.3f} ms, recomputed {got:.3f} ms")
        cap = float(capacity_at_slo(view, d).capacity_rps[0])
        if _over(lam, cap):
            issues.append(f"{where}: load {lam:.4f} req/s per replica above capacity {cap:.4f}")
        covered[dep.model] += cap * dep.replicas
        routed[dep.model] += dep.load_rps
        system = cat.system(dep.system)
        if not (system.gpus_per_node % shape.gpus == 0 or shape.gpus % system.gpus_per_node == 0):
            issues.append(f"{where}: {shape.gpus}-GPU replica does not pack into {system.gpus_per_node}-GPU nodes")
        used[(dep.accelerator, dep.system)].extend([shape.gpus] * dep.replicas)

    for d in problem.models:
        load = d.traffic.peak_rps * (1 + d.headroom)
        if abs(routed[d.name] - load) > 1e-6 * max(1.0, load):
            issues.append(f"{d.name}: routed load {routed[d.name]:.4f} != peak x (1 + headroom) = {load:.4f}")
        if _over(load, covered[d.name]):
            issues.append(f"{d.name}: capacity {covered[d.name]:.4f} req/s < load {load:.4f}")
        if configs[d.name] > fleet.max_configs_per_model:
            issues.append(f"{d.name}: {configs[d.name]} configurations > {fleet.max_configs_per_model}")

    prov_by_acc: dict[str, int] = defaultdict(int)
    power_w = 0.0
    cost_systems = 0.0
    listed = {(s.accelerator, s.system): s for s in plan.systems}
    for key, sizes in used.items():
        if key not in listed:
            issues.append(f"{key[1]}: used by deployments but missing from the plan's systems")
    for (acc, sys_id), s in listed.items():
        sizes = used.get((acc, sys_id), [])
        per_node = cat.system(sys_id).gpus_per_node
        if s.gpus_used != sum(sizes):
            issues.append(f"{sys_id}: gpus_used {s.gpus_used} != {sum(sizes)}")
        if s.gpus_provisioned < sum(sizes):
            issues.append(f"{sys_id}: provisioned {s.gpus_provisioned} < used {sum(sizes)}")
        if fleet.whole_nodes:
            need = _pack_nodes(sizes, per_node)
            if s.gpus_provisioned != s.nodes * per_node or s.nodes < need:
                issues.append(f"{sys_id}: {s.nodes} nodes provisioned, replicas need {need}")
        prov_by_acc[acc] += s.gpus_provisioned
        price = cat.prices_for(acc, fleet.pricing, fleet.provider)[0].usd_per_gpu_hour
        cost = s.gpus_provisioned * price
        if abs(cost - s.cost_usd_per_hour) > 1e-6:
            issues.append(f"{sys_id}: cost {s.cost_usd_per_hour} != {cost}")
        cost_systems += cost
        power_w += s.gpus_provisioned * cat.accelerator(acc).tdp_w
    for acc, n in (fleet.inventory or {}).items():
        if prov_by_acc.get(acc, 0) > n:
            issues.append(f"inventory of {acc}: {prov_by_acc[acc]} GPUs > {n}")
    if fleet.power_kw is not None and _over(power_w / 1e3, fleet.power_kw):
        issues.append(f"power {power_w / 1e3:.2f} kW > {fleet.power_kw:g} kW")
    if fleet.budget_usd_per_hour is not None and _over(cost_systems, fleet.budget_usd_per_hour):
        issues.append(f"cost {cost_systems:.2f} $/h > budget {fleet.budget_usd_per_hour:g} $/h")
    if plan.cost_usd_per_hour is None or abs(plan.cost_usd_per_hour - cost_systems) > 1e-6:
        issues.append(f"plan cost {plan.cost_usd_per_hour} != recomputed {cost_systems:.4f} $/h")
    if cost_deploy > cost_systems + 1e-6:
        issues.append(f"deployments cost {cost_deploy:.4f} $/h more than the provisioned GPUs {cost_systems:.4f}")
    if issues:
        raise PlanViolation(problem.name, issues)
