"""Independent re-check of a plan, from the cost model and the catalogs only.

Nothing here reads the candidate tables or the integer encoding, and nothing imports OR-Tools:
each deployment's shape is rebuilt from its ids, its terms recomputed by the cost model, its
percentile latencies recomputed at the planned load share, and every fleet limit summed again
from the deployments.

There is one check per constraint family (:mod:`solver.families`: memory, latency targets,
topology, formats, quality, configurations, inventory, whole nodes, power, budget,
one_provider) plus the bookkeeping ones (``shape``, ``capacity``, ``accounting``); each returns
:class:`Violation` records (family, scope, message). :func:`violations` lists them all and
:func:`verify_plan` raises :class:`PlanViolation` when there is any: a violation means the
encoding, the scaling or the plan assembly is wrong, and must never be caught and ignored.

Memory and time do not depend on the replica count: replicas are counted per (GPUs per replica)
size, never listed one by one, and whole-node packing is computed arithmetically
(:func:`pack_nodes`).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

import numpy as np

from solver.catalog import Catalog, provider_key
from solver.costmodel import Shape, check_shape, shape_terms
from solver.costmodel.partition import (
    Partition, partition_speculation, partition_terms, resolve_partition,
)
from solver.mig import mig_gpus
from solver.costmodel.speculative import speculation
from solver.lora import demand_terms
from solver.plan import Deployment, Plan
from solver.problem import ModelDemand, Problem
from solver.queueing import RHO_MAX
from solver.slo import LatencyAtLoad, capacity_at_slo, latency_at_load, memory_limit, slo_view
from solver.uncertainty import planning_multiplier, tail_adjust, widen

REL_TOL = 1e-6
ABS_TOL_MS = 1e-6


@dataclass(frozen=True, order=True)
class Violation:
    """One broken constraint: its family (a :class:`~solver.families.Family` value or
    ``shape``/``capacity``/``accounting``), its scope (model name, accelerator, system or ''
    for the fleet) and a sentence."""

    family: str
    scope: str
    message: str

    def __str__(self) -> str:
        return self.message


class PlanViolation(AssertionError):
    """A returned plan breaks a constraint: a bug in fleetplan, not in the input."""

    def __init__(self, problem: str, found: list[Violation]) -> None:
        self.violations = found
        self.issues = [str(v) for v in found]
        super().__init__(f"plan for {problem!r} violates {len(found)} constraint(s): " + "; ".join(self.issues))


def _over(value: float, limit: float) -> bool:
    return value > limit * (1 + REL_TOL) + ABS_TOL_MS


def pack_nodes(sizes: Mapping[int, int], per_node: int) -> int:
    """Nodes that first-fit-decreasing packing needs for ``sizes`` (GPUs per replica -> number of
    replicas) on nodes of ``per_node`` GPUs; a replica of at least a node takes whole nodes of its
    own. Exactly first fit decreasing, but computed on runs of identical nodes, so time and memory
    depend on the number of distinct sizes, not on the number of replicas."""
    nodes = 0
    runs: list[list[int]] = []  # [free GPUs, number of nodes], in the order nodes were opened
    for g in sorted(sizes, reverse=True):
        n = sizes[g]
        if n <= 0:
            continue
        if g >= per_node:
            nodes += math.ceil(g / per_node) * n
            continue
        out: list[list[int]] = []
        for free, count in runs:
            k = free // g
            if n == 0 or k == 0:
                out.append([free, count])
                continue
            full = min(count, n // k)
            if full:
                out.append([free - k * g, full])
                n -= full * k
            rest = count - full
            if rest and n:  # one node takes the remainder (< k replicas)
                out.append([free - n * g, 1])
                n = 0
                rest -= 1
            if rest:
                out.append([free, rest])
        k = per_node // g
        full, rem = divmod(n, k)
        if full:
            out.append([per_node - k * g, full])
        if rem:
            out.append([per_node - rem * g, 1])
        nodes += full + (1 if rem else 0)
        runs = [r for r in out if r[1] > 0]
    return nodes


def _pack_nodes(sizes: list[int], per_node: int) -> int:
    """:func:`pack_nodes` for a plain list of replica sizes (kept for callers and tests)."""
    counts: dict[int, int] = defaultdict(int)
    for g in sizes:
        counts[g] += 1
    return pack_nodes(counts, per_node)


@dataclass
class _Dep:
    """One deployment with everything the checks recompute for it."""

    dep: Deployment
    demand: ModelDemand
    shape: Shape
    where: str
    limit: int = 0
    lat: LatencyAtLoad | None = None
    cap_rps: float = 0.0
    lam: float = 0.0
    part: Partition | None = None
    unit_gpus: int = 0
    """Disaggregated: GPUs of one unit (both pools); 0 for an aggregated replica."""
    pool_memory: list[Violation] = field(default_factory=list)
    """Disaggregated: memory violations of either pool."""
    remote: tuple[str, str, str, int] | None = None
    """A mixed unit: its prefill pool's (accelerator, system, quant, GPUs per unit) on another
    node shape than the deployment's."""

    @property
    def mig(self) -> bool:
        """Whether each replica runs on a MIG instance."""
        return self.part is not None and self.part.kind == "mig"

    @property
    def gpus(self) -> int:
        """GPUs of one replica (of one unit when disaggregated)."""
        return self.unit_gpus or self.shape.gpus

    def gpu_parts(self) -> list[tuple[str, str, int]]:
        """(accelerator, system, GPUs per replica) per node shape one replica (unit) uses."""
        if self.remote is None:
            return [(self.dep.accelerator, self.dep.system, self.gpus)]
        a, sid, _, g = self.remote
        return [(self.dep.accelerator, self.dep.system, self.gpus - g), (a, sid, g)]


