"""Calibration: the fit recovers factors the cost model itself generated, the overlay round-trips
and takes effect only where it matches, and bad input is refused with one line and exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from solver.calibration import SweepConfig, _terms_with, fit_calibration, predict
from solver.measured import MeasuredPoint
from solver.catalog import load_catalog
from solver.cli import main
from solver.costmodel import Shape, estimate, shape_terms
from solver.errors import InputError
from solver.overlay import calibration_yaml, load_calibration

CFG = SweepConfig("llama-3.1-70b", "h100-sxm", "fp8", "fp8", 4, "vllm", 1000, 200)
TRUE = {"eta_bw": 0.55, "mfu_prefill": 0.45, "mfu_decode": 0.3, "host_overhead_factor": 1.6,
        "collective_factor": 0.7}
CONC = np.array([1, 2, 4, 8, 16, 32, 64, 128], dtype=float)
HEADER = "concurrency,ttft_p50_ms,ttft_p99_ms,itl_p50_ms,itl_p99_ms,output_tokens_per_s,requests_per_s\n"


def synthetic(noise: float, seed: int, cfg: SweepConfig = CFG, conc: np.ndarray = CONC) -> list[MeasuredPoint]:
    """A sweep the cost model predicts with the TRUE factors, times lognormal noise."""
    cat = load_catalog()
    base = shape_terms(cat, cfg.shape, cfg.engine)
    t = _terms_with(base, list(TRUE), list(TRUE.values()), {"host_overhead_factor": 1.0, "collective_factor": 1.0})
    p = predict(t, conc, cfg.isl, cfg.osl) * np.exp(np.random.default_rng(seed).normal(0.0, noise, (3, conc.size)))
    return [MeasuredPoint(concurrency=float(c), request_rate=None, requests_per_s=float(d) / cfg.osl,
                          output_tokens_per_s=float(d), ttft_p50_ms=float(a), ttft_p99_ms=1.5 * float(a),
                          itl_p50_ms=float(b), itl_p99_ms=1.4 * float(b), e2e_mean_ms=None, source="synthetic")
            for c, a, b, d in zip(conc, *p)]


def write_csv(path: Path, points: list[MeasuredPoint]) -> Path:
    rows = [f"{p.concurrency:g},{p.ttft_p50_ms!r},{p.ttft_p99_ms!r},{p.itl_p50_ms!r},{p.itl_p99_ms!r},"
            f"{p.output_tokens_per_s!r},{p.requests_per_s!r}\n" for p in points]
    path.write_text(HEADER + "".join(rows))
    return path


def run(args: list[str]):
    return CliRunner().invoke(main, [str(a) for a in args])


CAL_FLAGS = ["--model", "llama-3.1-70b", "--gpu", "h100-sxm", "--quant", "fp8", "--kv-dtype", "fp8",
             "--tp", "4", "--engine", "vllm", "--isl", "1000", "--osl", "200", "--date", "2026-12-01"]


def test_noise_free_sweep_recovers_the_factors_exactly() -> None:
    cal = fit_calibration(load_catalog(), CFG, synthetic(0.0, 0), ["mem"], "2026-12-01")
    assert cal.fitted == list(TRUE)
    for k, v in TRUE.items():
        assert cal.factors[k] == pytest.approx(v, rel=1e-3), k
    assert cal.fit.residual_sd_log == pytest.approx(0.0, abs=1e-6)


def test_noisy_sweep_recovers_the_factors_within_their_interval() -> None:
    """3 % lognormal noise, fixed seed: every true factor lies in the fit's 99 % interval, and the
    fit's residual sd is the noise level within a factor of two."""
    cal = fit_calibration(load_catalog(), CFG, synthetic(0.03, 0), ["mem"], "2026-12-01", level=0.99)
    for k, v in TRUE.items():
        lo, hi = cal.interval[k]
        assert lo <= v <= hi, (k, lo, v, hi)
    assert 0.015 < cal.fit.residual_sd_log < 0.06


