"""NVIDIA MIG layouts: which instances of which profiles fit on one GPU together, and the fewest
GPUs that hold a number of instances per profile. Pure counting over the catalog's
``mig_profiles`` (memory slices of 8, compute slices of 7, placements); what an instance runs
like is :mod:`solver.costmodel.partition`.

A layout is a multiset of profiles, written as instance counts per profile. It is valid when its
compute slices add up to at most 7 and every instance can start at one of its profile's
placements without two instances sharing a memory slice (NVML: a GPU instance occupies the
memory slices of its placement; creating one that overlaps another fails). Only *maximal*
layouts matter to a planner: a GPU running fewer instances is a maximal layout with idle slots.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence

import numpy as np

from solver.catalog import Catalog
from solver.schemas import MigProfile

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


