"""Memory budget breakdown, utilisation override, decode bound, attention-DP, NVLink-bridge pairs
and the estimate command's help (complements test_costmodel.py)."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from solver.catalog import load_catalog
from solver.cli import main
from solver.costmodel import Shape, check_shape, decode_bound, max_concurrency, memory_budget, shape_terms
from solver.errors import InputError
from solver.topology import fits_scaleup, link_for_group


@pytest.fixture(scope="module")
def cat():
    return load_catalog()


def _terms(cat, model="llama-3.1-70b", gpu="h100-sxm", quant="fp8", kv="fp8", tp=4, ep=1):
    return shape_terms(cat, Shape(model, gpu, None, quant, kv, tp=tp, ep=ep))


def test_budget_parts_add_up_and_cap_is_tight(cat) -> None:
    t = _terms(cat)
    cap = int(max_concurrency(t, 2304))
    assert bool(memory_budget(t, cap, 2304).fits)
    assert not bool(memory_budget(t, cap + 1, 2304).fits)
    mb = memory_budget(t, 64, 2304)
    parts = mb.weights_gib + mb.overhead_gib + mb.activations_gib + float(mb.kv_gib) + float(mb.free_gib)
    assert parts == pytest.approx(mb.usable_gib)
    assert mb.usable_gib == pytest.approx(0.90 * mb.hbm_gib)


def test_budget_vectorised(cat) -> None:
    t = _terms(cat)
    mb = memory_budget(t, np.array([1, 10, 100]), 2000)
    assert mb.kv_gib.shape == (3,) and np.all(np.diff(mb.free_gib) < 0)


def test_utilisation_override(cat) -> None:
    t = _terms(cat)
    assert int(max_concurrency(t, 2304, util=0.95)) > int(max_concurrency(t, 2304))
    assert int(max_concurrency(t, 2304, util=0.20)) == 0  # 16 GiB < weights + overhead
    with pytest.raises(InputError):
        max_concurrency(t, 2304, util=1.5)


def test_decode_bound_moves_from_memory_to_compute(cat) -> None:
    t = _terms(cat, "llama-3.1-8b", tp=1)
    assert decode_bound(t, np.array([1, 4096]), np.array([1000, 100])).tolist() == ["memory", "compute"]


def test_attention_dp_holds_more_sequences(cat) -> None:
    dep = _terms(cat, "deepseek-r1", gpu="h200-sxm", tp=1, ep=8)
    tp8 = _terms(cat, "deepseek-r1", gpu="h200-sxm", tp=8)
    assert dep.gpus == tp8.gpus == 8
    # MLA's latent cache is replicated on every TP rank; attention DP keeps 8 separate pools.
    assert int(max_concurrency(dep, 2048)) > 4 * int(max_concurrency(tp8, 2048))


def test_nvlink_bridge_pairs(cat) -> None:
    s = cat.system("nvl-h100-2")
    assert link_for_group(s, 2).kind == "nvlink-bridge"
    assert link_for_group(s, 4).kind == "scale-out" and not fits_scaleup(s, 4)
    reason = check_shape(cat, Shape("llama-3.1-8b", "h100-nvl", "nvl-h100-2", "fp8", "fp8", tp=4))
    assert reason and "scale-up domain" in reason


def test_estimate_help_teaches_units_and_example() -> None:
    out = CliRunner().invoke(main, ["estimate", "--help"]).output
    assert "Example" in out and "milliseconds" in out and "GiB" in out and "--concurrency" in out
