"""Percentile latencies of one replica under load: a continuous-batching model read from step
tables of the cost model (issue 12 item 2), and the zero-load operating point.

Two views per (shape, batch cap), both from the same cost-model code on one shape or on stacked
shapes (:mod:`solver.costmodel.stacked`):

- the zero-wait **operating point** at each target's percentile (:class:`SloView`
  ``ttft0_ms``/``tpot_ms``/``e2e0_ms``/``service_s``: the prefill of the q-th percentile prompt
  beside a full batch, the full batch's step): the floors a candidate reports and what flags a
  target as missed at any load;
- the **latencies under load** from :class:`StepTimes` (below): what sets the capacity and the
  latencies at a load.

For a replica of shape ``terms`` with batch cap ``B`` (slots) and Poisson arrivals ``lam``, the
engine runs continuous batching with a prefill-token budget of ``C`` prompt tokens per step
(chunked prefill, first come first served), as :mod:`solver.simulate` replays it:

- **Step times at load.** Step times are tabulated over the decoding batch ``b`` (decode-only
  ``Td(b)``, with a full chunk ``Tc(b)``, from the cost model at :data:`STEP_GRID`) and
  interpolated linearly. The mean step ``tau`` solves ``tau = (1 - f) Td(b) + f Tc(b)`` with
  ``b = min(B, lam E[osl] tau)`` (Little) and ``f = min(1, lam E[isl_new] tau / C)`` (share of
  steps carrying a chunk), exactly (:func:`mean_step_ms`).
- **TTFT_q(lam)** = the q-quantile over the prompt-length mix of
  ``overhead + R + Wp + Ws + own(isl_new)``: ``R`` the residual of the running step (uniform over
  a length-biased step, zero when the replica is idle, probability ``exp(-lam s)``); ``Wp`` the wait
  for the prompt tokens ahead, an M/G/1 queue whose server handles ``C`` tokens per chunk step
  (utilisation ``rho_p = lam E[isl_new] Tc / C``, Pollaczek-Khinchine mean, exponential tail);
  ``Ws`` the wait for one of ``B`` slots (Erlang C, M/M/B, with the stay ``s`` at the load's
  mean step, see :mod:`solver.queueing`); ``own`` the request's own chunks. This replaces the
  full-batch Erlang C view, in which the tail came only from waiting for a slot: replays show
  the tail comes from the prefill budget, the running step and long prompts below the knee.
- **TPOT_q(lam)** = the q-quantile over the output-length mix of a request's mean step: ``n``
  outputs average ``n - 1`` steps of mean ``tau`` whose spread comes from the prompt tokens each
  step carries (chunk interference; a compound Poisson count of prompts per step, at most a
  Bernoulli of full chunks), normal by the central limit theorem. Short outputs see the widest
  TPOT, so the bound is over the mix rather than at the p99 request; TPOT grows with load and
  can set the capacity.
- ``E2E_q(lam) = TTFT_q(lam) + (OSL_q - 1) x TPOT_q(lam)`` (a sum of quantiles bounds the
  quantile of the sum from above for these co-monotone parts);
- the slot load is ``lam x stay_full / B`` with the stay while every slot is busy (steps at the
  full batch, where a queue for slots must drain): above 1 a queue that forms never empties.

Capacity at the SLO is the first ``lam`` at which a target is missed, below the slot load
``queueing.RHO_MAX`` (closed form, :func:`slot_capacity`): a scan of loads, then regula falsi
on the targets' tails, on every row at once (:func:`capacity_at_slo`); for candidate tables only
the rows that can be the best of their shape's run are finished. A target that the replica
misses even at zero load is reported as violated; the capacity is then computed against the
other targets, so that the optimiser can tell *which* target makes a candidate unusable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from solver.costmodel import ShapeTerms, decode_step, max_concurrency
from solver.costmodel import operating_point as plain_operating_point
from solver.costmodel.compute import attention_pair_layers
from solver.costmodel.speculative import Speculation, cycle_ms, max_concurrency_spec, speculative_operating_point
from solver.problem import ModelDemand, TokenLengths
from solver import scaling
from solver.queueing import RHO_MAX, erlang_c_rows

BATCH_GRID = (1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024)
"""Batch caps (max concurrent sequences per replica) considered: a 1.5x/2x ladder; engines
rarely run more than 1024 sequences per replica."""



def quantile_tokens(lengths: TokenLengths, u: np.ndarray) -> np.ndarray:
    """Token length at quantile ``u`` (0-1) of lengths given as p50/p90/p99: log-linear between
    (0.5, p50), (0.9, p90), (0.99, p99), continued below the median with the 50-90 log-slope
    (floored at 1 token) and flat at p99 above it (the planner reserves memory for p99 lengths)."""
    p50, p90, p99 = (float(x) for x in (lengths.p50, lengths.p90, lengths.p99))  # type: ignore[arg-type]
    lo = max(1.0, p50 * (p50 / p90) ** (0.5 / 0.4))
    logq = np.interp(u, [0.0, 0.5, 0.9, 0.99, 1.0], np.log([lo, p50, p90, p99, p99]))
    return np.maximum(1, np.rint(np.exp(logq)))


MIX_EDGES = np.array([0.0, 0.25, 0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995, 1.0])
"""Quantile bins a percentile-given length distribution is discretised into (one point at each
bin's middle quantile, weighted by its width): finer in the tail, which sets the p99 latencies,
than equal bins would be with the same work."""


def length_mix(lengths: TokenLengths, points: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A length distribution as (tokens, weights): a histogram's bins, or the middle quantiles
    of :data:`MIX_EDGES` bins of :func:`quantile_tokens` (``points``: that many equal bins
    instead)."""
    if lengths.histogram is not None:
        tok = np.array([b.tokens for b in lengths.histogram], dtype=float)
        w = np.array([b.weight for b in lengths.histogram], dtype=float)
        return tok, w / w.sum()
    edges = MIX_EDGES if points is None else np.linspace(0.0, 1.0, points + 1)
    u = (edges[:-1] + edges[1:]) / 2
    return quantile_tokens(lengths, u).astype(float), np.diff(edges)


@dataclass(frozen=True)
class PromptMix:
    """New (uncached) prompt tokens per request and output tokens, each as (tokens, weights)."""

    new_tokens: np.ndarray
    weights: np.ndarray
    out_tokens: np.ndarray
    out_weights: np.ndarray

    @staticmethod
    def of(d: ModelDemand) -> "PromptMix":
        t = d.traffic
        tok, w = length_mix(t.input_tokens)
        new = np.maximum(tok - np.floor(tok * t.prefix_cache_hit_rate), 1.0)
        otok, ow = length_mix(t.output_tokens)
        return PromptMix(new, w, otok, ow)

    @property
    def mean(self) -> float:
        return float(self.weights @ self.new_tokens)

    @property
    def second_moment(self) -> float:
        return float(self.weights @ self.new_tokens**2)

    @property
    def osl_mean(self) -> float:
        return float(self.out_weights @ self.out_tokens)


STEP_GRID = np.array([0.0, 1 / 16, 1 / 4, 1 / 2, 1.0])
"""Decoding batches the step times are tabulated at, as ``1 + (cap - 1) x g``: the step time is
far from linear in the batch (weights dominate a small batch), so a chord from 1 to the cap would
over-state it in between."""


@dataclass(frozen=True)
class StepTimes:
    """Engine step times (ms) per batch cap, tabulated over the decoding batch ``b`` at
    ``1 + (cap - 1) x STEP_GRID`` and interpolated linearly: decode-only steps and steps with a
    full prompt chunk; ``chunk`` prompt tokens per step (the prefill budget), the per-request
    overhead (ms) and the output tokens a decoding sequence gains per step (1; with speculative
    decoding a step is a draft-and-verify cycle and emits the expected accepted tokens). Rows
    are batch caps."""

    chunk: np.ndarray
    overhead_ms: np.ndarray
    cap: np.ndarray
    decode_ms: np.ndarray
    """Shape (caps, len(STEP_GRID))."""
    chunk_ms: np.ndarray
    tokens: np.ndarray
    """Output tokens per sequence and step (expected; 1 without speculative decoding)."""
    own_scale: np.ndarray | None = None
    """Factor on a request's own prefill (overhead and own chunks): a calibration's measured
    TTFT tail (:func:`solver.uncertainty.tail_adjust`); 1 (None: all ones) without one."""

    def __post_init__(self) -> None:
        if self.own_scale is None:
            object.__setattr__(self, "own_scale", np.ones(np.shape(self.cap)))

    def _at(self, table: np.ndarray, b: np.ndarray) -> np.ndarray:
        u = np.minimum(np.maximum((np.asarray(b, dtype=float) - 1) / np.maximum(self.cap - 1, 1), 0.0), 1.0)
        j = np.minimum(np.maximum(np.searchsorted(STEP_GRID, u, side="right") - 1, 0), len(STEP_GRID) - 2)
        g0, g1 = STEP_GRID[j], STEP_GRID[j + 1]
        rows = np.arange(table.shape[0])
        v0, v1 = table[rows, j], table[rows, j + 1]
        return v0 + (u - g0) / (g1 - g0) * (v1 - v0)

    def both_at(self, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(:meth:`decode_at`, :meth:`chunk_at`) at ``b`` (one per row, or a row of points per
        row: shape (rows, k)), sharing the grid look-up."""
        b = np.asarray(b, dtype=float)
        cap = self.cap if b.ndim == 1 else self.cap[:, None]
        u = np.minimum(np.maximum((b - 1) / np.maximum(cap - 1, 1), 0.0), 1.0)
        j = np.minimum(np.maximum(np.searchsorted(STEP_GRID, u, side="right") - 1, 0), len(STEP_GRID) - 2)
        g0 = STEP_GRID[j]
        w = (u - g0) / (STEP_GRID[j + 1] - g0)
        rows = np.arange(self.decode_ms.shape[0])
        if b.ndim == 2:
            rows = rows[:, None]
        d0, c0 = self.decode_ms[rows, j], self.chunk_ms[rows, j]
        return d0 + w * (self.decode_ms[rows, j + 1] - d0), c0 + w * (self.chunk_ms[rows, j + 1] - c0)

    def decode_at(self, b: np.ndarray) -> np.ndarray:
        """Decode-only step (ms) at decoding batch ``b`` per row."""
        return self._at(self.decode_ms, b)

    def chunk_at(self, b: np.ndarray) -> np.ndarray:
        """Step with a full prompt chunk (ms) at decoding batch ``b`` per row."""
        return self._at(self.chunk_ms, b)

    def at(self, i: int) -> tuple[float, ...]:
        """Row ``i`` as plain floats (what a candidate keeps)."""
        return (float(self.chunk[i]), float(self.overhead_ms[i]), float(self.cap[i]), float(self.tokens[i]),
                float(self.own_scale[i]), *map(float, self.decode_ms[i]), *map(float, self.chunk_ms[i]))

    @staticmethod
    def of(row: tuple[float, ...]) -> "StepTimes":
        """The one-row table :meth:`at` wrote."""
        k = (len(row) - 5) // 2
        chunk, overhead, cap, tokens, own = (np.array([x], dtype=float) for x in row[:5])
        return StepTimes(chunk, overhead, cap, np.array([row[5:5 + k]], dtype=float),
                         np.array([row[5 + k:]], dtype=float), tokens, own)

    def rows(self, idx: np.ndarray) -> "StepTimes":
        """The table of rows ``idx``."""
        return StepTimes(self.chunk[idx], self.overhead_ms[idx], self.cap[idx], self.decode_ms[idx],
                         self.chunk_ms[idx], self.tokens[idx], self.own_scale[idx])

    def scaled(self, multiplier: float | np.ndarray) -> "StepTimes":
        """Every step time and the per-request overhead times ``multiplier`` (``--confidence``;
        a scalar or one per row)."""
        m = np.asarray(multiplier, dtype=float)
        m2 = m[:, None] if m.ndim else m
        return replace(self, overhead_ms=self.overhead_ms * m, decode_ms=self.decode_ms * m2,
                       chunk_ms=self.chunk_ms * m2)

    def own_scaled(self, factor: float) -> "StepTimes":
        """The request's own prefill times ``factor`` (a calibration's TTFT tail)."""
        return replace(self, own_scale=self.own_scale * factor)

    @staticmethod
    def concat(parts: "list[StepTimes]") -> "StepTimes":
        return StepTimes(*(np.concatenate([getattr(p, f) for p in parts]) for f in StepTimes.__dataclass_fields__))


def step_times(terms: ShapeTerms, batch: np.ndarray, d: ModelDemand,
               spec: Speculation | None = None) -> StepTimes:
    """Tabulate :class:`StepTimes` from :func:`~solver.costmodel.decode_step` per batch cap at
    the mean decode context (mean prompt + half the mean output); a chunk carries the prompt
    mix's mean attention pairs per token. With ``spec`` a step is one speculative cycle
    (:func:`~solver.costmodel.speculative.cycle_ms`: the draft's steps and the target's
    verification, both carrying the chunk when there is one), emitting
    ``spec.expected_tokens`` per sequence. ``terms`` carry whatever the shape's evaluation put
    in them (calibration, LoRA adapters), so the tables do too. ``terms`` may be stacked (one
    row per batch cap, :mod:`solver.costmodel.stacked`): the grid runs along a leading axis, so
    one call of the cost model fills every row."""
    batch = np.asarray(batch, dtype=float)
    t = d.traffic
    ctx = float(t.input_tokens.mean()) + float(t.output_tokens.mean()) / 2
    c = float(terms.prefill_chunk_tokens)
    mix = PromptMix.of(d)
    tok, _ = length_mix(t.input_tokens)
    cached = tok - mix.new_tokens

    def chunk_pairs(tm: ShapeTerms) -> np.ndarray:  # a full chunk of the mix's prompts, per row
        pairs = np.asarray(attention_pair_layers(tm, mix.new_tokens[:, None], cached[:, None]), dtype=float)
        return c * (mix.weights @ np.broadcast_to(pairs, (len(mix.weights), pairs.shape[-1]))) / mix.mean

    b = (1 + (batch[None, :] - 1) * STEP_GRID[:, None])  # (grid, caps): rows on the last axis
    full = np.ones_like(batch)
    if spec is None:
        dec = decode_step(terms, b, ctx).total_ms
        chk = decode_step(terms, b, ctx, c, chunk_pairs(terms)).total_ms
        tokens = full
    else:
        draft_pairs = chunk_pairs(spec.draft if spec.draft is not None else terms)
        dec = cycle_ms(terms, spec, b, ctx)
        chk = cycle_ms(terms, spec, b, ctx, c, chunk_pairs(terms), draft_pairs)
        tokens = full * spec.expected_tokens
    shape = (len(STEP_GRID), len(batch))
    dec = np.broadcast_to(np.asarray(dec, dtype=float), shape).T.copy()
    chk = np.broadcast_to(np.asarray(chk, dtype=float), shape).T.copy()
    return StepTimes(full * c, full * terms.request_overhead_s * 1e3, batch, dec, chk, tokens, full.copy())


@dataclass(frozen=True)
class LoadState:
    """A replica at arrival rate ``lam`` (arrays per batch cap): mean step and decoding batch,
    chunk-step time, prefill-queue utilisation, mean wait and tail rate, slot stay and Erlang C."""

    tau_ms: np.ndarray
    batch: np.ndarray
    chunk_step_ms: np.ndarray
    decode_step_ms: np.ndarray
    chunk_share: np.ndarray
    rho_prefill: np.ndarray
    p_wait_prefill: np.ndarray
    theta_prefill: np.ndarray
    stay_ms: np.ndarray
    stay_full_ms: np.ndarray
    """Stay in a slot while every slot is busy (steps at the full batch): ``B / stay_full`` is
    the most the slots can serve, whatever the mean batch."""
    p_wait_slot: np.ndarray
    theta_slot: np.ndarray
    p_idle: np.ndarray
    residual_ms: np.ndarray
    step_sd_ms: np.ndarray
    """Standard deviation of one step's time from the prompt tokens it carries (a compound
    Poisson count of ``lam tau`` prompts per step, at most a Bernoulli of full chunks), amplified
    by ``1 / (1 - lam E[isl] (Tc - Td) / C)`` since a window with more prompt work lasts longer."""
    tokens: np.ndarray
    """Output tokens per sequence and step (:attr:`StepTimes.tokens`)."""


def mean_step_ms(lam_per_ms: np.ndarray, cap: np.ndarray, st: StepTimes, eo: np.ndarray | float,
                 ei: float) -> np.ndarray:
    """The least fixed point ``tau >= Td(1)`` of ``tau = g(tau) = Td(b) + f (Tc(b) - Td(b))``
    with ``b = min(B, lam eo tau)`` and ``f = min(1, lam ei tau / C)`` (where plain iteration
    from ``Td(1)`` converges, slowly near the slot bound), solved exactly: between the
    breakpoints (``b`` at a table point, ``f`` reaching 1) ``g`` is a quadratic in ``tau``, so
    the first interval where ``g(tau) - tau`` turns non-positive holds the root, found from
    ``g`` at its ends and middle. A root lies below ``Tc(B)`` (no step is longer)."""
    lam = np.asarray(lam_per_ms, dtype=float)
    c = st.chunk
    tau0 = st.decode_ms[:, 0]  # Td(1)
    top = np.maximum(np.max(st.chunk_ms, axis=1), np.max(st.decode_ms, axis=1))
    lb, kf = lam * eo, lam * ei / c
    with np.errstate(divide="ignore", invalid="ignore"):
        bps = np.concatenate([(1 + (cap[:, None] - 1) * STEP_GRID[None, :]) / lb[:, None],
                              (1 / kf)[:, None]], axis=1)
    bps = np.where(np.isfinite(bps), bps, top[:, None])
    pts = np.sort(np.concatenate([tau0[:, None], np.clip(bps, tau0[:, None], top[:, None]), top[:, None]],
                                 axis=1), axis=1)

    def h(t: np.ndarray) -> np.ndarray:
        td, tc = st.both_at(np.minimum(cap[:, None], lb[:, None] * t))
        return td + np.minimum(1.0, kf[:, None] * t) * (tc - td) - t

    hp = h(pts)
    i = _first_interval(-hp)
    rows = np.arange(len(tau0))
    p0, p1 = pts[rows, i], pts[rows, i + 1]
    hm = h(((p0 + p1) / 2)[:, None])[:, 0]
    return _root_in(p0, p1, -hp[rows, i], -hm, -hp[rows, i + 1], (-hp[:, 1:] >= 0).any(axis=1))


def _first_interval(y: np.ndarray) -> np.ndarray:
    """Per row, the first interval ``[k, k + 1]`` of sorted points whose end value ``y`` is at
    or above 0 (the last interval where there is none)."""
    hit = y[:, 1:] >= 0
    return np.where(hit.any(axis=1), np.argmax(hit, axis=1), y.shape[1] - 2)


def _root_in(p0: np.ndarray, p1: np.ndarray, y0: np.ndarray, ym: np.ndarray, y1: np.ndarray,
             found: np.ndarray) -> np.ndarray:
    """Where a function that is quadratic on ``[p0, p1]`` (values ``y0``, ``ym``, ``y1`` at its
    start, middle and end) first reaches 0 from below; ``p1`` where not ``found``."""
    y0, ym, y1 = -y0, -ym, -y1
    a = 2 * (y1 - 2 * ym + y0)
    bb = y1 - y0 - a
    with np.errstate(divide="ignore", invalid="ignore"):
        disc = np.sqrt(np.maximum(bb * bb - 4 * a * y0, 0.0))
        qq = -0.5 * (bb + np.where(bb >= 0, disc, -disc))
        r1, r2 = qq / a, y0 / qq
        lin = np.where(y1 != y0, y0 / (y0 - y1), 0.0)
    cand = np.where((r1 >= -1e-12) & (r1 <= 1 + 1e-12), r1, np.inf)
    cand = np.minimum(cand, np.where((r2 >= -1e-12) & (r2 <= 1 + 1e-12), r2, np.inf))
    x = np.where(np.isfinite(cand), cand, lin)
    x = np.where(y0 <= 0, 0.0, np.clip(x, 0.0, 1.0))
    x = np.where(found, x, 1.0)
    return p0 + x * (p1 - p0)


def _first_root(pts: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per row, the first ``x`` at which a function that is quadratic between the sorted
    points ``pts`` (rows, k) reaches 0 from below, from its values ``y`` at the points and then
    at the interval middles (rows, 2k - 1); the last point where it stays below 0."""
    k = pts.shape[1]
    yp, ym = y[:, :k], y[:, k:]
    rows = np.arange(pts.shape[0])
    i = _first_interval(yp)
    return _root_in(pts[rows, i], pts[rows, i + 1], yp[rows, i], ym[rows, i], yp[rows, i + 1],
                    (yp[:, 1:] >= 0).any(axis=1))


