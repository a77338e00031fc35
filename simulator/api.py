"""The public functions: simulate traces, generate training samples, run the whole sample job."""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator

import numba
import numpy as np
import polars as pl

from . import __version__
from .catalogue import N_METRICS
from .config import SimConfig, load_config
from .engine import Traces, run_kernel
from .errors import SimulatorError
from .events import EventPlan, events_for_share, plan_events
from .explain import FEATURE_COLUMNS, N_VARIANTS, evidence_features, explanations, visibility
from .population import build_population, exact_counts
from .context import ANOMALOUS_PREFIX, Windows, anomalous_metric_columns, exhaustion_columns, sample_windows
from .samples import SAMPLE_STREAM, gather, sample_steps, select_points, with_log_excerpts
from .staging import Staging, traces_table

BLOCK_HOSTS = 256           # hosts simulated together: bounds memory at any size
MAX_SAMPLES = 5_000_000  # one JSON file; larger sets belong in the Parquet traces
JSON_BYTES_PER_SAMPLE = 570     # measured on the default config (11.3 MB for 20,000 samples)
STAGING_BYTES_PER_SAMPLE = 700  # measured (14 MB of Parquet staging for 20,000 samples)


@dataclass(frozen=True)
class SampleSet:
    """The result of `generate_samples`: samples, events, and what produced them."""

    samples: pl.DataFrame
    events: pl.DataFrame
    metadata: dict
    config: SimConfig
    staged: Future | None = field(default=None, compare=False)  # the staging's last writes (background)

    def wait_staged(self) -> None:
        """Return once the staging is written and swapped in (at once unless `generate_samples` ran with
        `background_staging`); a failed staging write is raised here."""
        if self.staged is not None:
            self.staged.result()


def _in_background(task: Callable[[], None]) -> Future:
    """`task` running in a thread of its own; the Future holds its outcome."""
    pool = ThreadPoolExecutor(1, thread_name_prefix="staging-finish")
    try:
        return pool.submit(task)
    finally:
        pool.shutdown(wait=False)  # the thread ends with the task


def _resolve(config: SimConfig | str | Path | None) -> SimConfig:
    return config if isinstance(config, SimConfig) else load_config(config)


def worker_threads(workers: int | None):
    """A context that runs numba's parallel kernels on `workers` threads (the machine's default if None)."""
    if workers is None:
        return nullcontext()
    if workers < 1:
        raise SimulatorError(f"--workers: must be at least 1, got {workers}")
    return _NumbaThreads(min(workers, numba.config.NUMBA_NUM_THREADS))


class _NumbaThreads:
    def __init__(self, n: int):
        self.n = n

    def __enter__(self):
        self.old = numba.get_num_threads()
        numba.set_num_threads(self.n)

    def __exit__(self, *exc):
        numba.set_num_threads(self.old)


BLOCK_BYTES = 256 * 1024 * 1024  # memory of one block of hosts (values, labels, the table built from them)
BYTES_PER_HOST_STEP = N_METRICS * 4 * 6  # values + labels + the Polars table with label columns


