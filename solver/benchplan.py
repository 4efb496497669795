"""Benchmark plan: for each configuration of a plan, the engine launch command with the plan's
settings and a concurrency sweep, as argv lists for the engines' own benchmark clients.

Pure: :func:`bench_plan` takes the plan (the dict ``solve --json`` / ``query --json`` print,
which carries ``guardrails[].workload``) and the catalog, and returns :class:`BenchConfig`
objects; the CLI writes them. Every argument is kept as an argv element and rendered with
``shlex.join``, so a model id or path with spaces or quotes survives the shell.

Settings taken from the plan and the cost model's assumptions:

- TP/PP/EP from the deployment; EP > TP runs attention data-parallel (``ep / tp`` copies, the
  cost model's ``dp_attn``), which is DP inside one instance. Replicas are separate instances:
  the benchmark measures one.
- quantisation and KV dtype; formats whose weights need a pre-quantised checkpoint (int8,
  w4a16, nvfp4, mxfp4) keep the catalog's Hugging Face repo and say to swap in that checkpoint.
- max sequences = the plan's batch cap; max batched tokens = batch cap + the cost model's
  prefill chunk (``PREFILL_CHUNK_TOKENS``), since decode tokens share the step budget; chunked
  prefill on (the cost model prefills in chunks).
- prefix caching on when the workload states a prefix-cache hit rate, else off.
- memory utilisation = the cost model's ``UTILISATION`` share of HBM (vLLM
  ``--gpu-memory-utilization``, SGLang ``--mem-fraction-static``). TensorRT-LLM's fraction is
  of the memory left after weights, a different quantity: its default (0.9) is kept and said.
- context limit = the guardrails' ``max_input_tokens + max_new_tokens``.

Sweep: concurrency 1, 2, 4, ... up to at least twice the predicted knee (the batch cap: beyond it
requests queue), with the knee itself; ``max(MIN_PROMPTS, WAVES x concurrency)`` requests per
point. Lengths follow the workload: each client's synthetic generator is set so the mean matches
the workload's mean and the spread reaches its p99 (see :func:`length_args`).

Where each flag was checked (tool, flag, place in the tool's source or documentation):

``FLAG_SOURCES`` below; tests assert every generated flag is listed there, and parse the
commands with reproductions of vLLM's, SGLang's and TensorRT-LLM's argument definitions.
``benchmarks/client_flags.py`` parses the vLLM, SGLang, AIPerf and GuideLLM commands with the real
tools (vllm 0.33.0, sglang 0.5.23, aiperf 0.13.0 and guidellm 0.8.1 from PyPI, 2026-12-01: all
parsed with the intended values). TensorRT-LLM was checked against its source only.
sglang 0.5.23 marks ``python -m sglang.bench_serving`` deprecated for
``python -m sglang.benchmark.serving`` (same options); the old path is kept since it runs on
both older and current releases.
"""

from __future__ import annotations

import math
import shlex
from dataclasses import dataclass, field
from typing import Any

from solver.catalog import Catalog
from solver.costmodel import PREFILL_CHUNK_TOKENS
from solver.costmodel.shape import UTILISATION
from solver.errors import InputError
from solver.problem import TokenLengths

ENGINES = ("vllm", "sglang", "trtllm")
CLIENTS = {"vllm": ("vllm-bench", "aiperf", "guidellm"), "sglang": ("sglang-bench", "aiperf", "guidellm"),
           "trtllm": ("aiperf", "guidellm")}
PORT = 8000
HOST = "127.0.0.1"
MIN_PROMPTS = 200
WAVES = 5
PRE_QUANTISED = {"int8", "w4a16", "nvfp4", "mxfp4"}
"""Formats served from a checkpoint quantised offline (no on-the-fly flag in the engines)."""

_VLLM_SERVE = "vllm-project/vllm vllm/engine/arg_utils.py EngineArgs.add_cli_args (docs.vllm.ai serving/engine_args)"
_VLLM_BENCH = "vllm-project/vllm vllm/benchmarks/serve.py add_cli_args @def9ce85"
_VLLM_DATA = "vllm-project/vllm vllm/benchmarks/datasets/arg_utils.py add_dataset_parser @237145ea"
_SGL_SERVE = ("sgl-project/sglang python/sglang/srt/server_args.py ServerArgs.add_cli_args "
              "(docs.sglang.io advanced_features/server_arguments)")
