"""Problem files (``problems/*.yaml``): what a user asks fleetplan to plan.

Units are in field names: ``_rps`` requests per second, ``_ms`` milliseconds, ``_usd_per_hour``,
``_kw``. Token lengths are given as percentiles (p50/p90/p99) or as a histogram from which the
percentiles are read. Catalog ids are checked against the catalog with "closest id" hints.

Numbers are strict and finite (``true`` is not 1, ``"5"`` is not 5, ``.inf``/``.nan`` are
refused) and bounded by the ranges below, inside which the integer scaling of
:mod:`solver.scaling` is exact enough and CP-SAT's 64-bit arithmetic cannot overflow. The
ranges are stated in the README ("Reliability and limits").
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from solver.catalog import Catalog, load_catalog
from solver.errors import InputError, unknown_id
from solver.loading import read_yaml, validate
from solver.traffic import expand_trace_traffic

MAX_RPS = 1e7
"""Largest peak rate, requests/s (demand is held in milli-requests/s; ten million req/s is
beyond any single fleet). Rates below 0.001 req/s are planned as 0.001 (rounded up)."""
MAX_TOKENS = 10_000_000
"""Largest token length (prompt or output) of one request."""
MAX_MS = 1e7
"""Largest latency target, milliseconds (about 2.8 hours)."""
MAX_USD_PER_HOUR = 1e9
MAX_KW = 1e9
MAX_GPUS = 10_000_000
"""Largest inventory of one accelerator (and ``capacity --gpus``)."""
MAX_WEIGHT = 1e12
"""Largest histogram weight (weights are relative; this keeps their sum finite)."""
MAX_BINS = 10_000
HOURS_PER_DAY = 24
HOURS_PER_WEEK = 168
"""Lengths of an hourly demand profile (``traffic.hourly_rps``): a day or a week."""
MAX_LENGTH_PERCENTILE = 99.0
"""Token lengths given as p50/p90/p99 say nothing above p99: targets above it need a histogram."""
DEFAULT_MIN_REPLICAS = 2
"""Replicas per model when a model sets no ``min_replicas``: a production service keeps serving
while one replica restarts (a router on one GPU is a single point of failure)."""
DEFAULT_MAX_QUALITY_LOSS_POINTS = 1.0
"""Quality guard when a model sets no ``max_quality_loss_points``: formats whose published loss
exceeds this many points are used only when the problem allows them (the model's limit, the
format listed in ``allowed_quantizations``, or the model's own released format)."""

_MODEL_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$"
PosInt = Annotated[int, Field(gt=0)]
Tokens = Annotated[int, Field(gt=0, le=MAX_TOKENS)]
Percentile = Annotated[float, Field(gt=0, lt=100)]
Name = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]*$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class HistogramBin(_Strict):
    tokens: Tokens
    weight: Annotated[float, Field(gt=0, le=MAX_WEIGHT)]


class TokenLengths(_Strict):
    """Token lengths of prompts or outputs: p50/p90/p99, or a histogram of (tokens, weight)."""

    p50: Tokens | None = None
    p90: Tokens | None = None
    p99: Tokens | None = None
    histogram: Annotated[list[HistogramBin], Field(max_length=MAX_BINS)] | None = None

    @model_validator(mode="after")
    def _one_form(self) -> "TokenLengths":
        pcts = (self.p50, self.p90, self.p99)
        if self.histogram is not None:
            if any(p is not None for p in pcts):
                raise ValueError("give either p50/p90/p99 or histogram, not both")
            if not self.histogram:
                raise ValueError("histogram is empty")
            return self
        if any(p is None for p in pcts):
            raise ValueError("needs p50, p90 and p99 (or a histogram)")
        if not (self.p50 <= self.p90 <= self.p99):  # type: ignore[operator]
            raise ValueError("percentiles must satisfy p50 <= p90 <= p99")
        return self

    def percentile(self, q: float) -> int:
        """Token length at percentile ``q`` (0-100): histogram quantile, or the stated point
        (between stated points, the next higher one, which is conservative)."""
        if self.histogram is not None:
            bins = sorted(self.histogram, key=lambda b: b.tokens)
            total = sum(b.weight for b in bins)
            acc = 0.0
            for b in bins:
                acc += b.weight
                if acc / total * 100 >= q - 1e-9:
                    return b.tokens
            return bins[-1].tokens
        for point, value in ((50, self.p50), (90, self.p90), (99, self.p99)):
            if q <= point:
                return int(value)  # type: ignore[arg-type]
        return int(self.p99)  # type: ignore[arg-type]

    def mean(self) -> float:
        """Mean length: histogram mean, or a trapezoid estimate from the three percentiles."""
        if self.histogram is not None:
            total = sum(b.weight for b in self.histogram)
            return sum(b.tokens * b.weight for b in self.histogram) / total
        p50, p90, p99 = float(self.p50), float(self.p90), float(self.p99)  # type: ignore[arg-type]
        return 0.5 * p50 + 0.4 * (p50 + p90) / 2 + 0.09 * (p90 + p99) / 2 + 0.01 * p99


