"""Error bands and --confidence: the band table is what the accuracy benchmark computes, the
multiplier is hand-checkable, planning at 90 % costs at least the point estimate and the plan
still verifies, and bad confidence values are one line, exit 2."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from solver import api
from solver.catalog import load_catalog
from solver.cli import main
from solver.problem import query_problem
from solver.slo import SloView
from solver.uncertainty import SMALL_BATCH_MAX, band_for, planning_multiplier, step_multiplier, widen

REPO = Path(__file__).resolve().parents[1]


def _accuracy():
    spec = importlib.util.spec_from_file_location("accuracy", REPO / "benchmarks" / "accuracy.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["accuracy"] = mod
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


def run(args: list[str]):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_band_table_matches_what_the_accuracy_benchmark_computes() -> None:
    acc = _accuracy()
    cat = load_catalog()
    terms, cases, _ = acc.compared(cat)
    computed = acc.error_bands([(c, acc.predict(t, c)) for t, c in zip(terms, cases)], cat)
    table = yaml.safe_load((REPO / "catalogs" / "error_bands.yaml").read_text())["bands"]
    assert {(b["family"], b["kind"]) for b in table} == set(computed)
    for b in table:
        mape, n = computed[(b["family"], b["kind"])]
        assert (b["mape_pct"], b["rows"]) == (mape, n), b


def test_band_lookup_family_then_any_and_conversion() -> None:
    cat = load_catalog()
    h = band_for(cat, "llama-3.1-70b", "h100-sxm", "fp8", "vllm")
    assert h.sigma == pytest.approx(0.109 * math.sqrt(math.pi / 2))  # hopper/dense/8-bit, 36 rows
    assert "hopper/dense" in h.source
    moe = band_for(cat, "mixtral-8x7b", "a100-80gb", "bf16", "vllm")  # no ampere/moe row
    assert moe.sigma == pytest.approx(0.202 * math.sqrt(math.pi / 2))
    assert "any/moe" in moe.source


def test_step_multiplier_hand_computed() -> None:
    cat = load_catalog()
    band = band_for(cat, "llama-3.1-70b", "h100-sxm", "fp8", "vllm")
    # z(0.9) = 1.2816; sigma = 0.109 x 1.2533 = 0.1366; exp(1.2816 x 0.1366) = 1.1913
    assert step_multiplier(band, 0.9) == pytest.approx(1.1913, abs=2e-4)
    assert step_multiplier(band, None) == 1.0
    assert planning_multiplier(cat, "llama-3.1-70b", "h100-sxm", "fp8", "vllm", 0.5) == pytest.approx(1.0)
    import numpy as np
    v = SloView(np.array([1, 2]), np.array([1.0, 2.0]), np.array([10.0, 20.0]), np.array([3.0, 4.0]),
                np.array([30.0, 40.0]), 8)
    w = widen(v, 1.5)
    assert list(w.ttft0_ms) == [15.0, 30.0] and list(w.service_s) == [1.5, 3.0]
    assert list(w.tpot_ms) == [4.5, 6.0] and list(w.e2e0_ms) == [45.0, 60.0] and w.max_concurrency == 8


def test_confidence_plan_costs_at_least_the_point_plan_and_verifies() -> None:
    cat = load_catalog()
    p = query_problem("llama-3.1-70b", 20.0, (1000, 1000, 1000), (200, 200, 200), 2000.0, 60.0, None,
                      gpus=["h100-sxm"], cat=cat)
    point = api.solve(p, cat)
    sure = api.solve(p.model_copy(update={"confidence": 0.9}), cat)  # verify_plan runs inside
    assert sure.status.has_plan and point.status.has_plan
    assert sure.cost_usd_per_hour >= point.cost_usd_per_hour
    # each deployment's reported p99 TPOT is the point estimate's times the multiplier
    m = planning_multiplier(cat, "llama-3.1-70b", "h100-sxm", "fp8", "vllm", 0.9)
    cap_point = {(d.quant, d.tp, d.max_batch): d.capacity_rps_per_replica for d in point.deployments}
    for d in sure.deployments:
        key = (d.quant, d.tp, d.max_batch)
        if key in cap_point and d.quant == "fp8":
            assert d.capacity_rps_per_replica < cap_point[key]
    assert m > 1.0


def test_query_confidence_reports_cost_and_hardware_within_error() -> None:
    r = run(["query", "--model", "llama-3.1-70b", "--isl", "1000", "--osl", "200", "--rps", "20",
             "--ttft-p99-ms", "2000", "--tpot-p99-ms", "60", "--gpu", "h100-sxm", "--gpu", "h200-sxm",
             "--confidence", "0.9", "--json"])
    assert r.exit_code == 0, r.output
    c = json.loads(r.output)["confidence"]
    assert c["level"] == 0.9
    assert c["cost_of_confidence_usd_per_hour"] == pytest.approx(
        c["cost_usd_per_hour"] - c["cost_usd_per_hour_at_point_estimate"])
    rows = c["hardware"]["llama-3.1-70b"]
    assert {r["accelerator"] for r in rows} == {"h100-sxm", "h200-sxm"}
    assert rows[0]["ratio_to_cheapest"] == 1.0 and rows[0]["within_error_of_cheapest"]
    for row in rows[1:]:
        limit = math.exp(1.2816 * math.hypot(rows[0]["band_sigma"], row["band_sigma"]))
        assert row["within_error_of_cheapest"] == (row["ratio_to_cheapest"] <= limit)


def test_capacity_confidence_is_a_lower_bound() -> None:
    base = ["capacity", "--model", "llama-3.1-8b", "--gpu", "h100-sxm", "--gpus", "8", "--isl", "1000",
            "--osl", "200", "--ttft-p99-ms", "500", "--json"]
    r = run([*base, "--confidence", "0.9"])
    assert r.exit_code == 0, r.output
    c = json.loads(r.output)["confidence"]
    assert c["requests_per_s"] < c["requests_per_s_at_point_estimate"]
    assert c["capacity_cost_of_confidence_rps"] > 0


@pytest.mark.parametrize("value", ["0", "1", "1.5", "-0.2", "nan"])
def test_confidence_outside_zero_one_is_one_line_exit_2(value: str) -> None:
    r = run(["query", "--model", "llama-3.1-8b", "--isl", "100", "--osl", "10", "--rps", "1",
             "--ttft-p99-ms", "500", "--confidence", value])
    assert r.exit_code == 2
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and "--confidence" in lines[0], r.output


def test_problem_file_confidence_key_is_validated(tmp_path: Path) -> None:
    prob = {"name": "c", "confidence": 1.2, "models": [{
        "name": "chat", "model": "llama-3.1-8b",
        "traffic": {"peak_rps": 5, "input_tokens": {"p50": 100, "p90": 100, "p99": 100},
                    "output_tokens": {"p50": 20, "p90": 20, "p99": 20}},
        "slo": {"ttft": {"max_ms": 2000}}}]}
    f = tmp_path / "p.yaml"
    f.write_text(yaml.safe_dump(prob))
    r = run(["solve", f, "--no-pareto"])
    assert r.exit_code == 2 and "confidence" in r.output


# --- bands by format and batch regime ----------------------------------------------------------

def test_regime_table_matches_what_the_accuracy_benchmark_computes() -> None:
    acc = _accuracy()
    cat = load_catalog()
    terms, cases, _ = acc.compared(cat)
    results = [(c, acc.predict(t, c)) for t, c in zip(terms, cases)]
    computed = acc.regime_bands(results, terms, cat)
    table = yaml.safe_load((REPO / "catalogs" / "error_bands.yaml").read_text())["regimes"]
    assert {(r["family"], r["kind"], r["format"], r["batch"]) for r in table} == set(computed)
    for r in table:
        assert (r["mape_pct"], r["rows"]) == computed[(r["family"], r["kind"], r["format"], r["batch"])], r
    # the pooled (family, kind) rows are the `bands` table's
    pooled = acc.error_bands(results, cat)
    for (fam, kind), v in pooled.items():
        assert computed[(fam, kind, "any", "any")] == v


def test_benchmark_and_lookup_share_the_regime_rules() -> None:
    from solver import uncertainty as u
    acc = _accuracy()
    assert acc.SMALL_BATCH_MAX == u.SMALL_BATCH_MAX and acc.REGIME_MIN_ROWS == u.MIN_ROWS
    as_sets = [{a for a in p if a} for p in acc.REGIME_PARENTS]
    assert as_sets == [set(p) for p in u.PARENTS]
    cat = load_catalog()
    assert [acc.format_regime(cat, q) for q in ("bf16", "fp8", "nvfp4", "w4a16")] == \
        [u.format_regime(cat, q) for q in ("bf16", "fp8", "nvfp4", "w4a16")] == ["16-bit", "8-bit", "4-bit", "4-bit"]


def test_case_batch_is_the_batch_predict_uses() -> None:
    """predict evaluates each row at accuracy.case_batch: the estimate at that batch is what
    predict returns, for every compared row but the burst ITL rows (a pure decode step)."""
    from solver.costmodel import estimate_terms
    acc = _accuracy()
    cat = load_catalog()
    terms, cases, _ = acc.compared(cat)
    keys = {"output_tokens_per_s_total": "output_tokens_per_s", "output_tokens_per_s_per_gpu":
            "output_tokens_per_s_per_gpu", "ttft_ms": "ttft_ms", "ttft_ms_mean": "ttft_ms", "itl_ms_mean": "tpot_ms"}
    checked = 0
    for t, c in zip(terms, cases):
        if c.concurrency.startswith("burst") and c.metric == "itl_ms_mean":
            continue
        e = estimate_terms(t, c.isl, c.osl, acc.case_batch(t, c))
        assert getattr(e, keys[c.metric]) == pytest.approx(acc.predict(t, c), rel=1e-12), c.label
        checked += 1
    assert checked > 100


def _synthetic_catalog(tmp_path: Path, regimes: list[dict]) -> object:
    """The real catalog reading a hand-written error_bands.yaml."""
    from dataclasses import replace
    (tmp_path / "error_bands.yaml").write_text(yaml.safe_dump({"bands": [], "regimes": regimes}))
    return replace(load_catalog(), folder=tmp_path)


def _row(fam: str, kind: str, fmt: str, batch: str, mape: float, rows: int) -> dict:
    return {"family": fam, "kind": kind, "format": fmt, "batch": batch, "mape_pct": mape, "rows": rows}


def test_regime_lookup_uses_own_regime_else_the_parent_and_says_so(tmp_path: Path) -> None:
    from solver.uncertainty import reference_band
    cat = _synthetic_catalog(tmp_path, [
        _row("hopper", "dense", "8-bit", "small", 4.0, 6),    # enough rows
        _row("hopper", "dense", "8-bit", "large", 30.0, 4),   # too few: parent
        _row("hopper", "dense", "8-bit", "any", 20.0, 10),
        _row("hopper", "dense", "16-bit", "any", 12.0, 2),    # too few
        _row("hopper", "dense", "any", "large", 16.0, 9),
        _row("hopper", "dense", "any", "any", 18.0, 20),
        _row("any", "moe", "any", "any", 40.0, 20),
    ])
    k = math.sqrt(math.pi / 2)
    small = reference_band(cat, "llama-3.1-70b", "h100-sxm", "fp8", 8)
    assert small.sigma == pytest.approx(0.04 * k) and small.rows == 6 and small.regime == "hopper/dense/8-bit/small"
    large = reference_band(cat, "llama-3.1-70b", "h100-sxm", "fp8", 64)
    assert large.sigma == pytest.approx(0.20 * k) and large.rows == 10 and large.regime == "hopper/dense/8-bit"
    assert "hopper/dense/8-bit/large has 4 rows < 5" in large.source and "over 10 rows" in large.source
    # 16-bit: own and format-only regimes thin -> family/kind/batch
    bf = reference_band(cat, "llama-3.1-70b", "h100-sxm", "bf16", 64)
    assert bf.sigma == pytest.approx(0.16 * k) and bf.regime == "hopper/dense/large"
    bf_small = reference_band(cat, "llama-3.1-70b", "h100-sxm", "bf16", 2)  # no 'small' row -> family/kind
    assert bf_small.sigma == pytest.approx(0.18 * k) and bf_small.rows == 20
    moe = reference_band(cat, "mixtral-8x7b", "a100-80gb", "bf16", 2)
    assert moe.sigma == pytest.approx(0.40 * k) and moe.regime == "any/moe"
    assert SMALL_BATCH_MAX == 16
    assert reference_band(cat, "llama-3.1-70b", "h100-sxm", "fp8", 16).rows == 6  # 16 is small
    assert reference_band(cat, "llama-3.1-70b", "h100-sxm", "fp8", 17).rows == 10


def test_confidence_multiplier_uses_each_batch_caps_own_band(tmp_path: Path) -> None:
    cat = _synthetic_catalog(tmp_path, [
        _row("hopper", "dense", "8-bit", "small", 4.0, 6), _row("hopper", "dense", "8-bit", "large", 20.0, 6)])
    import numpy as np
    m = planning_multiplier(cat, "llama-3.1-70b", "h100-sxm", "fp8", "vllm", 0.9, np.array([1, 16, 17, 256, 4]))
    z, k = 1.2815516, math.sqrt(math.pi / 2)
    lo, hi = math.exp(z * 0.04 * k), math.exp(z * 0.20 * k)
    assert m == pytest.approx([lo, lo, hi, hi, lo], rel=1e-6)
    v = SloView(np.array([4, 64]), np.array([1.0, 1.0]), np.array([10.0, 10.0]), np.array([3.0, 3.0]),
                np.array([30.0, 30.0]), 8)
    w = widen(v, planning_multiplier(cat, "llama-3.1-70b", "h100-sxm", "fp8", "vllm", 0.9, v.batch))
    assert list(w.ttft0_ms) == pytest.approx([10 * lo, 10 * hi])


# --- a calibration widens away from what it measured ------------------------------------------

def _cal(sd: float = 0.02):
    from solver.overlay import Calibration
    return Calibration.model_validate({
        "id": "llama-3.1-70b/h100-sxm/fp8/vllm",
        "applies_to": {"model": "llama-3.1-70b", "accelerator": "h100-sxm", "family": "hopper", "quant": "fp8",
                       "kv_dtype": "fp8", "engine": "vllm", "tp": 4, "isl": 1000, "osl": 200,
                       "concurrency_min": 1, "concurrency_max": 128},
        "factors": {"eta_bw": 0.7}, "fitted": ["eta_bw"], "interval": {"eta_bw": [0.68, 0.72]},
        "fit": {"points": 8, "residual_sd_log": sd, "mape_pct": {"ttft": 1.0}}, "error_band": sd,
        "sources": ["test"], "date": "2026-12-01"})


def test_calibrated_band_grows_back_to_the_uncalibrated_band_with_log_distance() -> None:
    from solver.uncertainty import band_for, reference_band
    base = load_catalog()
    cat = base.with_calibrations((_cal(0.02),))
    args = ("llama-3.1-70b", "h100-sxm", "fp8", "vllm")
    inside = band_for(cat, *args, 64, (1000, 1000), (200, 200))
    assert inside.sigma == pytest.approx(0.02) and "outside" not in inside.source
    ref = reference_band(base, "llama-3.1-70b", "h100-sxm", "fp8", 64).sigma
    # p99 prompt 4000 = 2 octaves above the 1000 measured: 2/3 of the way back
    two = band_for(cat, *args, 64, (1000, 4000), (200, 200))
    assert two.sigma == pytest.approx(0.02 + 2 / 3 * (ref - 0.02))
    assert "2.0 octaves outside what it measured (isl 2.0)" in two.source
    # 30K tokens: all the way back (log2 30 = 4.9 > 3)
    far = band_for(cat, *args, 64, (30000, 30000), (200, 200))
    assert far.sigma == pytest.approx(ref)
    # batch 256 is one octave above the measured 128, output 400 one above 200: two in all
    both = band_for(cat, *args, 256, (1000, 1000), (200, 400))
    ref_large = reference_band(base, "llama-3.1-70b", "h100-sxm", "fp8", 256).sigma
    assert both.sigma == pytest.approx(0.02 + 2 / 3 * (ref_large - 0.02))
    # below the measured range counts too (concurrency 1 measured: batch 1 is inside)
    assert band_for(cat, *args, 1, (250, 1000), (200, 200)).sigma == pytest.approx(0.02 + 2 / 3 * (
        reference_band(base, "llama-3.1-70b", "h100-sxm", "fp8", 1).sigma - 0.02))
    # a poor fit is never made tighter by extrapolating
    loose = base.with_calibrations((_cal(0.5),))
    assert band_for(loose, *args, 64, (30000, 30000), (200, 200)).sigma == pytest.approx(0.5)


def test_confidence_plan_with_calibration_is_wider_for_long_prompts() -> None:
    """The same calibration plans a 1K-token workload at its fit band and a 16K one at nearly
    the uncalibrated band: the step multiplier of the long workload is larger."""
    import numpy as np
    cat = load_catalog().with_calibrations((_cal(0.02),))
    short = query_problem("llama-3.1-70b", 5.0, (1000, 1000, 1000), (200, 200, 200), 2000.0, None, None,
                          gpus=["h100-sxm"], cat=cat).models[0]
    long_ = query_problem("llama-3.1-70b", 5.0, (16000, 16000, 16000), (200, 200, 200), 20000.0, None, None,
                          gpus=["h100-sxm"], cat=cat).models[0]
    b = np.array([64])
    m_short = planning_multiplier(cat, "llama-3.1-70b", "h100-sxm", "fp8", "vllm", 0.9, b, short)
    m_long = planning_multiplier(cat, "llama-3.1-70b", "h100-sxm", "fp8", "vllm", 0.9, b, long_)
    assert m_short[0] == pytest.approx(math.exp(1.2815516 * 0.02), rel=1e-6)
    assert m_long[0] > m_short[0] * 1.05


# --- the report shows what the margin costs ---------------------------------------------------

def test_report_shows_point_estimate_cost_next_to_the_confidence_cost(tmp_path: Path) -> None:
    prob = {"name": "margin", "models": [{
        "name": "chat", "model": "llama-3.1-70b", "allowed_accelerators": ["h100-sxm", "h200-sxm"],
        "traffic": {"peak_rps": 20, "input_tokens": {"p50": 1000, "p90": 1000, "p99": 1000},
                    "output_tokens": {"p50": 200, "p90": 200, "p99": 200}},
        "slo": {"ttft": {"max_ms": 2000}, "tpot": {"max_ms": 60}}}]}
    pf = tmp_path / "p.yaml"
    pf.write_text(yaml.safe_dump(prob))
    r = run(["report", pf, "--out", tmp_path / "r", "--points", "2", "--confidence", "0.9"])
    assert r.exit_code == 0, r.output
    js = json.loads((tmp_path / "r.json").read_text())
    c = js["confidence"]
    cat = load_catalog()
    from solver.problem import load_problem
    p = load_problem(pf, cat)
    point = api.solve(p, cat)
    sure = api.solve(p.model_copy(update={"confidence": 0.9}), cat)
    assert c["level"] == 0.9
    assert c["cost_usd_per_hour_at_point_estimate"] == pytest.approx(point.cost_usd_per_hour)
    assert c["cost_usd_per_hour"] == pytest.approx(sure.cost_usd_per_hour) == js["plan"]["cost_usd_per_hour"]
    assert c["cost_of_confidence_usd_per_hour"] == pytest.approx(sure.cost_usd_per_hour - point.cost_usd_per_hour)
    md = (tmp_path / "r.md").read_text()
    assert "## Cost of confidence" in md
    assert (f"At the point estimate: ${point.cost_usd_per_hour:,.2f}/h on {point.gpus} GPUs. "
            f"The margin costs ${sure.cost_usd_per_hour - point.cost_usd_per_hour:,.2f}/h") in md
    assert {row["accelerator"] for row in c["hardware"]["chat"]} == {"h100-sxm", "h200-sxm"}
    assert "<h2>Cost of confidence</h2>" in (tmp_path / "r.html").read_text()


def test_report_without_confidence_has_no_margin_section(tmp_path: Path) -> None:
    prob = {"name": "plain", "models": [{
        "name": "chat", "model": "llama-3.1-8b", "allowed_accelerators": ["h100-sxm"],
        "traffic": {"peak_rps": 5, "input_tokens": {"p50": 500, "p90": 500, "p99": 500},
                    "output_tokens": {"p50": 100, "p90": 100, "p99": 100}},
        "slo": {"ttft": {"max_ms": 2000}}}]}
    pf = tmp_path / "p.yaml"
    pf.write_text(yaml.safe_dump(prob))
    assert run(["report", pf, "--out", tmp_path / "r", "--points", "2"]).exit_code == 0
    assert "Cost of confidence" not in (tmp_path / "r.md").read_text()
    assert "confidence" not in json.loads((tmp_path / "r.json").read_text())


def test_accelerators_without_a_price_for_the_pricing_are_named(tmp_path: Path) -> None:
    """`pricing: reserved` on the chat example: the allowed accelerators with no reserved row
    are not planned, and the plan says which, so a reserved plan dearer than the on-demand one
    explains itself (issue 12)."""
    src = (Path(__file__).resolve().parent.parent / "problems" / "chat-assistant-70b.yaml").read_text()
    path = tmp_path / "reserved.yaml"
    path.write_text(src.replace("pricing: on-demand", "pricing: reserved"))
    cat = load_catalog()
    allowed = yaml.safe_load(src)["models"][0]["allowed_accelerators"]
    expect = sorted(g for g in allowed if not cat.prices_for(g, "reserved", None))
    assert expect and len(expect) < len(allowed)  # some priced, some not
    r = run(["solve", str(path), "--json"])
    assert r.exit_code == 0, r.output
    c = json.loads(r.output)["confidence"]
    assert c["unpriced"] == {"chat": expect}
    assert c["pricing"] == "reserved"
    assert not {row["accelerator"] for row in c["hardware"]["chat"]} & set(expect)
    text = run(["solve", str(path)]).output
    assert f"chat: no reserved price for {', '.join(expect)} in the catalog: not planned" in text
