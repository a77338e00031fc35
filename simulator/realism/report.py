"""The realism report: simulated signatures per host against the ranges real hosts show.

A check compares one statistic of one metric, over a group of simulated hosts, with the range
[min, max] over the real traces of the same kind; it is *in* when the simulated median over the
group lies inside that range (the exit status).  Each check is also judged per host: the share of
hosts inside the range and the worst host (furthest outside, in widths of the real range).  Normal
behaviour is measured on each host's trace without anomalies (the kernel computes it alongside);
anomaly shapes on the labelled events.  Memory, load, network and (at one second) heap and GC are
tabled per profile with their sources, and the rows of issue 18 (batch-job heights, service hosts'
1-hour autocorrelation within a day and its spread, drift of normal memory) are reported beside the
checks, not yet in the exit status (profiles.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np
import polars as pl

from ..catalogue import METRICS, M
from ..config import SimConfig
from ..engine import Traces, run_kernel
from ..events import plan_events
from ..population import Population, build_population
from .profiles import fine_run, profile_table, tracked_rows
from .reference import RealTrace, load_real_traces, load_signature_module, signature_of

if TYPE_CHECKING:
    from .discriminative import DiscriminativeScore

REPORT_NAME = "realism_report.json"
STEPS = 4032  # 14 days at 5 minutes, as the NAB files
STATISTICS = ("acf1", "acf12", "diffstd_over_std", "daily_profile_r2", "kurt_diff", "skew",
              "frac_zero_diff", "frac_near_hi", "spec_slope")


@dataclass(frozen=True)
class Check:
    """Simulated `metric` on hosts of `hosts` ("active", "idle" or "all") against real `group` traces."""

    metric: str
    hosts: str
    group: str
    statistics: tuple[str, ...] = STATISTICS

    def real(self, trace: RealTrace) -> bool:
        if trace.group != self.group:
            return False
        return self.hosts == "all" or trace.idle == (self.hosts == "idle")


CHECKS = (
    Check("cpu_usage", "active", "cpu"),
    Check("cpu_usage", "idle", "cpu", ("acf1", "diffstd_over_std", "daily_profile_r2", "kurt_diff",
                                       "skew", "frac_zero_diff", "frac_near_hi")),
    # bounds-free statistics only: real network is bytes per period, ours Mbit/s
    Check("network_in_mbps", "all", "network", ("acf1", "acf12", "diffstd_over_std", "daily_profile_r2",
                                                "kurt_diff", "skew", "spec_slope")),
    Check("network_out_mbps", "all", "network", ("acf1", "acf12", "diffstd_over_std", "daily_profile_r2",
                                                 "kurt_diff", "skew", "spec_slope")),
)
# metrics with no real trace of their kind in the reference: reported, not checked; the source of
# each shape is given in data_config/metrics.yaml's comments
UNREFERENCED = tuple(m for m in METRICS if m not in {c.metric for c in CHECKS})
SHAPE_KIND = "cpu_spike"  # NAB's labelled CPU anomalies are mostly spikes


@dataclass(frozen=True)
class RealismResult:
    checks: pl.DataFrame        # one row per (metric, hosts, statistic): simulated vs real, in/out
    shapes: pl.DataFrame        # anomaly-shape rows (CPU spike length and peak), simulated vs real
    unreferenced: pl.DataFrame  # median statistics of metrics without a real reference
    host_stats: pl.DataFrame    # one row per (host, metric): the simulated signature statistics
    real_stats: pl.DataFrame    # one row per real trace: its signature statistics
    traces: Traces
    events: pl.DataFrame
    population: Population
    real_traces: list[RealTrace]
    profiles: pl.DataFrame | None = None      # memory, load, network per profile (profiles.profile_table)
    fine_profiles: pl.DataFrame | None = None  # heap and GC per profile at one second
    fine_traces: Traces | None = None          # the one-second run they come from
    tracked: pl.DataFrame | None = None        # batch-job height spread, drift of normal memory

    @property
    def passed(self) -> bool:
        return bool(self.checks["within"].all() and self.shapes["within"].all())


def run_realism(config: SimConfig, hosts: int, seed: int, reference_dir: Path,
                *, anomalies_per_host: float = 1.0, metrics: tuple[str, ...] = METRICS,
                stage: Callable[[str], None] = lambda text: None) -> RealismResult:
    """Simulate `hosts` hosts of the config's population for 14 days and measure them against NAB.

    `metrics` limits the signatures computed (the costly part) to those metrics; `stage` is told, as
    each stage of the work starts, what it is.
    """
    module = load_signature_module(reference_dir)
    real_traces = load_real_traces(reference_dir, module)
    stage(f"simulating {hosts} hosts over 14 days; signatures of {len(metrics)} metrics against "
          f"{len(real_traces)} real traces")
    interval = config.simulation.interval_s
    population = build_population(config, hosts, seed)
    plan = plan_events(config, population, int(round(hosts * anomalies_per_host)), STEPS, seed=seed,
                       interval_s=interval)
    traces, events = run_kernel(config, population, plan, seed=seed, n_steps=STEPS, interval_s=interval, keep_base=True)
    profiles = np.array(population.profile_names)[population.profile]
    events = events.with_columns(pl.Series("profile", profiles[events["host"].to_numpy()]))
    t = config.simulation.start_epoch_s + np.arange(STEPS) * interval
    rows = []
    for metric in metrics:
        base = traces.base[M[metric]]
        for h in range(hosts):
            sig = signature_of(module, metric, t, base[h].astype(np.float64))
            rows.append({"host": h, "profile": profiles[h], "metric": metric,
                         **{s: float(sig.get(s, np.nan)) for s in STATISTICS}})
    host_stats = pl.DataFrame(rows, schema={"host": pl.Int64, "profile": pl.Utf8, "metric": pl.Utf8,
                                            **{s: pl.Float64 for s in STATISTICS}})
    real_stats = pl.DataFrame([{"file": r.name, "group": r.group, "idle": r.idle,
                                **{s: float(r.signature.get(s, np.nan)) for s in STATISTICS}}
                               for r in real_traces])
    stage("the same hosts at one second: heap and GC")
    fine_profiles, fine_traces = fine_run(config, population, seed)
    return RealismResult(
        checks=_checks(host_stats, real_traces),
        shapes=_shapes(traces, events, real_traces),
        unreferenced=host_stats.filter(pl.col("metric").is_in(UNREFERENCED))
        .group_by("metric", maintain_order=True).agg(pl.col(s).median() for s in STATISTICS),
        host_stats=host_stats, real_stats=real_stats, traces=traces, events=events,
        population=population, real_traces=real_traces, profiles=profile_table(traces, population),
        fine_profiles=fine_profiles, fine_traces=fine_traces, tracked=tracked_rows(traces, population, real_traces))


def _checks(host_stats: pl.DataFrame, real_traces: list[RealTrace]) -> pl.DataFrame:
    rows = []
    for check in CHECKS:
        sim = host_stats.filter(pl.col("metric") == check.metric)
        if check.hosts != "all":
            sim = sim.filter((pl.col("profile") == "idle") == (check.hosts == "idle"))
        real = [r.signature for r in real_traces if check.real(r)]
        for stat in check.statistics:
            values = sim[stat].drop_nans().drop_nulls()
            real_values = [x[stat] for x in real if np.isfinite(x.get(stat, np.nan))]
            if not len(values) or not real_values:
                continue
            median = float(values.median())
            lo, hi = min(real_values), max(real_values)
            rows.append({"metric": check.metric, "hosts": check.hosts, "statistic": stat,
                         "sim_median": median, "sim_min": float(values.min()), "sim_max": float(values.max()),
                         "real_min": lo, "real_max": hi, "n_sim": len(values), "n_real": len(real_values),
                         "share_in_range": float(((values >= lo) & (values <= hi)).mean()),
                         **_worst_host(sim.filter(pl.col(stat).is_not_nan() & pl.col(stat).is_not_null()),
                                       stat, lo, hi),
                         "within": lo <= median <= hi})
    return pl.DataFrame(rows)


def _worst_host(sim: pl.DataFrame, stat: str, lo: float, hi: float) -> dict:
    """The host furthest outside [lo, hi], with how far in widths of the range (0: every host inside)."""
    values = sim[stat].to_numpy()
    outside = np.maximum(np.maximum(lo - values, values - hi), 0.0) / max(hi - lo, 1e-12)
    w = int(np.argmax(outside))
    return {"worst_host": int(sim["host"][w]), "worst_profile": sim["profile"][w],
            "worst_value": float(values[w]), "worst_outside": float(outside[w])}


def _shapes(traces: Traces, events: pl.DataFrame, real_traces: list[RealTrace]) -> pl.DataFrame:
    """CPU spikes: length in points and peak in global sigmas, against NAB's labelled CPU anomalies."""
    cpu, base = traces.values[M["cpu_usage"]], traces.base[M["cpu_usage"]]
    lengths, peaks = [], []
    for ev in events.filter(pl.col("kind") == SHAPE_KIND).iter_rows(named=True):
        h, a, b = ev["host"], ev["start_step"], ev["end_step"]
        sd = float(base[h].std())
        if sd > 0:
            lengths.append(b - a)
            peaks.append(float(np.max(np.abs(cpu[h, a:b] - np.median(base[h])))) / sd)
    real_windows = [w for r in real_traces if r.group == "cpu" for w in r.signature.get("windows", [])]
    real_len = [w["excursion_points"] for w in real_windows if w["excursion_points"] > 0]
    real_peak = [abs(w["peak_dev_global_sigma"]) for w in real_windows]
    rows = []
    for name, sim, real in (("length_points", lengths, real_len), ("peak_global_sigma", peaks, real_peak)):
        if not sim or not real:
            continue
        sim_median = float(np.median(sim))
        lo, hi = float(np.percentile(real, 10)), float(np.percentile(real, 90))
        rows.append({"kind": SHAPE_KIND, "statistic": name, "sim_median": sim_median,
                     "sim_min": float(np.min(sim)), "sim_max": float(np.max(sim)),
                     "real_median": float(np.median(real)), "real_p10": lo, "real_p90": hi,
                     "n_sim": len(sim), "n_real": len(real), "within": lo <= sim_median <= hi})
    return pl.DataFrame(rows, schema={"kind": pl.Utf8, "statistic": pl.Utf8, "sim_median": pl.Float64,
                                      "sim_min": pl.Float64, "sim_max": pl.Float64, "real_median": pl.Float64,
                                      "real_p10": pl.Float64, "real_p90": pl.Float64, "n_sim": pl.Int64,
                                      "n_real": pl.Int64, "within": pl.Boolean})


