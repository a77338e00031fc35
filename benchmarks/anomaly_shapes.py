"""How each anomaly kind's events start, vary and end, measured on its primary metric (or another).

    python benchmarks/anomaly_shapes.py                       # 5 minutes, every kind's primary metric
    python benchmarks/anomaly_shapes.py --metric memory_usage --interval 60

Each kind runs alone on the profiles it can happen on (60 hosts, one event each, 3 days).  Per event
of at least 4 steps, from the difference the event makes to the metric (the same host without it):
the first step's and the last in-window step's share of the event's peak (1.0: a box that jumps up
and drops back), and the variation within the event's body (coefficient of variation of the steps at
half the peak or more; 0: flat).  Medians over events, and the share of events at or above 0.9.
Faint: the share of all labelled steps of the metric (any event length) that differ from the host's
normal by under 2 of the host's standard deviations (evidence a sample taken there barely shows).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from simulator.anomalies import ANOMALY_KINDS  # noqa: E402
from simulator.catalogue import M  # noqa: E402
from simulator.config import load_config  # noqa: E402
from simulator.engine import run_kernel  # noqa: E402
from simulator.events import plan_events  # noqa: E402
from simulator.population import build_population  # noqa: E402


def kind_shapes(config, kind: str, metric: str, interval: float, hosts: int, seed: int) -> dict | None:
    spec = config.anomaly(kind)
    profiles = tuple(dataclasses.replace(p, share=1.0 if p.name in spec.profiles else 0.0) for p in config.profiles)
    cfg = dataclasses.replace(config, anomalies=(dataclasses.replace(spec, share=1.0),), profiles=profiles)
    steps = int(3 * 86400 / interval)
    population = build_population(cfg, hosts, seed)
    plan = plan_events(cfg, population, hosts, steps, seed=seed, interval_s=interval)
    traces, events = run_kernel(cfg, population, plan, seed=seed, n_steps=steps, interval_s=interval)
    first, last, variation, faint = [], [], [], []
    for ev in events.iter_rows(named=True):
        h, s, e = ev["host"], ev["start_step"], ev["end_step"]
        delta = np.abs(traces.values[M[metric], h, s:e].astype(np.float64) - traces.base[M[metric], h, s:e])
        labelled = traces.labels[M[metric], h, s:e] == ev["event_id"]
        faint.extend(delta[labelled] < 2.0 * traces.host_std[M[metric], h])
        if e - s < 4 or delta.max() == 0:
            continue
        first.append(delta[0] / delta.max())
        last.append(delta[-1] / delta.max())
        body = delta[delta >= 0.5 * delta.max()]
        if len(body) > 2:
            variation.append(body.std() / body.mean())
    if not first:
        return None
    first, last = np.array(first), np.array(last)
    return {"events": len(first), "first": np.median(first), "first_box": np.mean(first >= 0.9),
            "last": np.median(last), "last_box": np.mean(last >= 0.9), "cv": np.median(variation),
            "faint": np.mean(faint)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--metric", default=None, help="metric to measure (default: each kind's primary)")
    parser.add_argument("--interval", type=float, default=300.0, help="seconds between samples (default 300)")
    parser.add_argument("--hosts", type=int, default=60)
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args()
    config = load_config()
    print(f"{'kind':20s} {'metric':22s} {'events':>6s} {'first/peak':>10s} {'>=0.9':>6s} {'last/peak':>10s} "
          f"{'>=0.9':>6s} {'body CV':>8s} {'faint':>6s}")
    for spec in config.anomalies:
        kind = ANOMALY_KINDS[spec.kind]
        metric = args.metric or kind.primary
        if metric not in kind.affects:
            continue
        row = kind_shapes(config, spec.kind, metric, args.interval, args.hosts, args.seed)
        if row is None:
            continue
        print(f"{spec.kind:20s} {metric:22s} {row['events']:6d} {row['first']:10.2f} {row['first_box']:6.2f} "
              f"{row['last']:10.2f} {row['last_box']:6.2f} {row['cv']:8.3f} {row['faint']:6.3f}")


if __name__ == "__main__":
    main()