class Traffic(_Strict):
    peak_rps: Annotated[float, Field(gt=0, le=MAX_RPS, description="peak requests per second")] | None = None
    """Required unless the model is a stage of an application; once the problem is validated it
    holds the model's total: its own peak plus every application's load on it
    (:mod:`solver.chains`)."""
    input_tokens: TokenLengths
    output_tokens: TokenLengths
    prefix_cache_hit_rate: Annotated[float, Field(ge=0, lt=1)] = 0.0
    hourly_rps: list[float] | None = Field(
        default=None, description="mean requests/s of each hour of a day (24 values) or a week (168), "
        "hour 0 first; sets peak_rps to their maximum when peak_rps is not given")
    """Demand over time (:mod:`solver.demand`): the purchasing schedule sizes every hour for its
    rate times the peak's burst factor (``peak_rps`` / max of these)."""
    shared_prefix_tokens: Annotated[int, Field(ge=0, le=MAX_TOKENS)] = Field(
        default=0, description="cached shared prefix (system prompt, few-shot block) whose KV each "
        "replica holds once; 0: none reserved")


    @field_validator("hourly_rps")
    @classmethod
    def _hourly_profile(cls, v: list[float] | None) -> list[float] | None:
        if v is None:
            return v
        if len(v) not in (HOURS_PER_DAY, HOURS_PER_WEEK):
            raise ValueError(f"needs {HOURS_PER_DAY} (a day) or {HOURS_PER_WEEK} (a week) hourly rates, "
                             f"got {len(v)}")
        bad = next((i for i, x in enumerate(v) if not 0 <= x <= MAX_RPS), None)
        if bad is not None:
            raise ValueError(f"hour {bad}: rate {v[bad]:g} is outside [0, {MAX_RPS:g}] requests/s")
        if max(v) <= 0:
            raise ValueError("every hourly rate is 0 (no demand to plan for)")
        return v

    @model_validator(mode="after")
    def _peak_from_hours(self) -> "Traffic":
        """``peak_rps`` defaults to the busiest hour and may not be below it."""
        if self.hourly_rps is None:
            return self
        top = max(self.hourly_rps)
        if self.peak_rps is None:
            object.__setattr__(self, "peak_rps", top)
        elif self.peak_rps < top * (1 - 1e-12):
            raise ValueError(f"peak_rps {self.peak_rps:g} is below the busiest hour of hourly_rps ({top:g}); "
                             "omit peak_rps to use the busiest hour")
        return self


class LatencyTarget(_Strict):
    max_ms: Annotated[float, Field(gt=0, le=MAX_MS)]
    percentile: Percentile = 99.0


class Slo(_Strict):
    """Latency targets; at least one of them. TPOT is the time per output token (ITL)."""

    ttft: LatencyTarget | None = None
    tpot: LatencyTarget | None = None
    e2e: LatencyTarget | None = None

    def percentile(self, axis: str) -> float:
        """The percentile a latency on ``axis`` (ttft, tpot, e2e) is read at: its target's,
        99 where the axis has no target."""
        target = getattr(self, axis)
        return float(target.percentile) if target is not None else 99.0

    @model_validator(mode="after")
    def _consistent(self) -> "Slo":
        if self.ttft is None and self.tpot is None and self.e2e is None:
            raise ValueError("needs at least one of ttft, tpot, e2e")
        if self.tpot and self.e2e and self.tpot.max_ms > self.e2e.max_ms:
            raise ValueError(
                f"tpot.max_ms ({self.tpot.max_ms:g}) exceeds e2e.max_ms ({self.e2e.max_ms:g})"
            )
        if self.ttft and self.e2e and self.ttft.max_ms > self.e2e.max_ms:
            raise ValueError(
                f"ttft.max_ms ({self.ttft.max_ms:g}) exceeds e2e.max_ms ({self.e2e.max_ms:g})"
            )
        return self


class Speculative(_Strict):
    """Speculative decoding offered to the search: a draft (catalog model id, or ``mtp`` for the
    target's published multi-token-prediction module), the acceptance rate per drafted token and
    the draft length. The search adds candidates with it and uses them where they are cheaper."""

    draft: Annotated[str, Field(min_length=1, max_length=200)]
    acceptance_rate: Annotated[float, Field(ge=0, le=1)]
    draft_tokens: Annotated[int, Field(ge=1, le=16)] = 3