def _simulated(r: dict) -> str:
    """A row's simulated figures: median [min..max]."""
    return f"{r['sim_median']:.3g} [{r['sim_min']:.3g}..{r['sim_max']:.3g}]"


def report_json(result: RealismResult, *, seed: int, hosts: int, reference: Path,
                score: DiscriminativeScore | None = None) -> dict:
    """The report as the JSON object `realism_report.json` holds."""
    return {"seed": seed, "hosts": hosts, "reference": str(reference), "passed": result.passed,
            "checks": result.checks.to_dicts(), "anomaly_shapes": result.shapes.to_dicts(),
            "unreferenced_medians": result.unreferenced.to_dicts(),
            "tracked": result.tracked.to_dicts(), "profiles": result.profiles.to_dicts(),
            "profiles_1s": result.fine_profiles.to_dicts(),
            "discriminative": None if score is None else {"score": score.score, "accuracy": score.accuracy,
                                                          "n_real": score.n_real,
                                                          "n_simulated": score.n_simulated}}


def format_discriminative(score: DiscriminativeScore) -> str:
    """One paragraph: the real-vs-simulated classifier's accuracy and what it was trained on."""
    models = ", ".join(f"{k} {v:.3f}" for k, v in score.accuracy.items())
    return (f"discriminative score (accuracy telling real NAB CPU days from simulated ones; 0.5 = "
            f"indistinguishable): {score.score:.3f} ({models}; {score.n_real} real, "
            f"{score.n_simulated} simulated windows, folds grouped by trace)")


