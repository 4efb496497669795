"""Disaggregated prefill/decode units: what the search may choose instead of an aggregated replica.

A *unit* is ``P`` prefill replicas (shape A) and ``D`` decode replicas (shape B) of one model on
one node shape (or two: mixed units, below), one format and one KV dtype (the KV cache moves from A to B as it is, so both
hold it in the same dtype); A and B have their own TP/PP/EP, and B its own batch cap. To the
optimiser a unit is one candidate: GPUs ``P gA + D gB``, cost and power summed, capacity
``min(P x prefill rate, D x decode rate)`` (requests/s at the targets). The prefill:decode ratio
is chosen by the solver from :data:`RATIOS` (each ratio is its own candidate, so the encoding
stays exact: the integer model needs no change, and the number of units is its replica count).

Per pool (terms in :mod:`solver.costmodel.disaggregated`):

* prefill replica: one prompt at a time per attention rank (``servers`` = attention data-parallel
  ranks, 1 for dense models), prompt alone on the replica (no decode riding along); service
  time = prefill of the mean prompt + the engine's request overhead. The router sends each
  prompt to the least-loaded replica, so the unit's ``P`` replicas queue as one M/G/c pool
  (``c = P x servers``, arrivals the unit's load): Erlang C's wait quantile (:mod:`solver.queueing`)
  times Allen-Cunneen's ``(1 + cs^2) / 2``, ``cs^2`` the squared coefficient of variation of the
  prefill time over the prompt-length mix (0 for equal prompts; exponential service, the former
  M/M/1 per replica, over-stated the replay's TTFT p99 3-6x). The TTFT tail is
  ``wait_q + prefill(ISL_q) + KV transfer(ISL_q)``;
  its memory must hold one p99 prompt's KV per rank;
* KV transfer: ``ISL_q x KV bytes per token`` over the link between the pools (NVLink when the
  unit fits one node, else the NIC), the shards of ``min(gA, gB)`` GPUs moving in parallel;
* decode replica: a decode step with no prompt work riding along; TPOT at the target's
  percentile lengths and a full batch; service time ``OSL_mean x TPOT(mean lengths)``; capacity
  ``RHO_MAX x B / service``; memory: ``B`` sequences of p99 prompt + p99 output;
* E2E = prefill part (queue + prefill + transfer at the e2e percentile) + ``OSL_q x TPOT_q`` +
  the decode pool's slot wait (a sum of quantiles, conservative as for aggregated replicas).

Units exist only where they meet every target, the memory of both pools, the problem's formats,
quality guard and node packing: a disaggregated option is offered where it is usable, and an
infeasible problem is explained by its aggregated candidates as before. Offered to a stage of an
application too (its e2e p99 at capacity enters the path budgets like a replica's). Not offered
with speculative decoding. ``fleetplan simulate`` replays units through both pools
(:mod:`solver.simulate_disagg`).

*Mixed units* (:func:`mixed_units_for`): where a model may run on several accelerators of one
vendor, the prefill pool may run on another accelerator's node shape than the decode pool (e.g.
compute-cheap prefill, bandwidth-rich decode), each pool in its own format, both in one KV
dtype; the KV then always moves over the NIC (the slower side's), never NVLink. Each pool's GPUs
count against its own accelerator's inventory, price and power (``Candidate.also``).

"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from solver.catalog import Catalog
from solver.costmodel import Shape, ShapeTerms, max_concurrency
from solver.costmodel.disaggregated import (
    decode_only_tpot_ms, kv_transfer_ms, nic_link, prefill_only_ms, unit_link,
)
from solver.plan import Pool
from solver.problem import ModelDemand
from solver.queueing import RHO_MAX, allen_cunneen, max_arrival_rate, wait_quantile_many
from solver.schemas import System
from solver.slo import BATCH_GRID, Lengths, memory_limit  # decode batch caps: the aggregated ladder

RATIOS: tuple[tuple[int, int], ...] = tuple(
    (p, d) for p in range(1, 9) for d in range(1, 9) if math.gcd(p, d) == 1)
"""Prefill:decode replica ratios a unit may have (coprime, up to 8:1 and 1:8; a multiple of a
ratio is that many units)."""



@dataclass(frozen=True)
class PrefillTerms:
    """Load-independent terms of one prefill replica for one traffic (ms, s)."""

    shape: Shape
    servers: int
    service_s: float
    prefill_ttft_ms: float
    """Prefill of the prompt at the TTFT target's percentile (no transfer, no wait)."""
    prefill_e2e_ms: float
    """Prefill of the prompt at the E2E target's percentile."""
    fits: bool
    service_cv2: float = 1.0
    """Squared coefficient of variation of the prefill time over the prompt-length mix."""