class Lora(_Strict):
    """LoRA adapters served on one base model (:mod:`solver.lora`): what they add per replica."""

    adapters: Annotated[list[Name], Field(min_length=1, max_length=100_000)]
    """Adapter names (one per tenant or task)."""
    rank: Annotated[int, Field(ge=1, le=4096)]
    resident: Annotated[int, Field(ge=1, le=100_000)] | None = None
    """Adapters one replica holds in GPU memory at once (default: all of them)."""
    target_modules: Annotated[list[Literal["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                           "down_proj"]], Field(min_length=1, max_length=7)] = [
        "q_proj", "k_proj", "v_proj", "o_proj"]
    bytes_per_param: Literal[1, 2, 4] = 2

    @model_validator(mode="after")
    def _resident_within_adapters(self) -> "Lora":
        if self.resident is not None and self.resident > len(self.adapters):
            raise ValueError(f"resident: {self.resident} exceeds the {len(self.adapters)} adapter(s) named")
        if len(set(self.target_modules)) != len(self.target_modules):
            raise ValueError("target_modules: a module is listed twice")
        if self.resident is None:
            object.__setattr__(self, "resident", len(self.adapters))
        return self


class GpuSharing(_Strict):
    """GPU shares a model's replicas may run on when one replica leaves most of a GPU idle
    (:mod:`solver.costmodel.partition`): ``colocate`` lists replicas per GPU by memory fraction
    (time-sliced; 2..8), ``mig`` maps an NVIDIA accelerator id to the MIG profiles of its
    catalog ``mig_profiles`` the search may use. Absent: whole GPUs only."""

    colocate: Annotated[list[Annotated[int, Field(ge=2, le=8)]], Field(max_length=7)] = []
    mig: dict[str, Annotated[list[Annotated[str, Field(min_length=1, max_length=32)]],
                             Field(min_length=1, max_length=16)]] = {}

    @model_validator(mode="after")
    def _something(self) -> "GpuSharing":
        if not self.colocate and not self.mig:
            raise ValueError("gpu_sharing needs colocate or mig (omit it for whole GPUs only)")
        if len(set(self.colocate)) != len(self.colocate):
            raise ValueError("colocate: a count is listed twice")
        return self


DEFAULT_SERVING_MODES: tuple[str, ...] = ("aggregated",)
"""What a model entry without ``serving_modes`` may be planned as. Aggregated only: offering
disaggregated units too made candidate tables 1.5-2x slower to build and changed no bundled
problem's plan (README, "Serving modes"); ``serving_modes: [aggregated, disaggregated]`` lets
the search choose per model."""


class ModelDemand(_Strict):
    """One model to serve, with its traffic, targets and allowed options."""

    name: Annotated[str, Field(max_length=64, pattern=_MODEL_NAME)]
    model: Annotated[str, Field(max_length=200)]
    traffic: Traffic
    slo: Slo
    allowed_accelerators: list[str] | None = Field(default=None, description="default: all")
    allowed_quantizations: list[str] | None = Field(default=None, description="default: all")
    allowed_kv_dtypes: list[str] | None = None
    max_quality_loss_points: Annotated[float, Field(ge=0, le=100)] | None = None
    headroom: Annotated[float, Field(ge=0, le=10)] = 0.2
    engine: str | None = Field(
        default=None, description="serving engine (catalogs/engines.yaml id); default: the catalog's default_engine"
    )
    speculative: Speculative | None = None
    min_replicas: Annotated[int, Field(ge=1, le=MAX_GPUS)] = DEFAULT_MIN_REPLICAS
    """Fewest replicas of the model (default 2: a production service survives one replica's
    restart; set 1 for a test or batch service)."""
    redundancy: Literal["none", "n+1"] = "none"
    """``n+1``: the targets hold with any one replica down (capacity of the others covers the load)."""
    lora: Lora | None = None
    """LoRA adapters this model entry serves (memory and per-token work per replica)."""
    gpu_sharing: GpuSharing | None = None
    """Co-located replicas / MIG instances the search may use for this model (default: none)."""
    serving_modes: list[Literal["aggregated", "disaggregated"]] = Field(
        default_factory=lambda: list(DEFAULT_SERVING_MODES),
        description="serving modes the search may plan (see the README, 'Serving modes')")
    """``aggregated``: prefill and decode on every replica; ``disaggregated``: units of a
    prefill and a decode pool (:mod:`solver.disagg`)."""
    application_rps: Annotated[float, Field(ge=0, le=MAX_RPS)] = 0.0
    """Set by the problem: the part of ``traffic.peak_rps`` that applications send (requests/s);
    kept so that validating a dumped problem again does not count it twice."""

    @model_validator(mode="after")
    def _serving_modes_listed_once(self) -> "ModelDemand":
        if not self.serving_modes:
            raise ValueError("serving_modes: name at least one of aggregated, disaggregated")
        if len(set(self.serving_modes)) != len(self.serving_modes):
            raise ValueError("serving_modes: a mode is listed twice")
        return self

    @model_validator(mode="after")
    def _lengths_cover_percentiles(self) -> "ModelDemand":
        """A target above p99 needs lengths above p99, which only a histogram gives."""
        for name in ("ttft", "tpot", "e2e"):
            target = getattr(self.slo, name)
            if target is None or target.percentile <= MAX_LENGTH_PERCENTILE:
                continue
            for which in ("input_tokens", "output_tokens"):
                if getattr(self.traffic, which).histogram is None:
                    raise ValueError(
                        f"slo.{name}.percentile {target.percentile:g} is above p99, the highest "
                        f"length percentile traffic.{which} gives; give {which} as a histogram "
                        f"to plan above p99")
        return self

    def length_percentile(self) -> float:
        """The highest percentile of token lengths the planner reads (99, or a higher target's)."""
        return max([MAX_LENGTH_PERCENTILE] + [t.percentile for t in (self.slo.ttft, self.slo.tpot,
                                                                     self.slo.e2e) if t is not None])

    def quality_allowed(self, quant: str, loss_points: float, native: str) -> bool:
        """Whether a format with this published loss may serve the model: within
        ``max_quality_loss_points`` when set; else within the default guard
        (``DEFAULT_MAX_QUALITY_LOSS_POINTS``) unless the format is the model's released one or
        listed in ``allowed_quantizations``."""
        if self.max_quality_loss_points is not None:
            return loss_points <= self.max_quality_loss_points + 1e-12
        if quant == native or (self.allowed_quantizations is not None and quant in self.allowed_quantizations):
            return True
        return loss_points <= DEFAULT_MAX_QUALITY_LOSS_POINTS + 1e-12


class Fleet(_Strict):
    """Shared constraints. Inventory maps accelerator id -> GPUs available (absent: unlimited)."""

    inventory: dict[str, Annotated[int, Field(ge=0, le=MAX_GPUS)]] | None = None
    owned: dict[str, Annotated[int, Field(ge=0, le=MAX_GPUS)]] | None = None
    """GPUs the fleet owns, per accelerator: used before renting, at ``owned_usd_per_gpu_hour``.
    ``inventory`` stays a limit on all GPUs of an accelerator (owned and rented together)."""
    owned_usd_per_gpu_hour: Annotated[float, Field(ge=0, le=MAX_USD_PER_HOUR)] = 0.0
    """Hourly cost of an owned GPU in use (default 0: zero marginal cost, the hardware is paid)."""
    one_provider: bool | Literal["accelerator", "fleet"] = False
    """Each accelerator rented from one provider (its cheapest row for ``pricing``). In a
    purchasing schedule (:mod:`solver.purchasing`): ``true`` or ``accelerator`` keeps every tier
    (reserved, on-demand, spot) of an accelerator with one provider; ``fleet`` keeps the whole
    fleet with one provider."""
    budget_usd_per_hour: Annotated[float, Field(gt=0, le=MAX_USD_PER_HOUR)] | None = None
    power_kw: Annotated[float, Field(gt=0, le=MAX_KW)] | None = None
    pricing: Literal["on-demand", "reserved", "spot"] = "on-demand"
    provider: str | None = None
    whole_nodes: bool = False
    max_configs_per_model: Annotated[int, Field(ge=1, le=8)] = 2

    @model_validator(mode="after")
    def _non_empty(self) -> "Fleet":
        if self.inventory is not None and sum(self.inventory.values()) == 0:
            raise ValueError("inventory is empty (every count is 0)")
        return self


class Purchasing(_Strict):
    """How capacity is bought over the hours of ``traffic.hourly_rps`` (:mod:`solver.purchasing`):
    a reserved/committed base held every hour, on-demand capacity per hour and, when
    ``spot_interruption_allowance`` is set, spot capacity per hour."""

    reserved: bool = True
    """Offer the catalog's reserved/committed rows (term and discount from catalogs/prices.yaml)."""
    spot_interruption_allowance: Annotated[float, Field(ge=0, le=1)] | None = None
    """Share (0..1) of spot replicas that may be interrupted at once; spot capacity counts at
    (1 - allowance) of its throughput, the rest is the spare it implies. None: no spot."""
    min_warm_replicas: Annotated[int, Field(ge=1, le=MAX_GPUS)] | None = None
    """Non-spot replicas every model keeps in every hour (default: the model's ``min_replicas``)."""
    alternatives: Annotated[int, Field(ge=0, le=4)] = 0
    """Configurations per model offered to every hour besides the peak plan's: the model's
    candidates meeting every target on the Pareto front of cost per replica and capacity, the
    cheapest per unit of capacity first (0: each hour runs the peak plan's configurations)."""
    load_gb_s: Annotated[float, Field(gt=0, le=1e6)] | None = None
    """Weight load bandwidth, GB/s, for the scale-up lead time (default: the accelerator's host
    link from the catalog, which makes the lead time a lower bound)."""


class Edge(_Strict):
    """A call from one stage of an application to another (see :mod:`solver.chains`)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False,
                              populate_by_name=True)
    source: str = Field(alias="from")
    target: str = Field(alias="to")
    fraction: Annotated[float, Field(ge=0, le=1)] = 1.0
    """Share (0..1) of the requests reaching ``from`` that go on to ``to`` (router, escalation)."""
    calls: Annotated[int, Field(ge=1, le=1000)] = 1
    """Sequential requests to ``to`` per request passed on (an agent's tool calls); the stage
    after ``to`` is reached once per request, not once per call."""


class Application(_Strict):
    """A chain (DAG) of stages over the problem's models with one end-to-end latency budget."""

    name: Annotated[str, Field(max_length=64, pattern=_MODEL_NAME)]
    peak_rps: Annotated[float, Field(gt=0, le=MAX_RPS)]
    """Peak requests/s entering the application (each entry stage receives all of it)."""
    stages: Annotated[list[str], Field(min_length=1, max_length=100)]
    """Model names (``models[].name``), each at most once."""
    edges: Annotated[list[Edge], Field(max_length=1000)] = []
    e2e_budget_ms: Annotated[float, Field(gt=0, le=MAX_MS)] | None = None
    """Budget for every entry-to-exit path: sum of calls x stage e2e p99 (ms); none: load only."""
    hourly_rps: list[float] | None = None
    """Mean requests/s entering the application in each hour (24 or 168): in a purchasing
    schedule its stages' load follows them, the busiest hour carrying the load of ``peak_rps``
    (:mod:`solver.demand`); none: the peak load in every hour."""

    @field_validator("hourly_rps")
    @classmethod
    def _hourly_profile(cls, v: list[float] | None) -> list[float] | None:
        return Traffic._hourly_profile(v)  # the same rules as a model's hourly rates

    @model_validator(mode="after")
    def _peak_covers_hours(self) -> "Application":
        if self.hourly_rps is not None and self.peak_rps < max(self.hourly_rps) * (1 - 1e-12):
            raise ValueError(f"hourly_rps: the busiest hour ({max(self.hourly_rps):g}) is above peak_rps "
                             f"{self.peak_rps:g}")
        return self

    @model_validator(mode="after")
    def _a_dag_over_its_stages(self) -> "Application":
        from solver.chains import find_cycle, paths

        dup = sorted({s for s in self.stages if self.stages.count(s) > 1})
        if dup:
            raise ValueError(f"stages: listed twice: {', '.join(dup)}")
        for i, e in enumerate(self.edges):
            for end, name in (("from", e.source), ("to", e.target)):
                if name not in self.stages:
                    raise ValueError(f"edges[{i}].{end}: {name!r} is not one of the stages "
                                     f"({', '.join(self.stages)})")
        pairs = [(e.source, e.target) for e in self.edges]
        if len(set(pairs)) != len(pairs):
            raise ValueError("edges: an edge is listed twice")
        cycle = find_cycle(self)
        if cycle:
            raise ValueError(f"edges: cycle {' -> '.join(cycle)} (an application must be a DAG)")
        paths(self)  # bounded number of paths
        return self


class Problem(_Strict):
    name: Name
    description: Annotated[str, Field(max_length=10_000, pattern=r"^[^\x00-\x08\x0b-\x1f\x7f]*$")] = ""
    models: Annotated[list[ModelDemand], Field(min_length=1)]
    applications: Annotated[list[Application], Field(max_length=1000)] = []
    """Chains of models (:mod:`solver.chains`); their load adds to each stage's own traffic."""
    fleet: Fleet = Fleet()
    purchasing: Purchasing = Purchasing()
    """Buying capacity over the hours of the models' ``traffic.hourly_rps`` (``fleetplan purchase``)."""
    objective: Literal["cost"] = "cost"
    calibration: str | None = Field(
        default=None, description="calibration overlay file (`fleetplan calibrate`), relative to the problem file")
    confidence: Annotated[float, Field(gt=0, lt=1)] | None = Field(
        default=None, description="plan against the upper latency bound at this confidence (e.g. 0.9)")

    @model_validator(mode="after")
    def _unique_names(self) -> "Problem":
        names = [m.name for m in self.models]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"duplicate model name(s): {', '.join(dup)}")
        return self

    @model_validator(mode="after")
    def _application_load(self) -> "Problem":
        """Stages name models; each model's ``traffic.peak_rps`` becomes its own peak plus the
        applications' load (idempotent: ``application_rps`` records the part added)."""
        from solver.chains import application_rps

        names = [m.name for m in self.models]
        apps = [a.name for a in self.applications]
        dup = sorted({n for n in apps if apps.count(n) > 1})
        if dup:
            raise ValueError(f"applications: duplicate application name(s): {', '.join(dup)}")
        for j, a in enumerate(self.applications):
            for s in a.stages:
                if s not in names:
                    raise ValueError(f"applications[{j}:{a.name}].stages: {s!r} is not a model of the "
                                     f"problem (models: {', '.join(names)})")
        derived = application_rps(self.applications)
        models = []
        for i, m in enumerate(self.models):
            own = 0.0 if m.traffic.peak_rps is None else m.traffic.peak_rps - m.application_rps
            app = derived.get(m.name, 0.0)
            if m.traffic.peak_rps is None and app <= 0:
                raise ValueError(f"models[{i}:{m.name}].traffic.peak_rps: missing required field "
                                 "(required unless the model is a stage of an application)")
            if own < -1e-9 * max(1.0, app):
                raise ValueError(f"models[{i}:{m.name}].application_rps: {m.application_rps:g} is more "
                                 f"than traffic.peak_rps (application_rps is set by fleetplan; omit it)")
            own = max(own, 0.0)
            total = own + app
            if total > MAX_RPS:
                raise ValueError(f"models[{i}:{m.name}].traffic.peak_rps: own plus application load "
                                 f"{total:g} req/s exceeds {MAX_RPS:g}")
            if total <= 0:
                raise ValueError(f"models[{i}:{m.name}].traffic.peak_rps: no traffic (the "
                                 "applications send it none)")
            if m.traffic.peak_rps == total and m.application_rps == app:
                models.append(m)
                continue
            traffic = m.traffic.model_copy(update={"peak_rps": total})
            models.append(m.model_copy(update={"traffic": traffic, "application_rps": app}))
        object.__setattr__(self, "models", models)  # frozen: the resolved demands replace the given ones
        return self


def check_ids(problem: Problem, cat: Catalog, where: str) -> None:
    """Every catalog id in the problem must exist, the allowed lists must not be empty, and the
    longest request planned for must fit the model's context window; all problems are reported
    together, one line each."""
    errors: list[str] = []

    def bad(field: str, kind: str, name: str, valid: object) -> None:
        errors.append(f"{field}: {unknown_id(kind, name, valid)}")  # type: ignore[arg-type]

    for i, m in enumerate(problem.models):
        base = f"models[{i}:{m.name}]"
        if m.model not in cat.models:
            bad(f"{base}.model", "model", m.model, cat.models)
        for g in m.allowed_accelerators or []:
            if g not in cat.accelerators:
                bad(f"{base}.allowed_accelerators", "accelerator", g, cat.accelerators)
        for q in m.allowed_quantizations or []:
            if q not in cat.quantizations:
                bad(f"{base}.allowed_quantizations", "quantization", q, cat.quantizations)
        for kv in m.allowed_kv_dtypes or []:
            if kv not in cat.kv_dtypes:
                bad(f"{base}.allowed_kv_dtypes", "KV dtype", kv, cat.kv_dtypes)
        if m.speculative is not None and m.model in cat.models:
            errors.extend(_draft_errors(cat, m.model, m.speculative.draft, f"{base}.speculative.draft"))
        if m.engine is not None and m.engine not in cat.engines:
            bad(f"{base}.engine", "engine", m.engine, cat.engines)
        for field in ("allowed_accelerators", "allowed_quantizations", "allowed_kv_dtypes"):
            if getattr(m, field) == []:
                errors.append(f"{base}.{field}: must not be empty (omit it to allow all)")
        if m.lora is not None and m.model in cat.models:
            from solver.lora import unsupported

            why = unsupported(cat.model(m.model), m.lora)
            if why:
                errors.append(f"{base}.lora.target_modules: {why}")
        if m.gpu_sharing is not None:
            errors.extend(_mig_errors(cat, m.gpu_sharing, f"{base}.gpu_sharing.mig"))
        if m.model in cat.models:
            q = m.length_percentile()
            isl, osl = m.traffic.input_tokens.percentile(q), m.traffic.output_tokens.percentile(q)
            ctx = cat.model(m.model).max_context
            if m.traffic.shared_prefix_tokens > ctx:
                errors.append(
                    f"{base}.traffic.shared_prefix_tokens: {m.traffic.shared_prefix_tokens:,} exceeds the "
                    f"context window of {m.model} ({ctx:,} tokens)")
            if isl + osl > ctx:
                errors.append(
                    f"{base}.traffic: p{q:g} prompt + output = {isl:,} + {osl:,} = {isl + osl:,} tokens "
                    f"exceeds the context window of {m.model} ({ctx:,} tokens)")
    for g in (problem.fleet.inventory or {}):
        if g not in cat.accelerators:
            bad("fleet.inventory", "accelerator", g, cat.accelerators)
    for g in (problem.fleet.owned or {}):
        if g not in cat.accelerators:
            bad("fleet.owned", "accelerator", g, cat.accelerators)
    if errors:
        raise InputError(errors, where=where)


def _mig_errors(cat: Catalog, sharing: GpuSharing, field: str) -> list[str]:
    """Why a ``gpu_sharing.mig`` entry cannot be used: unknown accelerator, an accelerator
    without MIG (AMD, Intel, older NVIDIA parts), or a profile the accelerator lacks."""
    out = []
    for acc, profiles in sharing.mig.items():
        if acc not in cat.accelerators:
            out.append(f"{field}.{acc}: {unknown_id('accelerator', acc, cat.accelerators)}")
            continue
        a = cat.accelerator(acc)
        have = [p.name for p in a.mig_profiles]
        if not have:
            out.append(f"{field}.{acc}: {acc} ({a.vendor}) has no MIG profiles in the catalog")
            continue
        for name in profiles:
            if name not in have:
                out.append(f"{field}.{acc}: {acc} has no MIG profile {name!r}; its profiles: {', '.join(have)}")
    return out


def _draft_errors(cat: Catalog, target: str, draft: str, field: str) -> list[str]:
    """Why ``draft`` cannot draft for ``target``: unknown, no MTP module, larger than the
    target, or another tokenizer (a different vocabulary size means different token ids)."""
    t = cat.model(target)
    if draft == "mtp":
        return [] if t.mtp_layers else [
            f"{field}: {target} publishes no multi-token-prediction module (use a catalog draft model)"]
    if draft not in cat.models:
        return [f"{field}: {unknown_id('model', draft, cat.models)}"]
    dm = cat.model(draft)
    if dm.total_params_b >= t.total_params_b:
        return [f"{field}: {draft} ({dm.total_params_b:g}B) is not smaller than its target {target} "
                f"({t.total_params_b:g}B)"]
    if dm.vocab_size != t.vocab_size:
        return [f"{field}: {draft} uses another tokenizer family than {target} (vocabulary "
                f"{dm.vocab_size:,} vs {t.vocab_size:,} tokens)"]
    return []


def load_problem(path: Path | str, cat: Catalog | None = None) -> Problem:
    """Read, validate and id-check a problem file; raises ``InputError`` with file and field."""
    path = Path(path)
    data = read_yaml(path)
    if not isinstance(data, dict):
        raise InputError("expected a mapping at the top level", where=str(path))
    data = expand_trace_traffic(data, path.parent, str(path))  # traffic: {trace: FILE} -> its block
    if isinstance(data.get("calibration"), str):  # relative to the problem file, like traces
        data = {**data, "calibration": str(path.parent / data["calibration"])}
    problem = validate(Problem, data, where=str(path))
    check_ids(problem, cat or load_catalog(), where=str(path))
    return problem


def query_problem(
    model: str, rps: float, isl: tuple[int, int, int], osl: tuple[int, int, int],
    ttft_ms: float | None, tpot_ms: float | None, e2e_ms: float | None, *,
    gpus: list[str] | None = None, quants: list[str] | None = None, kv_dtypes: list[str] | None = None,
    headroom: float = 0.0, prefix_hit_rate: float = 0.0, shared_prefix_tokens: int = 0,
    pricing: str = "on-demand",
    max_configs: int = 2, max_quality_loss_points: float | None = None, cat: Catalog | None = None,
    min_replicas: int = 1, mig: list[str] | None = None, colocate: list[int] | None = None,
) -> Problem:
    """The one-model problem behind ``query`` and ``capacity``: ``isl``/``osl`` are the
    (p50, p90, p99) token lengths, targets are p99. Validated like a problem file (every error
    one line naming the flag's field); ids checked against ``cat`` when given. ``min_replicas``
    defaults to 1 here (unlike problem files): these commands size hardware for a rate, and
    ``query`` must find servable the fleet ``capacity`` promises. ``mig``/``colocate``: GPU
    sharing (:class:`GpuSharing`) from ``--mig``/``--colocate``; each MIG profile applies to
    the allowed accelerators (all, without ``gpus``) that have it."""
    sharing: dict = {}
    if mig or colocate:
        sharing = {"gpu_sharing": {**({"colocate": list(colocate)} if colocate else {}),
                                   **({"mig": flag_mig(cat or load_catalog(), mig, gpus)} if mig else {})}}
    data = {
        "name": f"query-{model}",
        "models": [{
            "name": model if re.fullmatch(_MODEL_NAME, model) and len(model) <= 64 else "query",
            "model": model,
            "traffic": {"peak_rps": rps, "prefix_cache_hit_rate": prefix_hit_rate,
                        **({"shared_prefix_tokens": shared_prefix_tokens} if shared_prefix_tokens else {}),
                        "input_tokens": dict(zip(("p50", "p90", "p99"), isl)),
                        "output_tokens": dict(zip(("p50", "p90", "p99"), osl))},
            "slo": {k: {"max_ms": v} for k, v in (("ttft", ttft_ms), ("tpot", tpot_ms), ("e2e", e2e_ms))
                    if v is not None},
            "headroom": headroom,
            "min_replicas": min_replicas,
            **({"allowed_accelerators": gpus} if gpus else {}),
            **({"allowed_quantizations": quants} if quants else {}),
            **({"allowed_kv_dtypes": kv_dtypes} if kv_dtypes else {}),
            **({"max_quality_loss_points": max_quality_loss_points} if max_quality_loss_points is not None else {}),
            **sharing,
        }],
        "fleet": {"pricing": pricing, "max_configs_per_model": max_configs},
    }
    try:
        problem = validate(Problem, data, where="")
        if cat is not None:
            check_ids(problem, cat, where="")
    except InputError as exc:
        raise InputError([_flag_line(line) for line in exc.details]) from None
    return problem


def flag_mig(cat: Catalog, profiles: list[str], gpus: list[str] | None) -> dict[str, list[str]]:
    """``gpu_sharing.mig`` from ``--mig`` profiles: per allowed accelerator (every catalog one
    without ``--gpu``), the named profiles it has. A profile none of them has is one ``--mig:``
    line (an unknown ``--gpu`` is left to its own check)."""
    accs = [g for g in (gpus or sorted(cat.accelerators)) if g in cat.accelerators]
    have = {g: [p.name for p in cat.accelerator(g).mig_profiles] for g in accs}
    out: dict[str, list[str]] = {}
    errors = []
    for name in dict.fromkeys(profiles):
        where = [g for g in accs if name in have[g]]
        if not where and len(accs) == 1:
            g = accs[0]
            errors.append(f"--mig: {g} has no MIG profile {name!r}; its profiles: {', '.join(have[g])}" if have[g]
                          else f"--mig: {g} ({cat.accelerator(g).vendor}) has no MIG profiles in the catalog")
        elif not where:
            errors.append(f"--mig: no {'allowed' if gpus else 'catalog'} accelerator has MIG profile {name!r}")
        for g in where:
            out.setdefault(g, []).append(name)
    if errors:
        raise InputError(errors)
    return out


_FLAGS = (("traffic.peak_rps", "--rps"), ("traffic.input_tokens", "--isl/--isl-p90/--isl-p99"),
          ("traffic.output_tokens", "--osl/--osl-p90/--osl-p99"),
          ("traffic.prefix_cache_hit_rate", "--prefix-hit-rate"),
          ("traffic.shared_prefix_tokens", "--shared-prefix-tokens"), ("traffic", "--isl/--osl"),
          ("slo.ttft", "--ttft-p99-ms"), ("slo.tpot", "--tpot-p99-ms"), ("slo.e2e", "--e2e-p99-ms"),
          ("slo", "targets"), ("allowed_accelerators", "--gpu"), ("allowed_quantizations", "--quant"),
          ("allowed_kv_dtypes", "--kv-dtype"), ("max_quality_loss_points", "--max-quality-loss"),
          ("headroom", "--headroom"), ("model", "--model"), ("name", "--model"),
          ("gpu_sharing.colocate", "--colocate"), ("gpu_sharing.mig", "--mig"), ("gpu_sharing", "--mig/--colocate"))


def _flag_line(line: str) -> str:
    """A validation line about the one-model problem, named by the flag that set the field."""
    rest = re.sub(r"^models\[0(:[^\]]*)?\]\.?", "", line)
    for field, flag in _FLAGS:
        if rest.startswith(field):
            tail = rest[len(field):].lstrip(".")
            return f"{flag}: {tail.split(': ', 1)[1] if ': ' in tail else tail}"
    return rest
