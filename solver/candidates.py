"""Candidate tables: for each model of a problem, every deployment shape the optimiser may choose.

A candidate is (accelerator, system, quantisation, KV dtype, TP, PP, EP, batch cap) with its
analytical terms: GPUs and cost per replica, TDP, quality loss, p99 latencies and capacity at the
SLO (requests/s per replica, see :mod:`solver.slo`). Candidates that break a per-candidate
constraint family (memory, TTFT, TPOT, E2E, topology, formats, quality) stay in the table with the
family named in ``violations``: the CP-SAT model forbids them behind that family's assumption
literal, which is how an infeasible problem gets its explanation. Shapes that cannot be evaluated
at all (no price, format unsupported by the hardware, TP beyond the scale-up domain ...) are kept
as :class:`Rejected` rows with the reason; nothing is dropped silently.

Enumeration (per model, stable order: accelerator, system, quant, KV dtype, TP, PP, EP, batch):

- accelerators: ``allowed_accelerators`` or the whole catalog; price = the cheapest catalog row
  for ``fleet.pricing`` (and ``fleet.provider``), no price -> rejected;
- systems: every node shape built from the accelerator;
- quantisations: every catalog format the hardware runs (formats outside
  ``allowed_quantizations`` are flagged, not dropped); KV dtypes usable with the format and the
  hardware, restricted to ``allowed_kv_dtypes`` the same way;
- dense models: TP in 1, 2, 4, 8 (within the scale-up domain); PP > 1 only with TP filling the
  scale-up domain (pipeline stages cross domains, never split one);
- MoE models (:func:`moe_parallelism`): every (attention TP, EP) of a stage of S GPUs the engines
  run -- TP S with the experts tensor-parallel (EP 1), split into EP groups (TP4 + EP2 ...), or
  attention data-parallel (TP < S) with EP S (DP8 + EP8 ...) -- for S in 1, 2, 4, 8 and, where
  the node shape has a larger scale-up domain (NVL72), wide EP stages of 16, 32, 64 GPUs;
  and (:func:`expert_tp_layouts`) attention data-parallel with expert TP x EP = S, both > 1
  (DP8 with experts EP4 x TP2 ..., ``Shape.moe_tp``), for S up to 8;
  EP must divide the expert count (and expert TP the experts' intermediate width);
- the problem's ``engine`` (default: the catalog's) must serve the format on the accelerator,
  else the shape is rejected with the reason;
- batch caps from ``BATCH_GRID`` up to the memory limit at p99 prompt + p99 output per slot.
  A shape whose weights do not fit even one sequence becomes one memory-violating row at B = 1.

Pruning (when ``prune``, the default) drops candidates that can never be needed by an optimum,
in three places: KV dtypes with the same bytes per element as one already enumerated (exact
ties; recorded as rejected), batch caps of one shape dominated by another batch cap of it, and
:func:`prune_dominated` across shapes.

A table depends on the model, lengths, targets, allowed options and pricing, never on the load:
capacity is per replica. Models of one problem that differ only in name and load share one
table (:func:`build_tables`).

Caching (:class:`TableCache`): the expensive part of a table, the cost model evaluated for one
shape at every batch cap, depends only on the shape, the catalog, the engine and the traffic
lengths at the percentiles the targets read -- not on the targets' values, the allowed options,
pricing or demand. A cache keyed by exactly that lets Pareto points, sweeps and every model of a
fleet that share a model and traffic reuse one evaluation; capacity at the targets, flags and
pruning are then recomputed from the cached arrays (numpy, cheap).

Evaluation (:meth:`TableCache.evaluate_many`): the shapes of a model the cache lacks are
evaluated together -- their ``ShapeTerms`` built as arrays at once
(:mod:`solver.costmodel.stacked_shapes`; laid out as :mod:`solver.costmodel.stacked` lays out
per-shape terms), one row per (shape, batch cap), and the cost model's own functions run once
on them; the one-shape path (``estimate``) is the same code on scalars. Capacities are rounded and dominated
candidates pruned on arrays too, before any :class:`Candidate` is built.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from solver import scaling
from solver.catalog import Catalog
from solver.errors import InputError
from solver.costmodel import (
    Shape, ShapeTerms, check_shape, kv_gib_per_gpu, shape_terms,
)
from solver.families import CANDIDATE_FAMILIES, Family
from solver.costmodel.partition import (
    Partition, mig_partition, partition_speculation, partition_terms, shared_partition,
)
from solver.costmodel.stacked import repeat_rows, split_rows
from solver.costmodel.stacked_shapes import stacked_shape_terms
from solver.identity import ShapeIdentity
from solver.disagg import (
    MIXED_PREFILL_ACCELERATORS, PrefillTerms, RoleTerms, Unit, cheapest_prefill, mixed_units_for, prompt_cost,
    role_terms, same_vendor, unit_label, unit_latencies, units_for,
)
from solver.costmodel.speculative import (
    Speculation, draft_weight_bytes_gpu, kv_gib_per_gpu_spec, speculation,
)
from solver.problem import ModelDemand, Problem, Speculative
from solver.lora import demand_terms
from solver.schemas import Price
from solver.slo import (
    BATCH_GRID, SloView, StepTimes, capacity_at_slo, load_latencies_ms, memory_context_tokens, memory_limit,
    slo_view, zero_load_misses,
)
from solver.uncertainty import planning_multiplier, tail_adjust, widen
from solver.units import GIB

TP_CHOICES = (1, 2, 4, 8)
PP_CHOICES = (1, 2, 4)


@dataclass(frozen=True)
class GpuUse:
    """GPUs a candidate also uses on another node shape: a mixed disaggregated unit's prefill
    pool (:func:`solver.disagg.mixed_units_for`), counted against that accelerator's inventory,
    price and power."""

    accelerator: str
    system: str
    gpus: int
    gpus_per_node: int
    usd_per_gpu_hour: float
    price_id: str
    tdp_w: float


@dataclass(frozen=True)
class Candidate(ShapeIdentity):
    """One deployment shape of one model with its analytical terms (floats, real units)."""

    model: str
    """Name of the model entry in the problem (not the catalog id)."""
    shape: Shape
    """The deployment identity (catalog model id, accelerator, resolved system, quant, KV
    dtype, TP/PP/EP); with ``max_batch`` the configuration. A disaggregated unit: its decode pool's."""
    max_batch: int
    gpus_per_replica: int
    """GPUs one replica (one unit, when disaggregated) occupies; on a GPU share 1 (``per_gpu``
    replicas fill it)."""
    gpus_per_node: int
    usd_per_gpu_hour: float
    price_id: str
    tdp_w: float
    quality_loss_points: float
    capacity_rps_per_replica: float
    """Largest arrival rate one replica serves within the targets it can meet, requests/s
    (0 if none)."""
    ttft_p99_ms: float
    """TTFT at the target's percentile when loaded at ``capacity_rps_per_replica``."""
    ttft_min_ms: float
    """TTFT at zero queueing wait (the floor no amount of replicas lowers)."""
    tpot_p99_ms: float
    e2e_p99_ms: float
    e2e_min_ms: float
    service_s: float
    max_concurrency: int
    """Largest batch the memory holds at p99 prompt + p99 output per sequence."""
    weights_gib_per_gpu: float = 0.0
    kv_gib_per_gpu: float = 0.0
    """KV cache on the busiest GPU with ``max_batch`` sequences at p99 prompt + p99 output."""
    violations: frozenset[Family] = field(default_factory=frozenset)
    stated_error_pct: float | None = None
    """Stated throughput error of the accelerator family, % (efficiency.yaml ``error_pct``)."""
    speculative: tuple[tuple[str, object], ...] = ()
    """Speculative decoding of this configuration as (key, value) pairs
    (:meth:`~solver.costmodel.speculative.Speculation.describe`); empty: plain decoding."""
    partition: str = ""
    """The GPU share one replica runs on (``mig 1g.10gb``, ``shared 1/4``; see
    :mod:`solver.costmodel.partition`); empty: whole GPUs."""
    per_gpu: int = 1
    """Replicas of this share one GPU holds (1: whole GPUs)."""
    steps: tuple[float, ...] = ()
    """Step tables for latencies under load (:meth:`solver.slo.StepTimes.at`, with the
    calibration's TTFT tail and ``--confidence``'s multiplier applied); empty for units."""

    unit: "Unit | None" = None
    """A disaggregated unit (:mod:`solver.disagg`): then ``gpus_per_replica`` and
    ``capacity_rps_per_replica`` are one unit's, tp/pp/ep/max_batch the decode pool's; None: an
    aggregated replica."""
    also: tuple[GpuUse, ...] = ()
    """GPUs on other node shapes, part of ``gpus_per_replica`` (a mixed unit's prefill pool);
    empty: all of them are on ``accelerator``/``system``."""

    @property
    def own_gpus(self) -> int:
        """GPUs of one replica on the candidate's own node shape (``gpus_per_replica`` less
        those in :attr:`also`)."""
        return self.gpus_per_replica - sum(a.gpus for a in self.also)

    @property
    def serving_mode(self) -> str:
        return "disaggregated" if self.unit is not None else "aggregated"

    @property
    def pools(self) -> tuple:
        """The unit's pools as plan data (empty for an aggregated candidate)."""
        return self.unit.pools() if self.unit is not None else ()

    @property
    def cost_usd_per_hour(self) -> float:
        """Cost of one replica, $/h (its share of a GPU's price on a GPU share; a mixed unit's
        GPUs each at their own accelerator's price)."""
        return (self.own_gpus * self.usd_per_gpu_hour / self.per_gpu
                + sum(a.gpus * a.usd_per_gpu_hour for a in self.also))

    @property
    def power_w(self) -> float:
        """TDP of one replica, W (its share on a GPU share; a mixed unit's GPUs at their own TDP)."""
        return self.own_gpus * self.tdp_w / self.per_gpu + sum(a.gpus * a.tdp_w for a in self.also)

    def label(self) -> str:
        par = (f"TP{self.tp}" + (f" PP{self.pp}" if self.pp > 1 else "") + (f" EP{self.ep}" if self.ep > 1 else "")
               + (f" MoE-TP{self.moe_tp}" if self.moe_tp else ""))
        spec = f", speculative ({dict(self.speculative)['draft']})" if self.speculative else ""
        if self.unit is not None:
            return f"{self.accelerator}, {self.quant}/kv-{self.kv_dtype}, {unit_label(self.unit)}"
        part = f", {self.partition}" if self.partition else ""
        return f"{self.accelerator}{part}, {self.quant}/kv-{self.kv_dtype}, {par}, batch {self.max_batch}{spec}"


