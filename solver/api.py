"""Python API of the optimiser: ``solve``, ``query``, ``capacity``, ``explain``.

Each call builds candidate tables (:mod:`solver.candidates`), encodes them in integers
(:mod:`solver.optimize.encode`), solves with CP-SAT (:mod:`solver.optimize.cpsat`), assembles a
:class:`~solver.plan.Plan` and re-checks it with :mod:`solver.verify` before returning it.
Nothing mutates the problem or the catalog.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from solver import scaling
from solver.candidates import Candidate, ModelTable, build_tables
from solver.catalog import Catalog
from solver.errors import InputError
from solver.explain import Binding, bindings, infeasibility_sentences
from solver.loading import error_lines
from solver.optimize.cpsat import DEFAULT_WORKERS, FleetModel, IntSolution, max_capacity
from solver.optimize.encode import IntProblem, encode
from solver.plan import Deployment, Plan, SolveStatus, SystemUse
from solver.problem import (
    Fleet, LatencyTarget, ModelDemand, Problem, Slo, TokenLengths, Traffic, check_ids,
)
from solver.slo import latencies
from solver.unitcost import plan_unit_costs
from solver.verify import verify_plan

DEFAULT_TIME_LIMIT_S = 10.0


def _latencies(c: Candidate, d: ModelDemand, lam: float) -> tuple[float, float, float]:
    """TTFT, TPOT, E2E at the targets' percentiles for one replica loaded at ``lam`` req/s."""
    lat = latencies(c.max_batch, c.service_s, c.ttft_min_ms, c.tpot_p99_ms, c.e2e_min_ms, d, lam)
    return lat.ttft_ms, lat.tpot_ms, lat.e2e_ms


