"""Operating point of one replica under continuous batching with chunked prefill.

Model (steady state, fixed ISL/OSL, ``B`` requests in flight, no queueing):

* Every engine step decodes one token for each of the ``B`` sequences and also runs the
  amortised prefill work of the requests that replace finished ones: on average
  ``B / OSL`` requests finish per step, so each step carries ``B x ISL_new / OSL`` prompt tokens
  (``ISL_new`` = the prompt minus its cached prefix). Sequences are spread uniformly over their
  life, so the mean decode context is ``ISL + OSL / 2``.
* TPOT = the time of that step (prefill share included): what a streaming user sees between
  tokens when prompts are chunked into the decode batches.
* Output tokens/s = ``B / TPOT``; requests/s = ``B / (OSL x TPOT)``. TTFT is *not* added to the
  request's cycle: the prompt's work is already inside TPOT (the amortised share), and adding the
  prefill time again would count it twice. (The cost of this choice: with very short outputs a
  request's slot is idle during its own prefill, which this ignores.)
* TTFT (no queueing) = the engine's per-request time (``request_overhead_ms``: admission,
  tokenisation, first-token return) + the prompt's chunks, each co-scheduled with the other
  ``B - 1`` sequences' decode tokens (:func:`solver.costmodel.compute.prefill`). Queueing delay is
  added by the percentile model, not here.
* Memory: ``B`` must not exceed :func:`~solver.costmodel.memory.max_concurrency` at
  ``ISL + OSL`` tokens (a no-eviction scheduler reserves each sequence's final length).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from solver.costmodel.compute import attention_pair_layers, decode_step, prefill
from solver.costmodel.memory import kv_gib_per_gpu, max_concurrency
from solver.costmodel.shape import ShapeTerms
from solver.errors import InputError

F = NDArray[np.float64]


@dataclass(frozen=True)
class OperatingPoint:
    """Per-replica results at each concurrency of the input (arrays of one shape)."""

    concurrency: NDArray[np.int64]
    ttft_ms: F
    tpot_ms: F
    output_tokens_per_s: F
    output_tokens_per_s_per_gpu: F
    requests_per_s: F
    decode_memory_ms: F
    decode_compute_ms: F
    decode_comm_ms: F
    decode_overhead_ms: F
    bound: NDArray[np.str_]
    kv_gib_per_gpu: F
    max_concurrency: int
    fits: NDArray[np.bool_]
    """Whether each concurrency fits the memory budget at ISL + OSL tokens."""


def check_lengths(isl: int, osl: int, prefix_hit_rate: float) -> None:
    """Raise ``InputError`` for non-positive lengths or a hit rate outside [0, 1)."""
    if int(isl) < 1 or int(osl) < 1:
        raise InputError(f"isl and osl must be >= 1 token (got isl={isl}, osl={osl})")
    if not 0.0 <= float(prefix_hit_rate) < 1.0:
        raise InputError(f"prefix_hit_rate must be in [0, 1), got {prefix_hit_rate}")


def operating_point(
    terms: ShapeTerms,
    concurrency: ArrayLike,
    isl: int,
    osl: int,
    prefix_hit_rate: float = 0.0,
) -> OperatingPoint:
    """TTFT, TPOT and throughput of one replica at each ``concurrency`` (see module docstring)."""
    check_lengths(isl, osl, prefix_hit_rate)
    b = np.asarray(concurrency)
    if b.size and (np.any(b < 1) or np.any(b != np.floor(b))):
        raise InputError(f"concurrency must be an integer >= 1, got {concurrency!r}")
    b = b.astype(np.int64)
    bf = b.astype(float)
    cached = np.floor(isl * prefix_hit_rate)
    new = isl - cached
    ctx_mean = isl + osl / 2.0
    step = decode_step(
        terms, bf, ctx_mean,
        prefill_tokens_per_step=bf * new / osl,
        prefill_pair_layers_per_step=bf / osl * attention_pair_layers(terms, new, cached),
    )
    tpot = step.total_ms
    m = np.clip(np.minimum(bf, terms.pp), 1.0, None)
    ttft = prefill(terms, isl, prefix_hit_rate, decode_seqs=(bf - 1.0) / m, context_tokens=ctx_mean).total_ms
    ttft = ttft + terms.request_overhead_s * 1e3
    out_tps = bf / (tpot / 1e3)
    cap = max_concurrency(terms, isl + osl)
    return OperatingPoint(
        concurrency=b,
        ttft_ms=ttft,
        tpot_ms=tpot,
        output_tokens_per_s=out_tps,
        output_tokens_per_s_per_gpu=out_tps / terms.gpus,
        requests_per_s=out_tps / osl,
        decode_memory_ms=step.memory_ms,
        decode_compute_ms=step.compute_ms,
        decode_comm_ms=step.comm_ms,
        decode_overhead_ms=step.overhead_ms,
        bound=step.bound,
        kv_gib_per_gpu=kv_gib_per_gpu(terms, bf, isl + osl),
        max_concurrency=int(cap) if np.ndim(cap) == 0 else cap,  # type: ignore[arg-type]
        fits=b <= cap,
    )
