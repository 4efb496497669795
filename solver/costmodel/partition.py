"""One GPU shared by several replicas: NVIDIA MIG instances, or co-located replicas by memory
fraction. Pure functions of a shape's terms; no solver code.

A :class:`Partition` is the share of one GPU a replica runs on. Co-located replicas fill GPUs
of their own kind, ``per_gpu`` equal shares each: ``n`` of them need ``ceil(n / per_gpu)`` whole
GPUs. MIG instances of different profiles may share a GPU in any valid layout
(:mod:`solver.mig`: which layouts are valid, and the fewest GPUs holding a count of instances
per profile). Whole GPUs are what a fleet pays for.

- **MIG** (``kind="mig"``): a profile with ``m`` memory slices of 8 and ``c`` compute slices of
  7 gets ``m/8`` of the GPU's memory and of its memory bandwidth (its own memory controllers and
  L2 banks) and ``c/7`` of its SMs, isolated in hardware: nothing else changes (kernel fixed
  times, host time). Up to ``max_count`` instances per GPU (the catalog's ``mig_profiles``).
- **Co-located** (``kind="shared"``): ``k`` replicas (processes, e.g. vLLM with
  ``--gpu-memory-utilization`` set to its share) on one GPU, each with ``1/k`` of the memory.
  Assumption: the GPU is time-sliced between them, so each replica gets ``1/k`` of the GPU's
  time -- every GPU-side time of its steps (compute, HBM traffic, kernel fixed times) is ``k``
  times as long and its throughput ``1/k`` of what the whole GPU would give it; host time (its
  own CPU process) is unchanged. This is the conservative reading: neighbours that idle leave
  nothing to the others in this model.

Only single-GPU shapes (TP = PP = EP = 1) run on a share: a share cannot join a collective.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from solver.catalog import Catalog
from solver.costmodel.shape import ShapeTerms, usable_bytes
from solver.costmodel.speculative import Speculation

COLOCATE_MAX = 8
"""Most co-located replicas per GPU a problem may ask for (MIG stops at 7 instances)."""

_SHARED = re.compile(r"^shared 1/([0-9]+)$")
_MIG = re.compile(r"^mig (\S+)$")


@dataclass(frozen=True)
class Partition:
    """A replica's share of one GPU (see the module docstring). Fractions are of the whole GPU."""

    kind: str
    """``mig`` or ``shared``."""
    name: str
    """The MIG profile (``1g.10gb``) or ``1/k``."""
    per_gpu: int
    """Replicas (instances) of this share one GPU holds."""
    memory_fraction: float
    compute_fraction: float
    bandwidth_fraction: float
    time_share: float
    """Share of the GPU's time the replica runs in: 1 for MIG (hardware isolation), ``1/k``
    for ``k`` co-located replicas (time-sliced)."""

    @property
    def label(self) -> str:
        """``mig 1g.10gb`` or ``shared 1/4``: how plans and reports name the share."""
        return f"{self.kind} {self.name}"


def mig_partition(name: str, memory_slices: int, compute_slices: int, max_count: int) -> Partition:
    """A MIG profile: ``memory_slices``/8 of memory and bandwidth, ``compute_slices``/7 of SMs."""
    return Partition("mig", name, max_count, memory_slices / 8, compute_slices / 7, memory_slices / 8, 1.0)


def shared_partition(k: int) -> Partition:
    """``k`` co-located replicas per GPU, time-sliced: ``1/k`` of memory and of GPU time each."""
    if not 2 <= k <= COLOCATE_MAX:
        raise ValueError(f"co-located replicas per GPU must be in 2..{COLOCATE_MAX}, got {k}")
    return Partition("shared", f"1/{k}", k, 1.0 / k, 1.0, 1.0, 1.0 / k)


def parse_label(label: str) -> tuple[str, str] | None:
    """(kind, name) of a partition label (``mig 1g.10gb``, ``shared 1/4``); None if malformed."""
    m = _MIG.match(label)
    if m:
        return "mig", m.group(1)
    m = _SHARED.match(label)
    if m:
        return "shared", f"1/{m.group(1)}"
    return None


def partition_terms(terms: ShapeTerms, part: Partition, policy: str, util_fraction: float) -> ShapeTerms:
    """The terms of ``terms``' single-GPU shape running on share ``part``: memory, bandwidth
    and compute scaled by the share, GPU-side fixed times stretched by the time share, and the
    usable memory recomputed with the engine's policy (``policy``, ``util_fraction``) on the
    share's memory. Raises ``ValueError`` for a multi-GPU shape."""
    if terms.gpus != 1:
        raise ValueError(f"a GPU share runs single-GPU shapes only, not {terms.gpus} GPUs")
    hbm = terms.hbm_bytes * part.memory_fraction
    fixed = terms.weight_bytes_gpu + terms.overhead_bytes_gpu + terms.activation_bytes_gpu
    flops = part.compute_fraction * part.time_share
    bw = part.bandwidth_fraction * part.time_share
    return replace(
        terms,
        hbm_bytes=hbm,
        usable_bytes=usable_bytes(policy, util_fraction, hbm, fixed),
        peak_flop_s=terms.peak_flop_s * flops,
        attn_peak_flop_s=terms.attn_peak_flop_s * flops,
        peak_bw_bytes_s=terms.peak_bw_bytes_s * bw,
        bw_bytes_s=terms.bw_bytes_s * bw,
        stream_kernel_s=terms.stream_kernel_s / part.time_share,
        moe_layer_fixed_s=terms.moe_layer_fixed_s / part.time_share,
    )


def resolve_partition(cat: Catalog, accelerator: str, label: str) -> Partition | str:
    """The GPU share a plan names (``mig 1g.10gb``, ``shared 1/4``) from the catalog, or why
    it cannot be (malformed, or a MIG profile the accelerator lacks)."""
    parsed = parse_label(label)
    if parsed is None:
        return f"unknown GPU share {label!r}"
    kind, name = parsed
    if kind == "shared":
        try:
            return shared_partition(int(name.split("/")[1]))
        except ValueError as exc:
            return str(exc)
    for p in cat.accelerator(accelerator).mig_profiles:
        if p.name == name:
            return mig_partition(p.name, p.memory_slices, p.compute_slices, p.max_count)
    return f"{accelerator} has no MIG profile {name!r}"


def partition_speculation(spec: Speculation, part: Partition, policy: str, util_fraction: float) -> Speculation:
    """``spec`` with its draft on the same share as its target: a catalog draft's rates scaled
    like the target's (:func:`partition_terms`; its weights and KV already come off the share's
    memory through the target's budget). An MTP draft is a share of the target's own terms, so
    it is unchanged."""
    if spec.draft is None:
        return spec
    return replace(spec, draft=partition_terms(spec.draft, part, policy, util_fraction))