@dataclass(frozen=True)
class DecodeTerms:
    """Load-independent terms of one decode replica at one batch cap."""

    shape: Shape
    batch: int
    limit: int
    service_s: float
    tpot_ms: float
    decode_e2e_ms: float
    """``OSL_q x TPOT_q`` at the E2E target's percentile."""


@dataclass(frozen=True)
class Unit:
    """One disaggregated unit with its terms (see the module docstring)."""

    prefill: PrefillTerms
    decode: DecodeTerms
    n_prefill: int
    n_decode: int
    link: str
    """``scale-up`` or ``nic``: the link the KV moves over."""
    transfer_ttft_ms: float
    transfer_e2e_ms: float
    prefill_cap_rps: float
    """Per prefill replica, at the TTFT target (and utilisation <= RHO_MAX)."""
    decode_cap_rps: float
    """Per decode replica (utilisation <= RHO_MAX)."""

    @property
    def gpus(self) -> int:
        return self.prefill_gpus + self.decode_gpus

    @property
    def prefill_gpus(self) -> int:
        """GPUs of the unit's prefill pool."""
        return self.n_prefill * self.prefill.shape.gpus

    @property
    def decode_gpus(self) -> int:
        return self.n_decode * self.decode.shape.gpus

    @property
    def mixed(self) -> bool:
        """Whether the pools run on two node shapes (the prefill pool's GPUs are then counted
        on its own accelerator and system)."""
        return self.prefill.shape.system != self.decode.shape.system

    @property
    def capacity_rps(self) -> float:
        return min(self.n_prefill * self.prefill_cap_rps, self.n_decode * self.decode_cap_rps)

    @property
    def ttft_min_ms(self) -> float:
        return self.prefill.prefill_ttft_ms + self.transfer_ttft_ms

    @property
    def e2e_min_ms(self) -> float:
        return self.prefill.prefill_e2e_ms + self.transfer_e2e_ms + self.decode.decode_e2e_ms

    def pools(self, unit_load_rps: float | None = None, d: ModelDemand | None = None) -> tuple[Pool, Pool]:
        """Both pools as plan data; with a load per unit (and the demand), each pool's
        latency at its share of it."""
        lat = unit_latencies(self, d, unit_load_rps) if unit_load_rps is not None and d is not None else None
        p, q = self.prefill.shape, self.decode.shape
        return (
            Pool("prefill", p.tp, p.pp, p.ep, self.n_prefill, p.gpus, self.prefill.servers,
                 self.prefill_cap_rps, (unit_load_rps or 0.0) / self.n_prefill,
                 lat.ttft_ms if lat else self.ttft_min_ms, None, p.accelerator, p.system, p.quant),
            Pool("decode", q.tp, q.pp, q.ep, self.n_decode, q.gpus, self.decode.batch,
                 self.decode_cap_rps, (unit_load_rps or 0.0) / self.n_decode, None, self.decode.tpot_ms,
                 q.accelerator, q.system, q.quant),
        )


@dataclass(frozen=True)
class UnitLatency:
    """A unit's percentile latencies (ms) and pools' utilisations at one load: floats for one
    unit, arrays over units for many (:func:`unit_latencies`)."""

    ttft_ms: float
    tpot_ms: float
    e2e_ms: float
    prefill_utilisation: float
    decode_utilisation: float


