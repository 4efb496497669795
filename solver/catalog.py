"""Load, validate and look up the catalogs (accelerators, systems, models, formats, prices).

The catalog folder is found, in order: ``$FLEETPLAN_CATALOG_DIR``; ``solver/_catalogs`` inside an
installed wheel; ``catalogs/`` beside the package in a checkout. Loading is pure and cached per
folder; the returned :class:`Catalog` is read-only.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Literal, TypeVar

from solver.errors import InputError, unknown_id
from solver.loading import read_yaml, validate
from solver.overlay import Calibration
from solver.schemas import (
    Accelerator,
    ComputeDtype,
    Efficiency,
    Engine,
    EnginesFile,
    Entry,
    LinkProfile,
    KvDtype,
    ModelArch,
    Price,
    Quantization,
    QuantizationsFile,
    System,
)

E = TypeVar("E", bound=Entry)

KINDS = ("accelerators", "systems", "models", "quantizations", "kv-dtypes", "prices", "efficiency",
         "engines", "links")
Support = Literal["native", "emulated"]


def catalog_dir() -> Path:
    """The folder the catalogs are read from (see module docstring)."""
    env = os.environ.get("FLEETPLAN_CATALOG_DIR")
    if env:
        return Path(env)
    packaged = Path(__file__).resolve().parent / "_catalogs"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent / "catalogs"


def _load_list(folder: Path, filename: str, key: str, schema: type[E]) -> dict[str, E]:
    path = folder / filename
    data = read_yaml(path)
    if not isinstance(data, dict) or not isinstance(data.get(key), list):
        raise InputError(f"expected a top-level {key!r} list", where=str(path))
    out: dict[str, E] = {}
    for i, item in enumerate(data[key]):
        label = item.get("id", i) if isinstance(item, dict) else i
        entry = validate(schema, item, where=f"{path}: {key}[{label}]")
        if entry.id in out:
            raise InputError(f"duplicate id {entry.id!r}", where=f"{path}: {key}[{label}]")
        out[entry.id] = entry
    return out


@dataclass(frozen=True)
class Catalog:
    """All catalog entries by id, plus the cross-references between them."""

    folder: Path
    accelerators: Mapping[str, Accelerator]
    systems: Mapping[str, System]
    models: Mapping[str, ModelArch]
    quantizations: Mapping[str, Quantization]
    kv_dtypes: Mapping[str, KvDtype]
    prices: Mapping[str, Price]
    efficiency: Mapping[str, Efficiency]
    engines: Mapping[str, Engine]
    links: Mapping[str, LinkProfile]
    default_engine: str
    calibrations: tuple[Calibration, ...] = ()
    """Calibration overlays in effect (see :meth:`efficiency_for`); none when loaded."""
    _efficiency_memo: dict[tuple[str | None, ...], Efficiency] = field(
        default_factory=dict, init=False, repr=False, compare=False, hash=False)
    """:meth:`efficiency_for` answers by its arguments (the catalog is immutable; ``replace``
    makes a fresh memo): the candidate tables ask once per shape, twice."""

    # -- look-ups that raise a helpful InputError -------------------------------------------
    def accelerator(self, gpu_id: str) -> Accelerator:
        return _get(self.accelerators, gpu_id, "accelerator")

    def system(self, system_id: str) -> System:
        return _get(self.systems, system_id, "system")

    def model(self, model_id: str) -> ModelArch:
        return _get(self.models, model_id, "model")

    def quantization(self, quant_id: str) -> Quantization:
        return _get(self.quantizations, quant_id, "quantization")

    def kv_dtype(self, kv_id: str) -> KvDtype:
        return _get(self.kv_dtypes, kv_id, "KV dtype")

    def entries(self, kind: str) -> Mapping[str, Entry]:
        """Entries of one kind by its plural CLI name (``accelerators``, ``kv-dtypes`` ...)."""
        table: dict[str, Mapping[str, Entry]] = {
            "accelerators": self.accelerators,
            "systems": self.systems,
            "models": self.models,
            "quantizations": self.quantizations,
            "kv-dtypes": self.kv_dtypes,
            "prices": self.prices,
            "efficiency": self.efficiency,
            "engines": self.engines,
            "links": self.links,
        }
        if kind not in table:
            raise InputError(unknown_id("catalog kind", kind, table))
        return table[kind]

    # -- derived facts ----------------------------------------------------------------------
    def systems_for(self, gpu_id: str) -> list[System]:
        """Node shapes built from this accelerator, in id order."""
        return [s for _, s in sorted(self.systems.items()) if s.accelerator == gpu_id]

    def default_system(self, gpu_id: str) -> System:
        """The largest scale-up node shape of an accelerator (ties: first id)."""
        options = self.systems_for(gpu_id)
        if not options:
            raise InputError(f"no system in the catalog uses accelerator {gpu_id!r}")
        return max(options, key=lambda s: (s.scaleup_domain_gpus, s.gpus_per_node))

    def quant_support(self, gpu_id: str, quant_id: str) -> Support | None:
        """Whether an accelerator runs a format natively, by emulation, or not at all."""
        fam = self.accelerator(gpu_id).family
        q = self.quantization(quant_id)
        if fam in q.native_families:
            return "native"
        if any(fam in e.families for e in q.emulated):
            return "emulated"
        return None

    def compute_dtype(self, gpu_id: str, quant_id: str) -> ComputeDtype:
        """The dtype the matmuls of ``quant_id`` actually run in on ``gpu_id``."""
        acc = self.accelerator(gpu_id)
        q = self.quantization(quant_id)
        support = self.quant_support(gpu_id, quant_id)
        if support is None:
            raise InputError(
                f"quantization {quant_id!r} is not supported on {gpu_id!r} "
                f"(supported: {', '.join(self.supported_quantizations(gpu_id))})"
            )
        if support == "native":
            return q.compute_dtype
        return next(e.compute_dtype for e in q.emulated if acc.family in e.families)

    def supported_quantizations(self, gpu_id: str) -> list[str]:
        """Format ids that run on the accelerator, natively or emulated, in id order."""
        return [q for q in sorted(self.quantizations) if self.quant_support(gpu_id, q)]

    def kv_supported(self, gpu_id: str, kv_id: str) -> bool:
        return self.accelerator(gpu_id).family in self.kv_dtype(kv_id).native_families

    def engine(self, engine_id: str) -> Engine:
        return _get(self.engines, engine_id, "engine")

    def link_profile(self, kind: str) -> LinkProfile:
        """Collective parameters of a link kind (``nvlink``, ``pcie`` ..., ``scale-out``)."""
        return _get(self.links, kind, "link profile")

    def engine_reason(self, engine_id: str, gpu_id: str, quant_id: str) -> str | None:
        """Why ``engine_id`` cannot serve ``quant_id`` on ``gpu_id``; ``None`` if it can."""
        eng = self.engine(engine_id)
        fam = self.accelerator(gpu_id).family
        if fam not in eng.formats:
            runs = ", ".join(sorted(eng.formats))
            return f"engine {eng.id!r} does not run on {gpu_id!r} ({fam}); it runs on: {runs}"
        if quant_id not in eng.formats[fam]:
            return (
                f"engine {eng.id!r} does not run format {quant_id!r} on {fam} "
                f"(it runs: {', '.join(eng.formats[fam])})"
            )
        return None

    def efficiency_for(
        self, gpu_id: str, engine: str = "generic", *, model: str | None = None,
        quant: str | None = None, serving_engine: str | None = None,
    ) -> Efficiency:
        """Efficiency factors for the accelerator's family (engine-specific if present); with
        ``model``, ``quant`` and ``serving_engine`` given, a matching calibration overlay's
        fitted factors replace the catalog's (the one place overlays take effect)."""
        key = (gpu_id, engine, model, quant, serving_engine)
        hit = self._efficiency_memo.get(key)
        if hit is None:
            hit = self._efficiency_memo[key] = self._efficiency_for(gpu_id, engine, model, quant, serving_engine)
        return hit

    def _efficiency_for(self, gpu_id: str, engine: str, model: str | None, quant: str | None,
                        serving_engine: str | None) -> Efficiency:
        fam = self.accelerator(gpu_id).family
        matches = [e for _, e in sorted(self.efficiency.items()) if e.family == fam]
        base = next((e for e in matches if e.engine == engine), matches[0] if matches else None)
        if base is None:
            raise InputError(f"no efficiency entry for accelerator family {fam!r} ({gpu_id})")
        cal = self.calibration_for(model, gpu_id, quant, serving_engine)
        if cal is None:
            return base
        return base.model_copy(update={**cal.factors, "calibration": cal.id})

    def calibration_for(
        self, model: str | None, gpu_id: str, quant: str | None, serving_engine: str | None
    ) -> Calibration | None:
        """The overlay fitted on this model, accelerator, format and engine, if one is loaded."""
        if model is None or quant is None or serving_engine is None:
            return None
        return next((c for c in self.calibrations if c.matches(model, gpu_id, quant, serving_engine)), None)

    def with_calibrations(self, cals: tuple[Calibration, ...]) -> "Catalog":
        """The same catalog with these overlays in effect (the loaded catalog is not changed)."""
        return replace(self, calibrations=tuple(cals))

    def prices_for(
        self, gpu_id: str, pricing: str | None = None, provider: str | None = None
    ) -> list[Price]:
        """Prices of an accelerator, cheapest first (ties by id)."""
        rows = [
            p
            for p in self.prices.values()
            if p.accelerator == gpu_id
            and (pricing is None or p.pricing == pricing)
            and (provider is None or provider_matches(p.provider, provider))
        ]
        return sorted(rows, key=lambda p: (p.usd_per_gpu_hour, p.id))


