"""``fleetplan estimate``: memory, latency and throughput of one replica shape."""

from __future__ import annotations

import sys
from pathlib import Path

from typing import TYPE_CHECKING

import click

from solver.cli.output import emit_json, fmt
from solver.cli.params import FiniteFloat
from solver.errors import InputError, unknown_id
from solver.overlay import calibrated_for_shape
from solver.problem import MAX_TOKENS
from solver.uncertainty import band_for

if TYPE_CHECKING:
    from solver.catalog import Catalog
    from solver.costmodel import Estimate

EXIT_INFEASIBLE = 1
MAX_CONCURRENCY = 1_000_000
MAX_PARALLEL = 1024


def check_engine_flag(cat: Catalog, engine: str | None, gpu: str, quant: str | None) -> None:
    """One ``--engine:`` line for an unknown engine or one that does not run ``quant`` on ``gpu``."""
    if engine is None:
        return
    if engine not in cat.engines:
        raise InputError("--engine: " + unknown_id("engine", engine, cat.engines))
    cat.accelerator(gpu)
    reason = cat.engine_reason(engine, gpu, quant) if quant else None
    if quant is None and cat.accelerator(gpu).family not in cat.engine(engine).formats:
        reason = cat.engine_reason(engine, gpu, "bf16")
    if reason:
        raise InputError("--engine: " + reason)


def _concurrency(value: str) -> int | str:
    if value.strip().lower() == "max":
        return "max"
    try:
        n = int(value)
    except ValueError:
        raise InputError(f"--concurrency must be an integer >= 1 or 'max', got {value!r}") from None
    if not 1 <= n <= MAX_CONCURRENCY:
        raise InputError(f"--concurrency must be between 1 and {MAX_CONCURRENCY:,} or 'max', got {value!r}")
    return n


def summary(e: Estimate) -> str:
    """A short readable summary of an estimate."""
    head = (
        f"{e.model} on {e.gpus} x {e.accelerator} ({e.system}, tp={e.tp} pp={e.pp} ep={e.ep}"
        + (f" moe_tp={e.moe_tp}" if e.moe_tp > 1 else "") + (f" dp={e.dp_attn}" if e.dp_attn > 1 else "") + ", "
        f"{e.quant} weights, {e.kv_dtype} KV, matmuls in {e.compute_dtype}; engine {e.engine})"
    )
    lines = [
        head,
        f"  workload      ISL {e.isl} / OSL {e.osl} tokens, prefix hit rate {fmt(e.prefix_hit_rate)}",
        f"  memory/GPU    weights {e.weights_gib_per_gpu:.1f} GiB + overhead {e.overhead_gib_per_gpu:.1f} GiB"
        f" + KV {fmt(e.kv_gib_per_gpu)} GiB of {e.usable_gib_per_gpu:.1f} GiB usable"
        f" ({e.hbm_gib_per_gpu:.0f} GiB HBM)",
        f"  KV cache      {e.kv_bytes_per_token:,.0f} B/token (model); max concurrency {e.max_concurrency}"
        f" at {e.isl + e.osl} tokens",
    ]
    if e.tpot_ms is not None:
        lines += [
            f"  concurrency   {e.concurrency}",
            f"  latency       TTFT {e.ttft_ms:.1f} ms (no queueing; prompt alone {e.prefill_ms:.1f} ms),"
            f" TPOT {e.tpot_ms:.2f} ms",
            f"  decode step   memory {e.decode_memory_ms:.2f} ms, compute {e.decode_compute_ms:.2f} ms,"
            f" comm {e.decode_comm_ms:.2f} ms ({e.tp_link}), overhead {e.decode_overhead_ms:.2f} ms"
            f" -> {e.bound}-bound",
            f"  throughput    {e.output_tokens_per_s:,.0f} output tok/s per replica,"
            f" {e.output_tokens_per_s_per_gpu:,.0f} per GPU, {e.requests_per_s:.2f} req/s",
        ]
    band = f"+-{e.stated_error_pct:g} % on throughput" if e.stated_error_pct is not None else "not stated"
    lines.append(f"  accuracy      {band} ({'fitted on measurements of this accelerator family' if e.efficiency_measured else 'NO measurement of this accelerator family: factors carried over from a sibling'})")
    lines.append("  fits          yes" if e.fits else f"  fits          NO: {e.reason}")
    return "\n".join(lines)