def prefill_terms(terms: ShapeTerms, d: ModelDemand, multiplier: float = 1.0) -> PrefillTerms:
    """A prefill replica's terms for ``d``'s traffic (see the module docstring); step times
    times ``multiplier`` (``--confidence``, :func:`solver.uncertainty.planning_multiplier`)."""
    t, slo = d.traffic, d.slo
    hit = t.prefix_cache_hit_rate
    ln = Lengths.of(d)
    # one evaluation of the prompt lengths read (mean, TTFT and E2E percentiles), as an array
    lengths = np.array([ln.isl_mean, t.input_tokens.percentile(slo.percentile("ttft")),
                        t.input_tokens.percentile(slo.percentile("e2e"))], dtype=float)
    ms = prefill_only_ms(terms, lengths, hit)
    service, ttft, e2e = float(ms[0]) / 1e3, float(ms[1]), float(ms[2])
    # the prompt-length mix at 50 equal-weight quantiles (1st, 3rd, ..., 99th): its prefill times' cs^2
    mix = prefill_only_ms(terms, np.array([t.input_tokens.percentile(q) for q in range(1, 100, 2)], dtype=float), hit)
    cv2 = float(np.var(mix) / np.mean(mix) ** 2)
    servers = terms.shape.dp_attn
    held = int(max_concurrency(terms, t.input_tokens.percentile(99), shared_prefix_tokens=t.shared_prefix_tokens))
    m = multiplier
    return PrefillTerms(terms.shape, servers, service * m, ttft * m, e2e * m, held >= servers, cv2)


def decode_terms(terms: ShapeTerms, d: ModelDemand, batches: Sequence[int] | None = None,
                 multiplier: float = 1.0, within_memory: bool = True) -> list[DecodeTerms]:
    """A decode replica's terms at every batch cap of ``batches`` (default: the ladder) that
    its memory holds (every one without ``within_memory``); step times times ``multiplier``."""
    t, slo = d.traffic, d.slo
    limit = memory_limit(terms, d)
    top = limit if within_memory else max(batches or BATCH_GRID)
    b = np.array([x for x in (batches or BATCH_GRID) if 1 <= x <= top], dtype=np.int64)
    if not len(b):
        return []
    ln = Lengths.of(d)
    qt, qe = slo.percentile("tpot"), slo.percentile("e2e")
    at: dict[tuple[int, int], np.ndarray] = {}  # lengths -> TPOT at every batch cap

    def tpot_at(isl: int, osl: int) -> np.ndarray:
        if (isl, osl) not in at:
            at[(isl, osl)] = decode_only_tpot_ms(terms, b, isl, osl)
        return at[(isl, osl)]

    mean = tpot_at(ln.isl_mean, ln.osl_mean)
    tpot = tpot_at(t.input_tokens.percentile(qt), t.output_tokens.percentile(qt))
    e2e = t.output_tokens.percentile(qe) * tpot_at(t.input_tokens.percentile(qe), t.output_tokens.percentile(qe))
    m = multiplier
    return [DecodeTerms(terms.shape, int(b[i]), int(limit), ln.osl_mean * float(mean[i]) / 1e3 * m,
                        float(tpot[i]) * m, float(e2e[i]) * m) for i in range(len(b))]


def transfer_ms(kv_bytes_per_token: float, system: System, d: ModelDemand, prefill: Shape, decode: Shape,
                unit_gpus: int, percentile: float) -> tuple[str, float]:
    """(link name, ms) to move the prompt at ``percentile`` from a prefill to a decode replica."""
    gb_s, lat_us = unit_link(system, unit_gpus)
    link = "scale-up" if unit_gpus <= system.gpus_per_node else "nic"
    tokens = d.traffic.input_tokens.percentile(percentile)
    return link, kv_transfer_ms(kv_bytes_per_token, tokens, gb_s, lat_us,
                                min(prefill.gpus, decode.gpus))


def mixed_transfer_ms(kv_bytes_per_token: float, prefill_system: System, decode_system: System, d: ModelDemand,
                      prefill: Shape, decode: Shape, percentile: float) -> float:
    """ms to move the prompt at ``percentile`` between pools on two node shapes (the NIC,
    :func:`~solver.costmodel.disaggregated.nic_link`; shards in parallel)."""
    gb_s, lat_us = nic_link(prefill_system, decode_system)
    return kv_transfer_ms(kv_bytes_per_token, d.traffic.input_tokens.percentile(percentile), gb_s, lat_us,
                          min(prefill.gpus, decode.gpus))


