""":func:`~solver.costmodel.shape.shape_terms` of many shapes at once, as stacked terms.

A model's candidate table evaluates hundreds of shapes (every accelerator, node shape, format,
KV dtype and parallelism). Built one at a time, each shape pays the catalog look-ups, the
parameter counts and one :class:`ShapeTerms` object; most of that is the same for every shape
that differs only in its parallelism. Here shapes are grouped by (model, accelerator, node
shape, format, KV dtype): per group :func:`shape_terms` runs once, on the group's first shape,
for the terms that do not depend on parallelism, and the terms that do (``tp``, ``pp``, ``ep``,
``moe_tp``: per-GPU bytes, activations, usable memory, links and their collective costs) are
evaluated for every shape at once over numpy arrays, with the same expressions as
:func:`shape_terms` in the same order, so each row equals the one-shape terms exactly
(``tests/test_stacked_shapes.py`` compares every shape of the catalog under every engine).

The result is laid out as :func:`~solver.costmodel.stacked.stack_terms` lays out per-shape
terms (row ``j`` one shape; a field equal on every row a scalar), one stack per
:func:`~solver.costmodel.stacked.branch_key`. When :func:`shape_terms` gains a term that
depends on parallelism, it must be added to :func:`_parallel_fields` too (the test fails
until it is).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields, replace
from typing import Any

import numpy as np

from solver.architecture import param_counts
from solver.catalog import Catalog
from solver.costmodel.shape import (
    ACT_BYTES,
    Shape,
    ShapeTerms,
    check_shape,
    link_cost,
    scale_collectives,
    shape_terms,
    usable_bytes,
    weight_groups,
)
from solver.costmodel.stacked import _column, _repeat, branch_key
from solver.topology import link_for_group

PARALLEL_FIELDS = (
    "shape", "gpus", "tp", "pp", "ep", "stage_gpus", "dp_attn", "moe_tp", "usable_bytes", "weight_bytes_gpu",
    "dense_weight_bytes_gpu", "expert_weight_bytes_gpu", "activation_bytes_gpu", "kv_full_bytes_per_token_gpu",
    "kv_window_bytes_per_token_gpu", "dense_read_bytes_gpu", "expert_bytes_per_expert_gpu", "experts_per_gpu_layer",
    "expert_flop_per_row_gpu", "tp_link", "ep_link", "pp_link", "tp_cost", "ep_cost", "pp_cost", "moe_tp_cost",
)
"""The :class:`ShapeTerms` fields that depend on a shape's parallelism (set per row); every other
field is the same for all shapes of one (model, accelerator, node shape, format, KV dtype)."""

_COMMON_FIELDS = tuple(f.name for f in fields(ShapeTerms) if f.name not in PARALLEL_FIELDS)


def stacked_shape_terms(cat: Catalog, shapes: Sequence[Shape], engine: str | None = None,
                        cuda_graphs: bool = True) -> list[tuple[list[int], ShapeTerms]]:
    """:func:`shape_terms` of every runnable shape of ``shapes`` under ``engine`` (default: the
    catalog's), as stacks: per :func:`branch_key`, the indices into ``shapes`` and their terms
    with row ``j`` shape ``indices[j]``'s. Shapes :func:`check_shape` rejects are left out
    (ask it for the reason; unknown ids raise ``InputError`` as there)."""
    engine = engine or cat.default_engine
    groups: dict[tuple[Any, ...], list[int]] = {}
    for i, s in enumerate(shapes):
        if check_shape(cat, s, engine) is None:
            groups.setdefault((s.model, s.accelerator, s.system, s.quant, s.kv_dtype), []).append(i)
    by_branch: dict[tuple[Any, ...], list[tuple[ShapeTerms, list[int]]]] = {}
    for members in groups.values():
        first = shape_terms(cat, shapes[members[0]], engine, cuda_graphs)
        by_branch.setdefault(branch_key(first), []).append((first, members))
    out = []
    for parts in by_branch.values():
        firsts = [t for t, _ in parts]
        index = [i for _, members in parts for i in members]
        counts = np.array([len(members) for _, members in parts])
        # the parallelism-free fields as stack_terms(firsts, counts) lays them out, a row per shape
        common = {k: _repeat(_column([getattr(t, k) for t in firsts]), counts) for k in _COMMON_FIELDS}
        out.append((index, replace(firsts[0], **common,
                                   **_parallel_fields(cat, firsts, counts, [shapes[i] for i in index]))))
    return out


def _parallel_fields(cat: Catalog, firsts: list[ShapeTerms], counts: np.ndarray,
                     shapes: list[Shape]) -> dict[str, Any]:
    """The :data:`PARALLEL_FIELDS` of ``shapes`` (``counts[g]`` consecutive shapes of group
    ``g``, whose first shape's terms are ``firsts[g]``), by :func:`shape_terms`'s expressions."""
    facts = [_group_facts(cat, t) for t in firsts]
    f = {k: np.repeat(np.asarray([x[k] for x in facts]), counts) for k in facts[0]
         if k not in ("system", "collective_factor", "policy")}
    group = np.repeat(np.arange(len(facts)), counts)
    tp = np.array([s.tp for s in shapes], dtype=np.int64)
    pp = np.array([s.pp for s in shapes], dtype=np.int64)
    ep = np.array([s.ep for s in shapes], dtype=np.int64)
    stage = np.array([s.stage_gpus for s in shapes], dtype=np.int64)
    moe, mla = f["moe"], f["mla"]

    dense_w = f["dense_bytes"] / (tp * pp)
    expert_w = f["expert_bytes"] / (stage * pp)
    per_layer_gpu = np.where(mla, f["per_layer_model"], 2 * np.maximum(1.0, f["num_kv_heads"] / tp) * f["head_dim"])
    act = f["chunk_tokens"] * (4 * f["hidden_size"] + 2 * f["ffn_width"] / tp) * ACT_BYTES
    act = act + f["logit_rows"] * f["vocab_size"] * 4 / tp
    moe_tp = stage // ep
    dp_attn = stage // tp
    fixed = dense_w + expert_w + f["overhead"] + act
    usable = np.array([usable_bytes(facts[g]["policy"], fr, h, x)
                       for g, fr, h, x in zip(group.tolist(), f["fraction"], f["hbm"], fixed)])
    exp_per_gpu_layer = np.where(moe, f["num_experts"] / ep, 0.0)
    exp_bytes_one = np.where(moe, f["expert_param_bytes"] / (stage // ep), 0.0)
    exp_flop_row = np.where(moe, 2.0 * f["expert_params"] / (stage // ep), 0.0)

    # links: a group of 1 GPU (or an unused group) is local, as link_for_group(system, 1) is
    links = {
        "tp": np.where(tp > 1, tp, 1), "ep": np.where(ep > 1, stage, 1), "pp": np.where(pp > 1, stage * pp, 1),
        "moe_tp": np.where((dp_attn > 1) & (moe_tp > 1), moe_tp, 1),
    }
    out: dict[str, Any] = {}
    for name, size in links.items():
        # each distinct (group, group size) looked up once: keys encode it as group x 2^20 + size
        keys, codes = np.unique(group * (1 << 20) + size, return_inverse=True)
        at = [(facts[int(k) >> 20], int(k) & ((1 << 20) - 1)) for k in keys]
        distinct = [link_for_group(g["system"], n) for g, n in at]
        if name != "moe_tp":  # the expert-TP group's link is not kept, only its cost
            out[f"{name}_link"] = _objects(distinct, codes)
        out[f"{name}_cost"] = _objects([scale_collectives(link_cost(cat, lk), g["collective_factor"])
                                        for (g, _), lk in zip(at, distinct)], codes)
    return out | {k: _collapse(v) for k, v in {
        "gpus": stage * pp, "tp": tp, "pp": pp, "ep": ep, "stage_gpus": stage, "dp_attn": dp_attn,
        "moe_tp": moe_tp, "usable_bytes": usable, "weight_bytes_gpu": dense_w + expert_w,
        "dense_weight_bytes_gpu": dense_w, "expert_weight_bytes_gpu": expert_w, "activation_bytes_gpu": act,
        "kv_full_bytes_per_token_gpu": per_layer_gpu * f["full_layers"] * f["kv_bytes"] / pp,
        "kv_window_bytes_per_token_gpu": per_layer_gpu * f["window_layers"] * f["kv_bytes"] / pp,
        "dense_read_bytes_gpu": (f["dense_bytes"] - f["lookup_bytes"]) / (tp * pp),
        "expert_bytes_per_expert_gpu": exp_bytes_one, "experts_per_gpu_layer": exp_per_gpu_layer,
        "expert_flop_per_row_gpu": exp_flop_row,
    }.items()} | {"shape": _dataclasses(shapes)}


def _group_facts(cat: Catalog, t: ShapeTerms) -> dict[str, Any]:
    """What the parallel fields of a group's shapes are computed from (as in :func:`shape_terms`)."""
    s = t.shape
    m = cat.model(s.model)
    pc = param_counts(m)
    bpw = cat.quantization(s.quant).bytes_per_weight
    wg = weight_groups(m, bpw, pc)
    eng = cat.engine(t.engine)
    a = m.attention
    eff = cat.efficiency_for(s.accelerator, model=s.model, quant=s.quant, serving_engine=eng.id)
    return {
        "system": cat.system(t.system_id), "collective_factor": eff.collective_factor,
        "policy": eng.kv_memory_policy, "fraction": eng.kv_memory_fraction,
        "moe": m.moe is not None, "mla": a.kind == "mla",
        "dense_bytes": wg.dense_bytes, "expert_bytes": wg.expert_bytes, "lookup_bytes": wg.lookup_bytes,
        "num_experts": m.moe.num_experts if m.moe else 0,
        "expert_params": pc.expert_params if m.moe else 0, "expert_param_bytes": pc.expert_params * bpw if m.moe else 0.0,
        "per_layer_model": ((a.kv_lora_rank or 0) + (a.qk_rope_head_dim or 0)) if a.kind == "mla" else 0,
        "num_kv_heads": m.num_kv_heads, "head_dim": m.head_dim,
        "full_layers": t.full_attn_layers, "window_layers": t.window_attn_layers,
        "kv_bytes": cat.kv_dtype(s.kv_dtype).bytes_per_element,
        "chunk_tokens": eng.chunk_tokens, "logit_rows": min(eng.chunk_tokens, 1024),
        "hidden_size": m.hidden_size, "vocab_size": m.vocab_size,
        "ffn_width": max(m.intermediate_size, (m.moe.moe_intermediate_size * m.moe.experts_per_token) if m.moe else 0),
        "overhead": t.overhead_bytes_gpu, "hbm": t.hbm_bytes,
    }


def _objects(distinct: list[Any], codes: np.ndarray) -> Any:
    """A column of frozen dataclass values (row ``j``: ``distinct[codes[j]]``) as
    :func:`~solver.costmodel.stacked.stack_terms` lays it out: the value when every row has
    the same, else the dataclass with each field a column."""
    if (codes == codes[0]).all():
        return distinct[int(codes[0])]
    first = distinct[int(codes[0])]
    return replace(first, **{f.name: _collapse(np.array([getattr(o, f.name) for o in distinct])[codes])
                             for f in fields(first)})


def _dataclasses(values: list[Any]) -> Any:
    """A column of dataclass values, field by field (:func:`_column` without the whole-object
    comparison)."""
    return replace(values[0], **{f.name: _column([getattr(v, f.name) for v in values]) for f in fields(values[0])})


def _collapse(values: np.ndarray) -> Any:
    """An array field as :func:`~solver.costmodel.stacked.stack_terms` lays it out: the value
    itself (a Python number) when every row agrees, else the array."""
    return values.flat[0].item() if values.size and (values == values.flat[0]).all() else values
