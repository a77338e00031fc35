"""The JVM at one second per host profile (issue 18 item 5): 40 hosts x 45 minutes without anomalies.

    python benchmarks/jvm_fine.py --seed 1

Per profile, the median over its hosts of: the heap's median, the share of seconds with GC time 0,
the interval between collections and its coefficient of variation, the correlation of the heap's rise
in seconds without a collection with the CPU of the same second (and of per-minute means), and the mean
GC time (percent).
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from simulator.catalogue import METRICS  # noqa: E402
from simulator.config import load_config  # noqa: E402
from simulator.engine import run_kernel  # noqa: E402
from simulator.events import plan_events  # noqa: E402
from simulator.population import build_population  # noqa: E402

M = {m: i for i, m in enumerate(METRICS)}


def host_row(heap: np.ndarray, gc: np.ndarray, cpu: np.ndarray) -> tuple[float, ...]:
    collect = gc > 0
    iv = np.diff(np.flatnonzero(collect))
    quiet = ~collect[1:]
    rise = np.diff(heap)
    n = (len(rise) // 60) * 60
    per_min_rise = np.nanmean(np.where(quiet, rise, np.nan)[:n].reshape(-1, 60), axis=1)
    per_min_cpu = cpu[1:][:n].reshape(-1, 60).mean(axis=1)
    return (float(np.median(heap)), float(np.mean(gc == 0)), iv.mean() if len(iv) else np.nan,
            iv.std() / iv.mean() if len(iv) > 3 else np.nan,
            np.corrcoef(rise[quiet], cpu[1:][quiet])[0, 1] if rise[quiet].std() > 0 else np.nan,
            np.corrcoef(per_min_rise, per_min_cpu)[0, 1] if per_min_rise.std() > 0 else np.nan,
            float(np.mean(gc)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, allow_abbrev=False)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--hosts", type=int, default=40)
    parser.add_argument("--steps", type=int, default=2700)
    args = parser.parse_args()
    config = load_config()
    population = build_population(config, args.hosts, args.seed)
    plan = plan_events(config, population, 0, args.steps, seed=args.seed, interval_s=1.0)
    traces, _ = run_kernel(config, population, plan, seed=args.seed, n_steps=args.steps, interval_s=1.0, keep_base=True)
    heap, gc, cpu = (traces.base[M[m]].astype(np.float64) for m in ("java_heap_usage", "java_gc_time", "cpu_usage"))
    profiles = np.array(population.profile_names)[population.profile]
    print("profile         hosts heap_p50 gc_zero interval_s interval_cv corr_1s corr_1min gc_mean_pct")
    for name in population.profile_names:
        hosts = np.flatnonzero(profiles == name)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            r = np.nanmedian(np.array([host_row(heap[h], gc[h], cpu[h]) for h in hosts]), axis=0)
        print(f"{name:15s} {len(hosts):5d} {r[0]:8.1f} {r[1]:7.3f} {r[2]:10.1f} {r[3]:11.2f} {r[4]:7.2f} "
              f"{r[5]:9.2f} {r[6]:11.3f}")


if __name__ == "__main__":
    main()