def provider_matches(row_provider: str, wanted: str) -> bool:
    """Whether a price row's provider is ``wanted``, case-insensitively, by whole leading words:
    ``AWS`` matches "AWS (p5.48xlarge)" and "AWS EC2 Capacity Blocks (...)", ``runpod`` matches
    both RunPod clouds, ``Lambda`` does not match "LambdaLabs"."""
    row, want = row_provider.lower().strip(), wanted.lower().strip()
    return row == want or (row.startswith(want) and not row[len(want)].isalnum())


def provider_key(row_provider: str) -> str:
    """A price row's provider as one lower-case word, the first of its name: "AWS (p5.48xlarge)"
    and "AWS EC2 Capacity Blocks (...)" are both ``aws``; both RunPod clouds are ``runpod``.
    Purchasing keeps tiers "from one provider" by this key."""
    words = row_provider.lower().replace("(", " ").split()
    return words[0].rstrip(",:;") if words else ""


def _get(table: Mapping[str, E], key: str, kind: str) -> E:
    try:
        return table[key]
    except KeyError:
        raise InputError(unknown_id(kind, key, table)) from None


def _check_references(cat: Catalog) -> None:
    """Cross-file references must resolve; each problem is one InputError line."""
    where = str(cat.folder)
    for s in cat.systems.values():
        if s.accelerator not in cat.accelerators:
            raise InputError(
                f"systems[{s.id}].accelerator: " + unknown_id("accelerator", s.accelerator, cat.accelerators),
                where=where,
            )
    for p in cat.prices.values():
        if p.accelerator not in cat.accelerators:
            raise InputError(
                f"prices[{p.id}].accelerator: " + unknown_id("accelerator", p.accelerator, cat.accelerators),
                where=where,
            )
    for p in cat.prices.values():
        ref = cat.prices.get(p.on_demand_ref) if p.on_demand_ref else None
        if p.on_demand_ref and (ref is None or ref.pricing != "on-demand" or ref.accelerator != p.accelerator
                                or provider_key(ref.provider) != provider_key(p.provider)):
            raise InputError(f"prices[{p.id}].on_demand_ref: {p.on_demand_ref!r} is not an on-demand row of "
                             f"the same accelerator and provider", where=where)
        if p.pricing == "on-demand" and (p.on_demand_ref or p.unpaired_reason):
            field = "on_demand_ref" if p.on_demand_ref else "unpaired_reason"
            raise InputError(f"prices[{p.id}].{field}: only reserved and spot rows are compared with an "
                             f"on-demand row", where=where)
        if p.on_demand_ref and p.unpaired_reason:
            raise InputError(f"prices[{p.id}].unpaired_reason: the row names on_demand_ref {p.on_demand_ref!r}; "
                             f"give one or the other", where=where)
    for q in cat.quantizations.values():
        for kv in q.kv_dtypes:
            if kv not in cat.kv_dtypes:
                raise InputError(
                    f"quantizations[{q.id}].kv_dtypes: " + unknown_id("KV dtype", kv, cat.kv_dtypes),
                    where=where,
                )
    for m in cat.models.values():
        if m.native_quantization not in cat.quantizations:
            raise InputError(
                f"models[{m.id}].native_quantization: "
                + unknown_id("quantization", m.native_quantization, cat.quantizations),
                where=where,
            )
    if cat.default_engine not in cat.engines:
        raise InputError("default_engine: " + unknown_id("engine", cat.default_engine, cat.engines), where=where)
    for e in cat.engines.values():
        for fam, fmts in e.formats.items():
            for f in fmts:
                if f not in cat.quantizations:
                    raise InputError(
                        f"engines[{e.id}].formats.{fam}: " + unknown_id("quantization", f, cat.quantizations),
                        where=where,
                    )
    for s in cat.systems.values():
        if s.intra_node_link not in cat.links:
            raise InputError(
                f"systems[{s.id}].intra_node_link: " + unknown_id("link profile", s.intra_node_link, cat.links),
                where=where,
            )
    for a in cat.accelerators.values():
        if not cat.systems_for(a.id):
            raise InputError(f"accelerators[{a.id}]: no system uses this accelerator", where=where)


