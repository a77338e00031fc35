"""Run the host kernel for a population and an event plan; return arrays and the event table."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from ._kernels import (
    N_STATE, ChunkState, EventInputs, EventOutputs, Reporting, TimeGrid, TraceOutputs, simulate_hosts,
)
from ._rng import host_seeds
from .anomalies import ANOMALY_KINDS
from .catalogue import METRICS, N_METRICS
from .config import SimConfig
from .events import GAP_STEPS, EventPlan
from .population import Population


@dataclass(frozen=True)
class Traces:
    """Simulated traces of hosts [first_host, first_host + H) over steps [t0, t0 + T)."""

    values: np.ndarray     # float32[M, H, T] with anomalies
    base: np.ndarray | None  # float32[M, H, T] the same hosts without anomalies (if kept)
    labels: np.ndarray     # int32[M, H, T]: event id where the metric is anomalous, else -1
    host_std: np.ndarray   # float64[M, H]: std of each metric on the host without anomalies
    first_host: int
    t0: int
    interval_s: float
    start_epoch_s: float
    end_state: np.ndarray | None = None  # float64[H, N_STATE]: each host's state after the last step

    @property
    def n_hosts(self) -> int:
        return self.values.shape[1]

    @property
    def n_steps(self) -> int:
        return self.values.shape[2]


RELOCATE_STREAM = 3    # SeedSequence spawn key of the re-placement of undetectable events
RELOCATE_ATTEMPTS = 4  # tries to move an event to a time where its host can show it


def run_kernel(config: SimConfig, population: Population, plan: EventPlan, *, seed: int,
               n_steps: int, interval_s: float, host_range: tuple[int, int] | None = None,
               t0: int = 0, keep_base: bool = True,
               state: np.ndarray | None = None) -> tuple[Traces, pl.DataFrame]:
    """Simulate a block of hosts; the event table covers the events of those hosts.

    With `state` (float64[hosts of the block, N_STATE], a previous chunk's `Traces.end_state`), the
    hosts continue from it at step t0 instead of starting afresh.

    An event its host cannot show (its peak deviation stays under the kind's configured minimum,
    e.g. a CPU spike on a host already pinned at 100 %) is moved to another free time on the same
    host and that host is simulated again, up to RELOCATE_ATTEMPTS times.  The new start depends
    only on (seed, event id, attempt), so the result is the same for any block size or worker count.
    """
    lo, hi = host_range or (0, population.n_hosts)
    n_hosts = hi - lo
    ptr_all = plan.host_pointers(population.n_hosts)
    e_lo, e_hi = int(ptr_all[lo]), int(ptr_all[hi])
    ev = slice(e_lo, e_hi)
    n_ev = e_hi - e_lo
    values = np.empty((N_METRICS, n_hosts, n_steps), np.float32)
    base = np.empty((N_METRICS, n_hosts if keep_base else 0, n_steps if keep_base else 0), np.float32)
    labels = np.empty((N_METRICS, n_hosts, n_steps), np.int32)
    host_std = np.empty((N_METRICS, n_hosts))
    ev_peak, ev_first, ev_last = np.empty(n_ev), np.empty(n_ev, np.int64), np.empty(n_ev, np.int64)
    ev_peak_metric = np.empty(n_ev, np.int64)
    starts = plan.start[ev].copy()
    end_state = np.empty((n_hosts, N_STATE))
    out = (values, base, labels, host_std, ev_peak, ev_peak_metric, ev_first, ev_last, end_state)
    resume = state is not None
    state = np.ascontiguousarray(state, dtype=np.float64) if resume else np.zeros((n_hosts, N_STATE))
    if state.shape != (n_hosts, N_STATE):
        raise ValueError(f"state: expected shape {(n_hosts, N_STATE)}, got {state.shape}")
    kernel = _KernelCall(config, population, plan, seed=seed, n_steps=n_steps, interval_s=interval_s, t0=t0,
                         ptr_all=ptr_all, keep_base=keep_base, state=state, resume=resume)
    kernel(lo, hi, starts, e_lo, out, lo)
    minimum = np.array([config.anomaly(k).min_peak_deviation for k in plan.kind_names])[plan.kind[ev]] \
        if n_ev else np.zeros(0)
    for attempt in range(1, RELOCATE_ATTEMPTS + 1):
        weak = np.flatnonzero(ev_peak < minimum)
        if not len(weak):
            break
        for e in weak:
            starts[e] = _relocated_start(seed, plan.first_id + e_lo + e, attempt, starts=starts,
                                         lengths=plan.length[ev], hosts=plan.host[ev], e=e, t0=t0,
                                         n_steps=n_steps)
        for h in np.unique(plan.host[ev][weak]):
            kernel(int(h), int(h) + 1, starts, e_lo, out, lo)
    traces = Traces(values, base if keep_base else None, labels, host_std, lo, t0, float(interval_s),
                    float(config.simulation.start_epoch_s), end_state)
    return traces, event_table(plan, ev, peak=ev_peak, peak_metric=ev_peak_metric, first=ev_first, last=ev_last,
                               interval_s=interval_s, start_epoch_s=config.simulation.start_epoch_s, start=starts)


class _KernelCall:
    """Runs the kernel for hosts [a, b) of a block, writing into the block's arrays."""

    def __init__(self, config, population, plan, *, seed, n_steps, interval_s, t0, ptr_all, keep_base,
                 state, resume):
        self.plan, self.population, self.seed, self.t0 = plan, population, seed, t0
        self.state, self.resume = state, resume
        self.n_steps, self.interval_s, self.ptr_all, self.keep_base = n_steps, float(interval_s), ptr_all, keep_base
        self.grid = TimeGrid(int(t0), int(n_steps), float(interval_s), float(config.simulation.start_epoch_s))
        self.reporting = Reporting(np.array([m.resolution for m in config.metrics], dtype=np.float64),
                                   np.array([m.lower for m in config.metrics], dtype=np.float64),
                                   np.array([m.upper for m in config.metrics], dtype=np.float64))
        self.masks, self.primary = plan.affected_masks(), plan.primary_metrics()

    def __call__(self, a, b, block_starts, block_e_lo, out, block_lo):
        plan, n = self.plan, b - a
        e_a, e_b = int(self.ptr_all[a]), int(self.ptr_all[b])
        ev = slice(e_a, e_b)
        ptr = (self.ptr_all[a:b + 1] - e_a).astype(np.int64)
        row0 = int(plan.profile_row[e_a]) if e_b > e_a else 0
        values, base, labels, host_std, peak, peak_metric, first, last, end_state = out
        h = slice(a - block_lo, b - block_lo)
        e = slice(e_a - block_e_lo, e_b - block_e_lo)
        whole = n == values.shape[1]
        sub = (values, base, labels, host_std) if whole else (
            np.empty((N_METRICS, n, self.n_steps), np.float32),
            np.empty((N_METRICS, n if self.keep_base else 0, self.n_steps if self.keep_base else 0), np.float32),
            np.empty((N_METRICS, n, self.n_steps), np.int32), np.empty((N_METRICS, n)))
        sub_state = end_state if whole else np.empty((n, N_STATE))
        ev_out = (peak, peak_metric, first, last) if whole else tuple(np.empty(e_b - e_a, x.dtype)
                                                                       for x in (peak, peak_metric, first, last))
        events = EventInputs(ptr, block_starts[e], plan.length[ev], plan.profile_row[ev] - row0,
                             plan.first_id + np.arange(e_a, e_b, dtype=np.int64), self.masks[ev], self.primary[ev],
                             plan.profiles[row0:row0 + int(plan.length[ev].sum())])
        simulate_hosts(host_seeds(self.seed, a, n), self.population.params[a:b], self.grid, self.reporting, events,
                       ChunkState(self.state[h], self.resume, sub_state), TraceOutputs(*sub), EventOutputs(*ev_out))
        if not whole:
            values[:, h], labels[:, h], host_std[:, h], end_state[h] = sub[0], sub[2], sub[3], sub_state
            if self.keep_base:
                base[:, h] = sub[1]
            peak[e], peak_metric[e], first[e], last[e] = ev_out


def _relocated_start(seed: int, event_id: int, attempt: int, *, starts: np.ndarray, lengths: np.ndarray,
                     hosts: np.ndarray, e: int, t0: int, n_steps: int) -> int:
    """A new start for event e on its host, clear of the host's other events when there is room."""
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(RELOCATE_STREAM, event_id, attempt)))
    length = int(lengths[e])
    candidates = np.arange(t0, t0 + max(n_steps - length, 0) + 1)
    others = np.flatnonzero((hosts == hosts[e]) & (np.arange(len(hosts)) != e))
    free = np.ones(len(candidates), bool)
    for o in others:
        free &= (candidates + length + GAP_STEPS <= starts[o]) | (candidates >= starts[o] + lengths[o] + GAP_STEPS)
    pool = candidates[free] if free.any() else candidates
    return int(pool[rng.integers(len(pool))])


