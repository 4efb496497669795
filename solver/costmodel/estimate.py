"""``estimate``: one shape at one operating point, as the CLI and the Python API return it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

from solver.catalog import Catalog
from solver.costmodel.compute import prefill_ms
from solver.costmodel.memory import fit_reason, kv_budget_bytes_gpu, max_concurrency
from solver.costmodel.operating import check_lengths, operating_point
from solver.costmodel.shape import Shape, ShapeTerms, shape_terms
from solver.errors import InputError
from solver.identity import ShapeIdentity
from solver.units import GIB

Concurrency = int | Literal["max"]


@dataclass(frozen=True)
class Estimate(ShapeIdentity):
    """One replica's memory, latency and throughput. Units in names; ``None`` where nothing runs."""

    shape: Shape
    """The replica's identity, its system resolved (``None`` given: the accelerator's default)."""
    gpus: int
    """GPUs of the one replica."""
    isl: int
    osl: int
    prefix_hit_rate: float
    compute_dtype: str
    hbm_gib_per_gpu: float
    usable_gib_per_gpu: float
    weights_gib_per_gpu: float
    overhead_gib_per_gpu: float
    kv_free_gib_per_gpu: float
    kv_gib_per_gpu: float | None
    kv_bytes_per_token: float
    """Whole-model KV bytes per token (before the TP split)."""
    max_concurrency: int
    concurrency: int
    fits: bool
    reason: str | None
    ttft_ms: float | None
    prefill_ms: float | None
    tpot_ms: float | None
    output_tokens_per_s: float | None
    output_tokens_per_s_per_gpu: float | None
    requests_per_s: float | None
    bound: str | None
    decode_memory_ms: float | None
    decode_compute_ms: float | None
    decode_comm_ms: float | None
    decode_overhead_ms: float | None
    tp_link: str
    engine: str
    """The ``engines.yaml`` profile the estimate ran under."""
    efficiency_measured: bool
    """False: the accelerator family's factors were fitted on no measurement of its own."""
    stated_error_pct: float | None
    """Stated throughput error on this family, % (wider where unmeasured; efficiency.yaml)."""
    moe_tp: int = 1
    """GPUs each routed expert is split over (derived, or ``Shape.moe_tp``); 1 for dense."""
    dp_attn: int = 1
    """Data-parallel copies of attention in a pipeline stage."""

    @property
    def model(self) -> str:
        """Catalog id of the model (the identity's other attributes: :class:`ShapeIdentity`;
        ``moe_tp`` here is the field above, the effective split)."""
        return self.shape.model

    def to_dict(self) -> dict[str, Any]:
        """Plain data with the identity as flat keys (model, accelerator, system, ... ep)."""
        rest = asdict(self)
        del rest["shape"]
        s = self.shape
        return {"model": s.model, "accelerator": s.accelerator, "system": s.system, "quant": s.quant,
                "kv_dtype": s.kv_dtype, "tp": s.tp, "pp": s.pp, "ep": s.ep, **rest}


def estimate_terms(
    terms: ShapeTerms, isl: int, osl: int, concurrency: Concurrency, prefix_hit_rate: float = 0.0
) -> Estimate:
    """:func:`estimate` for precomputed :class:`ShapeTerms`."""
    check_lengths(isl, osl, prefix_hit_rate)
    s = terms.shape
    cap = int(max_concurrency(terms, isl + osl))
    if concurrency == "max":
        b = cap
    elif isinstance(concurrency, int) and not isinstance(concurrency, bool) and concurrency >= 1:
        b = concurrency
    else:
        raise InputError(f"concurrency must be an integer >= 1 or 'max', got {concurrency!r}")
    reason = fit_reason(terms, max(b, 1), isl + osl)
    base: dict[str, Any] = dict(
        shape=replace(s, system=terms.system_id), gpus=terms.gpus, isl=int(isl),
        osl=int(osl), prefix_hit_rate=float(prefix_hit_rate), compute_dtype=terms.compute_dtype,
        hbm_gib_per_gpu=terms.hbm_bytes / GIB, usable_gib_per_gpu=terms.usable_bytes / GIB,
        weights_gib_per_gpu=terms.weight_bytes_gpu / GIB,
        overhead_gib_per_gpu=(terms.overhead_bytes_gpu + terms.activation_bytes_gpu) / GIB,
        kv_free_gib_per_gpu=max(kv_budget_bytes_gpu(terms), 0.0) / GIB,
        kv_bytes_per_token=terms.kv_bytes_per_token_model, max_concurrency=cap,
        concurrency=b, fits=reason is None, reason=reason, tp_link=terms.tp_link.kind,
        moe_tp=int(terms.moe_tp) if terms.num_experts else 1, dp_attn=int(terms.dp_attn),
        engine=terms.engine, efficiency_measured=terms.efficiency_measured,
        stated_error_pct=terms.stated_error_pct,
    )
    if b < 1:
        none = dict.fromkeys(
            ["kv_gib_per_gpu", "ttft_ms", "prefill_ms", "tpot_ms", "output_tokens_per_s",
             "output_tokens_per_s_per_gpu", "requests_per_s", "bound", "decode_memory_ms",
             "decode_compute_ms", "decode_comm_ms", "decode_overhead_ms"]
        )
        return Estimate(**base, **none)
    op = operating_point(terms, b, isl, osl, prefix_hit_rate)
    return Estimate(
        **base,
        kv_gib_per_gpu=float(op.kv_gib_per_gpu),
        ttft_ms=float(op.ttft_ms),
        prefill_ms=float(prefill_ms(terms, isl, prefix_hit_rate)),
        tpot_ms=float(op.tpot_ms),
        output_tokens_per_s=float(op.output_tokens_per_s),
        output_tokens_per_s_per_gpu=float(op.output_tokens_per_s_per_gpu),
        requests_per_s=float(op.requests_per_s),
        bound=str(op.bound),
        decode_memory_ms=float(op.decode_memory_ms),
        decode_compute_ms=float(op.decode_compute_ms),
        decode_comm_ms=float(op.decode_comm_ms),
        decode_overhead_ms=float(op.decode_overhead_ms),
    )


def estimate(
    cat: Catalog,
    shape: Shape,
    isl: int,
    osl: int,
    concurrency: Concurrency,
    prefix_hit_rate: float = 0.0,
    engine: str | None = None,
    cuda_graphs: bool = True,
) -> Estimate:
    """Memory, TTFT, TPOT and throughput of one replica of ``shape`` (the ``estimate`` command).

    ``engine``: an ``engines.yaml`` profile (default: the catalog's ``default_engine``);
    ``cuda_graphs=False``: decode steps run eagerly (the engine's eager host time per step).
    Raises ``InputError`` for unknown ids, an engine that does not serve the format on the
    accelerator, invalid shapes (see :func:`check_shape`), lengths
    < 1 or concurrency < 1. A shape that runs but does not fit memory returns ``fits=False``
    with the ``reason``.
    """
    check_lengths(isl, osl, prefix_hit_rate)
    terms = shape_terms(cat, shape, engine, cuda_graphs)
    return estimate_terms(terms, isl, osl, concurrency, prefix_hit_rate)
