"""Analytical cost model: memory, prefill, decode, communication and the operating point.

Pure numpy functions of a :class:`Shape` (catalog ids + parallelism) and its precomputed
:class:`ShapeTerms`; no solver code. Modules, in import order:

* :mod:`~solver.costmodel.shape` -- ``Shape``, ``check_shape``, ``shape_terms`` (per-shape constants);
* :mod:`~solver.costmodel.memory` -- weights, KV, activations, overhead; ``max_concurrency``;
* :mod:`~solver.costmodel.comm` -- collectives: latency + bytes / (bandwidth x efficiency(size));
* :mod:`~solver.costmodel.compute` -- ``prefill_ms`` and ``decode_step_ms`` (roofline);
* :mod:`~solver.costmodel.operating` -- ``operating_point`` under continuous batching;
* :mod:`~solver.costmodel.estimate` -- ``estimate``, the function behind ``fleetplan estimate``.
"""

from solver.costmodel.compute import (
    StepTime,
    decode_bound,
    decode_step,
    decode_step_ms,
    expert_gemms,
    grouped_gemm_s,
    hbm_stream_s,
    expert_touch_fraction,
    prefill,
    prefill_ms,
)
from solver.costmodel.estimate import Estimate, estimate, estimate_terms
from solver.costmodel.memory import (
    MemoryBudget,
    fit_reason,
    kv_budget_bytes_gpu,
    kv_bytes_per_seq_gpu,
    kv_gib_per_gpu,
    max_concurrency,
    memory_budget,
)
from solver.costmodel.operating import OperatingPoint, operating_point
from solver.costmodel.shape import (
    PREFILL_CHUNK_TOKENS,
    RUNTIME_OVERHEAD_GIB,
    UTILISATION,
    Shape,
    ShapeTerms,
    WeightGroups,
    check_shape,
    link_cost,
    shape_terms,
    usable_bytes,
    weight_groups,
    with_efficiency,
)

__all__ = [
    "MemoryBudget", "decode_bound", "memory_budget",
    "Estimate", "OperatingPoint", "PREFILL_CHUNK_TOKENS", "RUNTIME_OVERHEAD_GIB", "Shape",
    "ShapeTerms", "StepTime", "UTILISATION", "check_shape", "decode_step", "decode_step_ms",
    "WeightGroups", "estimate", "estimate_terms", "expert_gemms", "grouped_gemm_s", "hbm_stream_s",
    "expert_touch_fraction", "weight_groups", "fit_reason", "kv_budget_bytes_gpu",
    "kv_bytes_per_seq_gpu", "kv_gib_per_gpu", "max_concurrency", "operating_point", "prefill",
    "prefill_ms", "shape_terms", "with_efficiency", "link_cost", "usable_bytes",
]
