"""Parameter counts of a catalog model, derived from its architecture facts (:class:`ModelArch`).

Everything here is a pure function of a ``ModelArch``; all counts are in *parameters* (not bytes,
not billions). Conventions, the same for every model:

* **Embeddings** -- ``embedding_input`` is the token embedding table (vocab x hidden);
  ``lm_head`` is the output projection, 0 when ``tie_word_embeddings`` is set (Gemma 3).
* **Attention** -- q, k, v, o projections of every layer. GQA/MHA: ``d*(H + 2*Hkv)*hd + H*hd*d``.
  MLA (DeepSeek-V3): q_a + q_b (or one q_proj when ``q_lora_rank`` is None), kv_a
  (hidden -> kv_lora_rank + rope dim), kv_b (kv_lora_rank -> H*(nope + v)), o_proj (H*v -> hidden).
* **FFN** -- every FFN (dense layer, routed expert, shared expert) is a gated MLP with three
  matrices: ``3 * hidden * width``.
* **Biases** -- the schema has no bias flag, so they are read from ``hf_model_type``: ``qwen2``
  has q/k/v biases; ``gpt_oss`` has q/k/v/o biases, one attention-sink logit per head, biases on
  every expert's two matrices and on the router. Both are < 0.01 % of the total.
* **Norms** -- RMSNorm weights are counted (``norms``): two per layer (four for Gemma 3), q/k
  norms of width head_dim for qwen3/qwen3_moe/gemma3, MLA's q_a/kv_a norms, and the final norm.
  Llama-4's QK norm has no weights. They are < 0.01 % of any catalog model.
* **Not counted** -- DeepSeek-V3/R1's multi-token-prediction layer (``num_nextn_predict_layers``,
  about 14 B in the Hugging Face checkpoint): it is not used when serving without speculative
  decoding and the published 671 B excludes it. Vision encoders of multimodal checkpoints
  (Llama 4, Gemma 3) are not counted either: the catalog describes the language model.

``active`` counts every non-routed parameter plus the routed experts one token uses
(``experts_per_token / num_experts`` of them), *including* both embedding tables -- the convention
of the Mixtral, Qwen, DeepSeek and Llama-4 publications. OpenAI's gpt-oss model card leaves the
input embedding (a table lookup, no matmul) out of "active"; that figure is
``active_excluding_input_embedding``.
"""

from __future__ import annotations

from dataclasses import dataclass

from solver.schemas import ModelArch

# hf_model_type values whose q/k (per-head) RMSNorms carry weights of width head_dim.
_QK_NORM_TYPES = frozenset({"qwen3", "qwen3_moe", "gemma3", "gemma3_text"})
# hf_model_type values with four RMSNorms per layer (pre/post attention, pre/post FFN).
_FOUR_NORM_TYPES = frozenset({"gemma3", "gemma3_text"})


@dataclass(frozen=True)
class ParamCounts:
    """Parameter counts of one model, by component (parameters, not billions)."""

    embedding_input: int
    """Token embedding table, vocab x hidden."""
    lm_head: int
    """Untied output projection, hidden x vocab; 0 when tied."""
    attention: int
    """Attention projections (+ biases/sinks) of all layers."""
    dense_ffn: int
    """Gated MLPs of the dense (non-MoE) layers, all layers."""
    expert_ffn_total: int
    """All routed experts of all MoE layers."""
    expert_ffn_active: float
    """Routed-expert parameters one token uses: experts_per_token / num_experts of the total."""
    shared_expert: int
    """Shared (always-on) experts of all MoE layers."""
    router: int
    """Router (gate) matrices (+ biases) of all MoE layers."""
    norms: int
    """RMSNorm weights, all layers plus the final norm."""
    num_layers: int
    moe_layers: int
    dense_layers: int
    expert_params: int
    """One routed expert of one layer (3 x hidden x moe_intermediate_size, + biases)."""

    @property
    def embedding(self) -> int:
        """Input embedding plus untied LM head."""
        return self.embedding_input + self.lm_head

    @property
    def total(self) -> int:
        """All parameters the served model holds (excluding MTP layers / vision towers)."""
        return (
            self.embedding + self.attention + self.dense_ffn + self.expert_ffn_total
            + self.shared_expert + self.router + self.norms
        )

    @property
    def dense(self) -> int:
        """Everything that is not a routed expert (what tensor parallelism splits)."""
        return self.total - self.expert_ffn_total

    @property
    def active(self) -> float:
        """Parameters used per token, both embedding tables included."""
        return self.dense + self.expert_ffn_active

    @property
    def active_excluding_input_embedding(self) -> float:
        """Parameters in the matmuls of one token (input embedding is a lookup): the gpt-oss card's "active"."""
        return self.active - self.embedding_input

    @property
    def per_layer_attention(self) -> float:
        """Attention parameters of one layer (mean over layers)."""
        return self.attention / self.num_layers

    @property
    def expert_ffn_per_moe_layer(self) -> int:
        """Routed-expert parameters of one MoE layer (all experts); 0 for a dense model."""
        return self.expert_ffn_total // self.moe_layers if self.moe_layers else 0

    @property
    def total_b(self) -> float:
        """``total`` in billions."""
        return self.total / 1e9

    @property
    def active_b(self) -> float:
        """``active`` in billions."""
        return self.active / 1e9


