"""The cost model never beats physics, whatever the efficiency factors are calibrated to.

For every catalog model on a spread of accelerators and parallelism shapes that ``check_shape``
accepts, at several concurrencies, the predictions must respect the datasheet limits:

* a decode step is no faster than reading one GPU's active weights at *peak* HBM bandwidth;
* output tokens/s per GPU x matmul FLOP per token is no more than the GPU's peak FLOP/s;
* a prefill is no faster than its matmul FLOP at peak;
* weights + the KV cache of ``max_concurrency`` sequences fit in HBM;
* every number is finite and positive, and a shape's throughput grows with concurrency.

These are residual checks in the PyPSA spirit: recomputed here from catalog facts and
``param_counts``, not read back from the model's own intermediate terms.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from solver.architecture import param_counts
from solver.catalog import load_catalog
from solver.costmodel import (
    Shape,
    check_shape,
    kv_bytes_per_seq_gpu,
    max_concurrency,
    operating_point,
    prefill_ms,
    shape_terms,
)
from solver.units import GIB, TB, TFLOP

CAT = load_catalog()
GPUS = ["a100-80gb", "l40s", "h100-sxm", "h200-sxm", "b200", "mi300x", "gaudi3"]
QUANTS = ["bf16", "fp8", "nvfp4", "w4a16"]
TPS = [1, 2, 4, 8]
ISL, OSL = 1024, 256
BATCH = np.array([1, 4, 16, 64, 256])


def _shapes() -> list[Shape]:
    """Valid, memory-fitting shapes the default engine runs: the smallest TP that holds the weights,
    per model/GPU/format."""
    out = []
    for model, gpu, quant in itertools.product(sorted(CAT.models), GPUS, QUANTS):
        if CAT.quant_support(gpu, quant) is None:
            continue
        kv = "fp8" if "fp8" in CAT.quantization(quant).kv_dtypes else "bf16"
        for tp in TPS:
            s = Shape(model, gpu, None, quant, kv, tp=tp)
            if check_shape(CAT, s, CAT.default_engine) is None and int(max_concurrency(shape_terms(CAT, s), ISL + OSL)) >= 1:
                out.append(s)
                break
    return out


SHAPES = _shapes()


def test_enough_shapes_are_checked() -> None:
    assert len(SHAPES) > 100
    assert {s.accelerator for s in SHAPES} == set(GPUS)
    assert {s.model for s in SHAPES} == set(CAT.models)


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s.model}-{s.accelerator}-{s.quant}-tp{s.tp}")
def test_no_faster_than_datasheet(shape: Shape) -> None:
    t = shape_terms(CAT, shape)
    acc = CAT.accelerator(shape.accelerator)
    pc = param_counts(CAT.model(shape.model))
    bpw = CAT.quantization(shape.quant).bytes_per_weight
    peak_flops = max(acc.dense_tflops.values()) * TFLOP
    cap = int(max_concurrency(t, ISL + OSL))
    b = np.unique(np.minimum(BATCH, cap))
    op = operating_point(t, b, ISL, OSL)

    assert np.all(np.isfinite(op.tpot_ms)) and np.all(op.tpot_ms > 0)
    assert np.all(np.isfinite(op.ttft_ms)) and np.all(op.ttft_ms > 0)
    assert np.all(np.diff(op.output_tokens_per_s) > 0)
    # 1. decode no faster than reading the non-expert weights of one GPU at peak bandwidth
    dense_bytes_gpu = pc.dense * bpw / shape.gpus
    assert np.all(op.tpot_ms >= dense_bytes_gpu / (acc.hbm_tb_s * TB) * 1e3)
    # 2. compute: matmul FLOP per output token (decode alone) within the peak
    flop_per_token = 2 * (pc.active - pc.embedding_input)
    assert np.all(op.output_tokens_per_s_per_gpu * flop_per_token <= peak_flops)
    # 3. prefill no faster than its matmul FLOP at peak
    pre = float(prefill_ms(t, 8192))
    assert pre >= 8192 * flop_per_token / (shape.gpus * peak_flops) * 1e3
    # 4. weights + KV at max concurrency fit in HBM
    kv = cap * float(kv_bytes_per_seq_gpu(t, ISL + OSL)) / t.dp_attn
    assert pc.total * bpw / shape.gpus + kv <= acc.hbm_gib * GIB
