"""benchmarks/peers.py: the comparison and aggregation functions on a hand-made table.

AIConfigurator itself is never imported or run here (it lives in its own venv, outside CI)."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def peers():
    spec = importlib.util.spec_from_file_location("peers", REPO / "benchmarks" / "peers.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["peers"] = mod  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(mod)
    return mod


def _row(kind: str, batch: int, r_tok: float | None, r_tpot: float | None = None) -> dict:
    return {"kind": kind, "batch": batch, "r_tok": r_tok, "r_tpot": r_tpot, "r_ttft": None}


def test_summarize_shares_and_medians_by_group(peers):
    rows = [_row("dense", 1, 0.80, 1.25), _row("dense", 1, 1.30, 0.8), _row("dense", 16, 1.0, 1.0),
            _row("MoE", 16, 0.2, 5.0), _row("MoE", 16, 0.9, 1.1), _row("MoE", 16, None)]
    s = {g["group"]: g for g in peers.summarize(rows, lambda r: r["kind"])}
    # dense: 0.80 and 1.0 within +-25 %, 1.30 is not -> 2 of 3
    assert s["dense"]["n"] == 3 and s["dense"]["within"] == pytest.approx(2 / 3)
    assert s["dense"]["med_tok"] == pytest.approx(1.0) and s["dense"]["med_tpot"] == pytest.approx(1.0)
    # MoE: the row without a ratio counts as a point but not in the share or the medians
    assert s["MoE"]["n"] == 3 and s["MoE"]["within"] == pytest.approx(0.5)
    assert s["MoE"]["med_tok"] == pytest.approx(0.55) and s["MoE"]["med_tpot"] == pytest.approx(3.05)
    assert s["all"]["n"] == 6 and s["all"]["within"] == pytest.approx(3 / 5)
    assert math.isnan(s["all"]["med_ttft"])
    # groups sort numerically, 'all' last
    order = [g["group"] for g in peers.summarize(rows + [_row("x", 256, 1.0)], lambda r: f"b{r['batch']}")]
    assert order == ["b1", "b16", "b256", "all"]


def test_within_edges_and_ratio_guards(peers):
    assert peers.within(0.75) and peers.within(1.25) and not peers.within(0.749) and not peers.within(None)
    assert peers.ratio(3.0, 2.0) == pytest.approx(1.5)
    assert peers.ratio(1.0, 0.0) is None and peers.ratio(None, 1.0) is None and peers.ratio(1.0, None) is None


def test_compare_keeps_points_both_tools_estimate(peers):
    P = peers.Point
    ok = P("llama-3.1-8b", "h200-sxm", "bf16", 1, 1, 1, 1, 16, 1024, 256)
    aic_err = P("llama-3.1-8b", "h200-sxm", "bf16", 2, 1, 1, 1, 16, 1024, 256)
    no_fit = P("llama-3.1-8b", "h200-sxm", "bf16", 4, 1, 1, 1, 16, 1024, 256)
    dep = P("qwen3-30b-a3b", "h200-sxm", "fp8", 1, 8, 1, 8, 16, 1024, 256)
    fp_ok = {"fp_fits": True, "fp_tok_s_gpu": 1000.0, "fp_tpot_ms": 10.0, "fp_ttft_ms": 50.0}
    aic = {ok.key: {"tokens_s_gpu": "2000", "tpot_ms": "5", "ttft_ms": "100"},
           aic_err.key: {"error": "RuntimeError: OOM"},
           no_fit.key: {"tokens_s_gpu": "2000", "tpot_ms": "5", "ttft_ms": "100"},
           dep.key: {"tokens_s_gpu": "500", "tpot_ms": "20", "ttft_ms": "100"}}
    fp = {ok.key: fp_ok, aic_err.key: fp_ok, no_fit.key: fp_ok | {"fp_fits": False}, dep.key: fp_ok}
    rows = peers.compare([ok, aic_err, no_fit, dep], aic, fp)
    assert [r["key"] for r in rows] == [ok.key, dep.key]
    assert rows[0]["r_tok"] == pytest.approx(0.5) and rows[0]["r_tpot"] == pytest.approx(2.0)
    assert rows[0]["r_ttft"] == pytest.approx(0.5) and rows[0]["layout"] == "dense"
    # DEP: batch is per attention rank, so the replica runs batch x ranks; fleetplan's ep > tp
    assert (rows[1]["layout"], rows[1]["concurrency"], rows[1]["gpus"]) == ("DEP", 128, 8)
    assert dep.fleetplan_tp_ep == (1, 8)


def test_largest_differences_orders_by_log_distance(peers):
    rows = [{"key": "a", "r_tok": 0.5}, {"key": "b", "r_tok": 1.9}, {"key": "c", "r_tok": 1.0},
            {"key": "d", "r_tok": None}]
    # log distance: |log 0.5| = 0.693 > |log 1.9| = 0.642 > |log 1.0| = 0
    assert [r["key"] for r in peers.largest_differences(rows, 2)] == ["a", "b"]


def test_grid_covers_the_issue_configurations(peers):
    pts = peers.grid()
    assert len(pts) >= 300 and len({p.key for p in pts}) == len(pts)
    assert {p.model for p in pts} == set(peers.DENSE) | set(peers.MOE)
    assert {p.batch for p in pts} == {1, 16, 64, 256} and {p.tp for p in pts} == {1, 2, 4, 8}
    assert {(p.isl, p.osl) for p in pts} == {(1024, 256), (4000, 1000)}
    assert {p.layout for p in pts if p.moe} == {"expert-TP", "EP", "DEP"}


def test_aic_config_maps_parallelism_onto_fleetplans_convention(peers):
    dep = {"tp": "1", "dp": "8", "moe_tp": "1", "moe_ep": "8", "concurrency": "896",
           "gemm": "GEMMQuantMode.fp8_block", "kvcache": "KVCacheQuantMode.fp8"}
    assert peers.aic_config(dep) == (1, 8, 0, "fp8", "fp8", 896)  # attention DP8 + EP8 -> tp 1, ep 8
    tp_ep = {"tp": "8", "dp": "1", "moe_tp": "1", "moe_ep": "8", "concurrency": "112", "gemm": "bfloat16",
             "kvcache": "bfloat16"}
    assert peers.aic_config(tp_ep) == (8, 8, 0, "bf16", "bf16", 112)
    expert_tp = tp_ep | {"moe_tp": "8", "moe_ep": "1"}
    assert peers.aic_config(expert_tp)[:2] == (8, 1)
    # expert TP under attention DP: attention TP1 x DP8, experts EP4 x TP2 -> moe_tp 2
    assert peers.aic_config(dep | {"moe_tp": "2", "moe_ep": "4"}) == (1, 4, 2, "fp8", "fp8", 896)
    assert peers.aic_config(dep | {"moe_tp": "2", "moe_ep": "2"}) is None  # 8 attention GPUs, 4 expert GPUs
    assert peers.aic_config({"tp": ""}) is None


def test_step_breakdown_medians_per_group(peers):
    rows = [{"layout": "dense", "aic_tpot_ms": 2.0, "fp_tpot_ms": 5.0, "fp_mem_ms": 0.5, "fp_compute_ms": 0.1,
             "fp_comm_ms": 0.4, "fp_overhead_ms": 4.0},
            {"layout": "dense", "aic_tpot_ms": 4.0, "fp_tpot_ms": 7.0, "fp_mem_ms": 1.5, "fp_compute_ms": 0.3,
             "fp_comm_ms": 1.2, "fp_overhead_ms": 4.0},
            {"layout": "EP", "aic_tpot_ms": 8.0, "fp_tpot_ms": 60.0, "fp_mem_ms": 30.0, "fp_compute_ms": 9.0,
             "fp_comm_ms": 10.0, "fp_overhead_ms": 4.0}]
    out = {b["group"]: b for b in peers.step_breakdown(rows, lambda r: r["layout"])}
    assert out["dense"]["n"] == 2 and out["dense"]["aic_tpot_ms"] == pytest.approx(3.0)
    assert out["dense"]["fp_mem_ms"] == pytest.approx(1.0) and out["dense"]["fp_overhead_ms"] == pytest.approx(4.0)
    assert out["EP"]["fp_tpot_ms"] == pytest.approx(60.0) and list(out) == ["EP", "dense"]


def test_aic_format_reads_quant_modes(peers):
    assert peers.aic_format({"gemm": "fp8_block", "kvcache": "bfloat16"}) == ("fp8", "bf16")
    assert peers.aic_format({"gemm": "GEMMQuantMode.bfloat16", "kvcache": "KVCacheQuantMode.fp8"}) == ("bf16", "fp8")


def test_step_rest_is_tpot_minus_printed_terms(peers):
    f = {"fp_tpot_ms": 20.0, "fp_mem_ms": 5.0, "fp_compute_ms": 2.0, "fp_comm_ms": 1.0, "fp_overhead_ms": 4.0}
    assert peers.step_rest(f) == pytest.approx(8.0)
    assert peers.step_rest(f | {"fp_comm_ms": None}) is None


def test_bad_venv_is_a_one_line_error_with_exit_2(peers, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        peers.main(["--aic-venv", str(tmp_path / "no-venv")])
    assert exc.value.code == 2
    assert "--aic-venv" in capsys.readouterr().err
