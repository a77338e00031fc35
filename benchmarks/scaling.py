"""Cost against size: `python -m simulator --samples N` for N from 1e3 to 1e6, time and peak memory.

Each size runs in a fresh process (warm numba cache; one untimed run first), its wall time and the
child's peak RSS are recorded, and the script prints a table with the time per sample and a fitted
log-log slope (1.0 = linear) and a linear fit of memory, then writes a PNG plot of time and memory against samples.

    python benchmarks/scaling.py                         # 1e3 .. 1e6: about 3 minutes on 2 cores
    python benchmarks/scaling.py --sizes 1000,10000 --png /tmp/scaling.png
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CHILD = ("import resource, runpy, sys; sys.argv = ['simulator'] + sys.argv[1:]\n"
         "try:\n    runpy.run_module('simulator', run_name='__main__')\nexcept SystemExit as e:\n    code = e.code\n"
         "print('MAXRSS_KB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\n"
         "sys.exit(code)")


def run(samples: int, out: Path) -> tuple[float, float]:
    cmd = [sys.executable, "-c", CHILD, "--samples", str(samples), "--output-dir", str(out), "--quiet"]
    t = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"--samples {samples} failed: {proc.stderr[-500:]}")
    rss = [int(line.split()[1]) for line in proc.stderr.splitlines() if line.startswith("MAXRSS_KB")][0]
    return wall, rss / 1024


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1000,3000,10000,30000,100000,300000,1000000")
    ap.add_argument("--repeats", type=int, default=1, help="runs per size (best time, max memory)")
    ap.add_argument("--png", type=Path, default=ROOT / "benchmarks" / "scaling.png")
    args = ap.parse_args()
    sizes = [int(float(s)) for s in args.sizes.split(",")]
    scratch = Path(tempfile.mkdtemp(prefix="scaling_"))
    run(1000, scratch / "warm")
    rows = []
    for n in sizes:
        walls, rsss = [], []
        for _ in range(args.repeats):
            out = scratch / f"n{n}"
            wall, rss = run(n, out)
            walls.append(wall)
            rsss.append(rss)
            shutil.rmtree(out, ignore_errors=True)
        rows.append((n, min(walls), max(rsss)))
        print(f"{n:>9,} samples: {min(walls):7.2f} s, {max(rsss):6.0f} MB", flush=True)
    shutil.rmtree(scratch, ignore_errors=True)
    n = np.array([r[0] for r in rows], float)
    t = np.array([r[1] for r in rows])
    m = np.array([r[2] for r in rows])
    # time = fixed + per-sample cost, fitted on relative error (weights 1/t) so that every size counts
    per_sample, fixed = np.polyfit(n, t, 1, w=1 / t)
    mem_per_sample, mem_fixed = np.polyfit(n, m, 1, w=1 / m)
    big = n >= 30000  # above the fixed start-up cost
    slope_t = np.polyfit(np.log(n[big]), np.log(t[big]), 1)[0] if big.sum() >= 2 else float("nan")
    print("\n| samples | wall s | us per sample | peak RSS MB |")
    print("|---|---|---|---|")
    for (size, wall, rss) in rows:
        print(f"| {size:,} | {wall:.2f} | {wall / size * 1e6:.1f} | {rss:.0f} |")
    print(f"\ntime: {fixed:.2f} s fixed + {per_sample * 1e6:.1f} us per sample (fit on relative error); log-log "
          f"slope over 3e4..: {slope_t:.2f} (1.0 = linear)")
    print(f"memory: {mem_fixed:.0f} MB fixed + {mem_per_sample * 1e6 / 1024:.2f} KB per sample")
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    grid = np.geomspace(n.min(), n.max(), 100)
    a.loglog(n, t, "o-", label="measured")
    a.loglog(grid, fixed + per_sample * grid, "--",
             label=f"{fixed:.2f} s + {per_sample * 1e6:.0f} us x samples")
    a.set_xlabel("samples")
    a.set_ylabel("wall time, s")
    a.set_title("python -m simulator --samples N: time")
    a.legend()
    b.plot(n / 1e3, m, "o-", label="measured")
    b.plot(grid / 1e3, mem_fixed + mem_per_sample * grid, "--",
           label=f"{mem_fixed:.0f} MB + {mem_per_sample * 1e6 / 1024:.2f} KB x samples")
    b.set_xlabel("thousand samples")
    b.set_ylabel("peak RSS, MB")
    b.set_title("peak memory (linear axes)")
    b.legend()
    fig.tight_layout()
    fig.savefig(args.png, dpi=100)
    print(f"wrote {args.png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
