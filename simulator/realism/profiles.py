"""Realism beyond CPU: each metric per host profile with its source, and the rows that track what
issue 18 names (batch-job heights, the 1-hour autocorrelation of service hosts' CPU within a day and
its spread across hosts, drift of normal memory, heap and GC at one second).

Memory, load, heap and GC have no real trace of their kind in the reference; their tables say so and
name the source of their shape (the comments of data_config/metrics.yaml).  Network is held against
NAB's NetworkIn files by the checks in report.py; here it is shown per profile.  Everything is
measured on the hosts without anomalies.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from ..catalogue import M
from ..config import SimConfig
from ..engine import Traces, run_kernel
from ..events import plan_events
from ..population import Population
from .reference import RealTrace

# the metrics shown per profile, with the source of their shape
PROFILE_METRICS: dict[str, str] = {
    "memory_usage": "no real trace; sar -r shape of long-running hosts (metrics.yaml)",
    "load_average": "no real trace; Linux damped average of runnable tasks (kernel/sched/loadavg.c)",
    "network_in_mbps": "NAB EC2 NetworkIn (checked against its range above)",
    "network_out_mbps": "NAB EC2 NetworkIn (checked against its range above)",
}
FINE_METRICS: dict[str, str] = {  # at one second
    "java_heap_usage": "no real trace; HotSpot GC tuning guide, Java 17 (metrics.yaml)",
    "java_gc_time": "no real trace; HotSpot GC tuning guide, Java 17 (metrics.yaml)",
}
FINE_INTERVAL_S = 1.0
FINE_STEPS = 2700           # 45 minutes at one second
JOB_LEVEL_PCT = 20.0        # CPU above this on a batch host: a job running
BATCH_BACKGROUND_PCT = 5.0  # a real CPU trace is a batch host when its median (the background between jobs)
BATCH_MIN_SHARE = 0.01      # is below this and at least this share of its points are in jobs
MIN_JOB_POINTS = 10         # a host needs this many job points for a height spread
DAY_STEPS = 288             # one day at 5 minutes
LEAK_DRIFT_PCT = 5.0        # a drift of normal memory over 14 days a detector would call a leak
SERVICE_PROFILES = ("web_api", "jvm_app_server", "database")  # hosts compared with NAB's active non-batch hosts
HOUR_LAG = 12               # one hour at 5 minutes
SPREAD_TOLERANCE = 2.0      # the spread across hosts is in range within this factor of the real one


def profile_table(traces: Traces, population: Population, metrics: dict[str, str] = PROFILE_METRICS,
                  base: bool = True) -> pl.DataFrame:
    """One row per (metric, profile): quantiles of the level, lag-1 autocorrelation, share of repeated
    values and of zeros (median over the profile's hosts), and the source of the metric's shape."""
    data = traces.base if base else traces.values
    profiles = np.array(population.profile_names)[population.profile]
    rows = []
    for metric, source in metrics.items():
        x = data[M[metric]].astype(np.float64)
        for name in population.profile_names:
            hosts = np.flatnonzero(profiles == name)
            if not len(hosts):
                continue
            v = x[hosts]
            rows.append({"metric": metric, "profile": name, "hosts": len(hosts),
                         "p10": float(np.median(np.percentile(v, 10, axis=1))),
                         "p50": float(np.median(np.median(v, axis=1))),
                         "p90": float(np.median(np.percentile(v, 90, axis=1))),
                         "acf1": float(np.nanmedian(_acf1(v))),
                         "frac_zero_diff": float(np.median(np.mean(np.diff(v, axis=1) == 0, axis=1))),
                         "frac_zero": float(np.median(np.mean(v == 0, axis=1))),
                         "source": source})
    return pl.DataFrame(rows, schema={"metric": pl.Utf8, "profile": pl.Utf8, "hosts": pl.Int64,
                                      "p10": pl.Float64, "p50": pl.Float64, "p90": pl.Float64,
                                      "acf1": pl.Float64, "frac_zero_diff": pl.Float64, "frac_zero": pl.Float64,
                                      "source": pl.Utf8})


def fine_run(config: SimConfig, population: Population, seed: int) -> tuple[pl.DataFrame, Traces]:
    """Heap and GC per profile at one second (45 minutes of the same hosts, no anomalies), and the traces."""
    plan = plan_events(config, population, 0, FINE_STEPS, seed=seed, interval_s=FINE_INTERVAL_S)
    traces, _ = run_kernel(config, population, plan, seed=seed, n_steps=FINE_STEPS, interval_s=FINE_INTERVAL_S,
                           keep_base=False)
    return profile_table(traces, population, FINE_METRICS, base=False), traces


def _acf1(v: np.ndarray) -> np.ndarray:
    d = v - v.mean(axis=1, keepdims=True)
    den = np.sum(d * d, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, np.sum(d[:, 1:] * d[:, :-1], axis=1) / den, np.nan)


def job_height_spread(v: np.ndarray) -> float:
    """Interquartile range of the CPU points above JOB_LEVEL_PCT (the heights of batch jobs), or NaN."""
    jobs = v[v > JOB_LEVEL_PCT]
    if len(jobs) < MIN_JOB_POINTS:
        return float("nan")
    p25, p75 = np.percentile(jobs, [25, 75])
    return float(p75 - p25)


def day_acf12(v: np.ndarray) -> float:
    """The median over a trace's one-day windows of their 1-hour (lag-12) autocorrelation: the hourly and
    sub-hourly periodic activity of a host, apart from level changes between days."""
    values = []
    for a in range(0, len(v) - DAY_STEPS + 1, DAY_STEPS):
        d = v[a:a + DAY_STEPS] - v[a:a + DAY_STEPS].mean()
        den = float(np.sum(d * d))
        if den > 0:
            values.append(float(np.sum(d[HOUR_LAG:] * d[:-HOUR_LAG])) / den)
    return float(np.median(values)) if values else float("nan")


def is_real_batch_host(trace: RealTrace) -> bool:
    """A real CPU trace with a low background and jobs above JOB_LEVEL_PCT (NAB fe7f93, 77c1ca)."""
    v = trace.v
    return (trace.group == "cpu" and float(np.median(v)) < BATCH_BACKGROUND_PCT
            and float(np.mean(v > JOB_LEVEL_PCT)) >= BATCH_MIN_SHARE)


def tracked_rows(traces: Traces, population: Population, real_traces: list[RealTrace]) -> pl.DataFrame:
    """The rows issue 18 tracks, each with its simulated median, range, share of hosts inside, worst
    host and reference: the spread of batch-job heights against NAB's batch hosts, service hosts' 1-hour
    autocorrelation within a day and its spread against NAB's other active hosts, and the drift of
    normal memory over the trace (last day's median minus the first day's) against the level a leak
    detector flags."""
    profiles = np.array(population.profile_names)[population.profile]
    rows = []
    cpu = traces.base[M["cpu_usage"]].astype(np.float64)
    batch = np.flatnonzero(profiles == "batch_compute")
    spread = np.array([job_height_spread(cpu[h]) for h in batch])
    batch, spread = batch[np.isfinite(spread)], spread[np.isfinite(spread)]
    real = [x for x in (job_height_spread(t.v) for t in real_traces if is_real_batch_host(t)) if np.isfinite(x)]
    if len(spread) and real:
        rows.append(_row("batch job height IQR (CPU > 20 %)", batch, spread, profiles=profiles, lo=min(real),
                         hi=max(real),
                         reference=f"NAB batch hosts [{min(real):.3g}..{max(real):.3g}] n={len(real)}"))
    rows += _hourly_rows(cpu, profiles, real_traces)
    mem = traces.base[M["memory_usage"]].astype(np.float64)
    if mem.shape[1] >= 2 * DAY_STEPS:
        drift = np.median(mem[:, -DAY_STEPS:], axis=1) - np.median(mem[:, :DAY_STEPS], axis=1)
        rows.append(_row("memory drift, last - first day", np.arange(len(drift)), drift, profiles=profiles,
                         lo=-LEAK_DRIFT_PCT, hi=LEAK_DRIFT_PCT,
                         reference=f"no leak: within +-{LEAK_DRIFT_PCT:g} points"))
    return pl.DataFrame(rows, schema=TRACKED_SCHEMA)


def _hourly_rows(cpu: np.ndarray, profiles: np.ndarray, real_traces: list[RealTrace]) -> list[dict]:
    """Service hosts' 1-hour autocorrelation within a day (`day_acf12`) against NAB's active hosts that
    are not batch hosts: per host, and its spread across hosts (interquartile range) within
    SPREAD_TOLERANCE times the real one."""
    hosts = np.flatnonzero(np.isin(profiles, SERVICE_PROFILES))
    real = np.array([day_acf12(t.v) for t in real_traces
                     if t.group == "cpu" and not t.idle and not is_real_batch_host(t)])
    real = real[np.isfinite(real)]
    if cpu.shape[1] < DAY_STEPS or not len(hosts) or len(real) < 2:
        return []
    values = np.array([day_acf12(cpu[h]) for h in hosts])
    hosts, values = hosts[np.isfinite(values)], values[np.isfinite(values)]
    if not len(values):
        return []
    rows = [_row("CPU 1-h autocorrelation in a day", hosts, values, profiles=profiles, lo=float(real.min()),
                 hi=float(real.max()),
                 reference=f"NAB service hosts [{real.min():.2f}..{real.max():.2f}] n={len(real)}")]
    real_iqr = float(np.subtract(*np.percentile(real, [75, 25])))
    iqr = float(np.subtract(*np.percentile(values, [75, 25])))
    lo, hi = real_iqr / SPREAD_TOLERANCE, real_iqr * SPREAD_TOLERANCE
    rows.append(_row("  its spread across hosts (IQR)", hosts[:1], np.array([iqr]), profiles=profiles, lo=lo, hi=hi,
                     reference=f"NAB IQR {real_iqr:.2f}, x{1 / SPREAD_TOLERANCE:g}..x{SPREAD_TOLERANCE:g}"))
    return rows


TRACKED_SCHEMA = {"row": pl.Utf8, "sim_median": pl.Float64, "sim_min": pl.Float64, "sim_max": pl.Float64,
                  "n_sim": pl.Int64, "real_min": pl.Float64, "real_max": pl.Float64, "share_in_range": pl.Float64,
                  "worst_host": pl.Int64, "worst_profile": pl.Utf8, "worst_value": pl.Float64, "reference": pl.Utf8,
                  "within": pl.Boolean}


def _row(name: str, hosts: np.ndarray, values: np.ndarray, *, profiles: np.ndarray, lo: float, hi: float,
         reference: str) -> dict:
    """A tracked row: the median judged against [lo, hi], the share of hosts inside, the worst host."""
    outside = np.maximum(lo - values, values - hi)
    worst = int(np.argmax(outside))
    median = float(np.median(values))
    return {"row": name, "sim_median": median, "sim_min": float(values.min()), "sim_max": float(values.max()),
            "n_sim": len(values), "real_min": float(lo), "real_max": float(hi),
            "share_in_range": float(np.mean((values >= lo) & (values <= hi))),
            "worst_host": int(hosts[worst]), "worst_profile": str(profiles[hosts[worst]]),
            "worst_value": float(values[worst]), "reference": reference, "within": lo <= median <= hi}
