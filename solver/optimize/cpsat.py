"""The CP-SAT model of a fleet plan, its solve, and infeasibility cores. The only module that
imports OR-Tools.

Formulation (integers as scaled by :mod:`solver.scaling`):

Sets: models m; candidates c in C_m (one table per model); systems s (accelerator x node shape);
accelerators a; guards g = (family, scope), one Boolean assumption literal A_g each.

Data per candidate: gpus_c, cap_c (milli-req/s at the SLO), M_c = ceil(D_m / cap_c), system s(c),
violated families V_c. Per system: gpus per node n_s, price p_s (cents per GPU-hour), TDP w_s.
Per model: demand D_m = ceil(1000 x peak x (1 + headroom)). Fleet: K (max configurations per
model), inventory I_a, power limit W, budget B.

Owned GPUs O_a per accelerator cost q (cents per GPU-hour, default 0) instead of the rental
price; replica minimum R_m per model; N+1 models (set S) keep their demand covered without their
largest replica.

GPU shares h (:mod:`solver.costmodel.partition`): GPUs of system s(h) split into k_h equal shares
of k co-located replicas; G_h whole GPUs hold them. MIG pools q (one per system with MIG shares):
maximal layouts l, each a_(l,h) instances of MIG share h on one GPU; Y_(q,l) GPUs in layout l.

Variables: replicas r_c in [0, M_c]; use u_c in {0, 1}; provisioned GPUs P_s >= 0; nodes N_s >= 0;
owned GPUs in use o_s >= 0 (systems of owned accelerators); largest replica z_m (m in S).

    minimise    sum_s p_s P_s - sum_s (p_s - q) o_s                      (cents per hour)
                (with MIG pools: W x that + sum Y, W above any sum Y: the fewest pool GPUs at
                the least cost)
    subject to  r_c <= M_c u_c,  u_c <= r_c                              (link)
                sum_{c in C_m} cap_c r_c >= D_m                for all m  (capacity, hard)
                sum_{c in C_m} r_c >= R_m                      for all m  (replica minimum, hard)
                z_m >= cap_c u_c,  sum_{c in C_m} cap_c r_c - z_m >= D_m   m in S  (N+1, hard)
                P_s >= sum_{c in s, whole} gpus_c r_c + sum_{h of s} G_h + sum_{l of q(s)} Y_(q,l)  (hard)
                k_h G_h >= sum_{c in h} r_c > k_h (G_h - 1)    for co-located shares h (hard)
                sum_l a_(l,h) Y_(q,l) >= sum_{c in h} r_c      for MIG shares h of pool q (hard)
                o_s <= P_s,  sum_{s of a} o_s <= O_a           for all s, a (owned, hard)
      A_(f,m)   => sum_{c in C_m, f in V_c} r_c = 0     f in memory, ttft, tpot, e2e, topology,
                                                           quantization, quality
      A_(max_configs,m) => sum_{c in C_m} u_c <= K
      A_(inventory,a)   => sum_{s of a} P_s <= I_a
      A_whole_nodes     => P_s = n_s N_s                       for all s
      A_power           => sum_s w_s P_s <= W
      A_budget          => sum_s p_s P_s <= B
                L_m >= lat_c u_c                   for c in C_m, m a stage  (stage latency, hard)
                T_(a,v) >= L_v (entry),  T_(a,v) >= T_(a,u) + k_uv L_v   for edges u -> v of a
      A_(app_latency,a) => T_(a,v) <= B_a                      for all v of a

``one_provider: fleet`` (providers k with price p_(s,k) per system, where they rent it): V_k in
{0, 1}, rented GPUs R_(s,k) >= 0 (0 where k has no row), and the cost term p_s P_s - (p_s - q) o_s
becomes sum_(s,k) p_(s,k) R_(s,k) + q sum_s o_s (the budget too):

                sum_k R_(s,k) = P_s - o_s,  R_(s,k) <= ub(P_s) V_k     for all s, k (hard)
      A_one_provider => sum_k V_k = 1

Applications (:mod:`solver.chains`): lat_c is candidate c's e2e at its percentile under capacity
load (microseconds, rounded up), k_uv the edge's calls, B_a the budget (rounded down). L_m is at
least the slowest configuration in use, T the longest path to a stage, so the budget holds on
every path exactly when sum over the path of k x (slowest chosen configuration) <= B_a.

Every A_g is passed as an assumption; on INFEASIBLE, ``sufficient_assumptions_for_infeasibility``
(single worker, no objective) names a set of guards that conflict, which is then shrunk by
deletion to a minimal one (each guard left out in turn; kept if the rest becomes feasible).
Without whole nodes, P_s equals the GPUs in use at an optimum (it is minimised); with them, the
cost counts every GPU of every node. Packing replicas into nodes by GPU count is exact because
every replica either divides a node or fills whole nodes (the topology family guarantees it).

Determinism: a fixed ``random_seed``, one worker by default (``DEFAULT_WORKERS``; more workers
run in ``interleave_search``, CP-SAT's deterministic parallel mode), and a deterministic time
limit alongside the wall-clock one (the same number: whichever binds first; a binding wall-clock
limit makes the result machine-dependent); candidates enter in their stable table order.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

from ortools.sat.python import cp_model

from solver.families import CANDIDATE_FAMILIES, Family, Guard
from solver.optimize.encode import IntProblem
from solver.plan import SolveStatus, Termination

from solver.optimize import DEFAULT_WORKERS
from solver.optimize.solution import CORE_TIME_LIMIT_S, Conflict, IntSolution  # noqa: F401 (re-exported)

SEED = 20240611


def guards_of(ip: IntProblem) -> list[Guard]:
    """Every guard the problem needs, in a stable order."""
    out: list[Guard] = []
    for m, name in enumerate(ip.models):
        idx = ip.by_model(m)
        for f in CANDIDATE_FAMILIES:
            if any(f in ip.candidates[i].violations for i in idx):
                out.append(Guard(f, name))
        if len(idx) > ip.max_configs:
            out.append(Guard(Family.CONFIGS, name))
    for a in sorted({s.accelerator for s in ip.systems}):
        if a in ip.inventory:
            out.append(Guard(Family.INVENTORY, a))
    if ip.whole_nodes and ip.systems:
        out.append(Guard(Family.NODES))
    if ip.power_limit_w is not None:
        out.append(Guard(Family.POWER))
    if ip.budget_cents is not None:
        out.append(Guard(Family.BUDGET))
    for ch in ip.chains:
        out.append(Guard(Family.CHAIN, ch.name))
    if ip.providers:
        out.append(Guard(Family.PROVIDER))
    return out


def configured_solver(time_limit_s: float, workers: int) -> cp_model.CpSolver:
    """A CP-SAT solver with fleetplan's fixed seed, worker count and (deterministic) time limit."""
    solver = cp_model.CpSolver()
    p = solver.parameters
    p.random_seed = SEED
    p.num_workers = workers
    p.linearization_level = 2
    if workers > 1:
        p.interleave_search = True
    p.max_time_in_seconds = time_limit_s
    p.max_deterministic_time = time_limit_s
    # Ctrl-C must interrupt fleetplan, not quietly cut one search short and carry on with a
    # worse answer: Python raises KeyboardInterrupt once the current solve returns.
    p.catch_sigint_signal = False
    return solver