def format_report(result: RealismResult) -> str:
    """The plain-text table printed by `python -m simulator realism`."""
    lines = [f"{'metric':<17} {'hosts':<6} {'statistic':<17} {'simulated median [min..max]':<32} "
             f"{'real range':<22} in/out"]
    for r in result.checks.iter_rows(named=True):
        sim = _simulated(r)
        real = f"[{r['real_min']:.3g}..{r['real_max']:.3g}] n={r['n_real']}"
        lines.append(f"{r['metric']:<17} {r['hosts']:<6} {r['statistic']:<17} {sim:<32} {real:<22} "
                     f"{'in' if r['within'] else 'OUT'}")
    lines.append("")
    lines.append("anomaly shapes (simulated median [min..max] vs NAB labelled CPU anomalies, p10..p90):")
    for r in result.shapes.iter_rows(named=True):
        sim = _simulated(r)
        real = f"median {r['real_median']:.3g} [{r['real_p10']:.3g}..{r['real_p90']:.3g}] n={r['n_real']}"
        lines.append(f"{r['kind']:<17} {'':<6} {r['statistic']:<17} {sim:<32} {real:<38} "
                     f"{'in' if r['within'] else 'OUT'}")
    lines.append("")
    lines.append("no real reference of their kind (shape sources: comments in data_config/metrics.yaml); "
                 "median over hosts:")
    stats = ("acf1", "acf12", "kurt_diff", "skew", "frac_zero_diff", "spec_slope")
    lines.append(f"{'metric':<21} " + " ".join(f"{s:>14}" for s in stats))
    for r in result.unreferenced.iter_rows(named=True):
        lines.append(f"{r['metric']:<21} " + " ".join(f"{r[s]:>14.3g}" for s in stats))
    lines += _per_host_lines(result) + _tracked_lines(result) + _profile_lines(result)
    n_out = int((~result.checks["within"]).sum() + (~result.shapes["within"]).sum())
    n_all = len(result.checks) + len(result.shapes)
    lines.append("")
    lines.append(f"{n_all - n_out} of {n_all} statistics inside the real range"
                 + ("" if n_out == 0 else f"; {n_out} OUT"))
    return "\n".join(lines)


