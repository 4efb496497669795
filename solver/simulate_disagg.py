"""Replay of disaggregated deployments: requests through a prefill pool, a KV transfer, and a
decode pool (issue 11 item 1; the aggregated replay is :mod:`solver.simulate`).

Model (the planner's terms in :mod:`solver.disagg`, here run request by request):

- **Prefill pool.** Each request is routed (``least-loaded`` or ``round-robin``, as for
  aggregated replicas) to one prefill replica of its model's disaggregated deployments. A
  prefill replica is the simulator's replica (:class:`solver.simulate._Replica`) with the pool's
  ``max_batch`` prompts in flight (one per attention rank), no decoding, and the engine's chunked
  prefill; it reserves each prompt's KV (prompt + 1 token). The request leaves the pool when its
  last prompt chunk has run: its first token (TTFT) is there.
- **KV transfer.** The whole prompt's KV (prompt tokens x the model's KV bytes per token in the
  deployment's KV dtype) moves to a decode replica of the *same* deployment over the unit's link
  (:func:`solver.costmodel.disaggregated.unit_link`: NVLink when the unit fits one node, else
  the NIC; always the NIC when the pools are on two node shapes; the shards of ``min(prefill,
  decode GPUs per replica)`` GPUs in parallel), taking
  :func:`~solver.costmodel.disaggregated.kv_transfer_ms`. The first token is streamed by the
  prefill replica, so the transfer delays the second token, not the first -- but the planner
  adds it to TTFT (the decode pool emits every token in real deployments where the prefill
  worker returns only KV: NVIDIA Dynamo, SGLang PD). The replay follows the planner: TTFT =
  arrival -> prefill done + transfer.
- **Decode pool.** The request joins a decode replica (the same routers -- ``weighted`` splits
  each pool evenly, its replicas being alike -- at the instant its KV has arrived) and is decoded with continuous batching like any request, with no prompt
  work (its ``osl - 1`` remaining tokens, one per step; the KV reserved at its final length).
  A request with one output token ends at the prefill pool.

A model with aggregated and disaggregated deployments: each request goes to one side in
proportion to the plan's load shares (:func:`split_by_share`), and the sides' results are merged
(:func:`merge_results`).

Percentiles and target shares are reported as for aggregated replicas (:class:`SimResult`).
TPOT runs from the request's admission to the decode pool to its last token: a wait for a
decode slot after the transfer counts in E2E (and in the queue wait, the prefill pool's plus the
decode pool's), not in TPOT, as the planner counts it (:func:`solver.disagg.unit_latencies`);
a user sees that wait as a longer gap before the second token.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from solver.catalog import Catalog
from solver.costmodel import Shape, ShapeTerms, decode_step, kv_budget_bytes_gpu, shape_terms
from solver.costmodel.compute import chunk_mixture, prefill
from solver.costmodel.disaggregated import nic_link, unit_link
from solver.errors import InputError
from solver.lora import demand_terms
from solver.problem import ModelDemand, Slo
from solver.simulate import (
    ROUTERS, CostModelStepTimer, Percentiles, ReplicaSpec, Router, SimResult, Workload, _checks, _Replica,
    _Requests, plan_engine, route,
)

GB = 1e9


class PrefillPoolTimer(CostModelStepTimer):
    """Step times of a prefill-pool replica: with pipeline parallelism a prompt's chunks follow
    each other through the stages (as :func:`solver.costmodel.compute.prefill` counts them), so
    a step costs one stage pass plus the host time, not ``pp`` passes; the ``pp - 1`` passes of
    the pipeline's drain are added to each prompt by :func:`drain_s`. Equal to
    :class:`~solver.simulate.CostModelStepTimer` at ``pp = 1``."""

    def _steps_ms(self, b: np.ndarray, ctx: np.ndarray, pre: np.ndarray, pairs: Any) -> np.ndarray:
        t = self.terms
        total = decode_step(t, b, ctx, pre, pairs).total_ms
        f = chunk_mixture(t, pre)[0]
        host = ((1.0 - f) * t.host_overhead_graph_s + f * t.host_overhead_eager_s) * 1e3
        return (total - host) / t.pp + host


def drain_s(terms: ShapeTerms, prompt_tokens: np.ndarray, prefix_hit_rate: float) -> np.ndarray:
    """The pipeline's drain after a prompt's last chunk (s): ``pp - 1`` stage passes of its mean
    chunk, from :func:`solver.costmodel.compute.prefill` (``(chunks + pp - 1)`` passes plus one
    host overhead per chunk); 0 at ``pp = 1``."""
    n = np.asarray(prompt_tokens, dtype=float)
    if terms.pp == 1 or not n.size:
        return np.zeros(n.shape)
    new = np.maximum(n - np.floor(n * prefix_hit_rate), 1.0)
    chunks = np.ceil(new / terms.prefill_chunk_tokens)
    total_s = prefill(terms, n, prefix_hit_rate).total_ms / 1e3
    per_pass = (total_s - chunks * terms.host_overhead_eager_s) / (chunks + terms.pp - 1)
    return (terms.pp - 1) * per_pass


@dataclass(frozen=True)
class DisaggGroup:
    """The replicas of one disaggregated deployment: both pools, all units together, and the KV
    link between them."""

    prefill: tuple[ReplicaSpec, ...]
    decode: tuple[ReplicaSpec, ...]
    kv_bytes_per_token: float
    """The whole model's KV bytes per prompt token, in the KV dtype both pools share."""
    link_gb_s: float
    """Per GPU, one direction."""
    link_latency_us: float
    parallel_gpus: int
    """GPUs whose shards move at once (``min`` of the pools' GPUs per replica)."""
    label: str = ""

    def transfer_s(self, prompt_tokens: np.ndarray) -> np.ndarray:
        """KV transfer time (s) of each prompt: the formula of
        :func:`solver.costmodel.disaggregated.kv_transfer_ms`, over an array of prompts."""
        tokens = np.asarray(prompt_tokens, dtype=float)
        return (self.link_latency_us / 1e6
                + tokens * self.kv_bytes_per_token / (self.link_gb_s * GB * self.parallel_gpus))


