"""Prefill and decode times: per-operator rooflines per pipeline-stage pass, plus communication,
fixed kernel time and the engine's host overhead.

One stage pass on the busiest GPU is a sequence of operators, each on its own roofline (all
arrays broadcast); operators run one after another and communication is not overlapped:

    t_pass = sum over operators of max(t_mem, t_flop) + t_fixed + t_comm

* HBM streaming (:func:`hbm_stream_s`): a kernel that reads ``S`` bytes reaches
  ``eta(S) = eta_max x S / (S + S_half)`` of the datasheet bandwidth -- a small per-GPU kernel
  spends most of its time launching, filling and draining (``S_half`` = what the achievable
  bandwidth moves in ``stream_kernel_us``, fitted). The dense GEMMs of a layer are four kernels
  (QKV, O, gate/up, down), so at high TP each reads little and streams far below the plateau;
  GEMMs in FP8/FP4/INT8 math add one activation-quantise kernel per GEMM input
  (:func:`dense_kernels_per_layer`).
* Kernel fixed time (:func:`kernel_fixed_s`): every kernel pays ``t0 = stream_kernel_us``
  (launch from the CUDA graph or stream, the first tiles' loads before the pipeline is full, the
  last wave's drain) whatever bounds its main loop, so an operator of ``K`` kernels takes
  ``max(bytes / BW, FLOP / rate) + K x t0``: the memory side carries t0 through ``eta(S)``, the
  compute side adds it. (A compute-bound operator used to hide its kernels' fixed time under its
  FLOP time; large-batch and prompt-chunk steps were too fast -- issue 8, AIC grid.)
* Dense GEMMs: the GPU's dense weights (the input embedding is a row lookup, not read), FLOP at
  the compute dtype's peak (16-bit weights -- LM head, attention for ``quant_scope: experts`` --
  at the bf16 peak) x ``mfu_decode`` for decode tokens, ``mfu_prefill`` for prompt tokens.
* Routed experts, per MoE layer (:func:`grouped_gemm_s`): a grouped-GEMM MoE layer (vLLM
  ``fused_moe``, SGLang/TensorRT-LLM CUTLASS MoE) is a fixed set of kernels -- routing, token
  permutation, two grouped GEMMs (gate/up, down), un-permute -- whatever the batch, so it pays a
  fixed ``moe_layer_fixed_us`` (fitted) per MoE layer; each touched expert's rows are padded up
  to the kernel's tile height (``shape.GROUPED_GEMM_TILE_ROWS``); and it reads only the experts
  the batch touches: ``E_local x (1 - (1 - k/E)^T)`` for ``T`` tokens routed uniformly.
* Block-scaled FP8 experts (``quant: fp8`` on a MoE model): tiles of
  ``shape.BLOCK_SCALED_TILE_ROWS`` (128) rows in steps that carry prompt tokens (DeepGEMM's
  contiguous layout), ``shape.DECODE_BLOCK_SCALED_TILE_ROWS`` (64) in decode-only steps (its
  masked layout under CUDA graphs), and the family's ``block_scaled_gemm_efficiency``
  on the expert GEMM rate (scales applied per 128-deep K block in the main loop).
* Mixed-input GEMMs (weights narrower than the math dtype: MXFP4 experts on Hopper in bf16,
  W4A16, FP8 weights on parts without FP8 math) dequantise the weights in the main loop, which
  competes with the tensor cores for issue slots: their FLOP rate is the family's
  ``mixed_input_gemm_efficiency`` x the math peak x MFU (fitted on measured rows).
* Decode attention reads every held sequence's KV (one kernel per layer); prefill attention is
  compute-bound; both 16-bit math.
* Attention data parallelism (``dp_attn > 1``): decode sequences spread evenly over the ranks,
  but one prompt's chunk is prefilled by ONE rank (its dense and attention FLOPs are not spread
  over the others); the routed experts of every rank's tokens still spread over all GPUs.
* A decode step that carries amortised prompt work is a mixture: prompts arrive as chunks of
  the engine's token budget (``prefill_chunk_tokens``) in a share ``f`` of the steps, the rest
  are decode-only (:func:`decode_step`). Prompt tokens never go through the touched-experts
  formula as if they were extra independent decode tokens in every step.
* Host overhead per step: decode-only steps replay CUDA graphs (``host_overhead_graph_ms``),
  steps that carry a prefill chunk run eagerly (``host_overhead_eager_ms``), per engine
  (``catalogs/engines.yaml``).

The breakdown is an exact partition of the time: each operator's roofline time (its kernels'
fixed time included) is attributed to memory or compute (whichever bounds it), the MoE layers'
fixed time and the host time to
overhead, so ``memory + compute + comm + overhead = total``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from solver.costmodel.comm import stage_comm_s
from solver.costmodel.memory import kv_bytes_per_seq_gpu
from solver.costmodel.shape import ACT_BYTES, ShapeTerms
from solver.units import MS_PER_S

F = NDArray[np.float64]

DENSE_KERNELS_PER_LAYER = 4
"""GEMM kernels of one transformer layer's dense part: QKV, O, gate/up, down."""
ACTIVATION_DTYPES_16 = ("bf16", "fp16")
"""Compute dtypes whose GEMMs read the activations as they are (weight-only formats, 16-bit)."""