@dataclass(frozen=True)
class Rejected:
    """A shape that could not become a candidate, and why."""

    model: str
    what: str
    reason: str
    no_price: bool = False
    """The accelerator has no price for the fleet's pricing (and provider): ``what`` is its id."""


@dataclass(frozen=True)
class ModelTable:
    """Candidates of one model (stable order) plus everything that did not make it."""

    demand: ModelDemand
    candidates: tuple[Candidate, ...]
    rejected: tuple[Rejected, ...]
    pruned: int = 0
    best: dict[str, Candidate] = field(default_factory=dict)
    """Before pruning, among candidates that break no structural family (memory, topology,
    formats, quality): the lowest ``ttft`` (zero-load TTFT), ``tpot`` and ``e2e`` (zero-load E2E);
    what explanations quote."""

    @property
    def name(self) -> str:
        return self.demand.name

    @property
    def unpriced(self) -> tuple[str, ...]:
        """Allowed accelerators left out because they have no price for the fleet's pricing."""
        return tuple(r.what for r in self.rejected if r.no_price)

    @property
    def load_rps(self) -> float:
        """Offered load to cover: peak x (1 + headroom)."""
        return self.demand.traffic.peak_rps * (1 + self.demand.headroom)


def _kv_choices(
    cat: Catalog, d: ModelDemand, gpu: str, quant: str, dedupe: bool, rejected: list[Rejected] | None = None,
) -> list[tuple[str, bool]]:
    """KV dtypes usable with the format on this hardware, with 'allowed by the problem'.

    With ``dedupe``, a KV dtype with the same bytes per element and the same 'allowed' status as
    one already listed is skipped (recorded in ``rejected``): the cost model sees only the bytes,
    so its candidates would be exact ties of the first one's, which pruning drops anyway."""
    q = cat.quantization(quant)
    out: list[tuple[str, bool]] = []
    seen: dict[tuple[float, bool], str] = {}
    for kv in q.kv_dtypes:
        if kv in cat.kv_dtypes and cat.kv_supported(gpu, kv):
            ok = d.allowed_kv_dtypes is None or kv in d.allowed_kv_dtypes
            key = (cat.kv_dtype(kv).bytes_per_element, ok)
            if dedupe and key in seen:
                if rejected is not None:
                    rejected.append(Rejected(d.name, f"{gpu} {quant}/kv-{kv}",
                                             f"same candidates as kv-{seen[key]} (same bytes per element)"))
                continue
            seen[key] = kv
            out.append((kv, ok))
    return out


WIDE_STAGES = (16, 32, 64)
"""Expert-parallel stage sizes beyond 8 GPUs, used where one scale-up domain holds them."""


def moe_parallelism(stage: int, num_experts: int) -> list[tuple[int, int]]:
    """(tp, ep) pairs of a MoE stage of ``stage`` GPUs, in stable order.

    ``max(tp, ep) = stage`` and one divides the other (the Shape convention); ``ep`` divides the
    expert count. Up to 8 GPUs: attention TP over the whole stage with any EP, or EP over the
    whole stage with any smaller attention TP (attention data parallelism). Wider stages keep
    attention TP within 8 (heads rarely divide further) and spread experts over all GPUs.
    """
    out = []
    for tp in (1, 2, 4, 8, 16, 32, 64):
        for ep in (1, 2, 4, 8, 16, 32, 64):
            if max(tp, ep) != stage or (tp % ep and ep % tp) or num_experts % ep:
                continue
            if stage > 8 and (ep != stage or tp > 8):
                continue
            out.append((tp, ep))
    return out


EXPERT_TP_DOMINATED = (
    "dominated by TP{tp} EP{stage} on the same GPUs (not evaluated): same weights and KV per GPU, "
    "at least as much tile padding, and an expert-TP all-reduce larger than the all-to-all it saves")
"""Why a layout of :func:`expert_tp_layouts` is pruned before evaluation when pure expert
parallelism over the stage (attention TP ``tp``, EP = stage) is offered too. Under the cost model
(uniform routing) the two hold the same bytes per GPU (dense parts over ``tp``, experts spread
over the stage) and read the same expert bytes per step; expert TP gives each GPU ``moe_tp``
times the experts at ``1 / moe_tp`` of the rows each (padding never less), and its all-reduce
of the group's ``2 (moe_tp - 1)`` x the dispatched bytes outweighs the smaller all-to-all
(``(ep - 1) / ep`` instead of ``(S - 1) / S`` of them leave). Checked on the unpruned tables
(tests/test_expert_tp_search.py). Engines choose expert TP to even out the load of skewed
routing, which the cost model does not represent."""