def block_hosts(steps: int) -> int:
    """Hosts per block so that one block stays within BLOCK_BYTES whatever the trace length."""
    return max(1, min(BLOCK_HOSTS, BLOCK_BYTES // max(1, steps * BYTES_PER_HOST_STEP)))


def iter_traces(hosts: int, steps: int, *, config: SimConfig | str | Path | None = None,
                seed: int | None = None, anomalies: int | None = None, anomaly_share: float | None = None,
                interval_s: float | None = None, workers: int | None = None, with_labels: bool = True,
                progress: Callable[[int, int], None] | None = None) -> Iterator[tuple[pl.DataFrame, pl.DataFrame]]:
    """Traces block by block (bounded memory at any size): (traces, events) of consecutive host ranges.

    The blocks concatenated are exactly `simulate`'s output: every host's stream depends only on
    (seed, host), never on the block it was computed in.
    """
    cfg = _resolve(config)
    _check_count("hosts", hosts, 1)
    _check_count("steps", steps, 1)
    seed = checked_seed(cfg, seed)
    threads = worker_threads(workers)
    interval = trace_interval(cfg, interval_s)
    population = build_population(cfg, hosts, seed)
    plan = event_plan(cfg, population, steps, seed, interval=interval, anomalies=anomalies, anomaly_share=anomaly_share)
    profiles = np.array(population.profile_names)[population.profile]
    per_block = block_hosts(steps)
    n_blocks = -(-hosts // per_block)
    with threads:
        for b, lo in enumerate(range(0, hosts, per_block)):
            traces, ev = run_kernel(cfg, population, plan, seed=seed, n_steps=steps, interval_s=interval,
                                    host_range=(lo, min(lo + per_block, hosts)), keep_base=False)
            df = traces_table(traces, cfg, with_labels=with_labels)
            del traces
            if with_labels:
                df = df.with_columns(pl.max_horizontal([pl.col(f"label_{m.name}") >= 0 for m in cfg.metrics])
                                     .alias("is_anomaly"))
            yield df, ev.with_columns(profile=pl.Series(profiles[ev["host"].to_numpy()], dtype=pl.Utf8))
            if progress:
                progress(b + 1, n_blocks)


def event_plan(cfg: SimConfig, population, steps: int, seed: int, *, interval: float, anomalies: int | None,
               anomaly_share: float | None, stream: tuple[int, ...] = ()) -> EventPlan:
    """The events of a trace run: exactly `anomalies` events, or as many as cover `anomaly_share` of the
    points (hosts x steps), or (neither given) one per host."""
    if anomalies is not None and anomaly_share is not None:
        raise SimulatorError("--anomalies, --anomaly-share: give one of them (a count of events or a share of "
                             "anomalous points), not both")
    if anomaly_share is not None:
        if isinstance(anomaly_share, bool) or not isinstance(anomaly_share, (int, float)) \
                or not math.isfinite(anomaly_share):
            raise SimulatorError(f"--anomaly-share: expected a number, got {anomaly_share!r}")
        return events_for_share(cfg, population, float(anomaly_share), steps, seed=seed, interval_s=interval,
                                stream=stream)
    n_events = population.n_hosts if anomalies is None else anomalies
    _check_count("anomalies", n_events, 0)
    return plan_events(cfg, population, n_events, steps, seed=seed, interval_s=interval, stream=stream)


def simulate(hosts: int, steps: int, *, config: SimConfig | str | Path | None = None,
             seed: int | None = None, anomalies: int | None = None, anomaly_share: float | None = None,
             interval_s: float | None = None, workers: int | None = None,
             with_labels: bool = True) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Full traces of `hosts` hosts over `steps` steps, with `anomalies` events (default: one per host), or
    with as many events as cover about `anomaly_share` of the points (the event lengths are known before
    the hosts run: see `events.events_for_share`).

    Returns (traces, events) as Polars frames; traces carry one `label_<metric>` column per metric
    (the event id, or -1) and `is_anomaly` when `with_labels`.  For traces larger than memory, use
    `iter_traces`, which yields the same rows block by block.
    """
    frames, events = [], []
    for df, ev in iter_traces(hosts, steps, config=config, seed=seed, anomalies=anomalies,
                              anomaly_share=anomaly_share, interval_s=interval_s, workers=workers,
                              with_labels=with_labels):
        frames.append(df)
        events.append(ev)
    return pl.concat(frames), pl.concat(events)


def generate_samples(n_samples: int, *, anomaly_ratio: float | None = None, seed: int | None = None,
                     config: SimConfig | str | Path | None = None, workers: int | None = None,
                     staging_dir: Path | None = None, context_steps: int | None = None,
                     hard_negatives: float | None = None, logs: bool = False,
                     progress: Callable[[int, int], None] | None = None,
                     background_staging: bool = False,
                     before_sampling: Callable[[], None] | None = None) -> SampleSet:
    """`n_samples` labelled snapshots of simulated hosts; `round(n * ratio)` of them anomalous.

    Each anomalous sample comes from its own event (exactly that many events are injected); normal
    samples come from points where no metric of the host is anomalous.  With `staging_dir`, the
    traces, labels, events and samples are staged there as Parquet; with `logs` too, the hosts' log
    lines and alerts (simulator/logs.py, alerts.py; about 14,000 lines a host-day, so opt-in).
    With `background_staging`, the staging's last writes (the samples Parquet, the manifest, the swap)
    run in a thread while the caller exports the samples; the caller must call `SampleSet.wait_staged`,
    which waits for them and raises their error (the staging folder is in place only after it), before
    it starts another run into the same folder.  `before_sampling` runs once the first block's traces
    are simulated, before any sampling kernel (the CLI waits there for the kernels a second process
    compiles on a cold numba cache: `_ahead`).
    """
    cfg = _with_sample_options(_resolve(config), context_steps, hard_negatives)
    if isinstance(n_samples, (int, np.integer)) and not isinstance(n_samples, bool) and n_samples > MAX_SAMPLES:
        raise SimulatorError(
            f"--samples: at most {MAX_SAMPLES:,} in one run, got {count_text(int(n_samples))} (about "
            f"{gb_text(int(n_samples) * JSON_BYTES_PER_SAMPLE)} of JSON and "
            f"{gb_text(int(n_samples) * STAGING_BYTES_PER_SAMPLE)} of staging); for bulk traces use "
            "`python -m simulator traces`, which streams to Parquet")
    _check_count("samples", n_samples, 1, MAX_SAMPLES)
    ratio = cfg.simulation.anomaly_ratio if anomaly_ratio is None else anomaly_ratio
    if not (isinstance(ratio, (int, float)) and 0.0 <= ratio <= 1.0):
        raise SimulatorError(f"--anomaly-ratio: must be between 0 and 1, got {ratio}")
    seed = checked_seed(cfg, seed)
    threads = worker_threads(workers)  # validated before any output is touched
    if logs and staging_dir is None:
        raise SimulatorError("logs: staged logs need a staging_dir")
    sim = cfg.simulation
    interval = sim.interval_s
    n_steps = max(1, int(round(sim.trace_days * 86400 / interval)))
    n_hosts = max(1, math.ceil(n_samples / sim.samples_per_host))
    n_anomalies = int(round(n_samples * ratio))
    n_normal = n_samples - n_anomalies
    population = build_population(cfg, n_hosts, seed)
    plan = plan_events(cfg, population, n_anomalies, n_steps, seed=seed, interval_s=interval)
    blocks = [(lo, min(lo + BLOCK_HOSTS, n_hosts)) for lo in range(0, n_hosts, BLOCK_HOSTS)]
    normal_per_block = exact_counts(np.array([hi - lo for lo, hi in blocks], float), n_normal)
    staging = Staging(staging_dir) if staging_dir is not None else None
    if staging:
        staging.begin(cfg, seed, logs=logs)
    parts, windows, event_parts = [], [], []
    with threads, (staging or nullcontext()):
        for b, (lo, hi) in enumerate(blocks):
            traces, events = run_kernel(cfg, population, plan, seed=seed, n_steps=n_steps, interval_s=interval,
                                        host_range=(lo, hi), keep_base=True)
            if b == 0 and before_sampling is not None:
                before_sampling()
            rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(SAMPLE_STREAM, b)))
            host, step, event, hard = select_points(traces, events, int(normal_per_block[b]), rng=rng,
                                                    hard_share=cfg.simulation.hard_negative_share,
                                                    skip_steps=sample_steps(cfg, interval))
            if staging:  # written in the background while this block's samples are made
                staging.write_block(b, traces, cfg, events, samples=pl.DataFrame({
                    "host": host.astype(np.int64) + traces.first_host, "step": step.astype(np.int64)}))
            parts.append(_sample_block(cfg, traces, population, events, host=host, step=step, event=event, block=b)
                         .with_columns(hard_negative=pl.Series(hard)))
            windows.append(sample_windows(traces, host, step, cfg))
            event_parts.append(events)
            del traces  # the staging keeps what it writes; the rest goes before the next block is made
            if progress:
                progress(b + 1, len(blocks))
    events = pl.concat(event_parts)
    session_id = _session_id(cfg, seed, n_samples, ratio)
    samples = _finish_samples(cfg, pl.concat(parts), windows, events=events, seed=seed, session_id=session_id)
    if staging:
        staging.close()  # the last block's lines written, every sample's log excerpt chosen
        samples = with_log_excerpts(samples, staging.sample_excerpts)
    metadata = _metadata(cfg, samples, seed, ratio=ratio, session_id=session_id)
    if not staging:
        return SampleSet(samples, events, metadata, cfg)
    manifest = {**metadata, "hosts": n_hosts, "steps_per_host": n_steps, "interval_s": interval, "blocks": len(blocks)}
    if background_staging:
        return SampleSet(samples, events, metadata, cfg,
                         _in_background(lambda: staging.finish(events, samples, manifest)))
    staging.finish(events, samples, manifest)
    return SampleSet(samples, events, metadata, cfg)


def _with_sample_options(cfg: SimConfig, context_steps: int | None, hard_negatives: float | None) -> SimConfig:
    """The config with the options that override its `simulation` section, checked like the YAML."""
    changes = {}
    if context_steps is not None:
        _check_count("context-steps", context_steps, 1, 2016)
        changes["context_steps"] = int(context_steps)
    if hard_negatives is not None:
        if not (isinstance(hard_negatives, (int, float)) and 0.0 <= hard_negatives <= 1.0):
            raise SimulatorError(f"--hard-negatives: must be between 0 and 1, got {hard_negatives}")
        changes["hard_negative_share"] = float(hard_negatives)
    if not changes:
        return cfg
    return dataclasses.replace(cfg, simulation=dataclasses.replace(cfg.simulation, **changes))


def _sample_block(cfg: SimConfig, traces: Traces, population, events: pl.DataFrame,
                  *, host: np.ndarray, step: np.ndarray, event: np.ndarray, block: int) -> pl.DataFrame:
    ev = events.select("event_id", "kind", "start_step", "end_step", "severity", "peak_deviation_sigma")
    frame = pl.DataFrame({
        "host": host.astype(np.int64) + traces.first_host,
        "step": step.astype(np.int64),
        "event_id": event,
        **gather(traces, host, step, cfg.metrics),
        **gather(traces, host, step, cfg.metrics, prefix="base_", base=True),
        **anomalous_metric_columns(traces, host, step, event, cfg=cfg),
    })
    frame = frame.join(ev, on="event_id", how="left", maintain_order="left")
    frame = frame.with_columns(exhaustion_columns(traces, host, step, frame["kind"], end_step=frame["end_step"],
                                                  cfg=cfg))
    profile_idx = population.profile[frame["host"].to_numpy()]
    return frame.with_columns(
        profile=pl.Series(np.array(population.profile_names)[profile_idx]),
        cores=pl.Series(population.params[frame["host"].to_numpy(), 0].astype(np.int64)),
        batch_id=pl.lit(f"batch-{block:05d}"),
    )


def _finish_samples(cfg: SimConfig, frame: pl.DataFrame, windows: list[Windows], *, events: pl.DataFrame, seed: int,
                    session_id: str) -> pl.DataFrame:
    """The samples shuffled, with their windows as list columns, ids, times, targets and texts.

    `windows` (the blocks', in the frame's order) is emptied: each block's arrays go once placed."""
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(SAMPLE_STREAM, 1 << 30)))
    order = rng.permutation(len(frame))
    shuffled = _shuffled_windows(windows, order)
    frame = frame[order].with_columns(**shuffled.columns(cfg))
    frame = frame.with_columns(**evidence_features(frame, cfg.simulation.interval_s, shuffled))
    frame = frame.with_columns(**visibility(frame, ANOMALOUS_PREFIX))
    interval = cfg.simulation.interval_s
    start = cfg.simulation.start_epoch_s
    micros = ((start + frame["step"].to_numpy() * interval) * 1e6).astype(np.int64)
    frame = frame.with_columns(
        id=pl.format("{}-{}", pl.lit(session_id), pl.int_range(pl.len()).cast(pl.Utf8).str.zfill(7)),
        timestamp=pl.Series(micros).cast(pl.Datetime("us", "UTC")).dt.strftime("%Y-%m-%dT%H:%M:%SZ"),
        status=pl.when(pl.col("kind").is_null()).then(pl.lit("normal")).otherwise(pl.lit("anomaly")),
        elapsed_min=(pl.col("step") - pl.col("start_step") + 1) * (interval / 60.0),
        host_name=pl.format("cn{}", pl.col("host").cast(pl.Utf8).str.zfill(5)),  # as in the logs and cases
        minutes_since_onset=(pl.col("step") - pl.col("start_step")) * (interval / 60.0),
        minutes_until_end=(pl.col("end_step") - pl.col("step")) * (interval / 60.0),
        minutes_to_exhaustion=pl.col("steps_to_exhaustion") * (interval / 60.0),
        variant=pl.Series(rng.integers(0, N_VARIANTS, len(frame))),
        session_id=pl.lit(session_id),
    )
    frame = frame.with_columns(explanations(frame, [a.kind for a in cfg.anomalies], cfg.simulation.interval_s,
                                            cfg.simulation.context_steps))
    return frame.drop(FEATURE_COLUMNS)  # what the texts were computed from: the sample carries its inputs


def _shuffled_windows(blocks: list[Windows], order: np.ndarray) -> Windows:
    """`Windows.concat(blocks).take(order)` in one copy, built metric-major ([M, n, steps] arrays seen
    as [n, M, steps]), so each metric's list column is made from its own contiguous rows without
    another copy; `blocks` is emptied as they are placed."""
    position = np.empty_like(order)
    position[order] = np.arange(len(order))  # where each sample of the blocks goes
    first = blocks[0]
    fine = np.empty((first.fine.shape[1], len(order), first.fine.shape[2]), dtype=first.fine.dtype)
    coarse = np.empty((first.coarse.shape[1], len(order), first.coarse.shape[2]), dtype=first.coarse.dtype)
    lo = 0
    while blocks:
        block = blocks.pop(0)
        rows = position[lo:lo + len(block.fine)]
        fine[:, rows] = block.fine.transpose(1, 0, 2)
        coarse[:, rows] = block.coarse.transpose(1, 0, 2)
        lo += len(block.fine)
    return Windows(fine.transpose(1, 0, 2), coarse.transpose(1, 0, 2))


def _session_id(cfg: SimConfig, seed: int, n_samples: int, ratio: float) -> str:
    key = f"{cfg.config_hash}:{seed}:{n_samples}:{ratio!r}".encode()
    return "sim-" + hashlib.sha256(key).hexdigest()[:12]


def _metadata(cfg: SimConfig, samples: pl.DataFrame, seed: int, *, ratio: float, session_id: str) -> dict:
    kinds = samples.filter(pl.col("kind").is_not_null())["kind"].value_counts(sort=True)
    counts = {a.kind: 0 for a in cfg.anomalies}
    counts.update(dict(zip(kinds["kind"].to_list(), kinds["count"].to_list())))
    n_anomaly = int(sum(counts.values()))
    return {
        "generated_at": _generated_at(),
        "generator": f"simulator {__version__}",
        "session_id": session_id,
        "total_samples": len(samples),
        "anomaly_ratio": ratio,
        "config_hash": cfg.config_hash,
        "seed": seed,
        "generation_stats": {"normal_samples": len(samples) - n_anomaly, "anomaly_samples": n_anomaly,
                             "anomaly_types": counts},
        "evidence": {"context_steps": cfg.simulation.context_steps, "context_interval_s": cfg.simulation.interval_s,
                     "history_hours": cfg.simulation.history_hours, "history_interval_s": 3600,
                     "note": "context and history end at the sample's instant (its values are their last "
                             "points); null where the trace had not begun; targets are what the simulator "
                             "knows beyond that instant (for training, never shown in the explanation)"},
    }


def _generated_at() -> str:
    """Now, or SOURCE_DATE_EPOCH when set (reproducible builds convention: byte-identical files)."""
    fixed = os.environ.get("SOURCE_DATE_EPOCH")
    when = datetime.fromtimestamp(int(fixed), timezone.utc) if fixed and fixed.isdigit() else datetime.now(timezone.utc)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def checked_seed(cfg: SimConfig, seed) -> int:
    """The run's seed: `seed`, else the config's; a one-line error unless a whole number in [0, 2^63)."""
    seed = cfg.simulation.seed if seed is None else seed
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**63:
        raise SimulatorError(f"--seed: must be a whole number in [0, 2^63), got {seed}")
    return int(seed)


def _magnitude(n: int) -> str:
    """The order of magnitude of a whole number of any size, as 10^k (-10^k below zero)."""
    return f"{'-' if n < 0 else ''}10^{len(str(abs(n))) - 1}"


def count_text(n: int) -> str:
    """A whole number for a one-line message: digits up to 10^15, its order of magnitude beyond."""
    return f"{n:,}" if abs(n) < 10**15 else f"about {_magnitude(n)}"


def gb_text(n_bytes: int) -> str:
    """Bytes as GB for a message, in integer arithmetic (a count of 400 digits is no float)."""
    return f"{n_bytes / 1e9:.1f} GB" if n_bytes < 10**18 else f"{_magnitude(n_bytes // 10**9)} GB"


def trace_interval(config: SimConfig, interval_s: float | None) -> float:
    """The seconds between a trace's steps: `interval_s` when given (it must be positive), else the config's."""
    if interval_s is None:
        return config.simulation.interval_s
    if not float(interval_s) > 0:
        raise SimulatorError(f"--interval-s: must be positive, got {interval_s}")
    return float(interval_s)


def _check_count(name: str, value, minimum: int, maximum: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise SimulatorError(f"--{name}: expected a whole number, got {value!r}")
    if value < minimum:
        raise SimulatorError(f"--{name}: must be at least {minimum}, got {count_text(value)}")
    if maximum is not None and value > maximum:
        raise SimulatorError(f"--{name}: at most {maximum:,} in one run, got {count_text(value)}")