def dense_kernels_per_layer(compute_dtype: ArrayLike) -> NDArray[np.int64]:
    """Kernels of a layer's dense part: the four GEMMs, plus, where the GEMMs run in a quantised
    dtype (FP8/FP4/INT8 math), one activation-quantise kernel per GEMM input (the engines quantise
    each GEMM's input to its dtype before the GEMM -- TensorRT-LLM ``static_quantize_e4m3_per_tensor``
    / FP4 ``fp4_quantize``, vLLM ``scaled_fp8_quant``); each small kernel pays ``stream_kernel_us``
    like any other. Fusion of some of them into the preceding norm is not assumed."""
    return DENSE_KERNELS_PER_LAYER * np.where(np.isin(compute_dtype, ACTIVATION_DTYPES_16), 1, 2)


@dataclass(frozen=True)
class StepTime:
    """A step's time and an exact partition of it (ms), arrays of the broadcast input shape.

    ``total = memory + compute + comm + overhead``: each operator's roofline time counts as
    memory or compute (whichever bounds it; its kernels' fixed time t0 is part of that side);
    ``overhead`` is the engine's host time and the MoE layers' fixed time.
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


# --------------------------------------------------------------------------- pure terms
def hbm_stream_s(nbytes: ArrayLike, kernels: ArrayLike, bw_bytes_s: float, half_bytes: float) -> F:
    """Seconds to read ``nbytes`` in ``kernels`` equal kernels.

    Each kernel of ``S`` bytes streams at ``eta_max x S / (S + S_half)`` of the peak, so the time
    is ``(nbytes + kernels x S_half) / (peak x eta_max)``; ``bw_bytes_s`` = peak x eta_max.
    """
    n = np.asarray(nbytes, dtype=float)
    k = np.asarray(kernels, dtype=float)
    return np.where(n > 0, (n + k * half_bytes) / bw_bytes_s, 0.0)


def kernel_fixed_s(kernels: ArrayLike, bw_bytes_s: float, half_bytes: float) -> F:
    """Fixed time (s) of ``kernels`` kernel launches: ``kernels x t0``, where ``t0`` (the
    family's ``stream_kernel_us``: launch, pipeline fill, last-wave drain) is what the achievable
    bandwidth moves in ``half_bytes`` (``S_half = BW x t0``). It is paid whether a kernel's main
    loop is bound by bandwidth or by math, so it is added to both sides of an operator's
    roofline: operator time = ``max(bytes / BW, FLOP / rate) + kernels x t0``."""
    return np.asarray(kernels, dtype=float) * (half_bytes / bw_bytes_s)


def touched_experts(tokens: ArrayLike, num_experts: int, k: int, local_experts: float) -> F:
    """Expected experts among a GPU's ``local_experts`` that ``tokens`` tokens route to:
    ``E_local x (1 - (1 - k/E)^T)`` (uniform routing)."""
    t = np.asarray(tokens, dtype=float)
    if num_experts == 0:
        return np.zeros_like(t)
    return local_experts * (1.0 - (1.0 - k / num_experts) ** t)


def padded_rows(rows: ArrayLike, touched: ArrayLike, tile: ArrayLike) -> F:
    """Rows a grouped GEMM computes when ``rows`` token rows fall evenly on ``touched`` experts and
    each expert's rows are padded up to a multiple of ``tile``."""
    r = np.asarray(rows, dtype=float)
    n = np.asarray(touched, dtype=float)
    safe = np.where(n > 0, n, 1.0)
    return np.where(n > 0, n * tile * np.ceil(r / (safe * tile) - 1e-9), 0.0)


def grouped_gemm_s(
    tokens: ArrayLike,
    rate: ArrayLike,
    *,
    num_experts: int,
    k: int,
    local_experts: float,
    expert_bytes: float,
    flop_per_row: float,
    bw_bytes_s: float,
    half_bytes: float,
    tile: ArrayLike,
    fixed_s: float,
) -> tuple[F, F, F]:
    """(memory, compute, fixed) seconds of one MoE layer's grouped GEMMs on one GPU.

    ``tokens`` of the stage route ``k`` copies each uniformly over ``num_experts``; the GPU holds
    ``local_experts`` (each ``expert_bytes``, ``flop_per_row`` FLOP per token row). Memory: the
    touched experts' weights in two kernels (gate/up, down); compute: the tile-padded rows at
    ``rate`` FLOP/s; both sides carry the two kernels' fixed time (:func:`kernel_fixed_s`);
    fixed: the layer's other kernels' fixed time (``moe_layer_fixed_us``), paid whenever a token
    arrives.
    """
    t = np.asarray(tokens, dtype=float)
    n = touched_experts(t, num_experts, k, local_experts)
    rows = t * k * local_experts / max(num_experts, 1)
    mem = hbm_stream_s(n * expert_bytes, 2.0, bw_bytes_s, half_bytes)
    cmp = padded_rows(rows, n, tile) * flop_per_row / np.asarray(rate, dtype=float)
    cmp = cmp + np.where(n > 0, kernel_fixed_s(2.0, bw_bytes_s, half_bytes), 0.0)
    fixed = np.where(t > 0, fixed_s, 0.0) * (num_experts > 0)
    return mem, cmp, fixed


def expert_touch_fraction(terms: ShapeTerms, tokens: ArrayLike) -> F:
    """Expected share of a MoE layer's experts that ``tokens`` tokens route to: 1 - (1 - k/E)^T."""
    if terms.num_experts == 0:
        return np.zeros_like(np.asarray(tokens, dtype=float))
    return touched_experts(tokens, terms.num_experts, terms.experts_per_token, 1.0)


def expert_gemms(terms: ShapeTerms, tokens: ArrayLike) -> F:
    """Expected expert GEMM problems one GPU runs in one stage pass of ``tokens`` tokens:
    touched experts it holds per MoE layer x the stage's MoE layers (0 for a dense model)."""
    return (
        touched_experts(tokens, terms.num_experts, terms.experts_per_token, terms.experts_per_gpu_layer)
        * terms.moe_layers / terms.pp
    )


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


def _roofline(mem: F, cmp: F) -> tuple[F, F]:
    """Split ``max(mem, cmp)`` into its memory-bound and compute-bound parts (one is 0)."""
    m_bound = mem >= cmp
    return np.where(m_bound, mem, 0.0), np.where(m_bound, 0.0, cmp)


def stage_pass_s(
    terms: ShapeTerms,
    decode_seqs: ArrayLike,
    context_tokens: ArrayLike,
    prefill_tokens: ArrayLike = 0.0,
    prefill_pair_layers: ArrayLike = 0.0,
    prefill_ranks: ArrayLike = 1.0,
    decode_only: bool = False,
) -> tuple[F, F, F, F]:
    """(memory, compute, communication, fixed) seconds of one stage pass on the busiest GPU.

    ``decode_seqs`` sequences (of the whole stage, spread over its ``dp_attn`` ranks) decode one
    token at ``context_tokens``; ``prefill_tokens`` prompt tokens (with ``prefill_pair_layers``
    attention pairs) ride along, spread evenly over ``prefill_ranks`` attention ranks (1: one
    rank prefills them all). ``decode_only``: the pass carries no prompt tokens and is replayed as
    a CUDA graph, so its expert GEMMs use the decode tile (``terms.decode_gemm_tile``: DeepGEMM's
    masked layout for block-scaled FP8 experts). The four parts add up to the pass's time.
    """
    b = np.asarray(decode_seqs, dtype=float)
    c = np.asarray(context_tokens, dtype=float)
    p = np.asarray(prefill_tokens, dtype=float)
    pairs = np.asarray(prefill_pair_layers, dtype=float)
    r = np.clip(np.asarray(prefill_ranks, dtype=float), 1.0, terms.dp_attn)
    dp = terms.dp_attn
    g = terms.gpus
    bw, half = terms.bw_bytes_s, terms.bw_half_bytes
    rate_dec = terms.gemm_peak_flop_s * terms.mfu_decode
    rate_pre = terms.gemm_peak_flop_s * terms.mfu_prefill
    a16 = terms.attn_peak_flop_s
    layers = terms.num_layers / terms.pp
    # prompt tokens on the busiest rank, in units of "evenly spread over the stage's GPUs"
    p_busy = p * dp / r
    # Dense GEMMs
    dense_k = dense_kernels_per_layer(terms.compute_dtype) * layers + 1
    dense_mem = hbm_stream_s(terms.dense_read_bytes_gpu, dense_k, bw, half)
    flop16 = terms.dense_flop16_per_token / g
    flop_q = terms.dense_flop_per_token / g - flop16
    dense_cmp = (flop_q / rate_dec + flop16 / (a16 * terms.mfu_decode)) * b + (
        flop_q / rate_pre + flop16 / (a16 * terms.mfu_prefill)
    ) * p_busy + kernel_fixed_s(dense_k, bw, half)
    dm, dc = _roofline(np.broadcast_to(dense_mem, np.shape(dense_cmp)), dense_cmp)
    # Routed experts: grouped GEMMs per MoE layer over the stage's tokens
    tokens = b + p
    moe = terms.moe_layers / terms.pp
    if terms.num_experts:
        # decode rows at mfu_decode, prompt rows at mfu_prefill: the harmonic mean per row
        safe = np.where(tokens > 0, tokens, 1.0)
        rate_mix = np.where(tokens > 0, safe / (b / rate_dec + p / rate_pre + (tokens == 0)), rate_dec)
        rate_mix = rate_mix * terms.expert_gemm_eff  # block-scaled FP8 experts: their own efficiency
        em, ec, efix = grouped_gemm_s(
            tokens, rate_mix, num_experts=terms.num_experts, k=terms.experts_per_token,
            local_experts=terms.experts_per_gpu_layer, expert_bytes=terms.expert_bytes_per_expert_gpu,
            flop_per_row=terms.expert_flop_per_row_gpu, bw_bytes_s=bw, half_bytes=half,
            tile=terms.decode_gemm_tile if decode_only else terms.grouped_gemm_tile,
            fixed_s=terms.moe_layer_fixed_s,
        )
        xm, xc = _roofline(em * moe, ec * moe)
        xfix = efix * moe
    else:
        xm = xc = xfix = np.zeros_like(tokens)
    # Decode attention: the busiest rank's sequences' KV, one kernel per layer; that kernel
    # (varlen: decode and prompt tokens in one launch) runs whenever the pass has either
    att_bytes = b / dp * kv_bytes_per_seq_gpu(terms, c)
    att_mem = hbm_stream_s(att_bytes, layers, bw, half)
    att_cmp = b * decode_pair_layers(terms, c) * terms.attn_decode_flop_per_pair_layer / g / (a16 * terms.mfu_decode)
    att_cmp = att_cmp + np.where((att_bytes > 0) | (p > 0), kernel_fixed_s(layers, bw, half), 0.0)
    am, ac = _roofline(att_mem, att_cmp)
    # Prefill attention: compute-bound
    pre_cmp = pairs * dp / r * terms.attn_flop_per_pair_layer / g / (a16 * terms.mfu_prefill)
    comm = stage_comm_s(
        rank_tokens=b / dp + p / r, stage_tokens=tokens, hidden_size=terms.hidden_size,
        act_bytes=ACT_BYTES, layers=layers, moe_layers=moe, tp=terms.tp, ep=terms.ep,
        stage_gpus=terms.stage_gpus, experts_per_token=terms.experts_per_token, pp=terms.pp,
        tp_link=terms.tp_cost, ep_link=terms.ep_cost, pp_link=terms.pp_cost,
        expert_tp=np.where(np.asarray(terms.dp_attn) > 1, terms.moe_tp, 1), expert_tp_link=terms.moe_tp_cost,
    )
    mem = dm + xm + am
    cmp = dc + xc + ac + pre_cmp
    return mem, cmp, comm, xfix


def _step(passes: ArrayLike, parts: tuple[F, F, F, F], host_s: ArrayLike) -> StepTime:
    """A StepTime from per-pass parts (seconds) repeated ``passes`` times plus host time."""
    ms = MS_PER_S
    mem, cmp, comm, fixed = (np.asarray(x, dtype=float) for x in parts)
    n = np.asarray(passes, dtype=float)
    over = n * fixed * ms + np.asarray(host_s, dtype=float) * ms
    memory_ms, compute_ms, comm_ms = n * mem * ms, n * cmp * ms, n * comm * ms
    return StepTime(
        total_ms=memory_ms + compute_ms + comm_ms + over,
        memory_ms=memory_ms,
        compute_ms=compute_ms,
        comm_ms=comm_ms,
        overhead_ms=over,
    )


def _mix(w: F, a: tuple[F, F, F, F], b: tuple[F, F, F, F]) -> tuple[F, F, F, F]:
    """``(1 - w) x a + w x b`` part by part."""
    return tuple((1.0 - w) * x + w * y for x, y in zip(a, b))  # type: ignore[return-value]


def chunk_mixture(terms: ShapeTerms, prefill_tokens: ArrayLike) -> tuple[F, F, F]:
    """How ``prefill_tokens`` prompt tokens per step (on average) arrive: (share of steps that
    carry a chunk, prompt tokens in such a step, attention ranks they are spread over).

    Each of the ``dp`` attention ranks schedules its own prompts in chunks of up to ``C``
    (``prefill_chunk_tokens``) tokens: a rank carries a chunk in a share ``f = min(1, p / dp / C)``
    of its steps; a synchronised step is a chunk step if any rank has one
    (``f_any = 1 - (1 - f)^dp``), and then ``dp f / f_any`` ranks prefill ``max(C, p / dp)``
    tokens each. Expected prompt tokens per step stay ``p``.
    """
    p = np.asarray(prefill_tokens, dtype=float)
    dp = terms.dp_attn
    c = float(terms.prefill_chunk_tokens)
    per_rank = p / dp
    f = np.minimum(1.0, per_rank / c)
    f_any = 1.0 - (1.0 - f) ** dp
    ranks = np.where(f_any > 0, dp * f / np.where(f_any > 0, f_any, 1.0), 1.0)
    chunk = np.where(p > 0, ranks * np.maximum(c, per_rank), 0.0)
    return f_any, chunk, ranks


def decode_step(
    terms: ShapeTerms,
    batch: ArrayLike,
    context_tokens: ArrayLike,
    prefill_tokens_per_step: ArrayLike = 0.0,
    prefill_pair_layers_per_step: ArrayLike = 0.0,
) -> StepTime:
    """Mean engine step with ``batch`` decoding sequences plus, on average,
    ``prefill_tokens_per_step`` prompt tokens (see :func:`chunk_mixture`).

    The step is ``(1 - f)`` decode-only steps (CUDA graphs) and ``f`` steps with a prompt chunk
    (eager); with pipeline parallelism each is ``pp`` stage passes of micro-batches of
    ``batch / min(batch, pp)`` sequences.
    """
    b = np.asarray(batch, dtype=float)
    p = np.asarray(prefill_tokens_per_step, dtype=float)
    pairs = np.asarray(prefill_pair_layers_per_step, dtype=float)
    m = np.clip(np.minimum(b, terms.pp), 1.0, None)
    f, chunk, ranks = chunk_mixture(terms, p)
    pairs_chunk = np.where(p > 0, pairs * chunk / np.where(p > 0, p, 1.0), 0.0)
    plain = stage_pass_s(terms, b / m, context_tokens, decode_only=True)
    loaded = stage_pass_s(terms, b / m, context_tokens, chunk / m, pairs_chunk / m, ranks)
    parts = _mix(f, plain, loaded)
    host = (1.0 - f) * terms.host_overhead_graph_s + f * terms.host_overhead_eager_s
    passes = np.full(np.broadcast(*parts, host).shape, terms.pp, dtype=float)
    return _step(passes, parts, host)


def decode_step_ms(terms: ShapeTerms, batch: ArrayLike, context_tokens: ArrayLike) -> F:
    """Time of one decode step (ms) of ``batch`` sequences at ``context_tokens`` (no prefill)."""
    return decode_step(terms, batch, context_tokens).total_ms


def decode_bound(terms: ShapeTerms, batch: ArrayLike, context_tokens: ArrayLike) -> NDArray[np.str_]:
    """What limits a decode step: ``memory``, ``compute`` or ``communication`` (per element)."""
    return decode_step(terms, batch, context_tokens).bound


def prefill(terms: ShapeTerms, prompt_tokens: ArrayLike, prefix_hit_rate: ArrayLike = 0.0, decode_seqs: ArrayLike = 0.0, context_tokens: ArrayLike = 0.0) -> StepTime:
    """Prefill of one prompt in chunks on one attention rank; the cached prefix is skipped.

    ``decode_seqs`` other sequences at ``context_tokens`` decode in every chunk's step
    (continuous batching); 0 gives the prompt alone on the replica. Chunks pipeline through the
    stages: ``n_chunks + pp - 1`` stage passes, one eager host overhead per chunk.
    """
    n = np.asarray(prompt_tokens, dtype=float)
    h = np.asarray(prefix_hit_rate, dtype=float)
    cached = np.floor(n * h)
    new = np.maximum(n - cached, 1.0)
    chunks = np.ceil(new / terms.prefill_chunk_tokens)
    pairs = attention_pair_layers(terms, new, cached)
    b = np.asarray(decode_seqs, dtype=float)
    parts = stage_pass_s(terms, b, context_tokens, new / chunks, pairs / chunks, 1.0)
    passes = chunks + terms.pp - 1
    return _step(passes, parts, chunks * terms.host_overhead_eager_s)


def prefill_ms(terms: ShapeTerms, prompt_tokens: ArrayLike, prefix_hit_rate: ArrayLike = 0.0) -> F:
    """Time (ms) to prefill one prompt of ``prompt_tokens`` alone on the replica."""
    return prefill(terms, prompt_tokens, prefix_hit_rate).total_ms
