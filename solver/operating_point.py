"""Operating point of one instance read off a measured sweep, and the fleet it implies.

From a :class:`~solver.measured.Sweep`:

- **knee**: the lowest concurrency whose throughput reaches ``KNEE_FRACTION`` of the sweep's
  peak requests/s -- past it more concurrency buys latency, not throughput;
- **C_max**: the largest concurrency such that it and every lower point meet the p99 TTFT
  target (and the p99 ITL target when given); measured points only, no interpolation, so the
  answer never claims a load nobody ran;
- **usable requests/s per instance**: the measured throughput at C_max (not the curve's peak,
  which is reached only with a queue that breaks the target);
- **Little's law check**: at a fixed client concurrency ``C``, ``C = throughput x mean stay``.
  A point whose ``C / (requests/s x E2E)`` is outside ``[1/2, 2]`` means the client, the rate
  and the latencies do not describe the same run (client-side queueing, errors counted as
  completions, a warm-up inside the window); the sweep is flagged. The mean stay is the
  measured mean E2E when the file has one, else ``p50 TTFT + p50 ITL x (mean output - 1)``,
  the mean output being ``output tokens/s / requests/s``.

Sizing rule (:func:`size_fleet`): ``instances = ceil(peak / usable)``; GPUs = instances x GPUs per
instance x safety; deployed as ``ceil(instances x safety)`` whole instances.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from solver.errors import InputError
from solver.plan import saved_deployment
from solver.measured import MeasuredPoint, Sweep

KNEE_FRACTION = 0.9
LITTLE_TOLERANCE = 2.0


def stay_ms(p: MeasuredPoint) -> float:
    """Mean time a request spends in the system (ms): measured mean E2E, else reconstructed."""
    if p.e2e_mean_ms is not None:
        return p.e2e_mean_ms
    osl = p.output_tokens_per_s / p.requests_per_s if p.requests_per_s > 0 else 1.0
    return p.ttft_p50_ms + p.itl_p50_ms * max(osl - 1.0, 0.0)


def load_of(p: MeasuredPoint) -> float:
    """Concurrency of a point: the client's, else Little's law from the open-loop rate."""
    if p.concurrency is not None:
        return p.concurrency
    return p.requests_per_s * stay_ms(p) / 1e3


@dataclass(frozen=True)
class LittleCheck:
    concurrency: float
    requests_per_s: float
    stay_ms: float
    ratio: float
    """client concurrency / (requests/s x mean stay); 1 when consistent."""
    ok: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def little_checks(sweep: Sweep) -> list[LittleCheck]:
    """Little's-law consistency of every fixed-concurrency point."""
    out = []
    for p in sweep.points:
        if p.concurrency is None:
            continue
        s = stay_ms(p)
        implied = p.requests_per_s * s / 1e3
        ratio = p.concurrency / implied if implied > 0 else math.inf
        out.append(LittleCheck(p.concurrency, p.requests_per_s, s, ratio,
                               1 / LITTLE_TOLERANCE <= ratio <= LITTLE_TOLERANCE))
    return out


@dataclass(frozen=True)
class OperatingPoint:
    ttft_p99_target_ms: float
    itl_p99_target_ms: float | None
    knee_concurrency: float
    knee_requests_per_s: float
    peak_requests_per_s: float
    peak_concurrency: float
    c_max: float
    usable_requests_per_s: float
    usable_output_tokens_per_s: float
    ttft_p99_at_c_max_ms: float
    itl_p99_at_c_max_ms: float
    little: tuple[LittleCheck, ...]
    little_ok: bool
    warnings: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["little"] = [c.to_dict() for c in self.little]
        out["warnings"] = list(self.warnings)
        return out


def _meets(p: MeasuredPoint, ttft: float, itl: float | None) -> bool:
    return p.ttft_p99_ms <= ttft and (itl is None or p.itl_p99_ms <= itl)


