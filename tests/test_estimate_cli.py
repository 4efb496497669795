"""``fleetplan estimate`` end to end: human and JSON output, exit codes."""

from __future__ import annotations

import json

from click.testing import CliRunner

from solver.cli import main

BASE = ["estimate", "--model", "llama-3.1-70b", "--gpu", "h100-sxm", "--quant", "fp8",
        "--kv-dtype", "fp8", "--tp", "4", "--isl", "2048", "--osl", "256"]


def run(args):
    return CliRunner().invoke(main, args)


def test_json_output():
    r = run(BASE + ["--concurrency", "64", "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    assert d["gpus"] == 4 and d["concurrency"] == 64 and d["fits"] is True and d["reason"] is None
    assert d["bound"] in ("memory", "compute", "communication")
    assert d["output_tokens_per_s_per_gpu"] * 4 == d["output_tokens_per_s"]
    for k in ("weights_gib_per_gpu", "kv_gib_per_gpu", "max_concurrency", "ttft_ms", "tpot_ms", "requests_per_s"):
        assert isinstance(d[k], (int, float))


def test_human_output_and_max():
    r = run(BASE + ["--concurrency", "max"])
    assert r.exit_code == 0, r.output
    assert "TPOT" in r.output and "max concurrency" in r.output and "fits          yes" in r.output


def test_does_not_fit_exit_1():
    r = run(["estimate", "--model", "llama-3.1-405b", "--gpu", "h100-sxm", "--tp", "2",
             "--isl", "100", "--osl", "100", "--json"])
    assert r.exit_code == 1
    assert json.loads(r.output)["fits"] is False


def test_bad_input_exit_2_one_line():
    for extra in (["--tp", "3"], ["--concurrency", "0"], ["--concurrency", "lots"]):
        r = run(BASE + extra)
        assert r.exit_code == 2, (extra, r.output)
    r = run(["estimate", "--model", "llama-3.1-70", "--gpu", "h100-sxm", "--isl", "1", "--osl", "1"])
    assert r.exit_code == 2 and "closest valid ids" in r.output
    r = run(["estimate", "--model", "llama-3.1-8b", "--gpu", "h100-sxm", "--isl", "0", "--osl", "1"])
    assert r.exit_code == 2
    r = run(["estimate", "--model", "llama-3.1-8b", "--gpu", "a100-80gb", "--quant", "nvfp4",
             "--isl", "10", "--osl", "1"])
    assert r.exit_code == 2 and "not supported" in r.output