def simulate_disaggregated(groups: Sequence[DisaggGroup], workload: Workload, router: Router = "least-loaded",
                           slo: Slo | None = None) -> SimResult:
    """Replay ``workload`` through the prefill pools, KV transfers and decode pools of
    ``groups`` (see the module docstring); percentiles and target shares."""
    if router not in ROUTERS:
        raise InputError(f"--router: expected one of {', '.join(ROUTERS)}, got {router!r}")
    if not groups or any(not g.prefill or not g.decode for g in groups):
        raise InputError("no disaggregated replicas to simulate (each deployment needs both pools)")
    if workload.requests == 0:
        raise InputError("no requests to simulate")
    n = workload.requests
    arr = np.asarray(workload.arrival_s, dtype=float)
    isl = np.asarray(workload.input_tokens, dtype=np.int64)
    osl = np.asarray(workload.output_tokens, dtype=np.int64)

    # -- prefill pools: every request, one output token (its first), prompt KV only ----------
    pre_w = Workload(arr, isl, np.ones(n, dtype=np.int64), workload.prefix_hit_rate, workload.label)
    pre_r = _Requests(pre_w)
    kv_pre: dict[int, list[float]] = {}
    pre_reps: list[_Replica] = []
    owner: list[int] = []  # group of each prefill replica
    for gi, g in enumerate(groups):
        for s in g.prefill:
            if id(s) not in kv_pre:
                kv_pre[id(s)] = s.kv_bytes(isl + 1).tolist()
            pre_reps.append(_Replica(s, pre_r, kv_pre[id(s)]))
            owner.append(gi)
    where = route(pre_reps, range(n), arr.tolist(), router)
    prefilled = np.asarray(pre_r.first, dtype=float)
    pre_admit = np.asarray(pre_r.admit, dtype=float)
    group_of = np.array([owner[j] for j in where], dtype=np.int64)
    for gi, g in enumerate(groups):
        terms = g.prefill[0].terms
        sel = group_of == gi
        if terms is not None and terms.pp > 1:
            prefilled[sel] += drain_s(terms, isl[sel], workload.prefix_hit_rate)

    # -- KV transfer, then the decode pool of the same deployment ----------------------------
    ready = prefilled.copy()
    for gi, g in enumerate(groups):
        sel = group_of == gi
        ready[sel] += g.transfer_s(isl[sel])
    first = ready  # TTFT as the planner counts it: prefill done + transfer
    finish = np.where(osl <= 1, first, np.inf)  # inf: never decoded (its prompt never ran)
    dec_admit = np.where(osl <= 1, first, np.inf)
    dec_r = _Requests(Workload(ready, isl, osl, 0.0, workload.label))
    dec_r.new = [0] * n  # no prompt work: osl - 1 decode steps from admission (solver.simulate._Replica)
    dec_reps: list[_Replica] = []
    total = isl + osl
    for gi, g in enumerate(groups):
        todo = np.flatnonzero((group_of == gi) & (osl > 1) & np.isfinite(ready))
        if not todo.size:
            continue
        kv_dec: dict[int, list[float]] = {}
        reps = []
        for s in g.decode:
            if id(s) not in kv_dec:
                kv_dec[id(s)] = s.kv_bytes(total).tolist()
            reps.append(_Replica(s, dec_r, kv_dec[id(s)]))
        order = todo[np.argsort(ready[todo], kind="stable")]
        route(reps, order.tolist(), ready[order].tolist(), router)
        dec_reps += reps
        got = np.asarray(dec_r.finish, dtype=float)[order]
        finish[order] = got
        dec_admit[order] = np.asarray(dec_r.admit, dtype=float)[order]

    ttft = first - arr
    e2e = finish - arr
    with np.errstate(invalid="ignore", divide="ignore"):  # TPOT from the decode admission (see above)
        tpot = np.where(osl > 1, (finish - np.maximum(first, dec_admit)) / np.maximum(osl - 1, 1), np.nan)
    wait = (pre_admit - arr) + np.where(osl > 1, dec_admit - ready, 0.0)
    reps_all = pre_reps + dec_reps
    span = max(max(r.now for r in reps_all) - arr[0], 1e-12)
    busy = sum(r.busy_s for r in reps_all)
    dec_busy = sum(r.busy_s for r in dec_reps)
    n_reps = sum(len(g.prefill) + len(g.decode) for g in groups)
    return SimResult(
        label=workload.label, router=router, replicas=n_reps, requests=n, offered_rps=workload.mean_rps,
        ttft=Percentiles.of(ttft), tpot=Percentiles.of(tpot), e2e=Percentiles.of(e2e),
        queue_wait=Percentiles.of(wait), p_wait_for_slot=float(np.mean(pre_r.queued_full)),
        mean_batch=sum(r.batch_time for r in dec_reps) / dec_busy if dec_busy > 0 else 0.0,
        utilisation=busy / (n_reps * span),
        unservable=int(np.sum(np.isinf(pre_admit) | np.isinf(dec_admit))),
        steps=sum(r.step for r in reps_all),
        targets=_checks(slo, {"ttft": ttft, "tpot": tpot, "e2e": e2e}),
        ttft_s=ttft, tpot_s=tpot, e2e_s=e2e, wait_s=wait,
    )