def event_table(plan: EventPlan, ev: slice, *, peak: np.ndarray, peak_metric: np.ndarray, first: np.ndarray,
                last: np.ndarray, interval_s: float, start_epoch_s: float,
                start: np.ndarray | None = None) -> pl.DataFrame:
    """One row per event: where, what, when, how strong, and which metrics it moved."""
    kinds = plan.kind_names
    affects = [", ".join(ANOMALY_KINDS[k].affects) for k in kinds]
    primary = [ANOMALY_KINDS[k].primary for k in kinds]
    start = plan.start[ev] if start is None else start
    end = start + plan.length[ev]
    to_time = lambda steps: (pl.lit(start_epoch_s) + pl.Series(steps * interval_s)) * 1_000_000  # noqa: E731
    df = pl.DataFrame({
        "event_id": plan.first_id + np.arange(ev.start, ev.stop, dtype=np.int64),
        "host": plan.host[ev],
        "kind_index": plan.kind[ev],
        "start_step": start,
        "end_step": end,
        "severity": plan.severity[ev],
        "labelled_first_step": first,
        "labelled_last_step": last,
        "peak_deviation_sigma": peak,
        "peak_metric": np.array(METRICS)[peak_metric] if len(peak_metric) else np.zeros(0, str),
    })
    return df.with_columns(
        pl.col("kind_index").replace_strict(list(range(len(kinds))), list(kinds), return_dtype=pl.Utf8)
        .alias("kind"),
        pl.col("kind_index").replace_strict(list(range(len(kinds))), primary, return_dtype=pl.Utf8)
        .alias("primary_metric"),
        pl.col("kind_index").replace_strict(list(range(len(kinds))), affects, return_dtype=pl.Utf8)
        .alias("affected_metrics"),
        pl.from_epoch(to_time(start).cast(pl.Int64), time_unit="us").dt.replace_time_zone("UTC").alias("start"),
        pl.from_epoch(to_time(end).cast(pl.Int64), time_unit="us").dt.replace_time_zone("UTC").alias("end"),
    ).select("event_id", "host", "kind", "start", "end", "start_step", "end_step", "severity",
             "primary_metric", "affected_metrics", "peak_deviation_sigma", "peak_metric",
             "labelled_first_step", "labelled_last_step")


__all__ = ["Traces", "run_kernel", "event_table", "METRICS"]