def prefill_capacity(pt: PrefillTerms, transfer_ms_: float, d: ModelDemand, n_prefill: int = 1) -> float:
    """Requests/s per prefill replica of a pool of ``n_prefill`` within the TTFT target (the
    pool's M/G/c wait at the target's percentile within what prefill and transfer leave) and
    utilisation <= RHO_MAX."""
    slo = d.slo
    budget_s = math.inf if slo.ttft is None else (slo.ttft.max_ms - pt.prefill_ttft_ms - transfer_ms_) / 1e3
    if budget_s < 0:
        return 0.0
    # the M/G/c quantile is the M/M/c one times the Allen-Cunneen factor: divide the budget by it
    budget_s /= float(allen_cunneen(pt.service_cv2))
    return float(max_arrival_rate(np.array([n_prefill * pt.servers]), np.array([pt.service_s]),
                                  np.array([budget_s]), p=slo.percentile("ttft") / 100)[0]) / n_prefill


def make_unit(pt: PrefillTerms, dt: DecodeTerms, n_prefill: int, n_decode: int, kv_bytes_per_token: float,
              system: System, d: ModelDemand,
              prefill_cap: Callable[[PrefillTerms, float, int], float] | None = None,
              prefill_system: System | None = None) -> Unit:
    """The unit ``n_prefill x pt + n_decode x dt`` with its transfer and per-pool capacities
    (``kv_bytes_per_token``: the whole model's, in the KV dtype both pools share;
    ``prefill_cap``: a memoised :func:`prefill_capacity` for ``d``; ``system``: the decode
    pool's node shape, ``prefill_system`` the prefill pool's when it is another one: the KV then
    moves over the NIC)."""
    gpus = n_prefill * pt.shape.gpus + n_decode * dt.shape.gpus
    if prefill_system is not None and prefill_system.id != system.id:
        x_ttft, x_e2e = (mixed_transfer_ms(kv_bytes_per_token, prefill_system, system, d, pt.shape, dt.shape, q)
                         for q in (d.slo.percentile("ttft"), d.slo.percentile("e2e")))
        link = "nic"
    else:
        link, x_ttft = transfer_ms(kv_bytes_per_token, system, d, pt.shape, dt.shape, gpus, d.slo.percentile("ttft"))
        _, x_e2e = transfer_ms(kv_bytes_per_token, system, d, pt.shape, dt.shape, gpus, d.slo.percentile("e2e"))
    p_cap = prefill_cap(pt, x_ttft, n_prefill) if prefill_cap else prefill_capacity(pt, x_ttft, d, n_prefill)
    d_cap = RHO_MAX * dt.batch / dt.service_s
    return Unit(pt, dt, n_prefill, n_decode, link, x_ttft, x_e2e, p_cap, d_cap)


def unit_latencies(u: Unit | Sequence[Unit], d: ModelDemand, unit_load_rps: float | np.ndarray) -> UnitLatency:
    """Percentile latencies of a unit carrying ``unit_load_rps`` (the prefill pool one M/G/c
    queue, the decode load split evenly over its replicas; waits exact, Erlang C).

    One formula for every caller: with one unit and its load the fields are floats (the
    verifier, the plan); with a sequence of units and their loads (an array, or one load for
    all) they are arrays, entry ``i`` unit ``i``'s, the same numbers a one-unit call gives (the
    candidate table)."""
    units = [u] if isinstance(u, Unit) else list(u)
    slo = d.slo

    def col(get: Callable[[Unit], float]) -> np.ndarray:
        return np.array([get(x) for x in units], dtype=float)

    lam = np.broadcast_to(np.asarray(unit_load_rps, dtype=float), (len(units),))
    n_p, n_d = col(lambda x: x.n_prefill), col(lambda x: x.n_decode)
    servers, batch = col(lambda x: x.prefill.servers), col(lambda x: x.decode.batch)
    s_p, s_d = col(lambda x: x.prefill.service_s), col(lambda x: x.decode.service_s)
    c_p, c_d = (n_p * servers).astype(np.int64), batch.astype(np.int64)  # servers of each queue
    mg = allen_cunneen(col(lambda x: x.prefill.service_cv2))
    lp, ld = lam / n_p, lam / n_d

    def prefill_wait_ms(q: float) -> np.ndarray:
        return wait_quantile_many(c_p, lam, s_p, q / 100) * 1e3 * mg

    qe = slo.percentile("e2e")
    ttft = col(lambda x: x.ttft_min_ms) + prefill_wait_ms(slo.percentile("ttft"))
    e2e = col(lambda x: x.e2e_min_ms) + prefill_wait_ms(qe) + wait_quantile_many(c_d, ld, s_d, qe / 100) * 1e3
    out = (ttft, col(lambda x: x.decode.tpot_ms), e2e, lp * s_p / servers, ld * s_d / batch)
    if isinstance(u, Unit):
        return UnitLatency(*(float(x[0]) for x in out))
    return UnitLatency(*out)


