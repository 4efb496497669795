"""A solve session: a problem prepared once (candidate tables, integers, CP-SAT model), then
solved under any relaxation and hint, and turned into verified plans.

``prepare -> solve(relax, hint) -> plan``: :mod:`solver.api` (solve, query, explain),
:mod:`solver.explain` and :mod:`solver.pareto` all go through a :class:`Session`, and read the
solution through its questions (:meth:`Session.chosen`, :meth:`Session.provisioned`, ...) instead
of the integer encoding's internals.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from solver import scaling
from solver.candidates import Candidate, ModelTable, TableCache, build_tables
from solver.catalog import Catalog, provider_key
from solver.schemas import Price
from solver.families import Guard
from solver.optimize import DEFAULT_TIME_LIMIT_S, DEFAULT_WORKERS
from solver.optimize.encode import IntProblem, encode
from solver.optimize.brute import owned_cost, provisioned, used_gpus, within_shared_limits
from solver.optimize.decompose import as_fleet_plan, decompose, inventory_bound, with_bound, within_inventory
from solver.optimize.single import solve_single
from solver.optimize.solution import CORE_TIME_LIMIT_S, Conflict, IntSolution
from solver.disagg import unit_latencies
from solver.modes import disaggregation_notes, speculation_notes
from solver.sharing import attribute_mig_costs, sharing_notes
from solver.plan import Deployment, Plan, SolveStatus, SystemUse
from solver.problem import ModelDemand, Problem
from solver.slo import latencies
from solver.unitcost import plan_unit_costs
from solver.verify import verify_plan

if TYPE_CHECKING:
    from solver.optimize.cpsat import FleetModel


def deployment(c: Candidate, d: ModelDemand, replicas: int, load_rps: float,
               engine: str | None = None) -> Deployment:
    """``replicas`` replicas of candidate ``c`` serving ``load_rps`` together: the one place a
    deployment is made from a candidate (per-replica terms times replicas are the totals); a
    disaggregated unit counts as one replica (:mod:`solver.disagg`). ``engine``: the engine the
    terms came from, recorded in the plan."""
    if c.unit is not None:
        return replace(_unit_deployment(c, d, replicas, load_rps), engine=engine)
    lat = latencies(c.max_batch, c.service_s, c.ttft_min_ms, c.tpot_p99_ms, c.e2e_min_ms, d,
                    load_rps / replicas, c.steps)
    return Deployment(
        model=d.name, shape=c.shape, max_batch=c.max_batch, replicas=replicas,
        total_gpus=-(-replicas // c.per_gpu) if c.partition else replicas * c.gpus_per_replica,
        gpus_per_replica=c.gpus_per_replica, total_capacity_rps=c.capacity_rps_per_replica * replicas, load_rps=load_rps, ttft_p99_ms=lat.ttft_ms,
        tpot_p99_ms=lat.tpot_ms, e2e_p99_ms=lat.e2e_ms,
        cost_usd_per_hour=replicas * c.cost_usd_per_hour, usd_per_gpu_hour=c.usd_per_gpu_hour,
        price_id=c.price_id, stated_error_pct=c.stated_error_pct,
        speculative=dict(c.speculative) if c.speculative else None,
        partition=c.partition or None, replicas_per_gpu=c.per_gpu, engine=engine,
    )


def _unit_deployment(c: Candidate, d: ModelDemand, units: int, load_rps: float) -> Deployment:
    """``units`` disaggregated units of candidate ``c`` carrying ``load_rps`` together."""
    u = c.unit
    assert u is not None
    per_unit = load_rps / units
    lat = unit_latencies(u, d, per_unit)
    return Deployment(
        model=d.name, shape=c.shape, max_batch=c.max_batch, replicas=units,
        total_gpus=units * c.gpus_per_replica, gpus_per_replica=c.gpus_per_replica,
        total_capacity_rps=c.capacity_rps_per_replica * units, load_rps=load_rps, ttft_p99_ms=lat.ttft_ms,
        tpot_p99_ms=lat.tpot_ms, e2e_p99_ms=lat.e2e_ms,
        cost_usd_per_hour=units * c.cost_usd_per_hour, usd_per_gpu_hour=c.usd_per_gpu_hour,
        price_id=c.price_id, stated_error_pct=c.stated_error_pct, serving_mode="disaggregated",
        pools=u.pools(per_unit, d), kv_transfer_ms=u.transfer_ttft_ms, kv_link=u.link,
    )


def config_key(model: str, c: Candidate | Deployment) -> tuple:
    """A deployment configuration's identity: model entry, shape, batch cap, whether it
    decodes speculatively, the GPU share it runs on and, for a disaggregated unit, its pools'
    shapes and counts."""
    pools = tuple((p.role, p.tp, p.pp, p.ep, p.replicas, p.max_batch, p.accelerator, p.quant) for p in c.pools)
    return (model, c.shape, c.max_batch, bool(c.speculative), c.partition or "", pools)


STANDALONE_HINT_MODELS = 100
"""From this many models on, :meth:`Session.run` starts CP-SAT from
:meth:`Session.standalone_hint` (smaller problems solve to optimality in seconds without one,
and keep their plans unchanged)."""


@dataclass
class Session:
    """One problem prepared for solving. Build with :meth:`prepare`."""

    problem: Problem
    cat: Catalog
    tables: tuple[ModelTable, ...]
    ip: IntProblem
    """The integer encoding (for the optimiser's tests and the brute-force reference)."""
    _model: FleetModel | None = None
    """The CP-SAT model once built (see :attr:`model`); None until then."""
    _by_name: dict[str, int] = field(default_factory=dict)

    @classmethod
    def prepare(cls, problem: Problem, cat: Catalog, prune: bool = True,
                cache: TableCache | None = None) -> "Session":
        tables = build_tables(problem, cat, prune=prune, cache=cache)
        accs = {c.accelerator for t in tables for c in t.candidates if c.partition.startswith("mig ")}
        ip = encode(tables, problem.fleet, problem.applications,
                    {a: cat.accelerator(a).mig_profiles for a in sorted(accs)},
                    offers={k: {a: p.usd_per_gpu_hour for a, p in rows.items()}
                            for k, rows in provider_offers(cat, problem).items()})
        return cls(problem, cat, tables, ip, None, {t.name: m for m, t in enumerate(tables)})

    # -- solving -----------------------------------------------------------------------------
    @property
    def model(self) -> FleetModel:
        """The CP-SAT model, built on first use: a one-model problem without shared limits
        solved with every guard needs none (:mod:`solver.optimize.single`), and importing
        OR-Tools is most of a ``query``'s start-up."""
        if self._model is None:
            from solver.optimize.cpsat import FleetModel

            self._model = FleetModel(self.ip)
        return self._model

    @property
    def guards(self) -> tuple[Guard, ...]:
        return tuple(self.model.guards)

    def hint_from(self, plan: Plan) -> IntSolution:
        """A plan's replica counts as a search hint for this session (configurations matched
        by model, shape and batch cap; others get 0). Hints guide the search only."""
        wanted = {config_key(d.model, d): d.replicas for d in plan.deployments}
        replicas = tuple(wanted.get(config_key(c.model, c), 0) for c in self.ip.source)
        return IntSolution(SolveStatus.FEASIBLE, replicas=replicas)

    def standalone_hint(self) -> IntSolution:
        """Each model on its cheapest usable candidate per unit of capacity, replicas enough
        for its demand alone (shared limits ignored): a warm start for big fleets, where
        CP-SAT otherwise spends its time finding a first good plan. Hints guide the search
        only; the plan found is checked against every constraint as usual."""
        replicas = [0] * len(self.ip.candidates)
        for m, demand in enumerate(self.ip.demand_mrps):
            usable = [i for i in self.ip.by_model(m)
                      if not self.ip.candidates[i].violations and self.ip.candidates[i].cap_mrps > 0]
            if not usable:
                continue
            best = min(usable, key=lambda i: (self.ip.candidates[i].cost_cents / self.ip.candidates[i].cap_mrps, i))
            replicas[best] = -(-demand // self.ip.candidates[best].cap_mrps)
        return IntSolution(SolveStatus.FEASIBLE, replicas=tuple(replicas))

    def inventory_hint(self) -> IntSolution | None:
        """The models' own optima moved off the accelerators whose inventory they overfill
        (:func:`solver.optimize.decompose.within_inventory`): a start within the inventory for
        big fleets where it binds, so CP-SAT need not find a first plan itself. None where the
        decomposition does not apply, the own optima fit already, or no such moves are found."""
        parts = decompose(self.ip)
        fits = within_inventory(self.ip, parts) if parts is not None else None
        if fits is None or fits.replicas == parts.replicas:
            return None
        prov = provisioned(self.ip, {i: r for i, r in enumerate(fits.replicas) if r})
        return IntSolution(SolveStatus.FEASIBLE, replicas=fits.replicas, provisioned=tuple(prov),
                           nodes=tuple(-(-p // s.gpus_per_node) for p, s in zip(prov, self.ip.systems)))

    def solve(self, time_limit_s: float = DEFAULT_TIME_LIMIT_S, workers: int = DEFAULT_WORKERS,
              relax: frozenset[Guard] = frozenset(), hint: IntSolution | Plan | None = None) -> IntSolution:
        """Optimise with every guard but those in ``relax``; ``hint``: a solution or plan to
        start the search from. With every guard enforced, a one-model problem without shared
        limits is solved exactly by enumeration instead (the same optimum; see
        :mod:`solver.optimize.single`; hints are not needed there)."""
        bound = None
        if not relax:
            exact = solve_single(self.ip)
            if exact is not None:
                return exact
            t0 = time.perf_counter()
            parts = decompose(self.ip)
            if parts is not None:
                whole = as_fleet_plan(self.ip, parts, time.perf_counter() - t0)
                if whole is not None:
                    return whole
                bound = parts.bound_cents
                if hint is None:
                    hint = IntSolution(SolveStatus.FEASIBLE, replicas=parts.replicas)
                elif len(self.tables) >= STANDALONE_HINT_MODELS and not isinstance(hint, Plan) and hint.provisioned:
                    # a big fleet started within its inventory: price the inventory for a tighter bound
                    known = owned_cost(self.ip, list(hint.provisioned))
                    if within_shared_limits(self.ip, list(hint.provisioned), known):
                        bound = inventory_bound(self.ip, parts, known)
        if isinstance(hint, Plan):
            hint = self.hint_from(hint) if hint.status.has_plan else None
        sol = self.model.solve(time_limit_s, workers, relax=relax, hint=hint)
        return sol if bound is None else with_bound(sol, bound)

    def conflict(self, time_limit_s: float = CORE_TIME_LIMIT_S) -> Conflict:
        return self.model.core(time_limit_s)

    # -- plans -------------------------------------------------------------------------------
    def plan(self, sol: IntSolution, seconds: float, verify: bool = True) -> Plan:
        """The verified plan of a solution that has one; load is split in proportion to
        capacity."""
        deps: list[Deployment] = []
        rows = self._provider_rows(sol)
        for t in self.tables:
            chosen = [(c if c.accelerator not in rows else
                       replace(c, usd_per_gpu_hour=rows[c.accelerator].usd_per_gpu_hour, price_id=rows[c.accelerator].id), r)
                      for c, r in self.chosen(sol, t.name)]
            total_cap = sum(c.capacity_rps_per_replica * r for c, r in chosen)
            for c, r in chosen:
                deps.append(deployment(c, t.demand, r, t.load_rps * c.capacity_rps_per_replica * r / total_cap,
                                       t.demand.engine or self.cat.default_engine))
        if self.ip.mig_pools:
            deps = attribute_mig_costs(self.cat, deps)
        used = self.used_gpus(sol)
        systems = []
        for s, row in enumerate(self.ip.systems):
            prov = sol.provisioned[s]
            if prov == 0:
                continue
            usd, tdp = self._price[(row.accelerator, row.system)]
            usd = rows[row.accelerator].usd_per_gpu_hour if row.accelerator in rows else usd
            owned = sol.owned[s] if sol.owned else 0
            q = self.problem.fleet.owned_usd_per_gpu_hour
            systems.append(SystemUse(
                accelerator=row.accelerator, system=row.system, gpus_used=used[s],
                gpus_provisioned=prov, nodes=-(-prov // row.gpus_per_node),
                cost_usd_per_hour=(prov - owned) * usd + owned * q, power_kw=prov * tdp / 1e3,
                gpus_owned=owned, owned_usd_per_gpu_hour=q if owned else 0.0,
            ))
        plan = Plan(
            problem=self.problem.name, status=sol.status,
            cost_usd_per_hour=sum(s.cost_usd_per_hour for s in systems),
            bound_usd_per_hour=scaling.cents_to_usd(sol.bound_cents) if sol.bound_cents is not None else None,
            gap=sol.gap, solve_seconds=seconds, deployments=tuple(deps), systems=tuple(systems),
            candidates=self.candidate_counts(), pruned={t.name: t.pruned for t in self.tables},
            termination=sol.termination,
            unit_costs=plan_unit_costs(self.problem, deps, sum(s.cost_usd_per_hour for s in systems)),
            notes=(speculation_notes(self.problem, deps) + sharing_notes(self.problem, deps, self.cat)
                   + disaggregation_notes(deps)),
            applications=_application_paths(self.problem, deps),
            provider=self.ip.providers[sol.provider].key if sol.provider >= 0 else None,
        )
        if verify:
            verify_plan(plan, self.problem, self.cat)
        return plan

    def no_plan(self, sol: IntSolution, seconds: float,
                conflict_time_limit_s: float = CORE_TIME_LIMIT_S) -> Plan:
        """The plan of a solve without one: for a proven infeasibility, the conflicting
        families with one sentence each (or, when conflict search runs out of time, a sentence
        saying the conflict is unknown); for a time-out, nothing is claimed."""
        from solver.explain import infeasibility_sentences

        if sol.status is not SolveStatus.INFEASIBLE:
            return Plan(problem=self.problem.name, status=sol.status, cost_usd_per_hour=None,
                        bound_usd_per_hour=None, gap=None, solve_seconds=seconds,
                        termination=sol.termination)
        conflict = self.conflict(conflict_time_limit_s)
        if conflict.proven:
            sentences = tuple(infeasibility_sentences(self, conflict.guards))
        else:
            sentences = ("no plan meets every constraint (proven), but the search for the "
                         "conflicting constraint families ran out of time: which ones conflict is "
                         "unknown; raise --time-limit",)
        return Plan(
            problem=self.problem.name, status=sol.status, cost_usd_per_hour=None,
            bound_usd_per_hour=None, gap=None, solve_seconds=seconds,
            explanation=sentences, conflict=tuple(g.name for g in conflict.guards),
            candidates=self.candidate_counts(), pruned={t.name: t.pruned for t in self.tables},
            termination=sol.termination, conflict_termination=conflict.termination,
        )

    def run(self, time_limit_s: float = DEFAULT_TIME_LIMIT_S, workers: int = DEFAULT_WORKERS,
            hint: IntSolution | Plan | None = None,
            conflict_time_limit_s: float | None = None) -> tuple[Plan, IntSolution]:
        """Solve with every guard and return the verified plan (or the explained absence of
        one) with the solution it came from. The conflict search gets
        ``conflict_time_limit_s`` (default: the larger of ``time_limit_s`` and
        ``CORE_TIME_LIMIT_S``, so raising the time limit also lengthens it)."""
        if conflict_time_limit_s is None:
            conflict_time_limit_s = max(time_limit_s, CORE_TIME_LIMIT_S)
        if hint is None and len(self.tables) >= STANDALONE_HINT_MODELS:
            hint = self.inventory_hint() or self.standalone_hint()
        t0 = time.perf_counter()
        sol = self.solve(time_limit_s, workers, hint=hint)
        if sol.status.has_plan:
            return self.plan(sol, time.perf_counter() - t0), sol
        return self.no_plan(sol, time.perf_counter() - t0, conflict_time_limit_s), sol

    # -- questions about a solution ----------------------------------------------------------
    def table(self, name: str) -> ModelTable:
        return self.tables[self._by_name[name]]

    def candidate_counts(self) -> dict[str, int]:
        return {t.name: len(t.candidates) for t in self.tables}

    def chosen(self, sol: IntSolution, model: str | None = None) -> list[tuple[Candidate, int]]:
        """(candidate, replicas) with replicas > 0 in table order, of one model or all."""
        idx = range(len(sol.replicas)) if model is None else self.ip.by_model(self._by_name[model])
        return [(self.ip.source[i], sol.replicas[i]) for i in idx if sol.replicas[i] > 0]

    def provisioned(self, sol: IntSolution, accelerator: str | None = None) -> int:
        """GPUs provisioned (of one accelerator, or all)."""
        return sum(p for p, s in zip(sol.provisioned, self.ip.systems)
                   if accelerator is None or s.accelerator == accelerator)

    def used_gpus(self, sol: IntSolution) -> list[int]:
        """GPUs running replicas per system index (:func:`~solver.optimize.brute.used_gpus`)."""
        return used_gpus(self.ip, {i: r for i, r in enumerate(sol.replicas) if r > 0})

    def idle_gpus(self, sol: IntSolution) -> int:
        """GPUs provisioned but not running a replica (partly used whole nodes)."""
        return self.provisioned(sol) - sum(self.used_gpus(sol))

    def power_kw(self, sol: IntSolution) -> float:
        """GPU TDP of every GPU provisioned, kW."""
        return sum(p * s.tdp_w for p, s in zip(sol.provisioned, self.ip.systems)) / 1e3

    def inventory(self, accelerator: str) -> int | None:
        return self.ip.inventory.get(accelerator)

    def _provider_rows(self, sol: IntSolution) -> dict[str, Price]:
        """``one_provider: fleet``: the chosen provider's cheapest row per accelerator (empty
        without a provider choice: the tables' own, cheapest, prices hold)."""
        if sol.provider < 0:
            return {}
        return provider_offers(self.cat, self.problem)[self.ip.providers[sol.provider].key]

    @property
    def _price(self) -> dict[tuple[str, str], tuple[float, float]]:
        out = {(a.accelerator, a.system): (a.usd_per_gpu_hour, a.tdp_w) for c in self.ip.source for a in c.also}
        return out | {(c.accelerator, c.system): (c.usd_per_gpu_hour, c.tdp_w) for c in self.ip.source}


def provider_offers(cat: Catalog, problem: Problem) -> dict[str, dict[str, Price]]:
    """``one_provider: fleet`` without a named provider: provider key -> accelerator -> that
    provider's cheapest row for ``fleet.pricing`` (the choice CP-SAT makes); empty otherwise."""
    fleet = problem.fleet
    if fleet.one_provider != "fleet" or fleet.provider is not None:
        return {}
    out: dict[str, dict[str, Price]] = {}
    for acc in sorted(cat.accelerators):
        for p in cat.prices_for(acc, fleet.pricing):  # cheapest first
            out.setdefault(provider_key(p.provider), {}).setdefault(acc, p)
    return out


def _application_paths(problem: Problem, deps: list[Deployment]) -> tuple[dict, ...]:
    """Each application path with its stages' e2e p99 in the plan (the slowest deployment of
    each stage), for the plan JSON and the report."""
    if not problem.applications:
        return ()
    from solver.chains import path_rows

    stage_ms: dict[str, float] = {}
    for d in deps:
        stage_ms[d.model] = max(stage_ms.get(d.model, 0.0), d.e2e_p99_ms)
    return tuple(path_rows(problem.applications, stage_ms))


def solve_problem(problem: Problem, cat: Catalog, time_limit_s: float = DEFAULT_TIME_LIMIT_S,
                  workers: int = DEFAULT_WORKERS, prune: bool = True, cache: TableCache | None = None,
                  conflict_time_limit_s: float | None = None) -> Plan:
    """Prepare and run a session in one call (what :func:`solver.api.solve` does)."""
    t0 = time.perf_counter()
    session = Session.prepare(problem, cat, prune, cache)
    plan, _ = session.run(time_limit_s, workers, conflict_time_limit_s=conflict_time_limit_s)
    return _with_seconds(plan, time.perf_counter() - t0)


def _with_seconds(plan: Plan, seconds: float) -> Plan:
    return replace(plan, solve_seconds=seconds)