_SGL_BENCH = "sgl-project/sglang python/sglang/benchmark/args.py dataset/serving/common options @2df7ed9a"
_TRT = "NVIDIA/TensorRT-LLM tensorrt_llm/commands/serve.py serve() click options @00209af1"
_TRT_YAML = "NVIDIA/TensorRT-LLM tensorrt_llm/llmapi/llm_args.py KvCacheConfig, BaseLlmArgs"
_AIPERF = "ai-dynamo/aiperf docs/cli_options.md @db4f6397 (2025-10-10)"
_GUIDE = ("vllm-project/guidellm README.md 'Common Use Cases' and src/guidellm/benchmark/schemas/"
          "entrypoints.py argument_alias @ee7a7745 (2026-08-07)")

FLAG_SOURCES: dict[str, dict[str, str]] = {
    "vllm serve": {f: _VLLM_SERVE for f in (
        "--tensor-parallel-size", "--pipeline-parallel-size", "--data-parallel-size",
        "--enable-expert-parallel", "--quantization", "--kv-cache-dtype", "--max-num-seqs",
        "--max-num-batched-tokens", "--enable-chunked-prefill", "--enable-prefix-caching",
        "--no-enable-prefix-caching", "--gpu-memory-utilization", "--max-model-len", "--port",
        "--dtype", "--seed")},
    "vllm bench serve": {**{f: _VLLM_BENCH for f in (
        "--backend", "--base-url", "--endpoint", "--model", "--max-concurrency", "--request-rate",
        "--ignore-eos", "--percentile-metrics", "--metric-percentiles", "--save-result",
        "--result-dir", "--result-filename")},
        **{f: _VLLM_DATA for f in ("--seed", "--num-prompts", "--dataset-name", "--random-input-len",
                                   "--random-output-len", "--random-range-ratio", "--random-prefix-len")}},
    "python -m sglang.launch_server": {f: _SGL_SERVE for f in (
        "--model-path", "--tp-size", "--pp-size", "--ep-size", "--dp-size", "--enable-dp-attention",
        "--quantization", "--kv-cache-dtype", "--max-running-requests", "--chunked-prefill-size",
        "--disable-radix-cache", "--mem-fraction-static", "--context-length", "--port")},
    "python -m sglang.bench_serving": {f: _SGL_BENCH for f in (
        "--backend", "--host", "--port", "--model", "--dataset-name", "--random-input-len",
        "--random-output-len", "--random-range-ratio", "--num-prompts", "--max-concurrency",
        "--request-rate", "--output-file", "--seed")},
    "trtllm-serve": {f: _TRT for f in (
        "--tp_size", "--pp_size", "--ep_size", "--max_batch_size", "--max_num_tokens",
        "--max_seq_len", "--kv_cache_free_gpu_memory_fraction", "--enable_chunked_prefill",
        "--backend", "--port", "--config")},
    "aiperf profile": {f: _AIPERF for f in (
        "--model", "--url", "--endpoint-type", "--streaming", "--synthetic-input-tokens-mean",
        "--synthetic-input-tokens-stddev", "--output-tokens-mean", "--output-tokens-stddev",
        "--concurrency", "--request-count", "--artifact-dir", "--random-seed", "--extra-inputs")},
    "guidellm run": {f: _GUIDE for f in ("--backend", "--profile", "--constraint", "--data", "--output")},
}
"""Every flag this module emits, per tool, with where it was checked (repository, file, commit)."""

TRT_YAML_KEYS = {"kv_cache_config.dtype": _TRT_YAML, "kv_cache_config.enable_block_reuse": _TRT_YAML,
                 "enable_attention_dp": _TRT_YAML}