def _pool(d: dict[str, Any], role: str) -> dict[str, Any]:
    pools = d.get("pools")
    got = [p for p in pools if isinstance(p, dict) and p.get("role") == role] if isinstance(pools, (list, tuple)) else []
    if len(got) != 1:
        raise ValueError(f"pools: expected one {role} pool")
    return got[0]


def plan_groups(plan_deps: Sequence[tuple[int, dict[str, Any]]], cat: Catalog, max_context: int,
                demand: ModelDemand | None = None) -> list[DisaggGroup]:
    """The :class:`DisaggGroup` of each disaggregated deployment ``(index, deployment)`` of a plan
    (``fleetplan solve --json``), with step-time tables up to ``max_context`` tokens, each on the
    engine it was planned with (:func:`~solver.simulate.plan_engine`); ``demand``: the problem's
    entry for the model, whose LoRA adapters both pools carry."""
    out = []
    for k, d in plan_deps:
        try:
            units = int(d["replicas"])
            if units < 0:
                raise ValueError("replicas must be >= 0")
            if d.get("speculative") or d.get("partition"):
                raise ValueError("a disaggregated unit with speculative decoding or a GPU share is not "
                                 "replayed (the planner offers none)")
            if demand is not None and demand.lora is not None and demand.model != str(d["model_id"]):
                raise ValueError(f"model_id {d['model_id']!r} is not the problem's {demand.model!r} "
                                 "(its LoRA adapters are sized for that model)")
            specs: dict[str, tuple[ReplicaSpec, int, int]] = {}
            kv_bytes = 0.0
            systems: dict[str, str] = {}
            for role in ("prefill", "decode"):
                p = _pool(d, role)
                tp, pp, ep, batch, per_unit = (int(p[f]) for f in ("tp", "pp", "ep", "max_batch", "replicas"))
                if min(tp, pp, ep, batch, per_unit) < 1:
                    raise ValueError(f"pools: {role}: tp, pp, ep, max_batch and replicas must be >= 1")
                # a pool's own node shape and format (a mixed unit's prefill pool), else the deployment's
                acc, sid, quant = (str(p.get(f) or d[f]) for f in ("accelerator", "system", "quant"))
                systems[role] = sid
                shape = Shape(str(d["model_id"]), acc, sid, quant, str(d["kv_dtype"]), tp, pp, ep)
                terms = shape_terms(cat, shape, plan_engine(d))
                kv_bytes = terms.kv_bytes_per_token_model
                if demand is not None and demand.lora is not None:
                    terms = demand_terms(cat, demand, terms)
                label = f"{acc} {quant} {role} TP{tp} PP{pp} B{batch}"
                timer = (PrefillPoolTimer if role == "prefill" else CostModelStepTimer)(terms, batch, max_context)
                specs[role] = (ReplicaSpec(timer, batch, kv_budget_bytes_gpu(terms), terms, label), per_unit,
                               shape.gpus)
            system, pre_system = cat.system(systems["decode"]), cat.system(systems["prefill"])
        except (TypeError, ValueError, KeyError) as exc:  # InputError is a ValueError
            detail = exc.detail if isinstance(exc, InputError) else str(exc)
            raise InputError(f"PLAN: deployments[{k}]: {detail}") from None
        (ps, pn, pg), (ds, dn, dg) = specs["prefill"], specs["decode"]
        gb_s, lat_us = (unit_link(system, pn * pg + dn * dg) if pre_system.id == system.id
                        else nic_link(pre_system, system))  # two node shapes: the NIC
        out.append(DisaggGroup((ps,) * (pn * units), (ds,) * (dn * units), kv_bytes, gb_s, lat_us,
                               min(pg, dg), f"{units} unit(s) of {pn} x {ps.label} + {dn} x {ds.label}"))
    return out


