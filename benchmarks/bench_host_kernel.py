"""The host kernel against the one of an earlier commit (28 positional arguments), side by side in one
process on the same inputs: identical outputs, and the CPU time of each (interleaved runs).

    python benchmarks/bench_host_kernel.py --baseline 8cb1a88          # the last commit before the split
    python benchmarks/bench_host_kernel.py --baseline 8cb1a88 --hosts 40 --steps 2016 --repeats 9

The baseline's `simulator/_kernels.py` is read with `git show` into a temporary folder (its relative
imports pointed at the installed package) and compiled there.  CPU time of the process, not wall time:
on a shared machine, waiting for a core is not the kernel's cost.  Run with NUMBA_NUM_THREADS=1 to time
one thread; with NUMBA_CACHE_DIR set to an empty folder, the first call shows each kernel's compile time.
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from simulator import _kernels as current  # noqa: E402
from simulator._rng import host_seeds  # noqa: E402
from simulator.catalogue import N_METRICS  # noqa: E402
from simulator.config import load_config  # noqa: E402
from simulator.events import plan_events  # noqa: E402
from simulator.population import build_population  # noqa: E402


def baseline_kernels(revision: str, folder: Path):
    """The kernel module of `revision`, importable on its own."""
    source = subprocess.run(["git", "show", f"{revision}:simulator/_kernels.py"], cwd=ROOT, check=True,
                            capture_output=True, text=True).stdout
    source = re.sub(r"^from \.(\w+) import", r"from simulator.\1 import", source, flags=re.M)
    path = folder / f"kernels_{revision}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    ap.add_argument("--baseline", required=True, help="git revision of the kernel to compare with")
    ap.add_argument("--hosts", type=int, default=40)
    ap.add_argument("--steps", type=int, default=2016)
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--seed", type=int, default=5)
    args = ap.parse_args()
    cfg = load_config()
    hosts, steps, dt = args.hosts, args.steps, cfg.simulation.interval_s
    start_epoch = float(cfg.simulation.start_epoch_s)
    population = build_population(cfg, hosts, args.seed)
    plan = plan_events(cfg, population, hosts, steps, seed=args.seed, interval_s=dt)
    ptr = plan.host_pointers(hosts).astype(np.int64)
    seeds = host_seeds(args.seed, 0, hosts)
    res, lower, upper = (np.array([getattr(m, a) for m in cfg.metrics], float)
                         for a in ("resolution", "lower", "upper"))
    ids = np.arange(len(plan.start), dtype=np.int64)
    masks, primary = plan.affected_masks(), plan.primary_metrics()
    state = np.zeros((hosts, current.N_STATE))

    def outputs():
        n = len(ids)
        return (np.empty((N_METRICS, hosts, steps), np.float32), np.empty((N_METRICS, hosts, steps), np.float32),
                np.empty((N_METRICS, hosts, steps), np.int32), np.empty((N_METRICS, hosts)), np.empty(n),
                np.empty(n, np.int64), np.empty(n, np.int64), np.empty(n, np.int64), np.empty((hosts, current.N_STATE)))

    with tempfile.TemporaryDirectory() as tmp:
        old = baseline_kernels(args.baseline, Path(tmp))

        def run_old():
            o = outputs()
            if hasattr(old, "TimeGrid"):  # a baseline after the split takes records, as the current kernel
                old.simulate_hosts(
                    seeds, population.params, old.TimeGrid(0, steps, float(dt), start_epoch),
                    old.Reporting(res, lower, upper),
                    old.EventInputs(ptr, plan.start, plan.length, plan.profile_row, ids, masks, primary, plan.profiles),
                    old.ChunkState(state, False, o[8]), old.TraceOutputs(*o[:4]), old.EventOutputs(*o[4:8]))
            else:
                old.simulate_hosts(seeds, population.params, 0, steps, dt, start_epoch, res, lower, upper, ptr,
                                   plan.start, plan.length, plan.profile_row, ids, masks, primary, plan.profiles, state,
                                   False, *o)
            return o

        def run_new():
            o = outputs()
            current.simulate_hosts(
                seeds, population.params, current.TimeGrid(0, steps, float(dt), start_epoch),
                current.Reporting(res, lower, upper),
                current.EventInputs(ptr, plan.start, plan.length, plan.profile_row, ids, masks, primary, plan.profiles),
                current.ChunkState(state, False, o[8]), current.TraceOutputs(*o[:4]), current.EventOutputs(*o[4:8]))
            return o

        t = time.perf_counter()
        first_old = run_old()
        compile_old = time.perf_counter() - t
        t = time.perf_counter()
        first_new = run_new()
        compile_new = time.perf_counter() - t
        print(f"first call (compilation, or loading from the numba cache, and one run), wall seconds: baseline "
              f"{compile_old:.1f}, current {compile_new:.1f}")
        names = ("values", "base", "labels", "host_std", "peak", "peak_metric", "first", "last", "end state")
        differ = [n for n, a, b in zip(names, first_old, first_new) if not np.array_equal(a, b, equal_nan=True)]
        print("outputs:", f"DIFFER in {', '.join(differ)}" if differ else "identical")
        t_old, t_new = [], []
        for _ in range(args.repeats):
            t = time.process_time()
            run_old()
            t_old.append(time.process_time() - t)
            t = time.process_time()
            run_new()
            t_new.append(time.process_time() - t)
    points = hosts * steps * N_METRICS
    print(f"{hosts} hosts x {steps} steps, {args.repeats} interleaved runs each, CPU seconds")
    for name, t in ((f"baseline {args.baseline}", t_old), ("current", t_new)):
        print(f"  {name:<18} best {min(t):.4f}  median {np.median(t):.4f}  ({points / min(t) / 1e6:.1f} M points/s)")
    print(f"  current / baseline: best {min(t_new) / min(t_old):.3f}, median {np.median(t_new) / np.median(t_old):.3f}")


if __name__ == "__main__":
    main()