def expert_tp_layouts(stage: int, num_experts: int, expert_width: int) -> list[tuple[int, int, int]]:
    """(tp, ep, moe_tp) of a MoE stage of ``stage`` GPUs (up to 8) that runs attention
    data-parallel (tp < stage) with each of ``ep`` expert groups split over ``moe_tp`` GPUs,
    ``ep x moe_tp = stage``, both > 1 (TensorRT-LLM's ``moe_expert_parallel_size`` x
    ``moe_tensor_parallel_size`` under attention DP, e.g. DP8 with EP4 x TP2). ``ep`` divides the
    expert count and ``moe_tp`` the experts' intermediate width ``expert_width``. Expert TP over
    all GPUs (EP 1) under attention DP is left out: the cost model has no term for gathering
    every rank's tokens onto each GPU before the experts."""
    out = []
    if stage > 8:
        return out
    for tp in (1, 2, 4):
        for ep in (2, 4):
            mtp = stage // ep
            if tp >= stage or ep >= stage or mtp < 2 or ep * mtp != stage:
                continue
            if num_experts % ep or expert_width % mtp:
                continue
            out.append((tp, ep, mtp))
    return out


def _shapes(
    cat: Catalog, d: ModelDemand, gpu: str, system_id: str, dedupe: bool, rejected: list[Rejected],
) -> list[tuple[Shape, set[Family]]]:
    m = cat.model(d.model)
    system = cat.system(system_id)
    out = []
    for quant in sorted(cat.quantizations):
        if cat.quant_support(gpu, quant) is None:
            continue  # recorded once per accelerator by the caller
        q_flags: set[Family] = set()
        if d.allowed_quantizations is not None and quant not in d.allowed_quantizations:
            q_flags.add(Family.QUANT)
        loss = cat.quantization(quant).quality_loss.points
        if not d.quality_allowed(quant, loss, m.native_quantization):
            q_flags.add(Family.QUALITY)
        for kv, kv_ok in _kv_choices(cat, d, gpu, quant, dedupe, rejected):
            flags = set(q_flags) | (set() if kv_ok else {Family.QUANT})
            stages = TP_CHOICES + (WIDE_STAGES if m.moe else ())
            for stage in stages:
                if stage > system.scaleup_domain_gpus:
                    continue
                full = stage == min(system.scaleup_domain_gpus, TP_CHOICES[-1])
                pairs = moe_parallelism(stage, m.moe.num_experts) if m.moe else [(stage, 1)]
                for tp, ep in pairs:
                    pps = PP_CHOICES if (full and tp == stage) else (1,)
                    for pp in pps:
                        out.append((Shape(d.model, gpu, system_id, quant, kv, tp, pp, ep), flags))
                if m.moe and stage <= system.scaleup_domain_gpus:
                    for tp, ep, mtp in expert_tp_layouts(stage, m.moe.num_experts, m.moe.moe_intermediate_size):
                        shape = Shape(d.model, gpu, system_id, quant, kv, tp, 1, ep, mtp)
                        if dedupe and (tp, stage) in pairs:
                            rejected.append(Rejected(d.name, f"{gpu}/{system_id} {quant}/kv-{kv} TP{tp} EP{ep} MoE-TP{mtp}",
                                                     EXPERT_TP_DOMINATED.format(tp=tp, stage=stage)))
                            continue
                        out.append((shape, flags))
    return out


def _packs(gpus: int, per_node: int) -> bool:
    """A replica packs into whole nodes exactly when it divides a node or fills whole nodes."""
    return per_node % gpus == 0 or gpus % per_node == 0


@dataclass(frozen=True)
class _ShapeRows:
    """A shape's load-independent terms at each batch cap, before capacity is known."""

    shape: Shape
    what: str
    flags: frozenset[Family]
    per_node: int
    price: Price
    tdp_w: float
    loss: float
    limit: int
    view: SloView
    weights_gib: float
    kv_gib: np.ndarray
    stated_error_pct: float | None = None
    spec: tuple[tuple[str, object], ...] = ()
    partition: Partition | None = None


def partitions_for(cat: Catalog, d: ModelDemand, gpu: str) -> list[Partition]:
    """GPU shares model ``d`` may run on on accelerator ``gpu``: its ``gpu_sharing`` MIG
    profiles for this accelerator (catalog order), then its co-location counts (ascending)."""
    sharing = d.gpu_sharing
    if sharing is None:
        return []
    wanted = set(sharing.mig.get(gpu, ()))
    out = [mig_partition(p.name, p.memory_slices, p.compute_slices, p.max_count)
           for p in cat.accelerator(gpu).mig_profiles if p.name in wanted]
    return out + [shared_partition(k) for k in sorted(sharing.colocate)]


def _evaluate(d: ModelDemand, shape: Shape, terms: ShapeTerms,
              spec: Speculation | None = None) -> tuple[int, SloView, bool]:
    """Memory limit, the SLO view at every batch cap on the grid, and 'fits at all'."""
    limit = memory_limit(terms, d, spec)
    fits = limit >= 1
    batch = np.array([b for b in BATCH_GRID if b <= limit] if fits else [1])
    return limit, slo_view(terms, batch, d, spec), fits


@dataclass(frozen=True)
class ShapeEval:
    """The cost model's answer for one shape and one traffic: what a table needs of it, before
    targets, flags or prices. ``reason``: why the shape cannot run (then nothing else is set)."""

    reason: str | None
    limit: int = 0
    view: SloView | None = None
    fits: bool = False
    weights_gib: float = 0.0
    kv_gib: np.ndarray | None = None
    stated_error_pct: float | None = None
    speculation: Speculation | None = None


def lengths_key(d: ModelDemand) -> str:
    """What a shape's evaluation reads of a model's demand: the catalog model, the traffic's
    token lengths, prefix hit rate and shared prefix, and the percentiles the targets are stated at (they pick
    which lengths are evaluated). Not the targets' values, the load or the allowed options."""
    t, slo = d.traffic, d.slo
    pct = tuple(x.percentile if x else None for x in (slo.ttft, slo.tpot, slo.e2e))
    return repr((d.model, t.input_tokens.model_dump_json(), t.output_tokens.model_dump_json(),
                 t.prefix_cache_hit_rate, t.shared_prefix_tokens, pct,
                 d.lora.model_dump_json() if d.lora else None))


def cost_model_key(cat: Catalog) -> tuple[int, ...]:
    """What the cost model reads of a catalog, by identity: every kind but prices (catalogs
    that differ only in prices, like a sweep's price variants, share evaluations)."""
    return tuple(id(m) for m in (cat.accelerators, cat.systems, cat.models, cat.quantizations,
                                 cat.kv_dtypes, cat.efficiency, cat.engines, cat.links, cat.calibrations))


