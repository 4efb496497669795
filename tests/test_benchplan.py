"""``bench-plan``: launch and client commands carry the plan's settings, every flag is one the
tool defines (FLAG_SOURCES, and reproduced parsers of the tools whose parser is public source),
and every command survives the shell (shlex round trip)."""

from __future__ import annotations

import argparse
import json
import shlex

import click
import pytest
from click.testing import CliRunner

from solver import benchplan
from solver.benchplan import FLAG_SOURCES, bench_plan, length_args, sweep_concurrencies, workload_lengths
from solver.catalog import load_catalog
from solver.cli import main
from solver.errors import InputError

CAT = load_catalog()
WORKLOAD = {"input_tokens": {"p50": 900, "p90": 2400, "p99": 4800}, "output_tokens": {"p50": 250, "p90": 600, "p99": 1000},
            "peak_rps": 12.0, "headroom": 0.2, "prefix_cache_hit_rate": 0.3,
            "slo": {"ttft": {"max_ms": 800.0, "percentile": 99.0}}}


def _plan(model_id: str = "llama-3.3-70b", tp: int = 4, pp: int = 1, ep: int = 1, batch: int = 48,
          quant: str = "fp8", kv: str = "fp8", hit: float = 0.3) -> dict:
    dep = {"model": "chat", "model_id": model_id, "accelerator": "h100-sxm", "system": "hgx-h100-8", "quant": quant,
           "kv_dtype": kv, "tp": tp, "pp": pp, "ep": ep, "max_batch": batch, "replicas": 3,
           "total_gpus": 3 * max(tp, ep) * pp, "gpus_per_replica": max(tp, ep) * pp, "total_capacity_rps": 15.0,
           "load_rps": 14.4, "ttft_p99_ms": 400.0, "tpot_p99_ms": 40.0, "e2e_p99_ms": 40000.0}
    return {"status": "optimal", "deployments": [dep],
            "guardrails": [{"model": "chat", "max_input_tokens": 9600, "max_new_tokens": 2000,
                            "workload": {**WORKLOAD, "prefix_cache_hit_rate": hit}}]}


def _tool(argv: tuple[str, ...]) -> tuple[str, list[str]]:
    """(tool name as in FLAG_SOURCES, the arguments after the tool's words)."""
    for name in sorted(FLAG_SOURCES, key=len, reverse=True):
        words = name.split()
        if list(argv[:len(words)]) == words:
            return name, list(argv[len(words):])
    raise AssertionError(f"unknown tool {argv[:3]}")


def _all_argvs(configs):
    for c in configs:
        yield c.launch
        for argvs in c.clients.values():
            yield from argvs


@pytest.mark.parametrize("engine", benchplan.ENGINES)
def test_every_flag_is_listed_with_its_source(engine):
    for plan in (_plan(), _plan("qwen3-235b-a22b", tp=2, ep=8, quant="bf16", kv="bf16", hit=0.0)):
        for argv in _all_argvs(bench_plan(plan, engine, CAT)):
            tool, args = _tool(argv)
            flags = [a for a in args if a.startswith("--")]
            assert flags and set(flags) <= set(FLAG_SOURCES[tool]), (tool, set(flags) - set(FLAG_SOURCES[tool]))


@pytest.mark.parametrize("engine", benchplan.ENGINES)
def test_commands_round_trip_through_the_shell(engine):
    root = "my results/it's \"quoted\" $HOME"
    configs = bench_plan(_plan(), engine, CAT, results_root=root)
    for c in configs:
        lines = {ln for ln in c.script().splitlines() if ln and not ln.startswith("#")}
        for argv in _all_argvs([c]):
            assert shlex.split(shlex.join(argv)) == list(argv)
        for argvs in c.clients.values():
            for argv in argvs:
                assert shlex.join(argv) in lines
                assert any(a.startswith(root) or root in a for a in argv)


# -- parsers reproduced from the tools' public source (flag names, types, choices, actions) -----