def meets_targets(u: Unit, d: ModelDemand) -> bool:
    """Whether the unit, loaded at its capacity, keeps every target of ``d``."""
    cap = u.capacity_rps
    if cap <= 0:
        return False
    slo = d.slo
    if slo.tpot is not None and u.decode.tpot_ms > slo.tpot.max_ms:
        return False
    lat = unit_latencies(u, d, cap)
    if slo.ttft is not None and lat.ttft_ms > slo.ttft.max_ms:
        return False
    if slo.e2e is not None and lat.e2e_ms > slo.e2e.max_ms:
        return False
    return lat.prefill_utilisation <= RHO_MAX * (1 + 1e-9) and lat.decode_utilisation <= RHO_MAX * (1 + 1e-9)


def _undominated(items: list[tuple[int, float]]) -> list[int]:
    """Indices (in order) of (gpus, capacity) items that no other item beats with ``k = g_i /
    g_j`` copies (a whole number): ``k x cap_j > cap_i``, or equal with ``k > 1`` or ``j``
    first (ties keep the first)."""
    if not items:
        return []
    g = np.array([x[0] for x in items], dtype=np.int64)
    c = np.array([x[1] for x in items], dtype=float)
    idx = np.arange(len(items))
    keep = []
    for i in range(len(items)):
        ok = (g[i] % g == 0) & (idx != i)
        k = g[i] // g
        beats = ok & ((k * c > c[i]) | ((k * c == c[i]) & ((k > 1) | (idx < i))))
        if not beats.any():
            keep.append(i)
    return keep


@dataclass(frozen=True)
class RoleTerms:
    """A shape's load- and target-independent terms in both roles for one traffic: what
    :class:`~solver.candidates.TableCache` keeps per shape (``decode``: every batch cap of the
    ladder its memory holds)."""

    prefill: PrefillTerms
    decode: tuple[DecodeTerms, ...]
    kv_bytes_per_token: float


def role_terms(terms: ShapeTerms, d: ModelDemand) -> RoleTerms:
    """Both roles' terms of one shape for ``d``'s traffic (at multiplier 1)."""
    return RoleTerms(prefill_terms(terms, d), tuple(decode_terms(terms, d)), terms.kv_bytes_per_token_model)


def _scaled(r: RoleTerms, m: float) -> RoleTerms:
    if m == 1.0:
        return r
    p = r.prefill
    return RoleTerms(
        replace(p, service_s=p.service_s * m, prefill_ttft_ms=p.prefill_ttft_ms * m, prefill_e2e_ms=p.prefill_e2e_ms * m),
        tuple(replace(x, service_s=x.service_s * m, tpot_ms=x.tpot_ms * m, decode_e2e_ms=x.decode_e2e_ms * m)
              for x in r.decode),
        r.kv_bytes_per_token)