class TableCache:
    """Shape evaluations by (catalog's cost-model part, engine, lengths key, shape): see the
    module docstring.

    Entries are immutable and a catalog is immutable, so a hit is the same evaluation a fresh
    build would make (tested). One cache may serve several catalogs: each is keyed by the
    identity of its cost-model mappings (:func:`cost_model_key`), which the cache holds alive.
    Whole builds are kept too (:func:`build_tables` of the same problem, catalog and prune flag
    returns its first build), so a plan's confidence summary does not rebuild the plan's tables.
    ``hits``/``misses`` count look-ups (a whole build reused is one hit)."""

    def __init__(self) -> None:
        self._data: dict[tuple[tuple[int, ...], str | None, str, Shape, Speculative | None, Partition | None],
                         ShapeEval] = {}
        self._terms: dict[tuple[tuple[int, ...], str | None, Shape], ShapeTerms | str] = {}
        self._roles: dict[tuple[tuple[int, ...], str | None, str, Shape], RoleTerms | None] = {}
        self._catalogs: dict[tuple[int, ...], Catalog] = {}
        self._tables: dict[tuple[int, bool, str], tuple[ModelTable, ...]] = {}
        """Whole builds by (catalog identity, prune, problem as JSON): a plan's confidence
        summary asks again for the tables the plan was solved with."""
        self._table_catalogs: dict[int, Catalog] = {}  # keeps ids in _tables from being reused
        self.max_builds = 16
        """Whole builds kept (the oldest goes first); shape evaluations are not bounded."""
        self.hits = 0
        self.misses = 0

    def whole_build(self, key: tuple[int, bool, str]) -> tuple[ModelTable, ...] | None:
        """The tables :func:`build_tables` kept under ``key`` (catalog identity, prune flag,
        problem as JSON), if any (a hit)."""
        built = self._tables.get(key)
        if built is not None:
            self.hits += 1  # one look-up, answered whole
        return built

    def keep_build(self, key: tuple[int, bool, str], cat: Catalog, tables: tuple[ModelTable, ...]) -> None:
        """Keep a whole build of ``cat`` under ``key``, dropping the oldest beyond ``max_builds``."""
        self._table_catalogs.setdefault(id(cat), cat)
        while len(self._tables) >= self.max_builds:  # oldest first: a long sweep stays bounded
            del self._tables[next(iter(self._tables))]
        self._tables[key] = tables

    def __len__(self) -> int:
        return len(self._data)

    def evaluate(self, cat: Catalog, d: ModelDemand, shape: Shape, engine: str | None = None,
                 key: str | None = None, spec: Speculative | None = None,
                 partition: Partition | None = None) -> ShapeEval:
        """The evaluation of ``shape`` for ``d``'s traffic; ``key``: ``lengths_key(d)`` when the
        caller has it already; ``spec``: with this speculative decoding; ``partition``: on this
        share of a GPU (single-GPU shapes)."""
        ck = cost_model_key(cat)
        self._catalogs.setdefault(ck, cat)
        k = (ck, engine, key if key is not None else lengths_key(d), shape, spec, partition)
        hit = self._data.get(k)
        if hit is not None:
            self.hits += 1
            return hit
        self.misses += 1
        terms = self.terms(cat, shape, engine)
        if partition is not None and not isinstance(terms, str):
            eng = cat.engine(terms.engine)
            terms = partition_terms(terms, partition, eng.kv_memory_policy, eng.kv_memory_fraction)
        if not isinstance(terms, str):
            terms = demand_terms(cat, d, terms)
        sp: Speculation | str | None = None
        if spec is not None and not isinstance(terms, str):
            sp = speculation(cat, shape, spec.draft, spec.acceptance_rate, spec.draft_tokens, engine)
            if partition is not None and not isinstance(sp, str):  # the draft runs on the same share
                eng = cat.engine(terms.engine)
                sp = partition_speculation(sp, partition, eng.kv_memory_policy, eng.kv_memory_fraction)
        value = ShapeEval(sp) if isinstance(sp, str) else _shape_eval(d, shape, terms, sp)
        self._data[k] = value
        return value

    def evaluate_many(self, cat: Catalog, d: ModelDemand, wanted: Sequence[tuple[Shape, Speculative | None]],
                      engine: str | None = None, key: str | None = None) -> list[ShapeEval]:
        """:meth:`evaluate` of many (shape, speculation) pairs of one model entry, in order.

        The shapes the cache lacks (without speculation) are evaluated together: their terms
        built as arrays at once (:func:`~solver.costmodel.stacked_shapes.stacked_shape_terms`)
        and the cost model run once over every shape x batch cap (:func:`_shape_evals`), which
        gives the same numbers as one shape at a time. Speculative pairs, and shapes that cannot
        run (their reason), go through :meth:`evaluate`."""
        ck = cost_model_key(cat)
        self._catalogs.setdefault(ck, cat)
        lkey = key if key is not None else lengths_key(d)
        todo: dict[tuple[tuple[int, ...], str | None, str, Shape, Speculative | None, None], Shape] = {}
        for shape, spec in wanted:
            k = (ck, engine, lkey, shape, spec, None)
            if spec is not None or k in self._data or k in todo:
                continue
            todo[k] = shape
        if todo:
            keys = list(todo)
            for index, stacked in stacked_shape_terms(cat, list(todo.values()), engine):
                for i, value in zip(index, _shape_evals(d, demand_terms(cat, d, stacked), len(index))):
                    self._data[keys[i]] = value
                self.misses += len(index)
        out = []
        for shape, spec in wanted:
            k = (ck, engine, lkey, shape, spec, None)
            hit = self._data.get(k)
            if hit is None:
                out.append(self.evaluate(cat, d, shape, engine, key=lkey, spec=spec))
                continue
            if k not in todo:
                self.hits += 1
            out.append(hit)
        return out

    def roles(self, cat: Catalog, d: ModelDemand, shape: Shape, engine: str | None = None) -> RoleTerms | None:
        """A shape's terms as a prefill and as a decode replica for ``d``'s traffic
        (:func:`solver.disagg.role_terms`), cached like :meth:`evaluate`; None when the shape
        cannot run."""
        k = (cost_model_key(cat), engine, lengths_key(d), shape)
        if k not in self._roles:
            terms = self.terms(cat, shape, engine)
            self._roles[k] = None if isinstance(terms, str) else role_terms(demand_terms(cat, d, terms), d)
        return self._roles[k]

    def terms(self, cat: Catalog, shape: Shape, engine: str | None = None,
              ck: tuple[int, ...] | None = None) -> ShapeTerms | str:
        """``shape_terms`` (they depend on no traffic), or :func:`check_shape`'s reason;
        ``ck``: ``cost_model_key(cat)`` when the caller has it."""
        ck = ck if ck is not None else cost_model_key(cat)
        k = (ck, engine, shape)
        got = self._terms.get(k)
        if got is None:
            self._catalogs.setdefault(ck, cat)
            try:
                got = shape_terms(cat, shape, engine)  # checks the shape itself first
            except InputError:
                reason = check_shape(cat, shape, engine)  # unknown ids raise here, as before
                if not reason:
                    raise
                got = reason
            self._terms[k] = got
        return got


def _shape_eval(d: ModelDemand, shape: Shape, terms: ShapeTerms | str,
                spec: Speculation | None = None) -> ShapeEval:
    if isinstance(terms, str):
        return ShapeEval(terms)
    limit, view, fits = _evaluate(d, shape, terms, spec)
    ctx, prefix = memory_context_tokens(d), d.traffic.shared_prefix_tokens
    if spec is None:
        return ShapeEval(None, limit, view, fits, terms.weight_bytes_gpu / GIB,
                         kv_gib_per_gpu(terms, view.batch, ctx, prefix),
                         stated_error_pct=terms.stated_error_pct)
    return ShapeEval(None, limit, view, fits,
                     (terms.weight_bytes_gpu + draft_weight_bytes_gpu(terms, spec)) / GIB,
                     kv_gib_per_gpu_spec(terms, spec, view.batch, ctx, prefix),
                     stated_error_pct=terms.stated_error_pct, speculation=spec)


def _shape_evals(d: ModelDemand, one: ShapeTerms, n: int) -> list[ShapeEval]:
    """:func:`_shape_eval` (no speculation) of ``n`` shapes of one model entry at once, from
    their stacked terms ``one`` (a row per shape, one :func:`~solver.costmodel.stacked.branch_key`):
    the memory limits of all shapes in one call, then every shape's batch caps laid out as rows
    and the SLO view and KV evaluated in one call of the same functions
    (:func:`solver.slo.slo_view`, :func:`~solver.costmodel.kv_gib_per_gpu`)."""
    ctx, prefix = memory_context_tokens(d), d.traffic.shared_prefix_tokens
    limits = np.broadcast_to(np.asarray(memory_limit(one, d)), (n,))
    batches = [np.array([b for b in BATCH_GRID if b <= lim] if lim >= 1 else [1], dtype=np.int64)
               for lim in limits]
    counts = [len(b) for b in batches]
    rows = repeat_rows(one, counts)  # a row per (shape, batch cap)
    batch = np.concatenate(batches)
    view = slo_view(rows, batch, d)
    parts = [split_rows(x, counts) for x in
             (view.service_s, view.ttft0_ms, view.tpot_ms, view.e2e0_ms,
              kv_gib_per_gpu(rows, batch, ctx, prefix))]
    ends = np.cumsum(counts)
    out = []
    for j in range(n):
        lim = int(limits[j])
        v = SloView(batches[j], parts[0][j], parts[1][j], parts[2][j], parts[3][j], lim,
                    view.steps.rows(np.arange(ends[j] - counts[j], ends[j])))
        out.append(ShapeEval(None, lim, v, lim >= 1, float(_row(one.weight_bytes_gpu, j)) / GIB, parts[4][j],
                             stated_error_pct=_row(one.stated_error_pct, j)))
    return out


