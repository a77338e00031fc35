"""Throughput, memory and thread scaling of the metrics simulator, in one run, as one table.

    python benchmarks/bench_simulator.py                 # full size (1000 hosts x 4032 steps, 20000 samples)
    python benchmarks/bench_simulator.py --quick         # small sizes, a smoke run
    python benchmarks/bench_simulator.py --json out.json # also write every figure as JSON

What it measures (all warm: numba kernels are loaded from the on-disk cache by a warm-up call first):

1. labelled values per second generated in memory (hosts x steps x 11 metrics) through the kernel
   path `build_population + plan_events + run_kernel(keep_base=False)`, and through `simulate()`
   (which also builds the Polars frame with per-metric label columns);
2. the floor: `numpy.random.default_rng(0).standard_normal(n)` for the same number of values;
3. end to end: `generate_samples(n, staging_dir=...) + write_metrics_dataset(...)` in this process,
   and `python -m simulator --samples n --output-dir TMP` as a subprocess (wall time);
4. peak memory (max RSS, via getrusage(RUSAGE_CHILDREN) in a small wrapper process) of the CLI run
   and of a process that only runs the kernel path at the in-memory size;
5. the kernel with 1 numba thread vs all of them: values/s, speed-up, identical output;
6. JSON export: `write_metrics_dataset` of a --json-samples sample set (values = samples x the 18
   scalar fields of a sample: 11 metrics, id, timestamp, status, anomaly_type, explanation,
   session_id, batch_id), side by side with orjson encoding the same values column-wise (numeric
   columns as NumPy arrays, string columns as lists: an orjson-class encoder's rate on this data),
   and the export's encoding alone (the same chunks, not written: what the file write and fsync add
   is the difference);
7. where the end-to-end time goes (functions wrapped with timers in this process only; no simulator
   code is changed), warm in this process and cold in a fresh process.

Each timed case also reports "others' CPU": how many cores other processes kept busy meanwhile
(/proc/stat minus this benchmark's own CPU time), so a run on a noisy machine can be recognised.

Nothing here asserts a timing; the targets are printed beside the figures for reading.
The only assertion is that 1-thread and N-thread outputs are identical.
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import CpuMeter  # noqa: E402

N_METRICS = 11  # checked against simulator.catalogue.N_METRICS at run time

TARGET_VALUES_PER_S = 20e6      # issue: >= 20 M labelled values/s in one process on 2 cores
TARGET_CLI_S = 1.5              # issue: warm `python -m simulator --samples 20000` under 1.5 s
TARGET_JSON_VALUES_PER_S = 20e6  # issue: JSON export >= 20 M values/s (an orjson-class encoder)
JSON_FIELDS = 30                # scalar fields per exported sample (11 metrics + 7 others + 3 host + 9 targets),
                                # besides its context and history values (11 x (12 + 24) by default)
GUTENTAG_VALUES_PER_S = (2e6, 3e6)  # issue: GutenTAG, the strongest peer, for reference only

RSS_WRAPPER = (
    "import json, resource, subprocess, sys\n"
    "r = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL)\n"
    "print(json.dumps({'rc': r.returncode,"
    " 'maxrss_kb': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))\n"
)


# --------------------------------------------------------------------------------------- helpers

def timed(fn, repeat: int) -> list[float]:
    """Wall seconds of `repeat` calls of fn (the result is dropped before the next call)."""
    times = []
    for _ in range(repeat):
        gc.collect()
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
        del out
    return times


def measure(fn, repeat: int, work: float | None = None) -> dict:
    meter = CpuMeter()
    times = timed(fn, repeat)
    return summary(times, work, meter.others_cores())


def summary(times: list[float], work: float | None = None, others_cores: float | None = None) -> dict:
    best, med = min(times), statistics.median(times)
    row = {"best_s": best, "median_s": med, "runs": times, "others_cores": others_cores}
    if work is not None:
        row.update(work=work, rate_best=work / best, rate_median=work / med)
    return row


def max_rss_mb(cmd: list[str]) -> float:
    """Peak RSS (MB) of one subprocess: a wrapper runs it and reads getrusage(RUSAGE_CHILDREN)."""
    out = subprocess.run([sys.executable, "-c", RSS_WRAPPER, *cmd], check=True, capture_output=True,
                         text=True)
    res = json.loads(out.stdout.strip().splitlines()[-1])
    if res["rc"] != 0:
        raise RuntimeError(f"{cmd} exited with {res['rc']}")
    return res["maxrss_kb"] / 1024.0  # Linux reports kilobytes


class Probe:
    """Wrap module attributes with accumulating timers; `restore` puts the originals back."""

    def __init__(self):
        self.t: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self._undo = []

    def wrap(self, owner, attr: str, label: str) -> None:
        orig = owner.__dict__[attr] if isinstance(owner, type) else getattr(owner, attr)

        @functools.wraps(orig)
        def timed_call(*a, **k):
            t = time.perf_counter()
            try:
                return orig(*a, **k)
            finally:
                self.t[label] += time.perf_counter() - t
                self.calls[label] += 1

        setattr(owner, attr, timed_call)
        self._undo.append((owner, attr, orig))

    def restore(self) -> None:
        for owner, attr, orig in reversed(self._undo):
            setattr(owner, attr, orig)
        self._undo.clear()


# Top-level stages of generate_samples + export (exclusive of each other), then sub-stages.
STAGES = [
    ("load_config", "config: load + validate YAML"),
    ("population_plan", "build_population + plan_events"),
    ("run_kernel", "run_kernel (per block)"),
    ("  host_seeds", "  host_seeds (SeedSequence per host)"),
    ("  simulate_hosts", "  simulate_hosts (numba kernel)"),
    ("  event_table", "  event_table (Polars)"),
    ("select_points", "select_points (numba + rng.choice)"),
    ("sample_block", "_sample_block (gather + join)"),
    ("write_block", "staging: traces/labels Parquet"),
    ("  traces_table", "  traces_table (Arrow build)"),
    ("  labels_table", "  labels_table (Arrow build)"),
    ("  write_parquet_blocks", "  Parquet write + fsync"),
    ("finish_samples", "_finish_samples (shuffle, ids, texts)"),
    ("metadata", "_metadata"),
    ("staging_finish", "staging: events/samples/manifest"),
    ("export", "write_metrics_dataset (JSON + backup)"),
]


def instrument(probe: Probe) -> None:
    import simulator.api as api
    import simulator.engine as engine
    import simulator.staging as staging

    probe.wrap(api, "load_config", "load_config")
    probe.wrap(api, "build_population", "population_plan")
    probe.wrap(api, "plan_events", "population_plan")
    probe.wrap(api, "run_kernel", "run_kernel")
    probe.wrap(engine, "host_seeds", "  host_seeds")
    probe.wrap(engine, "simulate_hosts", "  simulate_hosts")
    probe.wrap(engine, "event_table", "  event_table")
    probe.wrap(api, "select_points", "select_points")
    probe.wrap(api, "_sample_block", "sample_block")
    probe.wrap(staging.Staging, "write_block", "write_block")
    probe.wrap(staging, "traces_table", "  traces_table")
    probe.wrap(staging, "labels_table", "  labels_table")
    probe.wrap(api, "_finish_samples", "finish_samples")
    probe.wrap(api, "_metadata", "metadata")
    probe.wrap(staging.Staging, "finish", "staging_finish")
    probe.wrap(os, "fsync", "fsync")  # datasafe's atomic writes: files and directories
    # write_parquet is used by both write_block and finish: attribute block writes only
    orig_write = staging.write_parquet

    def write_parquet(table, path, metadata=None):
        t = time.perf_counter()
        try:
            return orig_write(table, path, metadata)
        finally:
            if Path(path).name.startswith(("traces-", "labels-")):
                probe.t["  write_parquet_blocks"] += time.perf_counter() - t

    staging.write_parquet = write_parquet
    probe._undo.append((staging, "write_parquet", orig_write))


def breakdown_run(n_samples: int, out_dir: Path) -> dict:
    """One generate_samples + export with timers on its stages; returns seconds per stage."""
    import simulator
    from simulator.export import write_metrics_dataset

    probe = Probe()
    instrument(probe)
    try:
        t = time.perf_counter()
        result = simulator.generate_samples(n_samples, staging_dir=out_dir)
        t_gen = time.perf_counter() - t
        t1 = time.perf_counter()
        write_metrics_dataset(out_dir / "metrics_dataset.json", result.metadata, result.samples)
        probe.t["export"] += time.perf_counter() - t1
        total = time.perf_counter() - t
    finally:
        probe.restore()
    stages = {k: probe.t.get(k, 0.0) for k, _ in STAGES}
    stages["fsync"] = probe.t.get("fsync", 0.0)
    stages["fsync_calls"] = probe.calls.get("fsync", 0)
    top = sum(v for k, v in stages.items() if k in dict(STAGES) and not k.startswith(" "))
    stages["other"] = total - top
    stages["total"] = total
    stages["generate_samples"] = t_gen
    return stages


# --------------------------------------------------------------------------- measurement blocks

def kernel_path(cfg, hosts: int, steps: int, seed: int = 1):
    from simulator.engine import run_kernel
    from simulator.events import plan_events
    from simulator.population import build_population

    interval = cfg.simulation.interval_s
    population = build_population(cfg, hosts, seed)
    plan = plan_events(cfg, population, hosts, steps, seed=seed, interval_s=interval)  # one anomaly per host
    return run_kernel(cfg, population, plan, seed=seed, n_steps=steps, interval_s=interval, keep_base=False)


def bench_in_memory(cfg, args, res: dict) -> None:
    import numba
    import numpy as np
    import simulator
    from simulator.engine import run_kernel
    from simulator.events import plan_events
    from simulator.population import build_population

    hosts, steps, rep = args.hosts, args.steps, args.repeat
    n = hosts * steps * N_METRICS
    kernel_path(cfg, 4, 64)  # warm-up: loads (or compiles) the cached kernels
    full_threads = numba.get_num_threads()

    res["kernel_path"] = measure(lambda: kernel_path(cfg, hosts, steps), rep, n)

    # run_kernel alone, 1 thread vs all, same inputs; outputs must match exactly
    interval = cfg.simulation.interval_s
    pop = build_population(cfg, hosts, 1)
    plan = plan_events(cfg, pop, hosts, steps, seed=1, interval_s=interval)
    run = lambda: run_kernel(cfg, pop, plan, seed=1, n_steps=steps, interval_s=interval, keep_base=False)  # noqa: E731
    out, times = {}, {1: [], full_threads: []}
    meter = CpuMeter()
    try:
        for _ in range(rep):  # interleaved, so a noisy neighbour hits both settings alike
            for threads in times:
                numba.set_num_threads(threads)
                times[threads] += timed(run, 1)
        for threads in times:
            numba.set_num_threads(threads)
            out[threads] = run()[0]
    finally:
        numba.set_num_threads(full_threads)
    others = meter.others_cores()
    for threads, ts in times.items():
        res[f"run_kernel_{threads}t"] = summary(ts, n, others)
    same_values = np.array_equal(out[1].values, out[full_threads].values)
    same_labels = np.array_equal(out[1].labels, out[full_threads].labels)
    assert same_values and same_labels, "1-thread and N-thread kernel outputs differ"
    res["threads"] = {"n_threads": full_threads, "identical": bool(same_values and same_labels),
                      "speedup_best": res["run_kernel_1t"]["best_s"] / res[f"run_kernel_{full_threads}t"]["best_s"],
                      "speedup_median": res["run_kernel_1t"]["median_s"]
                      / res[f"run_kernel_{full_threads}t"]["median_s"]}
    del out, pop, plan

    if not args.no_simulate:
        simulator.simulate(4, 64, config=cfg, seed=1)
        res["simulate"] = measure(lambda: simulator.simulate(hosts, steps, config=cfg, seed=1), rep, n)

    # the floor: numpy's fastest normal generator, one thread, same number of values
    res["floor_f64"] = measure(lambda: np.random.default_rng(0).standard_normal(n), rep, n)
    res["floor_f32"] = measure(lambda: np.random.default_rng(0).standard_normal(n, dtype=np.float32), rep, n)


def bench_end_to_end(args, res: dict, work_dir: Path) -> None:
    import simulator
    from simulator.export import write_metrics_dataset

    n, rep = args.samples, args.repeat
    out_dir = work_dir / "inproc"

    def job():
        result = simulator.generate_samples(n, staging_dir=out_dir)
        write_metrics_dataset(out_dir / "metrics_dataset.json", result.metadata, result.samples)
        return result

    job()  # warm-up (kernels, Polars, pyarrow paths)
    res["e2e_inproc"] = measure(job, rep, n)
    # stage timings of single runs are noisy: keep the run with the smallest total
    res["breakdown_warm"] = min((breakdown_run(n, out_dir) for _ in range(rep)), key=lambda b: b["total"])

    # a fresh process each: imports and first calls (numba cache loads, lazy imports) included
    def cold_run():
        out = subprocess.run([sys.executable, __file__, "--child", "breakdown", "--samples", str(n),
                              "--child-dir", str(work_dir / "cold")], check=True, capture_output=True, text=True)
        return json.loads(out.stdout.strip().splitlines()[-1])

    res["breakdown_cold"] = min((cold_run() for _ in range(min(rep, 3))), key=lambda b: b["total"])

    if args.no_cli:
        return
    cli_dir = work_dir / "cli"
    cmd = [sys.executable, "-m", "simulator", "--samples", str(n), "--output-dir", str(cli_dir)]
    subprocess.run(cmd, check=True, capture_output=True)  # warm-up: kernels cached on disk
    res["cli"] = measure(lambda: subprocess.run(cmd, check=True, capture_output=True), rep, n)
    res["python_startup"] = measure(lambda: subprocess.run([sys.executable, "-c", "pass"], check=True), rep)
    res["import_simulator"] = measure(lambda: subprocess.run([sys.executable, "-c", "import simulator"], check=True),
                                      rep)


def bench_json(args, res: dict, work_dir: Path) -> None:
    import orjson
    import simulator
    from simulator.catalogue import METRICS
    from simulator.export import _encoded_chunks, training_frame, window_arrays, write_metrics_dataset

    result = simulator.generate_samples(args.json_samples, seed=1)
    windows = window_arrays(result.samples)
    values = args.json_samples * (JSON_FIELDS + windows.fine[0].size + windows.coarse[0].size)
    runs = iter(range(10**6))

    def ours():
        path = work_dir / f"json-{next(runs)}.json"   # a fresh file: no backup copy in the timing
        write_metrics_dataset(path, result.metadata, result.samples)
        path.unlink()

    def encode_only():   # the same encoding, bytes dropped: what the disk write and fsync add is the rest
        full = training_frame(result.samples)
        return sum(len(chunk) for chunk in _encoded_chunks(full, result.samples))

    frame = training_frame(result.samples).unnest("metrics")
    columns = {c: frame[c].to_numpy() if c in METRICS else frame[c].to_list() for c in frame.columns}

    def baseline():
        return orjson.dumps(columns, option=orjson.OPT_SERIALIZE_NUMPY)

    ours(), baseline()  # warm-up
    for r in range(args.repeat):  # interleaved, so that noise hits both alike
        for key, fn in (("json_export", ours), ("json_encode", encode_only), ("json_orjson", baseline)):
            meter = CpuMeter()
            t = time.perf_counter()
            fn()
            res.setdefault(key + "_runs", []).append((time.perf_counter() - t, meter.others_cores()))
    for key in ("json_export", "json_encode", "json_orjson"):
        runs_ = res.pop(key + "_runs")
        res[key] = summary([t for t, _ in runs_], values, max(o for _, o in runs_))


def bench_memory(args, res: dict, work_dir: Path) -> None:
    res["rss_import_mb"] = max_rss_mb([sys.executable, "-c", "import simulator"])
    res["rss_kernel_mb"] = max_rss_mb([sys.executable, __file__, "--child", "kernel",
                                       "--hosts", str(args.hosts), "--steps", str(args.steps)])
    res["rss_kernel_arrays_mb"] = args.hosts * args.steps * N_METRICS * (4 + 4) / 2**20  # values + labels
    if not args.no_cli:
        res["rss_cli_mb"] = max_rss_mb([sys.executable, "-m", "simulator", "--samples", str(args.samples),
                                        "--output-dir", str(work_dir / "cli-rss")])


# ----------------------------------------------------------------------------------- reporting

def fmt_rate(x: float, unit: str) -> str:
    return f"{x / 1e6:,.1f} M {unit}/s" if x >= 1e6 else f"{x:,.0f} {unit}/s"


def report(res: dict, args) -> str:
    n = args.hosts * args.steps * N_METRICS
    rows: list[tuple[str, ...]] = []

    def others(r) -> str:
        return "?" if r.get("others_cores") is None else f"{r['others_cores']:.2f}"

    def rate_row(key, label, unit, target=""):
        if key not in res:
            return
        r = res[key]
        rows.append((label, f"{r['best_s']:.3f}", f"{r['median_s']:.3f}", fmt_rate(r["rate_best"], unit)
                     + f" (median {fmt_rate(r['rate_median'], unit)})", others(r), target))

    gt = f"GutenTAG ~{GUTENTAG_VALUES_PER_S[0] / 1e6:.0f}-{GUTENTAG_VALUES_PER_S[1] / 1e6:.0f} M values/s"
    tgt = f">= {TARGET_VALUES_PER_S / 1e6:.0f} M values/s; {gt}"
    t = res["threads"]["n_threads"]
    rate_row("kernel_path", f"kernel path ({t} threads): population + plan + run_kernel", "values", tgt)
    rate_row(f"run_kernel_{t}t", f"run_kernel only, {t} threads", "values", tgt)
    rate_row("run_kernel_1t", "run_kernel only, 1 thread", "values")
    rate_row("simulate", "simulate() -> Polars frame with label columns", "values")
    rate_row("floor_f64", "floor: default_rng(0).standard_normal(n), float64", "values")
    rate_row("floor_f32", "floor: default_rng(0).standard_normal(n, float32)", "values")
    kp = res["kernel_path"]["rate_best"]
    rows.append(("ratio kernel path / floor float64 (best)", "", "",
                 f"{kp / res['floor_f64']['rate_best']:.2f}x", "", "1.0 = as fast as drawing normals"))
    rows.append(("ratio kernel path / floor float32 (best)", "", "",
                 f"{kp / res['floor_f32']['rate_best']:.2f}x", "", ""))
    th = res["threads"]
    rows.append((f"thread speed-up run_kernel, 1 -> {t} threads", "", "",
                 f"{th['speedup_best']:.2f}x best, {th['speedup_median']:.2f}x median", "",
                 f"identical: {'yes' if th['identical'] else 'NO'}"))
    if "json_export" in res:
        rate_row("json_export", f"JSON export: write_metrics_dataset, {args.json_samples:,} samples x "
                 f"{JSON_FIELDS} fields", "values", f">= {TARGET_JSON_VALUES_PER_S / 1e6:.0f} M values/s")
        rate_row("json_encode", "  of which: encoding only (same chunks, not written)", "values")
        rate_row("json_orjson", "  side by side: orjson.dumps of the same values, column-wise", "values")
        rows.append(("ratio JSON export / orjson (best)", "", "",
                     f"{res['json_export']['rate_best'] / res['json_orjson']['rate_best']:.2f}x", "", ""))
    rate_row("e2e_inproc", f"generate_samples({args.samples}) + write_metrics_dataset, in process", "samples")
    rate_row("cli", f"python -m simulator --samples {args.samples} (subprocess wall)", "samples",
             f"< {TARGET_CLI_S} s warm" if args.samples == 20000 else "")
    for key, label in (("python_startup", "  of which: python -c pass (subprocess wall)"),
                       ("import_simulator", "  of which: python -c 'import simulator' (wall)")):
        if key in res:
            rows.append((label, f"{res[key]['best_s']:.3f}", f"{res[key]['median_s']:.3f}", "",
                         others(res[key]), ""))
    rows.append(("peak RSS: python -c 'import simulator'", "", "", f"{res['rss_import_mb']:,.0f} MB", "", ""))
    rows.append((f"peak RSS: kernel path {args.hosts} x {args.steps} (fresh process)", "", "",
                 f"{res['rss_kernel_mb']:,.0f} MB", "",
                 f"values+labels arrays: {res['rss_kernel_arrays_mb']:,.0f} MB"))
    if "rss_cli_mb" in res:
        rows.append((f"peak RSS: python -m simulator --samples {args.samples}", "", "",
                     f"{res['rss_cli_mb']:,.0f} MB", "", ""))

    head = ("measurement", "best s", "median s", "rate", "others' CPU", "target / note")
    lines = [f"{args.hosts} hosts x {args.steps} steps x {N_METRICS} metrics = {n:,} values; "
             f"{args.samples} samples; best and median of {args.repeat}", "",
             "| " + " | ".join(head) + " |", "|" + "|".join(["---"] * len(head)) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]

    lines += ["", "others' CPU: cores busy with other processes on the machine while the case ran "
                  "(from /proc/stat minus this benchmark's own CPU time); a noise gauge."]
    lines += ["", f"Where the end-to-end time goes (generate_samples({args.samples}) + export; seconds; "
                  f"the fastest of {args.repeat} warm runs and of {min(args.repeat, 3)} fresh processes):", "",
              "| stage | warm, in process | cold, fresh process |", "|---|---|---|"]
    warm, cold = res["breakdown_warm"], res["breakdown_cold"]
    for key, label in [("import", "import simulator (+ export)")] + STAGES + [("other", "other (untimed glue)"),
                                                                            ("total", "total")]:
        w = f"{warm[key]:.3f}" if key in warm else "-"
        c = f"{cold[key]:.3f}" if key in cold else "-"
        lines.append(f"| {label} | {w} | {c} |")
    lines.append(f"| fsync, all files ({warm['fsync_calls']} calls; inside the stages above) "
                 f"| {warm['fsync']:.3f} | {cold['fsync']:.3f} |")
    yn = lambda b: "yes" if b else "no"  # noqa: E731
    lines += ["", f"Cold process: pandas imported during the run: {yn(cold['pandas_imported'])}; "
                  f"scipy.linalg imported: {yn(cold['scipy_linalg_imported'])}."]
    if "cli" in res:
        fixed = res["cli"]["best_s"] - res["e2e_inproc"]["best_s"]
        lines.append(f"Fixed cost of one CLI run (CLI best - in-process warm best): {fixed:.2f} s "
                     f"of {res['cli']['best_s']:.2f} s.")
    return "\n".join(lines)


# --------------------------------------------------------------------------------- child modes

def child(args) -> None:
    if args.child == "kernel":
        from simulator.config import load_config
        traces, _ = kernel_path(load_config(None), args.hosts, args.steps)
        print(json.dumps({"values": int(traces.values.size)}))
    elif args.child == "breakdown":
        t = time.perf_counter()
        import simulator  # noqa: F401
        import simulator.export  # noqa: F401
        t_import = time.perf_counter() - t
        stages = breakdown_run(args.samples, Path(args.child_dir))
        stages["import"] = t_import
        stages["total"] += t_import
        # lazy imports the run triggered (pyarrow imports pandas on pa.array(numpy) if installed;
        # numba imports scipy's BLAS bindings when it loads the cached kernels, if scipy is installed)
        stages["pandas_imported"] = "pandas" in sys.modules
        stages["scipy_linalg_imported"] = "scipy.linalg" in sys.modules
        print(json.dumps(stages))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--hosts", type=int, default=1000, help="hosts in the in-memory case (default 1000)")
    p.add_argument("--steps", type=int, default=4032, help="steps per host (default 4032 = 14 days at 5 min)")
    p.add_argument("--samples", type=int, default=20000, help="samples in the end-to-end case (default 20000)")
    p.add_argument("--repeat", type=int, default=5, help="timed runs per case (default 5)")
    p.add_argument("--quick", action="store_true", help="small sizes: 200 x 2016, 2000 samples, 2 runs")
    p.add_argument("--no-cli", action="store_true", help="skip the CLI subprocess runs")
    p.add_argument("--json-samples", type=int, default=200_000,
                   help="samples in the JSON export case (default 200000; 0 skips it)")
    p.add_argument("--no-simulate", action="store_true", help="skip simulate() (it builds a large Polars frame)")
    p.add_argument("--json", metavar="PATH", help="also write all figures as JSON ('-' for stdout)")
    p.add_argument("--child", choices=("kernel", "breakdown"), help=argparse.SUPPRESS)
    p.add_argument("--child-dir", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        child(args)
        return 0
    if args.quick:
        args.hosts, args.steps, args.samples, args.repeat = 200, 2016, 2000, 2
        args.json_samples = min(args.json_samples, 20_000)

    import numba
    import numpy as np
    import polars as pl
    from simulator.catalogue import N_METRICS as n_metrics
    from simulator.config import load_config

    assert n_metrics == N_METRICS, f"catalogue has {n_metrics} metrics, the benchmark assumes {N_METRICS}"
    started = time.perf_counter()
    cfg = load_config(None)
    res: dict = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": {"cpus": os.cpu_count(), "numba_threads": numba.config.NUMBA_NUM_THREADS,
                    "python": platform.python_version(), "platform": platform.platform(),
                    "numpy": np.__version__, "numba": numba.__version__, "polars": pl.__version__},
        "config_hash": cfg.config_hash,
        "args": {k: getattr(args, k) for k in ("hosts", "steps", "samples", "repeat", "quick")},
    }
    with tempfile.TemporaryDirectory(prefix="bench-simulator-") as tmp:
        work_dir = Path(tmp)
        bench_in_memory(cfg, args, res)
        res["numba_threading_layer"] = numba.threading_layer()
        bench_end_to_end(args, res, work_dir)
        if args.json_samples > 0:
            bench_json(args, res, work_dir)
        bench_memory(args, res, work_dir)
    res["bench_wall_s"] = time.perf_counter() - started

    m = res["machine"]
    print(f"simulator benchmark, {res['date']}: {m['cpus']} CPUs, numba {m['numba']} "
          f"({res['numba_threading_layer']}, {m['numba_threads']} threads), numpy {m['numpy']}, "
          f"polars {m['polars']}, Python {m['python']}; config {res['config_hash'][:12]}")
    print()
    print(report(res, args))
    print(f"\nbenchmark wall time: {res['bench_wall_s']:.0f} s")
    if args.json:
        text = json.dumps(res, indent=2)
        if args.json == "-":
            print(text)
        else:
            Path(args.json).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