def test_interval_coverage_over_seeds_is_near_its_level() -> None:
    """Over 30 noisy sweeps the 90 % interval of the best-constrained factors (eta_bw,
    mfu_decode) holds the true value in most fits -- it is neither a point nor meaningless."""
    hits = {"eta_bw": 0, "mfu_decode": 0}
    widths = []
    for seed in range(30):
        cal = fit_calibration(load_catalog(), CFG, synthetic(0.03, seed), ["mem"], "d")
        for k in hits:
            lo, hi = cal.interval[k]
            hits[k] += lo <= TRUE[k] <= hi
        widths.append(cal.interval["eta_bw"][1] / cal.interval["eta_bw"][0])
    assert all(h >= 22 for h in hits.values()), hits  # >= 73 % of 30 at a nominal 90 %
    assert 1.0 < float(np.median(widths)) < 1.5


def test_single_gpu_sweep_holds_the_collective_factor_and_says_why() -> None:
    cfg = SweepConfig("llama-3.1-8b", "h100-sxm", "bf16", "bf16", 1, "vllm", 1000, 200)
    cal = fit_calibration(load_catalog(), cfg, synthetic(0.0, 0, cfg), ["mem"], "d")
    assert "collective_factor" not in cal.fitted
    assert "one-GPU" in cal.held["collective_factor"]
    assert cal.factors["collective_factor"] == 1.0


def test_overlay_round_trip(tmp_path: Path) -> None:
    cal = fit_calibration(load_catalog(), CFG, synthetic(0.02, 1), ["sweep.csv"], "2026-12-01")
    f = tmp_path / "cal.yaml"
    f.write_text(calibration_yaml(cal))
    assert load_calibration(f) == cal
    assert yaml.safe_load(f.read_text())["calibration"]["applies_to"]["accelerator"] == "h100-sxm"


def test_overlay_applies_only_where_it_matches() -> None:
    cat = load_catalog()
    cal = fit_calibration(cat, CFG, synthetic(0.0, 0), ["mem"], "d")
    calibrated = cat.with_calibrations((cal,))
    same = Shape("llama-3.1-70b", "h100-sxm", None, "fp8", "fp8", 2, 1, 1)  # other TP: still applies
    other_gpu = Shape("llama-3.1-70b", "h200-sxm", None, "fp8", "fp8", 4, 1, 1)
    other_quant = Shape("llama-3.1-70b", "h100-sxm", None, "bf16", "bf16", 4, 1, 1)
    assert shape_terms(calibrated, same, "vllm").bw_bytes_s == pytest.approx(
        shape_terms(cat, same, "vllm").peak_bw_bytes_s * TRUE["eta_bw"], rel=1e-3)
    for s in (other_gpu, other_quant):
        assert shape_terms(calibrated, s, "vllm") == shape_terms(cat, s, "vllm")
    assert shape_terms(calibrated, same, "sglang") == shape_terms(cat, same, "sglang")
    # the calibrated estimate reproduces the (noise-free) measurement it was fitted on
    e = estimate(calibrated, CFG.shape, 1000, 200, 32, engine="vllm")
    want = synthetic(0.0, 0)[5]
    assert e.tpot_ms == pytest.approx(want.itl_p50_ms, rel=1e-3)
    assert e.ttft_ms == pytest.approx(want.ttft_p50_ms, rel=1e-3)


def test_calibrate_cli_writes_overlay_and_plans_say_so(tmp_path: Path) -> None:
    csv = write_csv(tmp_path / "sweep.csv", synthetic(0.02, 2))
    out = tmp_path / "cal.yaml"
    r = run(["calibrate", csv, *CAL_FLAGS, "--out", out])
    assert r.exit_code == 0, r.output
    assert "eta_bw" in r.output and "interval_90%" in r.output
    cal = load_calibration(out)
    assert cal.sources == [str(csv)] and cal.date == "2026-12-01"
    q = ["query", "--model", "llama-3.1-70b", "--isl", "1000", "--osl", "200", "--rps", "10",
         "--ttft-p99-ms", "2000", "--gpu", "h100-sxm", "--calibration", out]
    r = run(q)
    assert r.exit_code == 0, r.output
    assert "calibration llama-3.1-70b/h100-sxm/fp8/vllm" in r.output
    js = json.loads(run([*q, "--json"]).output)
    assert js["calibration"]["id"] == "llama-3.1-70b/h100-sxm/fp8/vllm"
    assert js["calibration"]["applied_to"] == ["llama-3.1-70b"]
    plain = json.loads(run([*q[:-2], "--json"]).output)
    assert plain["calibration"] is None


