"""One GPU shared by several replicas: NVIDIA MIG instances, or co-located replicas by memory
fraction. Pure functions of a shape's terms; no solver code.

A :class:`Partition` is the share of one GPU a replica runs on. Co-located replicas fill GPUs
of their own kind, ``per_gpu`` equal shares each: ``n`` of them need ``ceil(n / per_gpu)`` whole
GPUs. MIG instances of different profiles may share a GPU in any valid layout (the profiles'
memory-slice placements never overlap, compute slices add up to at most 7): :func:`mig_layouts`
lists the maximal layouts over a set of profiles once, and :func:`mig_cover` the fewest GPUs
holding a count of instances per profile. Whole GPUs are what a fleet pays for.

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

import functools
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np

from solver.catalog import Catalog
from solver.schemas import MigProfile
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


# -- mixed MIG layouts: several profiles on one GPU ----------------------------------------------

MIG_COMPUTE_SLICES = 7
"""Compute slices of a MIG GPU: instances on one GPU use at most this many together."""


def _fits(profiles: Sequence[MigProfile], counts: Sequence[int]) -> bool:
    """Whether ``counts[i]`` instances of ``profiles[i]`` fit on one GPU together: compute
    slices within 7, and a start for every instance among its profile's ``placements`` such
    that no two instances share a memory slice. A profile without placements fits only alone,
    up to its ``max_count``."""
    used = [(p, n) for p, n in zip(profiles, counts) if n > 0]
    if any(n > p.max_count for p, n in used):
        return False
    if len(used) == 1 and not used[0][0].placements:
        return True
    if any(not p.placements for p, _ in used):
        return False
    if sum(p.compute_slices * n for p, n in used) > MIG_COMPUTE_SLICES:
        return False
    items = sorted((p for p, n in used for _ in range(n)), key=lambda p: -p.memory_slices)

    def place(i: int, taken: int) -> bool:
        if i == len(items):
            return True
        p = items[i]
        for start in p.placements:
            mask = ((1 << p.memory_slices) - 1) << start
            if not taken & mask and place(i + 1, taken | mask):
                return True
        return False

    return place(0, 0)


def mig_layouts(profiles: Sequence[MigProfile]) -> tuple[tuple[int, ...], ...]:
    """Every maximal MIG layout of one GPU over ``profiles``: instance counts per profile (same
    order) that fit together (:func:`_fits`) and to which no further instance of these profiles
    can be added. Sorted, so the answer is deterministic. A GPU holding fewer instances than a
    maximal layout is that layout with some left idle, so maximal ones are all a planner needs."""
    k = len(profiles)
    found: set[tuple[int, ...]] = set()

    def grow(counts: list[int]) -> None:
        grew = False
        for i in range(k):
            counts[i] += 1
            if _fits(profiles, counts):
                grew = True
                key = tuple(counts)
                if key not in found:
                    found.add(key)
                    grow(counts)
            counts[i] -= 1
        if not grew and any(counts):
            found.add(tuple(counts))

    grow([0] * k)
    maximal = [x for x in found if not any(y != x and all(a <= b for a, b in zip(x, y)) for y in found)]
    return tuple(sorted(maximal, reverse=True))


_DP_STATES = 20_000
"""Demands with more states than this (product of count + 1 per profile) are covered by an
integer program instead of the memoised search (same optimum, time independent of counts)."""


def _cover_milp(need: tuple[int, ...], layouts: Sequence[Sequence[int]]) -> tuple[tuple[int, ...], ...]:
    """:func:`mig_cover` as an integer program (HiGHS through SciPy): minimise the GPUs
    ``sum_l y_l`` with ``sum_l a_(l,i) y_l >= need_i``, ``y`` integer. Exact (zero gap)."""
    from scipy.optimize import Bounds, LinearConstraint, milp

    a = np.array(layouts, dtype=float).T  # profiles x layouts
    res = milp(np.ones(len(layouts)), constraints=LinearConstraint(a, lb=np.array(need, dtype=float)),
               integrality=np.ones(len(layouts)), bounds=Bounds(0, max(need)),
               options={"mip_rel_gap": 0.0})
    if res.x is None:
        raise ValueError(f"no cover found for MIG demand {need}: {res.message}")
    y = np.rint(res.x).astype(int)
    return tuple(tuple(layouts[j]) for j in range(len(layouts)) for _ in range(y[j]))


def mig_cover(demand: Sequence[int], layouts: Sequence[Sequence[int]]) -> tuple[tuple[int, ...], ...]:
    """Fewest GPUs holding ``demand[i]`` instances of each profile, as the layout of each GPU
    (an exact search over how many GPUs use each layout, memoised on the demand left; ties go
    to the earliest layouts in ``layouts``' order; large demands go to :func:`_cover_milp`).
    ``()`` when nothing is demanded. Raises ``ValueError`` when a demanded profile appears in
    no layout."""
    need = tuple(max(0, int(n)) for n in demand)
    for i, n in enumerate(need):
        if n and not any(lay[i] for lay in layouts):
            raise ValueError(f"no MIG layout holds profile #{i}")
    if math.prod(n + 1 for n in need) > _DP_STATES:
        return _cover_milp(need, layouts)

    holders = [sum(1 for lay in layouts if lay[i]) for i in range(len(need))]

    @functools.lru_cache(maxsize=None)
    def best(left: tuple[int, ...]) -> tuple[int, int]:
        """(GPUs, index of the first layout) for demand ``left``."""
        if not any(left):
            return 0, -1
        # some GPU must hold this profile: branch on the one the fewest layouts hold
        first = min((i for i, n in enumerate(left) if n), key=lambda i: (holders[i], i))
        out = (1 << 30, -1)
        for j, lay in enumerate(layouts):
            if lay[first]:
                rest = tuple(max(0, n - c) for n, c in zip(left, lay))
                out = min(out, (best(rest)[0] + 1, j))
        return out

    gpus: list[tuple[int, ...]] = []
    left = need
    while any(left):
        j = best(left)[1]
        gpus.append(tuple(layouts[j]))
        left = tuple(max(0, n - c) for n, c in zip(left, layouts[j]))
    return tuple(gpus)


def mig_gpus(cat: Catalog, accelerator: str, counts: Mapping[str, int]) -> tuple[dict[str, int], ...]:
    """The fewest GPUs of ``accelerator`` that hold ``counts[profile]`` MIG instances of each
    profile: one ``{profile: instances run}`` per GPU (layouts over the profiles named, from the
    catalog; a GPU may leave slots of its layout idle). Raises ``KeyError`` for a profile the accelerator lacks."""
    known = {p.name: p for p in cat.accelerator(accelerator).mig_profiles}
    names = sorted(n for n, k in counts.items() if k > 0)
    profiles = [known[n] for n in names]
    left = [counts[n] for n in names]
    out = []
    for lay in mig_cover(left, mig_layouts(profiles)):  # the instances each GPU runs
        placed = [min(k, n) for k, n in zip(lay, left)]
        left = [n - k for n, k in zip(left, placed)]
        out.append({n: k for n, k in zip(names, placed) if k})
    return tuple(out)


def partition_speculation(spec: Speculation, part: Partition, policy: str, util_fraction: float) -> Speculation:
    """``spec`` with its draft on the same share as its target: a catalog draft's rates scaled
    like the target's (:func:`partition_terms`; its weights and KV already come off the share's
    memory through the target's budget). An MTP draft is a share of the target's own terms, so
    it is unchanged."""
    if spec.draft is None:
        return spec
    return replace(spec, draft=partition_terms(spec.draft, part, policy, util_fraction))
