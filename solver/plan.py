"""Typed results of the optimiser: status, deployments, plan. Plain data any stage may read."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any

from solver.identity import ShapeIdentity

if TYPE_CHECKING:
    from solver.costmodel.shape import Shape


class SolveStatus(str, Enum):
    OPTIMAL = "optimal"
    FEASIBLE = "feasible"
    """A plan within the time limit, not proven optimal (see ``gap``)."""
    INFEASIBLE = "infeasible"
    UNKNOWN = "unknown"
    """The time limit ran out before any plan was found; says nothing about feasibility."""

    @property
    def has_plan(self) -> bool:
        return self in (SolveStatus.OPTIMAL, SolveStatus.FEASIBLE)


class Termination(str, Enum):
    """Why a search stopped: what its answer proves. Only a finished search proves anything;
    running out of time without a plan says nothing about whether one exists."""

    OPTIMAL = "optimal"
    FEASIBLE_AT_TIME_LIMIT = "feasible at time limit"
    """A plan, not proven optimal: the time limit stopped the search (see the gap)."""
    INFEASIBLE_PROVEN = "infeasible proven"
    UNKNOWN_AT_TIME_LIMIT = "unknown at time limit"
    """The time limit stopped the search before it found a plan or proved there is none."""

    @property
    def status(self) -> SolveStatus:
        """The plan status this termination gives."""
        return {Termination.OPTIMAL: SolveStatus.OPTIMAL,
                Termination.FEASIBLE_AT_TIME_LIMIT: SolveStatus.FEASIBLE,
                Termination.INFEASIBLE_PROVEN: SolveStatus.INFEASIBLE}.get(self, SolveStatus.UNKNOWN)


@dataclass(frozen=True)
class Pool:
    """One pool of a disaggregated deployment: ``replicas`` replicas of this parallelism per
    unit, in the deployment's KV dtype, on its own accelerator, system and format (the decode
    pool on the deployment's)."""

    role: str
    """``prefill`` or ``decode``."""
    tp: int
    pp: int
    ep: int
    replicas: int
    """Replicas of this pool in one unit (the deployment's ``replicas`` counts units)."""
    gpus_per_replica: int
    max_batch: int
    """Decode: sequences per replica; prefill: prompts in flight (one per attention rank)."""
    capacity_rps_per_replica: float
    """Requests/s one replica of the pool serves within the targets."""
    load_rps: float = 0.0
    """Planned requests/s per replica of the pool."""
    ttft_p99_ms: float | None = None
    """Prefill pool: TTFT at the planned load (queue + prefill + KV transfer)."""
    tpot_p99_ms: float | None = None
    """Decode pool: TPOT (no prompt work in its steps)."""
    accelerator: str | None = None
    """The pool's accelerator, system and format: the deployment's for the decode pool; the
    prefill pool's may be another node shape (a mixed unit, the KV moving over the NIC). None:
    the deployment's (plans written before pools named them)."""
    system: str | None = None
    quant: str | None = None