def mean_tpot_bound(view: "SloView", d: ModelDemand, lam_top: np.ndarray) -> np.ndarray:
    """Largest rate (req/s, at most ``lam_top``) at which the mean step per output token
    ``tau / E`` stays within the TPOT target (``lam_top`` without one): the TPOT quantile at a
    percentile of 50 or more is at least that mean, so this bounds the capacity from above
    (used to skip rows pruning cannot keep, never as a capacity). ``g(tau*)`` with
    ``tau* = E x target`` is quadratic in the rate between breakpoints, like
    :func:`mean_step_ms`; 0 where even the zero-load step exceeds it."""
    tgt = d.slo.tpot
    if tgt is None or tgt.percentile < 50:
        return lam_top
    mix, st = PromptMix.of(d), view.steps
    cap = view.batch.astype(float)
    tau_s = float(tgt.max_ms) * st.tokens
    kb = mix.osl_mean / st.tokens * tau_s / 1e3  # decoding batch per req/s
    kf = mix.mean * tau_s / (1e3 * st.chunk)  # chunk share per req/s
    with np.errstate(divide="ignore"):
        bps = np.concatenate([(1 + (cap[:, None] - 1) * STEP_GRID[None, :]) / kb[:, None], (1 / kf)[:, None]],
                             axis=1)
    top = lam_top[:, None]
    pts = np.sort(np.concatenate([np.zeros_like(top), np.clip(bps, 0.0, top), top], axis=1), axis=1)
    every = np.concatenate([pts, (pts[:, :-1] + pts[:, 1:]) / 2], axis=1)
    td, tc = st.both_at(np.minimum(cap[:, None], kb[:, None] * every))
    y = td + np.minimum(1.0, kf[:, None] * every) * (tc - td) - tau_s[:, None]
    return np.where(y[:, 0] > 0, 0.0, _first_root(pts, y))