@dataclass
class _Ctx:
    plan: Plan
    problem: Problem
    cat: Catalog
    deps: list[_Dep] = field(default_factory=list)
    found: list[Violation] = field(default_factory=list)


def _where(dep: Deployment) -> str:
    return f"{dep.model} on {dep.accelerator} {dep.quant} TP{dep.tp} PP{dep.pp} EP{dep.ep} B{dep.max_batch}"


def _prepare(ctx: _Ctx) -> None:
    """Rebuild every deployment's shape and recompute its memory limit, latencies and capacity;
    deployments that cannot be rebuilt are recorded under ``shape``."""
    demands = {d.name: d for d in ctx.problem.models}
    for dep in ctx.plan.deployments:
        where = _where(dep)
        d = demands.get(dep.model)
        if d is None:
            ctx.found.append(Violation("shape", dep.model, f"{where}: model not in the problem"))
            continue
        if dep.replicas < 1:
            ctx.found.append(Violation("shape", dep.model, f"{where}: {dep.replicas} replicas"))
            continue
        planned = d.engine or ctx.cat.default_engine
        if dep.engine is not None and dep.engine != planned:  # the plan's terms are this engine's
            ctx.found.append(Violation("accounting", dep.model, f"{where}: engine {dep.engine!r}, the problem "
                                                                f"plans {dep.model} with {planned!r}"))
        if dep.serving_mode == "disaggregated":
            _prepare_unit(ctx, dep, d, where)
            continue
        if dep.serving_mode != "aggregated" or dep.pools:
            ctx.found.append(Violation("shape", dep.model, f"{where}: serving_mode {dep.serving_mode!r} "
                                                           f"with {len(dep.pools)} pool(s)"))
            continue
        shape = replace(dep.shape, model=d.model)
        reason = check_shape(ctx.cat, shape)
        if reason:
            ctx.found.append(Violation("shape", dep.model, f"{where}: invalid shape: {reason}"))
            continue
        x = _Dep(dep, d, shape, where)
        terms = shape_terms(ctx.cat, shape, d.engine)
        if dep.partition:
            part = resolve_partition(ctx.cat, dep.accelerator, dep.partition)
            if isinstance(part, str) or shape.gpus != 1:
                why = part if isinstance(part, str) else f"a {shape.gpus}-GPU shape cannot run on a GPU share"
                ctx.found.append(Violation("shape", dep.model, f"{where}: {why}"))
                continue
            x.part = part
            eng = ctx.cat.engine(terms.engine)
            terms = partition_terms(terms, part, eng.kv_memory_policy, eng.kv_memory_fraction)
        terms = demand_terms(ctx.cat, d, terms)
        spec = None
        if dep.speculative:
            s = dep.speculative
            spec = speculation(ctx.cat, shape, str(s["draft"]), float(s["acceptance_rate"]),
                               int(s["draft_tokens"]), d.engine)
            if isinstance(spec, str):
                ctx.found.append(Violation("shape", dep.model, f"{where}: speculative draft: {spec}"))
                continue
            if x.part is not None:  # the draft runs on the replica's share too
                eng = ctx.cat.engine(terms.engine)
                spec = partition_speculation(spec, x.part, eng.kv_memory_policy, eng.kv_memory_fraction)
        x.limit = memory_limit(terms, d, spec)
        view = widen(tail_adjust(slo_view(terms, np.array([dep.max_batch]), d, spec), ctx.cat, d, dep.accelerator,
                                 dep.quant, terms.engine), planning_multiplier(
            ctx.cat, d.model, dep.accelerator, dep.quant, terms.engine, ctx.problem.confidence,
            np.array([dep.max_batch]), d))
        x.lam = dep.load_rps / dep.replicas
        x.lat = latency_at_load(view, 0, d, x.lam)
        x.cap_rps = float(capacity_at_slo(view, d).capacity_rps[0])
        ctx.deps.append(x)


