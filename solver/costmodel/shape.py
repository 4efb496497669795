"""A replica's shape (model, hardware, formats, parallelism) and its per-shape constants.

Parallelism convention (the one vLLM, SGLang and TensorRT-LLM share for MoE serving):

* A replica spans ``gpus = max(tp, ep) x pp`` GPUs: ``pp`` pipeline stages of
  ``stage_gpus = max(tp, ep)`` GPUs each.
* Dense parts (attention, dense FFN, shared experts, embeddings, router) are tensor-parallel over
  ``tp`` GPUs. When ``ep > tp`` the stage runs ``dp_attn = ep / tp`` data-parallel copies of
  them ("attention DP", TensorRT-LLM's DEP, SGLang's ``--enable-dp-attention``); each copy serves
  its own share of the sequences and holds their KV cache.
* Routed experts are spread over all ``stage_gpus`` GPUs of a stage: over ``ep`` groups by whole
  experts, and tensor-parallel inside a group when ``ep < tp``. Either way each GPU holds
  ``1 / stage_gpus`` of a stage's expert weights; ``ep`` changes the communication (all-to-all
  instead of all-reduce) and the number of expert weights a step must read per GPU.
* ``tp`` and ``ep`` must divide one another; ``ep = 1`` for dense models.
* Expert TP inside attention DP (``moe_tp > 0``, what the engines run for large MoE: TensorRT-LLM
  ``moe_tensor_parallel_size`` x ``moe_expert_parallel_size`` under attention DP): the stage has
  ``ep x moe_tp`` GPUs, ``tp`` divides it, the dense parts run ``dp_attn = ep x moe_tp / tp``
  copies, and each of the ``ep`` expert groups splits its experts' intermediate width over its
  ``moe_tp`` GPUs, which sum their partial outputs with one all-reduce per MoE layer.
  ``moe_tp = 0`` (the default) derives the split as above (``stage_gpus / ep``).

Everything that depends on the shape and the serving engine only (bytes, FLOP per token,
bandwidths, links and their collective costs, the engine's memory rule, chunk size and host
times from ``catalogs/engines.yaml``) is computed once by :func:`shape_terms`; the functions of :mod:`solver.costmodel.memory`,
:mod:`~solver.costmodel.compute` and :mod:`~solver.costmodel.operating` then vectorise over
batch and context arrays with numpy.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from solver.architecture import ParamCounts, param_counts
from solver.catalog import Catalog
from solver.costmodel.comm import NO_LINK, LinkCost
from solver.errors import InputError
from solver.schemas import ModelArch
from solver.topology import LOCAL, Link, fits_scaleup, link_for_group
from solver.units import GB, GIB, TB, TFLOP

UTILISATION = 0.90
"""Share of HBM vLLM may use by default (``gpu_memory_utilization``); each engine's own rule is in
``catalogs/engines.yaml`` (:func:`usable_bytes`)."""
RUNTIME_OVERHEAD_GIB = 2.0
"""Per-GPU memory outside weights and KV: CUDA context (~0.5 GiB), cuBLAS/NCCL workspaces and
CUDA-graph pools (~1 GiB), allocator fragmentation. Order of magnitude from vLLM's start-up
memory profile logs; not fitted."""
PREFILL_CHUNK_TOKENS = 2048
"""vLLM's default token budget per chunked-prefill step (``max_num_batched_tokens``); each
engine's own default is ``chunk_tokens`` in ``catalogs/engines.yaml``, which also sizes the
activations reserved per GPU (:func:`shape_terms`)."""
GROUPED_GEMM_TILE_ROWS = 64
"""Token rows per tile of a grouped-GEMM MoE kernel: Hopper's warpgroup MMA instruction
(``wgmma``) is 64 rows high and the CUTLASS grouped-GEMM tile shapes the engines dispatch start
at M = 64 (https://github.com/NVIDIA/cutlass, ``examples/57_hopper_grouped_gemm``). An expert
that receives one token still computes a 64-row tile."""
BLOCK_SCALED_TILE_ROWS = 128
"""Token rows per tile of a block-scaled FP8 grouped GEMM (FP8 routed experts with one scale per
128x128 weight block): DeepGEMM's m-grouped contiguous kernels, which TensorRT-LLM vendors
(``cpp/include/tensorrt_llm/deep_gemm``) and SGLang/vLLM call for such experts, need each
expert's rows aligned to the M block (``get_mk_alignment_for_contiguous_layout()``, 128;
https://github.com/deepseek-ai/DeepGEMM). An expert that receives one token computes 128 rows. This is the layout of steps that carry prompt
tokens; decode-only steps use :data:`DECODE_BLOCK_SCALED_TILE_ROWS`."""
DECODE_BLOCK_SCALED_TILE_ROWS = 64
"""Token rows per tile of a block-scaled FP8 grouped GEMM in a decode-only step on Hopper (the
``block_scaled_decode_tile_rows`` of ``catalogs/efficiency.yaml``'s hopper entry; other families
keep 128: no source read for their kernels' choice). Decode steps are
replayed as CUDA graphs, where the host does not know how many tokens each expert receives, so
the engines call DeepGEMM's *masked* grouped GEMM (``m_grouped_fp8_gemm_nt_masked``: each expert
a fixed-size slot, a mask giving its valid rows; DeepGEMM README, "Grouped GEMMs (masked
layout)"), not the contiguous one. Its Hopper heuristic picks the M block from {64, 128}
(``csrc/jit_kernels/heuristics/sm90.hpp``, ``GemmType::MGroupedMasked``), and at the few rows per
expert of a decode step (``expected_m`` well under 64) one 64-row block per expert is the
cheaper choice, so an expert that receives one token computes 64 rows -- the 64-row ``wgmma``
height, as for other grouped GEMMs (:data:`GROUPED_GEMM_TILE_ROWS`). TensorRT-LLM's own Hopper path
(``CutlassFp8BlockScaleGemmRunner::moeGemm`` -> its vendored DeepGEMM, ``GroupedWithOffset``)
picks the same: ``get_best_gemm_config`` takes a 64-row M block when the expected rows per expert
are <= 64, else 128 (``cpp/include/tensorrt_llm/deep_gemm/jit_utils.cuh``, commit 3aa6b11)."""
ACT_BYTES = 2
"""Bytes per activation element (bf16) for activations and collectives."""


@dataclass(frozen=True)
class Shape:
    """One replica configuration, by catalog ids. ``system=None`` takes the accelerator's
    default (largest scale-up) node shape. See the module docstring for tp/pp/ep."""

    model: str
    accelerator: str
    system: str | None
    quant: str
    kv_dtype: str
    tp: int = 1
    pp: int = 1
    ep: int = 1
    moe_tp: int = 0
    """Expert tensor parallelism inside each EP group; 0 derives it (``stage_gpus / ep``)."""

    @property
    def stage_gpus(self) -> int:
        """GPUs per pipeline stage: ``max(tp, ep)``, or ``max(tp, ep x moe_tp)`` when ``moe_tp`` is set."""
        return max(self.tp, self.ep * self.moe_tp if self.moe_tp else self.ep)

    @property
    def gpus(self) -> int:
        """GPUs in one replica: ``max(tp, ep) x pp``."""
        return self.stage_gpus * self.pp

    @property
    def dp_attn(self) -> int:
        """Data-parallel copies of the dense parts inside a stage (``ep / tp`` when ep > tp)."""
        return self.stage_gpus // self.tp


@dataclass(frozen=True)
class ShapeTerms:
    """Per-shape constants of the cost model. Bytes, FLOP and seconds; per GPU unless named.

    ``kv_*_bytes_per_token_gpu`` are what one GPU stores per token of one sequence it holds
    (over its stage's layers). ``*_flop_per_token`` are whole-replica FLOP; divide by ``gpus``
    for one GPU's share (the work is spread evenly over TP, EP/attention-DP and PP).
    """

    shape: Shape
    system_id: str
    family: str
    compute_dtype: str
    gpus: int
    tp: int
    pp: int
    ep: int
    stage_gpus: int
    dp_attn: int
    moe_tp: int
    """GPUs each expert is split over (its intermediate width): ``stage_gpus / ep``."""
    # model facts
    num_layers: int
    moe_layers: int
    hidden_size: int
    num_experts: int
    experts_per_token: int
    window_tokens: int
    """Sliding-window length (0: no windowed layers)."""
    full_attn_layers: int
    window_attn_layers: int
    attn_flop_per_pair_layer: float
    """Prefill FLOP of one (query, key) pair in one layer, all heads: 2 x n_h x (d_qk + d_v)."""
    attn_decode_flop_per_pair_layer: float
    """Decode FLOP per (query, key) pair and layer; MLA decodes against the latent (weights
    absorbed): 2 x n_h x ((r + d_rope) + r), GQA/MHA as in prefill."""
    # memory, bytes per GPU
    hbm_bytes: float
    usable_bytes: float
    weight_bytes_gpu: float
    dense_weight_bytes_gpu: float
    expert_weight_bytes_gpu: float
    overhead_bytes_gpu: float
    activation_bytes_gpu: float
    kv_full_bytes_per_token_gpu: float
    kv_window_bytes_per_token_gpu: float
    kv_bytes_per_token_model: float
    """Whole-model KV bytes per token (all layers, all KV heads), before any split."""
    weight_bytes_model: float
    dense_read_bytes_gpu: float
    """Dense weights one step streams: ``dense_weight_bytes_gpu`` less the input embedding table
    (a lookup of one row per token, not a matrix read)."""
    expert_bytes_per_expert_gpu: float
    """One routed expert's weights (all its matrices, one MoE layer) as held by one GPU."""
    experts_per_gpu_layer: float
    """Routed experts (or expert slices) one GPU holds in one MoE layer: ``num_experts / ep``."""
    # compute, whole replica
    dense_flop_per_token: float
    """2 x (non-expert matmul parameters): every token runs them (input embedding excluded)."""
    expert_flop_per_token: float
    """2 x routed-expert parameters one token uses."""
    dense_flop16_per_token: float
    """The part of ``dense_flop_per_token`` whose weights stay 16-bit under the format's scope
    (the LM head always; attention and dense FFNs too for ``quant_scope: experts``): it runs at
    the bf16/fp16 peak. Equals ``dense_flop_per_token`` for 16-bit formats."""
    # rates and efficiencies
    peak_bw_bytes_s: float
    """Datasheet HBM bandwidth."""
    bw_bytes_s: float
    """Achievable HBM bandwidth: peak x eta_bw."""
    peak_flop_s: float
    mixed_input: bool
    """Weights narrower than the math dtype, dequantised in the GEMM main loop (:data:`MATH_BYTES`)."""
    mixed_input_gemm_eff: float
    """``Efficiency.mixed_input_gemm_efficiency``: such GEMMs' share of the math dtype's peak."""
    """Dense peak of the matmuls' compute dtype."""
    attn_peak_flop_s: float
    """Dense bf16/fp16 peak: attention (QK^T, softmax, PV) and 16-bit GEMMs run at it."""
    mfu_prefill: float
    mfu_decode: float
    stream_kernel_s: float
    """Fixed time of one streaming kernel (``Efficiency.stream_kernel_us``)."""
    moe_layer_fixed_s: float
    """Fixed time of one MoE layer's kernels on one GPU (``Efficiency.moe_layer_fixed_us``)."""
    efficiency_measured: bool
    """False when the family's factors were fitted on no measurement of its own (``Efficiency.measured``)."""
    stated_error_pct: float | None
    """Stated throughput error on this family, % (``Efficiency.error_pct``)."""
    expert_flop_per_row_gpu: float
    """FLOP of one token row through one expert as held by one GPU (2 x its parameters)."""
    grouped_gemm_tile: int
    """Token rows per expert tile of the grouped GEMMs in a step that carries prompt tokens."""
    decode_gemm_tile: int
    """Token rows per expert tile in a decode-only step: the family's
    ``block_scaled_decode_tile_rows`` for block-scaled FP8 experts (Hopper: 64, see
    :data:`DECODE_BLOCK_SCALED_TILE_ROWS`), else :data:`GROUPED_GEMM_TILE_ROWS`."""
    block_scaled_experts: bool
    """Routed experts in block-scaled FP8 (a model released so, served in ``fp8``)."""
    expert_gemm_eff: float
    """Share of ``gemm_peak_flop_s`` x MFU the routed experts' grouped GEMMs reach: the family's
    ``block_scaled_gemm_efficiency`` for FP8 experts (block-scaled, :data:`BLOCK_SCALED_TILE_ROWS`),
    1 otherwise."""
    engine: str
    host_overhead_graph_s: float
    """Host time of a decode-only step (CUDA graph replay), from the engine profile."""
    host_overhead_eager_s: float
    """Host time of a step with a prefill chunk (eager), from the engine profile."""
    request_overhead_s: float
    """Per-request time outside the steps (admission, tokenisation, first-token return), in TTFT."""
    tp_link: Link
    ep_link: Link
    pp_link: Link
    tp_cost: LinkCost
    ep_cost: LinkCost
    pp_cost: LinkCost
    prefill_chunk_tokens: int = PREFILL_CHUNK_TOKENS
    moe_tp_cost: LinkCost = NO_LINK
    """The expert-TP group's link when it reduces its own partial outputs (``moe_tp > 1`` under
    attention DP; otherwise the TP all-reduce does it and this is ``NO_LINK``)."""

    @property
    def bw_half_bytes(self) -> float:
        """Bytes per kernel at which streaming reaches half of ``eta_bw``: what the achievable
        bandwidth moves in one kernel's fixed time."""
        return self.bw_bytes_s * self.stream_kernel_s

    @property
    def gemm_peak_flop_s(self) -> float:
        """Peak FLOP/s of the quantised-weight GEMMs: the math dtype's peak, times
        ``mixed_input_gemm_eff`` where the weights are dequantised in the main loop."""
        return self.peak_flop_s * np.where(self.mixed_input, self.mixed_input_gemm_eff, 1.0)


def with_efficiency(
    terms: ShapeTerms,
    *,
    eta_bw: float | None = None,
    mfu_prefill: float | None = None,
    mfu_decode: float | None = None,
    stream_kernel_us: float | None = None,
    moe_layer_fixed_us: float | None = None,
    mixed_input_gemm_efficiency: float | None = None,
    block_scaled_gemm_efficiency: float | None = None,
    host_overhead_graph_ms: float | None = None,
    host_overhead_eager_ms: float | None = None,
    request_overhead_ms: float | None = None,
    collective_factor: float | None = None,
) -> ShapeTerms:
    """The same shape with other efficiency factors (for calibration); ``None`` keeps a factor.
    ``collective_factor`` multiplies the links' current plateau efficiency (capped at 1)."""
    changes: dict[str, Any] = {}
    if collective_factor is not None:
        for k in ("tp_cost", "ep_cost", "pp_cost", "moe_tp_cost"):
            changes[k] = scale_collectives(getattr(terms, k), collective_factor)
    if eta_bw is not None:
        changes["bw_bytes_s"] = terms.peak_bw_bytes_s * eta_bw
    if mfu_prefill is not None:
        changes["mfu_prefill"] = mfu_prefill
    if mfu_decode is not None:
        changes["mfu_decode"] = mfu_decode
    if stream_kernel_us is not None:
        changes["stream_kernel_s"] = stream_kernel_us / 1e6
    if moe_layer_fixed_us is not None:
        changes["moe_layer_fixed_s"] = moe_layer_fixed_us / 1e6
    if mixed_input_gemm_efficiency is not None:
        changes["mixed_input_gemm_eff"] = mixed_input_gemm_efficiency
    if block_scaled_gemm_efficiency is not None and terms.block_scaled_experts:
        changes["expert_gemm_eff"] = block_scaled_gemm_efficiency
    if host_overhead_graph_ms is not None:
        changes["host_overhead_graph_s"] = host_overhead_graph_ms / 1e3
    if host_overhead_eager_ms is not None:
        changes["host_overhead_eager_s"] = host_overhead_eager_ms / 1e3
    if request_overhead_ms is not None:
        changes["request_overhead_s"] = request_overhead_ms / 1e3
    return replace(terms, **changes)


def _kv_split(m: ModelArch, tp: int) -> float:
    """KV heads one GPU stores: split over TP while n_kv >= TP, else one head (replicated)."""
    return max(1.0, m.num_kv_heads / tp)


@dataclass(frozen=True)
class WeightGroups:
    """A model's weights in a format, by how they are stored and read (whole model)."""

    quantised_dense_params: float
    """Non-expert matmul weights the format covers (0 for ``quant_scope: experts``)."""
    plain_dense_params: float
    """Non-expert weights kept 16-bit: embeddings, LM head, router, norms (+ attention and dense
    FFNs for ``quant_scope: experts``)."""
    expert_params: float
    """Routed experts, always in the format."""
    dense_bytes: float
    expert_bytes: float
    lookup_bytes: float
    """The input embedding table's bytes (read by row lookups, not streamed per step)."""
    plain_matmul_params: float
    """Matmul weights among ``plain_dense_params`` (the input embedding, a lookup, excluded)."""


def weight_groups(m: ModelArch, bytes_per_weight: float, pc: ParamCounts | None = None) -> WeightGroups:
    """Split a model's weights by format scope.

    Quantised checkpoints (FP8, FP4, INT4: ``bytes_per_weight < 2``) keep the token embedding,
    the LM head, the router and the norms in 16-bit (ModelOpt, llm-compressor and the native
    FP8/MXFP4 releases all exclude them); a model whose release also keeps attention in 16-bit
    says ``quant_scope: experts``. 16-bit or wider formats store everything alike. ``pc``:
    ``param_counts(m)`` when the caller has it.
    """
    pc = pc if pc is not None else param_counts(m)
    hi = max(bytes_per_weight, 2.0)
    matmul = pc.attention + pc.dense_ffn + pc.shared_expert
    side = pc.embedding_input + pc.lm_head + pc.router + pc.norms
    if m.quant_scope == "experts" and m.moe is not None:
        q_dense, plain = 0.0, float(matmul + side)
        plain_mm = float(matmul + pc.lm_head)
    else:
        q_dense, plain = float(matmul), float(side)
        plain_mm = float(pc.lm_head)
    return WeightGroups(
        quantised_dense_params=q_dense,
        plain_dense_params=plain,
        expert_params=float(pc.expert_ffn_total),
        dense_bytes=q_dense * bytes_per_weight + plain * hi,
        expert_bytes=pc.expert_ffn_total * bytes_per_weight,
        lookup_bytes=pc.embedding_input * hi,
        plain_matmul_params=plain_mm,
    )


def check_shape(cat: Catalog, shape: Shape, engine: str | None = None) -> str | None:
    """Why a shape cannot run at all (unknown ids raise ``InputError``); ``None`` if it can.

    ``engine`` (an ``engines.yaml`` id; ``None`` checks no engine) must serve the format on the
    accelerator's family.

    Memory is not checked here: whether the weights and KV fit is a question of the operating
    point (see :func:`solver.costmodel.memory.fit_reason`).
    """
    m = cat.model(shape.model)
    acc = cat.accelerator(shape.accelerator)
    cat.quantization(shape.quant)
    cat.kv_dtype(shape.kv_dtype)
    for name in ("tp", "pp", "ep"):
        v = getattr(shape, name)
        if not isinstance(v, int) or v < 1:
            return f"{name} must be a positive integer, got {v!r}"
    if shape.system is not None:
        system = cat.system(shape.system)
        if system.accelerator != acc.id:
            return f"system {system.id!r} is built from {system.accelerator!r}, not {acc.id!r}"
    elif not cat.systems_for(acc.id):
        return f"no system in the catalog uses accelerator {acc.id!r}"
    else:
        system = cat.default_system(acc.id)
    if cat.quant_support(acc.id, shape.quant) is None:
        return (
            f"quantization {shape.quant!r} is not supported on {acc.id!r} "
            f"(supported: {', '.join(cat.supported_quantizations(acc.id))})"
        )
    q = cat.quantization(shape.quant)
    if shape.kv_dtype not in q.kv_dtypes:
        return f"KV dtype {shape.kv_dtype!r} is not usable with {shape.quant!r} (usable: {', '.join(q.kv_dtypes)})"
    if not cat.kv_supported(acc.id, shape.kv_dtype):
        return f"KV dtype {shape.kv_dtype!r} is not supported on {acc.id!r}"
    tp, pp, ep = shape.tp, shape.pp, shape.ep
    if m.num_attention_heads % tp:
        return f"tp={tp} does not divide the {m.num_attention_heads} attention heads of {m.id}"
    n_kv = m.num_kv_heads
    if m.attention.kind != "mla" and n_kv % tp and tp % n_kv:
        return f"tp={tp} and the {n_kv} KV heads of {m.id} must divide one another"
    if pp > m.num_layers:
        return f"pp={pp} exceeds the {m.num_layers} layers of {m.id}"
    if ep > 1 and not m.moe:
        return f"ep={ep} needs a mixture-of-experts model; {m.id} is dense"
    if m.moe and m.moe.num_experts % ep:
        return f"ep={ep} does not divide the {m.moe.num_experts} experts of {m.id}"
    mtp = shape.moe_tp
    if not isinstance(mtp, int) or mtp < 0:
        return f"moe_tp must be a non-negative integer (0: derived), got {mtp!r}"
    if mtp:
        if not m.moe:
            return f"moe_tp={mtp} needs a mixture-of-experts model; {m.id} is dense"
        if (ep * mtp) % tp:
            return f"moe_tp={mtp} x ep={ep} = {ep * mtp} GPUs must be a multiple of tp={tp}"
        if m.moe.moe_intermediate_size % mtp:
            return f"moe_tp={mtp} does not divide the {m.moe.moe_intermediate_size}-wide experts of {m.id}"
        if not fits_scaleup(system, mtp):
            return f"moe_tp={mtp} exceeds the {system.scaleup_domain_gpus}-GPU scale-up domain of {system.id}"
    elif tp % ep and ep % tp:
        return f"tp={tp} and ep={ep} must divide one another"
    if not fits_scaleup(system, tp):
        return (
            f"tp={tp} exceeds the {system.scaleup_domain_gpus}-GPU scale-up domain of "
            f"{system.id} (tensor parallelism needs one NVLink/fabric domain)"
        )
    try:
        cat.efficiency_for(acc.id)
    except InputError as exc:
        return str(exc)
    if engine is not None:
        return cat.engine_reason(engine, acc.id, shape.quant)
    return None


def usable_bytes(policy: str, fraction: float, hbm: float, fixed: float) -> float:
    """Bytes an engine lets weights + runtime + activations + KV take on one GPU of ``hbm`` bytes.

    ``total-fraction`` (vLLM, SGLang): ``fraction x hbm``. ``free-after-weights`` (TensorRT-LLM):
    the ``fixed`` bytes (weights, runtime, activations) plus ``fraction`` of what they leave.
    """
    if policy == "free-after-weights":
        return min(fixed + fraction * max(hbm - fixed, 0.0), hbm)
    return fraction * hbm


def link_cost(cat: Catalog, link: Link) -> LinkCost:
    """The collective parameters of a group's link (its kind's profile + the path latency)."""
    if link.kind == "local":
        return NO_LINK
    prof = cat.link_profile(link.kind)
    return LinkCost(
        bandwidth_bytes_s=link.bandwidth_gb_s * GB,
        latency_s=(prof.latency_us + link.latency_us) * 1e-6,
        bw_efficiency=prof.bw_efficiency,
        saturation_bytes=prof.saturation_mb * 1e6,
        ramp=prof.ramp,
    )


MATH_BYTES = {"fp4": 0.5, "fp8": 1.0, "int8": 1.0, "bf16": 2.0, "fp16": 2.0}
"""Bytes per operand of a GEMM's math dtype. Weights with fewer than 3/4 of those bytes (block
scales included: MXFP4 0.53 B on fp8 or bf16 math, W4A16 on bf16, FP8 weights on bf16-only parts)
are a mixed-input GEMM; NVFP4 on fp4 math (0.56 vs 0.5) and FP8 on fp8 math are native."""


def scale_collectives(cost: LinkCost, factor: float) -> LinkCost:
    """A link's collective cost with its plateau efficiency times ``factor`` (capped at 1)."""
    if factor == 1.0 or cost is NO_LINK:
        return cost
    return replace(cost, bw_efficiency=min(1.0, cost.bw_efficiency * factor))


def _peak_flops(cat: Catalog, shape: Shape, engine: str) -> tuple[str, float]:
    """Compute dtype of the matmuls and its dense peak (FLOP/s); the engine may run a format's
    GEMMs in another dtype (``compute_dtype_overrides``); falls back to bf16/fp16."""
    acc = cat.accelerator(shape.accelerator)
    dtype = cat.compute_dtype(acc.id, shape.quant)
    dtype = cat.engine(engine).compute_dtype_overrides.get(shape.quant, {}).get(acc.family, dtype)
    table = acc.dense_tflops
    for d in (dtype, "bf16", "fp16"):
        if d in table:
            return d, table[d] * TFLOP
    raise InputError(f"{acc.id!r} has no {dtype} or bf16/fp16 peak in the catalog")


def shape_terms(
    cat: Catalog, shape: Shape, engine: str | None = None, cuda_graphs: bool = True
) -> ShapeTerms:
    """Per-shape constants under ``engine`` (default: the catalog's ``default_engine``); raises
    ``InputError`` with :func:`check_shape`'s reason if invalid. ``cuda_graphs=False`` (vLLM
    ``--enforce-eager``, SGLang ``--disable-cuda-graph``) makes decode-only steps pay the eager
    host time too."""
    engine = engine or cat.default_engine
    eng = cat.engine(engine)
    reason = check_shape(cat, shape, engine)
    if reason:
        raise InputError(reason)
    m = cat.model(shape.model)
    acc = cat.accelerator(shape.accelerator)
    system = cat.system(shape.system) if shape.system else cat.default_system(acc.id)
    q = cat.quantization(shape.quant)
    kv = cat.kv_dtype(shape.kv_dtype)
    eff = cat.efficiency_for(acc.id, model=shape.model, quant=shape.quant, serving_engine=eng.id)
    pc = param_counts(m)
    tp, pp, ep = shape.tp, shape.pp, shape.ep
    stage = shape.stage_gpus

    # Weights: the format's bytes (incl. scale overhead) for the groups it covers, 16-bit for
    # the rest (see weight_groups); dense parts over TP x PP, routed experts over all GPUs of
    # the replica (see module docstring).
    bpw = q.bytes_per_weight
    wg = weight_groups(m, bpw, pc)
    dense_w = wg.dense_bytes / (tp * pp)
    expert_w = wg.expert_bytes / (stage * pp)
    n_exp = m.moe.num_experts if m.moe else 0
    exp_per_gpu_layer = n_exp / ep if m.moe else 0.0
    # one expert is whole on its GPU when ep >= tp, else split over the tp / ep GPUs of its group
    exp_bytes_one = pc.expert_params * bpw / (stage // ep) if m.moe else 0.0

    # KV per token: GQA/MHA 2 x n_kv x d_h per layer; MLA one latent (r + d_rope) per layer,
    # which every TP rank keeps whole (vLLM/SGLang replicate the MLA cache across TP).
    a = m.attention
    if a.kind == "mla":
        per_layer_model = (a.kv_lora_rank or 0) + (a.qk_rope_head_dim or 0)
        per_layer_gpu = per_layer_model
        d_qk = (a.qk_nope_head_dim or 0) + (a.qk_rope_head_dim or 0)
        d_v = a.v_head_dim or m.head_dim
        decode_pair = 2.0 * m.num_attention_heads * (2 * (a.kv_lora_rank or 0) + (a.qk_rope_head_dim or 0))
    else:
        per_layer_model = 2 * m.num_kv_heads * m.head_dim
        per_layer_gpu = 2 * _kv_split(m, tp) * m.head_dim
        d_qk = d_v = m.head_dim
        decode_pair = 2.0 * m.num_attention_heads * (d_qk + d_v)
    window_layers = a.sliding_window_layers if a.sliding_window else 0
    full_layers = m.num_layers - window_layers
    kvb = kv.bytes_per_element
    kv_model = per_layer_model * m.num_layers * kvb

    # Activations of one step (per GPU): residual stream, q/k/v/o and the widest FFN
    # intermediate (gate+up) for the step's tokens, plus fp32 logits of up to 1024 rows. The
    # engine sizes its activation buffers for its own token budget per step (``chunk_tokens``:
    # vLLM max_num_batched_tokens 2048, TensorRT-LLM max_num_tokens 8192), so that budget, not
    # vLLM's, sets the memory held back from the KV cache.
    ffn_width = max(m.intermediate_size, (m.moe.moe_intermediate_size * m.moe.experts_per_token) if m.moe else 0)
    act = eng.chunk_tokens * (4 * m.hidden_size + 2 * ffn_width / tp) * ACT_BYTES
    act += min(eng.chunk_tokens, 1024) * m.vocab_size * 4 / tp

    dense_matmul = pc.dense - pc.embedding_input
    compute_dtype, peak = _peak_flops(cat, shape, eng.id)
    # FP8 routed experts of a model released in FP8 (DeepSeek-V3/R1: one scale per 128x128 weight
    # block) run as block-scaled grouped GEMMs. Other models' FP8 checkpoints (ModelOpt,
    # llm-compressor) scale per tensor or per channel and run as plain FP8 grouped GEMMs -- so
    # Qwen3's own block-scaled FP8 releases are modelled as per-tensor (the catalog does not say
    # which FP8 checkpoint a plan serves).
    block_scaled = (bool(m.moe) and shape.quant == "fp8" and compute_dtype == "fp8"
                    and m.native_quantization == "fp8")
    moe_tp = stage // ep
    # under attention DP an explicit expert-TP group sums its partial outputs itself
    moe_tp_link = link_for_group(system, moe_tp) if (shape.dp_attn > 1 and moe_tp > 1) else LOCAL
    tp_link = link_for_group(system, tp) if tp > 1 else LOCAL
    ep_link = link_for_group(system, stage) if ep > 1 else LOCAL
    pp_link = link_for_group(system, stage * pp) if pp > 1 else LOCAL
    hbm = acc.hbm_gib * GIB
    overhead = RUNTIME_OVERHEAD_GIB * GIB
    fixed = dense_w + expert_w + overhead + act
    return ShapeTerms(
        shape=shape,
        system_id=system.id,
        family=acc.family,
        compute_dtype=compute_dtype,
        gpus=shape.gpus,
        tp=tp,
        pp=pp,
        ep=ep,
        stage_gpus=stage,
        dp_attn=shape.dp_attn,
        moe_tp=moe_tp,
        num_layers=m.num_layers,
        moe_layers=m.moe.moe_layers if m.moe else 0,
        hidden_size=m.hidden_size,
        num_experts=m.moe.num_experts if m.moe else 0,
        experts_per_token=m.moe.experts_per_token if m.moe else 0,
        window_tokens=a.sliding_window or 0,
        full_attn_layers=full_layers,
        window_attn_layers=window_layers,
        attn_flop_per_pair_layer=2.0 * m.num_attention_heads * (d_qk + d_v),
        attn_decode_flop_per_pair_layer=decode_pair,
        hbm_bytes=hbm,
        usable_bytes=usable_bytes(eng.kv_memory_policy, eng.kv_memory_fraction, hbm, fixed),
        weight_bytes_gpu=dense_w + expert_w,
        dense_weight_bytes_gpu=dense_w,
        expert_weight_bytes_gpu=expert_w,
        overhead_bytes_gpu=overhead,
        activation_bytes_gpu=act,
        kv_full_bytes_per_token_gpu=per_layer_gpu * full_layers * kvb / pp,
        kv_window_bytes_per_token_gpu=per_layer_gpu * window_layers * kvb / pp,
        kv_bytes_per_token_model=kv_model,
        weight_bytes_model=wg.dense_bytes + wg.expert_bytes,
        dense_read_bytes_gpu=(wg.dense_bytes - wg.lookup_bytes) / (tp * pp),
        expert_bytes_per_expert_gpu=exp_bytes_one,
        experts_per_gpu_layer=exp_per_gpu_layer,
        dense_flop_per_token=2.0 * dense_matmul,
        expert_flop_per_token=2.0 * pc.expert_ffn_active,
        dense_flop16_per_token=2.0 * (dense_matmul if bpw >= 2.0 else wg.plain_matmul_params),
        peak_bw_bytes_s=acc.hbm_tb_s * TB,
        bw_bytes_s=acc.hbm_tb_s * TB * eff.eta_bw,
        peak_flop_s=peak,
        mixed_input=bpw < 0.75 * MATH_BYTES.get(compute_dtype, 2.0),
        mixed_input_gemm_eff=eff.mixed_input_gemm_efficiency,
        attn_peak_flop_s=max(acc.dense_tflops.get("bf16", 0.0), acc.dense_tflops.get("fp16", 0.0)) * TFLOP,
        mfu_prefill=eff.mfu_prefill,
        mfu_decode=eff.mfu_decode,
        stream_kernel_s=eff.stream_kernel_us / 1e6,
        moe_layer_fixed_s=eff.moe_layer_fixed_us / 1e6,
        efficiency_measured=eff.measured,
        stated_error_pct=eff.error_pct,
        expert_flop_per_row_gpu=2.0 * pc.expert_params / (stage // ep) if m.moe else 0.0,
        grouped_gemm_tile=BLOCK_SCALED_TILE_ROWS if block_scaled else GROUPED_GEMM_TILE_ROWS,
        decode_gemm_tile=eff.block_scaled_decode_tile_rows if block_scaled else GROUPED_GEMM_TILE_ROWS,
        block_scaled_experts=block_scaled,
        expert_gemm_eff=eff.block_scaled_gemm_efficiency if block_scaled else 1.0,
        engine=eng.id,
        host_overhead_graph_s=(eng.host_overhead_graph_ms if cuda_graphs else eng.host_overhead_eager_ms)
        * eff.host_overhead_factor / 1e3,
        host_overhead_eager_s=eng.host_overhead_eager_ms * eff.host_overhead_factor / 1e3,
        request_overhead_s=eng.request_overhead_ms / 1e3,
        tp_link=tp_link,
        ep_link=ep_link,
        pp_link=pp_link,
        tp_cost=scale_collectives(link_cost(cat, tp_link), eff.collective_factor),
        ep_cost=scale_collectives(link_cost(cat, ep_link), eff.collective_factor),
        pp_cost=scale_collectives(link_cost(cat, pp_link), eff.collective_factor),
        prefill_chunk_tokens=eng.chunk_tokens,
        moe_tp_cost=scale_collectives(link_cost(cat, moe_tp_link), eff.collective_factor),
    )