def load_state(lam_per_s: np.ndarray, cap: np.ndarray, st: StepTimes, mix: PromptMix) -> LoadState:
    """Solve the mean step at load (:func:`mean_step_ms`) and the queue terms."""
    lam = np.asarray(lam_per_s, dtype=float) / 1e3  # per ms
    cap = np.asarray(cap, dtype=float)
    c = st.chunk
    ei, ei2 = mix.mean, mix.second_moment
    eo = mix.osl_mean / st.tokens  # decode steps per request (fewer with speculative decoding)
    tau = mean_step_ms(lam, cap, st, eo, ei)
    b = np.minimum(cap, lam * eo * tau)
    f = np.minimum(1.0, lam * ei * tau / c)
    td, tc = st.both_at(b)
    rho_p = lam * ei * tc / c
    ok = rho_p < 1
    es2 = ei2 * (tc / c) ** 2
    with np.errstate(divide="ignore", invalid="ignore"):
        wbar = np.where(ok, lam * es2 / (2 * (1 - rho_p)), np.inf)
        theta_p = np.where(ok & (wbar > 0), rho_p / wbar, 1.0)  # per ms
    pw_p = np.where(ok, rho_p, 1.0)
    stay = eo * tau + ei * tc / c
    a = lam * stay
    pw_s = erlang_c_rows(cap, a)
    # a request waits only while every slot is busy, and then the steps run at the full batch:
    # the queue drains at B / stay_full - lam (none at all when lam >= B / stay_full)
    td_b, tc_b = st.decode_ms[:, -1], st.chunk_ms[:, -1]  # at the full batch (grid end)
    with np.errstate(divide="ignore", invalid="ignore"):
        tau_full = td_b / np.maximum(1 - lam * ei * (tc_b - td_b) / c, 1e-9)
        tau_full = np.where(lam * ei * tau_full / c < 1, tau_full, tc_b)
        stay_full = eo * tau_full + ei * tc_b / c
        theta_s = np.where(lam * stay_full < cap, (cap - lam * stay_full) / stay_full, 0.0)
    tr = ((1 - f) * td**2 + f * tc**2) / np.maximum(tau, 1e-12)  # length-biased step
    var_tokens = np.minimum(lam * tau * ei2, f * (1 - f) * c**2)
    # a window holding more prompt tokens also lasts longer, so more arrive in it: the spread
    # of a window's time is amplified by 1 / (1 - lam E[isl] (Tc - Td) / C)
    amplify = 1.0 / np.maximum(1.0 - lam * ei * (tc - td) / c, 1e-3)
    sd = (tc - td) / c * np.sqrt(var_tokens) * amplify
    return LoadState(tau, b, tc, td, f, rho_p, pw_p, theta_p, stay, stay_full, pw_s, theta_s, np.exp(-a), tr, sd,
                     st.tokens)


