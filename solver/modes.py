"""Serving modes of a plan's deployments, stated in words: whether speculative decoding, where a
problem offers it, was used and at which batch caps (the search uses it only where it is
cheaper: at low concurrency the target's decode step is memory-bound, so verifying ``k + 1``
tokens costs little more than decoding one; at high concurrency the extra tokens cost more than
the accepted ones save)."""

from __future__ import annotations

from solver.plan import Deployment
from solver.problem import Problem


def speculation_notes(problem: Problem, deployments: list[Deployment] | tuple[Deployment, ...]) -> tuple[str, ...]:
    """One sentence per model that offers speculative decoding: used where, or not used."""
    out = []
    for d in problem.models:
        s = d.speculative
        if s is None:
            continue
        deps = [x for x in deployments if x.model == d.name]
        spec = [x for x in deps if x.speculative]
        plain = [x for x in deps if not x.speculative]
        what = f"speculative decoding ({s.draft}, acceptance {s.acceptance_rate:g}, {s.draft_tokens} draft tokens)"
        if spec:
            e = spec[0].speculative["expected_tokens_per_step"]  # type: ignore[index]
            batches = ", ".join(str(x.max_batch) for x in spec)
            out.append(f"{d.name}: {what} used on {sum(x.replicas for x in spec)} of "
                       f"{sum(x.replicas for x in deps)} replicas (batch cap {batches}; {e:g} tokens "
                       f"per target step): cheaper than plain decoding there")
        elif plain:
            batches = ", ".join(str(x.max_batch) for x in plain)
            out.append(f"{d.name}: {what} offered but not used: plain decoding is cheaper at the "
                       f"planned concurrency (batch cap {batches})")
    return tuple(out)


def disaggregation_notes(deployments: list[Deployment] | tuple[Deployment, ...]) -> tuple[str, ...]:
    """One sentence per disaggregated deployment of the plan: its units, pools and KV transfer
    (the search chose it over aggregated replicas because it was cheaper)."""
    out = []
    for x in deployments:
        if x.serving_mode != "disaggregated":
            continue
        pools = " + ".join(f"{p.replicas}x {p.role} TP{p.tp} PP{p.pp} EP{p.ep}"
                           + (f" on {p.accelerator} {p.quant}" if p.accelerator and p.accelerator != x.accelerator
                              else "") for p in x.pools)
        link = "the NIC" if x.kv_link == "nic" else "the scale-up link (one node)"
        out.append(f"{x.model}: disaggregated prefill/decode on {x.accelerator}, {x.replicas} unit(s) of "
                   f"{pools} ({x.gpus_per_replica} GPUs each); KV transfer {x.kv_transfer_ms:.1f} ms over "
                   f"{link} is in TTFT: cheaper than aggregated replicas here")
    return tuple(out)
