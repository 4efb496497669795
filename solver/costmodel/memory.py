"""Memory budget per GPU and the largest concurrency a replica can hold.

Per GPU:  weights + runtime overhead + prefill-chunk activations + KV(sequences x context)
          <= UTILISATION x HBM.

KV of one sequence of ``c`` tokens on one GPU: full-attention layers hold all ``c`` tokens,
sliding-window layers at most ``window`` of them. With attention data parallelism
(``dp_attn > 1``) a replica has ``dp_attn`` independent KV pools, one per copy of the dense parts.

Prefix caching sized (``shared_prefix_tokens``): the KV blocks of the cached shared prefix are
held once per KV pool for as long as the replica serves, so they are taken off the KV budget
before any sequence is admitted. Each sequence still reserves its full length: a no-eviction
scheduler must admit a request that misses the cache, so the planner does not count on sharing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from solver.costmodel.shape import ShapeTerms
from solver.errors import InputError
from solver.units import GIB


def kv_bytes_per_seq_gpu(terms: ShapeTerms, context_tokens: ArrayLike) -> NDArray[np.float64]:
    """KV bytes one GPU stores for one sequence of ``context_tokens`` (windowed layers capped)."""
    c = np.asarray(context_tokens, dtype=float)
    windowed = np.minimum(c, terms.window_tokens) if terms.window_tokens else 0.0
    return terms.kv_full_bytes_per_token_gpu * c + terms.kv_window_bytes_per_token_gpu * windowed


def _usable_bytes(terms: ShapeTerms, util: float | None) -> float:
    """``util`` x HBM, or the shape's default cap (:data:`~solver.costmodel.shape.UTILISATION`)."""
    if util is None:
        return terms.usable_bytes
    if not 0.0 < util <= 1.0:
        raise InputError(f"memory utilisation must be in (0, 1], got {util}")
    return util * terms.hbm_bytes


def prefix_reserve_bytes_gpu(terms: ShapeTerms, shared_prefix_tokens: int = 0) -> float:
    """KV bytes one GPU holds for the cached shared prefix (``shared_prefix_tokens`` tokens,
    once per KV pool: one sequence's worth of KV at that length; 0 without a prefix)."""
    if shared_prefix_tokens <= 0:
        return 0.0
    return kv_bytes_per_seq_gpu(terms, shared_prefix_tokens)  # type: ignore[return-value]


def kv_budget_bytes_gpu(terms: ShapeTerms, util: float | None = None, shared_prefix_tokens: int = 0) -> float:
    """Bytes left for sequences' KV on one GPU after weights, overhead, activations and the
    cached shared prefix (may be < 0)."""
    return (
        _usable_bytes(terms, util) - terms.weight_bytes_gpu - terms.overhead_bytes_gpu
        - terms.activation_bytes_gpu - prefix_reserve_bytes_gpu(terms, shared_prefix_tokens)
    )


def max_concurrency(
    terms: ShapeTerms, context_tokens: ArrayLike, util: float | None = None, shared_prefix_tokens: int = 0,
) -> NDArray[np.int64]:
    """Largest number of sequences of ``context_tokens`` each that one replica holds (0: none).

    ``context_tokens`` is the length a sequence reaches (ISL + OSL for a no-eviction scheduler);
    ``util`` overrides the share of HBM the engine may use (default 0.90);
    ``shared_prefix_tokens``: a cached prefix held once per KV pool. Returns a 0-d array
    for a scalar context (``int(...)`` it) and an array of the input's shape otherwise.
    """
    per_seq = kv_bytes_per_seq_gpu(terms, np.maximum(np.asarray(context_tokens, dtype=float), 1.0))
    budget = np.maximum(kv_budget_bytes_gpu(terms, util, shared_prefix_tokens), 0.0)
    return (np.floor(budget / per_seq) * terms.dp_attn).astype(np.int64)


@dataclass(frozen=True)
class MemoryBudget:
    """Per-GPU memory at an operating point, GiB (arrays of the broadcast input shape).

    ``weights + overhead + activations + kv + free = usable``; ``free`` < 0 means it does not fit.
    ``hbm_gib - usable_gib`` is the headroom the utilisation cap keeps back.
    """

    hbm_gib: float
    usable_gib: float
    weights_gib: float
    overhead_gib: float
    activations_gib: float
    kv_gib: NDArray[np.float64]
    free_gib: NDArray[np.float64]

    @property
    def fits(self) -> NDArray[np.bool_]:
        return np.asarray(self.free_gib) >= 0.0


def memory_budget(
    terms: ShapeTerms, concurrency: ArrayLike, context_tokens: ArrayLike, util: float | None = None
) -> MemoryBudget:
    """Weights, runtime overhead, prefill activations, KV and what is left, per GPU (GiB).

    KV is for ``concurrency`` sequences of ``context_tokens`` each on the busiest GPU.
    """
    usable = _usable_bytes(terms, util) / GIB
    weights = terms.weight_bytes_gpu / GIB
    overhead = terms.overhead_bytes_gpu / GIB
    act = terms.activation_bytes_gpu / GIB
    kv = kv_gib_per_gpu(terms, concurrency, context_tokens)
    return MemoryBudget(
        hbm_gib=terms.hbm_bytes / GIB,
        usable_gib=usable,
        weights_gib=weights,
        overhead_gib=overhead,
        activations_gib=act,
        kv_gib=kv,
        free_gib=usable - weights - overhead - act - kv,
    )


def kv_gib_per_gpu(terms: ShapeTerms, concurrency: ArrayLike, context_tokens: ArrayLike,
                   shared_prefix_tokens: int = 0) -> NDArray[np.float64]:
    """KV GiB on the busiest GPU when a replica holds ``concurrency`` sequences of ``context_tokens``
    (plus the cached shared prefix of ``shared_prefix_tokens``, held once)."""
    seqs_per_pool = np.ceil(np.asarray(concurrency, dtype=float) / terms.dp_attn)
    return (seqs_per_pool * kv_bytes_per_seq_gpu(terms, context_tokens)
            + prefix_reserve_bytes_gpu(terms, shared_prefix_tokens)) / GIB


def fit_reason(terms: ShapeTerms, concurrency: int, context_tokens: int) -> str | None:
    """Why ``concurrency`` sequences of ``context_tokens`` do not fit a replica; ``None`` if they do."""
    usable = terms.usable_bytes / GIB
    fixed = (terms.weight_bytes_gpu + terms.overhead_bytes_gpu + terms.activation_bytes_gpu) / GIB
    if fixed >= usable:
        return (
            f"weights need {terms.weight_bytes_gpu / GIB:.1f} GiB per GPU (+{(fixed - terms.weight_bytes_gpu / GIB):.1f} GiB "
            f"overhead and activations) but only {usable:.1f} GiB is usable "
            f"({terms.hbm_bytes / GIB:.0f} GiB x utilisation); use more GPUs or a smaller format"
        )
    cap = int(max_concurrency(terms, context_tokens))
    if cap < 1:
        return f"no room for even one {context_tokens}-token sequence's KV cache after the weights"
    if concurrency > cap:
        need = float(kv_gib_per_gpu(terms, concurrency, context_tokens))
        return (
            f"concurrency {concurrency} needs {need:.1f} GiB KV per GPU; "
            f"{usable - fixed:.1f} GiB is free (max concurrency {cap} at {context_tokens} tokens)"
        )
    return None
