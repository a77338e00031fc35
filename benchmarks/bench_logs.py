"""Log lines per second into Parquet, beside the metrics' rate in the same run, and the size per host-day.

    python benchmarks/bench_logs.py                  # 200 hosts x 1 day at 5 minutes, best/median of 3
    python benchmarks/bench_logs.py --hosts 500 --days 2 --repeats 5
    python benchmarks/bench_logs.py --quick          # a smoke run
    python benchmarks/bench_logs.py --json out.json  # also write the figures as JSON

Cases (warm: kernels loaded from the on-disk cache and templates parsed by a first small call):
1. metrics: `simulate()` (traces with label columns) and the traces written to Parquet (zstd):
   labelled values per second and rows per second;
2. logs: `simulate_logs()` of the same traces and events, then `write_logs_parquet()`: lines per
   second (target: >= 2 M lines/s on 2 cores); `write_logs_parts()` (64-host parts, each written by
   a background thread while the next is simulated); and `simulate_logs()` alone;
3. size per host-day: the log Parquet, and the plain log files (`write_log_files`; counted over
   all hosts from the rendered lines, checked against the files written for 10 hosts).
"Others' CPU" is the noise gauge (cores other processes kept busy); compare runs only near 0.
On a shared machine the rates per second of this process's own CPU time are printed too.
Nothing here asserts a timing.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from _common import CpuMeter  # noqa: E402
from simulator.catalogue import N_METRICS  # noqa: E402

TARGET_LINES_PER_S = 2e6  # issue 17: >= 2 M log lines per second into Parquet on 2 cores


CPU_S: dict[int, list[float]] = {}  # own CPU seconds of each timed case, by id of its function


def timed(fn, repeats: int) -> tuple[list[float], list[float | None], object]:
    """Wall times, others' cores and the last result of `repeats` calls; own CPU seconds in CPU_S."""
    times, others, result = [], [], None
    for _ in range(repeats):
        meter = CpuMeter()
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
        others.append(meter.others_cores())
        d = meter.delta()
        CPU_S.setdefault(id(fn), []).append(d[1] if d else float("nan"))
    return times, others, result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    ap.add_argument("--hosts", type=int, default=200)
    ap.add_argument("--days", type=float, default=1.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="10 hosts x 1 day, one repeat")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args(argv)
    if args.quick:
        args.hosts, args.days, args.repeats = 10, 1.0, 1
    import polars as pl
    import simulator
    from simulator.logs import (load_log_templates, simulate_logs, write_log_files, write_logs_parquet,
                                write_logs_parts)

    steps = int(round(args.days * 288))
    templates = load_log_templates()
    warm_tr, warm_ev = simulator.simulate(hosts=2, steps=48, anomalies=2, seed=args.seed)
    simulate_logs(warm_tr, warm_ev, seed=args.seed, templates=templates)
    out: dict = {"hosts": args.hosts, "steps": steps, "days": args.days, "repeats": args.repeats,
                 "polars_threads": pl.thread_pool_size()}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)

        def metrics():
            traces, events = simulator.simulate(hosts=args.hosts, steps=steps, anomalies=args.hosts, seed=args.seed)
            traces.write_parquet(tmp / "traces.parquet", compression="zstd")
            return traces, events
        t_metrics, o_metrics, (traces, events) = timed(metrics, args.repeats)
        values = args.hosts * steps * N_METRICS
        out["metrics"] = {"values": values, "best_s": min(t_metrics), "median_s": statistics.median(t_metrics),
                          "values_per_s": values / min(t_metrics), "rows_per_s": args.hosts * steps / min(t_metrics),
                          "others_cores": o_metrics}
        out["metrics"]["own_cpu_s"] = min(CPU_S[id(metrics)])
        out["metrics"]["values_per_cpu_s"] = values / out["metrics"]["own_cpu_s"]

        def logs_to_parquet():
            logs = simulate_logs(traces, events, seed=args.seed, templates=templates)
            write_logs_parquet(logs, tmp / "logs.parquet")
            return logs
        t_logs, o_logs, logs = timed(logs_to_parquet, args.repeats)
        cpu_logs = min(CPU_S[id(logs_to_parquet)])
        t_parts, o_parts, _ = timed(lambda: write_logs_parts(traces, events, tmp / "parts", seed=args.seed,
                                                             templates=templates), args.repeats)
        t_gen, o_gen, _ = timed(lambda: simulate_logs(traces, events, seed=args.seed, templates=templates),
                                args.repeats)
        lines = len(logs)
        parquet_bytes = (tmp / "logs.parquet").stat().st_size
        sub = logs.filter(pl.col("host") < 10)
        files = write_log_files(sub, tmp / "plain", templates)
        assert sum(p.stat().st_size for p in files) == _plain_bytes(sub, templates)  # the same count
        plain_bytes = _plain_bytes(logs, templates)
        host_days = args.hosts * args.days
        out["logs"] = {
            "lines": lines, "lines_per_host_day": lines / host_days,
            "to_parquet_best_s": min(t_logs), "to_parquet_median_s": statistics.median(t_logs),
            "lines_per_s": lines / min(t_logs), "lines_per_s_median": lines / statistics.median(t_logs),
            "parts_best_s": min(t_parts), "parts_lines_per_s": lines / min(t_parts),
            "parts_lines_per_s_median": lines / statistics.median(t_parts), "others_cores_parts": o_parts,
            "simulate_only_best_s": min(t_gen), "simulate_only_lines_per_s": lines / min(t_gen),
            "others_cores": o_logs, "others_cores_simulate_only": o_gen,
            "own_cpu_s": cpu_logs, "lines_per_cpu_s": lines / cpu_logs,
            "parquet_bytes_per_host_day": parquet_bytes / host_days,
            "plain_bytes_per_host_day": plain_bytes / host_days,
            "by_source": dict(logs.group_by("source").len().sort("source")
                              .select(pl.col("source").cast(pl.Utf8), "len").iter_rows()),
        }
    m, lg = out["metrics"], out["logs"]
    print(f"{args.hosts} hosts x {steps} steps ({args.days:g} days at 5 min), best of {args.repeats}")
    print(f"{'case':<40} {'figure':>20} {'others CPU':>12}")
    print(f"{'metrics: simulate + Parquet':<40} {m['values_per_s'] / 1e6:>12.1f} M val/s {_fmt(o_metrics):>12}")
    print(f"{'logs: simulate_logs + Parquet':<40} {lg['lines_per_s'] / 1e6:>11.2f} M lines/s {_fmt(o_logs):>12}"
          f"   (target >= {TARGET_LINES_PER_S / 1e6:.0f} M; median {lg['lines_per_s_median'] / 1e6:.2f} M)")
    print(f"{'logs: write_logs_parts (64-host parts)':<40} {lg['parts_lines_per_s'] / 1e6:>11.2f} M lines/s "
          f"{_fmt(o_parts):>12}   (median {lg['parts_lines_per_s_median'] / 1e6:.2f} M)")
    print(f"{'logs: simulate_logs only':<40} {lg['simulate_only_lines_per_s'] / 1e6:>11.2f} M lines/s "
          f"{_fmt(o_gen):>12}")
    print(f"{'per CPU second (own CPU time)':<40} {lg['lines_per_cpu_s'] / 1e6:>11.2f} M lines/s"
          f"   metrics {m['values_per_cpu_s'] / 1e6:.1f} M val/s")
    print(f"{'lines per host-day':<40} {lg['lines_per_host_day']:>20,.0f}")
    print(f"{'Parquet bytes per host-day':<40} {lg['parquet_bytes_per_host_day'] / 1e3:>17.1f} KB")
    print(f"{'plain log files bytes per host-day':<40} {lg['plain_bytes_per_host_day'] / 1e3:>17.1f} KB")
    print(f"lines by source: {lg['by_source']}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return 0


def _plain_bytes(logs, templates) -> int:
    """Bytes of the plain log files of `logs`: every rendered line and its newline."""
    from simulator.logs import render_lines

    return int(render_lines(logs, templates).str.len_bytes().sum()) + len(logs)


def _fmt(others: list[float | None]) -> str:
    vals = [o for o in others if o is not None]
    return f"{max(vals):.2f}" if vals else "n/a"


if __name__ == "__main__":
    raise SystemExit(main())