_RESIDUAL_POINTS = np.array([1 / 6, 1 / 2, 5 / 6])


def own_prefill_ms(new_tokens: np.ndarray, st: StepTimes, ls: LoadState) -> np.ndarray:
    """A prompt's own chunks at load: full chunk steps, then a step with the remainder, whose
    unused budget is filled by later prompts with the prefill queue's utilisation as probability
    (candidates along axis 0, prompts along axis 1)."""
    c = st.chunk[:, None]
    n = np.ceil(new_tokens[None, :] / c)
    rest = new_tokens[None, :] - (n - 1) * c
    td, tc = ls.decode_step_ms[:, None], ls.chunk_step_ms[:, None]
    fill = rest / c + (1 - rest / c) * np.minimum(ls.rho_prefill[:, None], 1.0)
    return (n - 1) * tc + td + fill * (tc - td)


SLOT_WAIT_NEGLIGIBLE = 1e-12
"""Below this probability of finding every slot taken the slot wait is left out of a row's
tail (it changes the tail probability by less than twice that; it saves most of the work below
the knee)."""


def _wait_tail(x: np.ndarray, ls: LoadState) -> np.ndarray:
    """P(Wp + Ws > x) for the prefill-token wait and the slot wait (independent, each zero or
    exponential); x in ms, candidates along axis 0."""
    return _wait_tail_fn(ls)(x)


def _wait_tail_fn(ls: LoadState):  # type: ignore[no-untyped-def]
    """:func:`_wait_tail` as a function of ``x`` alone, the load's terms read once (a
    bisection evaluates it many times at one load)."""
    pp, tp = ls.p_wait_prefill[:, None], ls.theta_prefill[:, None]
    rows = np.flatnonzero(ls.p_wait_slot > SLOT_WAIT_NEGLIGIBLE)
    if rows.size:
        pps, tps = pp[rows], tp[rows]
        ps, ts = ls.p_wait_slot[rows, None], ls.theta_slot[rows, None]
        with np.errstate(over="ignore", invalid="ignore"):
            diff = ts - tps
            close = np.abs(diff) <= 1e-9 * np.maximum(ts, tps)
            denom = np.where(close, 1.0, diff)
            a_, b_, c_ = pps * (1 - ps), ps * (1 - pps), pps * ps
        stuck = (ts <= 0) & (ps > 0)
    full = pp >= 1

    def tail(x: np.ndarray) -> np.ndarray:
        x = np.maximum(x, 0.0)
        with np.errstate(over="ignore", invalid="ignore"):
            out = pp * np.exp(-tp * x)
        if rows.size:
            xs = x[rows]
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                ep, es = np.exp(-tps * xs), np.exp(-ts * xs)
                both = np.where(close, (1 + tps * xs) * ep, (ts * ep - tps * es) / denom)
            out[rows] = a_ * ep + b_ * es + c_ * both
            out[rows] = np.where(stuck, 1.0, out[rows])
        return np.where(full, 1.0, np.minimum(np.maximum(out, 0.0), 1.0))

    return tail


def ttft_tail(t_ms: np.ndarray, ls: LoadState, st: StepTimes, mix: PromptMix) -> np.ndarray:
    """P(TTFT > t_ms) per candidate over the prompt mix and the running step's residual."""
    own = (own_prefill_ms(mix.new_tokens, st, ls) + st.overhead_ms[:, None]) * st.own_scale[:, None]
    return _ttft_tail(t_ms, ls, own, mix)


_RESIDUAL_SHIFTS = np.concatenate([[0.0], _RESIDUAL_POINTS])


def _ttft_tail(t_ms: np.ndarray, ls: LoadState, own: np.ndarray, mix: PromptMix) -> np.ndarray:
    """:func:`ttft_tail` with the prompts' own chunks and overhead (ms) given: the prompt mix
    times the running step's residual (none with the idle probability, else each of
    :data:`_RESIDUAL_POINTS` of it equally), in one array."""
    return _ttft_tail_fn(ls, own, mix)(t_ms)