@dataclass(frozen=True)
class BenchConfig:
    """One configuration of the plan, ready to benchmark."""

    name: str
    model: str
    hf_repo: str
    engine: str
    deployment: dict[str, Any]
    launch: tuple[str, ...]
    files: dict[str, str]
    """Extra files the launch reads (name -> text), e.g. TensorRT-LLM's YAML."""
    concurrencies: tuple[int, ...]
    predicted_knee: int
    clients: dict[str, tuple[tuple[str, ...], ...]]
    """Client name -> one argv per sweep point."""
    results_dir: str
    notes: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "model": self.model, "hf_repo": self.hf_repo, "engine": self.engine,
            "deployment": self.deployment, "launch": list(self.launch),
            "launch_shell": shlex.join(self.launch), "files": dict(self.files),
            "concurrencies": list(self.concurrencies), "predicted_knee": self.predicted_knee,
            "clients": {k: [list(a) for a in v] for k, v in self.clients.items()},
            "results_dir": self.results_dir, "notes": list(self.notes),
        }

    def script(self) -> str:
        """A bash script: launch in the background, wait for readiness, run the sweeps."""
        lines = ["#!/usr/bin/env bash", f"# fleetplan bench-plan: {self.name} on {self.engine}",
                 "# generated; every argument is quoted with shlex.join", "set -euo pipefail",
                 "cd \"$(dirname \"$0\")\"  # results and engine files are relative to this script", ""]
        lines += [f"# note: {n}" for n in self.notes]
        for fname in self.files:
            lines.append(f"# reads {fname} (written beside this script)")
        lines += ["", shlex.join(self.launch) + " &", "SERVER_PID=$!",
                  "trap 'kill \"$SERVER_PID\"' EXIT",
                  f"until curl -sf {shlex.quote(f'http://{HOST}:{PORT}/v1/models')} >/dev/null; do sleep 5; done", ""]
        for client, argvs in self.clients.items():
            lines.append(f"# {client}: concurrency {', '.join(str(c) for c in self.concurrencies)}")
            lines += [shlex.join(a) for a in argvs]
            lines.append("")
        return "\n".join(lines)


def _lengths(d: dict[str, Any], where: str) -> TokenLengths:
    try:
        return TokenLengths(**{k: v for k, v in d.items() if k in ("p50", "p90", "p99", "histogram")})
    except (TypeError, ValueError) as exc:
        raise InputError(f"bad token lengths: {str(exc).splitlines()[0]}", where=where) from None


def _stddev(t: TokenLengths) -> float:
    """Spread of a length distribution: the histogram's, else (p90 - p50) / 1.2816 (a normal's)."""
    if t.histogram is not None:
        total = sum(b.weight for b in t.histogram)
        mean = t.mean()
        return math.sqrt(sum(b.weight * (b.tokens - mean) ** 2 for b in t.histogram) / total)
    return (t.percentile(90) - t.percentile(50)) / 1.2816


@dataclass(frozen=True)
class Lengths:
    in_mean: int
    in_p99: int
    in_sd: int
    out_mean: int
    out_p99: int
    out_sd: int


def workload_lengths(workload: dict[str, Any], where: str) -> Lengths:
    tin = _lengths(workload.get("input_tokens") or {}, f"{where}.input_tokens")
    tout = _lengths(workload.get("output_tokens") or {}, f"{where}.output_tokens")
    return Lengths(max(1, round(tin.mean())), tin.percentile(99), round(_stddev(tin)),
                   max(1, round(tout.mean())), tout.percentile(99), round(_stddev(tout)))


