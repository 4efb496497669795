"""Speculative decoding: a draft proposes ``k`` tokens, the target verifies them in one step.

Model (steady state, ``B`` sequences, acceptance rate ``alpha`` per drafted token, i.i.d.):

* Expected tokens emitted per verification cycle and sequence (Leviathan, Kalman, Matias 2023,
  "Fast Inference from Transformers via Speculative Decoding", eq. 1):
  ``E = (1 - alpha^(k+1)) / (1 - alpha)`` (``k + 1`` at ``alpha = 1``; 1 at ``alpha = 0``).
* One cycle = ``k`` draft decode steps at batch ``B`` + one target verification step in which
  every sequence carries ``k + 1`` tokens: the weights are read once, the dense/expert FLOPs and
  the attention FLOPs are those of ``B (k + 1)`` tokens, each sequence's KV is read once (the
  ``k`` extra query tokens ride along the decode batch like prompt tokens of a chunk). The
  amortised prompt work of requests that replace finished ones (``B E / OSL`` per cycle) is
  carried by the verification step, and the draft prefills the same prompts.
* TPOT = cycle time / ``E``; TTFT adds the draft's prefill of the prompt.
* Memory: the draft's weights and, per sequence, the draft's KV come off the target's budget.

Drafts: a catalog model (same accelerator, format, KV dtype and TP as the target, one pipeline
stage) or the target's multi-token-prediction (MTP) module. An MTP module is one more decoder
layer of the target that shares its embedding and LM head (DeepSeek-V3 technical report,
arXiv:2412.19437, section 2.2; config ``num_nextn_predict_layers: 1``). ESTIMATE: its weights,
KV per token and step time are taken as ``mtp_layers / num_layers`` of the target's (for
DeepSeek-V3, 1/61 of 671B = 11B; the published 14B MTP checkpoint also stores copies of the
embedding and head, which serving engines share with the target).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from solver.catalog import Catalog
from solver.costmodel.compute import (
    attention_pair_layers, chunk_mixture, decode_pair_layers, decode_step, prefill, stage_pass_s,
)
from solver.costmodel.memory import kv_budget_bytes_gpu, kv_bytes_per_seq_gpu, prefix_reserve_bytes_gpu
from solver.costmodel.operating import OperatingPoint, check_lengths
from solver.costmodel.shape import Shape, ShapeTerms, check_shape, shape_terms
from solver.errors import InputError
from solver.units import GIB, MS_PER_S

F = NDArray[np.float64]
MTP = "mtp"


def expected_tokens(acceptance_rate: float, draft_tokens: int) -> float:
    """Expected tokens per verification cycle: ``(1 - a^(k+1)) / (1 - a)``, ``k + 1`` at a = 1."""
    a, k = float(acceptance_rate), int(draft_tokens)
    if not 0.0 <= a <= 1.0:
        raise InputError(f"acceptance_rate must be in [0, 1], got {acceptance_rate}")
    if k < 1:
        raise InputError(f"draft_tokens must be >= 1, got {draft_tokens}")
    if a == 1.0:
        return float(k + 1)
    return (1.0 - a ** (k + 1)) / (1.0 - a)


@dataclass(frozen=True)
class Speculation:
    """A draft for one target shape: the draft's own terms (catalog draft) or the MTP share of
    the target (``mtp_fraction`` > 0, ``draft`` None), with the acceptance rate and draft length."""

    draft_id: str
    acceptance_rate: float
    draft_tokens: int
    draft: ShapeTerms | None = None
    mtp_fraction: float = 0.0

    @property
    def expected_tokens(self) -> float:
        return expected_tokens(self.acceptance_rate, self.draft_tokens)

    def describe(self) -> dict[str, object]:
        """What a plan states about the speculation of a deployment."""
        return {"draft": self.draft_id, "acceptance_rate": self.acceptance_rate,
                "draft_tokens": self.draft_tokens, "expected_tokens_per_step": round(self.expected_tokens, 4)}


def speculation(cat: Catalog, target: Shape, draft: str, acceptance_rate: float, draft_tokens: int,
                engine: str | None = None) -> Speculation | str:
    """The draft of ``target`` (catalog id or ``"mtp"``), or why it cannot run beside it."""
    expected_tokens(acceptance_rate, draft_tokens)  # validates
    if target.pp != 1:
        return "speculative decoding is planned with one pipeline stage only"
    if draft == MTP:
        m = cat.model(target.model)
        if not m.mtp_layers:
            return f"{target.model} publishes no multi-token-prediction module"
        return Speculation(MTP, acceptance_rate, draft_tokens, None, m.mtp_layers / m.num_layers)
    shape = Shape(draft, target.accelerator, target.system, target.quant, target.kv_dtype, target.tp, 1, 1)
    reason = check_shape(cat, shape, engine)
    if reason:
        return f"draft {draft} cannot run beside the target: {reason}"
    return Speculation(draft, acceptance_rate, draft_tokens, shape_terms(cat, shape, engine))


def draft_weight_bytes_gpu(terms: ShapeTerms, spec: Speculation) -> float:
    """Draft weights on one GPU of the target (each attention rank runs its own draft copy)."""
    if spec.draft is None:
        return spec.mtp_fraction * terms.weight_bytes_gpu
    return spec.draft.weight_bytes_gpu


def draft_kv_bytes_per_seq_gpu(terms: ShapeTerms, spec: Speculation, context_tokens: ArrayLike) -> F:
    """Draft KV one GPU holds for one sequence of ``context_tokens``."""
    if spec.draft is None:
        return spec.mtp_fraction * kv_bytes_per_seq_gpu(terms, context_tokens)
    return kv_bytes_per_seq_gpu(spec.draft, context_tokens)


def max_concurrency_spec(terms: ShapeTerms, spec: Speculation, context_tokens: ArrayLike,
                         shared_prefix_tokens: int = 0) -> int:
    """Largest batch a replica holds with the draft beside the target: the draft's weights come
    off the KV budget and every sequence (and the shared prefix) also holds the draft's KV."""
    c = max(float(np.asarray(context_tokens)), 1.0)
    budget = kv_budget_bytes_gpu(terms, None, shared_prefix_tokens) - draft_weight_bytes_gpu(terms, spec)
    if shared_prefix_tokens > 0:
        budget -= float(draft_kv_bytes_per_seq_gpu(terms, spec, shared_prefix_tokens))
    per_seq = float(kv_bytes_per_seq_gpu(terms, c)) + float(draft_kv_bytes_per_seq_gpu(terms, spec, c))
    return int(np.floor(max(budget, 0.0) / per_seq) * terms.dp_attn)


