"""Terms of disaggregated prefill/decode serving (issue 11 item 1; the search's units are built
from them in :mod:`solver.disagg`).

A disaggregated deployment is two pools of one model: ``P`` prefill replicas that only run
prompts and ``D`` decode replicas that only decode, the prompt's KV cache moving from one to the
other after prefill. These pure functions give the terms such a deployment adds to the
aggregated model (see the README, "Serving modes").

* KV transfer (:func:`kv_transfer_ms`): the whole prompt's KV, ``prompt_tokens x`` the model's
  KV bytes per token, over the link between the pools -- the scale-up link (NVLink) when both
  sit in one scale-up domain, else the NIC -- each sending GPU moving its own shard in parallel.
  E.g. a 4,096-token Llama-3.1-70B prompt with fp8 KV (80 layers x 8 KV heads x 128 x 2 (K, V) x
  1 B = 163,840 B/token) is 671 MB, 13.4 ms at 50 GB/s. It is added to TTFT.
* Pool ratio (:func:`pool_ratio`): the (P, D) with the most requests/s per GPU, capacity
  ``min(P x prefill_rps, D x decode_rps)``.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from solver.costmodel.compute import decode_step, prefill
from solver.costmodel.shape import ShapeTerms
from solver.errors import InputError
from solver.schemas import System

GB = 1e9


def kv_transfer_ms(kv_bytes_per_token: float, prompt_tokens: float, link_gb_s: float,
                   latency_us: float = 0.0, parallel_gpus: int = 1) -> float:
    """Time to move one prompt's KV cache between pools (ms): one link latency plus
    ``prompt_tokens x kv_bytes_per_token`` bytes over ``parallel_gpus`` links of ``link_gb_s``
    GB/s each (per GPU, one direction)."""
    if link_gb_s <= 0 or parallel_gpus < 1:
        raise InputError(f"link bandwidth must be > 0 and parallel GPUs >= 1 (got {link_gb_s}, {parallel_gpus})")
    nbytes = float(prompt_tokens) * float(kv_bytes_per_token)
    return latency_us / 1e3 + nbytes / (link_gb_s * GB * parallel_gpus) * 1e3


def transfer_link(system: System, prefill_gpus: int, decode_gpus: int) -> tuple[float, float]:
    """(GB/s per GPU, latency us) between a prefill and a decode replica of ``system``: the
    scale-up link when both fit one scale-up domain together, else the NIC."""
    if prefill_gpus + decode_gpus <= system.scaleup_domain_gpus:
        return system.intra_node_gb_s, system.intra_node_latency_us
    return system.scaleout_gb_s_per_gpu, system.scaleout_latency_us


def pool_ratio(prefill_rps: float, decode_rps: float, prefill_gpus: int, decode_gpus: int,
               max_replicas: int = 8) -> tuple[int, int, float]:
    """(P, D, requests/s per GPU) of the best pool ratio with at most ``max_replicas`` replicas
    per pool: capacity ``min(P x prefill_rps, D x decode_rps)`` over ``P x prefill_gpus + D x
    decode_gpus`` GPUs (ties: fewer GPUs, then fewer prefill replicas)."""
    best: tuple[float, int, int, int] | None = None
    for p in range(1, max_replicas + 1):
        for d in range(1, max_replicas + 1):
            gpus = p * prefill_gpus + d * decode_gpus
            per_gpu = min(p * prefill_rps, d * decode_rps) / gpus
            key = (-per_gpu, gpus, p, d)
            if best is None or key < best:
                best = key
    assert best is not None
    return best[2], best[3], -best[0]


def prefill_only_ms(terms: ShapeTerms, prompt_tokens: ArrayLike, prefix_hit_rate: float = 0.0) -> NDArray[np.float64]:
    """A prefill-pool replica's time for one prompt (ms): the prompt's chunks with no decoding
    sequence riding along, plus the engine's per-request overhead. Array-safe in
    ``prompt_tokens``."""
    return prefill(terms, prompt_tokens, prefix_hit_rate).total_ms + terms.request_overhead_s * 1e3


def decode_only_tpot_ms(terms: ShapeTerms, batch: ArrayLike, prompt_tokens: ArrayLike,
                        output_tokens: ArrayLike) -> NDArray[np.float64]:
    """A decode-pool replica's step time (ms) at ``batch`` sequences: no prompt work rides along
    (prompts arrive as transferred KV); mean context ``prompt + output / 2``. Array-safe."""
    ctx = np.asarray(prompt_tokens, dtype=float) + np.asarray(output_tokens, dtype=float) / 2.0
    return decode_step(terms, np.asarray(batch, dtype=float), ctx).total_ms


def unit_link(system: System, unit_gpus: int) -> tuple[float, float]:
    """(GB/s per GPU, latency us) between the pools of a unit of ``unit_gpus`` GPUs: the
    scale-up link when the whole unit fits one node (a unit that packs into nodes and is no
    larger than one sits inside one), else the NIC. Conservative for racks whose scale-up
    domain spans nodes (NVL72): placement within one domain is not guaranteed by packing."""
    if unit_gpus <= system.gpus_per_node:
        return system.intra_node_gb_s, system.intra_node_latency_us
    return system.scaleout_gb_s_per_gpu, system.scaleout_latency_us


def nic_link(prefill_system: System, decode_system: System) -> tuple[float, float]:
    """(GB/s per GPU, latency us) between pools on two node shapes: always the NIC (NVLink does
    not join different node shapes), the slower side's bandwidth and latency."""
    return (min(prefill_system.scaleout_gb_s_per_gpu, decode_system.scaleout_gb_s_per_gpu),
            max(prefill_system.scaleout_latency_us, decode_system.scaleout_latency_us))