def length_args(client: str, ln: Lengths, prefix_hit: float) -> list[str]:
    """Synthetic-length flags of one client for the workload.

    vLLM ``random``: uniform on ``len x [1 - r, 1 + r]`` (r < 1), one r for input and output:
    lengths = the means, r reaches the input's p99 (capped 0.95); a prefix-cache hit rate becomes
    a shared prefix of that share of the mean prompt (``--random-prefix-len``).
    SGLang ``random``: uniform on ``[len x r, len]``: input len = min(p99, 2 x mean),
    r = 2 mean / len - 1 (so the mean is kept), output len = 2 x mean / (1 + r).
    AIPerf: normal with the mean and stddev. GuideLLM ``synthetic_text``: mean, stddev and max.
    """
    if client == "vllm-bench":
        r = min(0.95, max(0.0, (ln.in_p99 - ln.in_mean) / ln.in_mean))
        prefix = round(prefix_hit * ln.in_mean)
        args = ["--dataset-name", "random", "--random-input-len", str(max(1, ln.in_mean - prefix)),
                "--random-output-len", str(ln.out_mean), "--random-range-ratio", f"{r:.3f}"]
        return args + (["--random-prefix-len", str(prefix)] if prefix else [])
    if client == "sglang-bench":
        top = min(ln.in_p99, 2 * ln.in_mean)
        r = min(1.0, max(0.0, 2 * ln.in_mean / top - 1))
        out_len = max(1, round(2 * ln.out_mean / (1 + r)))
        return ["--dataset-name", "random", "--random-input-len", str(top),
                "--random-output-len", str(out_len), "--random-range-ratio", f"{r:.3f}"]
    if client == "aiperf":
        return ["--synthetic-input-tokens-mean", str(ln.in_mean), "--synthetic-input-tokens-stddev", str(ln.in_sd),
                "--output-tokens-mean", str(ln.out_mean), "--output-tokens-stddev", str(ln.out_sd)]
    if client == "guidellm":
        parts = ["kind=synthetic_text", f"prompt_tokens={ln.in_mean}"]
        parts += [f"prompt_tokens_stdev={ln.in_sd}"] if ln.in_sd > 0 else []  # GuideLLM wants > 0
        parts += ["prompt_tokens_min=1", f"prompt_tokens_max={ln.in_p99}", f"output_tokens={ln.out_mean}"]
        parts += [f"output_tokens_stdev={ln.out_sd}"] if ln.out_sd > 0 else []
        parts += ["output_tokens_min=1", f"output_tokens_max={ln.out_p99}"]
        return ["--data", ",".join(parts)]
    raise ValueError(client)


def sweep_concurrencies(knee: int) -> tuple[int, ...]:
    """1, 2, 4, ... up to the first power of two >= 2 x knee, plus the knee itself."""
    out = {knee}
    c = 1
    while True:
        out.add(c)
        if c >= 2 * knee:
            break
        c *= 2
    return tuple(sorted(out))


def prompts_for(c: int) -> int:
    return max(MIN_PROMPTS, WAVES * c)


def _kv_flag(engine: str, kv: str) -> list[str]:
    if kv in ("bf16", "fp16"):
        return []
    if kv != "fp8":
        raise InputError(f"KV dtype {kv!r} has no {engine} flag this tool knows")
    return ["--kv-cache-dtype", "fp8" if engine == "vllm" else "fp8_e4m3"]


def _quant(engine: str, quant: str, notes: list[str], repo: str) -> list[str]:
    if quant in PRE_QUANTISED:
        notes.append(f"{quant} weights need a checkpoint quantised offline: replace {repo} in the launch "
                     "command with that checkpoint (the engine reads the format from its config)")
        return []
    if quant == "fp8":
        if engine == "trtllm":
            notes.append(f"TensorRT-LLM reads fp8 from the checkpoint: replace {repo} with an FP8 checkpoint")
            return []
        return ["--quantization", "fp8"]
    if quant in ("bf16", "fp16"):
        return ["--dtype", "bfloat16" if quant == "bf16" else "float16"] if engine == "vllm" else []
    raise InputError(f"quantisation {quant!r} has no {engine} mapping in bench-plan")