def _vllm_bench_parser() -> argparse.ArgumentParser:
    """vllm/benchmarks/serve.py add_cli_args + datasets/arg_utils.py add_dataset_parser (subset)."""
    p = argparse.ArgumentParser(prog="vllm bench serve")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num-prompts", type=int, default=1000)
    p.add_argument("--dataset-name", type=str, default="random", choices=[
        "sharegpt", "burstgpt", "sonnet", "random", "random-mm", "random-rerank", "hf", "custom",
        "prefix_repetition", "spec_bench", "txt-slices"])
    p.add_argument("--random-input-len", type=int, default=1024)
    p.add_argument("--random-output-len", type=int, default=128)
    p.add_argument("--random-range-ratio", type=float, default=0.0)
    p.add_argument("--random-prefix-len", type=int, default=0)
    p.add_argument("--backend", type=str, default="openai")
    p.add_argument("--base-url", type=str, default=None)
    p.add_argument("--endpoint", type=str, default="/v1/completions")
    p.add_argument("--max-concurrency", type=int, default=None)
    p.add_argument("--model", type=str, default=None)
    p.add_argument("--request-rate", type=float, default=float("inf"))
    p.add_argument("--save-result", action="store_true")
    p.add_argument("--result-dir", type=str, default=None)
    p.add_argument("--result-filename", type=str, default=None)
    p.add_argument("--ignore-eos", action="store_true")
    p.add_argument("--percentile-metrics", type=str, default=None)
    p.add_argument("--metric-percentiles", type=str, default="99")
    return p


def _vllm_serve_parser() -> argparse.ArgumentParser:
    """vllm/engine/arg_utils.py EngineArgs.add_cli_args (subset; booleans are BooleanOptionalAction)."""
    p = argparse.ArgumentParser(prog="vllm serve")
    p.add_argument("model")
    p.add_argument("--port", type=int)
    for f in ("--tensor-parallel-size", "--pipeline-parallel-size", "--data-parallel-size", "--max-num-seqs",
              "--max-num-batched-tokens", "--max-model-len", "--seed"):
        p.add_argument(f, type=int)
    p.add_argument("--gpu-memory-utilization", type=float)
    p.add_argument("--quantization", type=str)
    p.add_argument("--dtype", choices=["auto", "half", "float16", "bfloat16", "float", "float32"])
    p.add_argument("--kv-cache-dtype", choices=["auto", "bfloat16", "fp8", "fp8_e4m3", "fp8_e5m2"])
    for f in ("--enable-expert-parallel", "--enable-chunked-prefill", "--enable-prefix-caching"):
        p.add_argument(f, action=argparse.BooleanOptionalAction)
    return p


def _trtllm_serve() -> click.Command:
    """tensorrt_llm/commands/serve.py serve() options (subset, names and aliases as in the source)."""
    @click.command()
    @click.argument("model")
    @click.option("--backend", type=click.Choice(["pytorch", "tensorrt", "_autodeploy"]), default="pytorch")
    @click.option("--port", type=int, default=8000)
    @click.option("--max_batch_size", type=int)
    @click.option("--max_num_tokens", type=int)
    @click.option("--max_seq_len", type=int)
    @click.option("--tensor_parallel_size", "--tp_size", type=int, default=1)
    @click.option("--pipeline_parallel_size", "--pp_size", type=int, default=1)
    @click.option("--moe_expert_parallel_size", "--ep_size", type=int, default=None)
    @click.option("--free_gpu_memory_fraction", "--kv_cache_free_gpu_memory_fraction", type=float, default=0.9)
    @click.option("--config", "--extra_llm_api_options", "extra_llm_api_options", type=str, default=None)
    @click.option("--enable_chunked_prefill", is_flag=True, default=False)
    def serve(**kw):
        click.echo(json.dumps(kw))
    return serve


def _sglang_bench() -> click.Command:
    """python/sglang/benchmark/args.py dataset, serving and common options (subset)."""
    @click.command()
    @click.option("--dataset-name", type=str, default="sharegpt")
    @click.option("--num-prompts", type=int, default=1000)
    @click.option("--random-input-len", type=int, default=1024)
    @click.option("--random-output-len", type=int, default=1024)
    @click.option("--random-range-ratio", type=float, default=0.0)
    @click.option("--backend", type=str, default="sglang")
    @click.option("--host", type=str, default="0.0.0.0")
    @click.option("--port", type=int, default=None)
    @click.option("--model", type=str, default=None)
    @click.option("--request-rate", type=float, default=float("inf"))
    @click.option("--max-concurrency", type=int, default=None)
    @click.option("--output-file", type=str, default=None)
    @click.option("--seed", type=int, default=1)
    def bench(**kw):
        click.echo(json.dumps(kw))
    return bench