def moe_layers(m: ModelArch) -> int:
    """Number of layers whose FFN is a mixture of experts (0 for a dense model)."""
    return m.moe.moe_layers if m.moe else 0


def dense_layers(m: ModelArch) -> int:
    """Number of layers with a dense gated-MLP FFN of width ``intermediate_size``."""
    return m.num_layers - moe_layers(m)


def attention_params_per_layer(m: ModelArch) -> int:
    """Attention projection parameters of one layer (+ biases/sinks where the model has them)."""
    d, h = m.hidden_size, m.num_attention_heads
    a = m.attention
    if a.kind == "mla":
        rope = a.qk_rope_head_dim or 0
        nope = a.qk_nope_head_dim or 0
        v = a.v_head_dim or m.head_dim
        kv = a.kv_lora_rank or 0
        if a.q_lora_rank:
            q = d * a.q_lora_rank + a.q_lora_rank * h * (nope + rope)
        else:
            q = d * h * (nope + rope)
        kv_a = d * (kv + rope)
        kv_b = kv * h * (nope + v)
        o = h * v * d
        return q + kv_a + kv_b + o
    hd, hkv = m.head_dim, m.num_kv_heads
    q_out, kv_out = h * hd, hkv * hd
    n = d * (q_out + 2 * kv_out) + q_out * d
    if m.hf_model_type == "qwen2":
        n += q_out + 2 * kv_out  # q/k/v biases
    elif m.hf_model_type == "gpt_oss":
        n += q_out + 2 * kv_out + d + h  # q/k/v/o biases and one sink logit per head
    return n


def _expert_params(m: ModelArch, width: int) -> int:
    """One gated-MLP expert of ``width`` (3 x hidden x width), + biases for gpt-oss."""
    n = 3 * m.hidden_size * width
    if m.hf_model_type == "gpt_oss":
        n += 2 * width + m.hidden_size  # fused gate_up bias and down bias
    return n


def _norms(m: ModelArch) -> int:
    d = m.hidden_size
    per_layer = (4 if m.hf_model_type in _FOUR_NORM_TYPES else 2) * d
    if m.hf_model_type in _QK_NORM_TYPES:
        per_layer += 2 * m.head_dim
    if m.attention.kind == "mla":
        per_layer += (m.attention.q_lora_rank or 0) + (m.attention.kv_lora_rank or 0)
    return m.num_layers * per_layer + d


def param_counts(m: ModelArch) -> ParamCounts:
    """Count a model's parameters by component from its architecture (see module docstring)."""
    d = m.hidden_size
    n_moe = moe_layers(m)
    n_dense = dense_layers(m)
    emb = m.vocab_size * d
    lm_head = 0 if m.tie_word_embeddings else m.vocab_size * d
    attention = m.num_layers * attention_params_per_layer(m)
    dense_ffn = n_dense * 3 * d * m.intermediate_size
    expert_total = expert_active = shared = router = one_expert = 0
    if m.moe:
        one_expert = _expert_params(m, m.moe.moe_intermediate_size)
        expert_total = n_moe * m.moe.num_experts * one_expert
        expert_active_f = expert_total * m.moe.experts_per_token / m.moe.num_experts
        if m.moe.shared_experts:
            width = m.moe.shared_expert_intermediate_size or m.moe.moe_intermediate_size
            shared = n_moe * m.moe.shared_experts * 3 * d * width
        router_bias = m.moe.num_experts if m.hf_model_type in ("gpt_oss", "deepseek_v3") else 0
        router = n_moe * (m.moe.num_experts * d + router_bias)
    else:
        expert_active_f = 0.0
    expert_active = expert_active_f
    return ParamCounts(
        embedding_input=emb,
        lm_head=lm_head,
        attention=attention,
        dense_ffn=dense_ffn,
        expert_ffn_total=expert_total,
        expert_ffn_active=expert_active,
        shared_expert=shared,
        router=router,
        norms=_norms(m),
        num_layers=m.num_layers,
        moe_layers=n_moe,
        dense_layers=n_dense,
        expert_params=one_expert,
    )