def _per_host_lines(result: RealismResult) -> list[str]:
    """Each check judged per host: the share of hosts inside the real range and the worst host."""
    lines = ["", "per host (hosts inside the real range; the worst host, its value and how far outside in "
                 "widths of the real range):",
             f"{'metric':<17} {'hosts':<6} {'statistic':<17} {'hosts inside':<14} worst host"]
    for r in result.checks.iter_rows(named=True):
        inside = f"{round(r['share_in_range'] * r['n_sim'])}/{r['n_sim']} {r['share_in_range']:.0%}"
        worst = ("none outside" if r["worst_outside"] == 0 else
                 f"host {r['worst_host']} ({r['worst_profile']}) {r['worst_value']:.3g}, "
                 f"{r['worst_outside']:.2g} widths outside")
        lines.append(f"{r['metric']:<17} {r['hosts']:<6} {r['statistic']:<17} {inside:<14} {worst}")
    return lines


def _tracked_lines(result: RealismResult) -> list[str]:
    if result.tracked is None or not len(result.tracked):
        return []
    lines = ["", "tracked rows of issue 18 (reported, not in the exit status): simulated median [min..max], "
                 "hosts inside, worst host",
             f"{'row':<36} {'simulated':<26} {'reference':<34} {'inside':<8} {'worst host':<28} median inside"]
    for r in result.tracked.iter_rows(named=True):
        sim = _simulated(r)
        worst = f"host {r['worst_host']} ({r['worst_profile']}) {r['worst_value']:.3g}" if r["n_sim"] > 1 else "-"
        lines.append(f"{r['row']:<36} {sim:<26} {r['reference']:<34} {r['share_in_range']:<8.0%} {worst:<28} "
                     f"{'yes' if r['within'] else 'no'}")
    return lines


def _profile_lines(result: RealismResult) -> list[str]:
    lines = []
    for title, table in (("per profile, 14 days at 5 minutes without anomalies (median over the profile's hosts)",
                          result.profiles),
                         ("per profile, 45 minutes at 1 second without anomalies", result.fine_profiles)):
        if table is None or not len(table):
            continue
        lines += ["", f"{title}:",
                  f"{'metric':<17} {'profile':<15} {'p10':>9} {'p50':>9} {'p90':>9} {'acf1':>7} "
                  f"{'repeats':>8} {'zeros':>6}  source"]
        for r in table.iter_rows(named=True):
            lines.append(f"{r['metric']:<17} {r['profile']:<15} {r['p10']:>9.3g} {r['p50']:>9.3g} {r['p90']:>9.3g} "
                         f"{r['acf1']:>7.2f} {r['frac_zero_diff']:>8.1%} {r['frac_zero']:>6.0%}  {r['source']}")
    return lines
