"""Problem files (``problems/*.yaml``): what a user asks fleetplan to plan.

Units are in field names: ``_rps`` requests per second, ``_ms`` milliseconds, ``_usd_per_hour``,
``_kw``. Token lengths are given as percentiles (p50/p90/p99) or as a histogram from which the
percentiles are read. Catalog ids are checked against the catalog with "closest id" hints.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from solver.catalog import Catalog, load_catalog
from solver.errors import InputError, unknown_id
from solver.loading import read_yaml, validate
from solver.traffic import expand_trace_traffic

PosInt = Annotated[int, Field(gt=0)]
Percentile = Annotated[float, Field(gt=0, lt=100)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HistogramBin(_Strict):
    tokens: PosInt
    weight: Annotated[float, Field(gt=0)]


class TokenLengths(_Strict):
    """Token lengths of prompts or outputs: p50/p90/p99, or a histogram of (tokens, weight)."""

    p50: PosInt | None = None
    p90: PosInt | None = None
    p99: PosInt | None = None
    histogram: list[HistogramBin] | None = None

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
    peak_rps: Annotated[float, Field(gt=0, description="peak requests per second")]
    input_tokens: TokenLengths
    output_tokens: TokenLengths
    prefix_cache_hit_rate: Annotated[float, Field(ge=0, lt=1)] = 0.0


class LatencyTarget(_Strict):
    max_ms: Annotated[float, Field(gt=0)]
    percentile: Percentile = 99.0


class Slo(_Strict):
    """Latency targets; at least one of them. TPOT is the time per output token (ITL)."""

    ttft: LatencyTarget | None = None
    tpot: LatencyTarget | None = None
    e2e: LatencyTarget | None = None

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


class ModelDemand(_Strict):
    """One model to serve, with its traffic, targets and allowed options."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")]
    model: str
    traffic: Traffic
    slo: Slo
    allowed_accelerators: list[str] | None = Field(default=None, description="default: all")
    allowed_quantizations: list[str] | None = Field(default=None, description="default: all")
    allowed_kv_dtypes: list[str] | None = None
    max_quality_loss_points: Annotated[float, Field(ge=0)] | None = None
    headroom: Annotated[float, Field(ge=0, le=10)] = 0.2
    engine: str | None = Field(
        default=None, description="serving engine (catalogs/engines.yaml id); default: the catalog's default_engine"
    )


class Fleet(_Strict):
    """Shared constraints. Inventory maps accelerator id -> GPUs available (absent: unlimited)."""

    inventory: dict[str, Annotated[int, Field(ge=0)]] | None = None
    budget_usd_per_hour: Annotated[float, Field(gt=0)] | None = None
    power_kw: Annotated[float, Field(gt=0)] | None = None
    pricing: Literal["on-demand", "reserved", "spot"] = "on-demand"
    provider: str | None = None
    whole_nodes: bool = False
    max_configs_per_model: Annotated[int, Field(ge=1, le=8)] = 2

    @model_validator(mode="after")
    def _non_empty(self) -> "Fleet":
        if self.inventory is not None and sum(self.inventory.values()) == 0:
            raise ValueError("inventory is empty (every count is 0)")
        return self


class Problem(_Strict):
    name: str
    description: str = ""
    models: Annotated[list[ModelDemand], Field(min_length=1)]
    fleet: Fleet = Fleet()
    objective: Literal["cost"] = "cost"

    @model_validator(mode="after")
    def _unique_names(self) -> "Problem":
        names = [m.name for m in self.models]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"duplicate model name(s): {', '.join(dup)}")
        return self


def check_ids(problem: Problem, cat: Catalog, where: str) -> None:
    """Every catalog id in the problem must exist (and be usable together)."""

    def bad(field: str, kind: str, name: str, valid: object) -> InputError:
        return InputError(f"{field}: {unknown_id(kind, name, valid)}", where=where)  # type: ignore[arg-type]

    for i, m in enumerate(problem.models):
        base = f"models[{i}:{m.name}]"
        if m.model not in cat.models:
            raise bad(f"{base}.model", "model", m.model, cat.models)
        for g in m.allowed_accelerators or []:
            if g not in cat.accelerators:
                raise bad(f"{base}.allowed_accelerators", "accelerator", g, cat.accelerators)
        for q in m.allowed_quantizations or []:
            if q not in cat.quantizations:
                raise bad(f"{base}.allowed_quantizations", "quantization", q, cat.quantizations)
        for kv in m.allowed_kv_dtypes or []:
            if kv not in cat.kv_dtypes:
                raise bad(f"{base}.allowed_kv_dtypes", "KV dtype", kv, cat.kv_dtypes)
        if m.engine is not None and m.engine not in cat.engines:
            raise bad(f"{base}.engine", "engine", m.engine, cat.engines)
        if m.allowed_accelerators == [] or m.allowed_quantizations == []:
            raise InputError(f"{base}: allowed lists must not be empty (omit them to allow all)", where=where)
    for g in (problem.fleet.inventory or {}):
        if g not in cat.accelerators:
            raise bad("fleet.inventory", "accelerator", g, cat.accelerators)


def load_problem(path: Path | str, cat: Catalog | None = None) -> Problem:
    """Read, validate and id-check a problem file; raises ``InputError`` with file and field."""
    path = Path(path)
    data = read_yaml(path)
    if not isinstance(data, dict):
        raise InputError("expected a mapping at the top level", where=str(path))
    data = expand_trace_traffic(data, path.parent, str(path))  # traffic: {trace: FILE} -> its block
    problem = validate(Problem, data, where=str(path))
    check_ids(problem, cat or load_catalog(), where=str(path))
    return problem