def units_for(d: ModelDemand, system: System, roles: Sequence[RoleTerms], multiplier: float = 1.0) -> list[Unit]:
    """The usable units of ``d`` on ``system`` from the shapes' ``roles`` (one format and KV
    dtype, each usable by the problem), less those another unit of them dominates, in a
    stable order: per prefill shape, decode shape, ratio.

    Decode shapes that ``k`` copies of a smaller one out-serve are skipped (a unit with them is
    matched by one with the smaller shape and a ``k``-fold ratio, up to the ratio set), and a
    decode shape keeps its batch cap with the most capacity within the TPOT target. (Prefill
    shapes are all kept: their capacity depends on the TTFT budget the transfer leaves.)
    Without an E2E target a unit meets the targets by construction (each pool at most at its
    capacity), so only units of models with one are evaluated at load. Dominance among units
    (:func:`_undominated`: ``k`` copies of a unit with ``k`` times fewer GPUs serve as much)
    is exact for the optimiser: units violate nothing and share node shape, price and power."""
    slo = d.slo
    pre: list[PrefillTerms] = []
    dec: list[tuple[DecodeTerms, float]] = []
    for r in roles:
        r = _scaled(r, multiplier)
        pt = r.prefill
        if pt.fits and (slo.ttft is None or pt.prefill_ttft_ms < slo.ttft.max_ms):
            pre.append(pt)
        rows = [x for x in r.decode if slo.tpot is None or x.tpot_ms <= slo.tpot.max_ms]
        if rows:
            best = max(rows, key=lambda x: (x.batch / x.service_s, -x.batch))
            dec.append((best, r.kv_bytes_per_token))
    dec = [dec[i] for i in _undominated([(x.shape.gpus, x.batch / x.service_s) for x, _ in dec])]
    per_node = system.gpus_per_node
    caps: dict[tuple[PrefillTerms, float, int], float] = {}

    def cap_of(pt: PrefillTerms, x_ms: float, n_p: int) -> float:
        if (pt, x_ms, n_p) not in caps:
            caps[(pt, x_ms, n_p)] = prefill_capacity(pt, x_ms, d, n_p)
        return caps[(pt, x_ms, n_p)]

    out = []
    for pt in pre:
        for dt, kv_bytes in dec:
            for n_p, n_d in RATIOS:
                g = n_p * pt.shape.gpus + n_d * dt.shape.gpus
                if not (per_node % g == 0 or g % per_node == 0):
                    continue
                u = make_unit(pt, dt, n_p, n_d, kv_bytes, system, d, cap_of)
                if u.capacity_rps > 0:
                    out.append(u)
    out = [out[i] for i in _undominated([(u.gpus, u.capacity_rps) for u in out])]
    return [u for u in out if slo.e2e is None or meets_targets(u, d)]


def same_vendor(cat: Catalog, a: str, b: str) -> bool:
    """Whether a mixed unit may pair accelerators ``a`` and ``b``: one vendor (an assumption:
    one engine build and its KV-transfer library serve both pools; no cross-vendor KV path is
    modelled)."""
    return cat.accelerator(a).vendor == cat.accelerator(b).vendor


MIXED_PREFILL_SHAPES = 2
"""Prefill shapes per accelerator (and KV dtype) that mixed units are built from: the cheapest
per prompt (GPUs x price x service time per attention rank)."""

MIXED_PREFILL_ACCELERATORS = 2
"""Prefill accelerators per decode node shape (and KV dtype) in mixed units: the cheapest per
prompt among those cheaper per prompt than the decode accelerator's own prefill."""


def prompt_cost(pt: PrefillTerms, usd_per_gpu_hour: float) -> float:
    """$/h-seconds one prompt occupies a prefill replica: GPUs x price x service time per
    attention rank (what ranks prefill shapes for mixed units)."""
    return pt.shape.gpus * usd_per_gpu_hour * pt.service_s / pt.servers


def cheapest_prefill(d: ModelDemand, roles: Sequence[tuple[RoleTerms, float]], usd_per_gpu_hour: float,
                     k: int = MIXED_PREFILL_SHAPES) -> list[PrefillTerms]:
    """The ``k`` usable prefill terms (each role at its multiplier) cheapest per prompt, in
    order (ties: fewer GPUs, then the order given)."""
    slo = d.slo
    pre = []
    for i, (r, m) in enumerate(roles):
        pt = _scaled(r, m).prefill
        if pt.fits and (slo.ttft is None or pt.prefill_ttft_ms < slo.ttft.max_ms):
            pre.append((prompt_cost(pt, usd_per_gpu_hour), pt.shape.gpus, i, pt))
    return [x[3] for x in sorted(pre, key=lambda x: x[:3])[:k]]