def _row(value: Any, j: int) -> Any:
    """Row ``j`` of a stacked field as a plain value (a field equal on every row is that value)."""
    x = value[j] if isinstance(value, np.ndarray) else value
    return x.item() if isinstance(x, np.generic) else x


def model_table(cat: Catalog, problem: Problem, d: ModelDemand, prune: bool = True,
                cache: TableCache | None = None) -> ModelTable:
    """All candidates of one model in stable order, pruned of dominated ones unless
    ``prune=False``, and the rejected shapes. ``cache``: reuse shape evaluations (a fresh one
    per call without it)."""
    cache = cache if cache is not None else TableCache()
    lkey = lengths_key(d)
    fleet = problem.fleet
    engine = d.engine or cat.default_engine
    rejected: list[Rejected] = []
    pending: list[_ShapeRows] = []
    shapes: list[tuple[Shape, set[Family], str, Price, float, int]] = []
    trail: list[Rejected | int] = []  # rejections and shapes (by index) in enumeration order
    aggregated = "aggregated" in d.serving_modes
    units: list[Candidate] = []
    unit_systems: list[_UnitSystem] = []  # node shapes for mixed units (two accelerators)
    for gpu in d.allowed_accelerators or sorted(cat.accelerators):
        prices = cat.prices_for(gpu, fleet.pricing, fleet.provider)
        if not prices:
            who = f" from {fleet.provider}" if fleet.provider else ""
            trail.append(Rejected(d.name, gpu, f"no {fleet.pricing} price{who} in the catalog", no_price=True))
            continue
        acc = cat.accelerator(gpu)
        unsupported = [q for q in sorted(cat.quantizations) if cat.quant_support(gpu, q) is None]
        if unsupported:
            trail.append(Rejected(d.name, gpu, f"formats not supported on {acc.family}: {', '.join(unsupported)}"))
        for system in cat.systems_for(gpu):
            dupes: list[Rejected] = []
            found = _shapes(cat, d, gpu, system.id, prune, dupes)
            trail.extend(dupes)
            if _disaggregation_offered(d):
                # pools carry tp/pp/ep only: expert TP inside attention DP is not offered to units
                units += _unit_candidates(cat, d, system.id, [(sh, f) for sh, f in found if not f and not sh.moe_tp],
                                          prices[0], acc.tdp_w, engine, cache, problem.confidence)
                unit_systems.append(_UnitSystem(gpu, system.id, tuple(sh for sh, f in found if not f),
                                                prices[0], acc.tdp_w))
            if not aggregated:
                if found:
                    trail.append(Rejected(d.name, f"{gpu}/{system.id} aggregated",
                                          "serving_modes leaves out aggregated"))
                continue
            for shape, flags in found:
                trail.append(len(shapes))
                shapes.append((shape, flags, system.id, prices[0], acc.tdp_w, system.gpus_per_node))
    if len({u.accelerator for u in unit_systems}) > 1:  # pools on two accelerators
        units += _mixed_unit_candidates(cat, d, unit_systems, engine, cache, problem.confidence)
    specs = (None, d.speculative) if d.speculative is not None else (None,)
    # every shape's evaluation at once (vectorised over shapes x batch caps), then the rows
    evals = iter(cache.evaluate_many(cat, d, [(sh[0], spec) for sh in shapes for spec in specs],
                                     engine, key=lkey))
    def widened(ev: ShapeEval, shape: Shape) -> SloView:
        """The view with a calibration's tail factor and ``--confidence``'s multiplier (neither is
        part of the cache key, so they apply after the look-up)."""
        assert ev.view is not None
        return widen(tail_adjust(ev.view, cat, d, shape.accelerator, shape.quant, engine),
                     planning_multiplier(cat, d.model, shape.accelerator, shape.quant, engine,
                                         problem.confidence, ev.view.batch, d))

    for item in trail:
        if isinstance(item, Rejected):
            rejected.append(item)
            continue
        shape, flags, system_id, price, tdp_w, per_node = shapes[item]
        base = (f"{shape.accelerator}/{system_id} {shape.quant}/kv-{shape.kv_dtype} TP{shape.tp} PP{shape.pp} EP{shape.ep}"
                + (f" MoE-TP{shape.moe_tp}" if shape.moe_tp else ""))
        for spec in specs:
            what = base + (f" speculative ({spec.draft})" if spec is not None else "")
            ev = next(evals)
            if ev.reason:
                rejected.append(Rejected(d.name, what, ev.reason))
                continue
            assert ev.view is not None and ev.kv_gib is not None
            view = widened(ev, shape)
            f = set(flags)
            if not ev.fits:
                f.add(Family.MEMORY)
            if not _packs(shape.gpus, per_node):
                f.add(Family.TOPOLOGY)
            pending.append(_ShapeRows(
                shape, what, frozenset(f), per_node, price, tdp_w,
                cat.quantization(shape.quant).quality_loss.points, ev.limit, view,
                ev.weights_gib, ev.kv_gib, ev.stated_error_pct,
                tuple(ev.speculation.describe().items()) if ev.speculation else ()))
        for part in partitions_for(cat, d, shape.accelerator) if shape.gpus == 1 else ():
            for spec in specs:  # speculative decoding on a share: the draft shares it too
                ev = cache.evaluate(cat, d, shape, engine, key=lkey, spec=spec, partition=part)
                what = f"{base} {part.label}" + (f" speculative ({spec.draft})" if spec is not None else "")
                if ev.reason:
                    rejected.append(Rejected(d.name, what, ev.reason))
                    continue
                assert ev.view is not None and ev.kv_gib is not None
                view = widened(ev, shape)
                f = set(flags) | (set() if ev.fits else {Family.MEMORY})
                pending.append(_ShapeRows(
                    shape, what, frozenset(f), per_node, price, tdp_w,
                    cat.quantization(shape.quant).quality_loss.points, ev.limit, view,
                    ev.weights_gib, ev.kv_gib, ev.stated_error_pct,
                    tuple(ev.speculation.describe().items()) if ev.speculation else (), part))
    by_latency = d.application_rps > 0  # a stage of an application: its latency counts too
    rows, dropped, best = _rows(d, pending, rejected, prune, by_latency)  # pruned across shapes too
    if units:  # disaggregated units (solver.disagg), pruned against the (pruned) replicas
        flags = [False] * len(rows) + [True] * len(units)
        rows += units
        if prune:
            rows, more = prune_dominated(rows, by_latency, new=flags)
            dropped += more
    return ModelTable(d, tuple(rows), tuple(rejected), dropped, best)


def _disaggregation_offered(d: ModelDemand) -> bool:
    """Units are offered where the problem allows them (to a stage of an application too: a
    unit's e2e p99 at capacity enters the path budgets like a replica's), except with
    speculative decoding (a decode pool that drafts is not modelled)."""
    return "disaggregated" in d.serving_modes and d.speculative is None


def _unit_candidates(cat: Catalog, d: ModelDemand, system_id: str, shapes: list[tuple[Shape, set[Family]]],
                     price: Price, tdp_w: float, engine: str | None, cache: TableCache,
                     confidence: float | None = None) -> list[Candidate]:
    """Disaggregated units of ``d`` on one node shape (:func:`solver.disagg.units_for`) from its
    unflagged shapes, per format and KV dtype, as candidates (they meet every target, so they
    violate nothing)."""
    system = cat.system(system_id)
    by_format: dict[tuple[str, str], list[Shape]] = {}
    for sh, _ in shapes:
        by_format.setdefault((sh.quant, sh.kv_dtype), []).append(sh)
    found: list[tuple[str, str, Unit]] = []
    for (quant, kv), group in by_format.items():
        roles = [r for r in (cache.roles(cat, d, sh, engine) for sh in group) if r is not None]
        mult = planning_multiplier(cat, d.model, system.accelerator, quant, engine or cat.default_engine,
                                   confidence)
        found += [(quant, kv, u) for u in units_for(d, system, roles, mult)]
    return _units_as_candidates(cat, d, system_id, price, tdp_w, found, engine, cache)