def operating_point(sweep: Sweep, ttft_p99_ms: float, itl_p99_ms: float | None = None) -> OperatingPoint:
    """Knee, C_max and usable throughput of one instance; ``InputError`` when no point meets the
    targets (naming the best point)."""
    pts = sorted(sweep.points, key=load_of)
    peak = max(pts, key=lambda p: p.requests_per_s)
    knee = next(p for p in pts if p.requests_per_s >= KNEE_FRACTION * peak.requests_per_s)
    good: MeasuredPoint | None = None
    for p in pts:
        if not _meets(p, ttft_p99_ms, itl_p99_ms):
            break
        good = p
    if good is None:
        best = min(pts, key=lambda p: (p.ttft_p99_ms, p.itl_p99_ms))
        itl = f" and p99 ITL <= {itl_p99_ms:g} ms" if itl_p99_ms is not None else ""
        raise InputError(
            f"no sweep point meets p99 TTFT <= {ttft_p99_ms:g} ms{itl}; best point: concurrency "
            f"{load_of(best):g}, p99 TTFT {best.ttft_p99_ms:g} ms, p99 ITL {best.itl_p99_ms:g} ms, "
            f"{best.requests_per_s:g} req/s ({best.source})")
    checks = little_checks(sweep)
    warnings = []
    bad = [c for c in checks if not c.ok]
    if bad:
        warnings.append("Little's law: " + "; ".join(
            f"concurrency {c.concurrency:g} vs {c.requests_per_s:g} req/s x {c.stay_ms / 1e3:.3g} s "
            f"(ratio {c.ratio:.2f})" for c in bad) + f" disagree by more than {LITTLE_TOLERANCE:g}x")
    later = [p for p in pts if load_of(p) > load_of(good) and _meets(p, ttft_p99_ms, itl_p99_ms)]
    if later:
        warnings.append(f"points above C_max meet the target again (concurrency "
                        f"{', '.join(f'{load_of(p):g}' for p in later)}): a noisy sweep; C_max keeps "
                        "the first miss")
    return OperatingPoint(
        ttft_p99_target_ms=ttft_p99_ms, itl_p99_target_ms=itl_p99_ms,
        knee_concurrency=load_of(knee), knee_requests_per_s=knee.requests_per_s,
        peak_requests_per_s=peak.requests_per_s, peak_concurrency=load_of(peak),
        c_max=load_of(good), usable_requests_per_s=good.requests_per_s,
        usable_output_tokens_per_s=good.output_tokens_per_s,
        ttft_p99_at_c_max_ms=good.ttft_p99_ms, itl_p99_at_c_max_ms=good.itl_p99_ms,
        little=tuple(checks), little_ok=not bad, warnings=tuple(warnings),
    )


@dataclass(frozen=True)
class FleetSize:
    peak_rps: float
    usable_rps_per_instance: float
    gpus_per_instance: int
    safety: float
    instances: int
    """ceil(peak / usable), before the safety factor."""
    gpus_rule: float
    """instances x GPUs per instance x safety."""
    instances_deployed: int
    """ceil(instances x safety): whole instances."""
    gpus: int
    """instances_deployed x GPUs per instance."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def size_fleet(peak_rps: float, usable_rps: float, gpus_per_instance: int, safety: float) -> FleetSize:
    """The sizing rule. 120 req/s at 12 usable per TP4 instance, safety 1.3 -> 10 x 4 x 1.3 = 52."""
    if usable_rps <= 0:
        raise InputError("usable requests/s per instance must be > 0")
    instances = math.ceil(peak_rps / usable_rps - 1e-9)
    deployed = math.ceil(instances * safety - 1e-9)
    return FleetSize(peak_rps, usable_rps, gpus_per_instance, safety, instances,
                     round(instances * gpus_per_instance * safety, 9), deployed, deployed * gpus_per_instance)


def compare_with_plan(size: FleetSize, op: OperatingPoint, plan: dict[str, Any],
                      model: str | None = None) -> dict[str, Any]:
    """Measured sizing next to fleetplan's plan (its deployments of ``model``, or all)."""
    deps = [saved_deployment(d) for d in plan.get("deployments", [])
            if isinstance(d, dict) and (model is None or d.get("model") == model)]
    if not deps:
        raise InputError(f"the plan has no deployments{f' of model {model!r}' if model else ''}", where="--plan")
    try:
        gpus = sum(int(d["total_gpus"]) for d in deps)
        replicas = sum(int(d["replicas"]) for d in deps)
        capacity = sum(float(d["total_capacity_rps"]) for d in deps)
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"deployment lacks a numeric field ({exc})", where="--plan") from None
    if replicas <= 0 or gpus <= 0:
        raise InputError("deployments with no replicas or GPUs", where="--plan")
    predicted = capacity / replicas
    return {
        "plan_gpus": gpus, "plan_replicas": replicas,
        "plan_capacity_rps_per_replica": predicted,
        "measured_usable_rps_per_instance": op.usable_requests_per_s,
        "measured_over_predicted_capacity": op.usable_requests_per_s / predicted,
        "bench_gpus": size.gpus, "bench_over_plan_gpus": size.gpus / gpus,
        "configurations": [f"{d.get('accelerator')} {d.get('quant')} TP{d.get('tp')} PP{d.get('pp')} "
                           f"EP{d.get('ep')} x{d.get('replicas')}" for d in deps],
    }
