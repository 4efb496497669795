"""Python API of the optimiser: ``solve``, ``query``, ``capacity``, ``explain``.

Each call prepares a :class:`~solver.session.Session` (candidate tables, their integer
encoding and the CP-SAT model), solves it, assembles a :class:`~solver.plan.Plan` and re-checks
it with :mod:`solver.verify` before returning it. Nothing mutates the problem or the catalog.
``capacity`` asks the inverse question on one table (a knapsack, not the fleet model).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from solver import guardrails, scaling
from solver.candidates import TableCache, build_tables
from solver.catalog import Catalog
from solver.errors import InputError
from solver.explain import Binding, bindings
from solver.loading import error_lines
from solver.optimize import DEFAULT_TIME_LIMIT_S, DEFAULT_WORKERS
from solver.plan import Deployment, Plan, SolveStatus, SystemUse
from solver.problem import (
    Fleet, LatencyTarget, ModelDemand, Problem, Slo, TokenLengths, Traffic, check_ids,
)
from solver.session import Session, deployment, solve_problem
from solver.verify import verify_plan



Prepared = Session
"""The former name of :class:`~solver.session.Session` (kept for callers)."""


def prepare(problem: Problem, cat: Catalog, prune: bool = True, cache: TableCache | None = None) -> Session:
    """Tables, integers and a CP-SAT model for ``problem``, ready to solve."""
    return Session.prepare(problem, cat, prune, cache)


def solve(
    problem: Problem, cat: Catalog, time_limit_s: float = DEFAULT_TIME_LIMIT_S,
    workers: int = DEFAULT_WORKERS, prune: bool = True, cache: TableCache | None = None,
    conflict_time_limit_s: float | None = None,
) -> Plan:
    """The cheapest plan (or the best within ``time_limit_s``), verified; infeasible plans carry
    the conflicting families and one sentence per family. ``cache``: shape evaluations to reuse
    (see :class:`~solver.candidates.TableCache`); ``conflict_time_limit_s``: for the conflict
    search (default: the larger of ``time_limit_s`` and ``CORE_TIME_LIMIT_S``)."""
    plan = solve_problem(problem, cat, time_limit_s, workers, prune, cache, conflict_time_limit_s)
    return guardrails.attach(plan, problem, cat) if plan.status.has_plan else plan


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
    workers: int = DEFAULT_WORKERS, cache: TableCache | None = None,
) -> Explanation:
    """Solve, then for a feasible plan say which families bind: each guard is relaxed in turn
    and the plan re-optimised; a family binds when relaxing it lowers the cost."""
    session = Session.prepare(problem, cat, cache=cache)
    plan, sol = session.run(time_limit_s, workers)
    if not sol.status.has_plan:
        return Explanation(plan, ())
    return Explanation(guardrails.attach(plan, problem, cat), tuple(bindings(session, sol, time_limit_s, workers)))


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
          workers: int = DEFAULT_WORKERS, cache: TableCache | None = None) -> Plan:
    """Cheapest configuration(s) meeting the targets for a one-model problem (``cache``: as
    :func:`solve`)."""
    return solve(problem, cat, time_limit_s, workers, cache=cache)


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
    # capacity asks what G GPUs serve, not how many replicas a service needs: no replica minimum
    served = d.model_copy(update={"traffic": d.traffic.model_copy(update={"peak_rps": rps}), "headroom": 0.0,
                                  "min_replicas": 1, "redundancy": "none"})
    inventory = {deps[0].accelerator: gpus} if deps else None
    as_problem = problem.model_copy(update={
        "models": [served], "fleet": problem.fleet.model_copy(update={"inventory": inventory})})
    systems = {}
    for dep in deps:
        s = systems.setdefault((dep.accelerator, dep.system), [0, dep.usd_per_gpu_hour])
        s[0] += dep.total_gpus
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
    workers: int = DEFAULT_WORKERS, cache: TableCache | None = None,
) -> CapacityAnswer:
    """Maximise requests/s of the problem's single model on at most ``gpus`` GPUs of its single
    allowed accelerator, with at most ``max_configs_per_model`` configurations."""
    t0 = time.perf_counter()
    (d,) = problem.models
    (gpu,) = d.allowed_accelerators or [None]
    tables = build_tables(problem, cat, cache=cache)
    t = tables[0]
    # whole GPUs only: a GPU share (gpu_sharing) is not a whole number of GPUs per replica
    usable = [c for c in t.candidates if not c.violations and not c.partition]
    osl = d.traffic.output_tokens.mean()
    if not usable:
        why = [f"{k} target: best {t.best[k].label()}" for k in t.best] if t.best else []
        return CapacityAnswer(SolveStatus.INFEASIBLE, d.name, str(gpu), gpus, 0, 0.0, 0.0, 0.0, 0.0, (),
                              time.perf_counter() - t0,
                              (f"no configuration of {d.model} on {gpu} meets every target", *why))
    caps = [scaling.capacity_mrps(c.capacity_rps_per_replica) for c in usable]
    from solver.optimize.cpsat import max_capacity  # OR-Tools only where this question is asked

    status, reps = max_capacity([c.gpus_per_replica for c in usable], caps, gpus,
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
        dep = deployment(c, d, r, per_replica * r)
        rps_mrps += cap_int * r
        used += dep.total_gpus
        checked.append(dep)
        deps.append({**{k: dep.to_dict()[k] for k in (
            "accelerator", "system", "quant", "kv_dtype", "tp", "pp", "ep", "max_batch",
            "replicas", "total_gpus", "gpus_per_replica", "ttft_p99_ms", "tpot_p99_ms", "e2e_p99_ms",
            "cost_usd_per_hour")}, "total_capacity_rps": per_replica * r})
    rps = scaling.mrps_to_rps(rps_mrps)
    _verify_capacity(problem, cat, d, checked, rps, gpus)
    return CapacityAnswer(
        status=status, model=d.name, accelerator=str(gpu), gpus_budget=gpus, gpus_used=used,
        requests_per_s=rps, output_tokens_per_s=rps * osl,
        output_tokens_per_s_per_gpu=rps * osl / max(used, 1),
        cost_usd_per_hour=sum(x["cost_usd_per_hour"] for x in deps), deployments=tuple(deps),
        solve_seconds=time.perf_counter() - t0,
    )
