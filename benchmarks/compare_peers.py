"""Side by side: our simulator against peer generators and the NumPy floor, same work, one process.

    pip install -e ".[bench]"                                   # the peers' dependencies, then the peers:
    pip install --no-deps "timeeval-gutenTAG==1.5.0" "mockseries==0.3.1"
    python benchmarks/compare_peers.py                          # 1000 series x 4032 points, best of 3
    python benchmarks/compare_peers.py --series 100 --repeats 1 # quick run
    python benchmarks/compare_peers.py --cli --markdown peers.md

The work: 1,000 series x 4,032 points (14 days at 5 minutes), one labelled anomaly per series, made
in memory, and made and written to disk (our Parquet against each tool's own output format).

One value is one float with its label. Ours: one metric of one host at one step (a host has 11
metrics, each with its own label column, so H hosts x T steps = H x T x 11 values; by default
H = --series hosts with one anomaly event each). Peers: one point of one single-metric series.

Tools:
- floor: `numpy.random.default_rng(0).standard_normal(n)` for the peers' value count (float64, one
  thread): the cheapest possible source of that many numbers, without labels.
- ours: population + event plan + `run_kernel` (all metrics and labels, numba threads) in memory;
  `python -m simulator traces ... --output x.parquet` run in this process for disk (Parquet zstd,
  dense per-metric labels, events file, atomic write with fsync). A second disk row writes through
  the staging writer (`Staging.write_block`: dense traces + sparse labels) for reference.
- numpy-scipy: a hand-written pipeline, the practical ceiling for a Python generator: normal noise,
  AR(1) via `scipy.signal.lfilter`, level, daily cycle, one level-shift anomaly per series, clipping,
  labels (float32, vectorised over all series). Disk: `.npy` (NumPy's own format) and, like for
  like with ours, Parquet zstd through Polars.
- GutenTAG (`timeeval-gutenTAG`): its Python API, a config of N series (base oscillation "sine"
  with a daily period, noise, offset; one "platform" anomaly each); memory via
  `generate(return_timeseries=True)` (pandas frames with `is_anomaly`), disk via
  `generate(output_folder=...)` (its CSV per series). `--cli` adds its CLI against ours.
- mockseries: per series LinearTrend + DailySeasonality + GaussianNoise + a Switch (the anomaly),
  labels from the switch window; disk via its `write_csv`. Under NumPy 2 its SinusoidalSeasonality
  (np.float_) and multi-column `write_csv` (np.object) fail, so DailySeasonality is used and only
  the values are written (no label column): that favours mockseries.

Every case gets an untimed warm-up call at a small size (numba cache load, imports, first-call
costs); then the cases run in interleaved rounds, so a noisy neighbour hits all tools alike, and
the best of --repeats is reported with the median. "others' CPU" is how many cores other processes
kept busy meanwhile (Linux /proc/stat); compare runs only when it is near 0.

The peers pin old NumPy/SciPy (mockseries: numpy==1.26.3, scipy==1.11.4; GutenTAG: scipy<1.15),
which pip would honour by downgrading this environment, hence `--no-deps` for the two peers; the
code paths used here work with NumPy 2 / SciPy 1.17. A peer that is missing or fails is skipped
with a message, and the rest of the table is still measured.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import CpuMeter  # noqa: E402
from typing import Callable

os.environ.setdefault("TQDM_DISABLE", "1")  # GutenTAG draws tqdm progress bars; keep the output clean

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

N_METRICS = 11  # checked against simulator.catalogue.N_METRICS at run time
INTERVAL_S = 300.0  # 5 minutes: 288 points a day
INSTALL_HINT = ('pip install -e ".[bench]" && '
                'pip install --no-deps "timeeval-gutenTAG==1.5.0" "mockseries==0.3.1"')
TOOLS = ("floor", "ours", "numpy", "gutentag", "mockseries")


# --------------------------------------------------------------------------------------- helpers

def others_cores(deltas: list[tuple[float, float, float]]) -> float | None:
    """Cores busy with other processes over several timed calls, pooled (the /proc/stat tick is 10 ms,
    too coarse for one short call)."""
    busy, own, wall = (sum(d[i] for d in deltas) for i in range(3))
    return max((busy - own) / wall, 0.0) if deltas and wall > 0 else None


def dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


@dataclass
class Case:
    tool: str
    mode: str                                   # "memory", "disk", "disk (CLI)"
    what: str                                   # what one call produces
    values: int                                 # labelled values produced by one call
    run: Callable[[Path | None], object]        # one timed call; disk modes get a fresh empty directory
    warm: Callable[[Path | None], object]       # the same at a small size, untimed
    role: str = "peer"                          # "ours", "ours-extra", "floor", "peer"
    times: list[float] = field(default_factory=list)
    cpu: list[tuple[float, float, float]] = field(default_factory=list)  # CpuMeter deltas of the timed calls
    disk_bytes: int | None = None
    skipped: str | None = None

    @property
    def on_disk(self) -> bool:
        return self.mode != "memory"

    @property
    def best_rate(self) -> float:
        return self.values / min(self.times)


# ------------------------------------------------------------------------------------------- ours

def ours_cases(args, hosts: int) -> list[Case]:
    import simulator  # noqa: F401  (fails early if the package is not importable)
    from simulator.__main__ import main as simulator_main
    from simulator.api import BLOCK_HOSTS
    from simulator.catalogue import N_METRICS as n_metrics
    from simulator.config import load_config
    from simulator.engine import run_kernel
    from simulator.events import plan_events
    from simulator.population import build_population
    from simulator.staging import Staging

    assert n_metrics == N_METRICS, f"catalogue has {n_metrics} metrics, the benchmark assumes {N_METRICS}"
    cfg = load_config(None)
    interval = cfg.simulation.interval_s
    steps, seed = args.points, args.seed

    def kernel(h: int):
        pop = build_population(cfg, h, seed)
        plan = plan_events(cfg, pop, h, steps, seed=seed, interval_s=interval)  # one anomaly event per host
        return pop, plan

    def memory(h: int):
        pop, plan = kernel(h)
        return run_kernel(cfg, pop, plan, seed=seed, n_steps=steps, interval_s=interval, keep_base=False)

    def traces_export(h: int, out: Path):
        rc = simulator_main(["traces", "--hosts", str(h), "--steps", str(steps), "--anomalies", str(h),
                             "--seed", str(seed), "--output", str(out / "traces.parquet"), "--quiet"])
        if rc != 0:
            raise RuntimeError(f"python -m simulator traces exited with {rc}")

    def staging(h: int, out: Path):
        pop, plan = kernel(h)
        st = Staging(out)
        st.begin(cfg, seed)
        for b, lo in enumerate(range(0, h, BLOCK_HOSTS)):
            traces, _events = run_kernel(cfg, pop, plan, seed=seed, n_steps=steps, interval_s=interval,
                                         host_range=(lo, min(lo + BLOCK_HOSTS, h)), keep_base=False)
            st.write_block(b, traces, cfg)

    n = hosts * steps * N_METRICS
    small = min(hosts, 4)
    cases = [
        Case("ours", "memory", f"float32 values + int32 labels, {N_METRICS} metrics x {hosts} hosts",
             n, lambda d: memory(hosts), lambda d: memory(small), role="ours"),
    ]
    if not args.no_disk:
        cases += [
            Case("ours", "disk", "`simulator traces` in process: Parquet zstd, label column per metric, events",
                 n, lambda d: traces_export(hosts, d), lambda d: traces_export(small, d), role="ours"),
            Case("ours (staging writer)", "disk", "kernel blocks + Staging.write_block: Parquet zstd, sparse labels",
                 n, lambda d: staging(hosts, d), lambda d: staging(small, d), role="ours-extra"),
        ]
    if args.cli:
        def cli(h: int, out: Path):
            env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
            subprocess.run([sys.executable, "-m", "simulator", "traces", "--hosts", str(h), "--steps", str(steps),
                            "--anomalies", str(h), "--seed", str(seed), "--output", str(out / "traces.parquet"),
                            "--quiet"], check=True, capture_output=True, cwd=ROOT, env=env)
        cases.append(Case("ours", "disk (CLI)", "`python -m simulator traces` subprocess: Parquet zstd", n,
                          lambda d: cli(hosts, d), lambda d: cli(small, d), role="ours"))
    return cases


# ------------------------------------------------------------------------------------ the floor

def floor_cases(args) -> list[Case]:
    import numpy as np

    n = args.series * args.points
    return [Case("floor: NumPy standard_normal", "memory", "float64 normals, no labels, 1 thread", n,
                 lambda d: np.random.default_rng(0).standard_normal(n),
                 lambda d: np.random.default_rng(0).standard_normal(1000), role="floor")]


# ----------------------------------------------------------------------- hand-written NumPy/SciPy

def numpy_pipeline(n_series: int, n_points: int, seed: int, phi: float = 0.9):
    """float32 values [n_series, n_points] and bool labels: AR(1) noise around a level with a daily
    cycle, one level-shift anomaly per series, clipped to [0, 100]."""
    import numpy as np
    from scipy.signal import lfilter

    rng = np.random.default_rng(seed)
    f32 = np.float32
    x = rng.standard_normal((n_series, n_points), dtype=f32)                       # noise
    x = lfilter(np.array([np.sqrt(1 - phi * phi)], f32), np.array([1, -phi], f32), x, axis=1)  # AR(1)
    x *= rng.uniform(1, 5, n_series).astype(f32)[:, None]                          # per-series noise level
    x += rng.uniform(20, 60, n_series).astype(f32)[:, None]                        # level
    t = np.arange(n_points)
    daily = np.sin(2 * np.pi * t * INTERVAL_S / 86400).astype(f32)
    x += rng.uniform(5, 15, n_series).astype(f32)[:, None] * daily                 # daily cycle
    max_len = max(1, min(96, n_points // 4))
    start = rng.integers(0, n_points - max_len + 1, n_series)
    end = start + rng.integers(1, max_len + 1, n_series)
    labels = (t >= start[:, None]) & (t < end[:, None])                           # one anomaly per series
    shift = (rng.uniform(15, 30, n_series) * rng.choice([-1, 1], n_series)).astype(f32)
    np.add(x, shift[:, None], out=x, where=labels)                                 # the anomaly: level shift
    np.clip(x, 0, 100, out=x)
    return x, labels


def numpy_cases(args) -> list[Case]:
    import numpy as np
    import polars as pl

    s, p, seed = args.series, args.points, args.seed

    def to_npy(n_series: int, out: Path):
        x, labels = numpy_pipeline(n_series, p, seed)
        np.save(out / "values.npy", x)
        np.save(out / "labels.npy", labels)

    def to_parquet(n_series: int, out: Path):
        x, labels = numpy_pipeline(n_series, p, seed)
        pl.DataFrame([
            pl.Series("series", np.repeat(np.arange(n_series, dtype=np.int32), p)),
            pl.Series("step", np.tile(np.arange(p, dtype=np.int32), n_series)),
            pl.Series("value", x.reshape(-1)),
            pl.Series("is_anomaly", labels.reshape(-1)),
        ]).write_parquet(out / "series.parquet", compression="zstd")

    small = min(s, 10)
    cases = [Case("numpy-scipy pipeline", "memory", "float32 values + bool labels, vectorised, 1 thread", s * p,
                  lambda d: numpy_pipeline(s, p, seed), lambda d: numpy_pipeline(small, p, seed))]
    if not args.no_disk:
        cases += [
            Case("numpy-scipy pipeline", "disk", ".npy values + .npy labels (np.save)", s * p,
                 lambda d: to_npy(s, d), lambda d: to_npy(small, d)),
            Case("numpy-scipy pipeline", "disk", "Parquet zstd via Polars, long layout", s * p,
                 lambda d: to_parquet(s, d), lambda d: to_parquet(small, d)),
        ]
    return cases


# ----------------------------------------------------------------------------------------- GutenTAG

def gutentag_config(n_series: int, n_points: int, seed: int, base: str) -> dict:
    import numpy as np

    rng = np.random.default_rng(seed)
    level, amp = rng.uniform(20, 60, n_series), rng.uniform(5, 15, n_series)
    noise = rng.uniform(1, 5, n_series)
    length = rng.integers(1, max(1, min(96, n_points // 4)) + 1, n_series)
    positions = ("beginning", "middle", "end")
    if base == "sine":  # GutenTAG samples at 100 'Hz': a daily period of 288 points is 100/288 Hz
        bo = lambda i: {"kind": "sine", "frequency": 100 * INTERVAL_S / 86400,  # noqa: E731
                        "amplitude": float(amp[i]), "offset": float(level[i]), "variance": float(noise[i])}
    else:
        bo = lambda i: {"kind": "random-walk", "amplitude": float(amp[i]), "offset": float(level[i]),  # noqa: E731
                        "variance": float(noise[i]) / 10, "smoothing": 0.01}
    return {"timeseries": [{
        "name": f"series-{i:05d}", "length": n_points,
        "semi-supervised": False, "supervised": False,
        "base-oscillations": [bo(i)],
        "anomalies": [{"position": positions[i % 3], "length": int(length[i]), "channel": 0,
                       "kinds": [{"kind": "platform", "value": float(level[i] - amp[i])}]}],
    } for i in range(n_series)]}


def gutentag_cases(args) -> list[Case]:
    from gutenTAG import GutenTAG
    import yaml

    s, p, seed, jobs = args.series, args.points, args.seed, args.gutentag_jobs
    small = min(s, 5)
    configs = {n: gutentag_config(n, p, seed, args.gutentag_base) for n in {s, small}}  # input, built untimed

    def memory(n: int):
        return GutenTAG.from_dict(configs[n], n_jobs=jobs, seed=seed).generate(return_timeseries=True)

    def to_csv(n: int, out: Path):
        GutenTAG.from_dict(configs[n], n_jobs=jobs, seed=seed).generate(output_folder=out)

    label = f"GutenTAG {_version('timeeval-gutenTAG')}"
    what = f"'{args.gutentag_base}' + 'platform' anomaly, n_jobs={jobs}"
    cases = [Case(label, "memory", f"Python API -> pandas frames (value, is_anomaly); {what}", s * p,
                  lambda d: memory(s), lambda d: memory(small))]
    if not args.no_disk:
        cases.append(Case(label, "disk", f"its CSV writer, one test.csv per series; {what}", s * p,
                          lambda d: to_csv(s, d), lambda d: to_csv(small, d)))
    if args.cli:
        def cli(n: int, out: Path):
            cfg_path = Path(args.work_dir) / f"gutentag-{n}.yaml"  # written below, before any timing
            subprocess.run([sys.executable, "-m", "gutenTAG", "--config-yaml", str(cfg_path), "--output-dir",
                            str(out), "--seed", str(seed), "--n-jobs", str(jobs)],
                           check=True, capture_output=True)

        for n in configs:  # the YAML configs are the CLI's input: write them before any timing
            (Path(args.work_dir) / f"gutentag-{n}.yaml").write_text(yaml.safe_dump(configs[n], sort_keys=False))
        cases.append(Case(label, "disk (CLI)", f"`python -m gutenTAG` subprocess -> CSV; {what}", s * p,
                          lambda d: cli(s, d), lambda d: cli(small, d)))
    return cases


# --------------------------------------------------------------------------------------- mockseries

def mockseries_series(n_series: int, n_points: int, seed: int, out: Path | None = None):
    """n_series mockseries signals; with `out`, each is written with mockseries' write_csv (values
    only: its multi-column writer uses np.object, gone in NumPy 2) and nothing is kept."""
    import numpy as np
    from mockseries.noise import GaussianNoise
    from mockseries.seasonality import DailySeasonality
    from mockseries.trend import LinearTrend, Switch
    from mockseries.utils import datetime_range, write_csv

    tp = np.array(datetime_range(granularity=timedelta(seconds=INTERVAL_S), start_time=datetime(2024, 1, 1),
                                 num_points=n_points))
    rng = np.random.default_rng(seed)
    level, amp = rng.uniform(20, 60, n_series), rng.uniform(5, 15, n_series)
    slope, noise = rng.uniform(-0.5, 0.5, n_series), rng.uniform(1, 5, n_series)
    shape = rng.uniform(0.5, 1.5, (n_series, 3))
    max_len = max(1, min(96, n_points // 4))
    start = rng.integers(0, n_points - max_len, n_series) if n_points > max_len else np.zeros(n_series, int)
    end = start + rng.integers(1, max_len + 1, n_series)
    shift = rng.uniform(15, 30, n_series) * rng.choice([-1, 1], n_series)
    result = []
    for i in range(n_series):
        a, b = int(start[i]), int(end[i])
        signal = (LinearTrend(float(slope[i]), timedelta(days=1), float(level[i]))
                  + DailySeasonality({timedelta(hours=3): float(shape[i, 0]), timedelta(hours=11): float(shape[i, 1]),
                                      timedelta(hours=17): float(shape[i, 2])}) * float(amp[i])
                  + GaussianNoise(0.0, float(noise[i]), random_seed=seed * 1_000_003 + i + 1)
                  + Switch(tp[a], 0.0, float(shift[i]), tp[b] if b < n_points else None))
        values = signal.generate(tp)
        labels = np.zeros(n_points, np.int8)
        labels[a:b] = 1  # the switch window is the anomaly
        if out is None:
            result.append((values, labels))
        else:
            write_csv(tp, values, str(out / f"series-{i:05d}.csv"))
    return result


def mockseries_cases(args) -> list[Case]:
    import mockseries  # noqa: F401

    s, p, seed = args.series, args.points, args.seed
    small = min(s, 3)
    label = f"mockseries {_version('mockseries')}"
    what = "LinearTrend + DailySeasonality + GaussianNoise + Switch anomaly"
    cases = [Case(label, "memory", f"{what}; float64 values + int8 labels", s * p,
                  lambda d: mockseries_series(s, p, seed), lambda d: mockseries_series(small, p, seed))]
    if not args.no_disk:
        cases.append(Case(label, "disk", f"{what}; its write_csv per series, values only (no labels)", s * p,
                          lambda d: mockseries_series(s, p, seed, d), lambda d: mockseries_series(small, p, seed, d)))
    return cases


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version(dist)
    except PackageNotFoundError:
        return "?"


# ------------------------------------------------------------------------------------- the runner

def build_cases(args, hosts: int) -> tuple[list[Case], list[str]]:
    builders = {"floor": lambda: floor_cases(args), "ours": lambda: ours_cases(args, hosts),
                "numpy": lambda: numpy_cases(args), "gutentag": lambda: gutentag_cases(args),
                "mockseries": lambda: mockseries_cases(args)}
    names = {"gutentag": "GutenTAG (timeeval-gutenTAG, import gutenTAG)", "mockseries": "mockseries",
             "numpy": "numpy-scipy pipeline", "ours": "ours (simulator)", "floor": "floor"}
    cases, notes = [], []
    for tool in args.tools:
        try:
            cases += builders[tool]()
        except ImportError as exc:
            msg = f"skipped {names[tool]}: not installed ({exc}). Install the peers with: {INSTALL_HINT}"
            if tool in ("ours", "floor"):
                raise SystemExit(f"compare_peers: {msg}")
            notes.append(msg)
            print(msg, file=sys.stderr)
    return cases, notes


def run_case(case: Case, fn, work_dir: Path, keep_size: bool = False) -> tuple[float, tuple | None]:
    out = None
    if case.on_disk:
        out = work_dir / "out"
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
    gc.collect()
    meter = CpuMeter()
    t = time.perf_counter()
    result = fn(out)
    elapsed = time.perf_counter() - t
    cpu = meter.delta()
    del result
    if out is not None:
        if keep_size:
            case.disk_bytes = dir_bytes(out)
        shutil.rmtree(out, ignore_errors=True)
    return elapsed, cpu


def measure(cases: list[Case], repeats: int, work_dir: Path, notes: list[str]) -> None:
    for case in cases:  # warm-up: imports, numba cache load, first-call costs; a failing peer is skipped here
        try:
            run_case(case, case.warm, work_dir)
        except Exception as exc:  # noqa: BLE001 - a peer broken in this environment must not stop the run
            if case.role in ("ours", "floor"):
                raise
            case.skipped = f"skipped {case.tool} ({case.mode}): failed in this environment: {type(exc).__name__}: {exc}"
            notes.append(case.skipped)
            print(case.skipped, file=sys.stderr)
    active = [c for c in cases if c.skipped is None]
    for r in range(repeats):  # interleaved rounds: a busy neighbour hits every tool alike
        for case in active:
            if case.skipped:
                continue
            try:
                elapsed, cpu = run_case(case, case.run, work_dir, keep_size=(r == repeats - 1))
            except Exception as exc:  # noqa: BLE001
                if case.role in ("ours", "floor"):
                    raise
                case.skipped = f"skipped {case.tool} ({case.mode}): failed: {type(exc).__name__}: {exc}"
                notes.append(case.skipped)
                print(case.skipped, file=sys.stderr)
                continue
            case.times.append(elapsed)
            if cpu is not None:
                case.cpu.append(cpu)
            print(f"  round {r + 1}/{repeats}: {case.tool:<32} {case.mode:<10} {elapsed:8.3f} s  "
                  f"{case.values / elapsed / 1e6:7.2f} M values/s", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------------- report

def fmt_rate(x: float) -> str:
    return f"{x / 1e6:,.2f} M" if x < 10e6 else f"{x / 1e6:,.1f} M"


def fmt_ratio(x: float) -> str:
    return f"{x:,.2f}x" if x < 10 else f"{x:,.0f}x" if x >= 100 else f"{x:,.1f}x"


def report(cases: list[Case], notes: list[str], args, hosts: int, header: list[str]) -> str:
    done = [c for c in cases if c.times]
    floor = next(c for c in done if c.role == "floor").best_rate if any(c.role == "floor" for c in done) else None
    ours = {c.mode: c.best_rate for c in done if c.role == "ours"}
    head = ("tool", "mode", "output", "values", "best s", "median s", "values/s (best)", "vs floor",
            "ours / tool", "others' CPU", "on disk")
    lines = list(header) + ["", "| " + " | ".join(head) + " |", "|" + "|".join(["---"] * len(head)) + "|"]
    for c in done:
        rate = c.best_rate
        vs_floor = fmt_ratio(rate / floor) if floor else "-"
        ref = ours.get(c.mode)
        ours_vs = "(ours)" if c.role == "ours" else (fmt_ratio(ref / rate) if ref else "-")
        oc = others_cores(c.cpu)
        others = "?" if oc is None else f"{oc:.2f}"
        disk = "-" if c.disk_bytes is None else f"{c.disk_bytes / 1e6:,.1f} MB ({c.disk_bytes / c.values:.2f} B/value)"
        lines.append("| " + " | ".join((c.tool, c.mode, c.what, f"{c.values:,}", f"{min(c.times):.3f}",
                                         f"{statistics.median(c.times):.3f}", fmt_rate(rate), vs_floor, ours_vs,
                                         others, disk)) + " |")
    lines += ["",
              "One value = one float with its label. Ours: one metric of one host at one step "
              f"({hosts} hosts x {args.points} steps x {N_METRICS} metrics, one anomaly event per host); "
              f"peers and floor: one point of one single-metric series ({args.series} series x {args.points} "
              "points, one anomaly per series).",
              "vs floor: values/s over the floor's values/s (NumPy standard_normal, float64, same process). "
              "ours / tool: our values/s in the same mode over the tool's (above 1: ours is faster). "
              "others' CPU: cores other processes kept busy during the case's timed calls (/proc/stat, "
              "pooled over the rounds; near 0 = a quiet machine, ~1 = one of 2 cores taken).",
              f"Best and median of {args.repeats} interleaved rounds after an untimed warm-up each. "
              "Disk rows include generating the data. Ours writes atomically with fsync; the others do not."]
    for mode, ref in ours.items():  # one line per mode: where ours stands
        peers = [c for c in done if c.mode == mode and c.role == "peer"]
        ahead = [f"{c.tool} {fmt_ratio(ref / c.best_rate)}" for c in peers if ref >= c.best_rate]
        behind = [f"{c.tool} ({c.what.split(';')[0].split(',')[0]}) {fmt_ratio(ref / c.best_rate)}"
                  for c in peers if ref < c.best_rate]
        lines.append(f"Ours, {mode}: {fmt_rate(ref)} values/s"
                     + (f" = {fmt_ratio(ref / floor)} the floor" if floor else "")
                     + (f"; ahead of {', '.join(ahead)}" if ahead else "")
                     + (f"; BEHIND {', '.join(behind)}" if behind else "") + ".")
    if notes:
        lines += [""] + [f"- {n}" for n in notes]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                epilog=f"Peers: {INSTALL_HINT}. A missing peer is skipped with a message.")
    p.add_argument("--series", type=int, default=1000, help="series per tool (default 1000)")
    p.add_argument("--points", type=int, default=4032, help="points per series (default 4032 = 14 days at 5 min)")
    p.add_argument("--hosts", type=int, default=None,
                   help=f"hosts for ours (default: --series; each host is {N_METRICS} labelled series)")
    p.add_argument("--repeats", type=int, default=3, help="timed rounds; the best is reported (default 3)")
    p.add_argument("--seed", type=int, default=1, help="seed for every tool (default 1)")
    p.add_argument("--tools", default=",".join(TOOLS), help=f"comma-separated subset of {','.join(TOOLS)}")
    p.add_argument("--no-disk", action="store_true", help="in-memory cases only")
    p.add_argument("--cli", action="store_true", help="also time ours and GutenTAG through their CLIs (subprocesses)")
    p.add_argument("--gutentag-jobs", type=int, default=1, help="GutenTAG n_jobs (default 1)")
    p.add_argument("--gutentag-base", choices=("sine", "random-walk"), default="sine",
                   help="GutenTAG base oscillation (default sine, its fastest here)")
    p.add_argument("--markdown", metavar="PATH", help="also write the table as markdown to PATH")
    p.add_argument("--work-dir", default=None, help="where disk outputs go (default: a temporary directory)")
    args = p.parse_args(argv)
    args.tools = [t.strip().lower() for t in args.tools.split(",") if t.strip()]
    bad = [t for t in args.tools if t not in TOOLS]
    if bad:
        p.error(f"--tools: unknown {', '.join(bad)}; choose from {', '.join(TOOLS)}")
    for name in ("series", "points", "repeats"):
        if getattr(args, name) < 1:
            p.error(f"--{name}: must be at least 1")
    if args.points < 8:
        p.error("--points: must be at least 8")
    hosts = args.hosts or args.series

    import numba
    import numpy as np
    import polars as pl

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="compare-peers-", dir=args.work_dir) as tmp:
        args.work_dir = tmp
        cases, notes = build_cases(args, hosts)
        measure(cases, args.repeats, Path(tmp), notes)
    wall = time.perf_counter() - started

    header = [
        f"Peer comparison, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC: {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, numpy {np.__version__}, numba {numba.__version__} "
        f"({numba.get_num_threads()} threads for ours), polars {pl.__version__}; "
        f"{args.series} series x {args.points} points; best of {args.repeats}; {wall:.0f} s wall.",
    ]
    text = report(cases, notes, args, hosts, header)
    print(text)
    if args.markdown:
        Path(args.markdown).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