def mixed_units_for(d: ModelDemand, prefill_system: System, decode_system: System,
                    prefill: Sequence[PrefillTerms], decode_roles: Sequence[RoleTerms],
                    decode_multiplier: float = 1.0) -> list[Unit]:
    """Units whose prefill pool (terms ``prefill``, e.g. :func:`cheapest_prefill`) runs on
    ``prefill_system`` and decode pool on ``decode_system`` (node shapes of two accelerators of
    one vendor; one KV dtype, formats free per pool), the KV moving over the NIC. Decode shapes
    as in :func:`units_for`; per (prefill shape, decode shape), the ratios no other ratio of the
    same pair beats with no more replicas in either pool (fewer GPUs on each node shape and no
    less capacity: an optimum never needs the beaten one). Each pool packs into its own nodes."""
    slo = d.slo
    dec: list[tuple[DecodeTerms, float]] = []
    for r in decode_roles:
        rows = [x for x in _scaled(r, decode_multiplier).decode if slo.tpot is None or x.tpot_ms <= slo.tpot.max_ms]
        if rows:
            dec.append((max(rows, key=lambda x: (x.batch / x.service_s, -x.batch)), r.kv_bytes_per_token))
    dec = [dec[i] for i in _undominated([(x.shape.gpus, x.batch / x.service_s) for x, _ in dec])]
    pa, pb = prefill_system.gpus_per_node, decode_system.gpus_per_node

    def packs(g: int, per_node: int) -> bool:
        return per_node % g == 0 or g % per_node == 0

    out: list[Unit] = []
    for pt in prefill:
        for dt, kv_bytes in dec:
            # the transfer is the same for every ratio of the pair; the prefill capacity per
            # replica depends on the pool's size (one M/G/c queue), never below one replica's
            x_ttft, x_e2e = (mixed_transfer_ms(kv_bytes, prefill_system, decode_system, d, pt.shape, dt.shape, q)
                             for q in (slo.percentile("ttft"), slo.percentile("e2e")))
            d_cap = RHO_MAX * dt.batch / dt.service_s
            if prefill_capacity(pt, x_ttft, d) <= 0 or d_cap <= 0:
                continue
            pair = [Unit(pt, dt, n_p, n_d, "nic", x_ttft, x_e2e, prefill_capacity(pt, x_ttft, d, n_p), d_cap)
                    for n_p, n_d in RATIOS
                    if packs(n_p * pt.shape.gpus, pa) and packs(n_d * dt.shape.gpus, pb)]
            # (n_p, n_d) is beaten by (m_p, m_d) <= it with capacity >= (ratios are distinct)
            caps = np.array([u.capacity_rps for u in pair])
            npr = np.array([u.n_prefill for u in pair])
            ndc = np.array([u.n_decode for u in pair])
            beaten = ((npr[:, None] <= npr[None, :]) & (ndc[:, None] <= ndc[None, :])
                      & (caps[:, None] >= caps[None, :]) & ~np.eye(len(pair), dtype=bool)).any(axis=0)
            out += [u for u, b in zip(pair, beaten) if not b]
    return [u for u in out if slo.e2e is None or meets_targets(u, d)]


def unit_label(u: Unit) -> str:
    """E.g. ``disaggregated 2 x prefill TP1 + 1 x decode TP2 batch 64``."""
    def par(sh: Shape) -> str:
        return f"TP{sh.tp}" + (f" PP{sh.pp}" if sh.pp > 1 else "") + (f" EP{sh.ep}" if sh.ep > 1 else "")

    on = f" on {u.prefill.shape.accelerator} {u.prefill.shape.quant}" if u.mixed else ""
    return (f"disaggregated {u.n_prefill} x prefill {par(u.prefill.shape)}{on} + {u.n_decode} x decode "
            f"{par(u.decode.shape)} batch {u.decode.batch}")
