"""LoRA multi-tenancy: the memory and per-token work that resident adapters add to a replica.

A LoRA adapter on a linear layer ``d_in -> d_out`` is two matrices, A (d_in x r) and
B (r x d_out): ``r x (d_in + d_out)`` parameters per targeted module and layer. So one adapter is

    params = rank x sum over targeted modules of (d_in + d_out) x layers
    bytes  = params x bytes_per_param                  (2: bf16/fp16 adapters, the usual format)

and a replica holding ``resident`` adapters at once keeps ``resident x bytes`` in GPU memory
(vLLM's ``--max-loras``; the other adapters wait in host memory). Pure functions, no solver code.

Estimates (no measurement behind them, stated so):

- Adapters are counted on every GPU of a pipeline stage (split over PP by layers, replicated
  over TP): conservative, as engines shard part of them over TP.
- Per token, the batched LoRA kernels (Punica/S-LoRA style) run ``x A`` then ``(x A) B`` for the
  token's adapter: ``2 x params`` FLOP, added to the dense work of every token.
- Per decode step, every resident adapter is read once (conservative: a batch may use fewer).
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from solver.catalog import Catalog
    from solver.costmodel import ShapeTerms
    from solver.problem import Lora, ModelDemand
    from solver.schemas import ModelArch

ATTENTION_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP_MODULES = ("gate_proj", "up_proj", "down_proj")
MODULES = ATTENTION_MODULES + MLP_MODULES


def module_dims(arch: "ModelArch", module: str) -> tuple[int, int]:
    """(d_in, d_out) of a targeted module of a dense MHA/GQA model (Hugging Face names)."""
    h, q, kv, ffn = (arch.hidden_size, arch.num_attention_heads * arch.head_dim,
                     arch.num_kv_heads * arch.head_dim, arch.intermediate_size)
    return {"q_proj": (h, q), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (q, h),
            "gate_proj": (h, ffn), "up_proj": (h, ffn), "down_proj": (ffn, h)}[module]


def unsupported(arch: "ModelArch", lora: "Lora") -> str | None:
    """Why this LoRA spec cannot be modelled on ``arch`` (None: it can)."""
    if arch.attention.kind == "mla":
        return f"{arch.id} uses MLA attention; LoRA is modelled on MHA/GQA models only"
    mlp = [m for m in lora.target_modules if m in MLP_MODULES]
    if arch.moe is not None and mlp:
        return f"{arch.id} is MoE: LoRA on its FFN ({', '.join(mlp)}) is not modelled; target attention modules"
    return None


def adapter_params(arch: "ModelArch", lora: "Lora") -> int:
    """Parameters of one adapter: rank x sum of (d_in + d_out) over targeted modules x layers."""
    per_layer = sum(sum(module_dims(arch, m)) for m in lora.target_modules)
    return lora.rank * per_layer * arch.num_layers


def adapter_bytes(arch: "ModelArch", lora: "Lora") -> int:
    """Bytes of one adapter."""
    return adapter_params(arch, lora) * lora.bytes_per_param


def resident_bytes(arch: "ModelArch", lora: "Lora") -> int:
    """Bytes of the adapters one replica holds at once (``resident`` of them)."""
    return lora.resident * adapter_bytes(arch, lora)


def with_lora(terms: "ShapeTerms", arch: "ModelArch", lora: "Lora") -> "ShapeTerms":
    """``terms`` with the resident adapters' memory (per GPU: split over PP stages) counted as
    overhead, their bytes read once per step, and ``2 x params`` FLOP per token of dense work."""
    per_gpu = resident_bytes(arch, lora) / terms.pp
    return replace(
        terms,
        overhead_bytes_gpu=terms.overhead_bytes_gpu + per_gpu,
        dense_read_bytes_gpu=terms.dense_read_bytes_gpu + per_gpu,
        dense_flop_per_token=terms.dense_flop_per_token + 2.0 * adapter_params(arch, lora),
    )


def demand_terms(cat: "Catalog", d: "ModelDemand", terms: "ShapeTerms") -> "ShapeTerms":
    """The shape's terms for this model entry: with its LoRA adapters when it names any."""
    if d.lora is None:
        return terms
    return with_lora(terms, cat.model(d.model), d.lora)