def termination_of(code: int) -> Termination:
    """CP-SAT's status code as a solver-neutral termination reason. CP-SAT answers FEASIBLE and
    UNKNOWN only when a limit (here: the time limit) stopped it."""
    return {
        cp_model.OPTIMAL: Termination.OPTIMAL,
        cp_model.FEASIBLE: Termination.FEASIBLE_AT_TIME_LIMIT,
        cp_model.INFEASIBLE: Termination.INFEASIBLE_PROVEN,
    }.get(code, Termination.UNKNOWN_AT_TIME_LIMIT)


def neutral_status(code: int) -> SolveStatus:
    """CP-SAT's status code as fleetplan's solver-neutral status."""
    return termination_of(code).status


class FleetModel:
    """Builds the CP-SAT model once; solves it under any subset of guards."""

    def __init__(self, ip: IntProblem) -> None:
        self.ip = ip
        self.model = cp_model.CpModel()
        self.guards = guards_of(ip)
        self.lit: dict[Guard, cp_model.IntVar] = {}
        self._build_variables()
        self._add_constraints()
        self._add_objective()

    # -- building ----------------------------------------------------------------------------
    def _build_variables(self) -> None:
        ip, md = self.ip, self.model
        self.r = [md.new_int_var(0, c.max_replicas, f"r{i}") for i, c in enumerate(ip.candidates)]
        self.u = [md.new_bool_var(f"u{i}") for i in range(len(ip.candidates))]
        self.P, self.N = [], []
        p_ub: list[int] = []
        self.G: dict[int, cp_model.IntVar] = {}
        share_ub = [-(-sum(c.max_replicas for c in ip.candidates if c.gpu_share == h) // share.per_gpu)
                    for h, share in enumerate(ip.gpu_shares)]
        for h in range(len(ip.gpu_shares)):
            if h not in ip.pooled:
                self.G[h] = md.new_int_var(0, share_ub[h], f"G{h}")
        # MIG pools: Y[q][l] GPUs of pool q in layout l (at most one GPU per replica of the pool)
        self.Y: list[list[cp_model.IntVar]] = []
        self._y_ub = 0
        for q, pool in enumerate(ip.mig_pools):
            ub = sum(share_ub[h] for h in pool.shares)
            self.Y.append([md.new_int_var(0, ub, f"Y{q}_{l}") for l in range(len(pool.layouts))])
            self._y_ub += ub * len(pool.layouts)
        for s, sysrow in enumerate(ip.systems):
            ub = sum(c.max_replicas * c.gpus for c in ip.candidates if c.system == s and c.gpu_share < 0)
            ub += sum(c.max_replicas * g for c in ip.candidates for t, g in c.also if t == s)
            ub += sum(share_ub[h] for h, share in enumerate(ip.gpu_shares) if share.system == s)
            nodes_ub = -(-ub // sysrow.gpus_per_node)
            self.P.append(md.new_int_var(0, nodes_ub * sysrow.gpus_per_node, f"P{s}"))
            p_ub.append(nodes_ub * sysrow.gpus_per_node)
            self.N.append(md.new_int_var(0, nodes_ub, f"N{s}"))
        for g in self.guards:
            self.lit[g] = md.new_bool_var(g.name)
        self.O = [md.new_int_var(0, min(ip.owned.get(row.accelerator, 0), p_ub[s]), f"O{s}")
                  for s, row in enumerate(ip.systems)]
        self.p_ub = p_ub
        # one_provider: fleet: V_k chooses provider k; R_(s,k) GPUs of system s rented from k
        self.V = [md.new_bool_var(f"V[{p.key}]") for p in ip.providers]
        self.R = [[md.new_int_var(0, p_ub[s] if p.offers(s) else 0, f"R{s}[{p.key}]") for p in ip.providers]
                  for s in range(len(ip.systems))]
        self.Z: dict[int, cp_model.IntVar] = {}
        for m, spare in enumerate(ip.n_plus_one):
            caps = [ip.candidates[i].cap_mrps for i in ip.by_model(m)]
            if spare and caps:
                self.Z[m] = md.new_int_var(0, max(caps), f"Z{m}")

    def _add_constraints(self) -> None:
        self._define_link_constraints()
        self._define_capacity_constraints()
        self._define_owned_constraints()
        self._define_candidate_family_constraints()
        self._define_config_constraints()
        self._define_inventory_constraints()
        self._define_node_constraints()
        self._define_power_constraints()
        self._define_budget_constraints()
        self._define_chain_constraints()
        self._define_provider_constraints()

    def _define_link_constraints(self) -> None:
        for i, c in enumerate(self.ip.candidates):
            self.model.add(self.r[i] <= c.max_replicas * self.u[i])
            self.model.add(self.u[i] <= self.r[i])
        nodes = self.lit.get(Guard(Family.NODES))
        on_share = [sum(self.r[i] for i, c in enumerate(self.ip.candidates) if c.gpu_share == h)
                    for h in range(len(self.ip.gpu_shares))]
        for h, G in self.G.items():
            k = self.ip.gpu_shares[h].per_gpu
            self.model.add(k * G >= on_share[h])
            self.model.add(k * G <= on_share[h] + k - 1)
        for pool, Y in zip(self.ip.mig_pools, self.Y):
            for j, h in enumerate(pool.shares):
                self.model.add(sum(lay[j] * y for lay, y in zip(pool.layouts, Y) if lay[j]) >= on_share[h])
        for s, row in enumerate(self.ip.systems):
            used = sum(c.gpus * self.r[i] for i, c in enumerate(self.ip.candidates) if c.system == s and c.gpu_share < 0)
            used += sum(g * self.r[i] for i, c in enumerate(self.ip.candidates) for t, g in c.also if t == s)
            used += sum(G for h, G in self.G.items() if self.ip.gpu_shares[h].system == s)
            used += sum(y for pool, Y in zip(self.ip.mig_pools, self.Y) if pool.system == s for y in Y)
            self.model.add(self.P[s] >= used)
            # No idle GPU beyond what whole nodes need (owned GPUs cost nothing, so the
            # objective alone would not keep P_s tight).
            if nodes is None:
                self.model.add(self.P[s] <= used)
            else:
                self.model.add(self.P[s] <= used + row.gpus_per_node - 1).only_enforce_if(nodes)
                self.model.add(self.P[s] <= used).only_enforce_if(nodes.Not())

    def _define_capacity_constraints(self) -> None:
        for m, demand in enumerate(self.ip.demand_mrps):
            idx = self.ip.by_model(m)
            total = sum(self.ip.candidates[i].cap_mrps * self.r[i] for i in idx)
            self.model.add(total >= demand)
            if self.ip.min_replicas and self.ip.min_replicas[m] > 1:
                self.model.add(sum(self.r[i] for i in idx) >= self.ip.min_replicas[m])
            if m in self.Z:
                for i in idx:
                    self.model.add(self.Z[m] >= self.ip.candidates[i].cap_mrps * self.u[i])
                self.model.add(total - self.Z[m] >= demand)

    def _define_owned_constraints(self) -> None:
        for s in range(len(self.ip.systems)):
            self.model.add(self.O[s] <= self.P[s])
        for a, n in self.ip.owned.items():
            own = [self.O[s] for s, row in enumerate(self.ip.systems) if row.accelerator == a]
            if own:
                self.model.add(sum(own) <= n)

    def _define_candidate_family_constraints(self) -> None:
        for m, name in enumerate(self.ip.models):
            idx = self.ip.by_model(m)
            for f in CANDIDATE_FAMILIES:
                bad = [i for i in idx if f in self.ip.candidates[i].violations]
                if bad:
                    self.model.add(sum(self.r[i] for i in bad) == 0).only_enforce_if(self.lit[Guard(f, name)])

    def _define_config_constraints(self) -> None:
        for m, name in enumerate(self.ip.models):
            g = Guard(Family.CONFIGS, name)
            if g in self.lit:
                self.model.add(sum(self.u[i] for i in self.ip.by_model(m)) <= self.ip.max_configs).only_enforce_if(self.lit[g])

    def _define_inventory_constraints(self) -> None:
        for g in self.guards:
            if g.family is Family.INVENTORY:
                ps = [self.P[s] for s, row in enumerate(self.ip.systems) if row.accelerator == g.scope]
                self.model.add(sum(ps) <= self.ip.inventory[g.scope]).only_enforce_if(self.lit[g])

    def _define_node_constraints(self) -> None:
        g = Guard(Family.NODES)
        if g not in self.lit:
            return
        for s, row in enumerate(self.ip.systems):
            self.model.add(self.P[s] == row.gpus_per_node * self.N[s]).only_enforce_if(self.lit[g])

    def _define_power_constraints(self) -> None:
        g = Guard(Family.POWER)
        if g in self.lit:
            draw = sum(row.tdp_w * self.P[s] for s, row in enumerate(self.ip.systems))
            self.model.add(draw <= self.ip.power_limit_w).only_enforce_if(self.lit[g])

    def _define_budget_constraints(self) -> None:
        g = Guard(Family.BUDGET)
        if g in self.lit:
            self.model.add(self._cost() <= self.ip.budget_cents).only_enforce_if(self.lit[g])

    def _define_chain_constraints(self) -> None:
        """Stage latencies L_m and longest-path times T_(a,v) (see the module docstring)."""
        ip, md = self.ip, self.model
        L: dict[int, cp_model.IntVar] = {}
        top: dict[int, int] = {}
        for ch in ip.chains:
            for m in ch.stages:
                if m in L:
                    continue
                idx = ip.by_model(m)
                top[m] = max((ip.candidates[i].lat_us for i in idx), default=0)
                L[m] = md.new_int_var(0, top[m], f"L{m}")
                for i in idx:
                    md.add(L[m] >= ip.candidates[i].lat_us * self.u[i])
        for ch in ip.chains:
            ub = sum(max([k for _, v, k in ch.edges if v == m] + [1]) * top[m] for m in ch.stages)
            T = {m: md.new_int_var(0, ub, f"T[{ch.name},{m}]") for m in ch.stages}
            for m in ch.stages:
                if not any(v == m for _, v, _ in ch.edges):
                    md.add(T[m] >= L[m])
            for u, v, k in ch.edges:
                md.add(T[v] >= T[u] + k * L[v])
            lit = self.lit[Guard(Family.CHAIN, ch.name)]
            for m in ch.stages:
                md.add(T[m] <= ch.budget_us).only_enforce_if(lit)

    def _define_provider_constraints(self) -> None:
        """Rented GPUs R_(s,k) split P_s - O_s among providers, only from a chosen one; the guard
        chooses exactly one (relaxed: any, so each system from its cheapest)."""
        if not self.ip.providers:
            return
        for s, rows in enumerate(self.R):
            self.model.add(sum(rows) == self.P[s] - self.O[s])
            for k, var in enumerate(rows):
                if self.ip.providers[k].offers(s):
                    self.model.add(var <= self.p_ub[s] * self.V[k])
        self.model.add(sum(self.V) == 1).only_enforce_if(self.lit[Guard(Family.PROVIDER)])

    def _cost(self) -> cp_model.LinearExpr:
        q = self.ip.owned_cents_per_gpu
        if self.ip.providers:
            return (sum(p.price_cents[s] * self.R[s][k] for s in range(len(self.ip.systems))
                        for k, p in enumerate(self.ip.providers) if p.offers(s))
                    + q * sum(self.O))
        return sum(row.price_cents_per_gpu * self.P[s] - (row.price_cents_per_gpu - q) * self.O[s]
                   for s, row in enumerate(self.ip.systems))

    @property
    def _pool_weight(self) -> int:
        """Cost weight in the objective: 1 without MIG pools; with them, one more than the most
        pool GPUs, so that the objective ``W x cost + pool GPUs`` minimises the cost first and
        then the pool GPUs (a cover with a spare GPU could otherwise cost the same where owned
        GPUs are free, and the plan would count GPUs no replica needs)."""
        return 1 + self._y_ub if self.Y else 1

    def _add_objective(self) -> None:
        if self.Y:
            self.model.minimize(self._pool_weight * self._cost() + sum(y for Y in self.Y for y in Y))
        else:
            self.model.minimize(self._cost())

    # -- solving -----------------------------------------------------------------------------
    def _assume(self, relax: frozenset[Guard]) -> None:
        self.model.clear_assumptions()
        self.model.add_assumptions([self.lit[g] for g in self.guards if g not in relax])

    def solve(
        self, time_limit_s: float = 10.0, workers: int = DEFAULT_WORKERS,
        relax: frozenset[Guard] = frozenset(), hint: IntSolution | None = None,
    ) -> IntSolution:
        """Optimise with every guard enforced except those in ``relax``. ``hint``: a solution to
        start from, whole or replica counts only (replaces any hints set before; without it,
        hints are left as they are). Hints guide the search only."""
        self._assume(relax)
        if hint is not None and hint.status.has_plan:
            self.model.clear_hints()
            for var, value in zip(self.r, hint.replicas):
                self.model.add_hint(var, value)
            for var, value in zip(self.u, hint.replicas):  # whether a configuration is used
                self.model.add_hint(var, int(value > 0))
            for var, value in zip(self.P, hint.provisioned):
                self.model.add_hint(var, value)
            for var, value in zip(self.N, hint.nodes):
                self.model.add_hint(var, value)
            for var, value in zip(self.O, hint.owned):
                self.model.add_hint(var, value)
        if not self.ip.candidates:
            return IntSolution(SolveStatus.INFEASIBLE, termination=Termination.INFEASIBLE_PROVEN)
        solver = configured_solver(time_limit_s, workers)
        t0 = time.perf_counter()
        code = solver.solve(self.model)
        seconds = time.perf_counter() - t0
        if code == cp_model.MODEL_INVALID:
            raise AssertionError(f"CP-SAT model invalid: {self.model.validate()}")
        term = termination_of(code)
        status = term.status
        if not status.has_plan:
            return IntSolution(status, seconds=seconds, termination=term)
        chosen = [k for k, y in enumerate(self.V) if solver.boolean_value(y)]
        return IntSolution(
            status,
            replicas=tuple(int(solver.value(v)) for v in self.r),
            provisioned=tuple(int(solver.value(v)) for v in self.P),
            nodes=tuple(int(solver.value(v)) for v in self.N),
            owned=tuple(int(solver.value(v)) for v in self.O),
            cost_cents=int(solver.value(self._cost())),
            bound_cents=self._cost_bound(float(solver.best_objective_bound)),
            seconds=seconds,
            termination=term,
            provider=chosen[0] if len(chosen) == 1 else -1,
        )

    def _cost_bound(self, objective_bound: float) -> float:
        """A lower bound on the cost from CP-SAT's bound on the objective (:attr:`_pool_weight`:
        the pool GPUs add less than one weight, and the cost is whole cents)."""
        w = self._pool_weight
        return objective_bound if w == 1 else float(math.ceil((objective_bound - (w - 1)) / w))

    def _feasible(self, model: cp_model.CpModel, relax: frozenset[Guard], time_limit_s: float) -> bool | None:
        """Is there any plan with the guards outside ``relax`` enforced? None: unknown."""
        model.clear_assumptions()
        model.add_assumptions([self.lit[g] for g in self.guards if g not in relax])
        code = configured_solver(time_limit_s, 1).solve(model)
        if code in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            return True
        if code == cp_model.INFEASIBLE:
            return False
        return None

    def core(self, time_limit_s: float = CORE_TIME_LIMIT_S) -> Conflict:
        """A minimal set of guards that cannot hold together, with whether it is proven (see
        :class:`Conflict`; proven and empty: infeasible without any guard, i.e. some model has
        no candidate that could cover its demand).

        Runs on a copy of the model without its objective, with one worker (CP-SAT fills
        ``sufficient_assumptions_for_infeasibility`` only then), and shrinks the answer by
        deletion so that every guard left is needed. A time-out is never read as a proof:
        on the first solve it gives ``UNKNOWN_AT_TIME_LIMIT``; in a deletion step it keeps the
        guard (the set stays a proven conflict, perhaps not a minimal one)."""
        if not self.ip.candidates:
            return Conflict((), Termination.INFEASIBLE_PROVEN, True)
        feas = self.model.clone()
        feas.clear_objective()
        feas.clear_assumptions()
        feas.add_assumptions([self.lit[g] for g in self.guards])
        solver = configured_solver(time_limit_s, 1)
        term = termination_of(solver.solve(feas))
        if term is not Termination.INFEASIBLE_PROVEN:
            # FEASIBLE here would contradict the caller's proof; either way nothing is proven
            return Conflict((), Termination.UNKNOWN_AT_TIME_LIMIT if not term.status.has_plan
                            else term, False)
        names = {self.lit[g].index: g for g in self.guards}
        core = sorted({names[i] for i in solver.sufficient_assumptions_for_infeasibility() if i in names})
        minimal = True
        for g in list(core):
            rest = [h for h in core if h != g]
            relax = frozenset(h for h in self.guards if h not in rest)
            feasible = self._feasible(feas, relax, time_limit_s)
            if feasible is False:
                core = rest
            elif feasible is None:
                minimal = False
        return Conflict(tuple(core), Termination.INFEASIBLE_PROVEN, minimal)


def max_capacity(
    gpus: list[int], cap_mrps: list[int], gpu_budget: int, max_configs: int,
    time_limit_s: float = 10.0, workers: int = DEFAULT_WORKERS,
    share: Sequence[int] = (), per_gpu: Sequence[int] = (),
    pools: Sequence[tuple[tuple[int, ...], tuple[tuple[int, ...], ...]]] = (),
) -> tuple[SolveStatus, tuple[int, ...]]:
    """The inverse question on one accelerator: maximise sum cap_c r_c subject to
    sum gpus_c r_c <= G and at most K configurations (a bounded knapsack). GPU shares, as in
    :class:`FleetModel`: ``share[c]`` the share of candidate c (-1: whole GPUs), ``per_gpu[h]``
    replicas per GPU of share h, ``pools`` (MIG shares, their layouts) counted by layout; the
    GPUs the shares fill count in G."""
    md = cp_model.CpModel()
    share = list(share) or [-1] * len(gpus)
    ub = [gpu_budget * per_gpu[share[i]] if share[i] >= 0 else gpu_budget // g for i, g in enumerate(gpus)]
    r = [md.new_int_var(0, ub[i], f"r{i}") for i in range(len(gpus))]
    u = [md.new_bool_var(f"u{i}") for i in range(len(gpus))]
    for i in range(len(gpus)):
        md.add(r[i] <= ub[i] * u[i])
        md.add(u[i] <= r[i])
    on = [sum(x for x, h in zip(r, share) if h == k) for k in range(len(per_gpu))]
    pooled = {h for hs, _ in pools for h in hs}
    used = [g * x for g, x, h in zip(gpus, r, share) if h < 0]
    for k, n in enumerate(per_gpu):
        if k not in pooled:
            G = md.new_int_var(0, gpu_budget, f"G{k}")
            md.add(n * G >= on[k])
            used.append(G)
    for hs, layouts in pools:
        Y = [md.new_int_var(0, gpu_budget, f"Y{l}") for l in range(len(layouts))]
        for j, h in enumerate(hs):
            md.add(sum(lay[j] * y for lay, y in zip(layouts, Y) if lay[j]) >= on[h])
        used.extend(Y)
    md.add(sum(used) <= gpu_budget)
    md.add(sum(u) <= max_configs)
    md.add(sum(r) >= 1)
    md.maximize(sum(c * x for c, x in zip(cap_mrps, r)))
    solver = configured_solver(time_limit_s, workers)
    status = neutral_status(solver.solve(md))
    if not status.has_plan:
        return status, ()
    return status, tuple(int(solver.value(x)) for x in r)