def kv_gib_per_gpu_spec(terms: ShapeTerms, spec: Speculation, concurrency: ArrayLike, context_tokens: ArrayLike,
                        shared_prefix_tokens: int = 0) -> F:
    """Target + draft KV GiB on the busiest GPU (draft weights not included)."""
    seqs = np.ceil(np.asarray(concurrency, dtype=float) / terms.dp_attn)
    per_seq = kv_bytes_per_seq_gpu(terms, context_tokens) + draft_kv_bytes_per_seq_gpu(terms, spec, context_tokens)
    prefix = 0.0
    if shared_prefix_tokens > 0:
        prefix = prefix_reserve_bytes_gpu(terms, shared_prefix_tokens) + float(
            draft_kv_bytes_per_seq_gpu(terms, spec, shared_prefix_tokens))
    return (seqs * per_seq + prefix) / GIB


def verify_step_ms(terms: ShapeTerms, batch: ArrayLike, context_tokens: ArrayLike, draft_tokens: int,
                   prefill_tokens_per_step: ArrayLike = 0.0, prefill_pair_layers_per_step: ArrayLike = 0.0) -> F:
    """Target step verifying ``draft_tokens + 1`` tokens of each of ``batch`` sequences, plus
    the amortised prompt work (as :func:`~solver.costmodel.compute.decode_step`, whose mixture
    of plain and chunk-carrying steps it follows): the ``k`` extra tokens per sequence ride
    along every pass with their attention pairs at ``context_tokens``."""
    b = np.asarray(batch, dtype=float)
    p = np.asarray(prefill_tokens_per_step, dtype=float)
    pairs = np.asarray(prefill_pair_layers_per_step, dtype=float)
    k = float(draft_tokens)
    m = np.clip(np.minimum(b, terms.pp), 1.0, None)
    extra = b * k
    extra_pairs = extra * decode_pair_layers(terms, context_tokens)
    f, chunk, ranks = chunk_mixture(terms, p)
    pairs_chunk = np.where(p > 0, pairs * chunk / np.where(p > 0, p, 1.0), 0.0)
    dp = float(terms.dp_attn)
    plain = stage_pass_s(terms, b / m, context_tokens, extra / m, extra_pairs / m, dp, decode_only=True)
    # with a chunk: the chunk's ranks carry it, the verify tokens stay spread over all ranks
    loaded = stage_pass_s(terms, b / m, context_tokens, (extra + chunk) / m, (extra_pairs + pairs_chunk) / m,
                          np.where(chunk > 0, ranks, dp))
    parts = [(1.0 - f) * x + f * y for x, y in zip(plain, loaded)]
    host = (1.0 - f) * terms.host_overhead_graph_s + f * terms.host_overhead_eager_s
    mem, cmp, comm, fixed = parts
    return (terms.pp * (mem + cmp + comm + fixed) + host) * MS_PER_S


