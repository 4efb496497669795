"""Terms of disaggregated prefill/decode (issue 11 item 1, cost-model part) by hand."""

from __future__ import annotations

import pytest

from solver.catalog import load_catalog
from solver.costmodel import Shape, shape_terms
from solver.costmodel.disaggregated import kv_transfer_ms, pool_ratio, transfer_link


def test_kv_transfer_of_a_4k_prompt_by_hand():
    """Llama-3.1-70B, fp8 KV: 2 x 80 x 8 x 128 x 1 B = 163,840 B/token; 4,096 tokens =
    671,088,640 B; at 50 GB/s that is 13.42 ms (issue 11's example)."""
    cat = load_catalog()
    system = cat.systems_for("h200-sxm")[0].id
    t = shape_terms(cat, Shape("llama-3.1-70b", "h200-sxm", system, "fp8", "fp8", 4, 1, 1))
    assert t.kv_bytes_per_token_model == 163_840
    assert kv_transfer_ms(163_840, 4096, 50.0) == pytest.approx(671_088_640 / 50e9 * 1e3)
    assert kv_transfer_ms(163_840, 4096, 50.0) == pytest.approx(13.42, abs=0.01)
    # four GPUs each send their shard: a quarter of the time, plus the link latency
    assert kv_transfer_ms(163_840, 4096, 50.0, latency_us=5, parallel_gpus=4) == pytest.approx(0.005 + 13.4218 / 4, abs=1e-3)


def test_transfer_link_is_nvlink_within_a_domain_else_the_nic():
    cat = load_catalog()
    s = cat.system(cat.systems_for("h200-sxm")[0].id)
    assert transfer_link(s, 4, 4) == (s.intra_node_gb_s, s.intra_node_latency_us)
    assert transfer_link(s, 8, 4) == (s.scaleout_gb_s_per_gpu, s.scaleout_latency_us)


def test_pool_ratio_by_hand():
    # a prefill replica serves 3 req/s, a decode replica 1 req/s, one GPU each: 1 P : 3 D
    assert pool_ratio(3.0, 1.0, 1, 1) == (1, 3, pytest.approx(0.75))
    # a 2-GPU decode replica serving 2 req/s against a 1-GPU prefill at 1 req/s: 2 P : 1 D
    p, d, per_gpu = pool_ratio(1.0, 2.0, 1, 2)
    assert (p, d) == (2, 1) and per_gpu == pytest.approx(2.0 / 4)
