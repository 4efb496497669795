"""Prefix caching sized (issue 11 item 3): the cached shared prefix holds KV once per replica.

Hand-computed case: Llama-3.1-8B, bf16 KV, TP1 holds 2 (K, V) x 32 layers x 8 KV heads x 128
dims x 2 bytes = 131,072 B per token; a 2,048-token prefix is 2,048 x 131,072 = 2^28 B =
0.25 GiB exactly.
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from solver.candidates import build_tables
from solver.catalog import load_catalog
from solver.cli import main
from solver.costmodel import Shape, kv_budget_bytes_gpu, kv_gib_per_gpu, max_concurrency, shape_terms
from solver.costmodel.memory import prefix_reserve_bytes_gpu
from solver.problem import query_problem
from solver.units import GIB

KV_PER_TOKEN = 2 * 32 * 8 * 128 * 2  # 131,072 B


@pytest.fixture(scope="module")
def cat():
    return load_catalog()


@pytest.fixture(scope="module")
def terms(cat):
    system = cat.systems_for("h100-sxm")[0].id
    return shape_terms(cat, Shape("llama-3.1-8b", "h100-sxm", system, "bf16", "bf16", 1, 1, 1))


def test_prefix_reserve_is_one_sequence_of_prefix_kv(terms):
    assert terms.kv_full_bytes_per_token_gpu == KV_PER_TOKEN
    assert prefix_reserve_bytes_gpu(terms, 2048) == 2**28
    assert prefix_reserve_bytes_gpu(terms, 0) == 0.0


def test_prefix_reserve_lowers_max_concurrency_by_hand(terms):
    ctx = 4096 + 1024
    budget = kv_budget_bytes_gpu(terms)
    assert kv_budget_bytes_gpu(terms, shared_prefix_tokens=2048) == pytest.approx(budget - 2**28)
    per_seq = ctx * KV_PER_TOKEN
    assert int(max_concurrency(terms, ctx)) == int(budget // per_seq)
    assert int(max_concurrency(terms, ctx, shared_prefix_tokens=2048)) == int((budget - 2**28) // per_seq)


def test_kv_gib_counts_prefix_once_not_per_sequence(terms):
    ctx = 5120
    base = 16 * ctx * KV_PER_TOKEN / GIB
    assert float(kv_gib_per_gpu(terms, 16, ctx)) == pytest.approx(base)
    assert float(kv_gib_per_gpu(terms, 16, ctx, shared_prefix_tokens=2048)) == pytest.approx(base + 0.25)
    assert float(kv_gib_per_gpu(terms, 32, ctx, shared_prefix_tokens=2048)) == pytest.approx(2 * base + 0.25)


def _problem(cat, prefix: int):
    return query_problem("llama-3.1-8b", 5.0, (4000, 4000, 4000), (1000, 1000, 1000), 2000.0, 100.0, None,
                         gpus=["h100-sxm"], quants=["bf16"], kv_dtypes=["bf16"], prefix_hit_rate=0.5,
                         shared_prefix_tokens=prefix, cat=cat)


def test_candidates_memory_limit_reads_shared_prefix(cat, terms):
    """Same shape, with and without a 100K-token prefix: the memory limit drops by exactly the
    prefix's KV, and the candidates' KV includes it."""
    plain = build_tables(_problem(cat, 0), cat, prune=False)[0]
    cached = build_tables(_problem(cat, 100_000), cat, prune=False)[0]

    def tp1(t):
        return [c for c in t.candidates if c.shape == terms.shape]

    a, b = tp1(plain), tp1(cached)
    per_seq = 5000 * KV_PER_TOKEN
    budget = kv_budget_bytes_gpu(terms)
    assert a[0].max_concurrency == int(budget // per_seq)
    assert b[0].max_concurrency == int((budget - 100_000 * KV_PER_TOKEN) // per_seq)
    assert b[0].max_concurrency < a[0].max_concurrency
    by_batch = {c.max_batch: c for c in a}
    for c in b:
        assert c.kv_gib_per_gpu == pytest.approx(by_batch[c.max_batch].kv_gib_per_gpu + 100_000 * KV_PER_TOKEN / GIB)


Q = ["--model", "llama-3.1-8b", "--isl", "4000", "--osl", "1000", "--ttft-p99-ms", "2000",
     "--tpot-p99-ms", "100", "--gpu", "h100-sxm", "--quant", "bf16", "--kv-dtype", "bf16"]


def test_capacity_falls_with_a_large_shared_prefix():
    """8K prompts on one H100: the memory holds ~48 sequences; a 100K-token prefix (12.2 GiB)
    takes enough KV to push the batch cap down a step, and the capacity with it."""
    q = ["--model", "llama-3.1-8b", "--isl", "8000", "--osl", "1000", "--ttft-p99-ms", "4000",
         "--tpot-p99-ms", "100", "--quant", "bf16", "--kv-dtype", "bf16", "--gpus", "1", "--gpu", "h100-sxm",
         "--json"]
    r0 = CliRunner().invoke(main, ["capacity", *q])
    r1 = CliRunner().invoke(main, ["capacity", *q, "--shared-prefix-tokens", "100000"])
    assert r0.exit_code == 0 and r1.exit_code == 0, (r0.output, r1.output)
    rps0, rps1 = json.loads(r0.output)["requests_per_s"], json.loads(r1.output)["requests_per_s"]
    assert rps1 < rps0


def test_shared_prefix_beyond_context_is_one_line_exit_2():
    r = CliRunner().invoke(main, ["query", *Q, "--rps", "1", "--shared-prefix-tokens", "200000"])
    assert r.exit_code == 2
    lines = [x for x in r.output.strip().splitlines() if x]
    assert len(lines) == 1 and "--shared-prefix-tokens" in lines[0] and "context window" in lines[0]


def test_query_json_states_aggregated_mode():
    r = CliRunner().invoke(main, ["query", *Q, "--rps", "2", "--shared-prefix-tokens", "2048", "--json"])
    assert r.exit_code == 0, r.output
    deps = json.loads(r.output)["deployments"]
    assert deps and all(d["serving_mode"] == "aggregated" for d in deps)