def launch(engine: str, dep: dict[str, Any], repo: str, ctx_len: int, prefix: bool,
           notes: list[str]) -> tuple[tuple[str, ...], dict[str, str]]:
    """Launch argv (and extra files) of one instance of ``dep`` on ``engine``."""
    tp, pp, ep, batch = int(dep["tp"]), int(dep["pp"]), int(dep["ep"]), int(dep["max_batch"])
    dp = max(tp, ep) // tp
    spec = dep.get("speculative")
    if spec:
        draft = ('"method": "deepseek_mtp"' if spec["draft"] == "mtp"
                 else f'"model": "<{spec["draft"]} checkpoint>"')
        notes.append(f"the plan decodes speculatively (draft {spec['draft']}, {spec['draft_tokens']} draft "
                     f"tokens, acceptance {spec['acceptance_rate']:g} assumed): add the engine's speculative "
                     f"decoding to the launch (vLLM: --speculative-config '{{{draft}, \"num_speculative_tokens\": "
                     f"{spec['draft_tokens']}}}') and compare the measured acceptance with the assumed one")
    tokens = batch + PREFILL_CHUNK_TOKENS
    if engine == "vllm":
        argv = ["vllm", "serve", repo, "--port", str(PORT), "--tensor-parallel-size", str(tp),
                "--pipeline-parallel-size", str(pp)]
        if ep > 1:
            argv += ["--data-parallel-size", str(dp), "--enable-expert-parallel"]
        argv += _quant(engine, dep["quant"], notes, repo) + _kv_flag(engine, dep["kv_dtype"])
        argv += ["--max-num-seqs", str(batch), "--max-num-batched-tokens", str(tokens),
                 "--enable-chunked-prefill",
                 "--enable-prefix-caching" if prefix else "--no-enable-prefix-caching",
                 "--gpu-memory-utilization", f"{UTILISATION:g}", "--max-model-len", str(ctx_len), "--seed", "0"]
        return tuple(argv), {}
    if engine == "sglang":
        argv = ["python", "-m", "sglang.launch_server", "--model-path", repo, "--port", str(PORT),
                "--tp-size", str(tp), "--pp-size", str(pp)]
        if ep > 1:
            argv += ["--ep-size", str(ep)]
        if dp > 1:
            argv += ["--dp-size", str(dp), "--enable-dp-attention"]
        argv += _quant(engine, dep["quant"], notes, repo) + _kv_flag(engine, dep["kv_dtype"])
        argv += ["--max-running-requests", str(batch), "--chunked-prefill-size", str(PREFILL_CHUNK_TOKENS),
                 "--mem-fraction-static", f"{UTILISATION:g}", "--context-length", str(ctx_len)]
        if not prefix:
            argv.append("--disable-radix-cache")
        return tuple(argv), {}
    if engine == "trtllm":
        _quant(engine, dep["quant"], notes, repo)
        kv = {"enable_block_reuse": prefix}
        if dep["kv_dtype"] == "fp8":
            kv["dtype"] = "fp8"
        yaml_lines = ["kv_cache_config:"] + [f"  {k}: {str(v).lower() if isinstance(v, bool) else v}"
                                             for k, v in kv.items()]
        if dp > 1:
            yaml_lines.append("enable_attention_dp: true")
        notes.append("--kv_cache_free_gpu_memory_fraction is a share of the memory left after weights "
                     f"(TensorRT-LLM's default 0.9 kept), not the {UTILISATION:.0%} of HBM the plan assumes")
        argv = ["trtllm-serve", repo, "--backend", "pytorch", "--port", str(PORT), "--tp_size", str(tp),
                "--pp_size", str(pp)]
        if ep > 1:
            argv += ["--ep_size", str(ep)]
        argv += ["--max_batch_size", str(batch), "--max_num_tokens", str(tokens), "--max_seq_len", str(ctx_len),
                 "--kv_cache_free_gpu_memory_fraction", "0.9", "--enable_chunked_prefill",
                 "--config", "trtllm-config.yaml"]
        return tuple(argv), {"trtllm-config.yaml": "\n".join(yaml_lines) + "\n"}
    raise InputError(f"--engine: unknown engine {engine!r}; choose from {', '.join(ENGINES)}")