@dataclass(frozen=True)
class Deployment(ShapeIdentity):
    """Replicas of one configuration of one model."""

    model: str
    """Name of the model entry in the problem (not the catalog id)."""
    shape: "Shape"
    """The deployment identity (catalog model id, accelerator, system, quant, KV dtype,
    TP/PP/EP), the candidate's; with ``max_batch`` the configuration."""
    max_batch: int
    replicas: int
    total_gpus: int
    """GPUs of all replicas together."""
    gpus_per_replica: int
    """GPUs of one replica (one unit, when disaggregated)."""
    total_capacity_rps: float
    """Requests/s all replicas together serve within the targets."""
    load_rps: float
    """Share of the model's load (peak x (1 + headroom)) routed here, proportional to capacity."""
    ttft_p99_ms: float
    tpot_p99_ms: float
    e2e_p99_ms: float
    """Percentile latencies at the planned load share (target percentiles; p99 by default)."""
    cost_usd_per_hour: float
    usd_per_gpu_hour: float
    price_id: str
    stated_error_pct: float | None = None
    """Stated throughput error of the accelerator family, %: wider where the family was never
    measured (catalogs/efficiency.yaml ``measured: false``)."""
    serving_mode: str = "aggregated"
    """``aggregated``: prefill and decode share every replica; ``disaggregated``: each replica
    is a unit of a prefill pool and a decode pool (``pools``), the KV moving between them."""
    speculative: dict[str, Any] | None = None
    """Speculative decoding when the configuration uses it: draft (catalog id or ``mtp``),
    acceptance_rate, draft_tokens and expected_tokens_per_step; ``None``: plain decoding."""
    partition: str | None = None
    """The GPU share each replica runs on (``mig 1g.10gb``: a MIG instance; ``shared 1/4``: one of
    4 co-located replicas, time-sliced); ``None``: whole GPUs. On a share, ``total_gpus`` is the whole
    GPUs its replicas fill alone (``total_gpus = ceil(replicas / replicas_per_gpu)``); the plan's systems count
    GPUs shared with other models once, and ``cost_usd_per_hour`` is the replicas' share of them."""
    replicas_per_gpu: int = 1
    """Replicas of this share one GPU holds (1: whole GPUs)."""
    pools: tuple[Pool, ...] = ()
    """Disaggregated: the prefill and the decode pool of one unit (``replicas`` units; the
    top-level tp/pp/ep/max_batch are the decode pool's, ``gpus_per_replica`` the unit's)."""
    kv_transfer_ms: float | None = None
    """Disaggregated: the KV transfer of the TTFT-percentile prompt between the pools (ms)."""
    kv_link: str | None = None
    """Disaggregated: ``scale-up`` (the unit sits in one node) or ``nic``."""
    engine: str | None = None
    """The serving engine whose terms planned it (the model entry's ``engine``, else the
    catalog's default); replay and verification read it. None: not recorded (older plans)."""

    def pool(self, role: str) -> Pool | None:
        """The pool of ``role`` (None for an aggregated deployment)."""
        return next((p for p in self.pools if p.role == role), None)

    @property
    def capacity_rps_per_replica(self) -> float:
        """Requests/s one replica serves within the targets."""
        return self.total_capacity_rps / self.replicas

    def to_dict(self) -> dict[str, Any]:
        """Plain data with the identity as flat keys (``model_id``, ``accelerator``, ...)."""
        rest = asdict(self)
        del rest["model"], rest["shape"]
        out = {"model": self.model, **identity_dict(self.shape), **rest}
        out["gpu_share_per_replica"] = 1.0 / self.replicas_per_gpu
        return out


def router_weights(deployments: tuple[Deployment, ...]) -> list[float | None]:
    """Per deployment, the share of its model's requests each of its replicas receives: its
    planned load per replica over the model's load (``load_rps / replicas / sum of the model's
    load_rps``; the model's replicas' shares sum to 1). What a gateway with static weights
    needs to split load as the plan assumed; None where the model carries no load."""
    total: dict[str, float] = {}
    for d in deployments:
        total[d.model] = total.get(d.model, 0.0) + d.load_rps
    return [d.load_rps / d.replicas / total[d.model] if total[d.model] > 0 and d.replicas > 0 else None
            for d in deployments]


IDENTITY_KEYS = ("model_id", "accelerator", "system", "quant", "kv_dtype", "tp", "pp", "ep", "moe_tp")
"""A deployment's identity as flat plan-JSON keys (``model_id`` is ``Shape.model``)."""


def identity_dict(shape: "Shape") -> dict[str, Any]:
    """``shape`` as the flat plan-JSON keys :data:`IDENTITY_KEYS`."""
    return dict(zip(IDENTITY_KEYS, (shape.model, shape.accelerator, shape.system, shape.quant,
                                     shape.kv_dtype, shape.tp, shape.pp, shape.ep, shape.moe_tp)))


RENAMED_KEYS = {"total_gpus": "gpus", "total_capacity_rps": "capacity_rps"}
"""Deployment keys of plan JSON and the names plans saved by earlier versions gave them."""


def saved_deployment(d: dict[str, Any]) -> dict[str, Any]:
    """One deployment of a saved plan's JSON under this version's keys: a plan saved before the
    per-replica/total rename has ``gpus`` and ``capacity_rps`` (totals) for ``total_gpus`` and
    ``total_capacity_rps``, so older plans still load."""
    out = dict(d)
    for new, old in RENAMED_KEYS.items():
        if new not in out and old in out:
            out[new] = out.pop(old)
    return out


