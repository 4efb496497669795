"""Efficiency factors of AMD CDNA and Intel Gaudi parts, fitted on their public measurements.

Usage::

    python benchmarks/fit_vendor.py                 # evaluate the catalog, fit per family, print
    python benchmarks/fit_vendor.py --csv PATH      # another table with measured.csv's columns

Rows: ``benchmarks/data/vendor_measured.csv`` (same columns as ``../shared/refdata/measured.csv``;
every row names its source address and how it was read in ``notes``). Each row is mapped onto an
``estimate`` call by ``benchmarks/accuracy.py``'s own row parser (:func:`accuracy.map_row`), with
the vendor GPU names added to its GPU table; prediction, error and the coordinate-descent fit are
accuracy.py's too (``predict``, ``fit``, ``mape``), so the two benchmarks cannot drift apart.

Fit: per accelerator family (``cdna3`` = MI300X/MI325X, ``gaudi3``), the family's own
efficiency-entry fields (:data:`DENSE_FACTORS`: ``eta_bw``, ``stream_kernel_us``, ``mfu_prefill``,
``mfu_decode``) on all of its dense-model rows, then ``moe_layer_fixed_us`` alone on its MoE rows
with the dense factors held (a family with fewer than :data:`MIN_ROWS` MoE rows keeps the shared
value). The engines' host overheads (catalogs/engines.yaml) are the engine's, not the family's,
and stay as accuracy.py fits them. The out-of-sample error is a two-fold cross-validation on
accuracy.py's split (fit on the even rows, predict the odd ones, and the reverse). Fitting one
half only, as accuracy.py does on its 60+ rows, leaves 4-9 rows per family here, and in the
vendors' tables row parity follows the output length (each model lists 128 then 2048 output
tokens), so one half would be all short outputs. ``eta_bw`` may go down to 0.40 here
(accuracy.py's range starts at 0.60, set for NVIDIA kernels): ROCm and Gaudi decode kernels are
measured to stream weights less well.
A family without a mapped row (``cdna4``: no MI355X row of a catalog model was found) is reported
as such and keeps its estimated factors.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import numpy as np

from solver.costmodel import with_efficiency

REPO = Path(__file__).resolve().parent.parent
VENDOR_CSV = REPO / "benchmarks" / "data" / "vendor_measured.csv"
VENDOR_GPUS = [(r"^mi300x", "mi300x"), (r"^mi325x", "mi325x"), (r"^mi355x", "mi355x"), (r"^gaudi ?3", "gaudi3")]
"""accuracy.py's GPU table covers NVIDIA parts only; vendor names as the CSV's ``gpu`` column writes them."""
FAMILIES = ("cdna3", "cdna4", "gaudi3")
DENSE_FACTORS = ("eta_bw", "stream_kernel_us", "mfu_prefill", "mfu_decode")
"""The per-family efficiency fields fitted on dense rows (catalogs/efficiency.yaml)."""
MOE_FACTORS = ("moe_layer_fixed_us",)
"""Fitted on the family's MoE rows, the dense factors held."""
MIN_ROWS = 6
ETA_BW_GRID = np.round(np.arange(0.40, 0.901, 0.025), 3)


def _accuracy():
    """A private copy of benchmarks/accuracy.py (benchmarks/ is not a package) whose GPU table also
    names the vendor parts; the copy keeps that change away from anyone else importing accuracy.py."""
    name = "_accuracy_for_vendor_rows"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / "accuracy.py")
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod  # dataclasses resolve annotations through sys.modules
        spec.loader.exec_module(mod)
        mod.GPUS = [*mod.GPUS, *VENDOR_GPUS]
    return sys.modules[name]


acc = _accuracy()


def load_vendor_cases(path: Path = VENDOR_CSV):
    """accuracy.py's ``load_cases`` on the vendor table: (cases, skipped rows with reasons)."""
    return acc.load_cases(path)


def fit_family(terms_list: list, cases: list, start: dict[str, float],
               factors: tuple[str, ...] = DENSE_FACTORS) -> dict[str, float]:
    """accuracy.py's coordinate descent over ``factors`` only, with ``eta_bw`` searched from 0.40
    (see module doc)."""
    saved = acc.GRID, acc.FACTORS
    acc.GRID, acc.FACTORS = {**saved[0], "eta_bw": ETA_BW_GRID}, factors
    try:
        return acc.fit(terms_list, cases, start)
    finally:
        acc.GRID, acc.FACTORS = saved


def cross_validate(rows: list, start: dict[str, float], factors: tuple[str, ...] = DENSE_FACTORS) -> list:
    """(case, prediction) for every row, each predicted by factors fitted on the other half."""
    out = []
    for half in ("fit", "holdout"):
        train = [(t, c) for t, c in rows if c.split != half]
        f = fit_family([t for t, _ in train], [c for _, c in train], start, factors)
        out += [(c, acc.predict(with_efficiency(t, **f), c)) for t, c in rows if c.split == half]
    return out


