"""PNG plots of the realism report: example hosts, real beside simulated, statistic distributions.

matplotlib is imported here only, with the Agg backend, so the rest of the simulator never pays for it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from datasafe import atomic_path
from ..catalogue import M
from .profiles import FINE_INTERVAL_S, FINE_METRICS, PROFILE_METRICS as TABLED_METRICS
from .report import CHECKS, STEPS, RealismResult

DAYS_SHOWN = 3
PROFILE_METRICS = ("cpu_usage", "memory_usage", "java_heap_usage", "network_in_mbps", "spectrum_active_jobs")


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def write_plots(result: RealismResult, output_dir: Path, interval_s: float) -> list[Path]:
    """Write the PNGs into output_dir (atomically each); return their paths."""
    output_dir.mkdir(parents=True, exist_ok=True)
    plt = _pyplot()
    written = []
    for name, draw in (("profiles.png", _profiles), ("real_vs_simulated.png", _real_vs_simulated),
                       ("statistics.png", _statistics), ("beyond_cpu.png", _beyond_cpu)):
        fig = draw(plt, result, interval_s)
        path = output_dir / name
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=90)
        plt.close(fig)
        written.append(path)
    return written


def _example_host(result: RealismResult, profile: str) -> tuple[int, int]:
    """A host of `profile` with an event (else any), and the first step of the window to show."""
    hosts = np.flatnonzero(np.array(result.population.profile_names)[result.population.profile] == profile)
    events = result.events.filter(pl.col("host").is_in(hosts.tolist())).sort("host", "start_step")
    span = DAYS_SHOWN * 288
    if len(events):
        ev = events.row(0, named=True)
        start = int(np.clip(ev["start_step"] - span // 2, 0, STEPS - span))
        return int(ev["host"]), start
    return int(hosts[0]), 0


def _shade_events(ax, result: RealismResult, host: int, *, lo: int, hi: int, hours: np.ndarray) -> None:
    for ev in result.events.filter(pl.col("host") == host).iter_rows(named=True):
        a, b = max(ev["start_step"], lo), min(ev["end_step"], hi)
        if a < b:
            ax.axvspan(hours[a - lo], hours[min(b - lo, len(hours) - 1)], color="tab:red", alpha=0.18, lw=0)
            ax.text(hours[a - lo], 0.97, ev["kind"], transform=ax.get_xaxis_transform(), fontsize=7,
                    va="top", color="tab:red")


def _profiles(plt, result: RealismResult, interval_s: float):
    profiles = result.population.profile_names
    fig, axes = plt.subplots(len(profiles), len(PROFILE_METRICS), figsize=(4.0 * len(PROFILE_METRICS),
                                                                            2.1 * len(profiles)), squeeze=False)
    span = DAYS_SHOWN * 288
    hours = np.arange(span) * interval_s / 3600.0
    for row, profile in enumerate(profiles):
        host, start = _example_host(result, profile)
        for col, metric in enumerate(PROFILE_METRICS):
            ax = axes[row, col]
            y = result.traces.values[M[metric], host, start:start + span]
            ax.plot(hours[:len(y)], y, lw=0.7, color="tab:blue")
            _shade_events(ax, result, host, lo=start, hi=start + span, hours=hours)
            ax.tick_params(labelsize=7)
            if row == 0:
                ax.set_title(metric, fontsize=9)
            if col == 0:
                ax.set_ylabel(f"{profile}\nhost {host}", fontsize=8)
            if row == len(profiles) - 1:
                ax.set_xlabel("hours", fontsize=8)
    fig.suptitle(f"Simulated hosts, {DAYS_SHOWN} days at 5 minutes (anomaly windows shaded)", fontsize=11)
    fig.tight_layout()
    return fig


def _real_vs_simulated(plt, result: RealismResult, interval_s: float):
    pairs = []
    real_active = [r for r in result.real_traces if r.group == "cpu" and not r.idle]
    real_idle = [r for r in result.real_traces if r.group == "cpu" and r.idle]
    real_net = [r for r in result.real_traces if r.group == "network"]
    profiles = np.array(result.population.profile_names)[result.population.profile]
    active = np.flatnonzero(profiles != "idle")
    idle = np.flatnonzero(profiles == "idle")
    base = result.traces.base
    if real_active and len(active):
        real = real_active[len(real_active) // 2]
        # NAB hosts are service hosts: compare with a service host of the nearest median CPU
        service = np.flatnonzero((profiles != "idle") & (profiles != "batch_compute"))
        pool = service if len(service) else active
        h = pool[np.argmin(np.abs(np.median(base[M["cpu_usage"], pool], axis=1) - real.signature["p50"]))]
        pairs.append(("CPU, active host", real, "cpu_usage", int(h), "%"))
    if real_idle and len(idle):
        pairs.append(("CPU, idle host", real_idle[0], "cpu_usage", _mildest(result, idle), "%"))
    if real_net and len(active):
        real = max(real_net, key=lambda r: r.signature.get("acf1", 0.0))  # the least spike-dominated
        pairs.append(("network in", real, "network_in_mbps", _mildest(result, active), "Mbit/s"))
    fig, axes = plt.subplots(len(pairs), 2, figsize=(13, 2.4 * len(pairs)), squeeze=False)
    for row, (title, real, metric, host, unit) in enumerate(pairs):
        n = min(len(real.v), STEPS)
        days = np.arange(n) * interval_s / 86400.0
        ax = axes[row, 0]
        ax.plot(days, real.v[:n], lw=0.5, color="black")
        for a, b in real.windows:
            ax.axvspan((a - real.t[0]) / 86400.0, (b - real.t[0]) / 86400.0, color="tab:red", alpha=0.15, lw=0)
        ax.set_title(f"real (NAB {real.name}): {title}", fontsize=9)
        ax.set_ylabel("bytes/period" if real.group == "network" else "%", fontsize=8)
        ax = axes[row, 1]
        ax.plot(days, result.traces.values[M[metric], host, :n], lw=0.5, color="tab:blue")
        _shade_events(ax, result, host, lo=0, hi=n, hours=days)
        ax.set_title(f"simulated ({profiles[host]} host {host}): {metric}", fontsize=9)
        ax.set_ylabel(unit, fontsize=8)
        for ax in axes[row]:
            ax.tick_params(labelsize=7)
            ax.set_xlabel("days", fontsize=8)
    fig.suptitle("Real beside simulated, 14 days at 5 minutes (labelled windows shaded)", fontsize=11)
    fig.tight_layout()
    return fig


def _mildest(result: RealismResult, hosts: np.ndarray) -> int:
    """The host among `hosts` whose anomalies are the least extreme (so normal behaviour shows)."""
    peaks = result.events.group_by("host").agg(pl.col("peak_deviation_sigma").max())
    worst = dict(zip(peaks["host"].to_list(), peaks["peak_deviation_sigma"].to_list()))
    return int(min(hosts, key=lambda h: worst.get(int(h), 0.0)))


def _statistics(plt, result: RealismResult, interval_s: float):
    checks = [c for c in CHECKS if c.hosts != "idle"]
    stats = sorted({s for c in checks for s in c.statistics}, key=list(checks[0].statistics).index)
    fig, axes = plt.subplots(len(checks), len(stats), figsize=(2.2 * len(stats), 2.2 * len(checks)),
                             squeeze=False)
    for row, check in enumerate(checks):
        sim = result.host_stats.filter(pl.col("metric") == check.metric)
        if check.hosts != "all":
            sim = sim.filter((pl.col("profile") == "idle") == (check.hosts == "idle"))
        real = [r.signature for r in result.real_traces if check.real(r)]
        for col, stat in enumerate(stats):
            ax = axes[row, col]
            ax.tick_params(labelsize=6)
            if stat not in check.statistics:
                ax.axis("off")
                continue
            values = sim[stat].drop_nans().drop_nulls().to_numpy()
            real_values = np.array([x[stat] for x in real if np.isfinite(x.get(stat, np.nan))])
            if len(values):
                ax.hist(values, bins=20, color="tab:blue", alpha=0.6, label="simulated hosts")
            if len(real_values):
                ax.axvspan(real_values.min(), real_values.max(), color="black", alpha=0.1, lw=0)
                for x in real_values:
                    ax.axvline(x, color="black", lw=1.0)
            if row == 0 or col == 0:
                ax.set_title(stat if row == 0 else "", fontsize=8)
            if col == 0:
                ax.set_ylabel(f"{check.metric}\n({check.hosts} hosts)", fontsize=7)
    fig.suptitle("Signature statistics: simulated hosts (histogram) against real hosts (black lines, "
                 "grey = real range)", fontsize=10)
    fig.tight_layout()
    return fig


FINE_SECONDS_SHOWN = 600  # ten minutes of the one-second run


def _beyond_cpu(plt, result: RealismResult, interval_s: float):
    """One host per profile without anomalies: memory, load and network over 14 days at 5 minutes,
    heap and GC time over ten minutes at one second; each column titled with its source."""
    profiles = result.population.profile_names
    per_host = np.array(profiles)[result.population.profile]
    columns = [(m, s, False) for m, s in TABLED_METRICS.items()]
    if result.fine_traces is not None:
        columns += [(m, s, True) for m, s in FINE_METRICS.items()]
    fig, axes = plt.subplots(len(profiles), len(columns), figsize=(3.4 * len(columns), 2.0 * len(profiles)),
                             squeeze=False)
    for row, profile in enumerate(profiles):
        hosts = np.flatnonzero(per_host == profile)
        for col, (metric, source, fine) in enumerate(columns):
            ax = axes[row, col]
            ax.tick_params(labelsize=6)
            if not len(hosts):
                ax.axis("off")
                continue
            if fine:
                y = result.fine_traces.values[M[metric], hosts[0], :FINE_SECONDS_SHOWN]
                x, unit = np.arange(len(y)) * FINE_INTERVAL_S / 60.0, "minutes (1 s)"
            else:
                y = result.traces.base[M[metric], hosts[0]]
                x, unit = np.arange(len(y)) * interval_s / 86400.0, "days (5 min)"
            ax.plot(x, y, lw=0.5, color="tab:blue")
            if row == 0:
                ax.set_title(f"{metric}\n{source.split(';')[0]}", fontsize=7)
            if col == 0:
                ax.set_ylabel(f"{profile}\nhost {hosts[0]}", fontsize=7)
            if row == len(profiles) - 1:
                ax.set_xlabel(unit, fontsize=7)
    fig.suptitle("Beyond CPU per profile, without anomalies (sources in the realism table)", fontsize=10)
    fig.tight_layout()
    return fig
