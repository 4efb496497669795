"""Parameter counts from ``solver.architecture`` against published model sizes.

Published figures are the publishers' own (model cards, papers, launch posts; the sources are in
``catalogs/models.yaml``). The fixtures in ``tests/fixtures/hf`` are real Hugging Face
``config.json`` files (copied from the aiconfigurator-core 0.12.0 wheel via shared/hf-configs).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from solver.architecture import (
    ParamCounts,
    attention_params_per_layer,
    dense_layers,
    moe_layers,
    param_counts,
)
from solver.hf_import import import_hf_config
from solver.loading import read_yaml, validate
from solver.schemas import ModelArch

REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "hf"
TOLERANCE = 0.02

# fixture -> (published total B, published active B, convention of the active figure)
# "all": both embedding tables counted; "no-input-embedding": the gpt-oss model card's count.
PUBLISHED: dict[str, tuple[float, float, str]] = {
    "meta-llama--Meta-Llama-3.1-8B_config.json": (8.0, 8.0, "all"),
    "meta-llama--Meta-Llama-3.1-70B_config.json": (70.0, 70.0, "all"),
    "meta-llama--Meta-Llama-3.1-405B_config.json": (405.0, 405.0, "all"),
    "meta-llama--Llama-4-Scout-17B-16E-Instruct_config.json": (109.0, 17.0, "all"),
    "meta-llama--Llama-4-Maverick-17B-128E-Instruct_config.json": (400.0, 17.0, "all"),
    "mistralai--Mixtral-8x7B-v0.1_config.json": (46.7, 12.9, "all"),
    "mistralai--Mixtral-8x22B-v0.1_config.json": (141.0, 39.0, "all"),
    "Qwen--Qwen3-8B_config.json": (8.2, 8.2, "all"),
    "Qwen--Qwen3-32B_config.json": (32.8, 32.8, "all"),
    "Qwen--Qwen3-30B-A3B_config.json": (30.5, 3.3, "all"),
    "Qwen--Qwen3-235B-A22B_config.json": (235.0, 22.0, "all"),
    "deepseek-ai--DeepSeek-V3_config.json": (671.0, 37.0, "all"),
    "deepseek-ai--DeepSeek-R1_config.json": (671.0, 37.0, "all"),
    "openai--gpt-oss-20b_config.json": (20.9, 3.6, "no-input-embedding"),
    "openai--gpt-oss-120b_config.json": (116.8, 5.1, "no-input-embedding"),
}


def _models() -> dict[str, ModelArch]:
    data = read_yaml(REPO / "catalogs" / "models.yaml")
    return {
        item["id"]: validate(ModelArch, item, where=f"models.yaml[{item['id']}]") for item in data["models"]
    }


MODELS = _models()


def _active(p: ParamCounts, convention: str) -> float:
    return p.active if convention == "all" else p.active_excluding_input_embedding


def _rel(a: float, b: float) -> float:
    return abs(a / b - 1)


@pytest.mark.parametrize("fixture", sorted(PUBLISHED))
def test_counts_from_config_match_published(fixture: str) -> None:
    total_b, active_b, convention = PUBLISHED[fixture]
    p = param_counts(import_hf_config(FIXTURES / fixture, "m"))
    assert _rel(p.total / 1e9, total_b) < TOLERANCE, (p.total / 1e9, total_b)
    assert _rel(_active(p, convention) / 1e9, active_b) < TOLERANCE, (_active(p, convention) / 1e9, active_b)


@pytest.mark.parametrize("model_id", sorted(MODELS))
def test_catalog_entries_match_their_published_sizes(model_id: str) -> None:
    """Every catalog entry (fixture or not: Llama 2, Mistral, Qwen2.5, Gemma 3 too)."""
    m = MODELS[model_id]
    p = param_counts(m)
    convention = "no-input-embedding" if m.hf_model_type == "gpt_oss" else "all"
    assert _rel(p.total / 1e9, m.total_params_b) < TOLERANCE, (p.total / 1e9, m.total_params_b)
    assert _rel(_active(p, convention) / 1e9, m.active_params_b) < TOLERANCE


@pytest.mark.parametrize(
    ("model_id", "non_embedding_b"),
    [
        # "Number of Parameters (Non-Embedding)" on the Qwen model cards.
        ("qwen2.5-7b", 6.53),
        ("qwen2.5-32b", 31.0),
        ("qwen2.5-72b", 70.0),
        ("qwen3-8b", 6.95),
        ("qwen3-30b-a3b", 29.9),
        ("qwen3-235b-a22b", 234.0),
        # Gemma 3 technical report, Table 1: 25,600M non-embedding parameters (27B).
        ("gemma-3-27b", 25.6),
    ],
)
def test_non_embedding_counts_match_model_cards(model_id: str, non_embedding_b: float) -> None:
    p = param_counts(MODELS[model_id])
    assert _rel((p.total - p.embedding) / 1e9, non_embedding_b) < TOLERANCE


def test_gqa_attention_per_layer_by_hand() -> None:
    m = MODELS["llama-3.1-8b"]
    # q 4096x4096, k and v 4096x(8*128), o 4096x4096
    assert attention_params_per_layer(m) == 4096 * 4096 * 2 + 2 * 4096 * 1024


def test_mla_attention_per_layer_by_hand() -> None:
    m = MODELS["deepseek-v3"]
    q_a = 7168 * 1536
    q_b = 1536 * 128 * (128 + 64)
    kv_a = 7168 * (512 + 64)
    kv_b = 512 * 128 * (128 + 128)
    o = 128 * 128 * 7168
    assert attention_params_per_layer(m) == q_a + q_b + kv_a + kv_b + o


def test_mla_without_q_lora_uses_one_q_projection() -> None:
    m = MODELS["deepseek-v3"].model_copy(
        update={"attention": MODELS["deepseek-v3"].attention.model_copy(update={"q_lora_rank": None})}
    )
    full = attention_params_per_layer(MODELS["deepseek-v3"])
    assert attention_params_per_layer(m) == full - 7168 * 1536 - 1536 * 128 * 192 + 7168 * 128 * 192


def test_biases_counted_for_qwen2_and_gpt_oss_only() -> None:
    q = MODELS["qwen2.5-7b"]
    no_bias = q.model_copy(update={"hf_model_type": "llama"})
    assert attention_params_per_layer(q) - attention_params_per_layer(no_bias) == 3584 + 2 * 512


def test_layer_split_and_totals_are_consistent() -> None:
    for m in MODELS.values():
        p = param_counts(m)
        assert p.moe_layers + p.dense_layers == m.num_layers
        assert p.dense == p.total - p.expert_ffn_total
        assert p.active == pytest.approx(p.dense + p.expert_ffn_active)
        if m.moe:
            k, e = m.moe.experts_per_token, m.moe.num_experts
            assert p.expert_ffn_active == pytest.approx(p.expert_ffn_total * k / e)
            assert p.expert_ffn_total == p.moe_layers * e * p.expert_params
        else:
            assert p.expert_ffn_total == p.shared_expert == p.router == 0
            assert p.active == p.total


def test_interleaved_and_first_dense_layers() -> None:
    assert (moe_layers(MODELS["deepseek-v3"]), dense_layers(MODELS["deepseek-v3"])) == (58, 3)
    assert (moe_layers(MODELS["llama-4-maverick"]), dense_layers(MODELS["llama-4-maverick"])) == (24, 24)
    assert (moe_layers(MODELS["llama-4-scout"]), dense_layers(MODELS["llama-4-scout"])) == (48, 0)
    mav = param_counts(MODELS["llama-4-maverick"])
    assert mav.dense_ffn == 24 * 3 * 5120 * 16384  # dense layers use intermediate_size_mlp
    assert mav.shared_expert == 24 * 3 * 5120 * 8192  # one shared expert per MoE layer


def test_tied_embeddings_have_no_lm_head() -> None:
    p = param_counts(MODELS["gemma-3-27b"])
    assert p.lm_head == 0 and p.embedding == 262208 * 5376
    assert param_counts(MODELS["llama-3.1-8b"]).lm_head == 128256 * 4096


def test_deepseek_mtp_layer_not_counted() -> None:
    # The Hugging Face checkpoint (with the MTP module) is 685B; served params are 671B.
    assert param_counts(MODELS["deepseek-v3"]).total / 1e9 < 672