def test_problem_file_calibration_key_is_relative_to_the_file(tmp_path: Path) -> None:
    csv = write_csv(tmp_path / "sweep.csv", synthetic(0.0, 0))
    assert run(["calibrate", csv, *CAL_FLAGS, "--out", tmp_path / "cal.yaml"]).exit_code == 0
    prob = {"name": "cal-test", "calibration": "cal.yaml", "models": [{
        "name": "chat", "model": "llama-3.1-70b", "allowed_accelerators": ["h100-sxm", "h200-sxm"],
        "traffic": {"peak_rps": 5, "input_tokens": {"p50": 1000, "p90": 1000, "p99": 1000},
                    "output_tokens": {"p50": 200, "p90": 200, "p99": 200}},
        "slo": {"ttft": {"max_ms": 2000}}}]}
    pf = tmp_path / "p.yaml"
    pf.write_text(yaml.safe_dump(prob))
    r = run(["solve", pf, "--no-pareto", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["calibration"]["id"] == "llama-3.1-70b/h100-sxm/fp8/vllm"


@pytest.mark.parametrize("args, message", [
    (["query", "--model", "llama-3.1-8b", "--isl", "100", "--osl", "10", "--rps", "1", "--ttft-p99-ms", "500"],
     "matches nothing in the plan"),
    (["query", "--model", "llama-3.1-70b", "--isl", "100", "--osl", "10", "--rps", "1", "--ttft-p99-ms", "500",
      "--gpu", "h200-sxm"], "matches nothing in the plan"),
    (["query", "--model", "llama-3.1-70b", "--isl", "100", "--osl", "10", "--rps", "1", "--ttft-p99-ms", "500",
      "--engine", "sglang"], "matches nothing in the plan"),
    (["estimate", "--model", "llama-3.1-70b", "--gpu", "h200-sxm", "--quant", "fp8", "--kv-dtype", "fp8",
      "--tp", "4", "--isl", "100", "--osl", "10"], "not on llama-3.1-70b on h200-sxm"),
])
def test_calibration_for_another_model_accelerator_or_engine_is_refused(
        tmp_path: Path, args: list[str], message: str) -> None:
    out = tmp_path / "cal.yaml"
    out.write_text(calibration_yaml(fit_calibration(load_catalog(), CFG, synthetic(0.0, 0), ["m"], "d")))
    r = run([*args, "--calibration", out])
    assert r.exit_code == 2
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], r.output


def test_sweep_with_fewer_than_three_points_is_refused_and_nothing_written(tmp_path: Path) -> None:
    csv = write_csv(tmp_path / "s.csv", synthetic(0.0, 0)[:2])
    out = tmp_path / "cal.yaml"
    r = run(["calibrate", csv, *CAL_FLAGS, "--out", out])
    assert r.exit_code == 2
    assert r.output.strip().splitlines() == [f"error: {csv}: a sweep needs at least 3 points, got 2"]
    assert not out.exists()
    with pytest.raises(InputError):
        fit_calibration(load_catalog(), CFG, synthetic(0.0, 0)[:2], ["m"], "d")


def test_bad_csv_and_non_overlay_files_are_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text(HEADER + "1,abc,2,3,4,5,6\n2,1,2,3,4,5,6\n3,1,2,3,4,5,6\n")
    r = run(["calibrate", bad, *CAL_FLAGS, "--out", tmp_path / "o.yaml"])
    assert r.exit_code == 2 and "line 2: 'ttft_p50_ms' is not a number: 'abc'" in r.output
    assert len(r.output.strip().splitlines()) == 1
    notcal = tmp_path / "n.yaml"
    notcal.write_text("foo: 1\n")
    r = run(["estimate", "--model", "llama-3.1-70b", "--gpu", "h100-sxm", "--quant", "fp8", "--kv-dtype", "fp8",
             "--tp", "4", "--isl", "100", "--osl", "10", "--calibration", notcal])
    assert r.exit_code == 2 and "not a calibration overlay" in r.output


def test_calibrate_reads_the_clients_own_results(tmp_path: Path) -> None:
    """One vLLM `bench serve --save-result` JSON per load level (field names of vLLM's
    benchmark result, as `fleetplan size` reads them) fits the same factors as the plain CSV."""
    pts = synthetic(0.0, 0)
    for i, p in enumerate(pts):
        (tmp_path / f"vllm-c{i}.json").write_text(json.dumps({
            "max_concurrency": p.concurrency, "request_rate": "inf", "request_throughput": p.requests_per_s,
            "output_throughput": p.output_tokens_per_s, "median_ttft_ms": p.ttft_p50_ms,
            "p99_ttft_ms": p.ttft_p99_ms, "median_itl_ms": p.itl_p50_ms, "p99_itl_ms": p.itl_p99_ms}))
    from_json = run(["calibrate", tmp_path, *CAL_FLAGS, "--out", tmp_path / "a.yaml", "--json"])
    from_csv = run(["calibrate", write_csv(tmp_path / "s.csv.txt", pts), *CAL_FLAGS, "--out",
                    tmp_path / "b.yaml", "--json"])
    assert from_json.exit_code == 0, from_json.output
    assert json.loads(from_json.output)["factors"] == json.loads(from_csv.output)["factors"]


def test_report_names_the_calibration_and_the_error_bands(tmp_path: Path) -> None:
    csv = write_csv(tmp_path / "sweep.csv", synthetic(0.0, 0))
    cal = tmp_path / "cal.yaml"
    assert run(["calibrate", csv, *CAL_FLAGS, "--out", cal]).exit_code == 0
    prob = {"name": "cal-report", "models": [{
        "name": "chat", "model": "llama-3.1-70b", "allowed_accelerators": ["h100-sxm"],
        "allowed_quantizations": ["fp8"],
        "traffic": {"peak_rps": 5, "input_tokens": {"p50": 1000, "p90": 1000, "p99": 1000},
                    "output_tokens": {"p50": 200, "p90": 200, "p99": 200}},
        "slo": {"ttft": {"max_ms": 2000}}}]}
    pf = tmp_path / "p.yaml"
    pf.write_text(yaml.safe_dump(prob))
    r = run(["report", pf, "--out", tmp_path / "r", "--points", "2", "--calibration", cal, "--confidence", "0.9"])
    assert r.exit_code == 0, r.output
    md = (tmp_path / "r.md").read_text()
    assert "Calibration in effect: llama-3.1-70b/h100-sxm/fp8/vllm" in md
    assert "Planned at confidence 0.9" in md
    assert "(calibration llama-3.1-70b/h100-sxm/fp8/vllm (fit residual sd)" in md


def test_hand_edited_overlay_with_impossible_factor_is_one_line(tmp_path: Path) -> None:
    cal = fit_calibration(load_catalog(), CFG, synthetic(0.0, 0), ["m"], "d")
    data = yaml.safe_load(calibration_yaml(cal))
    data["calibration"]["factors"]["eta_bw"] = 1.7
    f = tmp_path / "c.yaml"
    f.write_text(yaml.safe_dump(data))
    r = run(["estimate", "--model", "llama-3.1-70b", "--gpu", "h100-sxm", "--quant", "fp8", "--kv-dtype", "fp8",
             "--tp", "4", "--isl", "100", "--osl", "10", "--calibration", f])
    assert r.exit_code == 2 and "eta_bw must be fractions in (0, 1]" in r.output, r.output
    assert len(r.output.strip().splitlines()) == 1


# --- tails: p99 TTFT / ITL -------------------------------------------------------------------

def test_tail_factor_hand_computed() -> None:
    """Three points at one concurrency, p99/median 1.2, 1.5, 1.8: factor (1.2 x 1.5 x 1.8)^(1/3)
    = 1.4797; logs 0.18232, 0.40547, 0.58779, sd 0.20308, se 0.11725, t(0.95, 2) = 2.91999:
    interval exp(0.39186 -+ 0.34236) = 1.0507 to 2.0838 (spread 1.98 < 2: identifiable)."""
    from solver.calibration import fit_tail
    p50 = np.array([100.0, 100.0, 100.0])
    t = fit_tail("ttft", p50, p50 * [1.2, 1.5, 1.8], np.array([4.0, 4.0, 4.0]))
    assert t.identifiable and t.applied
    assert t.factor == pytest.approx(1.4797, abs=1e-4)
    assert t.interval == pytest.approx((1.0507, 2.0838), abs=1e-3)
    assert t.slope_per_octave is None  # one concurrency: no trend to estimate
    itl = fit_tail("itl", p50, p50 * [1.2, 1.5, 1.8], np.array([4.0, 4.0, 4.0]))
    assert itl.identifiable and not itl.applied and "reported only" in itl.note


def test_noise_free_sweep_fits_the_tails_it_was_built_with() -> None:
    cal = fit_calibration(load_catalog(), CFG, synthetic(0.0, 0), ["mem"], "2026-12-01")
    assert cal.tails["ttft"].factor == pytest.approx(1.5) and cal.tails["ttft"].applied
    assert cal.tails["itl"].factor == pytest.approx(1.4) and not cal.tails["itl"].applied
    assert cal.tails["ttft"].slope_per_octave == pytest.approx(0.0, abs=1e-9)


def test_noisy_tail_interval_holds_the_true_factor() -> None:
    from solver.calibration import fit_tail
    rng = np.random.default_rng(3)
    p50 = np.full(CONC.size, 200.0)
    t = fit_tail("ttft", p50, p50 * 1.5 * np.exp(rng.normal(0, 0.05, CONC.size)), CONC, level=0.99)
    assert t.identifiable and t.interval[0] <= 1.5 <= t.interval[1]


def test_tail_that_drifts_with_concurrency_is_not_identifiable_as_a_factor() -> None:
    """p99/median = 1.2 x C^0.1: 2^(0.1 x 7) = 1.62x from C = 1 to 128 (> 1.25): not applied."""
    from solver.calibration import fit_tail
    p50 = np.full(CONC.size, 200.0)
    t = fit_tail("ttft", p50, p50 * 1.2 * CONC ** 0.1, CONC)
    assert not t.identifiable and not t.applied and t.factor is None
    assert t.slope_per_octave == pytest.approx(0.1 * np.log(2), abs=1e-6)  # rounded to 6 places
    assert "changes 1.62x across the sweep" in t.note


def test_scattered_or_absent_tail_is_not_fitted() -> None:
    from solver.calibration import fit_tail
    c = np.array([8.0, 8.0, 8.0, 8.0])
    p50 = np.full(4, 100.0)
    wild = fit_tail("ttft", p50, p50 * [1.1, 4.0, 1.2, 5.0], c)
    assert not wild.identifiable and "too scattered" in wild.note and wild.factor is None
    same = fit_tail("ttft", p50, p50, c)
    assert not same.identifiable and "same p99 as the median" in same.note
    rate = fit_tail("ttft", p50, p50 * 2, None)
    assert not rate.identifiable and "open-loop rate sweep" in rate.note


def test_rate_sweep_calibration_says_the_tail_is_not_identifiable() -> None:
    pts = [MeasuredPoint(concurrency=None, request_rate=p.requests_per_s, requests_per_s=p.requests_per_s,
                         output_tokens_per_s=p.output_tokens_per_s, ttft_p50_ms=p.ttft_p50_ms,
                         ttft_p99_ms=p.ttft_p99_ms, itl_p50_ms=p.itl_p50_ms, itl_p99_ms=p.itl_p99_ms,
                         e2e_mean_ms=None, source="rate") for p in synthetic(0.0, 0)]
    cal = fit_calibration(load_catalog(), CFG, pts, ["rate"], "2026-12-01")
    assert not cal.tails["ttft"].identifiable and not cal.tails["itl"].identifiable


def test_ttft_tail_scales_with_the_targets_percentile() -> None:
    cal = fit_calibration(load_catalog(), CFG, synthetic(0.0, 0), ["mem"], "2026-12-01")
    assert cal.ttft_tail(99) == pytest.approx(1.5)
    assert cal.ttft_tail(50) == 1.0
    assert cal.ttft_tail(90) == pytest.approx(1.5 ** (1.2815516 / 2.3263479), rel=1e-6)  # 1.2502
    assert cal.model_copy(update={"tails": {}}).ttft_tail(99) == 1.0


def test_applied_ttft_tail_lowers_ttft_bound_capacity_and_plans_verify() -> None:
    from solver import api
    from solver.candidates import build_tables
    from solver.problem import query_problem
    base = load_catalog()
    cal = fit_calibration(base, CFG, synthetic(0.0, 0), ["mem"], "2026-12-01")
    with_tail = base.with_calibrations((cal,))
    without = base.with_calibrations((cal.model_copy(update={"tails": {}}),))
    p = query_problem("llama-3.1-70b", 20.0, (1000, 1000, 1000), (200, 200, 200), 600.0, None, None,
                      gpus=["h100-sxm"], quants=["fp8"], cat=base)
    cap = {}
    for name, cat in (("tail", with_tail), ("none", without)):
        (t,) = build_tables(p, cat, prune=False)
        cap[name] = {(c.label(), c.max_batch): c.capacity_rps_per_replica for c in t.candidates if not c.violations}
    shared = set(cap["tail"]) & set(cap["none"])
    assert shared and all(cap["tail"][k] <= cap["none"][k] + 1e-9 for k in shared)
    assert any(cap["tail"][k] < cap["none"][k] - 1e-9 for k in shared)
    plan = api.solve(p, with_tail)  # verify_plan re-derives every latency with the tail
    assert plan.status.has_plan


def test_calibrate_cli_prints_the_tails(tmp_path: Path) -> None:
    csv = write_csv(tmp_path / "s.csv", synthetic(0.0, 0))
    r = run(["calibrate", csv, *CAL_FLAGS, "--out", tmp_path / "c.yaml"])
    assert r.exit_code == 0, r.output
    assert "p99 ttft: p99 = 1.50 x median" in r.output and "p99 itl: p99 = 1.40 x median" in r.output
    assert load_calibration(tmp_path / "c.yaml").tails["ttft"].factor == pytest.approx(1.5)


def test_overlay_records_the_measured_range_and_old_overlays_still_load(tmp_path: Path) -> None:
    from solver.uncertainty import extrapolation_octaves
    cal = fit_calibration(load_catalog(), CFG, synthetic(0.0, 0), ["mem"], "2026-12-01")
    assert (cal.applies_to.concurrency_min, cal.applies_to.concurrency_max) == (1.0, 128.0)
    assert extrapolation_octaves(cal, 512, (1000, 1000), (200, 200)) == {"isl": 0.0, "osl": 0.0, "batch": 2.0}
    data = yaml.safe_load(calibration_yaml(cal))
    for k in ("concurrency_min", "concurrency_max"):
        del data["calibration"]["applies_to"][k]
    del data["calibration"]["tails"]
    f = tmp_path / "old.yaml"
    f.write_text(yaml.safe_dump(data))
    old = load_calibration(f)
    assert old.tails == {} and old.ttft_tail(99) == 1.0
    assert extrapolation_octaves(old, 512, (1000, 1000), (200, 200))["batch"] == 0.0  # range unknown