@dataclass(frozen=True)
class _UnitSystem:
    """A node shape units may use: its unflagged shapes, price and TDP (for mixed units)."""

    accelerator: str
    system: str
    shapes: tuple[Shape, ...]
    price: Price
    tdp_w: float


def _mixed_unit_candidates(cat: Catalog, d: ModelDemand, systems: Sequence[_UnitSystem], engine: str | None,
                           cache: TableCache, confidence: float | None = None) -> list[Candidate]:
    """Units with the prefill pool on one accelerator's node shape and the decode pool on
    another's of the same vendor (:func:`solver.disagg.mixed_units_for`), per KV dtype both
    share and per format of the decode pool, as candidates whose prefill GPUs are counted on
    their own node shape (:class:`GpuUse`). Bounded: per decode node shape, only the
    :data:`~solver.disagg.MIXED_PREFILL_ACCELERATORS` accelerators cheapest per prompt (and
    cheaper than its own prefill), each with its
    :data:`~solver.disagg.MIXED_PREFILL_SHAPES` cheapest prefill shapes."""
    eng = engine or cat.default_engine
    out: list[Candidate] = []
    for kv in sorted({sh.kv_dtype for u in systems for sh in u.shapes}):
        best: dict[str, list[PrefillTerms]] = {}  # system -> its cheapest prefill terms per prompt
        for u in systems:
            roles = [(r, planning_multiplier(cat, d.model, u.accelerator, sh.quant, eng, confidence))
                     for sh in u.shapes if sh.kv_dtype == kv
                     for r in (cache.roles(cat, d, sh, engine),) if r is not None]
            best[u.system] = cheapest_prefill(d, roles, u.price.usd_per_gpu_hour)

        def cost(u: _UnitSystem) -> float:
            return prompt_cost(best[u.system][0], u.price.usd_per_gpu_hour) if best[u.system] else math.inf

        for b in systems:
            pool_a = sorted((a for a in systems if a.accelerator != b.accelerator and best[a.system]
                             and same_vendor(cat, a.accelerator, b.accelerator) and cost(a) < cost(b)),
                            key=cost)[:MIXED_PREFILL_ACCELERATORS]
            sys_b = cat.system(b.system)
            for a in pool_a:
                sys_a = cat.system(a.system)
                found: list[tuple[str, str, Unit]] = []
                for qb in sorted({sh.quant for sh in b.shapes if sh.kv_dtype == kv}):
                    roles_b = [r for r in (cache.roles(cat, d, sh, engine) for sh in b.shapes
                                           if (sh.quant, sh.kv_dtype) == (qb, kv)) if r is not None]
                    mult_b = planning_multiplier(cat, d.model, b.accelerator, qb, eng, confidence)
                    found += [(qb, kv, x) for x in mixed_units_for(d, sys_a, sys_b, best[a.system], roles_b, mult_b)]

                def also(x: Unit, a: _UnitSystem = a, per_node: int = sys_a.gpus_per_node) -> tuple[GpuUse, ...]:
                    return (GpuUse(a.accelerator, a.system, x.prefill_gpus, per_node, a.price.usd_per_gpu_hour,
                                   a.price.id, a.tdp_w),)

                out += _units_as_candidates(cat, d, b.system, b.price, b.tdp_w, found, engine, cache, also)
    return out


def _units_as_candidates(cat: Catalog, d: ModelDemand, system_id: str, price: Price, tdp_w: float,
                         found: list[tuple[str, str, "Unit"]], engine: str | None, cache: TableCache,
                         also: Callable[["Unit"], tuple[GpuUse, ...]] | None = None) -> list[Candidate]:
    """Units (decode pool on ``system_id``, format and KV dtype per entry) as candidates, with
    their latencies at capacity; ``also``: a mixed unit's GPUs on the prefill pool's node shape."""
    if not found:
        return []
    system = cat.system(system_id)
    # latencies at capacity, all units at once: the verifier's formula (solver.disagg)
    units = [u for _, _, u in found]
    lat = unit_latencies(units, d, np.array([u.capacity_rps for u in units]))
    ttft, tpot, e2e = lat.ttft_ms, lat.tpot_ms, lat.e2e_ms
    out = []
    for i, (quant, kv, u) in enumerate(found):
        dec = u.decode.shape
        t = cache.terms(cat, dec, engine)
        assert not isinstance(t, str)
        t = demand_terms(cat, d, t)
        out.append(Candidate(
            model=d.name, shape=replace(dec, model=d.model, system=system_id, quant=quant, kv_dtype=kv),
            max_batch=u.decode.batch, gpus_per_replica=u.gpus, gpus_per_node=system.gpus_per_node,
            usd_per_gpu_hour=price.usd_per_gpu_hour, price_id=price.id, tdp_w=tdp_w,
            quality_loss_points=max(cat.quantization(q).quality_loss.points  # both pools' formats
                                    for q in (quant, u.prefill.shape.quant)),
            capacity_rps_per_replica=u.capacity_rps, ttft_p99_ms=float(ttft[i]), ttft_min_ms=u.ttft_min_ms,
            tpot_p99_ms=float(tpot[i]), e2e_p99_ms=float(e2e[i]), e2e_min_ms=u.e2e_min_ms,
            service_s=u.decode.service_s, max_concurrency=u.decode.limit,
            weights_gib_per_gpu=t.weight_bytes_gpu / GIB,
            kv_gib_per_gpu=float(kv_gib_per_gpu(t, u.decode.batch, memory_context_tokens(d),
                                                d.traffic.shared_prefix_tokens)),
            stated_error_pct=t.stated_error_pct, unit=u, also=also(u) if also is not None and u.mixed else (),
        ))
    return out