def replay_disaggregated(deps: Sequence[tuple[int, dict[str, Any]]], cat: Catalog, workload: Workload,
                         router: Router = "least-loaded", slo: Slo | None = None,
                         demand: ModelDemand | None = None) -> SimResult:
    """Simulate ``workload`` on a plan's disaggregated deployments of one model (``demand``: the
    problem's entry for it, whose LoRA adapters both pools carry)."""
    longest = int(np.max(np.asarray(workload.input_tokens) + np.asarray(workload.output_tokens)))
    return simulate_disaggregated(plan_groups(deps, cat, longest, demand), workload, router, slo)


def split_by_share(workload: Workload, share: float) -> np.ndarray:
    """Which requests (in arrival order) go to the share ``share`` in [0, 1] of a model's
    capacity: every request whose running count ``floor((k + 1) x share)`` steps up (a
    deterministic weighted round robin, as the planner splits load in proportion to capacity)."""
    k = np.arange(workload.requests, dtype=float)
    return np.floor((k + 1) * share + 1e-9) > np.floor(k * share + 1e-9)


def merge_results(parts: Sequence[tuple[np.ndarray, SimResult]], workload: Workload, slo: Slo | None) -> SimResult:
    """One result of a workload replayed in parts (``(selected requests, result)``): the
    per-request latencies put back in arrival order and the percentiles recomputed; shares
    and means weighted by requests, utilisation by replicas."""
    n = workload.requests
    arrays = {k: np.full(n, np.nan) for k in ("ttft", "tpot", "e2e", "wait")}
    for sel, r in parts:
        for k in arrays:
            arrays[k][sel] = getattr(r, f"{k}_s")
    reps = sum(r.replicas for _, r in parts)
    label = " + ".join(r.label for _, r in parts if r.label) or workload.label
    return SimResult(
        label=workload.label or label, router=parts[0][1].router, replicas=reps, requests=n,
        offered_rps=workload.mean_rps, ttft=Percentiles.of(arrays["ttft"]), tpot=Percentiles.of(arrays["tpot"]),
        e2e=Percentiles.of(arrays["e2e"]), queue_wait=Percentiles.of(arrays["wait"]),
        p_wait_for_slot=sum(r.p_wait_for_slot * r.requests for _, r in parts) / n,
        mean_batch=sum(r.mean_batch * r.requests for _, r in parts) / n,
        utilisation=sum(r.utilisation * r.replicas for _, r in parts) / max(reps, 1),
        unservable=sum(r.unservable for _, r in parts), steps=sum(r.steps for _, r in parts),
        targets=_checks(slo, {"ttft": arrays["ttft"], "tpot": arrays["tpot"], "e2e": arrays["e2e"]}),
        ttft_s=arrays["ttft"], tpot_s=arrays["tpot"], e2e_s=arrays["e2e"], wait_s=arrays["wait"],
    )


def part(workload: Workload, sel: np.ndarray) -> Workload:
    """The requests ``sel`` of a workload."""
    return Workload(np.asarray(workload.arrival_s)[sel], np.asarray(workload.input_tokens)[sel],
                    np.asarray(workload.output_tokens)[sel], workload.prefix_hit_rate, workload.label)