@click.command("estimate")
@click.option("--model", required=True, help="model id (fleetplan catalog list models)")
@click.option("--gpu", "gpu", required=True, help="accelerator id (fleetplan catalog list accelerators)")
@click.option("--quant", default="bf16", show_default=True, help="weight format id")
@click.option("--kv-dtype", default="bf16", show_default=True, help="KV-cache dtype id")
@click.option("--tp", default=1, show_default=True, type=click.IntRange(1, MAX_PARALLEL), help="tensor-parallel GPUs")
@click.option("--pp", default=1, show_default=True, type=click.IntRange(1, MAX_PARALLEL), help="pipeline stages")
@click.option("--ep", default=1, show_default=True, type=click.IntRange(1, MAX_PARALLEL),
              help="expert-parallel GPUs (MoE); ep > tp runs attention data-parallel")
@click.option("--moe-tp", default=0, show_default=True, type=click.IntRange(0, MAX_PARALLEL),
              help="expert tensor parallelism inside attention DP: each of the --ep expert groups is "
                   "split over --moe-tp GPUs (TensorRT-LLM moe_tensor_parallel_size); the stage has "
                   "ep x moe-tp GPUs and attention runs ep x moe-tp / tp data-parallel copies; "
                   "0 derives it (max(tp, ep) / ep)")
@click.option("--dp", default=None, type=click.IntRange(1, MAX_PARALLEL),
              help="attention data-parallel ranks (optional check: dp x tp must equal the stage's "
                   "GPUs, max(tp, ep), or ep x moe-tp with --moe-tp)")
@click.option("--system", default=None, help="system id (default: the accelerator's largest node)")
@click.option("--engine", default=None,
              help="serving engine: vllm (default), sglang or tensorrt-llm (catalogs/engines.yaml): "
                   "KV memory rule, chunk size, host overhead per step, formats it runs")
@click.option("--cuda-graphs/--no-cuda-graphs", default=True, show_default=True,
              help="decode steps replay CUDA graphs (engine default); --no-cuda-graphs is vLLM "
                   "--enforce-eager / SGLang --disable-cuda-graph: every step pays the eager host time")
@click.option("--isl", required=True, type=click.IntRange(1, MAX_TOKENS), help="input (prompt) tokens per request")
@click.option("--osl", required=True, type=click.IntRange(1, MAX_TOKENS), help="output tokens per request")
@click.option("--concurrency", default="max", show_default=True,
              help="requests in flight per replica (integer >= 1), or 'max': the most the KV memory holds at ISL+OSL tokens")
@click.option("--prefix-hit-rate", default=0.0, show_default=True, type=FiniteFloat(0.0, 0.999),
              help="share of each prompt served from the prefix cache, in [0, 1)")