def _draft_step_ms(terms: ShapeTerms, spec: Speculation, batch: F, context_tokens: float,
                   prefill_tokens: ArrayLike = 0.0, prefill_pairs: ArrayLike = 0.0) -> F:
    """One draft step of ``batch`` sequences (with prompt tokens riding along)."""
    if spec.draft is None:
        return spec.mtp_fraction * decode_step(terms, batch, context_tokens, prefill_tokens, prefill_pairs).total_ms
    # each attention rank of the target runs a draft copy on its own sequences
    per_rank = np.clip(batch / terms.dp_attn, 1.0, None)
    return decode_step(spec.draft, per_rank, context_tokens, np.asarray(prefill_tokens) / terms.dp_attn,
                       np.asarray(prefill_pairs) / terms.dp_attn).total_ms


def _draft_prefill_ms(terms: ShapeTerms, spec: Speculation, isl: int, prefix_hit_rate: float) -> F:
    if spec.draft is None:
        return spec.mtp_fraction * prefill(terms, isl, prefix_hit_rate).total_ms
    return prefill(spec.draft, isl, prefix_hit_rate).total_ms


def speculative_operating_point(
    terms: ShapeTerms, spec: Speculation, concurrency: ArrayLike, isl: int, osl: int,
    prefix_hit_rate: float = 0.0, shared_prefix_tokens: int = 0,
) -> OperatingPoint:
    """TTFT, TPOT and throughput of one replica with speculative decoding (module docstring)."""
    check_lengths(isl, osl, prefix_hit_rate)
    b = np.asarray(concurrency).astype(np.int64)
    bf = b.astype(float)
    e = spec.expected_tokens
    cached = np.floor(isl * prefix_hit_rate)
    new = isl - cached
    ctx_mean = isl + osl / 2.0
    prompts = bf * e / osl  # requests finishing (and starting) per cycle
    p_tokens = prompts * new
    p_pairs = prompts * attention_pair_layers(terms, new, cached)
    verify = verify_step_ms(terms, bf, ctx_mean, spec.draft_tokens, p_tokens, p_pairs)
    draft_plain = _draft_step_ms(terms, spec, bf, ctx_mean)
    draft_first = _draft_step_ms(terms, spec, bf, ctx_mean, p_tokens,
                                 prompts * (attention_pair_layers(spec.draft, new, cached)
                                            if spec.draft is not None else attention_pair_layers(terms, new, cached)))
    cycle = verify + draft_first + (spec.draft_tokens - 1) * draft_plain
    tpot = cycle / e
    m = np.clip(np.minimum(bf, terms.pp), 1.0, None)
    ttft = prefill(terms, isl, prefix_hit_rate, decode_seqs=(bf - 1.0) / m, context_tokens=ctx_mean).total_ms
    ttft = ttft + _draft_prefill_ms(terms, spec, isl, prefix_hit_rate) + terms.request_overhead_s * 1e3
    out_tps = bf / (tpot / 1e3)
    cap = max_concurrency_spec(terms, spec, isl + osl, shared_prefix_tokens)
    zeros = np.zeros_like(tpot)
    return OperatingPoint(
        concurrency=b, ttft_ms=ttft, tpot_ms=tpot, output_tokens_per_s=out_tps,
        output_tokens_per_s_per_gpu=out_tps / terms.gpus, requests_per_s=out_tps / osl,
        decode_memory_ms=zeros, decode_compute_ms=zeros, decode_comm_ms=zeros, decode_overhead_ms=zeros,
        bound=np.full(np.shape(tpot), "speculative"),
        kv_gib_per_gpu=kv_gib_per_gpu_spec(terms, spec, bf, isl + osl, shared_prefix_tokens),
        max_concurrency=cap, fits=b <= cap,
    )


def cycle_ms(terms: ShapeTerms, spec: Speculation, batch: ArrayLike, context_tokens: float,
             prefill_tokens: ArrayLike = 0.0, prefill_pairs: ArrayLike = 0.0,
             draft_prefill_pairs: ArrayLike = 0.0) -> F:
    """One draft-and-verify cycle (ms) of ``batch`` sequences, as
    :func:`speculative_operating_point` composes it: the target's verification step and the
    draft's first step both carry ``prefill_tokens`` prompt tokens (with ``prefill_pairs`` and,
    for the draft, ``draft_prefill_pairs`` attention pairs), then ``k - 1`` plain draft steps.
    Emits ``spec.expected_tokens`` per sequence; for :func:`solver.slo.step_times`."""
    b = np.asarray(batch, dtype=float)
    verify = verify_step_ms(terms, b, context_tokens, spec.draft_tokens, prefill_tokens, prefill_pairs)
    first = _draft_step_ms(terms, spec, b, context_tokens, prefill_tokens, draft_prefill_pairs)
    plain = _draft_step_ms(terms, spec, b, context_tokens)
    return verify + first + (spec.draft_tokens - 1) * plain
