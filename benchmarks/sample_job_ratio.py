"""Warm wall time and peak memory of the sample job, this checkout against a baseline, side by side.

    PYTHONPATH=$PWD python benchmarks/sample_job_ratio.py --baseline /work/wt-base --repeats 5

Runs `python -m simulator --samples N --quiet --output-dir DIR` in the baseline checkout and in this
one (each with its own source on PYTHONPATH and its own output folder), one untimed warm-up run each
(numba's cache, the OS file cache, a previous dataset to back up), then `--repeats` timed runs of
each, alternating (`--before DIR` adds a third checkout to the same rounds). Prints each run, the
median wall and CPU time of each side, their ratios to the baseline and the peak RSS of each side
(the child's own, from wait4). The machine is shared: only the ratio of
one run means anything; the "others' CPU" column says how busy the rest of the machine was.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import CpuMeter

HERE = Path(__file__).resolve().parent.parent


def run_once(tree: Path, out_dir: Path, samples: int, extra: list[str]) -> tuple[float, float, int, float | None]:
    """(wall s, CPU s, peak RSS bytes, others' cores) of one run of the sample job from `tree`."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    cmd = [sys.executable, "-m", "simulator", "--samples", str(samples), "--quiet", "--output-dir", str(out_dir),
           *extra]
    meter = CpuMeter()
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=tree, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode(errors="replace")
    proc.stderr.close()
    if proc.returncode:
        raise SystemExit(f"{tree}: exit {proc.returncode}: {err.strip()[-2000:]}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss * 1024, meter.others_cores()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    p.add_argument("--baseline", type=Path, required=True, help="checkout to compare against (e.g. a worktree)")
    p.add_argument("--tree", type=Path, default=HERE, help="the checkout measured (default: this one)")
    p.add_argument("--before", type=Path, default=None,
                   help="also measure this checkout (e.g. the tree before a change) in the same alternation")
    p.add_argument("--repeats", type=int, default=5, help="timed runs of each side (default 5)")
    p.add_argument("--samples", type=int, default=20000)
    p.add_argument("--work-dir", type=Path, default=None, help="where the output folders go (default: a temp dir)")
    p.add_argument("extra", nargs="*", help="more options for both runs (after --)")
    args = p.parse_args(argv)
    sides = {"baseline": args.baseline.resolve(), **({"before": args.before.resolve()} if args.before else {}),
             "this": args.tree.resolve()}
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="sample_job_ratio."))
    outs = {name: work / name for name in sides}
    for name, tree in sides.items():  # warm-up: numba cache, file cache, a previous dataset to back up
        run_once(tree, outs[name], args.samples, args.extra)
    times: dict[str, list[float]] = {n: [] for n in sides}
    cpu: dict[str, list[float]] = {n: [] for n in sides}
    rss: dict[str, list[int]] = {n: [] for n in sides}
    print(f"{'run':>3} {'side':<8} {'wall s':>7} {'CPU s':>6} {'peak RSS MB':>11} {'others CPU':>10}")
    for i in range(args.repeats):
        order = list(sides) if i % 2 == 0 else list(sides)[::-1]
        for name in order:
            wall, used, peak, others = run_once(sides[name], outs[name], args.samples, args.extra)
            times[name].append(wall)
            cpu[name].append(used)
            rss[name].append(peak)
            print(f"{i + 1:>3} {name:<8} {wall:7.2f} {used:6.2f} {peak / 1e6:11.0f} "
                  f"{'-' if others is None else f'{others:.2f}':>10}", flush=True)
    med = {n: statistics.median(t) for n, t in times.items()}
    med_cpu = {n: statistics.median(t) for n, t in cpu.items()}
    print()
    for name, tree in sides.items():
        print(f"{name:<8} {tree}: median wall {med[name]:.2f} s, CPU {med_cpu[name]:.2f} s, "
              f"peak RSS {max(rss[name]) / 1e6:.0f} MB")
    for name in [n for n in sides if n != "baseline"]:
        print(f"wall ratio {name}/baseline: {med[name] / med['baseline']:.3f} (target <= 1.10); pairwise "
              f"{', '.join(f'{a / b:.2f}' for a, b in zip(times[name], times['baseline']))}; "
              f"CPU ratio {med_cpu[name] / med_cpu['baseline']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