def client_argv(client: str, c: int, repo: str, ln: Lengths, prefix_hit: float, results: str) -> tuple[str, ...]:
    """One sweep point's argv for ``client``; results land under ``results/<client>/``."""
    n = prompts_for(c)
    base = f"{results}/{client}"
    if client == "vllm-bench":
        argv = ["vllm", "bench", "serve", "--backend", "openai", "--base-url", f"http://{HOST}:{PORT}",
                "--endpoint", "/v1/completions", "--model", repo, *length_args(client, ln, prefix_hit),
                "--num-prompts", str(n), "--max-concurrency", str(c), "--request-rate", "inf", "--ignore-eos",
                "--percentile-metrics", "ttft,tpot,itl,e2el", "--metric-percentiles", "50,99", "--seed", "0",
                "--save-result", "--result-dir", base, "--result-filename", f"c{c}.json"]
    elif client == "sglang-bench":
        argv = ["python", "-m", "sglang.bench_serving", "--backend", "sglang", "--host", HOST, "--port", str(PORT),
                "--model", repo, *length_args(client, ln, prefix_hit), "--num-prompts", str(n),
                "--max-concurrency", str(c), "--request-rate", "inf", "--seed", "1",
                "--output-file", f"{base}/sglang.jsonl"]
    elif client == "aiperf":
        argv = ["aiperf", "profile", "--model", repo, "--url", f"http://{HOST}:{PORT}", "--endpoint-type",
                "completions", "--streaming", *length_args(client, ln, prefix_hit),
                "--extra-inputs", "ignore_eos:true", "--concurrency", str(c), "--request-count", str(n),
                "--random-seed", "0", "--artifact-dir", f"{base}/c{c}"]
    elif client == "guidellm":
        argv = ["guidellm", "run", "--backend", f"kind=openai_http,target=http://{HOST}:{PORT}",
                "--profile", f"kind=concurrent,streams={c}", "--constraint", f"kind=max_requests,count={n}",
                *length_args(client, ln, prefix_hit), "--output", f"kind=json,path={base}/c{c}/benchmarks.json"]
    else:
        raise ValueError(client)
    return tuple(argv)


def _guardrail(plan: dict[str, Any], model: str) -> dict[str, Any]:
    for g in plan.get("guardrails") or []:
        if isinstance(g, dict) and g.get("model") == model and isinstance(g.get("workload"), dict):
            return g
    raise InputError(f"no guardrails.workload for model {model!r}: make PLAN.json with "
                     "`fleetplan solve --json` or `fleetplan query --json` (it carries the workload)",
                     where="PLAN.json")


def bench_plan(plan: dict[str, Any], engine: str, cat: Catalog, results_root: str = "results") -> list[BenchConfig]:
    """One :class:`BenchConfig` per deployment of ``plan`` for ``engine``."""
    if engine not in ENGINES:
        raise InputError(f"unknown engine {engine!r}; choose from {', '.join(ENGINES)}", where="--engine")
    deps = plan.get("deployments") if isinstance(plan, dict) else None
    if not deps:
        raise InputError("has no deployments (an infeasible plan, or not a plan)", where="PLAN.json")
    out = []
    for i, dep in enumerate(deps):
        where = f"PLAN.json: deployments[{i}]"
        try:
            model_id, model = str(dep["model_id"]), str(dep["model"])
            dep_key = {k: dep[k] for k in ("accelerator", "quant", "kv_dtype", "tp", "pp", "ep", "max_batch")}
        except KeyError as exc:
            raise InputError(f"lacks {exc}", where=where) from None
        if dep.get("serving_mode", "aggregated") != "aggregated":
            raise InputError(f"serving_mode {dep.get('serving_mode')!r}: bench plan launches aggregated "
                             "replicas only", where=where)
        g = _guardrail(plan, model)
        repo = cat.model(model_id).hf_repo
        ln = workload_lengths(g["workload"], f"PLAN.json: guardrails[{model}].workload")
        hit = float(g["workload"].get("prefix_cache_hit_rate") or 0.0)
        ctx_len = int(g["max_input_tokens"]) + int(g["max_new_tokens"])
        notes: list[str] = []
        argv, files = launch(engine, dep, repo, ctx_len, hit > 0, notes)
        if hit > 0:
            notes.append(f"the workload's prefix-cache hit rate ({hit:g}) is reproduced only by vllm bench "
                         "(--random-prefix-len); the synthetic prompts of the other clients share no prefix, "
                         "so their TTFT is pessimistic")
        name = (f"{model}-{dep['accelerator']}-{dep['quant']}-kv{dep['kv_dtype']}-tp{dep['tp']}"
                f"-pp{dep['pp']}-ep{dep['ep']}-b{dep['max_batch']}")
        knee = int(dep["max_batch"])
        conc = sweep_concurrencies(knee)
        results = f"{results_root}/{name}"
        clients = {cl: tuple(client_argv(cl, c, repo, ln, hit, results) for c in conc) for cl in CLIENTS[engine]}
        out.append(BenchConfig(name=name, model=model, hf_repo=repo, engine=engine, deployment=dep_key,
                               launch=argv, files=files, concurrencies=conc, predicted_knee=knee,
                               clients=clients, results_dir=results, notes=tuple(notes)))
    return out