def _prepare_unit(ctx: _Ctx, dep: Deployment, d: ModelDemand, where: str) -> None:
    """A disaggregated deployment: rebuild both pools' shapes from the plan's ids, recompute
    each pool's memory, the KV transfer, the prefill queue, TPOT and both pools' capacities
    from the cost model (:mod:`solver.disagg`), and the unit's latencies at its load share."""
    from solver.disagg import decode_terms, make_unit, prefill_terms, same_vendor, unit_latencies

    pre, dec = dep.pool("prefill"), dep.pool("decode")
    if pre is None or dec is None or len(dep.pools) != 2 or pre.replicas < 1 or dec.replicas < 1:
        ctx.found.append(Violation("shape", dep.model, f"{where}: a disaggregated deployment needs one "
                                                       "prefill and one decode pool with replicas"))
        return
    terms = []
    for pool in (pre, dec):
        # a pool names its node shape and format (None: the deployment's)
        acc, sid, quant = pool.accelerator or dep.accelerator, pool.system or dep.system, pool.quant or dep.quant
        if pool.role == "decode" and (acc, sid, quant) != (dep.accelerator, dep.system, dep.quant):
            ctx.found.append(Violation("accounting", dep.model, f"{where}: the decode pool is not on the "
                                                                "deployment's accelerator, system and format"))
            return
        if (acc == dep.accelerator) != (sid == dep.system) or (
                acc != dep.accelerator and not same_vendor(ctx.cat, acc, dep.accelerator)):
            ctx.found.append(Violation("shape", dep.model, f"{where}: a {pool.role} pool on {acc}/{sid} with the "
                                                           f"decode pool on {dep.accelerator}/{dep.system} is not "
                                                           "a unit (two node shapes of two accelerators of one vendor)"))
            return
        shape = replace(dep.shape, model=d.model, accelerator=acc, system=sid, quant=quant,
                        tp=pool.tp, pp=pool.pp, ep=pool.ep)
        reason = check_shape(ctx.cat, shape)
        if reason:
            ctx.found.append(Violation("shape", dep.model, f"{where}: invalid {pool.role} shape: {reason}"))
            return
        terms.append(demand_terms(ctx.cat, d, shape_terms(ctx.cat, shape, d.engine)))
    tp_, td = terms
    if (dep.tp, dep.pp, dep.ep, dep.max_batch) != (dec.tp, dec.pp, dec.ep, dec.max_batch):
        ctx.found.append(Violation("accounting", dep.model, f"{where}: top-level shape is not the decode pool's"))
    mult = planning_multiplier(ctx.cat, d.model, dep.accelerator, dep.quant, td.engine, ctx.problem.confidence)
    pa = tp_.shape
    mult_p = planning_multiplier(ctx.cat, d.model, pa.accelerator, pa.quant, tp_.engine, ctx.problem.confidence)
    x = _Dep(dep, d, td.shape, where)
    if pa.system != dep.system:
        x.remote = (pa.accelerator, pa.system, pa.quant, pre.replicas * pa.gpus)
    x.limit = memory_limit(td, d)
    pt = prefill_terms(tp_, d, mult_p)
    if not pt.fits:
        x.pool_memory.append(_v("memory", dep.model, f"{where}: prefill pool TP{pre.tp} PP{pre.pp} EP{pre.ep} "
                                                     f"cannot hold one p99 prompt per attention rank"))
    rows = decode_terms(td, d, [dec.max_batch], mult, within_memory=False)  # check_memory judges the batch
    unit = make_unit(pt, rows[0], pre.replicas, dec.replicas, td.kv_bytes_per_token_model,
                     ctx.cat.system(dep.system), d, None, ctx.cat.system(pa.system))
    x.unit_gpus = unit.gpus
    x.lam = dep.load_rps / dep.replicas
    lat = unit_latencies(unit, d, x.lam)
    x.lat = LatencyAtLoad(lat.ttft_ms, lat.tpot_ms, lat.e2e_ms, max(lat.prefill_utilisation, lat.decode_utilisation))
    x.cap_rps = unit.capacity_rps
    if dep.kv_transfer_ms is None or abs(dep.kv_transfer_ms - unit.transfer_ttft_ms) > 1e-6 * max(1.0, unit.transfer_ttft_ms):
        ctx.found.append(_v("accounting", dep.model, f"{where}: reported KV transfer {dep.kv_transfer_ms} ms, "
                                                     f"recomputed {unit.transfer_ttft_ms:.3f} ms"))
    ctx.deps.append(x)