def main(argv: list[str] | None = None) -> int:
    from solver.catalog import load_catalog
    from solver.costmodel import shape_terms
    from solver.errors import InputError

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 epilog="example: python benchmarks/fit_vendor.py")
    ap.add_argument("--csv", type=Path, default=VENDOR_CSV)
    args = ap.parse_args(argv)
    if not args.csv.is_file():
        ap.error(f"--csv: {args.csv} not found")
    cat = load_catalog()
    cases, skipped = load_vendor_cases(args.csv)
    usable = []
    for c in cases:
        try:
            t = shape_terms(cat, c.shape, acc.engine_id(c.engine))
            acc.predict(t, c)
        except InputError as exc:
            skipped.append((c.tag, c.label, f"estimate refuses it: {exc}"))
            continue
        usable.append((t, c))
    print(f"vendor rows: {len(cases) + len(skipped) - sum(1 for s in skipped if s[2].startswith('estimate'))}; "
          f"compared: {len(usable)}; skipped: {len(skipped)}")
    # every family's search starts from the shared set accuracy.py fits on NVIDIA rows (the hopper
    # entry), so a rerun reproduces the catalog's values whatever the vendor entries hold now
    eff0 = cat.efficiency_for("h100-sxm")
    start = {k: float(getattr(eff0, k)) for k in DENSE_FACTORS + MOE_FACTORS}
    fitted_all = []
    for fam in FAMILIES:
        rows = [(t, c) for t, c in usable if t.family == fam]
        if not rows:
            print(f"\n{fam}: no measured row of a catalog model maps onto estimate -- factors stay estimated")
            continue
        eff = cat.efficiency_for(rows[0][1].shape.accelerator)
        current = {k: float(getattr(eff, k)) for k in DENSE_FACTORS + MOE_FACTORS}
        base = [(c, acc.predict(t, c)) for t, c in rows]
        acc.report(f"{fam}: with the catalog's factors ({', '.join(f'{k}={v:g}' for k, v in current.items())})", base)
        dense = [(t, c) for t, c in rows if c.shape.model not in acc.MOE_MODELS]
        moe = [(t, c) for t, c in rows if c.shape.model in acc.MOE_MODELS]
        if len(dense) < MIN_ROWS:
            print(f"\n{fam}: {len(dense)} dense rows -- too few to fit; factors stay estimated")
            continue
        f = fit_family([t for t, _ in dense], [c for _, c in dense], start)
        print(f"\n{fam}: fitted on its {len(dense)} dense rows: " + ", ".join(f"{k}={v:g}" for k, v in f.items()))
        if len(moe) >= MIN_ROWS:
            f = fit_family([t for t, _ in moe], [c for _, c in moe], f, MOE_FACTORS)
            print(f"  then on its {len(moe)} MoE rows, dense factors held: moe_layer_fixed_us={f['moe_layer_fixed_us']:g}")
            mcv = cross_validate(moe, f, MOE_FACTORS)
            print(f"  two-fold cross-validation, MoE rows out of sample: MAPE {acc.mape(mcv):.1f}% (n={len(mcv)}), "
                  f"largest ratio {max(max(p / c.measured, c.measured / p) for c, p in mcv):.2f}x")
        else:
            print(f"  {len(moe)} MoE rows: moe_layer_fixed_us stays the shared value ({f['moe_layer_fixed_us']:g})")
        after = [(c, acc.predict(with_efficiency(t, **f), c)) for t, c in rows]
        acc.report(f"{fam}: with the fitted factors (in sample)", after)
        cv = cross_validate(dense, start)
        shared = [(c, acc.predict(with_efficiency(t, **start), c)) for t, c in dense]
        print(f"  two-fold cross-validation, dense rows out of sample: MAPE {acc.mape(cv):.1f}% (n={len(cv)}), "
              f"largest ratio {max(max(p / c.measured, c.measured / p) for c, p in cv):.2f}x; "
              f"same rows with the shared NVIDIA-fitted factors: {acc.mape(shared):.1f}%, "
              f"with the catalog's: {acc.mape([(c, acc.predict(t, c)) for t, c in dense]):.1f}%")
        fitted_all.append((fam, f))
    print("\nSummary of fitted factors (paste into catalogs/efficiency.yaml with the source):")
    for fam, f in fitted_all:
        print(f"  {fam}: " + ", ".join(f"{k}={v:g}" for k, v in f.items()))
    print("\nSkipped rows:")
    for row, what, why in sorted(skipped, key=lambda s: int(s[0].lstrip("v"))):
        print(f"  {row:>4} {what[:60]:60} {why}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