def _rows(
    d: ModelDemand, pending: list[_ShapeRows], rejected: list[Rejected], prune: bool,
    by_latency: bool = False,
) -> tuple[list[Candidate], int, dict[str, Candidate]]:
    """Capacity at the SLO for every (shape, batch cap) at once, then the candidate rows.

    With ``prune``, batch caps of one shape that another batch cap of the same shape dominates
    (same violations, no more capacity: the k = 1 case of :func:`prune_dominated`) are dropped
    here already, before any object is built; returns (rows, number dropped, best rows)."""
    if not pending:
        return [], 0, {}
    cat_ = np.concatenate
    view = SloView(
        batch=cat_([p.view.batch for p in pending]),
        service_s=cat_([p.view.service_s for p in pending]),
        ttft0_ms=cat_([p.view.ttft0_ms for p in pending]),
        tpot_ms=cat_([p.view.tpot_ms for p in pending]),
        e2e0_ms=cat_([p.view.e2e0_ms for p in pending]),
        max_concurrency=0,
        steps=StepTimes.concat([p.view.steps for p in pending]),
    )
    owner = np.concatenate([np.full(len(p.view.batch), i) for i, p in enumerate(pending)])
    kv_gib = np.concatenate([p.kv_gib for p in pending])
    n = len(owner)
    ttft_bad, tpot_bad, e2e_bad = zero_load_misses(view, d)
    mask = (ttft_bad * _BITS[Family.TTFT] + tpot_bad * _BITS[Family.TPOT] + e2e_bad * _BITS[Family.E2E]).astype(np.int64)
    structural = np.array([not (p.flags - {Family.TTFT, Family.TPOT, Family.E2E}) for p in pending])[owner]
    quickest: dict[str, int] = {}  # per metric, the row of lowest zero-load latency
    if structural.any():
        ok = np.flatnonzero(structural)
        for key, metric in (("ttft", view.ttft0_ms), ("tpot", view.tpot_ms), ("e2e", view.e2e0_ms)):
            quickest[key] = int(ok[np.argmin(metric[ok])])
    runs = None
    if prune and not by_latency:
        # only the first row of highest capacity of each (shape, mask) run is kept: rows whose
        # search shows them below another row of their run are left unfinished (NaN)
        _, runs = np.unique(owner * (1 << 16) + mask, return_inverse=True)
    protect = np.zeros(n, dtype=bool)
    protect[list(quickest.values())] = True
    res = capacity_at_slo(view, d, runs, protect)
    cap = res.capacity_rps
    done = np.isfinite(cap)
    ttft_at_cap, e2e_at_cap = np.full(n, np.nan), np.full(n, np.nan)
    if by_latency or not prune:
        ttft_at_cap, _, e2e_at_cap, _ = load_latencies_ms(view, d, cap)

    cap_int = np.where(done, scaling.capacity_mrps_array(np.nan_to_num(cap)), -1)
    res_ttft, res_tpot, res_e2e = ttft_bad, tpot_bad, e2e_bad
    keep = np.ones(len(owner), dtype=bool)
    if prune:
        # stable order by (shape, mask, capacity desc, position): the first of each run wins
        order = np.lexsort((np.arange(len(owner)), -cap_int, mask, owner))
        first = np.ones(len(order), dtype=bool)
        first[1:] = (owner[order][1:] != owner[order][:-1]) | (mask[order][1:] != mask[order][:-1])
        keep[:] = False
        keep[order[first]] = True
        if by_latency:  # also every batch cap faster (e2e at capacity) than all bigger ones of its run
            lat = np.array([_latency_key(float(x)) for x in e2e_at_cap], dtype=np.int64)
            fastest = 0
            for j, i in enumerate(order):
                if first[j] or lat[i] < fastest:
                    keep[i] = True
                    fastest = lat[i] if first[j] else min(fastest, lat[i])
        keep |= done & (cap_int < 1)  # rejected below, with their reason

    def make(i: int) -> Candidate:
        p = pending[owner[i]]
        v = set(p.flags)
        if res_ttft[i]:
            v.add(Family.TTFT)
        if res_tpot[i]:
            v.add(Family.TPOT)
        if res_e2e[i]:
            v.add(Family.E2E)
        sh = p.shape
        return Candidate(
            model=d.name, shape=replace(sh, model=d.model, system=str(sh.system)),
            max_batch=int(view.batch[i]), gpus_per_replica=sh.gpus, gpus_per_node=p.per_node,
            usd_per_gpu_hour=p.price.usd_per_gpu_hour, price_id=p.price.id, tdp_w=p.tdp_w,
            quality_loss_points=p.loss, capacity_rps_per_replica=float(cap[i]),
            ttft_p99_ms=float(ttft_at_cap[i]), ttft_min_ms=float(view.ttft0_ms[i]),
            tpot_p99_ms=float(view.tpot_ms[i]),
            e2e_p99_ms=float(e2e_at_cap[i]), e2e_min_ms=float(view.e2e0_ms[i]),
            service_s=float(view.service_s[i]), max_concurrency=max(p.limit, 0),
            weights_gib_per_gpu=p.weights_gib, kv_gib_per_gpu=float(kv_gib[i]),
            violations=frozenset(v), stated_error_pct=p.stated_error_pct, speculative=p.spec,
            partition=p.partition.label if p.partition else "",
            per_gpu=p.partition.per_gpu if p.partition else 1, steps=view.steps.at(i),
        )

    sel = []
    for i in np.flatnonzero(keep):
        if cap_int[i] < 1:
            rejected.append(Rejected(d.name, f"{pending[owner[i]].what} batch {int(view.batch[i])}",
                                     f"capacity within the targets is below {1 / scaling.MILLI:g} req/s"))
            continue
        sel.append(int(i))
    dominated = 0
    if prune and len(sel) > 1:
        # prune_dominated on the arrays, before any row is built (same rule, same result)
        idx = np.array(sel)
        o = owner[idx]
        group_of: dict[tuple[str, str, str], int] = {}
        by_owner = np.array([group_of.setdefault((p.shape.accelerator, str(p.shape.system),
                                                  p.partition.label if p.partition else ""), len(group_of))
                             for p in pending])
        flag_bits = np.array([sum(_BITS[f] for f in p.flags) for p in pending], dtype=np.int64)
        lat = (np.array([_latency_key(float(e2e_at_cap[i])) for i in idx], dtype=np.int64)
               if by_latency else np.zeros(len(idx), dtype=np.int64))
        out = _dominated(by_owner[o], np.array([p.shape.gpus for p in pending], dtype=np.int64)[o],
                         cap_int[idx], flag_bits[o] | mask[idx], lat)
        dominated = int(out.sum())
        sel = [i for i, gone in zip(sel, out) if not gone]
    need = np.array(sorted(set(sel) | set(quickest.values())), dtype=np.int64)
    if need.size and np.isnan(ttft_at_cap[need]).any():
        ttft_at_cap[need], _, e2e_at_cap[need], _ = load_latencies_ms(view.rows(need), d, cap[need])
    rows = [make(i) for i in sel]
    best = {key: make(i) for key, i in quickest.items()}
    return rows, int((~keep).sum()) + dominated, best


# -- pruning ---------------------------------------------------------------------------------

_BITS = {f: 1 << i for i, f in enumerate(CANDIDATE_FAMILIES)}


def violation_mask(c: Candidate) -> int:
    return sum(_BITS[f] for f in c.violations)


def _latency_key(e2e_ms: float) -> int:
    """A row's e2e at capacity as latency-aware pruning compares it: integer microseconds, the
    largest integer where it is unbounded (the queue at capacity is unstable: the slowest)."""
    return scaling.latency_us(e2e_ms) if math.isfinite(e2e_ms) else int(np.iinfo(np.int64).max)


def prune_dominated(cands: Sequence[Candidate], by_latency: bool = False,
                    new: Sequence[bool] | None = None) -> tuple[list[Candidate], int]:
    """Drop candidates that an optimum never needs; returns (kept in order, number dropped).

    ``a`` dominates ``b`` when both run on the same accelerator, system *and* GPU share
    (they share inventory, nodes, price and power), ``k = gpus_b / gpus_a`` is a whole number, ``k`` replicas
    of ``a`` offer at least the capacity of one ``b`` (in the integer milli-req/s the model uses),
    and ``a`` violates no family that ``b`` does not. Then in any plan, every replica of ``b`` can
    be swapped for ``k`` replicas of ``a``: the same GPUs, nodes, power and cost, no less
    capacity, no more distinct configurations, and no family newly broken, under *any* set of
    relaxed families. So an optimum without ``b`` always exists. Equal rows keep the first.
    ``by_latency`` (a stage of an application, :mod:`solver.chains`): ``a`` must also be no
    slower (e2e at capacity, integer microseconds), so no path of the application gets longer.
    ``new`` marks the candidates not yet compared: when the others were pruned among themselves
    already, only pairs with a new one can drop anything, so only those are compared (same
    result as comparing all; used when disaggregated units join a pruned table).
    """
    n = len(cands)
    if n < 2:
        return list(cands), 0
    keys: dict[tuple, int] = {}  # a GPU share is its own pool of GPUs; a mixed unit compares only
    # with candidates of the same GPUs on each node shape (k = 1: k copies would not match)
    dropped = _dominated(
        np.array([keys.setdefault((c.accelerator, c.system, c.partition)
                                  + ((c.own_gpus, c.also) if c.also else ()), len(keys)) for c in cands]),
        np.array([c.gpus_per_replica for c in cands], dtype=np.int64),
        np.array([scaling.capacity_mrps(c.capacity_rps_per_replica) for c in cands], dtype=np.int64),
        np.array([violation_mask(c) for c in cands], dtype=np.int64),
        np.array([_latency_key(c.e2e_p99_ms) if by_latency else 0 for c in cands], dtype=np.int64),
        None if new is None else np.asarray(new, dtype=bool),
    )
    kept = [c for c, d in zip(cands, dropped) if not d]
    return kept, int(dropped.sum())