def test_vllm_commands_parse_with_vllms_own_argument_definitions():
    c = bench_plan(_plan(), "vllm", CAT)[0]
    ns = _vllm_serve_parser().parse_args(list(c.launch[2:]))
    assert (ns.tensor_parallel_size, ns.pipeline_parallel_size, ns.max_num_seqs) == (4, 1, 48)
    assert ns.max_num_batched_tokens == 48 + benchplan.PREFILL_CHUNK_TOKENS
    assert ns.quantization == "fp8" and ns.kv_cache_dtype == "fp8" and ns.gpu_memory_utilization == 0.9
    assert ns.enable_chunked_prefill is True and ns.enable_prefix_caching is True and ns.max_model_len == 11600
    off = bench_plan(_plan(hit=0.0), "vllm", CAT)[0]
    assert _vllm_serve_parser().parse_args(list(off.launch[2:])).enable_prefix_caching is False
    for argv, conc in zip(c.clients["vllm-bench"], c.concurrencies):
        ns = _vllm_bench_parser().parse_args(list(argv[3:]))
        assert ns.max_concurrency == conc and ns.dataset_name == "random" and 0 <= ns.random_range_ratio < 1
        assert ns.request_rate == float("inf") and ns.metric_percentiles == "50,99" and ns.save_result
        assert ns.num_prompts == max(benchplan.MIN_PROMPTS, benchplan.WAVES * conc)


def test_trtllm_and_sglang_commands_parse_with_their_click_options():
    c = bench_plan(_plan("qwen3-235b-a22b", tp=2, ep=8, quant="bf16", kv="fp8"), "trtllm", CAT)[0]
    r = CliRunner().invoke(_trtllm_serve(), list(c.launch[1:]))
    assert r.exit_code == 0, r.output
    kw = json.loads(r.output)
    assert (kw["tensor_parallel_size"], kw["moe_expert_parallel_size"], kw["max_batch_size"]) == (2, 8, 48)
    assert kw["extra_llm_api_options"] == "trtllm-config.yaml" and kw["enable_chunked_prefill"]
    assert c.files["trtllm-config.yaml"] == ("kv_cache_config:\n  enable_block_reuse: true\n  dtype: fp8\n"
                                            "enable_attention_dp: true\n")
    s = bench_plan(_plan(), "sglang", CAT)[0]
    for argv, conc in zip(s.clients["sglang-bench"], s.concurrencies):
        r = CliRunner().invoke(_sglang_bench(), list(argv[3:]))
        assert r.exit_code == 0, r.output
        assert json.loads(r.output)["max_concurrency"] == conc


def test_moe_expert_and_attention_data_parallel_per_engine():
    plan = _plan("qwen3-235b-a22b", tp=2, ep=8, quant="bf16", kv="bf16", hit=0.0)
    v = bench_plan(plan, "vllm", CAT)[0].launch
    assert shlex.join(v).count("--data-parallel-size 4 --enable-expert-parallel") == 1
    s = bench_plan(plan, "sglang", CAT)[0].launch
    assert "--ep-size 8 --dp-size 4 --enable-dp-attention" in shlex.join(s) and "--disable-radix-cache" in s
    dense = bench_plan(_plan(), "sglang", CAT)[0].launch
    assert "--ep-size" not in dense and "--dp-size" not in dense and "--kv-cache-dtype" in dense


def test_guidellm_and_aiperf_values_follow_their_schemas():
    c = bench_plan(_plan(), "vllm", CAT)[0]
    synthetic = {"kind", "prompt_tokens", "prompt_tokens_stdev", "prompt_tokens_min", "prompt_tokens_max",
                 "output_tokens", "output_tokens_stdev", "output_tokens_min", "output_tokens_max"}
    for argv, conc in zip(c.clients["guidellm"], c.concurrencies):
        opts = {argv[i]: dict(kv.split("=", 1) for kv in argv[i + 1].split(",")) for i in range(2, len(argv), 2)}
        assert opts["--profile"] == {"kind": "concurrent", "streams": str(conc)}
        assert set(opts["--data"]) == synthetic and opts["--data"]["prompt_tokens"] == "1482"
        assert opts["--constraint"]["kind"] == "max_requests" and opts["--output"]["kind"] == "json"
    a = c.clients["aiperf"][0]
    assert a[a.index("--endpoint-type") + 1] in ("chat", "completions", "embeddings", "rankings")


