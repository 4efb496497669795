"""Replay simulator: requests through a plan's replicas, one engine step at a time.

Why: the planner's latencies come from a closed-form queue (:mod:`solver.slo`); this module
checks them by running the requests -- from a trace or a Poisson stream -- through the replicas
of a plan the way a continuous-batching engine does, with step times from the cost model.

Model of one replica (vLLM-style scheduler, FCFS, no preemption):

- **Slots and memory.** At most ``max_batch`` requests are in flight, and their KV caches,
  reserved at each request's final length (prompt + output) as the planner assumes, must fit
  the replica's KV budget (:func:`~solver.costmodel.kv_budget_bytes_gpu`). A request that does
  not fit waits in the replica's queue; the head of the queue blocks the rest (FCFS).
- **Steps.** An engine step decodes one token for every decoding request and processes up to
  ``chunk`` prompt tokens (chunked prefill: the token budget is handed out first come, first
  served, so a long prompt spans several steps and a short one may share a step). Waiting
  requests are admitted at step boundaries. A request whose last prompt chunk runs in a step
  gets its first token at the end of that step (TTFT), then one token per step until its
  output length is reached.
- **Step time** is the cost model's :func:`~solver.costmodel.decode_step` for the step's
  decode batch, mean decode context, prompt tokens and prompt attention pairs
  (:func:`~solver.costmodel.compute.attention_pair_layers`), read from a table built once per
  replica shape (:class:`CostModelStepTimer`, interpolated; its error is tested).
- **Prefix cache.** The cached share of each prompt (``prefix_hit_rate``) is skipped.

Router: ``round-robin`` (arrival i to replica i mod R), ``weighted`` (smooth weighted
round-robin, as nginx's upstream balancer: each replica's counter gains its weight, the largest
counter (ties to the lowest index) takes the request and loses the weights' total; the weights
are the plan's load per replica, ``load_rps / replicas``, so requests split as the planner
assumed -- replicas of 7x different capacity get 7x different shares) or ``least-loaded`` (the replica with the
least outstanding work at the arrival instant: requests in flight or waiting as a share of its
batch cap, plus prompt tokens not yet prefilled in units of its chunk budget; ties to the lowest
index). Counting the prompt tokens matters: by request count alone, a replica still prefilling
a long prompt looks as free as one that is not, and p99 TTFT on the conversation trace is 25%
worse than with this measure. Everything is deterministic for a given workload; workloads are generated from a
seed. Metrics per request: TTFT (arrival to first token), TPOT ((finish - first token) /
(output - 1), requests with one output token have none), end-to-end, queue wait (arrival to
admission).
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol

import numpy as np

from solver.catalog import Catalog
from solver.costmodel import Shape, ShapeTerms, decode_step, kv_budget_bytes_gpu, kv_bytes_per_seq_gpu, shape_terms
from solver.costmodel.compute import attention_pair_layers
from solver.costmodel.partition import partition_speculation, partition_terms, resolve_partition
from solver.costmodel.speculative import (
    Speculation, _draft_step_ms, draft_kv_bytes_per_seq_gpu, draft_weight_bytes_gpu, speculation, verify_step_ms,
)
from solver.errors import InputError
from solver.lora import demand_terms
from solver.problem import ModelDemand, Slo, TokenLengths
from solver.traffic import Trace

Router = Literal["round-robin", "weighted", "least-loaded"]
ROUTERS: tuple[str, ...] = ("round-robin", "weighted", "least-loaded")
PLAN_ROUTER = "plan"
"""What :func:`replay` (and ``fleetplan simulate``) route by default: the routing the plan
assumes. Aggregated replicas take the plan's ``router_weight`` shares (``weighted``); a
disaggregated deployment's pools are ``least-loaded`` (the planner pools each prefill pool as one
M/G/c queue, which an even split does not give)."""


class WeightedRoundRobin:
    """Smooth weighted round-robin (nginx's upstream rule): deterministic, and each replica's
    share of any long run of picks is its weight's share of the total."""

    def __init__(self, weights: Sequence[float]) -> None:
        if not weights or not all(math.isfinite(w) and w >= 0 for w in weights) or not sum(weights) > 0:
            raise InputError(f"weighted router: weights must be >= 0 and not all 0, got {list(weights)}")
        self.weights = [float(w) for w in weights]
        self.total = sum(self.weights)
        self.current = [0.0] * len(self.weights)

    def pick(self) -> int:
        """The next replica's index."""
        cur = self.current
        best = 0
        for j, w in enumerate(self.weights):
            cur[j] += w
            if cur[j] > cur[best]:
                best = j
        cur[best] -= self.total
        return best


# -- step times -------------------------------------------------------------------------------

class StepTimer(Protocol):
    """What the simulator needs of a replica's hardware: step times and prompt attention work."""

    chunk_tokens: int

    def step_ms(self, n_decode: int, ctx_mean: float, prefill_tokens: int, prefill_pairs: float) -> float:
        """Time of one engine step (ms)."""
        ...

    def pairs(self, new_tokens: int, cached_tokens: int) -> float:
        """Attention (query, key) pairs over layers of ``new_tokens`` after ``cached_tokens``."""
        ...


@dataclass(frozen=True)
class ConstantStepTimer:
    """Every step takes ``ms`` whatever it holds: the textbook queue cases (M/D/1, M/M/c)."""

    ms: float
    chunk_tokens: int = 1 << 30

    def step_ms(self, n_decode: int, ctx_mean: float, prefill_tokens: int, prefill_pairs: float) -> float:
        return self.ms

    def pairs(self, new_tokens: int, cached_tokens: int) -> float:
        return 0.0


def _grid(top: float, linear: int) -> np.ndarray:
    """0, powers of two below ``top``, and ``linear`` evenly spaced points up to ``top``."""
    pow2 = [0.0] + [float(2**k) for k in range(int(math.log2(max(top, 1))) + 1) if 2**k < top]
    return np.unique(np.concatenate([pow2, np.linspace(0.0, top, linear + 1)]))


class CostModelStepTimer:
    """Step times of one replica shape from :func:`~solver.costmodel.decode_step`, tabulated.

    The table is exact in the decode batch (every count 0..``max_batch``) and interpolated
    linearly in the mean decode context and the prompt tokens of the step; the prompt attention
    pairs enter through a slope measured per cell (the cost model's step time is linear in them).
    ``tests/test_simulate.py`` checks the table against direct calls.
    """

    def __init__(self, terms: ShapeTerms, max_batch: int, max_context: int, ctx_points: int = 16,
                 prefill_points: int = 64) -> None:
        self.terms = terms
        self.chunk_tokens = int(terms.prefill_chunk_tokens)
        ctx = _grid(float(max(max_context, 2)), ctx_points)
        ctx[0] = 1.0
        pre = _grid(float(self.chunk_tokens), prefill_points)
        b = np.arange(max_batch + 1, dtype=float)
        ref = float(attention_pair_layers(terms, self.chunk_tokens, max_context))
        t0 = self._steps_ms(b[:, None, None], ctx[None, :, None], pre[None, None, :], 0.0)
        t1 = self._steps_ms(b[:, None, None], ctx[None, :, None], pre[None, None, :],
                            np.full_like(pre, ref)[None, None, :])
        self._ctx = ctx.tolist()
        self._pre = pre.tolist()
        self._t = t0.tolist()
        self._decode = t0[:, :, 0].tolist()  # steps without prompt tokens (the common case)
        self._slope = ((t1 - t0) / ref if ref > 0 else np.zeros_like(t0)).tolist()
        self._ilast = len(self._ctx) - 2
        self._jlast = len(self._pre) - 2

    def _steps_ms(self, b: np.ndarray, ctx: np.ndarray, pre: np.ndarray, pairs: Any) -> np.ndarray:
        """Step times (ms) on the table's grid: the cost model's engine step."""
        return decode_step(self.terms, b, ctx, pre, pairs).total_ms

    def step_ms(self, n_decode: int, ctx_mean: float, prefill_tokens: int, prefill_pairs: float) -> float:
        cg = self._ctx
        i = bisect.bisect_right(cg, ctx_mean) - 1
        i = 0 if i < 0 else (self._ilast if i > self._ilast else i)
        u = (ctx_mean - cg[i]) / (cg[i + 1] - cg[i])
        if not prefill_tokens:
            r = self._decode[n_decode]
            return r[i] + u * (r[i + 1] - r[i])
        pg = self._pre
        j = bisect.bisect_right(pg, prefill_tokens) - 1
        j = 0 if j < 0 else (self._jlast if j > self._jlast else j)
        v = (prefill_tokens - pg[j]) / (pg[j + 1] - pg[j])
        row0, row1 = self._t[n_decode][i], self._t[n_decode][i + 1]
        t = ((1 - u) * ((1 - v) * row0[j] + v * row0[j + 1])
             + u * ((1 - v) * row1[j] + v * row1[j + 1]))
        if prefill_pairs:
            t += prefill_pairs * self._slope[n_decode][i][j]
        return t

    def pairs(self, new_tokens: int, cached_tokens: int) -> float:
        return float(attention_pair_layers(self.terms, new_tokens, cached_tokens))


class SpeculativeStepTimer(CostModelStepTimer):
    """Step times of a replica with speculative decoding: one replay step is one draft-and-verify
    cycle (:mod:`solver.costmodel.speculative`): ``k`` draft steps at the decode batch (the first
    carrying the draft's share of the step's prompt tokens) plus the target's step verifying
    ``k + 1`` tokens per sequence with the prompt tokens riding along. A step without decoding
    sequences is the target's prompt step plus the draft's. Each cycle emits the *expected*
    accepted tokens per sequence (:attr:`Speculation.expected_tokens`, the mean): the spread of
    accepted tokens from cycle to cycle is not sampled. The draft's prompt attention pairs are
    the target's scaled by the ratio of their pairs for one chunk at ``max_context``."""

    def __init__(self, terms: ShapeTerms, spec: Speculation, max_batch: int, max_context: int,
                 ctx_points: int = 16, prefill_points: int = 64) -> None:
        self.spec = spec
        chunk = int(terms.prefill_chunk_tokens)
        ref = float(attention_pair_layers(terms, chunk, max(max_context, 2)))
        draft_ref = float(attention_pair_layers(spec.draft, chunk, max(max_context, 2))) if spec.draft else ref
        self._draft_pairs = draft_ref / ref if ref > 0 else 0.0
        super().__init__(terms, max_batch, max_context, ctx_points, prefill_points)

    def _steps_ms(self, b: np.ndarray, ctx: np.ndarray, pre: np.ndarray, pairs: Any) -> np.ndarray:
        """Cycle times (ms) on the table's grid."""
        t, sp, k = self.terms, self.spec, self.spec.draft_tokens
        pairs = np.asarray(pairs, dtype=float)
        b, ctx, pre = np.broadcast_arrays(b, ctx, pre)
        first = _draft_step_ms(t, sp, b, ctx, pre, pairs * self._draft_pairs)
        cycle = verify_step_ms(t, b, ctx, k, pre, pairs) + first + (k - 1) * _draft_step_ms(t, sp, b, ctx)
        alone = decode_step(t, b, ctx, pre, pairs).total_ms + first
        return np.where(b > 0, cycle, alone)


# -- workloads --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Workload:
    """Requests to replay: arrival times (s, sorted), prompt and output tokens, prefix hit rate."""

    arrival_s: np.ndarray
    input_tokens: np.ndarray
    output_tokens: np.ndarray
    prefix_hit_rate: float = 0.0
    label: str = ""

    @property
    def requests(self) -> int:
        return int(self.arrival_s.size)

    @property
    def mean_rps(self) -> float:
        span = float(self.arrival_s[-1] - self.arrival_s[0]) if self.requests > 1 else 0.0
        return (self.requests - 1) / span if span > 0 else float("nan")


def sample_lengths(lengths: TokenLengths, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` token lengths drawn to match a problem's lengths.

    A histogram is sampled by weight. Percentiles are read as a quantile function, log-linear
    between (0.5, p50), (0.9, p90) and (0.99, p99), continued below the median with the same
    log-slope as 50-90 (floored at 1 token) and flat at p99 above it (an assumption: the planner
    reserves memory for p99 lengths, so nothing longer is replayed).
    """
    if lengths.histogram is not None:
        tok = np.array([b.tokens for b in lengths.histogram])
        w = np.array([b.weight for b in lengths.histogram], dtype=float)
        return rng.choice(tok, size=n, p=w / w.sum())
    p50, p90, p99 = (float(x) for x in (lengths.p50, lengths.p90, lengths.p99))  # type: ignore[arg-type]
    lo = max(1.0, p50 * (p50 / p90) ** (0.5 / 0.4))
    u = rng.random(n)
    logq = np.interp(u, [0.0, 0.5, 0.9, 0.99, 1.0], np.log([lo, p50, p90, p99, p99]))
    return np.maximum(1, np.rint(np.exp(logq))).astype(np.int64)


MAX_REPLAY_REQUESTS = 10_000_000
"""Most requests one generated replay holds: a memory bound (about ten arrays of one number per
request, under 1 GB), not a limit of the model."""


def poisson_workload(rate_rps: float, duration_s: float, input_tokens: TokenLengths,
                     output_tokens: TokenLengths, seed: int = 0, prefix_hit_rate: float = 0.0,
                     lengths_from: Trace | None = None, cv: float = 1.0) -> Workload:
    """Poisson arrivals at ``rate_rps`` for ``duration_s``; lengths drawn from the problem's
    percentiles, or resampled (with replacement, as pairs) from ``lengths_from``.

    ``cv`` != 1 makes the stream bursty (or smoother): gaps between arrivals are gamma
    distributed with mean ``1 / rate_rps`` and coefficient of variation ``cv`` (a renewal
    process; ``rate_rps x duration_s`` arrivals, rounded)."""
    if not (rate_rps > 0 and math.isfinite(rate_rps)):
        raise InputError(f"--poisson: rate must be a finite number > 0 req/s, got {rate_rps:g}")
    if not (duration_s > 0 and math.isfinite(duration_s)):
        raise InputError(f"--duration: must be a finite number > 0 s, got {duration_s:g}")
    if not (cv > 0 and math.isfinite(cv)):
        raise InputError(f"--cv: must be a finite number > 0 (1 = Poisson), got {cv:g}")
    if rate_rps * duration_s > MAX_REPLAY_REQUESTS:
        raise InputError(f"--poisson x --duration: {rate_rps * duration_s:.3g} requests, more than one replay "
                         f"holds ({MAX_REPLAY_REQUESTS:,}); shorten --duration")
    rng = np.random.default_rng(seed)
    if cv == 1.0:
        n = max(1, int(rng.poisson(rate_rps * duration_s)))
        arrivals = np.cumsum(rng.exponential(1.0 / rate_rps, n))
    else:
        n = max(1, round(rate_rps * duration_s))
        arrivals = np.cumsum(rng.gamma(1.0 / cv**2, cv**2 / rate_rps, n))
    if lengths_from is not None:
        pick = rng.integers(0, lengths_from.requests, n)
        isl, osl = lengths_from.input_tokens[pick], lengths_from.output_tokens[pick]
    else:
        isl = sample_lengths(input_tokens, n, rng)
        osl = sample_lengths(output_tokens, n, rng)
    kind = "Poisson" if cv == 1.0 else f"gamma-renewal (CV {cv:g})"
    return Workload(arrivals, isl, osl, prefix_hit_rate, f"{kind} {rate_rps:g} req/s")


def trace_workload(trace: Trace, scale: float = 1.0, prefix_hit_rate: float = 0.0) -> Workload:
    """A trace's requests with arrival times divided by ``scale`` (``scale`` x the rate)."""
    if not (scale > 0 and math.isfinite(scale)):
        raise InputError(f"--scale: must be > 0 and finite, got {scale:g}")
    return Workload(trace.arrival_s / scale, trace.input_tokens, trace.output_tokens,
                    prefix_hit_rate, f"{trace.source} x{scale:.4g}")


# -- replicas ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class ReplicaSpec:
    """One replica: its step timer, batch cap and KV budget (bytes; ``inf``: slots only)."""

    timer: StepTimer
    max_batch: int
    kv_budget_bytes: float = math.inf
    terms: ShapeTerms | None = None
    label: str = ""
    speculation: Speculation | None = None
    """Speculative decoding: every step is one draft-and-verify cycle and requests also hold
    the draft's KV."""
    weight: float = 1.0
    """Share of requests under the ``weighted`` router (relative; from a plan: its load per
    replica, req/s)."""

    @property
    def tokens_per_step(self) -> float:
        """Output tokens each decoding request gains per step: 1, or the expected accepted
        tokens per speculative cycle (their mean; not sampled per cycle)."""
        return 1.0 if self.speculation is None else self.speculation.expected_tokens

    def kv_bytes(self, total_tokens: np.ndarray) -> np.ndarray:
        """KV bytes a request reserves at its final length (0 without a cost-model shape)."""
        if self.terms is None:
            return np.zeros(total_tokens.shape)
        kv = kv_bytes_per_seq_gpu(self.terms, total_tokens)
        if self.speculation is not None:
            kv = kv + draft_kv_bytes_per_seq_gpu(self.terms, self.speculation, total_tokens)
        return kv / self.terms.dp_attn


def _planned_load(d: dict[str, Any], replicas: int) -> float:
    """The ``weighted`` router's weight for each replica of deployment ``d``: the plan's stated
    ``router_weight`` (:func:`solver.plan.router_weights`), else (plans written before it) the
    planned load per replica, ``load_rps / replicas`` (the same proportions); 1 (an even split)
    when the plan gives neither as a positive number. A stated weight that is not a number >= 0
    is a ``ValueError`` (bad input)."""
    stated = d.get("router_weight")
    if stated is not None:  # the plan's own figure: a bad one is bad input (a ValueError)
        try:
            weight = float(stated)
        except (TypeError, ValueError):
            weight = math.nan
        if isinstance(stated, bool) or not (math.isfinite(weight) and weight >= 0):
            raise ValueError(f"router_weight: expected a number >= 0, got {stated!r}")
        return weight
    try:
        load = float(d.get("load_rps", 0.0)) / replicas
    except (TypeError, ValueError, ZeroDivisionError):
        return 1.0
    return load if math.isfinite(load) and load > 0 else 1.0


def _steps_for(tokens: int, per_step: float) -> int:
    """Steps until a request has emitted ``tokens`` more tokens at ``per_step`` a step."""
    return tokens if per_step == 1.0 else math.ceil(tokens / per_step - 1e-9)


def plan_replicas(plan: dict[str, Any], cat: Catalog, model: str | None, max_context: int,
                  demand: ModelDemand | None = None) -> list[ReplicaSpec]:
    """The replicas of one model of a plan (``fleetplan solve --json`` output), with step-time
    tables up to ``max_context`` tokens. ``model`` may be omitted when the plan has one.

    A deployment's GPU share (``partition``) and speculative decoding (``speculative``) are
    replayed as the planner evaluates them (:mod:`solver.costmodel.partition`,
    :class:`SpeculativeStepTimer`); ``demand`` (the problem's entry for the model, from
    ``--problem``) adds its LoRA adapters' memory and per-token work (:func:`solver.lora.demand_terms`)."""
    out: list[ReplicaSpec] = []
    name, deployments = model_deployments(plan, model)
    for k, d in deployments:
        if d.get("serving_mode", "aggregated") != "aggregated":  # units of two pools: solver.simulate_disagg
            raise InputError(f"PLAN: deployments[{k}]: serving_mode {d.get('serving_mode')!r}; "
                             "replay it with `replay` (solver.simulate_disagg), not as aggregated replicas")
        try:
            tp, pp, ep, batch, reps = (int(d[f]) for f in ("tp", "pp", "ep", "max_batch", "replicas"))
            if min(tp, pp, ep, batch) < 1 or reps < 0:
                raise ValueError("tp, pp, ep and max_batch must be >= 1, replicas >= 0")
            shape = Shape(str(d["model_id"]), str(d["accelerator"]), str(d["system"]),
                          str(d["quant"]), str(d["kv_dtype"]), tp, pp, ep, int(d.get("moe_tp", 0)))
            terms = shape_terms(cat, shape, plan_engine(d))
            part = d.get("partition")
            if part is not None:
                share = resolve_partition(cat, shape.accelerator, str(part))
                if isinstance(share, str):
                    raise ValueError(f"partition: {share}")
                eng = cat.engine(terms.engine)
                terms = partition_terms(terms, share, eng.kv_memory_policy, eng.kv_memory_fraction)
            if demand is not None and demand.lora is not None:
                if demand.model != shape.model:
                    raise ValueError(f"model_id {shape.model!r} is not the problem's {demand.model!r} "
                                     "(its LoRA adapters are sized for that model)")
                terms = demand_terms(cat, demand, terms)
            spec = _plan_speculation(cat, shape, d.get("speculative"), plan_engine(d))
            if spec is not None and part is not None:  # the draft runs on the same share
                spec = partition_speculation(spec, share, eng.kv_memory_policy, eng.kv_memory_fraction)
            weight = _planned_load(d, reps)
        except (TypeError, ValueError, KeyError) as exc:  # InputError is a ValueError
            detail = exc.detail if isinstance(exc, InputError) else str(exc)
            raise InputError(f"PLAN: deployments[{k}]: {detail}") from None
        label = f"{d['accelerator']} {d['quant']} TP{tp} B{batch}"
        budget = kv_budget_bytes_gpu(terms)
        if spec is None:
            timer: CostModelStepTimer = CostModelStepTimer(terms, batch, max_context)
        else:
            timer = SpeculativeStepTimer(terms, spec, batch, max_context)
            budget -= draft_weight_bytes_gpu(terms, spec)
            label += f" speculative ({spec.draft_id})"
        if part is not None:
            label += f" {part}"
        out += [ReplicaSpec(timer, batch, budget, terms, label, spec, weight)] * reps
    if not out:
        raise InputError(f"PLAN: {model!r} has no replicas")
    if not any(r.weight > 0 for r in out):
        raise InputError(f"PLAN: deployments[*].router_weight: all 0 for model {name!r}; the weighted "
                         "router has no replica to send a request to")
    return out


def model_deployments(plan: dict[str, Any], model: str | None) -> tuple[str, list[tuple[int, dict[str, Any]]]]:
    """(model, its ``(index, deployment)`` pairs) of a plan (``fleetplan solve --json``), each
    with the identity fields; ``model`` may be omitted when the plan has one."""
    deps = plan.get("deployments") if isinstance(plan, dict) else None
    if not isinstance(deps, list) or not deps:
        raise InputError("PLAN: no deployments (is it the output of `fleetplan solve --json` with a plan?)")
    bad = next((k for k, d in enumerate(deps) if not isinstance(d, dict)), None)
    if bad is not None:
        raise InputError(f"PLAN: deployments[{bad}]: expected an object")
    names = sorted({str(d.get("model")) for d in deps})
    if model is None:
        if len(names) > 1:
            raise InputError(f"--model: the plan serves {', '.join(names)}; name one")
        model = names[0]
    if model not in names:
        raise InputError(f"--model: {model!r} is not in the plan (it serves {', '.join(names)})")
    need = ("model_id", "accelerator", "system", "quant", "kv_dtype", "tp", "pp", "ep", "max_batch", "replicas")
    out = []
    for k, d in enumerate(deps):
        if d.get("model") != model:
            continue
        missing = [f for f in need if f not in d]
        if missing:
            raise InputError(f"PLAN: deployments[{k}]: missing {', '.join(missing)}")
        out.append((k, d))
    return model, out


def plan_engine(dep: dict[str, Any]) -> str | None:
    """The engine a plan's deployment was planned with (``engine``; None: the catalog's default,
    for plans written before the field existed)."""
    eng = dep.get("engine")
    return None if eng is None else str(eng)


def _plan_speculation(cat: Catalog, shape: Shape, field: Any, engine: str | None = None) -> Speculation | None:
    """The speculative decoding a plan's deployment states (None: plain decoding)."""
    if field is None:
        return None
    if not isinstance(field, dict) or not {"draft", "acceptance_rate", "draft_tokens"} <= field.keys():
        raise ValueError("speculative: expected an object with draft, acceptance_rate and draft_tokens")
    try:
        a, n = float(field["acceptance_rate"]), int(field["draft_tokens"])
    except (TypeError, ValueError):
        raise ValueError("speculative: acceptance_rate must be a number and draft_tokens an integer") from None
    try:
        got = speculation(cat, shape, str(field["draft"]), a, n, engine)
    except InputError as exc:
        raise ValueError(f"speculative: {exc.detail}") from None
    if isinstance(got, str):
        raise ValueError(f"speculative: {got}")
    return got


class _Replica:
    """State of one replica during a replay (see the module docstring for the rules)."""

    def __init__(self, spec: ReplicaSpec, req: "_Requests", kv: list[float]) -> None:
        self.spec = spec
        self.r = req
        self.kv = kv
        """KV bytes each request reserves on this replica."""
        self.now = 0.0
        self.step = 0
        self.waiting: deque[int] = deque()
        self.prefill: deque[list[int]] = deque()  # [request, prompt tokens left, tokens done]
        self.finishing: dict[int, list[int]] = {}
        self.slots = 0
        self.n_dec = 0
        self.ctx_sum = 0
        self.kv_used = 0.0
        self.pending_tokens = 0
        """Prompt tokens waiting or not yet prefilled."""
        self.busy_s = 0.0
        self.batch_time = 0.0  # integral of (decoding + prefilling) requests over busy time

    @property
    def load(self) -> float:
        """Outstanding work for the least-loaded router (see the module docstring)."""
        return ((self.slots + len(self.waiting)) / self.spec.max_batch
                + self.pending_tokens / self.spec.timer.chunk_tokens)

    def enqueue(self, i: int, t: float) -> None:
        if not (self.waiting or self.slots):
            self.now = max(self.now, t)
        self.r.queued_full[i] = self.slots + len(self.waiting) >= self.spec.max_batch
        self.waiting.append(i)
        self.pending_tokens += self.r.new[i]

    def advance(self, t_limit: float) -> None:
        """Run every step that starts before ``t_limit`` (``inf``: until idle)."""
        r, spec = self.r, self.spec
        timer, cap, chunk = spec.timer, spec.max_batch, spec.timer.chunk_tokens
        budget_kv = spec.kv_budget_bytes
        waiting, prefill, finishing = self.waiting, self.prefill, self.finishing
        new, cached, isl, osl, kvb = r.new, r.cached, r.isl, r.osl, self.kv
        admit, first, finish = r.admit, r.first, r.finish
        grow = spec.tokens_per_step
        one = grow == 1.0
        now, step, n_dec, ctx_sum, slots, kv_used = self.now, self.step, self.n_dec, self.ctx_sum, self.slots, self.kv_used
        busy, bt = self.busy_s, self.batch_time
        while now < t_limit and (slots or waiting):
            while waiting and slots < cap and kv_used + kvb[waiting[0]] <= budget_kv:
                i = waiting.popleft()
                admit[i] = now
                slots += 1
                kv_used += kvb[i]
                if new[i] == 0:  # prefilled elsewhere (a disaggregated decode pool): decodes from this step
                    n_dec += 1
                    ctx_sum += isl[i] + 1
                    finishing.setdefault(step + (osl[i] - 1 if one else _steps_for(osl[i] - 1, grow)), []).append(i)
                    continue
                prefill.append([i, new[i], cached[i]])
            if not slots:  # the head request alone exceeds the KV budget: it can never run
                i = waiting.popleft()
                admit[i] = first[i] = finish[i] = math.inf
                self.pending_tokens -= new[i]
                continue
            left, p, pairs, done = chunk, 0, 0.0, 0
            for e in prefill:
                if left == 0:
                    break
                take = e[1] if e[1] < left else left
                pairs += timer.pairs(take, e[2])
                e[1] -= take
                e[2] += take
                left -= take
                p += take
                if e[1] == 0:
                    done += 1
            dt = timer.step_ms(n_dec, ctx_sum / n_dec if n_dec else 1.0, p, pairs) / 1e3
            self.pending_tokens -= p
            now += dt
            busy += dt
            bt += dt * slots
            step += 1
            ctx_sum += n_dec if one else n_dec * grow
            fin = finishing.pop(step, None)
            if fin:
                for i in fin:
                    finish[i] = now
                    ctx_sum -= isl[i] + osl[i] if one else isl[i] + 1 + grow * _steps_for(osl[i] - 1, grow)
                    kv_used -= kvb[i]
                n_dec -= len(fin)
                slots -= len(fin)
            for _ in range(done):
                i = prefill.popleft()[0]
                first[i] = now
                if osl[i] <= 1:
                    finish[i] = now
                    slots -= 1
                    kv_used -= kvb[i]
                else:
                    n_dec += 1
                    ctx_sum += isl[i] + 1
                    finishing.setdefault(step + (osl[i] - 1 if one else _steps_for(osl[i] - 1, grow)), []).append(i)
        if not (slots or waiting):
            kv_used = 0.0  # clear float drift when idle
            ctx_sum = 0
        self.now, self.step, self.n_dec, self.ctx_sum, self.slots, self.kv_used = now, step, n_dec, ctx_sum, slots, kv_used
        self.busy_s, self.batch_time = busy, bt


class _Requests:
    """Per-request inputs and outcomes as Python lists (fast scalar access in the step loop)."""

    def __init__(self, w: Workload) -> None:
        isl = np.asarray(w.input_tokens, dtype=np.int64)
        cached = np.floor(isl * w.prefix_hit_rate).astype(np.int64)
        self.isl = isl.tolist()
        self.osl = np.asarray(w.output_tokens, dtype=np.int64).tolist()
        self.cached = cached.tolist()
        self.new = np.maximum(isl - cached, 1).tolist()
        n = w.requests
        self.admit = [math.nan] * n
        self.first = [math.nan] * n
        self.finish = [math.nan] * n
        self.queued_full = [False] * n


# -- results ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Percentiles:
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float

    @staticmethod
    def of(x_s: np.ndarray) -> "Percentiles":
        x = x_s[np.isfinite(x_s)] * 1e3
        if not x.size:
            return Percentiles(math.nan, math.nan, math.nan, math.nan)
        p = np.percentile(x, [50, 90, 99])
        return Percentiles(float(p[0]), float(p[1]), float(p[2]), float(x.mean()))


@dataclass(frozen=True)
class TargetCheck:
    metric: str
    max_ms: float
    percentile: float
    within: float
    """Share of requests within ``max_ms``."""
    simulated_ms: float
    """The simulated latency at the target's percentile."""
    met: bool


@dataclass(frozen=True)
class SimResult:
    """Latency percentiles of a replay, per-request arrays for further analysis."""

    label: str
    router: str
    replicas: int
    requests: int
    offered_rps: float
    ttft: Percentiles
    tpot: Percentiles
    e2e: Percentiles
    queue_wait: Percentiles
    p_wait_for_slot: float
    """Share of requests that found every slot of their replica taken (or a queue) on arrival."""
    mean_batch: float
    """Time-weighted mean of requests in flight per busy replica."""
    utilisation: float
    """Share of the replay's span that replicas were running steps (mean over replicas)."""
    unservable: int
    """Requests whose KV cache alone exceeds a replica's budget (never run)."""
    steps: int = 0
    """Engine steps run, all replicas together."""
    targets: tuple[TargetCheck, ...] = ()
    ttft_s: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0))
    tpot_s: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0))
    e2e_s: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0))
    wait_s: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0))
    replica: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0, dtype=int))
    """The replica (index into the replayed list) each request was sent to."""

    @property
    def meets(self) -> bool | None:
        return all(t.met for t in self.targets) if self.targets else None

    def to_dict(self) -> dict[str, Any]:
        def clean(v: Any) -> Any:
            return None if isinstance(v, float) and not math.isfinite(v) else v

        def pct(p: Percentiles) -> dict[str, Any]:
            return {k: clean(v) for k, v in p.__dict__.items()}

        return {
            "label": self.label, "router": self.router, "replicas": self.replicas,
            "requests": self.requests, "offered_rps": clean(self.offered_rps),
            "ttft": pct(self.ttft), "tpot": pct(self.tpot), "e2e": pct(self.e2e),
            "queue_wait": pct(self.queue_wait), "p_wait_for_slot": self.p_wait_for_slot,
            "mean_batch": self.mean_batch, "utilisation": self.utilisation,
            "unservable": self.unservable, "steps": self.steps,
            "targets": [{k: clean(v) for k, v in t.__dict__.items()} for t in self.targets],
            "meets_targets": self.meets,
        }


def _checks(slo: Slo | None, metrics: dict[str, np.ndarray]) -> tuple[TargetCheck, ...]:
    if slo is None:
        return ()
    out = []
    for name in ("ttft", "tpot", "e2e"):
        tgt = getattr(slo, name)
        if tgt is None:
            continue
        x = metrics[name]
        x = x[~np.isnan(x)] * 1e3  # inf (never served) counts as a miss
        if not x.size:
            continue
        within = float(np.mean(x <= tgt.max_ms))
        at = float(np.percentile(x, tgt.percentile))
        out.append(TargetCheck(name, tgt.max_ms, tgt.percentile, within, at, at <= tgt.max_ms))
    return tuple(out)


def route(reps: list[_Replica], order: Sequence[int], times: Sequence[float], router: Router) -> list[int]:
    """Enqueue requests ``order`` (at ``times``, non-decreasing) on ``reps`` by ``router`` and run
    the replicas to the end: the replica (index into ``reps``) of each."""
    out = []
    n = len(reps)
    wrr = WeightedRoundRobin([r.spec.weight for r in reps]) if router == "weighted" else None
    for k, (i, t) in enumerate(zip(order, times)):
        if router == "round-robin":
            j = k % n
            reps[j].advance(t)
        elif wrr is not None:
            j = wrr.pick()
            reps[j].advance(t)
        else:
            best, j = math.inf, 0
            for jj, rep in enumerate(reps):
                if rep.now < t:  # else its running step straddles t: nothing to advance
                    rep.advance(t)
                load = rep.load
                if load < best:
                    best, j = load, jj
        reps[j].enqueue(i, t)
        out.append(j)
    for rep in reps:
        rep.advance(math.inf)
    return out


def simulate(replicas: Sequence[ReplicaSpec], workload: Workload, router: Router = "least-loaded",
             slo: Slo | None = None) -> SimResult:
    """Replay ``workload`` through ``replicas`` behind ``router``; percentiles and target shares."""
    if router not in ROUTERS:
        raise InputError(f"--router: expected one of {', '.join(ROUTERS)}, got {router!r}")
    if not replicas:
        raise InputError("no replicas to simulate")
    if workload.requests == 0:
        raise InputError("no requests to simulate")
    total = np.asarray(workload.input_tokens) + np.asarray(workload.output_tokens)
    reqs = _Requests(workload)
    kv_by_spec: dict[int, list[float]] = {}  # replicas of one deployment share one list
    reps = []
    for s in replicas:
        if id(s) not in kv_by_spec:
            kv_by_spec[id(s)] = s.kv_bytes(total).tolist()
        reps.append(_Replica(s, reqs, kv_by_spec[id(s)]))
    arrivals = np.asarray(workload.arrival_s, dtype=float).tolist()
    n_rep = len(reps)
    where = route(reps, range(workload.requests), arrivals, router)
    arr = np.asarray(arrivals)
    first, finish, admit = (np.asarray(x, dtype=float) for x in (reqs.first, reqs.finish, reqs.admit))
    osl = np.asarray(reqs.osl)
    ttft = first - arr
    e2e = finish - arr
    with np.errstate(invalid="ignore", divide="ignore"):
        tpot = np.where(osl > 1, (finish - first) / np.maximum(osl - 1, 1), np.nan)
    wait = admit - arr
    span = max(max(r.now for r in reps) - arr[0], 1e-12)
    busy = sum(r.busy_s for r in reps)
    return SimResult(
        label=workload.label, router=router, replicas=n_rep, requests=workload.requests,
        offered_rps=workload.mean_rps, ttft=Percentiles.of(ttft), tpot=Percentiles.of(tpot),
        e2e=Percentiles.of(e2e), queue_wait=Percentiles.of(wait),
        p_wait_for_slot=float(np.mean(reqs.queued_full)),
        mean_batch=sum(r.batch_time for r in reps) / busy if busy > 0 else 0.0,
        utilisation=busy / (n_rep * span), unservable=int(np.sum(np.isinf(admit))),
        steps=sum(r.step for r in reps),
        targets=_checks(slo, {"ttft": ttft, "tpot": tpot, "e2e": e2e}),
        ttft_s=ttft, tpot_s=tpot, e2e_s=e2e, wait_s=wait, replica=np.asarray(where, dtype=int),
    )


# -- entry points for the CLI -----------------------------------------------------------------

def load_plan_json(path: str) -> dict[str, Any]:
    """A plan as ``fleetplan solve --json`` / ``query --json`` print it."""
    import json
    from pathlib import Path

    from solver.loading import read_text

    try:
        data = json.loads(read_text(Path(path), "a plan JSON file"))
    except json.JSONDecodeError as exc:
        raise InputError(f"not JSON (line {exc.lineno}): {exc.msg}", where=str(path)) from None
    if not isinstance(data, dict) or "deployments" not in data:
        raise InputError("expected the JSON of `fleetplan solve --json` (no 'deployments')", where=str(path))
    return data


def build_workload(trace: Trace | None, poisson_rps: float | None, duration_s: float, seed: int,
                   scale: float | None, scale_to_rps: float | None,
                   input_tokens: TokenLengths | None, output_tokens: TokenLengths | None,
                   prefix_hit_rate: float = 0.0, cv: float = 1.0) -> Workload:
    """The requests of a replay: a trace (rate scaled by ``scale``, or to a mean of
    ``scale_to_rps``), or Poisson arrivals with lengths from the trace if one is given, else
    from the problem's percentiles."""
    if poisson_rps is not None:
        if trace is None and (input_tokens is None or output_tokens is None):
            raise InputError("--poisson: needs lengths, from --problem or --trace")
        return poisson_workload(poisson_rps, duration_s, input_tokens or TokenLengths(p50=1, p90=1, p99=1),
                                output_tokens or TokenLengths(p50=1, p90=1, p99=1), seed,
                                prefix_hit_rate, lengths_from=trace, cv=cv)
    if trace is None:
        raise InputError("give --trace TRACE.csv or --poisson RATE")
    if cv != 1.0:
        raise InputError("--cv: applies to --poisson arrivals (a trace keeps its own)")
    if scale is not None and scale_to_rps is not None:
        raise InputError("--scale and --scale-to: give one")
    if scale_to_rps is not None:
        if not (scale_to_rps > 0 and math.isfinite(scale_to_rps)):
            raise InputError(f"--scale-to: must be > 0 req/s and finite, got {scale_to_rps:g}")
        mean = trace.requests / trace.span_s if trace.span_s > 0 else float("nan")
        if not mean > 0:
            raise InputError("--scale-to: the trace spans no time")
        scale = scale_to_rps / mean
    return trace_workload(trace, 1.0 if scale is None else scale, prefix_hit_rate)


def replay(plan: dict[str, Any], cat: Catalog, workload: Workload, model: str | None = None,
           router: Router | Literal["plan"] = PLAN_ROUTER, slo: Slo | None = None,
           demand: ModelDemand | None = None) -> SimResult:
    """Simulate ``workload`` on the replicas a plan gives one of its models (``demand``: the
    problem's entry for it, whose LoRA adapters the replicas carry); disaggregated deployments
    through their pools (:mod:`solver.simulate_disagg`). ``router``: one of :data:`ROUTERS`, or
    ``plan`` (:data:`PLAN_ROUTER`; the result's ``router`` then reads ``plan: <the rule used>``).
    A model with both kinds of deployment names each side's rule: ``<rule> (aggregated), <rule>
    (disaggregated)``."""
    if router == PLAN_ROUTER:
        res = _replay(plan, cat, workload, model, "weighted", slo, demand, "least-loaded")
        return replace(res, router=f"{PLAN_ROUTER}: {res.router}")
    return _replay(plan, cat, workload, model, router, slo, demand, router)


def _replay(plan: dict[str, Any], cat: Catalog, workload: Workload, model: str | None, router: Router,
            slo: Slo | None, demand: ModelDemand | None, dis_router: Router) -> SimResult:
    """:func:`replay` with ``router`` for aggregated deployments and ``dis_router`` for
    disaggregated ones."""
    name, deps = model_deployments(plan, model)
    dis = [(k, d) for k, d in deps if d.get("serving_mode") == "disaggregated"]
    if dis:
        from solver.simulate_disagg import merge_results, part, replay_disaggregated, split_by_share

        if len(dis) == len(deps):
            return replay_disaggregated(dis, cat, workload, dis_router, slo, demand)
        # both modes: each request to one side, in proportion to the plan's load shares
        share = _load_share(dis, deps)
        to_dis = split_by_share(workload, share)
        agg_plan = {**plan, "deployments": [d for _, d in deps if d.get("serving_mode") != "disaggregated"]}
        parts = []
        if to_dis.any():
            parts.append((to_dis, replay_disaggregated(dis, cat, part(workload, to_dis), dis_router, slo, demand)))
        if (~to_dis).any():
            parts.append((~to_dis, _replay(agg_plan, cat, part(workload, ~to_dis), name, router, slo, demand,
                                           dis_router)))
        res = merge_results(parts, workload, slo)
        if len(parts) == 2 and router != dis_router:  # each side by its own rule: name both
            res = replace(res, router=f"{router} (aggregated), {dis_router} (disaggregated)")
        return res
    longest = int(np.max(np.asarray(workload.input_tokens) + np.asarray(workload.output_tokens)))
    return simulate(plan_replicas(plan, cat, model, longest, demand), workload, router, slo)


def _load_share(some: list[tuple[int, dict[str, Any]]], every: list[tuple[int, dict[str, Any]]]) -> float:
    """The share of a model's planned load (``load_rps``) on deployments ``some`` of ``every``."""
    try:
        load = {k: float(d["load_rps"]) for k, d in every}
    except (KeyError, TypeError, ValueError):
        raise InputError("PLAN: a model with aggregated and disaggregated deployments needs each "
                         "deployment's load_rps (to split the requests)") from None
    total = sum(load.values())
    if not (total > 0 and all(v >= 0 for v in load.values())):
        raise InputError("PLAN: load_rps: expected >= 0 per deployment and > 0 in all")
    return sum(load[k] for k, _ in some) / total
