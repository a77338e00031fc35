"""What a monitoring system holds at a sample's instant: the recent history of every metric.

Two views end at the sample's step (the snapshot is the last point of both):
- the fine context: the last `context_steps` values at the native interval;
- the coarse history: `history_hours` hourly means, the last one the hour ending at the snapshot.
Steps before the trace began are missing (NaN here, null in the exports): the collector had no data.
Only the trace as reported is read, never the trace without the anomaly or the event table.

And what the simulator knows beyond the instant, as training targets (never shown in a text):
when the event began and ends, and how long until a filling resource is full.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from ._numba import jit, jit_parallel, prange


@jit_parallel
def gather_context(values, host, step, fine_steps, hours, steps_per_hour, resolution):
    """(fine float32[n, M, fine_steps], coarse float32[n, M, hours]) of each (host, step) sample.

    `values` is float32[M, H, T] (steps local to the block); `host` and `step` are local indices.
    An hour with no step inside the trace is NaN; a partly covered hour is the mean of its steps,
    rounded to `resolution[m]`."""
    n = host.shape[0]
    n_metrics = values.shape[0]
    fine = np.full((n, n_metrics, fine_steps), np.nan, dtype=np.float32)
    coarse = np.full((n, n_metrics, hours), np.nan, dtype=np.float32)
    for s in prange(n):
        h = host[s]
        t = step[s]
        for m in range(n_metrics):
            for k in range(fine_steps):
                i = t - (fine_steps - 1 - k)
                if i >= 0:
                    fine[s, m, k] = values[m, h, i]
            for k in range(hours):
                last = t - (hours - 1 - k) * steps_per_hour
                total = 0.0
                count = 0
                for i in range(max(0, last - steps_per_hour + 1), last + 1):
                    total += values[m, h, i]
                    count += 1
                if count > 0:
                    coarse[s, m, k] = np.round(total / count / resolution[m]) * resolution[m]
    return fine, coarse


@jit
def steps_until_at_least(values, metric, host, step, threshold, limit):
    """Steps from each sample until `values[metric]` first reaches `threshold` (0 if it already has),
    looking at most `limit[s]` steps ahead within the trace; -1 when it does not get there (or the
    sample's metric is -1)."""
    n = host.shape[0]
    n_steps = values.shape[2]
    out = np.full(n, -1, dtype=np.int64)
    for s in range(n):
        if metric[s] < 0:
            continue
        for d in range(min(limit[s] + 1, n_steps - step[s])):
            if values[metric[s], host[s], step[s] + d] >= threshold[s]:
                out[s] = d
                break
    return out


@jit
def _insertion_sort(buf, count):
    """Sort the first `count` values of `buf` in place, equal values in their order."""
    for i in range(1, count):
        v = buf[i]
        j = i
        while j > 0 and buf[j - 1] > v:
            buf[j] = buf[j - 1]
            j -= 1
        buf[j] = v


def _batcher_pairs(n: int) -> list[tuple[int, int]]:
    """The compare-exchanges of Batcher's odd-even merge sort of n values (n a power of two)."""
    pairs = []
    p = 1
    while p < n:
        k = p
        while k >= 1:
            for j in range(k % p, n - k, 2 * k):
                for i in range(min(k, n - j - k)):
                    if (i + j) // (2 * p) == (i + j + k) // (2 * p):
                        pairs.append((i + j, i + j + k))
            k //= 2
        p *= 2
    return pairs


NETWORK_MAX = 32  # up to this many values are sorted by a network (`_sort`), more by insertion
_NETWORKS = [_batcher_pairs(1 << e) for e in range(NETWORK_MAX.bit_length())]  # 1, 2, 4, ..., 32 values
NETWORK_START = np.cumsum([0] + [len(n) for n in _NETWORKS])
NETWORK_LOW = np.array([a for n in _NETWORKS for a, _ in n], dtype=np.int64)
NETWORK_HIGH = np.array([b for n in _NETWORKS for _, b in n], dtype=np.int64)


@jit
def _sort(buf, count, stable=False):
    """Sort the first `count` values of `buf` (no NaN) in place. Up to NETWORK_MAX values unless
    `stable`: padded with +inf to a power of two (`buf` has room for NETWORK_MAX) and sorted by
    Batcher's network, compare-exchanges without branches (the usual levels' kernel takes 26 % less
    time than with insertion sort); equal values may swap, which only -0.0 and 0.0 could show:
    `stable` for them."""
    if stable or count > NETWORK_MAX:
        _insertion_sort(buf, count)
        return
    size, e = 1, 0
    while size < count:
        size *= 2
        e += 1
    for i in range(count, size):
        buf[i] = np.inf
    for c in range(NETWORK_START[e], NETWORK_START[e + 1]):
        lo, hi = NETWORK_LOW[c], NETWORK_HIGH[c]
        a, b = buf[lo], buf[hi]
        buf[lo] = min(a, b)
        buf[hi] = max(a, b)


@jit
def _middle(buf, count):
    """Median of the sorted `buf[:count]` (NaN when empty)."""
    if count == 0:
        return np.nan
    if count % 2:
        return buf[count // 2]
    return 0.5 * (buf[count // 2 - 1] + buf[count // 2])


@jit
def _deviation_median(buf, count, median):
    """Median of |v - median| over the sorted `buf[:count]` without sorting again: the deviations left
    of the median grow leftwards, those right of it rightwards, so the two runs are merged up to the
    middle (NaN when empty)."""
    if count == 0:
        return np.nan
    right = 0
    while right < count and buf[right] < median:
        right += 1
    left = right - 1
    lower = d = 0.0
    for i in range(count // 2 + 1):
        if left >= 0 and (right >= count or median - buf[left] <= buf[right] - median):
            d = abs(buf[left] - median)
            left -= 1
        else:
            d = abs(buf[right] - median)
            right += 1
        if i == count // 2 - 1:
            lower = d
    return d if count % 2 else 0.5 * (lower + d)


@jit
def _median_and_mad(values, buf):
    """(median, median absolute deviation, count) of the non-NaN `values` (NaN, NaN, 0 if none)."""
    count = 0
    negative_zero = False
    for v in values:
        if not np.isnan(v):
            buf[count] = v
            count += 1
            negative_zero |= v == 0 and np.signbit(v)
    _sort(buf, count, negative_zero)
    median = _middle(buf, count)
    return median, _deviation_median(buf, count, median), count


USUAL_CHUNK = 1024  # samples per task of `evidence_levels` (one scratch buffer each)


@jit
def _usual_row(ctx, hist, min_hours, buf):
    """(usual, spread, hours of history, earlier context readings, from the history?) of one sample's
    metric: ctx [k] (the snapshot last), hist [hours] (the snapshot's hour excluded by the caller),
    float32 or float64, read as float64.

    Usual is the median of the history's hourly means when at least `min_hours` of them are there,
    else of the context's earlier readings; the spread is the median absolute deviation of the same
    values, at least the context's reading-to-reading noise (the median step between readings over
    sqrt(2)), 0 when nothing is known. NaN: no data."""
    k = ctx.shape[0]
    n_hours = 0
    for v in hist:
        n_hours += not np.isnan(v)
    n_readings = 0
    for j in range(k - 1):
        n_readings += not np.isnan(ctx[j])
    from_history = n_hours >= min_hours
    if from_history:
        level, mad, count = _median_and_mad(hist, buf)
    else:
        level, mad, count = _median_and_mad(ctx[:k - 1], buf)
    steps = 0
    for j in range(k - 1):
        d = abs(np.float64(ctx[j + 1]) - np.float64(ctx[j]))
        if not np.isnan(d):
            buf[steps] = d
            steps += 1
    _sort(buf, steps)
    noise = _middle(buf, steps) / np.sqrt(2.0)
    usual = np.float64(ctx[k - 1]) if count == 0 else level
    spread = 0.0 if count == 0 else (mad if np.isnan(noise) else max(mad, noise))
    return usual, spread, n_hours, n_readings, from_history


@jit
def _off_run(ctx, usual, now, spread, minutes, off_spreads):
    """Minutes from the first reading of the trailing off run to the snapshot; -1 when every reading
    of `ctx` is off; -2 when the snapshot itself is not off (nothing to date).

    The snapshot is off when it is further from usual than `off_spreads` times the spread (median
    absolute deviation) of the values usual is the median of; an earlier reading is off when it is
    further from usual than half the snapshot's distance."""
    distance = abs(now - usual)
    threshold = off_spreads * spread
    if threshold < 0.0:  # np.maximum(threshold, 0): NaN stays NaN
        threshold = 0.0
    trailing = 0
    if distance > threshold and distance > 0:
        for j in range(ctx.shape[0] - 1, -1, -1):
            if not abs(np.float64(ctx[j]) - usual) > 0.5 * distance:
                break
            trailing += 1
    if trailing == 0:
        return -2.0
    if trailing == ctx.shape[0]:
        return -1.0
    return (trailing - 1) * minutes


@jit_parallel
def evidence_levels(fine, hist, now, min_hours, minutes, off_spreads):
    """The usual levels (`_usual_row`) and the off run (`_off_run`) of every metric at once, [M, n] each: fine [M, n, k]
    and hist [M, n, hours] (the history without the snapshot's hour) as float32, now [M, n]."""
    n_metrics, n, k = fine.shape
    usual = np.empty((n_metrics, n), dtype=np.float64)
    spread = np.empty((n_metrics, n), dtype=np.float64)
    hours = np.zeros((n_metrics, n), dtype=np.int64)
    readings = np.zeros((n_metrics, n), dtype=np.int64)
    from_history = np.zeros((n_metrics, n), dtype=np.bool_)
    run = np.empty((n_metrics, n), dtype=np.float64)
    chunks = (n + USUAL_CHUNK - 1) // USUAL_CHUNK
    for task in prange(n_metrics * chunks):
        m, c = task // chunks, task % chunks
        buf = np.empty(max(k, hist.shape[2], NETWORK_MAX) + 1, dtype=np.float64)
        for r in range(c * USUAL_CHUNK, min(n, (c + 1) * USUAL_CHUNK)):
            u, sp, hours[m, r], readings[m, r], from_history[m, r] = _usual_row(fine[m, r], hist[m, r], min_hours, buf)
            usual[m, r], spread[m, r] = u, sp
            run[m, r] = _off_run(fine[m, r], u, now[m, r], sp, minutes, off_spreads)
    return usual, spread, hours, readings, from_history, run


def anomalous_metrics(labels: np.ndarray, host: np.ndarray, step: np.ndarray, event: np.ndarray) -> np.ndarray:
    """bool[n, M]: which metrics carry the sample's own event label at its point (all False for normal)."""
    at = labels[:, host, step].T  # [n, M]
    return (at == event[:, None]) & (event[:, None] >= 0)


# ---------------------------------------------------------------------------- sample columns
CONTEXT_PREFIX = "ctx_"    # ctx_<metric>: the fine context, a list per sample (the snapshot last)
HISTORY_PREFIX = "hist_"   # hist_<metric>: the hourly means
ANOMALOUS_PREFIX = "anomalous_"  # anomalous_<metric>: does the metric carry the sample's event label


def _list_column(name: str, matrix: np.ndarray, integer: bool) -> pl.Series:
    """A [n, k] float matrix as a fixed-size list column, NaN as null (the collector had no data);
    Polars alone (no Arrow import on the sample job's path)."""
    n, k = matrix.shape
    values = pl.Series(name, np.ascontiguousarray(matrix).reshape(-1)).fill_nan(None)
    return (values.cast(pl.Int32) if integer else values).reshape((n, k))


@dataclass(frozen=True)
class Windows:
    """The fine context and coarse history of n samples, float32[n, M, steps] and [n, M, hours] (NaN:
    no data). Kept as arrays while samples are reordered; `columns` makes the list columns once."""

    fine: np.ndarray
    coarse: np.ndarray

    @staticmethod
    def concat(parts: list["Windows"]) -> "Windows":
        return Windows(np.concatenate([w.fine for w in parts]), np.concatenate([w.coarse for w in parts]))

    def take(self, order: np.ndarray) -> "Windows":
        return Windows(self.fine[order], self.coarse[order])

    def columns(self, cfg) -> dict[str, pl.Series]:
        """ctx_<metric> and hist_<metric> fixed-size list columns (null where NaN)."""
        cols = {}
        for m, spec in enumerate(cfg.metrics):
            cols[CONTEXT_PREFIX + spec.name] = _list_column(CONTEXT_PREFIX + spec.name, self.fine[:, m], spec.integer)
            if self.coarse.shape[2]:
                cols[HISTORY_PREFIX + spec.name] = _list_column(HISTORY_PREFIX + spec.name, self.coarse[:, m], False)
        return cols


def sample_windows(traces, host: np.ndarray, step: np.ndarray, cfg) -> Windows:
    """The windows of the samples at (local host, global step) of a block's traces; hourly means are
    reported at the metric's resolution (0.01 at the coarsest), as a collector's roll-up would."""
    sim = cfg.simulation
    per_hour = max(1, int(round(3600 / traces.interval_s)))
    resolution = np.array([min(spec.resolution, 0.01) for spec in cfg.metrics])
    return Windows(*gather_context(traces.values, host.astype(np.int64), (step - traces.t0).astype(np.int64),
                                   sim.context_steps, sim.history_hours, per_hour, resolution))


def anomalous_metric_columns(traces, host: np.ndarray, step: np.ndarray, event: np.ndarray,
                             *, cfg) -> dict[str, pl.Series]:
    flags = anomalous_metrics(traces.labels, host, step - traces.t0, event)
    return {ANOMALOUS_PREFIX + spec.name: pl.Series(ANOMALOUS_PREFIX + spec.name, flags[:, m])
            for m, spec in enumerate(cfg.metrics)}


def exhaustion_columns(traces, host: np.ndarray, step: np.ndarray, kind: pl.Series, *, end_step: pl.Series,
                       cfg) -> list[pl.Series]:
    """exhaustion_metric and steps_to_exhaustion: for kinds that fill a resource, the steps until its
    metric first reaches the kind's level, looking no further than the event's last step; null when
    it does not get there (or the kind fills nothing)."""
    from .anomalies import ANOMALY_KINDS

    names = [spec.name for spec in cfg.metrics]
    fills = {k: v.exhausts for k, v in ANOMALY_KINDS.items() if v.exhausts is not None}
    metric = kind.replace_strict({k: names.index(m) for k, (m, _) in fills.items()}, default=-1,
                                 return_dtype=pl.Int64).to_numpy()
    level = kind.replace_strict({k: lv for k, (_, lv) in fills.items()}, default=np.inf,
                                return_dtype=pl.Float64).to_numpy()
    limit = np.where(metric >= 0, end_step.fill_null(0).to_numpy() - 1 - step, -1)
    steps = steps_until_at_least(traces.values, metric, host.astype(np.int64), (step - traces.t0).astype(np.int64),
                                 level, limit.astype(np.int64))
    reached = steps >= 0
    return [pl.Series("exhaustion_metric", np.array(names + [""])[metric], dtype=pl.Utf8)
            .set(pl.Series(metric < 0), None),
            pl.Series("steps_to_exhaustion", steps).set(pl.Series(~reached), None)]
