"""Prefill and decode times: a roofline per pipeline-stage pass plus communication and overhead.

One stage pass on one GPU is a sequence of operators, each on its own roofline (all arrays
broadcast):

    t_pass = sum over operators of max(bytes_op / (HBM_BW x eta_bw), flop_op / rate_op) + t_comm

with the operators dense GEMMs, routed-expert GEMMs, decode attention and prefill attention,
and ``rate = peak x mfu_decode`` for decode tokens, ``peak x mfu_prefill`` for prompt tokens.
GEMMs run at the peak of the format's compute dtype, attention at the bf16/fp16 peak. Summing
per-operator rooflines (rather than one max over the whole step) is what a kernel-by-kernel
engine does: a compute-bound GEMM does not hide a memory-bound attention kernel.

* ``bytes_read`` = the GPU's dense weights (less the input embedding, a row lookup) + the
  expected share of its expert weights the step's tokens touch + the KV cache of the sequences
  it holds. Each touched expert of each MoE layer also costs a fixed ``t0``
  (``expert_gemm_overhead_us``, added outside the roofline): small expert matrices run below
  the roofline, at best ``S / (S / BW + t0)`` for ``S`` bytes.
* 16-bit weights (LM head; attention too for ``quant_scope: experts``) run at the bf16 peak.
* Expected distinct experts a batch of ``T`` tokens touches in one MoE layer:
  ``E x (1 - (1 - k/E)^T)`` (each token picks k of E experts, uniform routing assumed); the
  fraction ``1 - (1 - k/E)^T`` of the expert weights is read.
* ``flop`` = 2 x matmul parameters per token (input embedding is a lookup) + attention
  ``2 x n_h x (d_qk + d_v)`` FLOP per (query, key) pair per layer; the replica's work is spread
  evenly over its GPUs.
* A decode step (TPOT) is ``pp`` stage passes of a micro-batch of ``B / min(B, pp)`` sequences
  (each token traverses every stage; the other micro-batches fill the pipeline), plus the
  engine's fixed per-step overhead (scheduling, sampling, kernel launches).
* Prefill of one prompt runs in chunks of ``PREFILL_CHUNK_TOKENS``; chunks pipeline through the
  stages, so it takes ``(n_chunks + pp - 1)`` stage passes plus one overhead per chunk. Each
  chunk re-reads the weights, which bounds short prompts below by the weight read.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from solver.costmodel.comm import comm_s
from solver.costmodel.memory import kv_bytes_per_seq_gpu
from solver.costmodel.shape import ShapeTerms
from solver.units import MS_PER_S

F = NDArray[np.float64]


@dataclass(frozen=True)
class StepTime:
    """A step's time and its parts (ms), arrays of the broadcast input shape.

    ``memory_ms``/``compute_ms``/``comm_ms`` are the totals over the step's stage passes;
    ``bound`` names the largest of the three for each element.
    """

    total_ms: F
    memory_ms: F
    compute_ms: F
    comm_ms: F
    overhead_ms: F

    @property
    def bound(self) -> NDArray[np.str_]:
        """``memory``, ``compute`` or ``communication``: what limits the step."""
        parts = np.stack(np.broadcast_arrays(self.memory_ms, self.compute_ms, self.comm_ms))
        return np.array(["memory", "compute", "communication"])[np.argmax(parts, axis=0)]


def expert_touch_fraction(terms: ShapeTerms, tokens: ArrayLike) -> F:
    """Expected share of a MoE layer's experts that ``tokens`` tokens route to: 1 - (1 - k/E)^T."""
    t = np.asarray(tokens, dtype=float)
    if terms.num_experts == 0:
        return np.zeros_like(t)
    return 1.0 - (1.0 - terms.experts_per_token / terms.num_experts) ** t


def expert_gemms(terms: ShapeTerms, tokens: ArrayLike) -> F:
    """Expected expert GEMM problems one GPU runs in one stage pass of ``tokens`` tokens:
    touched experts it holds per MoE layer x the stage's MoE layers (0 for a dense model)."""
    return (
        terms.experts_per_gpu_layer * expert_touch_fraction(terms, tokens)
        * terms.moe_layers / terms.pp
    )


def expert_stream_s(terms: ShapeTerms, tokens: ArrayLike) -> F:
    """Seconds to stream the touched expert weights of one GPU in one stage pass at the roofline
    bandwidth: ``n x S / BW`` for ``n`` touched experts of ``S`` bytes (one GPU's share of one
    expert in one layer); ``n x S`` is ``expert_weight_bytes_gpu`` x the touched share."""
    n = expert_gemms(terms, tokens)
    return n * terms.expert_bytes_per_expert_gpu / terms.bw_bytes_s


