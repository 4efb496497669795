"""Explanations: a sentence per conflicting constraint family of an infeasible problem, and which
families bind a feasible plan.

Sentences quote the candidate tables (the best TTFT/TPOT/E2E any allowed candidate reaches, made
before pruning) and, for each family of a conflict, the cheapest plan that exists once that one
family is relaxed (a deletion-minimal conflict becomes feasible without any one of its members).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from solver import scaling
from solver.families import CANDIDATE_FAMILIES, Family, Guard

if TYPE_CHECKING:
    from solver.optimize.cpsat import IntSolution
    from solver.session import Session

RELAXED_TIME_LIMIT_S = 5.0


@dataclass(frozen=True)
class Binding:
    """Whether one family shapes a feasible plan."""

    family: str
    scope: str
    name: str
    description: str
    binding: bool
    cost_if_relaxed_usd_per_hour: float | None
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _usage(prep: "Session", sol: "IntSolution", g: Guard) -> str:
    """What the plan ``sol`` uses of the resource or target that guard ``g`` limits."""
    fleet = prep.problem.fleet
    if g.family is Family.INVENTORY:
        return f"{prep.provisioned(sol, g.scope)} of {prep.inventory(g.scope)} {g.scope} GPUs"
    if g.family is Family.POWER:
        return f"{prep.power_kw(sol):.1f} of {fleet.power_kw:g} kW"
    if g.family is Family.BUDGET:
        return f"${scaling.cents_to_usd(sol.cost_cents or 0):.2f}/h of ${fleet.budget_usd_per_hour:g}/h"
    if g.family is Family.NODES:
        return f"{prep.idle_gpus(sol)} idle GPU(s) in partly used nodes"
    if g.family is Family.CHAIN:
        from solver.chains import path_latency_ms, paths

        app = next(a for a in prep.problem.applications if a.name == g.scope)
        stage: dict[str, float] = {}
        for c, _ in prep.chosen(sol):
            stage[c.model] = max(stage.get(c.model, 0.0), c.e2e_p99_ms)
        worst = max(path_latency_ms(p, stage) for p in paths(app))
        return f"slowest path {worst:,.0f} ms at capacity of {app.e2e_budget_ms:g} ms"
    if g.family is Family.PROVIDER:
        accs = ", ".join(sorted({c.accelerator for c, _ in prep.chosen(sol)}))
        if sol.provider >= 0:
            return f"{accs} all from {prep.ip.providers[sol.provider].key}"
        return f"{accs} each at its cheapest provider"
    mine = [c for c, _ in prep.chosen(sol, g.scope)]
    if g.family is Family.CONFIGS:
        return f"{len(mine)} configuration(s) of {fleet.max_configs_per_model} allowed"
    if g.family in (Family.TTFT, Family.TPOT, Family.E2E):
        key = {Family.TTFT: "ttft_p99_ms", Family.TPOT: "tpot_p99_ms", Family.E2E: "e2e_p99_ms"}[g.family]
        worst = max((getattr(c, key) for c in mine), default=0.0)
        return f"worst {g.family.value} at capacity {worst:.1f} ms"
    return ", ".join(c.label() for c in mine)


def _target_sentence(prep: "Session", g: Guard) -> str:
    t = prep.table(g.scope)
    d = t.demand
    target = getattr(d.slo, g.family.value)
    best = t.best.get(g.family.value)
    name = {"ttft": "TTFT", "tpot": "TPOT", "e2e": "end-to-end latency"}[g.family.value]
    who = d.name if d.name == d.model else f"{d.name} ({d.model})"
    head = f"{name} p{target.percentile:g} <= {target.max_ms:g} ms for {who}"
    if best is None:
        return f"{head}: no allowed candidate (formats, memory) to meet it with"
    value = {"ttft": best.ttft_min_ms, "tpot": best.tpot_p99_ms, "e2e": best.e2e_min_ms}[g.family.value]
    what = "reaches" if g.family is Family.TPOT else "reaches, before any queueing,"
    if value > target.max_ms:
        return f"{head}: the fastest allowed candidate {what} {value:.1f} ms ({best.label()})"
    return (f"{head}: only candidates under it qualify (fastest {value:.1f} ms, {best.label()}), "
            f"and they cannot cover {t.load_rps:.2f} req/s together with the other limits below")


def _guard_sentence(prep: "Session", g: Guard) -> str:
    fleet = prep.problem.fleet
    f = g.family
    if f in (Family.TTFT, Family.TPOT, Family.E2E):
        return _target_sentence(prep, g)
    if f is Family.MEMORY:
        t = prep.table(g.scope)
        from solver.slo import memory_context_tokens

        return (f"memory for {g.scope}: the shapes that hold {t.demand.model}'s weights and a "
                f"{memory_context_tokens(t.demand)}-token KV cache per sequence cannot serve it "
                "within the other limits")
    if f is Family.QUANT:
        d = prep.table(g.scope).demand
        allowed = ", ".join(d.allowed_quantizations or ["any"])
        kv = ", ".join(d.allowed_kv_dtypes or ["any"])
        return f"allowed formats for {g.scope} (weights: {allowed}; KV: {kv}) exclude every candidate that would work"
    if f is Family.QUALITY:
        d = prep.table(g.scope).demand
        limit = (f"max_quality_loss_points {d.max_quality_loss_points:g}" if d.max_quality_loss_points is not None
                 else "the default quality guard (formats losing more than 1 point need max_quality_loss_points)")
        return f"{limit} for {g.scope} rules out the formats that would work"
    if f is Family.TOPOLOGY:
        return f"topology for {g.scope}: only replicas that fit a node or fill whole nodes may be used"
    if f is Family.CONFIGS:
        t = prep.table(g.scope)
        return (f"at most {fleet.max_configs_per_model} configuration(s) for {g.scope}: that many cannot "
                f"cover {t.load_rps:.2f} req/s within the other limits")
    if f is Family.INVENTORY:
        return f"inventory of {g.scope}: {prep.inventory(g.scope)} GPUs"
    if f is Family.NODES:
        return "whole nodes: GPUs are bought in whole nodes"
    if f is Family.POWER:
        return f"power <= {fleet.power_kw:g} kW (GPU TDP)"
    if f is Family.BUDGET:
        return f"budget <= ${fleet.budget_usd_per_hour:g}/h"
    if f is Family.PROVIDER:
        return "one_provider: fleet: no one provider rents every accelerator the plan needs within the other limits"
    if f is Family.CHAIN:
        app = next(a for a in prep.problem.applications if a.name == g.scope)
        return (f"application {g.scope}: every path within {app.e2e_budget_ms:g} ms "
                "(sum of the stages' e2e p99)")
    return g.name


def _no_candidate_sentences(prep: "Session") -> list[str]:
    """When no family is to blame: models whose candidates cannot cover the load at all."""
    out = []
    for t in prep.tables:
        if t.candidates:  # every candidate kept has a capacity of at least 1 milli-req/s
            continue
        by_reason: dict[str, list[str]] = {}
        for r in t.rejected:
            by_reason.setdefault(r.reason, []).append(r.what)
        parts = []
        for reason, whats in list(by_reason.items())[:3]:
            more = f" and {len(whats) - 2} more" if len(whats) > 2 else ""
            parts.append(f"{', '.join(whats[:2])}{more}: {reason}")
        extra = f" (and {len(by_reason) - 3} more reasons)" if len(by_reason) > 3 else ""
        if not parts:
            parts = ["every candidate's capacity within the targets is zero"]
        out.append(f"{t.name}: no shape of {t.demand.model} can serve it on the allowed accelerators: "
                   + "; ".join(parts) + extra)
    return out or ["no plan exists even with every constraint family relaxed"]


def _relaxed_clause(prep: "Session", g: Guard, relaxed: "IntSolution") -> str:
    """What the cheapest plan looks like once ``g`` alone is relaxed (the other limits kept)."""
    usd = scaling.cents_to_usd(relaxed.cost_cents or 0)
    f = g.family
    if f is Family.BUDGET:
        return f": the cheapest plan within the other limits costs ${usd:,.2f}/h"
    if f is Family.INVENTORY:
        n = prep.provisioned(relaxed, g.scope)
        return f"; the cheapest plan within the other limits needs {n} (${usd:,.2f}/h)"
    if f is Family.POWER:
        return f": the cheapest plan within the other limits draws {prep.power_kw(relaxed):.1f} kW (${usd:,.2f}/h)"
    if f in (Family.TTFT, Family.TPOT, Family.E2E):
        return ""
    if f is Family.CHAIN:
        return f"; without it the cheapest plan costs ${usd:,.2f}/h"
    return f"; without it the cheapest plan costs ${usd:,.2f}/h ({_usage(prep, relaxed, g)})"


def infeasibility_sentences(prep: "Session", core: tuple[Guard, ...]) -> list[str]:
    """One sentence per family of the conflict, each with what relaxing it alone would give."""
    if not core:
        return _no_candidate_sentences(prep)
    out = []
    for g in core:
        sentence = _guard_sentence(prep, g)
        relaxed = prep.solve(RELAXED_TIME_LIMIT_S, 1, relax=frozenset({g}))
        if relaxed.status.has_plan:
            sentence += _relaxed_clause(prep, g, relaxed)
        out.append(sentence)
    return out


def _at_target(prep: "Session", sol: "IntSolution", g: Guard) -> bool:
    """Whether a load-dependent target is what limits the capacity of a chosen candidate."""
    target = getattr(prep.table(g.scope).demand.slo, g.family.value)
    if target is None:
        return False
    key = "ttft_p99_ms" if g.family is Family.TTFT else "e2e_p99_ms"
    return any(getattr(c, key) >= 0.99 * target.max_ms for c, _ in prep.chosen(sol, g.scope))


def bindings(prep: "Session", sol: "IntSolution", time_limit_s: float, workers: int) -> list[Binding]:
    """For each family of the model: relax it alone, re-optimise (from the plan as a hint),
    compare the cost. A per-candidate family is skipped (slack, no solve) when no candidate
    breaks that family alone: relaxing it would then admit no new candidate."""
    out = []
    for g in prep.guards:
        if g.family in CANDIDATE_FAMILIES:
            if not any(c.violations == {g.family} for c in prep.table(g.scope).candidates):
                out.append(Binding(g.family.value, g.scope, g.name, g.family.description,
                                   _at_target(prep, sol, g) if g.family in (Family.TTFT, Family.E2E) else False,
                                   scaling.cents_to_usd(sol.cost_cents or 0),
                                   f"plan uses {_usage(prep, sol, g)}; no candidate is held back by it alone"))
                continue
        relaxed = prep.solve(time_limit_s, workers, relax=frozenset({g}), hint=sol)
        cost = relaxed.cost_cents if relaxed.status.has_plan else None
        binding = cost is not None and sol.cost_cents is not None and cost < sol.cost_cents
        detail = f"plan uses {_usage(prep, sol, g)}"
        if g.family in (Family.TTFT, Family.E2E) and _at_target(prep, sol, g):
            binding = True
            detail += " (the target sets the capacity per replica: the queueing wait fills it)"
        if cost is not None and sol.cost_cents is not None and cost < sol.cost_cents:
            detail += (f"; relaxed, the plan would cost ${scaling.cents_to_usd(cost or 0):.2f}/h "
                       f"with {_usage(prep, relaxed, g)}")
        out.append(Binding(g.family.value, g.scope, g.name, g.family.description, binding,
                           scaling.cents_to_usd(cost) if cost is not None else None, detail))
    return out