def assemble(
    problem: Problem, tables: Sequence[ModelTable], ip: IntProblem, sol: IntSolution, seconds: float
) -> Plan:
    """Turn an integer solution into a plan; load is split in proportion to capacity."""
    deps: list[Deployment] = []
    for m, t in enumerate(tables):
        chosen = [(i, sol.replicas[i]) for i in ip.by_model(m) if sol.replicas[i] > 0]
        total_cap = sum(ip.source[i].capacity_rps * r for i, r in chosen)
        for i, r in chosen:
            c = ip.source[i]
            share = t.load_rps * c.capacity_rps * r / total_cap
            ttft, tpot, e2e = _latencies(c, t.demand, share / r)
            deps.append(Deployment(
                model=t.name, model_id=c.model_id, accelerator=c.accelerator, system=c.system,
                quant=c.quant, kv_dtype=c.kv_dtype, tp=c.tp, pp=c.pp, ep=c.ep,
                max_batch=c.max_batch, replicas=r, gpus=r * c.gpus, gpus_per_replica=c.gpus,
                capacity_rps=c.capacity_rps * r, load_rps=share, ttft_p99_ms=ttft,
                tpot_p99_ms=tpot, e2e_p99_ms=e2e, cost_usd_per_hour=r * c.cost_usd_per_hour,
                usd_per_gpu_hour=c.usd_per_gpu_hour, price_id=c.price_id, stated_error_pct=c.stated_error_pct,
            ))
    price = {(c.accelerator, c.system): (c.usd_per_gpu_hour, c.tdp_w) for c in ip.source}
    used: dict[int, int] = defaultdict(int)
    for i, r in enumerate(sol.replicas):
        used[ip.candidates[i].system] += r * ip.candidates[i].gpus
    systems = []
    for s, row in enumerate(ip.systems):
        prov = sol.provisioned[s]
        if prov == 0:
            continue
        usd, tdp = price[(row.accelerator, row.system)]
        systems.append(SystemUse(
            accelerator=row.accelerator, system=row.system, gpus_used=used[s],
            gpus_provisioned=prov, nodes=-(-prov // row.gpus_per_node),
            cost_usd_per_hour=prov * usd, power_kw=prov * tdp / 1e3,
        ))
    return Plan(
        problem=problem.name, status=sol.status,
        cost_usd_per_hour=sum(s.cost_usd_per_hour for s in systems),
        bound_usd_per_hour=scaling.cents_to_usd(sol.bound_cents) if sol.bound_cents is not None else None,
        gap=sol.gap, solve_seconds=seconds, deployments=tuple(deps), systems=tuple(systems),
        candidates={t.name: len(t.candidates) for t in tables},
        pruned={t.name: t.pruned for t in tables},
        unit_costs=plan_unit_costs(problem, deps, sum(s.cost_usd_per_hour for s in systems)),
    )


@dataclass(frozen=True)
class Prepared:
    """A problem turned into tables, integers and a CP-SAT model, ready to solve."""

    problem: Problem
    tables: tuple[ModelTable, ...]
    ip: IntProblem
    model: FleetModel


def prepare(problem: Problem, cat: Catalog, prune: bool = True) -> Prepared:
    tables = build_tables(problem, cat, prune=prune)
    ip = encode(tables, problem.fleet)
    return Prepared(problem, tables, ip, FleetModel(ip))


def solve(
    problem: Problem, cat: Catalog, time_limit_s: float = DEFAULT_TIME_LIMIT_S,
    workers: int = DEFAULT_WORKERS, prune: bool = True,
) -> Plan:
    """The cheapest plan (or the best within ``time_limit_s``), verified; infeasible plans carry
    the conflicting families and one sentence per family."""
    t0 = time.perf_counter()
    prep = prepare(problem, cat, prune)
    sol = prep.model.solve(time_limit_s, workers)
    if sol.status.has_plan:
        plan = assemble(problem, prep.tables, prep.ip, sol, time.perf_counter() - t0)
        verify_plan(plan, problem, cat)
        return plan
    if sol.status is SolveStatus.INFEASIBLE:
        core = prep.model.core()
        sentences = infeasibility_sentences(prep, core)
        return Plan(
            problem=problem.name, status=sol.status, cost_usd_per_hour=None,
            bound_usd_per_hour=None, gap=None, solve_seconds=time.perf_counter() - t0,
            explanation=tuple(sentences), conflict=tuple(g.name for g in core),
            candidates={t.name: len(t.candidates) for t in prep.tables},
            pruned={t.name: t.pruned for t in prep.tables},
        )
    return Plan(problem=problem.name, status=sol.status, cost_usd_per_hour=None,
                bound_usd_per_hour=None, gap=None, solve_seconds=time.perf_counter() - t0)


@dataclass(frozen=True)
class Explanation:
    plan: Plan
    bindings: tuple[Binding, ...]

    def to_dict(self) -> dict[str, Any]:
        out = self.plan.to_dict()
        out["bindings"] = [b.to_dict() for b in self.bindings]
        return out


def explain(
    problem: Problem, cat: Catalog, time_limit_s: float = DEFAULT_TIME_LIMIT_S,
    workers: int = DEFAULT_WORKERS,
) -> Explanation:
    """Solve, then for a feasible plan say which families bind: each guard is relaxed in turn
    and the plan re-optimised; a family binds when relaxing it lowers the cost."""
    prep = prepare(problem, cat)
    t0 = time.perf_counter()
    sol = prep.model.solve(time_limit_s, workers)
    if not sol.status.has_plan:
        return Explanation(solve(problem, cat, time_limit_s, workers), ())
    plan = assemble(problem, prep.tables, prep.ip, sol, time.perf_counter() - t0)
    verify_plan(plan, problem, cat)
    return Explanation(plan, tuple(bindings(prep, sol, time_limit_s, workers)))


# -- single-model questions without a problem file -------------------------------------------

def single_model_problem(
    model: str, rps: float, isl: int, osl: int, ttft_p99_ms: float | None,
    tpot_p99_ms: float | None, e2e_p99_ms: float | None = None,
    gpus: Sequence[str] | None = None, quants: Sequence[str] | None = None,
    headroom: float = 0.0, pricing: str = "on-demand", max_configs: int = 2,
    inventory: dict[str, int] | None = None, cat: Catalog | None = None,
    max_quality_loss_points: float | None = None,
) -> Problem:
    """A one-model problem with fixed lengths (``isl``/``osl`` as every percentile)."""
    def target(ms: float | None) -> LatencyTarget | None:
        return LatencyTarget(max_ms=ms) if ms is not None else None

    try:
        d = ModelDemand(
            name=model, model=model,
            traffic=Traffic(peak_rps=rps, input_tokens=TokenLengths(p50=isl, p90=isl, p99=isl),
                            output_tokens=TokenLengths(p50=osl, p90=osl, p99=osl)),
            slo=Slo(ttft=target(ttft_p99_ms), tpot=target(tpot_p99_ms), e2e=target(e2e_p99_ms)),
            allowed_accelerators=list(gpus) if gpus else None,
            allowed_quantizations=list(quants) if quants else None,
            headroom=headroom, max_quality_loss_points=max_quality_loss_points,
        )
        problem = Problem(name=f"query-{model}", models=[d],
                          fleet=Fleet(pricing=pricing, max_configs_per_model=max_configs,  # type: ignore[arg-type]
                                      inventory=inventory))
    except ValidationError as exc:  # one line per error, no pydantic dump
        raise InputError(error_lines(exc, None), where="query") from None
    if cat is not None:
        check_ids(problem, cat, where="query")
    return problem


def query(problem: Problem, cat: Catalog, time_limit_s: float = DEFAULT_TIME_LIMIT_S,
          workers: int = DEFAULT_WORKERS) -> Plan:
    """Cheapest configuration(s) meeting the targets for a one-model problem."""
    return solve(problem, cat, time_limit_s, workers)


@dataclass(frozen=True)
class CapacityAnswer:
    """The most traffic a fixed number of GPUs serves within the targets."""

    status: SolveStatus
    model: str
    accelerator: str
    gpus_budget: int
    gpus_used: int
    requests_per_s: float
    output_tokens_per_s: float
    output_tokens_per_s_per_gpu: float
    cost_usd_per_hour: float
    deployments: tuple[dict[str, Any], ...]
    solve_seconds: float
    explanation: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {k: (v.value if isinstance(v, SolveStatus) else v) for k, v in self.__dict__.items()
                if k != "explanation" or self.status is SolveStatus.INFEASIBLE}


def _verify_capacity(
    problem: Problem, cat: Catalog, d: ModelDemand, deps: list[Deployment], rps: float, gpus: int
) -> None:
    """Re-check a capacity answer like a plan: the same model served at exactly the answer's
    rate (no headroom) by these deployments, within an inventory of ``gpus``."""
    served = d.model_copy(update={"traffic": d.traffic.model_copy(update={"peak_rps": rps}), "headroom": 0.0})
    inventory = {deps[0].accelerator: gpus} if deps else None
    as_problem = problem.model_copy(update={
        "models": [served], "fleet": problem.fleet.model_copy(update={"inventory": inventory})})
    systems = {}
    for dep in deps:
        s = systems.setdefault((dep.accelerator, dep.system), [0, dep.usd_per_gpu_hour])
        s[0] += dep.gpus
    uses = tuple(
        SystemUse(accelerator=a, system=sid, gpus_used=n, gpus_provisioned=n,
                  nodes=-(-n // cat.system(sid).gpus_per_node), cost_usd_per_hour=n * usd,
                  power_kw=n * cat.accelerator(a).tdp_w / 1e3)
        for (a, sid), (n, usd) in systems.items())
    plan = Plan(problem=problem.name, status=SolveStatus.OPTIMAL,
                cost_usd_per_hour=sum(u.cost_usd_per_hour for u in uses), bound_usd_per_hour=None,
                gap=None, solve_seconds=0.0, deployments=tuple(deps), systems=uses)
    verify_plan(plan, as_problem, cat)


def capacity(
    problem: Problem, cat: Catalog, gpus: int, time_limit_s: float = DEFAULT_TIME_LIMIT_S,
    workers: int = DEFAULT_WORKERS,
) -> CapacityAnswer:
    """Maximise requests/s of the problem's single model on at most ``gpus`` GPUs of its single
    allowed accelerator, with at most ``max_configs_per_model`` configurations."""
    t0 = time.perf_counter()
    (d,) = problem.models
    (gpu,) = d.allowed_accelerators or [None]
    tables = build_tables(problem, cat)
    t = tables[0]
    usable = [c for c in t.candidates if not c.violations]
    osl = d.traffic.output_tokens.mean()
    if not usable:
        why = [f"{k} target: best {t.best[k].label()}" for k in t.best] if t.best else []
        return CapacityAnswer(SolveStatus.INFEASIBLE, d.name, str(gpu), gpus, 0, 0.0, 0.0, 0.0, 0.0, (),
                              time.perf_counter() - t0,
                              (f"no configuration of {d.model} on {gpu} meets every target", *why))
    caps = [scaling.capacity_mrps(c.capacity_rps) for c in usable]
    status, reps = max_capacity([c.gpus for c in usable], caps, gpus,
                                problem.fleet.max_configs_per_model, time_limit_s, workers)
    if not status.has_plan:
        return CapacityAnswer(status, d.name, str(gpu), gpus, 0, 0.0, 0.0, 0.0, 0.0, (),
                              time.perf_counter() - t0,
                              (f"no configuration of {d.model} fits in {gpus} {gpu} GPUs",))
    deps = []
    rps_mrps = 0
    used = 0
    checked: list[Deployment] = []
    for c, cap_int, r in zip(usable, caps, reps):
        if r == 0:
            continue
        # the promise is what the solver counts (capacity rounded down to milli-req/s), so that
        # query at this rate finds the same fleet servable
        per_replica = scaling.mrps_to_rps(cap_int)
        ttft, tpot, e2e = _latencies(c, d, per_replica)
        rps_mrps += cap_int * r
        used += c.gpus * r
        checked.append(Deployment(
            model=d.name, model_id=c.model_id, accelerator=c.accelerator, system=c.system,
            quant=c.quant, kv_dtype=c.kv_dtype, tp=c.tp, pp=c.pp, ep=c.ep, max_batch=c.max_batch,
            replicas=r, gpus=r * c.gpus, gpus_per_replica=c.gpus, capacity_rps=c.capacity_rps * r,
            load_rps=per_replica * r, ttft_p99_ms=ttft, tpot_p99_ms=tpot, e2e_p99_ms=e2e,
            cost_usd_per_hour=r * c.cost_usd_per_hour, usd_per_gpu_hour=c.usd_per_gpu_hour,
            price_id=c.price_id, stated_error_pct=c.stated_error_pct,
        ))
        deps.append({
            "accelerator": c.accelerator, "system": c.system, "quant": c.quant,
            "kv_dtype": c.kv_dtype, "tp": c.tp, "pp": c.pp, "ep": c.ep, "max_batch": c.max_batch,
            "replicas": r, "gpus": r * c.gpus, "capacity_rps": per_replica * r,
            "ttft_p99_ms": ttft, "tpot_p99_ms": tpot, "e2e_p99_ms": e2e,
            "cost_usd_per_hour": r * c.cost_usd_per_hour,
        })
    rps = scaling.mrps_to_rps(rps_mrps)
    _verify_capacity(problem, cat, d, checked, rps, gpus)
    return CapacityAnswer(
        status=status, model=d.name, accelerator=str(gpu), gpus_budget=gpus, gpus_used=used,
        requests_per_s=rps, output_tokens_per_s=rps * osl,
        output_tokens_per_s_per_gpu=rps * osl / max(used, 1),
        cost_usd_per_hour=sum(x["cost_usd_per_hour"] for x in deps), deployments=tuple(deps),
        solve_seconds=time.perf_counter() - t0,
    )
