"""``fleetplan estimate``: memory, latency and throughput of one replica shape."""

from __future__ import annotations

import sys

from typing import TYPE_CHECKING

import click

from solver.cli.output import emit_json, fmt
from solver.errors import InputError

if TYPE_CHECKING:
    from solver.costmodel import Estimate

EXIT_INFEASIBLE = 1


def _concurrency(value: str) -> int | str:
    if value.strip().lower() == "max":
        return "max"
    try:
        n = int(value)
    except ValueError:
        raise InputError(f"--concurrency must be an integer >= 1 or 'max', got {value!r}") from None
    if n < 1:
        raise InputError(f"--concurrency must be >= 1, got {n}")
    return n


def summary(e: Estimate) -> str:
    """A short readable summary of an estimate."""
    head = (
        f"{e.model} on {e.gpus} x {e.accelerator} ({e.system}, tp={e.tp} pp={e.pp} ep={e.ep}, "
        f"{e.quant} weights, {e.kv_dtype} KV, matmuls in {e.compute_dtype})"
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
    lines.append("  fits          yes" if e.fits else f"  fits          NO: {e.reason}")
    return "\n".join(lines)


@click.command("estimate")
@click.option("--model", required=True, help="model id (fleetplan catalog list models)")
@click.option("--gpu", "gpu", required=True, help="accelerator id (fleetplan catalog list accelerators)")
@click.option("--quant", default="bf16", show_default=True, help="weight format id")
@click.option("--kv-dtype", default="bf16", show_default=True, help="KV-cache dtype id")
@click.option("--tp", default=1, show_default=True, type=int, help="tensor-parallel GPUs")
@click.option("--pp", default=1, show_default=True, type=int, help="pipeline stages")
@click.option("--ep", default=1, show_default=True, type=int,
              help="expert-parallel GPUs (MoE); ep > tp runs attention data-parallel")
@click.option("--system", default=None, help="system id (default: the accelerator's largest node)")
@click.option("--isl", required=True, type=int, help="input (prompt) tokens per request")
@click.option("--osl", required=True, type=int, help="output tokens per request")
@click.option("--concurrency", default="max", show_default=True,
              help="requests in flight per replica (integer >= 1), or 'max': the most the KV memory holds at ISL+OSL tokens")
@click.option("--prefix-hit-rate", default=0.0, show_default=True, type=float,
              help="share of each prompt served from the prefix cache, in [0, 1)")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def estimate(
    model: str, gpu: str, quant: str, kv_dtype: str, tp: int, pp: int, ep: int,
    system: str | None, isl: int, osl: int, concurrency: str, prefix_hit_rate: float, as_json: bool,
) -> None:
    """Memory budget, TTFT, TPOT and throughput of one replica (analytical cost model).

    A replica is TP x PP GPUs (max(TP, EP) x PP for MoE with EP > TP, which runs attention
    data-parallel). The model is a roofline per operator (dense GEMMs, expert GEMMs, attention):
    each costs max(bytes read / achievable HBM bandwidth, FLOPs / achievable compute); a step adds
    them, TP/EP/PP communication and a fixed per-step overhead; prefill is compute-bound, bounded
    below by the weight read. Efficiency factors
    come from catalogs/efficiency.yaml (per accelerator family).

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

    Exit codes: 0 fits, 1 does not fit in memory (the reason is printed), 2 bad input.
    """
    from solver.catalog import load_catalog
    from solver.costmodel import Shape
    from solver.costmodel import estimate as run_estimate

    cat = load_catalog()
    shape = Shape(model=model, accelerator=gpu, system=system, quant=quant, kv_dtype=kv_dtype,
                  tp=tp, pp=pp, ep=ep)
    result = run_estimate(cat, shape, isl, osl, _concurrency(concurrency), prefix_hit_rate)
    if as_json:
        emit_json(result)
    else:
        click.echo(summary(result))
    if not result.fits:
        sys.exit(EXIT_INFEASIBLE)

