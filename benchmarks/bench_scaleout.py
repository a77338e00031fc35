"""Sharded trace jobs: throughput on the local engine and on Dask with 1 and 2 workers, side by side.

One job (default 1,000 hosts x 8,064 steps = 88.7 M labelled values, cut into 16 host ranges x 2
time chunks by `--shard-hosts/--shard-steps`) is written to Parquet parts by each engine in turn,
interleaved over `--repeats` rounds; the table gives values/s (best, median), the ratio to the local engine, peak
memory per process, and bytes per value on disk, and checks that every engine wrote the same bytes.
It ends with an extrapolation to a 1e11-value job from the measured per-worker rate.

    python benchmarks/bench_scaleout.py                  # about 2-3 minutes on 2 cores
    python benchmarks/bench_scaleout.py --hosts 200 --repeats 1   # smoke run

Needs dask.distributed (`pip install -e ".[dask]"`).
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import CpuMeter  # noqa: E402
from simulator.catalogue import N_METRICS  # noqa: E402


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _digest(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.iterdir()):
        h.update(p.name.encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hosts", type=int, default=1000)
    ap.add_argument("--steps", type=int, default=8064)
    ap.add_argument("--shard-hosts", type=int, default=None, help="default: the CLI's (64)")
    ap.add_argument("--shard-steps", type=int, default=4032)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--dir", type=Path, default=None, help="scratch directory (default: a temporary one)")
    args = ap.parse_args()

    from distributed import Client, LocalCluster

    logging.getLogger("distributed").setLevel(logging.ERROR)

    from simulator.config import load_config
    from simulator.scaleout import run_job
    from simulator.shards import make_job

    cfg = load_config()
    job = make_job(cfg, args.hosts, args.steps, args.seed, shard_hosts=args.shard_hosts, shard_steps=args.shard_steps)
    scratch = Path(args.dir or tempfile.mkdtemp(prefix="bench_scaleout_"))
    print(f"job: {args.hosts} hosts x {args.steps} steps = {job.values / 1e6:.1f} M values, "
          f"{job.n_ranges} host ranges x {job.n_chunks} time chunks ({job.shard_hosts} hosts x "
          f"{job.shard_steps} steps per part); {os.cpu_count()} cores", flush=True)
    # warm up: kernels compiled and cached before anything is timed
    run_job(make_job(cfg, 4, 300, 1), scratch / "warm")

    clusters = {}
    for n in (1, 2):
        cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, host="127.0.0.1",
                               dashboard_address="127.0.0.1:0", silence_logs=logging.ERROR)
        clusters[n] = (cluster, Client(cluster))
        run_job(make_job(cfg, 4, 300, 1), scratch / f"warm{n}", engine="dask", scheduler=cluster.scheduler_address)

    cases = {"local engine (in process, numba threads)": dict(engine="local"),
             "dask, 1 worker process": dict(engine="dask", scheduler=clusters[1][0].scheduler_address),
             "dask, 2 worker processes": dict(engine="dask", scheduler=clusters[2][0].scheduler_address)}
    times = {k: [] for k in cases}
    others = {k: [] for k in cases}
    digests, sizes = {}, {}
    for _ in range(args.repeats):
        for name, kw in cases.items():
            out = scratch / "out"
            if out.exists():
                shutil.rmtree(out)
            meter = CpuMeter()
            t = time.perf_counter()
            run_job(job, out, **kw)
            times[name].append(time.perf_counter() - t)
            others[name].append(meter.others_cores())
            digests[name] = _digest(out)
            sizes[name] = sum(p.stat().st_size for p in out.iterdir())
    worker_peak = {n: max(c.run(lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024).values())
                   for n, (_, c) in clusters.items()}
    for cluster, client in clusters.values():
        client.close()
        cluster.close()

    base = min(times["local engine (in process, numba threads)"])
    rows = []
    for name in cases:
        best, med = min(times[name]), statistics.median(times[name])
        peak = _peak_rss_mb() if name.startswith("local") else worker_peak[1 if "1 worker" in name else 2]
        noise = [x for x in others[name] if x is not None]
        rows.append((name, job.values / best / 1e6, job.values / med / 1e6, base / best, peak,
                     max(noise) if noise else float("nan"), sizes[name] / job.values, digests[name]))
    print("\n| engine | M values/s best | median | ratio to local | peak RSS per process MB | others' CPU (cores) "
          "| bytes/value | output sha256 |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]:.1f} | {r[2]:.1f} | {r[3]:.2f} | {r[4]:.0f} | {r[5]:.2f} | {r[6]:.2f} | {r[7]} |")
    same = len(set(digests.values())) == 1
    print(f"\nsame bytes on every engine: {'yes' if same else 'NO'}")
    one = rows[1][1] * 1e6
    two = rows[2][1] * 1e6
    eff = two / (2 * one)
    big = 1e11
    part_values = job.shard_hosts * job.shard_steps * N_METRICS
    print(f"\nextrapolation to 1e11 values (per-worker rate {one / 1e6:.1f} M values/s measured with 1 worker, "
          f"2-worker efficiency {eff:.2f}):")
    for workers in (2, 16, 64, 256):
        rate = one * workers * min(eff, 1.0)
        print(f"- {workers} workers: {big / rate / 3600:.2f} h, {big * rows[0][6] / 1e9:.0f} GB of Parquet, "
              f"{big / part_values:,.0f} parts of {part_values / 1e6:.1f} M values; memory per worker about "
              f"{worker_peak[1]:.0f} MB")
    if not args.dir:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