def _v(family: str, scope: str, message: str) -> Violation:
    return Violation(family, scope, message)


def check_memory(ctx: _Ctx) -> list[Violation]:
    """Batch cap within the memory limit (a disaggregated unit: the decode pool's, and the
    prefill pool holds one p99 prompt per attention rank)."""
    return [_v("memory", x.dep.model, f"{x.where}: batch cap {x.dep.max_batch} exceeds the memory limit {x.limit}")
            for x in ctx.deps if x.dep.max_batch > x.limit] + [v for x in ctx.deps for v in x.pool_memory]


def _check_latency(name: str) -> Callable[[_Ctx], list[Violation]]:
    def check(ctx: _Ctx) -> list[Violation]:
        out = []
        for x in ctx.deps:
            target = getattr(x.demand.slo, name)
            got = getattr(x.lat, f"{name}_ms")
            if target is not None and _over(got, target.max_ms):
                out.append(_v(name, x.dep.model, f"{x.where}: {name} p{target.percentile:g} {got:.2f} ms > "
                                                 f"{target.max_ms:g} ms at {x.lam:.3f} req/s per replica"))
            reported = getattr(x.dep, f"{name}_p99_ms")
            if abs(reported - got) > 1e-3 * max(1.0, got):
                out.append(_v("accounting", x.dep.model,
                              f"{x.where}: reported {name} {reported:.3f} ms, recomputed {got:.3f} ms"))
        return out
    check.__name__ = f"check_{name}"
    check.__doc__ = f"{name.upper()} at the planned load share within its percentile target, as reported."
    return check


