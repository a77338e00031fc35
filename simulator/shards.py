"""Sharded trace jobs: host ranges x time chunks, each computed the same wherever it runs.

A job is cut into host ranges (`shard_hosts` hosts) and time chunks (`shard_steps` steps); the cut
depends only on the job, never on the workers.  Every host draws from its own counter-based stream,
a `SeedSequence(seed, host)` child, so a host range can be computed in any process.  Within a host
range the chunks run in order and hand each host's state on (AR noise, disk level, job queue, heap,
load...), so a trace is continuous across chunks: without events it is bit for bit the trace of an
unsharded run.  Each chunk has its own event plan (spawn key (seed, EVENT_STREAM, chunk)) with all its
events inside the chunk, numbered after the events of earlier chunks; a job with one chunk has
exactly the events of an unsharded run.

One task is one host range: it writes a Parquet part per chunk and one events part, each atomically
under its fixed name, so a retried task replaces its files with the same bytes and never adds any.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import orjson

import numpy as np
import polars as pl

from datasafe.integrity import file_record

from . import __version__
from .api import BLOCK_BYTES, BYTES_PER_HOST_STEP, block_hosts, trace_interval
from .catalogue import N_METRICS
from .config import SimConfig
from .engine import run_kernel
from .errors import SimulatorError
from .events import EventPlan, events_for_share, plan_events, share_target
from .population import Population, build_population, exact_counts
from .staging import COMPRESSION, events_table, file_metadata, traces_table

DEFAULT_SHARD_STEPS = 8640  # 30 days at 5 minutes, 6 days at 1 minute
DEFAULT_SHARD_HOSTS = 64    # enough host ranges to keep many workers busy; parts of a few MB
JOB_FILE = "job.json"       # in <output>.partial/: names the job whose parts the folder holds


@dataclass(frozen=True)
class TraceJob:
    """What to simulate and how it is cut; equal jobs give equal bytes."""

    config: SimConfig
    hosts: int
    steps: int
    seed: int
    anomalies: int | None   # events in all, cut over the chunks by their lengths; or None:
    interval_s: float
    shard_hosts: int
    shard_steps: int
    anomaly_share: float | None = None  # each chunk has as many events as cover this share of its points

    @property
    def n_ranges(self) -> int:
        return -(-self.hosts // self.shard_hosts)

    @property
    def n_chunks(self) -> int:
        return -(-self.steps // self.shard_steps)

    @property
    def values(self) -> int:
        return self.hosts * self.steps * N_METRICS

    def host_range(self, r: int) -> tuple[int, int]:
        lo = r * self.shard_hosts
        return lo, min(lo + self.shard_hosts, self.hosts)

    def chunk(self, k: int) -> tuple[int, int]:
        lo = k * self.shard_steps
        return lo, min(lo + self.shard_steps, self.steps)

    def events_per_chunk(self) -> np.ndarray:
        lengths = np.array([hi - lo for lo, hi in map(self.chunk, range(self.n_chunks))], float)
        return exact_counts(lengths, self.anomalies)

    def part_name(self, r: int, k: int) -> str:
        return f"part-h{r:05d}-t{k:05d}.parquet"

    def events_name(self, r: int) -> str:
        return f"events-h{r:05d}.parquet"

    def range_files(self, r: int) -> list[str]:
        return [self.part_name(r, k) for k in range(self.n_chunks)] + [self.events_name(r)]

    def describe(self) -> dict:
        """The job as plain values (for the manifest and to recognise a job when resuming)."""
        return {"config_hash": self.config.config_hash, "hosts": self.hosts, "steps": self.steps,
                "seed": self.seed, "anomalies": self.anomalies, "anomaly_share": self.anomaly_share,
                "interval_s": self.interval_s,
                "shard_hosts": self.shard_hosts, "shard_steps": self.shard_steps,
                "host_ranges": self.n_ranges, "time_chunks": self.n_chunks}

    @property
    def fingerprint(self) -> str:
        text = repr(sorted(self.describe().items())).encode()
        return hashlib.sha256(text).hexdigest()[:16]


def make_job(config: SimConfig, hosts: int, steps: int, seed: int, *, anomalies: int | None = None,
             anomaly_share: float | None = None, interval_s: float | None = None, shard_hosts: int | None = None,
             shard_steps: int | None = None) -> TraceJob:
    """Validate a job and fill in the default cut (parts of at most BLOCK_BYTES in memory).

    Events: `anomalies` in all, or `anomaly_share` of each chunk's points, or (neither) one per host."""
    for name, value, low in (("hosts", hosts, 1), ("steps", steps, 1)):
        _check_int(name, value, low)
    if anomaly_share is None:
        anomalies = hosts if anomalies is None else anomalies
        _check_int("anomalies", anomalies, 0)
    elif anomalies is not None:
        raise SimulatorError("--anomalies, --anomaly-share: give one of them (a count of events or a share of "
                             "anomalous points), not both")
    interval = trace_interval(config, interval_s)
    shard_steps = min(steps, DEFAULT_SHARD_STEPS) if shard_steps is None else shard_steps
    _check_int("shard-steps", shard_steps, 1)
    shard_steps = min(shard_steps, steps)
    shard_hosts = min(DEFAULT_SHARD_HOSTS, block_hosts(shard_steps)) if shard_hosts is None else shard_hosts
    _check_int("shard-hosts", shard_hosts, 1)
    if shard_hosts * shard_steps * BYTES_PER_HOST_STEP > 8 * BLOCK_BYTES:
        raise SimulatorError(f"--shard-hosts/--shard-steps: a part of {shard_hosts} hosts x {shard_steps} steps "
                             f"needs about {shard_hosts * shard_steps * BYTES_PER_HOST_STEP / 1e9:.1f} GB of "
                             "memory; use smaller shards")
    job = TraceJob(config, hosts, steps, seed, anomalies, interval, min(shard_hosts, hosts), shard_steps,
                   None if anomaly_share is None else float(anomaly_share))
    if anomaly_share is not None:  # a share the shortest chunk cannot hold stops here, before any output
        share_target(job.anomaly_share, hosts * min(hi - lo for lo, hi in map(job.chunk, range(job.n_chunks))))
    return job