def _ttft_tail_fn(ls: LoadState, own: np.ndarray, mix: PromptMix):  # type: ignore[no-untyped-def]
    """:func:`_ttft_tail` as a function of ``t_ms`` alone, what does not depend on it computed
    once (a bisection evaluates it many times at one load)."""
    own3 = own[:, None, :]
    shift = _RESIDUAL_SHIFTS[None, :, None] * ls.residual_ms[:, None, None]
    wait = _wait_tail_fn(ls)
    busy = (1 - ls.p_idle) / len(_RESIDUAL_POINTS)

    def tail(t_ms: np.ndarray) -> np.ndarray:
        t = np.asarray(t_ms, dtype=float)[:, None, None]
        x = t - own3 - shift
        n, k, m = x.shape
        g = wait(x.reshape(n, k * m)).reshape(n, k, m)
        g = np.where(x < 0, 1.0, g) @ mix.weights  # (rows, shifts)
        return ls.p_idle * g[:, 0] + busy * g[:, 1:].sum(axis=1)

    return tail


def ttft_quantile_ms(lam_per_s: np.ndarray, cap: np.ndarray, st: StepTimes, mix: PromptMix,
                     q: float) -> np.ndarray:
    """q-quantile (0-1) of TTFT (ms) at ``lam_per_s`` per candidate; ``inf`` when unstable."""
    return _ttft_quantile(load_state(lam_per_s, cap, st, mix), lam_per_s, cap, st, mix, q)


BISECTIONS = 26
"""Halvings of the log-time bracket 1e-3 .. 1e7 ms for a quantile: 3.4e-7 relative."""


def _ttft_quantile(ls: LoadState, lam_per_s: np.ndarray, cap: np.ndarray, st: StepTimes, mix: PromptMix,
                   q: float) -> np.ndarray:
    own = (own_prefill_ms(mix.new_tokens, st, ls) + st.overhead_ms[:, None]) * st.own_scale[:, None]
    if not np.any(lam_per_s):  # zero load: no wait, no running step; a weighted quantile
        order = np.argsort(own, axis=1, kind="stable")
        cum = np.cumsum(mix.weights[order], axis=1)
        k = np.argmax(cum >= q - 1e-12, axis=1)
        return np.take_along_axis(own, order, axis=1)[np.arange(own.shape[0]), k]
    lo = np.full(np.shape(cap), 1e-3)
    hi = np.full(np.shape(cap), 1e7)
    tail = _ttft_tail_fn(ls, own, mix)
    bad = tail(hi) > 1 - q
    for _ in range(BISECTIONS):  # bisection in log time
        mid = np.sqrt(lo * hi)
        over = tail(mid) > 1 - q
        lo = np.where(over, mid, lo)
        hi = np.where(over, hi, mid)
    return np.where(bad, np.inf, hi)


def _normal_tail(z: np.ndarray) -> np.ndarray:
    """P(N(0, 1) > z), from erfc by Abramowitz and Stegun 7.1.26 (absolute error < 1.5e-7)."""
    x = np.abs(z) / math.sqrt(2.0)
    t = 1.0 / (1.0 + 0.3275911 * x)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    half = 0.5 * poly * np.exp(-x * x)
    return np.where(z >= 0, half, 1.0 - half)


def tpot_tail(t_ms: np.ndarray, ls: LoadState, mix: PromptMix) -> np.ndarray:
    """P(TPOT > t_ms) per candidate over the output-length mix: the ``n - 1`` tokens after the
    first of a request with ``n`` outputs take ``m = (n - 1) / E`` steps (``E`` tokens per step,
    1 without speculative decoding), so its TPOT is normal with mean ``tau / E`` and sd
    ``step_sd / (E sqrt(m))``; chunk interference is in the step's spread, so short outputs see
    the widest TPOT. Requests with one output token have no TPOT. (With speculative decoding the
    spread of accepted tokens per cycle is left out.)"""
    return _tpot_tail_fn(ls, mix)(t_ms)


def _tpot_tail_fn(ls: LoadState, mix: PromptMix):  # type: ignore[no-untyped-def]
    """:func:`tpot_tail` as a function of ``t_ms`` alone, what does not depend on it computed
    once (a bisection evaluates it many times at one load)."""
    e = ls.tokens[:, None]
    m = np.maximum(mix.out_tokens - 1, 0)[None, :] / e
    w = np.where(mix.out_tokens > 1, mix.out_weights, 0.0)
    w = w / max(float(w.sum()), 1e-300)
    sd = ls.step_sd_ms[:, None]
    mean = ls.tau_ms[:, None] / e
    spread = sd > 0
    root = np.sqrt(np.maximum(m, 1))

    def tail(t_ms: np.ndarray) -> np.ndarray:
        t = np.asarray(t_ms, dtype=float)[:, None]
        with np.errstate(divide="ignore", invalid="ignore"):
            z = np.where(spread, (t - mean) * e * root / sd, np.where(t >= mean, np.inf, -np.inf))
        return _normal_tail(z) @ w

    return tail


def tpot_quantile_ms(lam_per_s: np.ndarray, cap: np.ndarray, st: StepTimes, mix: PromptMix,
                     q: float) -> np.ndarray:
    """q-quantile (0-1) of TPOT (ms) at ``lam_per_s`` per candidate; ``inf`` when the prefill
    queue is unstable (the steps grow without bound)."""
    return _tpot_quantile(load_state(lam_per_s, cap, st, mix), lam_per_s, cap, mix, q)


def _tpot_quantile(ls: LoadState, lam_per_s: np.ndarray, cap: np.ndarray, mix: PromptMix, q: float) -> np.ndarray:
    if not np.any(lam_per_s):  # zero load: every step decode-only, no spread
        return ls.tau_ms / ls.tokens
    lo = np.full(np.shape(cap), 1e-3)
    hi = np.full(np.shape(cap), 1e7)
    tail = _tpot_tail_fn(ls, mix)
    for _ in range(BISECTIONS):
        mid = np.sqrt(lo * hi)
        over = tail(mid) > 1 - q
        lo = np.where(over, mid, lo)
        hi = np.where(over, hi, mid)
    return np.where(ls.rho_prefill < 1, hi, np.inf)


def e2e_quantile_ms(lam_per_s: np.ndarray, cap: np.ndarray, st: StepTimes, mix: PromptMix,
                    q: float, osl_q: float) -> np.ndarray:
    """q-quantile E2E bound (ms): ``TTFT_q + (OSL_q - 1) x TPOT_q`` (a sum of quantiles of
    co-monotone parts bounds the quantile of the sum from above)."""
    ls = load_state(lam_per_s, cap, st, mix)
    ttft = _ttft_quantile(ls, lam_per_s, cap, st, mix, q)
    return ttft + (osl_q - 1) * _tpot_quantile(ls, lam_per_s, cap, mix, q) if osl_q > 1 else ttft