def test_sweep_reaches_past_the_knee():
    assert sweep_concurrencies(48) == (1, 2, 4, 8, 16, 32, 48, 64, 128)
    assert sweep_concurrencies(64) == (1, 2, 4, 8, 16, 32, 64, 128)
    assert sweep_concurrencies(1) == (1, 2)


def test_length_arguments_keep_the_workload_mean():
    ln = workload_lengths(WORKLOAD, "w")
    assert (ln.in_mean, ln.in_p99, ln.out_mean, ln.out_p99) == (1482, 4800, 377, 1000)
    # vLLM: uniform on len x [1-r, 1+r], r capped at 0.95; 30% prefix hits -> 445 shared tokens
    assert length_args("vllm-bench", ln, 0.3) == ["--dataset-name", "random", "--random-input-len", "1037",
                                                 "--random-output-len", "377", "--random-range-ratio", "0.950",
                                                 "--random-prefix-len", "445"]
    # SGLang: uniform on [len x r, len]; len = min(p99, 2 x mean) = 2964, r = 0, mean 1482 kept
    assert length_args("sglang-bench", ln, 0.0) == ["--dataset-name", "random", "--random-input-len", "2964",
                                                   "--random-output-len", "754", "--random-range-ratio", "0.000"]
    narrow = workload_lengths({"input_tokens": {"p50": 1000, "p90": 1100, "p99": 1200},
                               "output_tokens": {"p50": 200, "p90": 220, "p99": 250}}, "w")
    args = length_args("sglang-bench", narrow, 0.0)
    top, r = int(args[3]), float(args[7])
    assert top == 1200 and abs(top * (1 + r) / 2 - narrow.in_mean) < 1


def test_guidellm_gets_no_zero_stdev():
    """GuideLLM 0.8.1 rejects output_tokens_stdev=0 ('Input should be greater than 0'), found by
    running bench-plan's command: a constant length leaves the key out."""
    fixed = workload_lengths({"input_tokens": {"p50": 40, "p90": 60, "p99": 80},
                              "output_tokens": {"p50": 16, "p90": 16, "p99": 16}}, "w")
    (spec,) = length_args("guidellm", fixed, 0.0)[1:]
    keys = dict(kv.split("=") for kv in spec.split(","))
    assert "output_tokens_stdev" not in keys and keys["prompt_tokens_stdev"] == "16"
    assert keys["output_tokens"] == keys["output_tokens_max"] == "16"


def test_plan_without_workload_is_refused():
    plan = _plan()
    del plan["guardrails"]
    with pytest.raises(InputError, match="guardrails.workload"):
        bench_plan(plan, "vllm", CAT)


def test_cli_writes_scripts_and_nothing_on_error(tmp_path):
    plan_path = tmp_path / "plan.json"
    plan_path.write_text(json.dumps(_plan()))
    out = tmp_path / "bench"
    r = CliRunner().invoke(main, ["bench-plan", str(plan_path), "--engine", "sglang", "--out", str(out)])
    assert r.exit_code == 0, r.output
    (cfg,) = [p for p in out.iterdir() if p.is_dir()]
    assert (cfg / "run.sh").read_text().startswith("#!/usr/bin/env bash")
    assert json.loads((out / "bench-plan.json").read_text())[0]["engine"] == "sglang"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"deployments": []}))
    out2 = tmp_path / "none"
    r = CliRunner().invoke(main, ["bench-plan", str(bad), "--engine", "vllm", "--out", str(out2)])
    assert r.exit_code == 2 and "no deployments" in r.output and not out2.exists()
    r = CliRunner().invoke(main, ["bench-plan", str(plan_path), "--engine", "tgi"])
    assert r.exit_code == 2
