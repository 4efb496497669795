"""Issue 8's later cost-model terms, each against a hand-computed case written before the term.

* activation memory sized by the engine's own token budget per step (``chunk_tokens``);
* narrow expert slices: a grouped GEMM's N and K dimensions padded to the kernel's tile;
* block-scaled FP8 expert GEMMs at their own efficiency.
"""

from __future__ import annotations

import numpy as np
import pytest

from solver.catalog import load_catalog
from solver.costmodel import Shape, shape_terms
from solver.units import GIB


@pytest.fixture(scope="module")
def cat():
    return load_catalog()


# --------------------------------------------------------------------------- activation memory
def test_activation_memory_follows_the_engines_token_budget(cat):
    # Llama-3.1-70B: hidden 8192, intermediate 28672, vocab 128256; TP1.
    # One step's activations: tokens x (4 x hidden + 2 x intermediate / tp) x 2 bytes,
    # plus fp32 logits of min(tokens, 1024) rows x vocab.
    # TensorRT-LLM's budget is 8192 tokens (max_num_tokens):
    #   8192 x (32768 + 57344) x 2 = 1,476,395,008 B; logits 1024 x 128256 x 4 = 525,336,576 B
    # vLLM's is 2048 tokens: 2048 x 90112 x 2 = 369,098,752 B + the same logits.
    s = Shape("llama-3.1-70b", "h100-sxm", None, "fp8", "fp8", tp=1)
    trt = shape_terms(cat, s, "tensorrt-llm")
    vllm = shape_terms(cat, s, "vllm")
    assert trt.activation_bytes_gpu == pytest.approx(1_476_395_008 + 525_336_576)
    assert vllm.activation_bytes_gpu == pytest.approx(369_098_752 + 525_336_576)
    # TensorRT-LLM's KV budget: 0.9 of what weights, 2 GiB runtime and activations leave
    fixed = trt.weight_bytes_gpu + 2 * GIB + trt.activation_bytes_gpu
    assert trt.usable_bytes == pytest.approx(fixed + 0.9 * (80 * GIB - fixed))