def _target_quantiles(lam_per_s: np.ndarray, cap: np.ndarray, st: StepTimes, mix: PromptMix,
                      d: ModelDemand) -> tuple[np.ndarray, np.ndarray, np.ndarray, LoadState]:
    """TTFT, TPOT and E2E (ms) at the targets' percentiles (p99 if none), one load state and
    each quantile computed once however many targets share a percentile."""
    lam = np.asarray(lam_per_s, dtype=float)
    ls = load_state(lam, cap, st, mix)
    ttft_q: dict[float, np.ndarray] = {}
    tpot_q: dict[float, np.ndarray] = {}

    def ttft(q: float) -> np.ndarray:
        if q not in ttft_q:
            ttft_q[q] = _ttft_quantile(ls, lam, cap, st, mix, q / 100)
        return ttft_q[q]

    def tpot(q: float) -> np.ndarray:
        if q not in tpot_q:
            tpot_q[q] = _tpot_quantile(ls, lam, cap, mix, q / 100)
        return tpot_q[q]

    q = d.slo.percentile("e2e")
    k = max(d.traffic.output_tokens.percentile(q) - 1, 0)
    e2e = ttft(q) + k * tpot(q) if k > 0 else ttft(q)  # one output token: no TPOT (and no inf x 0)
    return ttft(d.slo.percentile("ttft")), tpot(d.slo.percentile("tpot")), e2e, ls


SCAN_POINTS = np.geomspace(1e-3, 1.0, 8)
"""Loads (fractions of the upper bound) scanned before bisecting: a latency need not grow with
load everywhere (with pipeline stages a lone decoding sequence leaves stages idle, so a prompt
chunk beside one sequence is slower than beside several), and the capacity is the first crossing
of the target, not any."""


def max_rate_within(budget_ms: np.ndarray, lam_hi: np.ndarray, cap: np.ndarray, st: StepTimes,
                    mix: PromptMix, q: float, metric: str = "ttft", osl_q: float = 1.0) -> np.ndarray:
    """Largest arrival rate in ``[0, lam_hi]`` (req/s) below which the q-quantile TTFT
    (``metric`` "tpot": TPOT; "e2e": the E2E bound at ``osl_q`` outputs) stays within
    ``budget_ms``: :func:`_first_miss` on one target's margin (what :func:`capacity_at_slo`
    does for all targets at once)."""
    budget = np.broadcast_to(np.asarray(budget_ms, dtype=float), np.shape(cap))
    lam_hi = np.asarray(lam_hi, dtype=float)
    cap = np.asarray(cap, dtype=float)

    def margin_of(idx: np.ndarray):  # type: ignore[no-untyped-def]
        s_, c_, b_ = st.rows(idx), cap[idx], budget[idx]

        def margin(lam: np.ndarray) -> np.ndarray:
            ls = load_state(lam, c_, s_, mix)
            if metric == "tpot":
                tail = np.where(ls.rho_prefill >= 1, 1.0, tpot_tail(b_, ls, mix))
            else:
                left = b_ - (osl_q - 1) * _tpot_quantile(ls, lam, c_, mix, q) if metric == "e2e" and osl_q > 1 else b_
                ok = np.isfinite(left) & (left > 0)
                tail = np.where(ok, ttft_tail(np.where(ok, left, 1.0), ls, s_, mix), 1.0)
            return np.maximum(np.log(np.maximum(tail, 1e-300)) - math.log(1 - q), -_OUT)

        return margin

    return _first_miss(margin_of, lam_hi)


@dataclass(frozen=True)
class Lengths:
    """Token lengths the percentile model reads from a model's traffic."""

    isl_mean: int
    osl_mean: int
    prefix_hit_rate: float

    @staticmethod
    def of(d: ModelDemand) -> "Lengths":
        t = d.traffic
        return Lengths(
            isl_mean=max(1, math.ceil(t.input_tokens.mean())),
            osl_mean=max(1, math.ceil(t.output_tokens.mean())),
            prefix_hit_rate=t.prefix_cache_hit_rate,
        )


def memory_context_tokens(d: ModelDemand) -> int:
    """Context each slot reserves: p99 prompt + p99 output (a no-eviction scheduler)."""
    t = d.traffic
    return t.input_tokens.percentile(99) + t.output_tokens.percentile(99)


def memory_limit(terms: ShapeTerms, d: ModelDemand, spec: Speculation | None = None) -> int:
    """Largest batch a replica holds at :func:`memory_context_tokens` per slot, after the
    traffic's cached shared prefix (``shared_prefix_tokens``, held once per KV pool) and, with
    ``spec``, the draft's weights and KV."""
    if spec is not None:
        return max_concurrency_spec(terms, spec, memory_context_tokens(d), d.traffic.shared_prefix_tokens)
    n = max_concurrency(terms, memory_context_tokens(d), shared_prefix_tokens=d.traffic.shared_prefix_tokens)
    return int(n) if np.ndim(n) == 0 else n  # type: ignore[return-value]  # stacked terms: one per shape


@dataclass(frozen=True)
class SloView:
    """Load-independent parts of the percentile latencies, one entry per batch cap."""

    batch: np.ndarray
    service_s: np.ndarray
    ttft0_ms: np.ndarray
    """TTFT at zero wait (at the ttft target's percentile, p99 without one)."""
    tpot_ms: np.ndarray
    """TPOT at the tpot target's percentile (p99 when there is no tpot target)."""
    e2e0_ms: np.ndarray
    """E2E at zero wait (at the e2e target's percentile, p99 without one)."""
    max_concurrency: int
    steps: StepTimes | None = None
    """Step tables for the latencies under load (:func:`step_times`; every view
    :func:`slo_view` makes has them)."""

    def rows(self, idx: np.ndarray) -> "SloView":
        """The view of batch-cap rows ``idx``."""
        return SloView(self.batch[idx], self.service_s[idx], self.ttft0_ms[idx], self.tpot_ms[idx],
                       self.e2e0_ms[idx], self.max_concurrency, self.steps.rows(idx))


def slo_view(terms: ShapeTerms, batch: np.ndarray, d: ModelDemand, spec: Speculation | None = None) -> SloView:
    """Evaluate the cost model at every batch cap for the demand's lengths and targets (with
    speculative decoding when ``spec`` is given): the zero-wait operating point at each target's
    percentile (what flags a target no load can meet) and the step tables of the latencies
    under load."""
    batch = np.asarray(batch, dtype=np.int64)
    t, slo = d.traffic, d.slo
    hit = t.prefix_cache_hit_rate

    def operating_point(terms_: ShapeTerms, b: np.ndarray, isl: int, osl: int, h: float):  # type: ignore[no-untyped-def]
        if spec is None:
            return plain_operating_point(terms_, b, isl, osl, h)
        return speculative_operating_point(terms_, spec, b, isl, osl, h, t.shared_prefix_tokens)

    ln = Lengths.of(d)
    mean_op = operating_point(terms, batch, ln.isl_mean, ln.osl_mean, hit)
    service_s = ln.osl_mean * mean_op.tpot_ms / 1e3

    cache: dict[float, object] = {}

    def op_at(q: float):
        if q not in cache:
            cache[q] = operating_point(
                terms, batch, t.input_tokens.percentile(q), t.output_tokens.percentile(q), hit
            )
        return cache[q]

    tpot_ms = op_at(slo.percentile("tpot")).tpot_ms
    ttft0 = op_at(slo.percentile("ttft")).ttft_ms
    q = slo.percentile("e2e")
    op = op_at(q)
    e2e0 = op.ttft_ms + t.output_tokens.percentile(q) * op.tpot_ms
    cap = memory_limit(terms, d, spec)
    return SloView(batch, service_s, ttft0, tpot_ms, e2e0, cap, step_times(terms, batch, d, spec))


@dataclass(frozen=True)
class SloResult:
    """Per batch cap: which targets are missed at zero load, and the capacity at the others."""

    ttft_violated: np.ndarray
    tpot_violated: np.ndarray
    e2e_violated: np.ndarray
    capacity_rps: np.ndarray


