"""Bounded memory at any size: a 1e9-value sharded job streamed to Parquet, rate over the run.

Runs `python -m simulator traces --output DIR` in-process through `simulator.scaleout.run_job` (local
engine) for a job of about `--values` labelled values, records the time at which each host range
finishes, and prints the rate in each quarter of the run (it must not fall as the run grows), the
peak RSS of the process (must stay under 2 GB) and the size on disk.

    python benchmarks/bench_stream.py                    # 1e9 values: 2-4 minutes on 2 cores, ~1.4 GB on disk
    python benchmarks/bench_stream.py --values 1e8       # a quicker run
"""

from __future__ import annotations

import argparse
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import CpuMeter  # noqa: E402
from simulator.catalogue import N_METRICS  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--values", type=float, default=1e9)
    ap.add_argument("--steps", type=int, default=105_120, help="steps per host (default: a year at 5 minutes)")
    ap.add_argument("--dir", type=Path, default=None, help="output parent (default: a temporary directory)")
    ap.add_argument("--keep", action="store_true", help="keep the output")
    args = ap.parse_args()

    from simulator.config import load_config
    from simulator.scaleout import run_job
    from simulator.shards import make_job

    cfg = load_config()
    hosts = max(1, round(args.values / (args.steps * N_METRICS)))
    job = make_job(cfg, hosts, args.steps, 1)
    parent = Path(args.dir or tempfile.mkdtemp(prefix="bench_stream_"))
    out = parent / "traces"
    run_job(make_job(cfg, 2, 300, 1), parent / "warm")  # kernels compiled before timing
    print(f"job: {hosts} hosts x {args.steps} steps = {job.values / 1e9:.2f} G values; {job.n_ranges} host "
          f"ranges x {job.n_chunks} chunks of {job.shard_hosts} hosts x {job.shard_steps} steps", flush=True)
    marks = []
    meter = CpuMeter()
    start = time.perf_counter()

    def progress(done: int, total: int) -> None:
        marks.append((done, time.perf_counter() - start))
        print(f"\r{done}/{total} host ranges, {time.perf_counter() - start:.0f} s", end="", file=sys.stderr, flush=True)

    manifest = run_job(job, out, progress=progress)
    wall = time.perf_counter() - start
    print(file=sys.stderr)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    size = sum(p.stat().st_size for p in out.iterdir())
    done_values = [0] + [sum((job.host_range(r)[1] - job.host_range(r)[0]) * job.steps * N_METRICS for r in range(d))
                         for d, _ in marks]
    times = [0.0] + [t for _, t in marks]
    quarters = []
    n = len(marks)
    for q in range(4):
        a, b = q * n // 4, (q + 1) * n // 4
        if b > a:
            quarters.append((done_values[b] - done_values[a]) / (times[b] - times[a]) / 1e6)
    noise = meter.others_cores()
    print(f"\n| values | wall s | M values/s | rate by quarter of the run (M values/s) | peak RSS MB | "
          f"on disk GB | bytes/value | others' CPU |")
    print("|---|---|---|---|---|---|---|---|")
    print(f"| {manifest['values']:,} | {wall:.1f} | {manifest['values'] / wall / 1e6:.1f} | "
          f"{' / '.join(f'{x:.1f}' for x in quarters)} | {peak_mb:.0f} | {size / 1e9:.2f} | "
          f"{size / manifest['values']:.2f} | {noise if noise is None else round(noise, 2)} |")
    if not args.keep:
        shutil.rmtree(parent, ignore_errors=True)
    return 0 if peak_mb < 2048 else 1


if __name__ == "__main__":
    sys.exit(main())