@dataclass(frozen=True)
class SystemUse:
    """GPUs provisioned on one node shape (whole nodes when the fleet asks for them)."""

    accelerator: str
    system: str
    gpus_used: int
    gpus_provisioned: int
    nodes: int
    cost_usd_per_hour: float
    power_kw: float
    gpus_owned: int = 0
    """Of the provisioned GPUs, the fleet's own (``fleet.owned``); the rest are rented."""
    owned_usd_per_gpu_hour: float = 0.0
    """What one owned GPU costs per hour in this plan (``fleet.owned_usd_per_gpu_hour``)."""

    @property
    def gpus_rented(self) -> int:
        return self.gpus_provisioned - self.gpus_owned

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "gpus_rented": self.gpus_rented}


@dataclass(frozen=True)
class Plan:
    problem: str
    status: SolveStatus
    cost_usd_per_hour: float | None
    bound_usd_per_hour: float | None
    gap: float | None
    solve_seconds: float
    deployments: tuple[Deployment, ...] = ()
    systems: tuple[SystemUse, ...] = ()
    explanation: tuple[str, ...] = ()
    """Infeasible: one sentence per conflicting constraint family."""
    conflict: tuple[str, ...] = ()
    """Infeasible: the names of the conflicting families (e.g. ``tpot[chat]``)."""
    candidates: dict[str, int] = field(default_factory=dict)
    """Candidates per model given to the solver (after pruning)."""
    pruned: dict[str, int] = field(default_factory=dict)
    unit_costs: Any = None
    """:class:`solver.unitcost.PlanUnitCosts`: $/M input, output, blended tokens and $/1k
    requests at peak, for the fleet and per model; ``None`` without a plan."""
    guardrails: tuple[dict[str, Any], ...] = ()
    """Per planned model: request/queue limits, warm replicas, lead time, alerts (solver.guardrails)."""
    termination: Termination | None = None
    """Why the solve stopped (None: not from a solve, e.g. a hand-built plan)."""
    notes: tuple[str, ...] = ()
    """Sentences about serving modes (speculative decoding used or not, per model offering it)."""
    applications: tuple[dict[str, Any], ...] = ()
    """Per application path (:func:`solver.chains.path_rows`): stages, their e2e p99 in this
    plan, the path's latency and its budget; empty without applications."""
    conflict_termination: Termination | None = None
    """Infeasible: whether the conflict search proved ``conflict`` (``INFEASIBLE_PROVEN``) or ran
    out of time (``UNKNOWN_AT_TIME_LIMIT``: ``conflict`` is then empty or not minimal)."""
    provider: str | None = None
    """``one_provider: fleet`` without a named provider: the provider (key) every rented GPU
    comes from, chosen by the solve; None otherwise."""

    @property
    def gpus(self) -> int:
        return sum(s.gpus_provisioned for s in self.systems)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "problem": self.problem,
            "status": self.status.value,
            "termination": self.termination.value if self.termination else None,
            "cost_usd_per_hour": self.cost_usd_per_hour,
            "bound_usd_per_hour": self.bound_usd_per_hour,
            "gap": self.gap,
            "solve_seconds": self.solve_seconds,
            "gpus": self.gpus,
            "deployments": [{**d.to_dict(), "router_weight": w}
                            for d, w in zip(self.deployments, router_weights(self.deployments))],
            "systems": [s.to_dict() for s in self.systems],
            "candidates": dict(self.candidates),
            "pruned": dict(self.pruned),
        }
        if self.unit_costs is not None:
            out["unit_costs"] = self.unit_costs.to_dict()
        if self.status == SolveStatus.INFEASIBLE:
            out["explanation"] = list(self.explanation)
            out["conflict"] = list(self.conflict)
            out["conflict_termination"] = (self.conflict_termination.value
                                           if self.conflict_termination else None)
        if self.guardrails:
            out["guardrails"] = list(self.guardrails)
        if self.notes:
            out["notes"] = list(self.notes)
        if self.applications:
            out["applications"] = list(self.applications)
        if self.provider is not None:
            out["provider"] = self.provider
        return out
