"""Run the host kernel for a population and an event plan; return arrays and the event table."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from ._kernels import simulate_hosts
from ._rng import host_seeds
from .anomalies import ANOMALY_KINDS
from .catalogue import METRICS, N_METRICS
from .config import SimConfig
from .events import EventPlan
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

    @property
    def n_hosts(self) -> int:
        return self.values.shape[1]

    @property
    def n_steps(self) -> int:
        return self.values.shape[2]


def run_kernel(config: SimConfig, population: Population, plan: EventPlan, seed: int,
               n_steps: int, interval_s: float, *, host_range: tuple[int, int] | None = None,
               t0: int = 0, keep_base: bool = True) -> tuple[Traces, pl.DataFrame]:
    """Simulate a block of hosts; the event table covers the events of those hosts."""
    lo, hi = host_range or (0, population.n_hosts)
    n_hosts = hi - lo
    ptr_all = plan.host_pointers(population.n_hosts)
    e_lo, e_hi = int(ptr_all[lo]), int(ptr_all[hi])
    ptr = (ptr_all[lo:hi + 1] - e_lo).astype(np.int64)
    ev = slice(e_lo, e_hi)
    row0 = int(plan.profile_row[e_lo]) if e_hi > e_lo else 0
    metrics = config.metrics
    res = np.array([m.resolution for m in metrics])
    lower = np.array([m.lower for m in metrics])
    upper = np.array([m.upper for m in metrics])
    values = np.empty((N_METRICS, n_hosts, n_steps), np.float32)
    base = np.empty((N_METRICS, n_hosts if keep_base else 0, n_steps if keep_base else 0), np.float32)
    labels = np.empty((N_METRICS, n_hosts, n_steps), np.int32)
    host_std = np.empty((N_METRICS, n_hosts))
    n_ev = e_hi - e_lo
    ev_peak, ev_first, ev_last = np.empty(n_ev), np.empty(n_ev, np.int64), np.empty(n_ev, np.int64)
    ev_peak_metric = np.empty(n_ev, np.int64)
    simulate_hosts(
        host_seeds(seed, lo, n_hosts), population.params[lo:hi], t0, n_steps, float(interval_s),
        float(config.simulation.start_epoch_s), res, lower, upper,
        ptr, plan.start[ev], plan.length[ev], plan.profile_row[ev] - row0,
        np.arange(e_lo, e_hi, dtype=np.int64), plan.affected_masks()[ev], plan.primary_metrics()[ev],
        plan.profiles[row0:row0 + int(plan.length[ev].sum())],
        values, base, labels, host_std, ev_peak, ev_peak_metric, ev_first, ev_last,
    )
    traces = Traces(values, base if keep_base else None, labels, host_std, lo, t0, float(interval_s),
                    float(config.simulation.start_epoch_s))
    return traces, event_table(plan, ev, ev_peak, ev_peak_metric, ev_first, ev_last, interval_s,
                               config.simulation.start_epoch_s)


def event_table(plan: EventPlan, ev: slice, peak: np.ndarray, peak_metric: np.ndarray, first: np.ndarray,
                last: np.ndarray,
                interval_s: float, start_epoch_s: float) -> pl.DataFrame:
    """One row per event: where, what, when, how strong, and which metrics it moved."""
    kinds = plan.kind_names
    affects = [", ".join(ANOMALY_KINDS[k].affects) for k in kinds]
    primary = [ANOMALY_KINDS[k].primary for k in kinds]
    start = plan.start[ev]
    end = start + plan.length[ev]
    to_time = lambda steps: (pl.lit(start_epoch_s) + pl.Series(steps * interval_s)) * 1_000_000  # noqa: E731
    df = pl.DataFrame({
        "event_id": np.arange(ev.start, ev.stop, dtype=np.int64),
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
