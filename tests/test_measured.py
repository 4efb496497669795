"""Measured sweeps: one sample per client format (tests/fixtures/bench, built from each tool's
export schema), the operating point read off a curve, and ``fleetplan size`` with the worked
check from issue 9 (Llama-3 70B fp8 TP4 on H100: 10 instances x 4 x 1.3 = 52 H100s)."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from solver.cli import main
from solver.errors import InputError
from solver.measured import Sweep, load_sweep, read_file
from solver.operating_point import little_checks, operating_point, size_fleet, stay_ms

F = Path(__file__).resolve().parent / "fixtures" / "bench"
WORKED = F / "worked-70b-fp8-tp4-h100.csv"
# What every synthetic-instance fixture holds (concurrency, req/s, p99 TTFT, p50 ITL, p99 ITL, mean E2E)
EXPECTED = [(1, 0.45, 90.0, 10.8, 14.0, 60 + 10.8 * 199), (8, 3.2, 160.0, 12.0, 18.0, 80 + 12 * 199),
            (32, 9.0, 900.0, 17.0, 30.0, 180 + 17 * 199)]


@pytest.mark.parametrize("path, fmt", [
    ("vllm", "vllm-bench"), ("sglang.jsonl", "sglang-bench"), ("aiperf", "aiperf-json"),
    ("aiperf-csv", "aiperf-csv"), ("guidellm-benchmarks.json", "guidellm-json")])
def test_each_client_format_reads_the_same_sweep(path, fmt):
    sweep = load_sweep([F / path])
    assert sweep.formats == (fmt,)
    got = [(p.concurrency, p.requests_per_s, p.ttft_p99_ms, p.itl_p50_ms, p.itl_p99_ms, p.e2e_mean_ms)
           for p in sweep.points]
    for g, e in zip(got, EXPECTED, strict=True):
        assert g == pytest.approx(e, rel=1e-6)
    assert sweep.points[1].output_tokens_per_s == pytest.approx(640.0)


@pytest.mark.parametrize("client, fmt", [("vllm-bench", "vllm-bench"), ("aiperf", "aiperf-json"),
                                         ("guidellm", "guidellm-json")])
def test_files_written_by_the_real_clients(client, fmt):
    """vllm 0.33.0, aiperf 0.13.0 and guidellm 0.8.1 output (fixtures/bench/real, run against
    GuideLLM's mock server with a 20 ms TTFT and 2 ms ITL)."""
    sweep = load_sweep([F / "real" / client])
    assert sweep.formats == (fmt,) and [p.concurrency for p in sweep.points] == [1, 2, 4]
    for p in sweep.points:
        assert 20.0 <= p.ttft_p50_ms <= p.ttft_p99_ms < 100.0  # the mock waits 20 ms for the first token
        assert 2.0 <= p.itl_p50_ms <= p.itl_p99_ms < 20.0       # and 2 ms between tokens
        assert p.e2e_mean_ms is not None and p.requests_per_s > 0
    rps = [p.requests_per_s for p in sweep.points]
    assert rps[0] < rps[1] < rps[2]
    assert all(c.ok and 0.9 < c.ratio < 1.2 for c in little_checks(sweep))


def test_real_aiperf_csv_matches_its_json():
    csv_pt = read_file(F / "real" / "aiperf" / "c2" / "profile_export_aiperf.csv")[1][0]
    json_pt = read_file(F / "real" / "aiperf" / "c2" / "profile_export_aiperf.json")[1][0]
    assert csv_pt.concurrency == json_pt.concurrency == 2
    for k in ("requests_per_s", "ttft_p99_ms", "itl_p50_ms", "itl_p99_ms", "e2e_mean_ms"):
        assert getattr(csv_pt, k) == pytest.approx(getattr(json_pt, k), abs=0.01)


def test_plain_csv_reads_rates_and_reconstructs_the_stay():
    sweep = load_sweep([WORKED])
    assert sweep.formats == ("plain-csv",) and len(sweep.points) == 9
    p48 = next(p for p in sweep.points if p.concurrency == 48)
    assert (p48.requests_per_s, p48.ttft_p99_ms, p48.e2e_mean_ms) == (12.0, 1900.0, None)
    # no E2E column: stay = p50 TTFT + p50 ITL x (mean output - 1) = 520 + 18 x 199 = 4102 ms
    assert stay_ms(p48) == pytest.approx(520 + 18 * 199)


def test_aiperf_csv_concurrency_comes_from_the_json_beside_it(tmp_path):
    d = tmp_path / "run-a"
    d.mkdir()
    shutil.copy(F / "aiperf-csv" / "c8" / "profile_export_aiperf.csv", d)
    with pytest.raises(InputError, match="no concurrency"):
        read_file(d / "profile_export_aiperf.csv")
    doc = json.loads((F / "aiperf" / "c8" / "profile_export_aiperf.json").read_text())
    doc["input_config"]["loadgen"]["concurrency"] = 12
    (d / "profile_export_aiperf.json").write_text(json.dumps(doc))
    fmt, (p,) = read_file(d / "profile_export_aiperf.csv")
    assert fmt == "aiperf-csv" and p.concurrency == 12


@pytest.mark.parametrize("config, conc, rate", [
    ({"phases": [{"name": "warmup", "type": "concurrency", "concurrency": 2},
                 {"name": "profiling", "type": "concurrency", "requests": 100, "concurrency": 24}]}, 24, None),
    ({"phases": [{"name": "profiling", "type": "poisson", "rate": 7.5}]}, None, 7.5),
    ({"concurrency": 16}, 16, None),  # GenAI-Perf
])
def test_aiperf_load_from_each_config_layout(tmp_path, config, conc, rate):
    """AIPerf 0.13 exports input_config as BenchmarkConfig (phases); older ones as loadgen."""
    doc = json.loads((F / "aiperf" / "c8" / "profile_export_aiperf.json").read_text())
    doc["input_config"] = config
    path = tmp_path / "profile_export_aiperf.json"
    path.write_text(json.dumps(doc))
    (p,) = read_file(path)[1]
    assert (p.concurrency, p.request_rate) == (conc, rate)


def test_aiperf_units_convert_to_ms(tmp_path):
    doc = json.loads((F / "aiperf" / "c8" / "profile_export_aiperf.json").read_text())
    doc["time_to_first_token"] = {k: (v * 1e6 if isinstance(v, float) else v)
                                  for k, v in doc["time_to_first_token"].items()} | {"unit": "ns"}
    path = tmp_path / "profile_export_aiperf.json"
    path.write_text(json.dumps(doc))
    assert read_file(path)[1][0].ttft_p99_ms == pytest.approx(160.0)


def test_bad_results_files(tmp_path):
    odd = tmp_path / "odd.json"
    odd.write_text(json.dumps({"hello": 1}))
    with pytest.raises(InputError, match="unknown results format; understood: vLLM bench serve JSON"):
        load_sweep([odd])
    with pytest.raises(InputError, match="at least 3 points, got 1"):
        load_sweep([F / "vllm" / "vllm-concurrency8-Llama-3.1-8B-Instruct-20261130-101500.json"])
    doc = json.loads((F / "vllm" / "vllm-concurrency8-Llama-3.1-8B-Instruct-20261130-101500.json").read_text())
    del doc["p99_ttft_ms"]
    bad = tmp_path / "v.json"
    bad.write_text(json.dumps(doc))
    with pytest.raises(InputError, match="p99_ttft_ms.*--metric-percentiles 50,99"):
        read_file(bad)


def test_folders_skip_other_artifacts_but_not_empty(tmp_path):
    shutil.copytree(F / "aiperf", tmp_path / "aiperf")
    (tmp_path / "aiperf" / "c8" / "server_metrics_export.json").write_text(json.dumps({"endpoints": []}))
    assert len(load_sweep([tmp_path / "aiperf"]).points) == 3
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.json").write_text("{}")
    with pytest.raises(InputError, match="no results file in this folder; understood"):
        load_sweep([tmp_path / "empty"])


def test_a_point_without_completed_requests_is_refused(tmp_path):
    text = WORKED.read_text().replace(",84.0,0.42\n", ",0,0\n")  # concurrency 1: nothing completed
    path = tmp_path / "sweep.csv"
    path.write_text(text)
    with pytest.raises(InputError, match="no completed requests"):
        load_sweep([path])


def test_mixed_clients_and_repeated_loads_are_refused(tmp_path):
    with pytest.raises(InputError, match="several clients"):
        load_sweep([F / "vllm", F / "aiperf"])
    with pytest.raises(InputError, match="concurrency 1 appears twice"):
        load_sweep([F / "sglang.jsonl", F / "sglang.jsonl"])


def test_operating_point_of_the_worked_check():
    op = operating_point(load_sweep([WORKED]), 2000.0)
    # knee: first point at >= 90% of the 18 req/s peak (16.2) is 16.6 req/s at 96 concurrent
    assert (op.knee_concurrency, op.peak_requests_per_s, op.peak_concurrency) == (96, 18.0, 128)
    assert (op.c_max, op.usable_requests_per_s, op.ttft_p99_at_c_max_ms) == (48, 12.0, 1900.0)
    assert op.little_ok and not op.warnings
    with_itl = operating_point(load_sweep([WORKED]), 2000.0, itl_p99_ms=25.0)
    assert with_itl.c_max == 16 and with_itl.usable_requests_per_s == 5.6


def test_little_law_flags_a_sweep_that_disagrees_by_more_than_2x():
    sweep = load_sweep([WORKED])
    pts = list(sweep.points)
    pts[5] = replace(pts[5], requests_per_s=5.0, output_tokens_per_s=1000.0)  # 48 concurrent at 5 req/s x 4.1 s
    bad = Sweep(tuple(pts), sweep.formats)
    checks = {c.concurrency: c for c in little_checks(bad)}
    assert checks[48].ratio == pytest.approx(48 / (5.0 * 4.102), rel=1e-6) and not checks[48].ok
    op = operating_point(bad, 2000.0)
    assert not op.little_ok and "Little's law: concurrency 48" in op.warnings[0]


def test_curve_that_never_meets_the_target_names_the_best_point():
    with pytest.raises(InputError, match=r"no sweep point meets p99 TTFT <= 100 ms; best point: concurrency 1, "
                                         r"p99 TTFT 260 ms"):
        operating_point(load_sweep([WORKED]), 100.0)


def test_sizing_rule():
    s = size_fleet(120, 12.0, 4, 1.3)
    assert (s.instances, s.gpus_rule, s.instances_deployed, s.gpus) == (10, 52.0, 13, 52)
    s = size_fleet(100, 12.0, 4, 1.25)  # ceil(8.33) = 9 instances; 9 x 1.25 = 11.25 -> 12 whole instances
    assert (s.instances, s.gpus_rule, s.instances_deployed, s.gpus) == (9, 45.0, 12, 48)


def test_size_cli_worked_check_and_plan_comparison(tmp_path):
    r = CliRunner().invoke(main, ["size", "--from-bench", str(WORKED), "--peak-rps", "120", "--safety", "1.3",
                                  "--ttft-p99-ms", "2000", "--gpus-per-instance", "4", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["operating_point"]["c_max"] == 48 and out["operating_point"]["usable_requests_per_s"] == 12
    assert out["size"]["gpus"] == 52 and out["size"]["instances"] == 10
    plan = {"deployments": [{"model": "chat", "accelerator": "h100-sxm", "quant": "fp8", "tp": 4, "pp": 1, "ep": 1,
                             "replicas": 8, "gpus": 32, "gpus_per_replica": 4, "capacity_rps": 128.0}],
            "guardrails": [{"model": "chat", "workload": {"slo": {"ttft": {"max_ms": 2000.0, "percentile": 99}}}}]}
    pf = tmp_path / "plan.json"
    pf.write_text(json.dumps(plan))
    r = CliRunner().invoke(main, ["size", "--from-bench", str(WORKED), "--peak-rps", "120", "--plan", str(pf)])
    assert r.exit_code == 0, r.output
    assert "= 52 GPUs" in r.output and "plan: 32 GPUs" in r.output and "16 req/s per replica predicted vs 12" in r.output


def test_size_cli_bad_input_exit_2(tmp_path):
    base = ["size", "--peak-rps", "120", "--gpus-per-instance", "4", "--ttft-p99-ms", "2000"]
    junk = tmp_path / "junk.csv"
    junk.write_text("a,b\n1,2\n")
    r = CliRunner().invoke(main, [*base, "--from-bench", str(junk)])
    assert r.exit_code == 2 and "unknown results format" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(main, [*base[:-2], "--ttft-p99-ms", "50", "--from-bench", str(WORKED)])
    assert r.exit_code == 2 and "best point" in r.output
    r = CliRunner().invoke(main, ["size", "--peak-rps", "120", "--from-bench", str(WORKED)])
    assert r.exit_code == 2 and "--ttft-p99-ms" in r.output