def check_topology(ctx: _Ctx) -> list[Violation]:
    out = []
    for x in ctx.deps:
        for _, sid, part in x.gpu_parts():  # a mixed unit: each pool into its own nodes
            per_node = ctx.cat.system(sid).gpus_per_node
            if not (per_node % part == 0 or part % per_node == 0):
                out.append(_v("topology", x.dep.model,
                              f"{x.where}: {part}-GPU replica does not pack into {per_node}-GPU nodes"))
        g = x.gpus
        if x.part is not None:
            k = x.part.per_gpu
            if x.dep.replicas_per_gpu != k or x.dep.total_gpus != -(-x.dep.replicas // k):
                out.append(_v("accounting", x.dep.model, f"{x.where}: {x.dep.total_gpus} GPUs for {x.dep.replicas} "
                                                         f"replicas at {k} per GPU ({x.dep.partition})"))
        elif g != x.dep.gpus_per_replica or x.dep.total_gpus != x.dep.replicas * g or x.dep.replicas_per_gpu != 1:
            out.append(_v("accounting", x.dep.model, f"{x.where}: GPU count {x.dep.total_gpus} != {x.dep.replicas} x {g}"))
    return out


def check_sharing(ctx: _Ctx) -> list[Violation]:
    """A deployment on a GPU share uses one the problem allows for its model and accelerator
    (``gpu_sharing``: a MIG profile listed for it, or a listed co-location count)."""
    out = []
    for x in ctx.deps:
        if x.part is None:
            continue
        s = x.demand.gpu_sharing
        ok = s is not None and (x.part.name in s.mig.get(x.dep.accelerator, []) if x.part.kind == "mig"
                                else x.part.per_gpu in s.colocate)
        if not ok:
            out.append(_v("gpu_sharing", x.dep.model, f"{x.where}: GPU share {x.dep.partition} not allowed "
                                                      f"by the problem's gpu_sharing"))
    return out


def check_formats(ctx: _Ctx) -> list[Violation]:
    out = []
    for x in ctx.deps:
        d, dep = x.demand, x.dep
        if d.allowed_accelerators is not None and dep.accelerator not in d.allowed_accelerators:
            out.append(_v("quantization", dep.model, f"{x.where}: accelerator not allowed"))
        if d.allowed_quantizations is not None and dep.quant not in d.allowed_quantizations:
            out.append(_v("quantization", dep.model, f"{x.where}: quantization not allowed"))
        if d.allowed_kv_dtypes is not None and dep.kv_dtype not in d.allowed_kv_dtypes:
            out.append(_v("quantization", dep.model, f"{x.where}: KV dtype not allowed"))
        if x.remote is not None:  # a mixed unit's prefill pool
            acc, _, quant, _ = x.remote
            if d.allowed_accelerators is not None and acc not in d.allowed_accelerators:
                out.append(_v("quantization", dep.model, f"{x.where}: prefill pool's accelerator not allowed"))
            if d.allowed_quantizations is not None and quant not in d.allowed_quantizations:
                out.append(_v("quantization", dep.model, f"{x.where}: prefill pool's quantization not allowed"))
    return out


def check_quality(ctx: _Ctx) -> list[Violation]:
    out = []
    for x in ctx.deps:
        native = ctx.cat.model(x.demand.model).native_quantization
        for quant in [x.dep.quant] + ([x.remote[2]] if x.remote is not None else []):  # both pools' formats
            loss = ctx.cat.quantization(quant).quality_loss.points
            if not x.demand.quality_allowed(quant, loss, native):
                limit = x.demand.max_quality_loss_points
                out.append(_v("quality", x.dep.model, f"{x.where}: quality loss {loss} points > "
                                                      f"{'the default guard' if limit is None else limit}"))
    return out


def check_capacity(ctx: _Ctx) -> list[Violation]:
    """Each replica within utilisation and capacity; each model's load routed and covered (no
    absolute tolerance: a positive load needs positive capacity)."""
    out = []
    covered: dict[str, float] = defaultdict(float)
    routed: dict[str, float] = defaultdict(float)
    for x in ctx.deps:
        assert x.lat is not None
        if x.lat.utilisation > RHO_MAX * (1 + REL_TOL):
            out.append(_v("capacity", x.dep.model, f"{x.where}: utilisation {x.lat.utilisation:.3f} > {RHO_MAX}"))
        if _over(x.lam, x.cap_rps):
            out.append(_v("capacity", x.dep.model,
                          f"{x.where}: load {x.lam:.4f} req/s per replica above capacity {x.cap_rps:.4f}"))
        covered[x.dep.model] += x.cap_rps * x.dep.replicas
        routed[x.dep.model] += x.dep.load_rps
    for d in ctx.problem.models:
        load = d.traffic.peak_rps * (1 + d.headroom)
        if abs(routed[d.name] - load) > 1e-6 * max(1.0, load):
            out.append(_v("capacity", d.name,
                          f"{d.name}: routed load {routed[d.name]:.4f} != peak x (1 + headroom) = {load:.4f}"))
        if load > covered[d.name] * (1 + REL_TOL):
            out.append(_v("capacity", d.name, f"{d.name}: capacity {covered[d.name]:.6g} req/s < load {load:.6g}"))
    return out


def check_chains(ctx: _Ctx) -> list[Violation]:
    """Every entry-to-exit path of every application with a budget: sum of calls x the stage's
    slowest deployment's recomputed e2e (at its planned load) within ``e2e_budget_ms``."""
    from solver.chains import describe, path_latency_ms, paths

    stage_ms: dict[str, float] = defaultdict(float)
    for x in ctx.deps:
        assert x.lat is not None
        stage_ms[x.dep.model] = max(stage_ms[x.dep.model], x.lat.e2e_ms)
    out = []
    for app in ctx.problem.applications:
        if app.e2e_budget_ms is None:
            continue
        for p in paths(app):
            got = path_latency_ms(p, stage_ms)
            if _over(got, app.e2e_budget_ms):
                out.append(_v("app_latency", app.name, f"{app.name}: path {describe(p)} takes {got:.2f} ms > "
                                                       f"budget {app.e2e_budget_ms:g} ms"))
    return out


def check_configs(ctx: _Ctx) -> list[Violation]:
    configs: dict[str, int] = defaultdict(int)
    for x in ctx.deps:
        configs[x.dep.model] += 1
    k = ctx.problem.fleet.max_configs_per_model
    return [_v("max_configs", m, f"{m}: {n} configurations > {k}") for m, n in sorted(configs.items()) if n > k]


def _used(ctx: _Ctx) -> dict[tuple[str, str], dict[int, int]]:
    """Per (accelerator, system): GPUs per replica -> number of replicas. Replicas on a GPU
    share count as the whole GPUs they fill: per (accelerator, system, co-located share), all
    models' replicas together, ``ceil(n / per_gpu)`` one-GPU units; per (accelerator, system),
    all MIG replicas together, the fewest GPUs whose valid layouts hold them (recounted from the
    catalog's profiles, not from the plan)."""
    used: dict[tuple[str, str], dict[int, int]] = defaultdict(lambda: defaultdict(int))
    shares: dict[tuple[str, str, str], int] = defaultdict(int)
    per_gpu: dict[tuple[str, str, str], int] = {}
    for x in ctx.deps:
        if x.mig:
            continue  # counted by _mig_gpus below
        if x.part is not None:
            key = (x.dep.accelerator, x.dep.system, x.part.label)
            shares[key] += x.dep.replicas
            per_gpu[key] = x.part.per_gpu
        else:
            for acc, sid, part in x.gpu_parts():
                used[(acc, sid)][part] += x.dep.replicas
    for key, n in sorted(shares.items()):
        used[key[:2]][1] += -(-n // per_gpu[key])
    for key, gpus in _mig_gpus(ctx).items():
        used[key][1] += gpus
    return used


def _mig_gpus(ctx: _Ctx) -> dict[tuple[str, str], int]:
    """Per (accelerator, system) with MIG replicas, sorted: the fewest GPUs whose valid layouts
    hold all of them (recounted from the catalog's profiles, not from the plan)."""
    counts: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for x in ctx.deps:
        if x.mig:
            counts[(x.dep.accelerator, x.dep.system)][x.part.name] += x.dep.replicas  # type: ignore[union-attr]
    return {key: len(mig_gpus(ctx.cat, key[0], n)) for key, n in sorted(counts.items())}


def check_systems(ctx: _Ctx) -> list[Violation]:
    """The plan's systems list every system in use, with the GPUs the deployments use."""
    out = []
    listed = {(s.accelerator, s.system): s for s in ctx.plan.systems}
    used = _used(ctx)
    for key in used:
        if key not in listed:
            out.append(_v("accounting", key[1], f"{key[1]}: used by deployments but missing from the plan's systems"))
    for key, s in listed.items():
        n = sum(g * r for g, r in used.get(key, {}).items())
        if s.gpus_used != n:
            out.append(_v("accounting", key[1], f"{key[1]}: gpus_used {s.gpus_used} != {n}"))
        if s.gpus_provisioned < n:
            out.append(_v("accounting", key[1], f"{key[1]}: provisioned {s.gpus_provisioned} < used {n}"))
    return out


def check_whole_nodes(ctx: _Ctx) -> list[Violation]:
    if not ctx.problem.fleet.whole_nodes:
        return []
    out = []
    used = _used(ctx)
    for s in ctx.plan.systems:
        per_node = ctx.cat.system(s.system).gpus_per_node
        need = pack_nodes(used.get((s.accelerator, s.system), {}), per_node)
        if s.gpus_provisioned != s.nodes * per_node or s.nodes < need:
            out.append(_v("whole_nodes", s.system, f"{s.system}: {s.nodes} nodes provisioned, replicas need {need}"))
    return out


def check_inventory(ctx: _Ctx) -> list[Violation]:
    """GPUs within the inventory limit; owned GPUs in use within those owned, and within the
    GPUs provisioned on each system."""
    prov: dict[str, int] = defaultdict(int)
    own: dict[str, int] = defaultdict(int)
    out = []
    for s in ctx.plan.systems:
        prov[s.accelerator] += s.gpus_provisioned
        own[s.accelerator] += s.gpus_owned
        if not 0 <= s.gpus_owned <= s.gpus_provisioned:
            out.append(_v("inventory", s.system, f"{s.system}: {s.gpus_owned} owned GPUs of "
                                                 f"{s.gpus_provisioned} provisioned"))
    out += [_v("inventory", acc, f"inventory of {acc}: {prov[acc]} GPUs > {n}")
            for acc, n in sorted((ctx.problem.fleet.inventory or {}).items()) if prov.get(acc, 0) > n]
    owned = ctx.problem.fleet.owned or {}
    out += [_v("inventory", acc, f"owned {acc}: {n} GPUs in use > {owned.get(acc, 0)} owned")
            for acc, n in sorted(own.items()) if n > owned.get(acc, 0)]
    return out


def check_redundancy(ctx: _Ctx) -> list[Violation]:
    """Each model has at least ``min_replicas`` replicas and, under ``redundancy: n+1``, its
    load is covered with its largest replica down (recomputed capacities)."""
    out = []
    for d in ctx.problem.models:
        mine = [x for x in ctx.deps if x.dep.model == d.name]
        n = sum(x.dep.replicas for x in mine)
        if n < d.min_replicas:
            out.append(_v("redundancy", d.name, f"{d.name}: {n} replica(s) < min_replicas {d.min_replicas}"))
        if d.redundancy == "n+1" and mine:
            load = d.traffic.peak_rps * (1 + d.headroom)
            rest = sum(x.cap_rps * x.dep.replicas for x in mine) - max(x.cap_rps for x in mine)
            if load > rest * (1 + REL_TOL):
                out.append(_v("redundancy", d.name, f"{d.name}: with its largest replica down, capacity "
                                                    f"{rest:.6g} req/s < load {load:.6g} (n+1)"))
    return out


def check_power(ctx: _Ctx) -> list[Violation]:
    limit = ctx.problem.fleet.power_kw
    kw = sum(s.gpus_provisioned * ctx.cat.accelerator(s.accelerator).tdp_w for s in ctx.plan.systems) / 1e3
    if limit is not None and _over(kw, limit):
        return [_v("power", "", f"power {kw:.2f} kW > {limit:g} kW")]
    return []


def _provider(ctx: _Ctx) -> str | None:
    """Whose prices the plan pays: ``fleet.provider``; under ``one_provider: fleet`` without
    one, the plan's stated provider, else its first deployment's (``check_one_provider`` flags
    a plan that mixes providers); None: each accelerator's cheapest row of any provider."""
    fleet = ctx.problem.fleet
    if fleet.provider is not None or fleet.one_provider != "fleet":
        return fleet.provider
    if ctx.plan.provider is not None:
        return ctx.plan.provider
    rows = [ctx.cat.prices.get(d.price_id) for d in ctx.plan.deployments]
    return next((provider_key(r.provider) for r in rows if r is not None), None)


def _prices(ctx: _Ctx, accelerator: str) -> list:
    """The catalog's rows the plan may pay for ``accelerator``, cheapest first."""
    return ctx.cat.prices_for(accelerator, ctx.problem.fleet.pricing, _provider(ctx))


def check_one_provider(ctx: _Ctx) -> list[Violation]:
    """``one_provider``: every deployment's price row from one provider (key) per accelerator
    (``true``/``accelerator``) or for the whole fleet (``fleet``, and the plan's stated one)."""
    mode = ctx.problem.fleet.one_provider
    if mode is False:
        return []
    out = []
    by_acc: dict[str, set[str]] = defaultdict(set)
    for d in ctx.plan.deployments:
        row = ctx.cat.prices.get(d.price_id)
        if row is None:
            out.append(_v("one_provider", d.model, f"{_where(d)}: price {d.price_id!r} is not in the catalog"))
            continue
        by_acc[d.accelerator].add(provider_key(row.provider))
    if mode == "fleet":
        keys = set().union(*by_acc.values()) | ({ctx.plan.provider} if ctx.plan.provider else set())
        if len(keys) > 1:
            out.append(_v("one_provider", "", f"one_provider: fleet rents from {len(keys)} providers "
                                              f"({', '.join(sorted(keys))})"))
        return out
    for acc, keys in sorted(by_acc.items()):
        if len(keys) > 1:
            out.append(_v("one_provider", acc, f"one_provider: {acc} rents from {len(keys)} providers "
                                               f"({', '.join(sorted(keys))})"))
    return out


def _system_costs(ctx: _Ctx) -> list[tuple[str, float, float]]:
    """(system, listed cost, recomputed cost) per system of the plan."""
    fleet = ctx.problem.fleet
    out = []
    for s in ctx.plan.systems:
        prices = _prices(ctx, s.accelerator)
        price = prices[0].usd_per_gpu_hour if prices else math.nan
        out.append((s.system, s.cost_usd_per_hour,
                    (s.gpus_provisioned - s.gpus_owned) * price + s.gpus_owned * fleet.owned_usd_per_gpu_hour))
    return out


def _rental_cost(ctx: _Ctx) -> float:
    """Every provisioned GPU at its rental price ($/h): what the deployments' costs (always at
    the rental price) add up to at most."""
    total = 0.0
    for s in ctx.plan.systems:
        prices = _prices(ctx, s.accelerator)
        total += s.gpus_provisioned * (prices[0].usd_per_gpu_hour if prices else math.nan)
    return total


def check_budget(ctx: _Ctx) -> list[Violation]:
    limit = ctx.problem.fleet.budget_usd_per_hour
    total = sum(c for _, _, c in _system_costs(ctx))
    if limit is not None and _over(total, limit):
        return [_v("budget", "", f"cost {total:.2f} $/h > budget {limit:g} $/h")]
    return []


def _deployment_cost(ctx: _Ctx, x: _Dep, usd_per_gpu_hour: float) -> float:
    """$/h of a deployment: its GPUs at its accelerator's price (its share on a GPU share), a
    mixed unit's prefill GPUs at theirs."""
    dep = x.dep
    if x.part:
        return dep.replicas * x.shape.gpus / x.part.per_gpu * usd_per_gpu_hour
    if x.remote is None:
        return dep.total_gpus * usd_per_gpu_hour
    acc, _, _, g = x.remote
    prices = _prices(ctx, acc)
    remote = prices[0].usd_per_gpu_hour if prices else math.nan
    return dep.replicas * ((x.gpus - g) * usd_per_gpu_hour + g * remote)


def check_accounting(ctx: _Ctx) -> list[Violation]:
    """Prices are the catalog's cheapest (the one provider's under ``one_provider: fleet``); costs
    add up from GPUs x price."""
    out = []
    cost_deploy = 0.0
    # MIG profiles mixed on GPUs: replicas x 1/k of a GPU each is scaled down to the GPUs the
    # layouts fill (recounted here from the catalog's profiles)
    mig_share: dict[tuple[str, str], float] = defaultdict(float)
    for x in ctx.deps:
        if x.mig:
            mig_share[(x.dep.accelerator, x.dep.system)] += x.dep.replicas / x.part.per_gpu  # type: ignore[union-attr]
    scale = {k: min(1.0, g / mig_share[k]) for k, g in _mig_gpus(ctx).items()}
    for x in ctx.deps:
        dep = x.dep
        price = _prices(ctx, dep.accelerator)
        f = scale.get((dep.accelerator, dep.system), 1.0) if x.mig else 1.0
        if not price or abs(price[0].usd_per_gpu_hour - dep.usd_per_gpu_hour) > 1e-9:
            out.append(_v("accounting", dep.model, f"{x.where}: price {dep.usd_per_gpu_hour} is not the catalog's cheapest"))
        elif abs(dep.cost_usd_per_hour - _deployment_cost(ctx, x, price[0].usd_per_gpu_hour) * f) > 1e-6 * max(
                1.0, dep.cost_usd_per_hour):
            out.append(_v("accounting", dep.model, f"{x.where}: cost {dep.cost_usd_per_hour} != GPUs x price"))
        cost_deploy += dep.cost_usd_per_hour
    cost_systems = 0.0
    for sys_id, listed, cost in _system_costs(ctx):
        if not abs(cost - listed) <= 1e-6 * max(1.0, cost):
            out.append(_v("accounting", sys_id, f"{sys_id}: cost {listed} != {cost}"))
        cost_systems += cost
    plan_cost = ctx.plan.cost_usd_per_hour
    if plan_cost is None or not abs(plan_cost - cost_systems) <= 1e-6 * max(1.0, cost_systems):
        out.append(_v("accounting", "", f"plan cost {plan_cost} != recomputed {cost_systems:.4f} $/h"))
    rental = _rental_cost(ctx)
    if cost_deploy > rental * (1 + 1e-9) + 1e-6:
        out.append(_v("accounting", "", f"deployments cost {cost_deploy:.4f} $/h more than the provisioned GPUs "
                                        f"{rental:.4f} at rental prices"))
    return out


CHECKS: tuple[Callable[[_Ctx], list[Violation]], ...] = (
    check_memory, _check_latency("ttft"), _check_latency("tpot"), _check_latency("e2e"),
    check_topology, check_sharing, check_formats, check_quality, check_capacity, check_chains, check_configs, check_systems,
    check_whole_nodes, check_inventory, check_power, check_budget, check_accounting, check_redundancy,
    check_one_provider,
)
"""One check per constraint family (and the bookkeeping ones), run in this order."""


def violations(plan: Plan, problem: Problem, cat: Catalog) -> list[Violation]:
    """Every broken constraint of ``plan`` (empty when it verifies, or when it has no plan)."""
    if not plan.status.has_plan:
        return []
    ctx = _Ctx(plan, problem, cat)
    _prepare(ctx)
    for check in CHECKS:
        ctx.found.extend(check(ctx))
    return ctx.found


def verify_plan(plan: Plan, problem: Problem, cat: Catalog) -> None:
    """Raise :class:`PlanViolation` listing every broken constraint of ``plan``."""
    found = violations(plan, problem, cat)
    if found:
        raise PlanViolation(problem.name, found)