def _dominated(group: np.ndarray, gpus_all: np.ndarray, cap_all: np.ndarray, viol_all: np.ndarray,
               lat_all: np.ndarray, new: np.ndarray | None = None) -> np.ndarray:
    """:func:`prune_dominated`'s rule on arrays (one entry per candidate, in table order):
    ``group`` numbers the (accelerator, system) pairs, ``cap_all`` is integer milli-req/s,
    ``viol_all`` violation bit masks, ``lat_all`` integer microseconds (all 0 to ignore
    latency); ``new``: only pairs with a new candidate are compared. Returns which candidates
    are dominated."""
    dropped = np.zeros(len(group), dtype=bool)
    gs = np.sort(group, axis=None)
    for g in gs[np.r_[True, gs[1:] != gs[:-1]]] if gs.size else gs:  # np.unique's values (it imports numpy.ma)
        idx = np.flatnonzero(group == g)
        cols = (gpus_all[idx], cap_all[idx], viol_all[idx], lat_all[idx], idx)
        every = np.arange(len(idx))
        if new is None:
            out = _any_dominates(cols, every, every)
        else:
            fresh = np.flatnonzero(new[idx])
            out = _any_dominates(cols, fresh, every)  # new candidates against all
            out[fresh] |= _any_dominates(cols, every, fresh)  # all against the new ones
        dropped[idx] = out
    return dropped


def _any_dominates(cols: tuple[np.ndarray, ...], a_pos: np.ndarray, b_pos: np.ndarray) -> np.ndarray:
    """For each candidate at ``b_pos`` (positions in ``cols``: gpus, capacity, violations,
    latency, table index), whether one at ``a_pos`` dominates it (the rule of :func:`_dominated`)."""
    gpus_c, cap_c, viol_c, lat_c, idx_c = cols
    gpus, cap, viol, lat, idx = gpus_c[b_pos], cap_c[b_pos], viol_c[b_pos], lat_c[b_pos], idx_c[b_pos]
    out = np.zeros(len(b_pos), dtype=bool)
    for start in range(0, len(a_pos), _DOMINANCE_BLOCK):  # rows: the dominating candidate a
        a = a_pos[start:start + _DOMINANCE_BLOCK]
        ga, ca, va, la, ia = gpus_c[a, None], cap_c[a, None], viol_c[a, None], lat_c[a, None], idx_c[a, None]
        k = gpus // ga
        dom = (gpus % ga == 0) & (k * ca >= cap) & ((va & ~viol) == 0) & (la <= lat)
        strict = (k > 1) | (k * ca > cap) | (va != viol) | (la < lat)
        dom &= strict | (idx > ia)
        dom &= idx != ia  # a candidate does not dominate itself
        out |= dom.any(axis=0)
    return out


_DOMINANCE_BLOCK = 256
"""Candidates compared against all others of their group per block (bounds the n x n arrays)."""


def _table_key(d: ModelDemand) -> str:
    """Everything a table depends on except the model's name and its load: capacity per replica
    is a property of the shape, the lengths and the targets, not of how much traffic there is."""
    t = d.traffic
    return d.model_copy(update={
        "name": "_", "headroom": 0.0, "traffic": t.model_copy(update={"peak_rps": 1.0}),
    }).model_dump_json()


def _renamed(t: ModelTable, d: ModelDemand) -> ModelTable:
    def mv(c: Candidate) -> Candidate:
        return replace(c, model=d.name)

    return ModelTable(
        d, tuple(mv(c) for c in t.candidates),
        tuple(replace(r, model=d.name) for r in t.rejected), t.pruned,
        {k: mv(c) for k, c in t.best.items()},
    )


PARALLEL_MIN_EVALUATIONS = 8
"""Distinct traffics (lengths keys) from which :func:`build_tables` spreads the work over
processes by default: below it, starting the processes (~1 s each) costs more than it saves."""


def build_tables(problem: Problem, cat: Catalog, prune: bool = True,
                 cache: TableCache | None = None, workers: int | None = None) -> tuple[ModelTable, ...]:
    """One candidate table per model of the problem, pruned unless ``prune=False``. Models
    that differ only in name and load (the same model serving several applications) share
    one table; models that share a model and traffic share shape evaluations through
    ``cache`` (a fresh :class:`TableCache` per call without one; pass one to reuse it across
    calls, e.g. the points of a Pareto sweep).

    ``workers``: processes to build tables in (tables are pure functions of their inputs, so
    the result does not depend on it). Default: one per CPU when the problem has at least
    ``PARALLEL_MIN_EVALUATIONS`` distinct traffics and ``cat`` is a catalog loaded from its
    folder (workers reload it there), else this process. Work is split by traffic, so models
    that share evaluations share a worker."""
    cache = cache if cache is not None else TableCache()
    whole_key = (id(cat), prune, problem.model_dump_json())
    built = cache.whole_build(whole_key)
    if built is not None:
        return built
    firsts: dict[str, ModelDemand] = {}
    for d in problem.models:
        firsts.setdefault(_table_key(d), d)
    groups: dict[str, list[str]] = {}
    for key, d in firsts.items():
        groups.setdefault(lengths_key(d), []).append(key)
    n = _table_workers(workers, len(groups), cat)
    if n > 1:
        done = _parallel_tables(problem, cat, prune, list(groups.values()), firsts, n)
    else:
        done = {key: model_table(cat, problem, d, prune, cache) for key, d in firsts.items()}
    out = []
    for d in problem.models:
        t = done[_table_key(d)]
        out.append(t if t.demand is d else _renamed(t, d))
    built = tuple(out)
    cache.keep_build(whole_key, cat, built)
    return built


def _table_workers(workers: int | None, evaluations: int, cat: Catalog) -> int:
    import os

    from solver.catalog import load_catalog

    if workers is None:
        if evaluations < PARALLEL_MIN_EVALUATIONS:
            return 1
        workers = os.cpu_count() or 1
    n = max(1, min(workers, evaluations))
    if n > 1:
        try:
            reloadable = load_catalog(cat.folder) is cat
        except Exception:  # noqa: BLE001 - a catalog that cannot be reloaded stays here
            reloadable = False
        if not reloadable:
            return 1
    return n


def _tables_in_worker(args: tuple[str, str, list[int], bool]) -> list[ModelTable]:
    """Tables of some models of a problem, in a worker process (module level: it pickles)."""
    from solver.catalog import load_catalog

    folder, problem_json, indices, prune = args
    cat = load_catalog(folder)
    problem = Problem.model_validate_json(problem_json)
    cache = TableCache()
    return [model_table(cat, problem, problem.models[i], prune, cache) for i in indices]


def _parallel_tables(problem: Problem, cat: Catalog, prune: bool, groups: list[list[str]],
                     firsts: dict[str, ModelDemand], n: int) -> dict[str, ModelTable]:
    from concurrent.futures import ProcessPoolExecutor

    position = {id(d): i for i, d in enumerate(problem.models)}
    # contiguous runs of traffic groups, about the same number of tables each
    keys = [k for g in groups for k in g]
    per = -(-len(keys) // n)
    chunks: list[list[str]] = [[]]
    for g in groups:
        if len(chunks[-1]) >= per:
            chunks.append([])
        chunks[-1].extend(g)
    tasks = [(str(cat.folder), problem.model_dump_json(), [position[id(firsts[k])] for k in c], prune)
             for c in chunks]
    done: dict[str, ModelTable] = {}
    with ProcessPoolExecutor(max_workers=min(n, len(chunks))) as pool:
        for chunk, tables in zip(chunks, pool.map(_tables_in_worker, tasks)):
            done.update(zip(chunk, tables))
    return done