@click.option("--calibration", type=click.Path(path_type=Path), default=None,
              help="calibration overlay (fleetplan calibrate) fitted on this model, accelerator, format and engine")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def estimate(
    model: str, gpu: str, quant: str, kv_dtype: str, tp: int, pp: int, ep: int, moe_tp: int, dp: int | None,
    system: str | None, engine: str | None, cuda_graphs: bool, isl: int, osl: int, concurrency: str,
    prefix_hit_rate: float, calibration: Path | None, as_json: bool,
) -> None:
    """Memory budget, TTFT, TPOT and throughput of one replica (analytical cost model).

    A replica is TP x PP GPUs (max(TP, EP) x PP for MoE with EP > TP, which runs attention
    data-parallel; EP x MoE-TP x PP with --moe-tp, attention DP with expert groups split). The model is a roofline per operator (dense GEMMs, grouped expert GEMMs,
    attention): each costs max(bytes read / achievable HBM bandwidth, FLOPs / achievable
    compute), with bandwidth falling for small kernels, plus a fixed time per kernel (launch,
    pipeline fill, last wave) whichever bound wins; a step adds them, the MoE layers' fixed
    kernel time, TP/EP/PP collectives (latency + bytes / (link bandwidth x efficiency(size))) and
    the engine's host time per step (CUDA graphs for decode-only steps). The step breakdown
    (memory + compute + comm + overhead) adds up to TPOT. Efficiency factors come from
    catalogs/efficiency.yaml (per accelerator family), engine defaults from catalogs/engines.yaml.

    \b
    Units in the output: *_ms milliseconds, *_gib GiB (2**30 bytes) per GPU,
    output_tokens_per_s tokens per second per replica (and per GPU), requests_per_s
    requests per second per replica. TTFT excludes queueing; TPOT includes the amortised
    share of other requests' chunked prefill (continuous batching).

    \b
    Example:
      fleetplan estimate --model llama-3.1-70b --gpu h100-sxm --quant fp8 --kv-dtype fp8 \\
          --tp 4 --isl 2048 --osl 256 --concurrency max
      fleetplan estimate --model deepseek-r1 --gpu h200-sxm --quant fp8 --kv-dtype fp8 \\
          --tp 1 --ep 8 --isl 1024 --osl 1024 --concurrency 256 --json
      fleetplan estimate --model deepseek-v3 --gpu h200-sxm --quant fp8 --kv-dtype fp8 \\
          --tp 1 --ep 8 --dp 8 --engine tensorrt-llm --isl 4000 --osl 1000 --concurrency 112
      fleetplan estimate --model qwen3-235b-a22b --gpu h200-sxm --quant fp8 --kv-dtype fp8 \
          --tp 1 --dp 8 --ep 2 --moe-tp 4 --isl 4000 --osl 1000 --concurrency 128

    Exit codes: 0 fits, 1 does not fit in memory (the reason is printed), 2 bad input.
    """
    from solver.catalog import load_catalog
    from solver.costmodel import Shape
    from solver.costmodel import estimate as run_estimate

    cat = load_catalog()
    ctx = cat.model(model).max_context
    if isl + osl > ctx:
        raise InputError(f"--isl + --osl = {isl + osl:,} tokens exceeds the context window of {model} ({ctx:,} tokens)")
    check_engine_flag(cat, engine, gpu, quant)
    shape = Shape(model=model, accelerator=gpu, system=system, quant=quant, kv_dtype=kv_dtype,
                  tp=tp, pp=pp, ep=ep, moe_tp=moe_tp)
    if moe_tp and (ep * moe_tp) % tp:
        raise InputError(f"--moe-tp {moe_tp} x --ep {ep} = {ep * moe_tp} GPUs must be a multiple of --tp {tp}")
    if dp is not None and dp * tp != shape.stage_gpus:
        rule = f"ep x moe-tp = {ep * moe_tp}" if moe_tp else f"max(tp, ep) = {max(tp, ep)}"
        raise InputError(
            f"--dp {dp} x --tp {tp} = {dp * tp} GPUs, but a stage of --tp {tp}, --ep {ep}"
            + (f" and --moe-tp {moe_tp}" if moe_tp else "")
            + f" has {rule} GPUs (attention DP = {shape.stage_gpus // tp})"
        )
    cat, applied = calibrated_for_shape(cat, calibration, model, gpu, quant, engine or cat.default_engine)
    result = run_estimate(cat, shape, isl, osl, _concurrency(concurrency), prefix_hit_rate, engine,
                          cuda_graphs)
    band = band_for(cat, model, gpu, quant, result.engine, max(1, result.concurrency),
                    (float(isl), float(isl)), (float(osl), float(osl)))
    if as_json:
        emit_json({**result.to_dict(), "error_band": band.to_dict(),
                   "calibration": applied.model_dump() if applied else None})
    else:
        click.echo(summary(result))
        click.echo(f"  error band    +-{band.sigma:.0%} (1 sigma) on step times: {band.source}")
        if applied:
            click.echo(f"  {applied.line()}")
    if not result.fits:
        sys.exit(EXIT_INFEASIBLE)