def _check_int(name: str, value, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise SimulatorError(f"--{name}: must be an integer, got {value!r}")
    if value < low:
        raise SimulatorError(f"--{name}: must be at least {low}, got {value}")


@functools.lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """A hash of the simulator's version and source files (the code that decides the bytes).

    Part of `job.json`: a rerun after the code changed does not keep parts the old code wrote, and a
    worker running other code than the client refuses to write into the job's folder.  Computed on
    first use and kept for the life of the process, so a long-lived worker keeps the hash of the code
    it ran its first part with, even if the files change under it later.
    """
    root = Path(__file__).resolve().parent
    h = hashlib.sha256(__version__.encode())
    for path in sorted([*root.glob("*.py"), *root.glob("anomalies/*.py")]):
        h.update(path.relative_to(root).as_posix().encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def job_marker(job: TraceJob) -> bytes:
    """The content of `job.json`: a rerun resumes only into a folder that names the same job and code."""
    return orjson.dumps({"fingerprint": job.fingerprint, "code": code_fingerprint(), **job.describe()},
                        option=orjson.OPT_SORT_KEYS)


_CACHE: dict[str, tuple[Population, dict[int, EventPlan]]] = {}
# One host range at a time per process: numba's workqueue threading layer is not thread-safe, and a
# task already uses every core through numba's own threads (dask workers may run several tasks at once).
_RANGE_LOCK = threading.Lock()


def _population_and_plans(job: TraceJob) -> tuple[Population, dict[int, EventPlan]]:
    """The job's population and per-chunk event plans, computed once per process."""
    key = job.fingerprint
    entry = _CACHE.get(key)
    if entry is None:
        entry = (build_population(job.config, job.hosts, job.seed), {})
        _CACHE.clear()
        _CACHE[key] = entry
    return entry


def chunk_plan(job: TraceJob, k: int) -> EventPlan:
    """Chunk k's events, at absolute steps, with ids after those of chunks 0..k-1."""
    population, plans = _population_and_plans(job)
    if k not in plans:
        lo, hi = job.chunk(k)
        stream = (k,) if job.n_chunks > 1 else ()
        if job.anomaly_share is None:
            counts = job.events_per_chunk()
            plan = plan_events(job.config, population, int(counts[k]), hi - lo, seed=job.seed,
                               interval_s=job.interval_s, stream=stream)
            first_id = int(counts[:k].sum())
        else:
            for j in range(k):  # earlier chunks first, in order (their counts number this chunk's events)
                chunk_plan(job, j)
            plan = events_for_share(job.config, population, job.anomaly_share, hi - lo, seed=job.seed,
                                    interval_s=job.interval_s, stream=stream)
            first_id = sum(plans[j].n for j in range(k))
        plans[k] = dataclasses.replace(plan, start=plan.start + lo, first_id=first_id)
    return plans[k]


def run_host_range(job: TraceJob, r: int, out_dir: str | os.PathLike, threads: int | None = None) -> dict:
    """Compute host range r over all chunks and write its parts into out_dir; return their records.

    This is the unit of work an engine ships to a worker: a pure function of (job, r).  It writes
    only into a folder whose `job.json` names this job and code: a worker that does not see the
    client's output folder, or runs another version, fails instead of writing elsewhere.
    """
    out = Path(out_dir)
    try:
        ours = (out / JOB_FILE).read_bytes() == job_marker(job)
    except OSError:
        ours = False
    if not ours:
        raise SimulatorError(f"{out}: {JOB_FILE} of this job is not there (is the output folder shared with "
                             "every worker, and do they run the same simulator code?)")
    with _RANGE_LOCK:
        return _run_host_range(job, r, out, threads)


def _run_host_range(job: TraceJob, r: int, out: Path, threads: int | None) -> dict:
    import numba

    if threads is not None:
        numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))
    population, _ = _population_and_plans(job)
    profiles = np.array(population.profile_names)[population.profile]
    lo, hi = job.host_range(r)
    state, events, files = None, [], {}
    for k in range(job.n_chunks):
        t_lo, t_hi = job.chunk(k)
        traces, ev = run_kernel(job.config, population, chunk_plan(job, k), seed=job.seed, n_steps=t_hi - t_lo,
                                interval_s=job.interval_s, host_range=(lo, hi), t0=t_lo, keep_base=False, state=state)
        state = traces.end_state
        table = traces_table(traces, job.config, with_labels=True)
        del traces
        table = table.with_columns(pl.max_horizontal([pl.col(f"label_{m.name}") >= 0 for m in job.config.metrics])
                                   .alias("is_anomaly"))
        files[job.part_name(r, k)] = _write(table, out / job.part_name(r, k), _metadata(job, "traces"))
        del table
        events.append(ev.with_columns(profile=pl.Series(profiles[ev["host"].to_numpy()], dtype=pl.Utf8)))
    files[job.events_name(r)] = _write(events_table(pl.concat(events).sort("event_id"), job.config),
                                       out / job.events_name(r), _metadata(job, "events"))
    return files


def _metadata(job: TraceJob, table: str) -> dict[str, str]:
    return file_metadata(job.config, job.seed, table, job.interval_s)


def _write(frame: pl.DataFrame, path: Path, metadata: dict[str, str] | None = None) -> dict:
    from datasafe import atomic_path

    # never make the folder: a task dask runs a second time, late, must not recreate <output>.partial
    with atomic_path(path, make_parent=False) as tmp:
        frame.write_parquet(tmp, compression=COMPRESSION, statistics=True, metadata=metadata)
    return {**file_record(path), "rows": len(frame)}