@functools.lru_cache(maxsize=4)
def _load(folder: Path) -> Catalog:
    if not folder.is_dir():
        raise InputError("catalog folder not found (set FLEETPLAN_CATALOG_DIR?)", where=str(folder))
    qfile = folder / "quantizations.yaml"
    qdata = read_yaml(qfile)
    quant = validate(QuantizationsFile, qdata, where=str(qfile))
    efile = folder / "engines.yaml"
    engines = validate(EnginesFile, read_yaml(efile), where=str(efile))
    cat = Catalog(
        folder=folder,
        accelerators=MappingProxyType(_load_list(folder, "accelerators.yaml", "accelerators", Accelerator)),
        systems=MappingProxyType(_load_list(folder, "systems.yaml", "systems", System)),
        models=MappingProxyType(_load_list(folder, "models.yaml", "models", ModelArch)),
        quantizations=MappingProxyType(_unique(quant.quantizations, qfile, "quantizations")),
        kv_dtypes=MappingProxyType(_unique(quant.kv_dtypes, qfile, "kv_dtypes")),
        prices=MappingProxyType(_load_list(folder, "prices.yaml", "prices", Price)),
        efficiency=MappingProxyType(_load_list(folder, "efficiency.yaml", "efficiency", Efficiency)),
        engines=MappingProxyType(_unique(engines.engines, efile, "engines")),
        links=MappingProxyType(_unique(engines.links, efile, "links")),
        default_engine=engines.default_engine,
    )
    _check_references(cat)
    return cat


def _unique(items: list[E], path: Path, key: str) -> dict[str, E]:
    out: dict[str, E] = {}
    for it in items:
        if it.id in out:
            raise InputError(f"{key}[{it.id}]: duplicate id", where=str(path))
        out[it.id] = it
    return out


def load_catalog(folder: Path | str | None = None) -> Catalog:
    """Load and validate every catalog file; raises ``InputError`` on the first problem."""
    return _load(Path(folder).resolve() if folder else catalog_dir().resolve())