def slot_capacity(view: SloView, d: ModelDemand) -> np.ndarray:
    """Largest rate (req/s) per row whose slot load ``lam x stay_full / B`` stays within
    ``RHO_MAX``, in closed form: with ``A = E[osl] Td(B) / E``, ``D = E[isl] Tc(B) / C`` and
    ``k = E[isl] (Tc(B) - Td(B)) / C`` the stay is ``A / (1 - lam k) + D``, so the bound is the
    smaller root of ``D k lam^2 - (A + D + R k) lam + R = 0`` (``R = RHO_MAX B``; ``R / (A + D)``
    when ``k = 0``); where the prefill budget is saturated at that root every step carries a
    chunk and the bound is ``R / (E[osl] Tc(B) / E + D)``. Never above every slot busy at the
    fastest step. It bounds every capacity from above (:func:`capacity_at_slo` starts from it)."""
    mix, st, b = PromptMix.of(d), view.steps, view.batch.astype(float)
    n = b.shape
    lam_hi = b / (mix.osl_mean / st.tokens * st.decode_at(np.ones(n)) / 1e3)
    td, tc = st.decode_at(b) / 1e3, st.chunk_at(b) / 1e3  # s
    eo, ei, c = mix.osl_mean / st.tokens, mix.mean, st.chunk
    a_, d_, k = eo * td, ei * tc / c, ei * (tc - td) / c
    r = RHO_MAX * b
    bq = a_ + d_ + r * k
    with np.errstate(divide="ignore", invalid="ignore"):
        root = np.where(k * d_ > 0, (bq - np.sqrt(np.maximum(bq * bq - 4 * d_ * k * r, 0.0))) / (2 * d_ * k),
                        r / (a_ + d_))
        tau_full = td / np.maximum(1 - root * k, 1e-9)
        lam = np.where(root * ei * tau_full / c < 1, root, r / (eo * tc + d_))
    return np.minimum(lam, lam_hi)


