"""Traces and their statistics (`fleetplan traffic`, solver.traffic).

The Azure traces in ../shared/traces are the Azure LLM inference traces 2023 (Azure Public
Dataset, CC-BY 4.0; Patel et al., "Splitwise", ISCA 2024); the expected figures are those of
that folder's README, computed from the files.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from solver.cli import main
from solver.errors import InputError
from solver.problem import Traffic, load_problem
from solver.traffic import parse_trace, read_trace, traffic_stats, window_counts

TRACES = Path(__file__).resolve().parents[2] / "shared" / "traces"
CONV = TRACES / "azure-llm-2023-conv.csv"
CODE = TRACES / "azure-llm-2023-code.csv"
needs_traces = pytest.mark.skipif(not CONV.exists(), reason="shared traces not present")

# 10 requests: 1 s windows hold 3, 1, 4, 2 requests (the 4.5 s arrival is in a partial window).
SMALL = """timestamp_s,input_tokens,output_tokens
0.0,100,10
0.2,200,20
0.9,300,30
1.5,400,40
2.0,500,50
2.1,600,60
2.2,700,70
2.9,800,80
3.3,900,90
4.5,1000,100
"""


def test_small_trace_statistics_by_hand() -> None:
    s = traffic_stats(parse_trace(SMALL, "small"), window_s=1.0, percentile=100)
    counts = np.array([3, 1, 4, 1])  # windows [0,1) [1,2) [2,3) [3,4); 4.5 s is past the last whole one
    assert window_counts(parse_trace(SMALL, "small").arrival_s, 1.0).tolist() == counts.tolist()
    assert s.requests == 10 and s.span_s == pytest.approx(4.5)
    assert s.mean_rps == pytest.approx(10 / 4.5)
    assert s.peak_rps == pytest.approx(4.0) and s.busiest_rps == pytest.approx(4.0)
    # index of dispersion = variance / mean of the counts: mean 2.25, variance 1.6875
    assert s.index_of_dispersion == pytest.approx(1.6875 / 2.25)
    gaps = np.diff([0, .2, .9, 1.5, 2.0, 2.1, 2.2, 2.9, 3.3, 4.5])
    assert s.interarrival_cv == pytest.approx(gaps.std() / gaps.mean())
    # p50/p90/p99 take the higher neighbour among the data values (conservative)
    assert (s.input_tokens.p50, s.input_tokens.p90, s.input_tokens.p99) == (600, 1000, 1000)
    assert s.output_tokens.mean == pytest.approx(55.0)
    assert s.hourly_rps is None and s.citation is None


def test_percentile_of_windows() -> None:
    s = traffic_stats(parse_trace(SMALL, "small"), window_s=1.0, percentile=50)
    assert s.peak_rps == pytest.approx(np.percentile([3, 1, 4, 1], 50))


def test_hourly_profile_when_long_enough() -> None:
    rng = np.random.default_rng(3)
    rows = ["timestamp_s,input_tokens,output_tokens", "0.0,100,10"]  # windows start at the first
    for hour, n in enumerate([360, 720, 1080]):  # 0.1, 0.2, 0.3 req/s
        for t in np.sort(rng.uniform(hour * 3600, (hour + 1) * 3600, n)):
            rows.append(f"{t:.3f},100,10")
    rows.append("10800.5,100,10")  # so the third hour is whole
    s = traffic_stats(parse_trace("\n".join(rows), "three-hours"), 60.0)
    assert s.hourly_rps == pytest.approx([0.1, 0.2, 0.3], rel=0.01)


@needs_traces
def test_azure_conversation_trace_matches_its_readme() -> None:
    tr = read_trace(CONV)
    assert tr.azure and tr.requests == 19366
    s = traffic_stats(tr, window_s=1.0, percentile=100)
    assert s.busiest_rps == 16
    assert s.mean_rps == pytest.approx(5.5, abs=0.05)
    assert (s.input_tokens.p50, s.input_tokens.p99) == (1020, 4142)
    assert s.output_tokens.p50 == 129
    assert s.citation and "CC-BY 4.0" in s.citation


@needs_traces
def test_code_trace_is_far_burstier_than_conversation() -> None:
    code = traffic_stats(read_trace(CODE), window_s=1.0, percentile=100)
    conv = traffic_stats(read_trace(CONV), window_s=1.0, percentile=100)
    assert code.busiest_rps == 67
    assert code.interarrival_cv > 10 > 2 > conv.interarrival_cv > 0.9
    assert code.index_of_dispersion > 5 * conv.index_of_dispersion


@needs_traces
def test_cli_prints_a_pasteable_traffic_block() -> None:
    res = CliRunner().invoke(main, ["traffic", str(CONV), "--window", "10s"])
    assert res.exit_code == 0, res.output
    block = yaml.safe_load(res.output)["traffic"]
    t = Traffic.model_validate(block)
    assert t.input_tokens.p50 == 1020 and t.output_tokens.p99 == 601
    assert "CC-BY 4.0" in res.output
    stats = json.loads(CliRunner().invoke(main, ["traffic", str(CONV), "--json"]).output)
    assert stats["traffic"]["peak_rps"] == pytest.approx(t.peak_rps)
    assert stats["peaks_rps"]["1s"] >= stats["peaks_rps"]["10s"] >= stats["peaks_rps"]["60s"]


def test_problem_can_point_at_a_trace(tmp_path: Path) -> None:
    (tmp_path / "t.csv").write_text(SMALL)
    (tmp_path / "p.yaml").write_text(
        "name: from-trace\nmodels:\n  - name: chat\n    model: llama-3.3-70b\n"
        "    traffic: {trace: t.csv, window: 1s, percentile: 100, prefix_cache_hit_rate: 0.2}\n"
        "    slo: {ttft: {max_ms: 800}}\n")
    p = load_problem(tmp_path / "p.yaml")
    t = p.models[0].traffic
    assert t.peak_rps == pytest.approx(4.0)
    assert (t.input_tokens.p50, t.input_tokens.p90, t.input_tokens.p99) == (600, 1000, 1000)
    assert t.prefix_cache_hit_rate == 0.2


@pytest.mark.parametrize("text,needle", [
    ("timestamp_s,output_tokens\n0,10\n", "missing input tokens column"),
    ("time,input_tokens,output_tokens\n0,1,1\n", "missing timestamp column"),
    ("timestamp_s,input_tokens,output_tokens\n", "empty trace"),
    ("", "empty trace"),
    ("timestamp_s,input_tokens,output_tokens\n1.0,5,5\n0.5,5,5\n", "row 3: timestamp earlier"),
    ("timestamp_s,input_tokens,output_tokens\n0,5,5\n1,x,5\n", "row 3, column input_tokens"),
    ("timestamp_s,input_tokens,output_tokens\n0,5,0\n", "row 2, column output_tokens"),
    ("timestamp_s,input_tokens,output_tokens\nyesterday,5,5\n", "row 2, column timestamp_s"),
    ("timestamp_s,input_tokens,output_tokens\nnan,5,5\n1,5,5\n", "row 2, column timestamp_s: not a finite"),
    ("timestamp_s,input_tokens,output_tokens\n0,5,5\ninf,5,5\n", "row 3, column timestamp_s: not a finite"),
    ("timestamp_s,input_tokens,output_tokens\n0,nan,5\n", "row 2, column input_tokens: must be a whole"),
    ("timestamp_s,input_tokens,output_tokens\n0,5,inf\n", "row 2, column output_tokens: must be a whole"),
    ("timestamp_s,input_tokens,output_tokens\n0,1e30,5\n", "row 2, column input_tokens: must be a whole"),
])
def test_bad_traces_name_the_column_or_row(tmp_path: Path, text: str, needle: str) -> None:
    with pytest.raises(InputError, match=needle):
        parse_trace(text, "t.csv")
    f = tmp_path / "t.csv"
    f.write_text(text)
    res = CliRunner().invoke(main, ["traffic", str(f)])
    assert res.exit_code == 2
    assert needle in res.output and len(res.output.strip().splitlines()) == 1


def test_bad_window_is_exit_2(tmp_path: Path) -> None:
    f = tmp_path / "t.csv"
    f.write_text(SMALL)
    res = CliRunner().invoke(main, ["traffic", str(f), "--window", "soon"])
    assert res.exit_code == 2 and "--window" in res.output


@needs_traces
def test_histogram_form_is_a_valid_block_that_never_reads_low() -> None:
    tr = read_trace(CODE)
    s = traffic_stats(tr, 10.0, 99.0, histogram_bins=8)
    t = Traffic.model_validate(s.traffic_block())
    assert t.input_tokens.histogram is not None and len(t.input_tokens.histogram) == 8
    assert sum(b.weight for b in t.input_tokens.histogram) == tr.requests
    for q in (50, 90, 99):  # a bin's upper edge is at or above the true percentile
        assert t.input_tokens.percentile(q) >= np.percentile(tr.input_tokens, q)
        assert t.output_tokens.percentile(q) >= np.percentile(tr.output_tokens, q)
    res = CliRunner().invoke(main, ["traffic", str(CODE), "--histogram", "6"])
    assert res.exit_code == 0
    assert len(yaml.safe_load(res.output)["traffic"]["output_tokens"]["histogram"]) == 6


def test_problem_with_a_bad_trace_names_the_problem_and_field(tmp_path: Path) -> None:
    (tmp_path / "t.csv").write_text("timestamp_s,input_tokens\n0,5\n")
    base = ("name: bad\nmodels:\n  - name: chat\n    model: llama-3.3-70b\n"
            "    traffic: {{trace: {file}, window: {window}}}\n    slo: {{ttft: {{max_ms: 800}}}}\n")
    for file, window, needle in (("missing.csv", "10s", "models[0].traffic.trace: "),
                                 ("t.csv", "10s", "missing output tokens column"),
                                 ("t.csv", "soon", "models[0].traffic.window")):
        p = tmp_path / "p.yaml"
        p.write_text(base.format(file=file, window=window))
        res = CliRunner().invoke(main, ["check", str(p)])
        assert res.exit_code == 2, res.output
        assert str(p) in res.output and needle in res.output
        assert len(res.output.strip().splitlines()) == 1


@pytest.mark.parametrize("text", [
    "timestamp_s,input_tokens,output_tokens\n0,5,5\n",              # one request: no span
    "timestamp_s,input_tokens,output_tokens\n0,5,5\n3,5,5\n",       # 3 s, shorter than 10 s windows
])
def test_trace_shorter_than_a_window_is_bad_input(tmp_path: Path, text: str) -> None:
    f = tmp_path / "t.csv"
    f.write_text(text)
    res = CliRunner().invoke(main, ["traffic", str(f), "--window", "10s"])
    assert res.exit_code == 2 and "--window: the trace spans" in res.output
    assert len(res.output.strip().splitlines()) == 1


def test_a_window_too_short_for_the_trace_is_one_line(tmp_path: Path) -> None:
    """A 100 s trace at 1 microsecond windows would need 1e8 counts (was a MemoryError at 1e-9 s)."""
    f = tmp_path / "t.csv"
    f.write_text("timestamp_s,input_tokens,output_tokens\n0,5,5\n50,5,5\n100,5,5\n")
    res = CliRunner().invoke(main, ["traffic", str(f), "--window", "0.000001"])
    assert res.exit_code == 2 and "--window" in res.output and "windows" in res.output
    assert len(res.output.strip().splitlines()) == 1
    assert CliRunner().invoke(main, ["traffic", str(f), "--window", "0.001"]).exit_code == 0