def expert_fixed_s(terms: ShapeTerms, tokens: ArrayLike) -> F:
    """Fixed time of the expert GEMM problems of one stage pass: ``n x t0``.

    ``t0`` (``expert_gemm_overhead_us``) is what one small grouped-GEMM problem costs beyond its
    roofline: the M dimension (the expert's tokens) padded up to the tile height, pipeline fill
    and drain of its first and last tiles, per-expert scale/offset setup. It is added outside the
    roofline, so its share falls with the matrix size: an expert of ``S`` bytes streams at
    ``S / (S / BW + t0)`` at best -- fine-grained experts (gpt-oss 2880x2880, DeepSeek 2048x7168)
    lose far more than Mixtral's 14336x4096. Zero for dense models (no experts).
    """
    return expert_gemms(terms, tokens) * terms.expert_gemm_overhead_s


def _window_pairs(n: F, w: int) -> F:
    """Sum over query positions i < n of min(i, w): pairs one windowed layer computes."""
    return np.where(n <= w, n * n / 2.0, w * w / 2.0 + (n - w) * w)


def attention_pair_layers(terms: ShapeTerms, new_tokens: ArrayLike, cached_tokens: ArrayLike = 0) -> F:
    """(query, key) pairs summed over layers when ``new_tokens`` follow ``cached_tokens``.

    Causal: query i attends i keys (at most the window in sliding-window layers).
    """
    new = np.asarray(new_tokens, dtype=float)
    old = np.asarray(cached_tokens, dtype=float)
    end = old + new
    pairs = terms.full_attn_layers * (end * end - old * old) / 2.0
    if terms.window_attn_layers:
        w = terms.window_tokens
        pairs = pairs + terms.window_attn_layers * (_window_pairs(end, w) - _window_pairs(old, w))
    return pairs


def decode_pair_layers(terms: ShapeTerms, context_tokens: ArrayLike) -> F:
    """(query, key) pairs over layers of one decode token at ``context_tokens``."""
    c = np.asarray(context_tokens, dtype=float)
    pairs = terms.full_attn_layers * c
    if terms.window_attn_layers:
        pairs = pairs + terms.window_attn_layers * np.minimum(c, terms.window_tokens)
    return pairs


def stage_pass_s(
    terms: ShapeTerms,
    decode_seqs: ArrayLike,
    context_tokens: ArrayLike,
    prefill_tokens: ArrayLike = 0.0,
    prefill_pair_layers: ArrayLike = 0.0,
) -> tuple[F, F, F, F]:
    """(memory, compute, communication, total) seconds of one stage pass on one GPU.

    ``decode_seqs`` sequences of one micro-batch each decode one token at ``context_tokens``;
    ``prefill_tokens`` prompt tokens (with ``prefill_pair_layers`` attention pairs) ride along.
    ``memory`` and ``compute`` are the plain sums of bytes / bandwidth and FLOP / rate over the
    operators; ``total`` adds each operator's roofline ``max(bytes / BW, FLOP / rate)``, the
    fixed per-expert-problem time and the communication (operators run one after another;
    communication is not overlapped).
    """
    b = np.asarray(decode_seqs, dtype=float)
    c = np.asarray(context_tokens, dtype=float)
    p = np.asarray(prefill_tokens, dtype=float)
    pp_pairs = np.asarray(prefill_pair_layers, dtype=float)
    tokens = b + p
    g = terms.gpus
    bw = terms.bw_bytes_s
    rate_dec = terms.peak_flop_s * terms.mfu_decode
    rate_pre = terms.peak_flop_s * terms.mfu_prefill
    # Dense GEMMs (attention projections, dense FFN, shared experts, LM head): all their weights
    # read (the input embedding is a row lookup); the 16-bit ones at the 16-bit peak.
    dense_mem = terms.dense_read_bytes_gpu / bw
    flop16 = terms.dense_flop16_per_token / g
    flop_q = terms.dense_flop_per_token / g - flop16
    a16 = terms.attn_peak_flop_s
    dense_cmp = (flop_q / rate_dec + flop16 / (a16 * terms.mfu_decode)) * b + (
        flop_q / rate_pre + flop16 / (a16 * terms.mfu_prefill)
    ) * p
    # Routed-expert GEMMs: the touched experts' weights, plus a fixed t0 per touched expert
    # problem (see expert_fixed_s).
    exp_mem = expert_stream_s(terms, tokens)
    exp_fixed = expert_fixed_s(terms, tokens)
    exp_flop = terms.expert_flop_per_token / g
    exp_cmp = exp_flop * (b / rate_dec + p / rate_pre)
    # Decode attention: reads every held sequence's KV; 16-bit math.
    att_mem = b / terms.dp_attn * kv_bytes_per_seq_gpu(terms, c) / bw
    att_flop = b * decode_pair_layers(terms, c) * terms.attn_decode_flop_per_pair_layer / g
    att_cmp = att_flop / (terms.attn_peak_flop_s * terms.mfu_decode)
    # Prefill attention: compute-bound, 16-bit math.
    pre_cmp = pp_pairs * terms.attn_flop_per_pair_layer / g / (terms.attn_peak_flop_s * terms.mfu_prefill)
    comm = comm_s(terms, tokens)
    mem = dense_mem + exp_mem + att_mem
    comp = dense_cmp + exp_cmp + att_cmp + pre_cmp
    total = (
        np.maximum(dense_mem, dense_cmp) + np.maximum(exp_mem, exp_cmp) + exp_fixed
        + np.maximum(att_mem, att_cmp) + pre_cmp + comm
    )
    return mem, comp, comm, total