def zero_load_misses(view: SloView, d: ModelDemand) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row: the TTFT, TPOT and E2E targets the zero-wait operating point misses."""
    no = np.zeros(view.batch.shape, dtype=bool)
    zero = {"ttft": view.ttft0_ms, "tpot": view.tpot_ms, "e2e": view.e2e0_ms}
    out = [zero[name] > getattr(d.slo, name).max_ms if getattr(d.slo, name) is not None else no
           for name in ("ttft", "tpot", "e2e")]
    return out[0], out[1], out[2]


def capacity_at_slo(view: SloView, d: ModelDemand, runs: np.ndarray | None = None,
                    protect: np.ndarray | None = None) -> SloResult:
    """Largest arrival rate per replica within every target the replica can meet at all: the
    slot load within ``RHO_MAX`` (:func:`slot_capacity`), and the first load at which the
    TTFT, TPOT or E2E quantile under load (continuous batching, see the module docstring)
    leaves its target (:func:`_first_miss`). A target is missed at zero load when the
    zero-wait operating point misses it; the capacity is then computed against the other
    targets. Rows are independent: a subset of rows (:meth:`SloView.rows`) gets the same
    answers.

    ``runs`` (one integer per row): only the best capacity of each run matters (the caller
    keeps the row of highest capacity in milli-req/s per run), so a row whose bracket shows it
    below another row of its run, or no better than one already finished, is left unfinished,
    capacity NaN (never a row of ``protect``): the row of each run with the highest slot bound
    is searched first, and of rows with equal capacities the one found first is kept."""
    slo = d.slo
    mix = PromptMix.of(d)
    cap = slot_capacity(view, d)
    bad = dict(zip(("ttft", "tpot", "e2e"), zero_load_misses(view, d)))
    active = [(name, getattr(slo, name)) for name in ("ttft", "tpot", "e2e") if getattr(slo, name) is not None]
    if active:
        st = view.steps
        monotone = (np.diff(st.decode_ms, axis=1) >= 0).all(axis=1) & (np.diff(st.chunk_ms, axis=1) >= 0).all(axis=1)
        cap = _first_miss(lambda idx: _margin(view.rows(idx), d, active, {k: v[idx] for k, v in bad.items()}, mix),
                          cap, runs, protect, monotone)
    return SloResult(bad["ttft"], bad["tpot"], bad["e2e"], cap)


_OUT = 3.0
"""Margin of a load at which a target cannot hold at all (an unstable queue), and the most
negative margin (a tail far below the target): bounded margins keep regula falsi's steps
useful."""


def _margin(view: SloView, d: ModelDemand, active: list, bad: dict, mix: PromptMix):  # type: ignore[no-untyped-def]
    """The margin of a load against every target the row can meet at all, per row: the
    largest ``ln(P(X > target) / (1 - q))`` over TTFT and TPOT (their tails at the target) and
    E2E (the TTFT tail at what ``(OSL_q - 1) TPOT_q`` leaves of the E2E target, the bound
    :func:`e2e_quantile_ms` computes); <= 0: the load keeps them. One load state per call."""
    st, b = view.steps, view.batch

    def margin(lam: np.ndarray) -> np.ndarray:
        ls = load_state(lam, b, st, mix)
        own = (own_prefill_ms(mix.new_tokens, st, ls) + st.overhead_ms[:, None]) * st.own_scale[:, None]
        worst = np.full(b.shape, -np.inf)
        for name, tgt in active:
            q = tgt.percentile / 100
            budget = np.full(b.shape, float(tgt.max_ms))
            if name == "tpot":
                tail = tpot_tail(budget, ls, mix)
                out = ls.rho_prefill >= 1
            else:
                k = max(d.traffic.output_tokens.percentile(tgt.percentile) - 1, 0) if name == "e2e" else 0
                left = budget - k * _tpot_quantile(ls, lam, b, mix, q) if k > 0 else budget
                out = ~(np.isfinite(left) & (left > 0))
                tail = _ttft_tail(np.where(out, 1.0, left), ls, own, mix)
            m = np.where(out, _OUT, np.maximum(np.log(np.maximum(tail, 1e-300)) - math.log(1 - q), -_OUT))
            worst = np.maximum(worst, np.where(bad[name], -np.inf, m))
        return worst

    return margin


SEARCH_STEPS = 12
"""Most regula falsi (Illinois) steps after the scan; a row stops once its bracket is within
1e-4 relative."""


def _first_miss(margin_of, lam_hi: np.ndarray, runs: np.ndarray | None = None,
                protect: np.ndarray | None = None, monotone: np.ndarray | None = None) -> np.ndarray:
    """Largest rate in ``[0, lam_hi]`` below the first load whose margin
    (``margin_of(rows)(lam)``, <= 0 keeps the targets) is positive: the loads
    :data:`SCAN_POINTS` x ``lam_hi`` in turn, then regula falsi (Illinois; the bracket's middle
    where the secant leaves it) below the first that misses, on the rows
    still open, all at once. ``lam_hi`` where none misses, the last load that keeps them
    otherwise (0 where even the lightest misses). Rows marked ``monotone`` (step tables that
    never fall as the batch grows: every latency then grows with the load) skip the scan below
    ``lam_hi``. With ``runs`` see :func:`capacity_at_slo`."""
    n = lam_hi.shape[0]
    lo, hi = np.zeros(n), lam_hi.astype(float).copy()
    flo, fhi = np.full(n, np.nan), np.full(n, np.nan)
    side = np.zeros(n)
    state = np.zeros(n, dtype=np.int8)  # 0 scanning, 1 bracketed, 2 done, 3 dropped
    keep = np.zeros(n, dtype=bool) if protect is None else np.asarray(protect, dtype=bool)

    if runs is not None:
        by_run = np.argsort(runs, kind="stable")
        sorted_runs = runs[by_run]
        new_run = np.r_[True, sorted_runs[1:] != sorted_runs[:-1]]
        starts = np.flatnonzero(new_run)
        dense = np.empty(n, dtype=np.int64)  # each row's run, numbered 0, 1, ... in sorted order
        dense[by_run] = np.cumsum(new_run) - 1

    def run_max(x: np.ndarray) -> np.ndarray:
        """Per row, the largest ``x`` over its run."""
        return np.maximum.reduceat(x[by_run], starts)[dense]

    def prune() -> None:
        if runs is None:
            return
        open_ = (state == 0) | (state == 1)
        low = scaling.capacity_mrps_array(np.where(state == 3, 0.0, lo))
        up = scaling.capacity_mrps_array(hi)
        done = run_max(np.where(state == 2, low, -1))
        other = run_max(np.where(open_, low, -1))
        # below an open row's bound, or at most a finished row's capacity (a tie goes to the
        # row finished first)
        state[open_ & ~keep & ((up <= done) | (up < other))] = 3

    skip = np.zeros(n, dtype=bool) if monotone is None else np.asarray(monotone, dtype=bool)

    def search(these: np.ndarray) -> None:
        """Scan, then regula falsi, on the open rows among ``these``."""
        for s in SCAN_POINTS:
            idx = np.flatnonzero(these & (state == 0) & (~skip if s < 1 else True))
            if not idx.size:
                continue
            lam = lam_hi[idx] * s
            m = margin_of(idx)(lam)
            miss = m > 0
            j, k = idx[miss], idx[~miss]
            hi[j], fhi[j], state[j] = lam[miss], m[miss], 1
            lo[k], flo[k] = lam[~miss], m[~miss]
            prune()
        kept = these & (state == 0)  # kept every target up to lam_hi
        lo[kept], state[kept] = lam_hi[kept], 2
        for _ in range(SEARCH_STEPS):
            state[these & (state == 1) & (hi - lo <= 1e-4 * hi)] = 2
            idx = np.flatnonzero(these & (state == 1))
            if not idx.size:
                break
            a, b, fa, fb = lo[idx], hi[idx], flo[idx], fhi[idx]
            with np.errstate(divide="ignore", invalid="ignore"):
                x = a - fa * (b - a) / (fb - fa)
            x = np.where(np.isfinite(x) & (x > a) & (x < b), x, (a + b) / 2)
            m = margin_of(idx)(x)
            miss = m > 0
            j, k = idx[miss], idx[~miss]
            flo[j] = np.where(side[j] > 0, flo[j] / 2, flo[j])  # Illinois: the same end twice
            fhi[k] = np.where(side[k] < 0, fhi[k] / 2, fhi[k])
            hi[j], fhi[j], side[j] = x[miss], m[miss], 1
            lo[k], flo[k], side[k] = x[~miss], m[~miss], -1
            prune()
        state[these & (state == 1)] = 2

    if runs is not None:  # first the row of each run with the highest bound (and the protected)
        o = np.lexsort((np.arange(n), -lam_hi, runs))
        first = np.zeros(n, dtype=bool)
        first[o[np.r_[True, runs[o][1:] != runs[o][:-1]]]] = True
        search(first | keep)
        # every other row is first tried just above its run's best capacity so far: missing
        # there, it cannot beat it (its first miss is lower; a tie goes to the row found first)
        best = run_max(np.where(state == 2, scaling.capacity_mrps_array(lo), -1))
        x = (best + 1) / scaling.MILLI
        idx = np.flatnonzero((state == 0) & ~keep & (best >= 0) & (x < lam_hi))
        if idx.size:  # (a row that keeps the targets there is then searched as it would be alone)
            state[idx[margin_of(idx)(x[idx]) > 0]] = 3
    search(np.ones(n, dtype=bool))
    return np.where(state == 3, np.nan, lo)


def load_latencies_ms(view: SloView, d: ModelDemand,
                      lam_per_s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """TTFT, TPOT and E2E (ms) at the targets' percentiles (p99 if none) per batch cap at
    ``lam_per_s``, and the slot occupancy (``lam x stay_full / B``)."""
    lam = np.asarray(lam_per_s, dtype=float)
    ttft, tpot, e2e, ls = _target_quantiles(lam, view.batch, view.steps, PromptMix.of(d), d)
    return ttft, tpot, e2e, lam / 1e3 * ls.stay_full_ms / view.batch


@dataclass(frozen=True)
class LatencyAtLoad:
    ttft_ms: float
    tpot_ms: float
    e2e_ms: float
    utilisation: float


def latencies(batch: int, service_s: float, ttft0_ms: float, tpot_ms: float, e2e0_ms: float,
              d: ModelDemand, lam_per_s: float, steps: tuple[float, ...]) -> LatencyAtLoad:
    """Percentile latencies of a replica with ``batch`` slots at arrival rate ``lam_per_s``
    (``steps``: :meth:`StepTimes.at` of its shape; the zero-load figures are carried along
    unused): TTFT, TPOT and E2E under load at each target's percentile (p99 if none), and the
    slot load at a full batch. A pure function of its arguments, so answers are memoised
    (a plan's deployments are built and then verified at the same loads, and a Pareto sweep
    meets the same configurations at the same loads again); the demand enters the key by what
    is read of it: its traffic and its targets' percentiles."""
    t = d.traffic
    key = (batch, service_s, ttft0_ms, tpot_ms, e2e0_ms, lam_per_s, steps, t.model_dump_json(),
           d.slo.percentile("ttft"), d.slo.percentile("tpot"), d.slo.percentile("e2e"))
    hit = _LATENCIES.get(key)
    if hit is None:
        if len(_LATENCIES) >= _LATENCIES_MAX:
            _LATENCIES.clear()
        hit = _LATENCIES[key] = _latencies(batch, service_s, ttft0_ms, tpot_ms, e2e0_ms, d, lam_per_s, steps)
    return hit


_LATENCIES: dict[tuple, LatencyAtLoad] = {}
_LATENCIES_MAX = 4096


def _latencies(batch: int, service_s: float, ttft0_ms: float, tpot_ms: float, e2e0_ms: float,
               d: ModelDemand, lam_per_s: float, steps: tuple[float, ...]) -> LatencyAtLoad:
    view = SloView(np.array([batch]), np.array([service_s]), np.array([ttft0_ms]),
                   np.array([tpot_ms]), np.array([e2e0_ms]), 0, StepTimes.of(steps))
    ttft, tpot, e2e, occ = load_latencies_ms(view, d, np.array([lam_per_s]))
    return LatencyAtLoad(float(ttft[0]), float(tpot[0]), float(e2e[0]), float(occ[0]))


def latency_at_load(view: SloView, i: int, d: ModelDemand, lam_per_s: float) -> LatencyAtLoad:
    """Percentile latencies of batch cap ``view.batch[i]`` at arrival rate ``lam_per_s``."""
    return latencies(int(view.batch[i]), float(view.service_s[i]), float(view.ttft0_ms[i]),
                     float(view.tpot_ms[i]), float(view.e2e0_ms[i]), d, lam_per_s, view.steps.at(i))