def _step(terms: ShapeTerms, passes: F, mem: F, comp: F, comm: F, total: F, overheads: F) -> StepTime:
    """Assemble a StepTime from per-pass parts (seconds) repeated ``passes`` times."""
    ms = MS_PER_S
    over = overheads * terms.step_overhead_s * ms
    return StepTime(
        total_ms=passes * total * ms + over,
        memory_ms=passes * mem * ms,
        compute_ms=passes * comp * ms,
        comm_ms=passes * comm * ms,
        overhead_ms=over,
    )


def decode_step(
    terms: ShapeTerms,
    batch: ArrayLike,
    context_tokens: ArrayLike,
    prefill_tokens_per_step: ArrayLike = 0.0,
    prefill_pair_layers_per_step: ArrayLike = 0.0,
) -> StepTime:
    """One engine step with ``batch`` decoding sequences (plus optional chunked-prefill work).

    The prefill work of a step is split over its micro-batches like the decode sequences.
    """
    b = np.asarray(batch, dtype=float)
    m = np.clip(np.minimum(b, terms.pp), 1.0, None)
    mem, comp, comm, total = stage_pass_s(
        terms, b / m, context_tokens,
        np.asarray(prefill_tokens_per_step, dtype=float) / m,
        np.asarray(prefill_pair_layers_per_step, dtype=float) / m,
    )
    passes = np.full(np.broadcast(mem, comp, comm, total).shape, float(terms.pp))
    return _step(terms, passes, mem, comp, comm, total, np.ones_like(passes))


def decode_step_ms(terms: ShapeTerms, batch: ArrayLike, context_tokens: ArrayLike) -> F:
    """Time of one decode step (ms) of ``batch`` sequences at ``context_tokens`` (no prefill)."""
    return decode_step(terms, batch, context_tokens).total_ms


def decode_bound(terms: ShapeTerms, batch: ArrayLike, context_tokens: ArrayLike) -> NDArray[np.str_]:
    """What limits a decode step: ``memory``, ``compute`` or ``communication`` (per element)."""
    return decode_step(terms, batch, context_tokens).bound


def prefill(terms: ShapeTerms, prompt_tokens: ArrayLike, prefix_hit_rate: ArrayLike = 0.0, decode_seqs: ArrayLike = 0.0, context_tokens: ArrayLike = 0.0) -> StepTime:
    """Prefill of one prompt in chunks; the cached prefix (``prefix_hit_rate``) is skipped.

    ``decode_seqs`` other sequences at ``context_tokens`` decode in every chunk's step
    (continuous batching); 0 gives the prompt alone on the replica.
    """
    n = np.asarray(prompt_tokens, dtype=float)
    h = np.asarray(prefix_hit_rate, dtype=float)
    cached = np.floor(n * h)
    new = np.maximum(n - cached, 1.0)
    chunks = np.ceil(new / terms.prefill_chunk_tokens)
    pairs = attention_pair_layers(terms, new, cached)
    b = np.asarray(decode_seqs, dtype=float)
    mem, comp, comm, total = stage_pass_s(terms, b, context_tokens, new / chunks, pairs / chunks)
    passes = chunks + terms.pp - 1
    return _step(terms, passes, mem, comp, comm, total, chunks)


def prefill_ms(terms: ShapeTerms, prompt_tokens: ArrayLike, prefix_hit_rate: ArrayLike = 0.0) -> F:
    """Time (ms) to prefill one prompt of ``prompt_tokens`` alone on the replica."""
    return prefill(terms, prompt_tokens, prefix_hit_rate).total_ms
