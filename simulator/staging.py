"""Columnar staging under `<output>/staging/`: numbered Parquet parts, each written atomically.

Layout (a finished run replaces the whole directory; see `Staging`):
  traces-00000.parquet ...  host, step, timestamp, one column per metric (dense)
  labels-00000.parquet ...  host, step, metric, event_id: one row per anomalous metric point (sparse)
  events.parquet            the event table
  samples.parquet           the training samples, flat columns
  manifest.json             what the run was (config hash, seed, counts) and its files
"""

from __future__ import annotations

import dataclasses
import shutil
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import orjson
import polars as pl

from datasafe import atomic_path, atomic_write_bytes
from datasafe.integrity import file_record

from .catalogue import METRICS
from .config import SimConfig
from .engine import Traces

COMPRESSION = "zstd"


def write_parquet(frame: pl.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        frame.write_parquet(tmp, compression=COMPRESSION)


def traces_table(traces: Traces, config: SimConfig, with_labels: bool = False) -> pl.DataFrame:
    """Dense traces of a block: one row per host and step; optional per-metric label columns."""
    n_hosts, n_steps = traces.n_hosts, traces.n_steps
    host = np.repeat(np.arange(traces.first_host, traces.first_host + n_hosts, dtype=np.int32), n_steps)
    step = np.tile(np.arange(traces.t0, traces.t0 + n_steps, dtype=np.int32), n_hosts)
    micros = ((traces.start_epoch_s + step.astype(np.float64) * traces.interval_s) * 1e6).astype(np.int64)
    cols = [pl.Series("host", host), pl.Series("step", step),
            pl.Series("timestamp", micros).cast(pl.Datetime("us", "UTC"))]
    for m, spec in enumerate(config.metrics):
        flat = traces.values[m].reshape(-1)
        cols.append(pl.Series(spec.name, flat.astype(np.int32) if spec.integer else flat))
    if with_labels:
        for m, spec in enumerate(config.metrics):
            cols.append(pl.Series(f"label_{spec.name}", traces.labels[m].reshape(-1)))
    return pl.DataFrame(cols)


def labels_table(traces: Traces) -> pl.DataFrame:
    """Sparse labels: (host, step, metric, event_id) for every anomalous metric point."""
    metric, h, i = np.nonzero(traces.labels >= 0)
    return pl.DataFrame([
        pl.Series("host", (h + traces.first_host).astype(np.int32)),
        pl.Series("step", (i + traces.t0).astype(np.int32)),
        pl.Series("metric", np.array(METRICS)[metric]).cast(pl.Enum(list(METRICS))),
        pl.Series("event_id", traces.labels[metric, h, i]),
    ])


def recover_staging(output_dir: Path) -> bool:
    """Finish a swap a crash interrupted: `staging/` gone but `staging.old/` whole: put it back."""
    final, retired = output_dir / "staging", output_dir / "staging.old"
    if not final.exists() and (retired / "manifest.json").exists():
        retired.rename(final)
        return True
    return False


class Staging:
    """Writes one run's staging files into `staging.partial/`; `finish` swaps it in for `staging/`.

    Until a run finishes, the previous run's staging stays whole, so a crash costs nothing done.
    A block's files are written by a background thread while the caller simulates the next block
    (Parquet encoding releases the GIL); at most one block waits, so memory stays bounded.
    """

    def __init__(self, output_dir: Path):
        self.final = Path(output_dir) / "staging"
        self.dir = Path(output_dir) / "staging.partial"
        self._writer: ThreadPoolExecutor | None = None
        self._pending: Future | None = None
        recover_staging(Path(output_dir))

    def begin(self) -> None:
        if self.dir.exists():
            shutil.rmtree(self.dir)  # leftovers of an interrupted run
        self.dir.mkdir(parents=True)
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="staging")

    def write_block(self, index: int, traces: Traces, config: SimConfig) -> None:
        """Queue block `index` for writing (after the previous block's files are written)."""
        self._wait()
        light = dataclasses.replace(traces, base=None)  # the staging needs values and labels only
        self._pending = self._writer.submit(self._write_block, index, light, config)

    def _write_block(self, index: int, traces: Traces, config: SimConfig) -> None:
        write_parquet(traces_table(traces, config), self.dir / f"traces-{index:05d}.parquet")
        write_parquet(labels_table(traces), self.dir / f"labels-{index:05d}.parquet")

    def _wait(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            pending.result()  # re-raises a failed write here, in the caller's thread

    def close(self) -> None:
        """Wait for the queued block and stop the writer thread."""
        try:
            self._wait()
        finally:
            if self._writer is not None:
                self._writer.shutdown()
                self._writer = None

    def __enter__(self) -> "Staging":
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if exc_type is not None:  # on success the last block keeps writing until `finish`
            self.close()

    def finish(self, events: pl.DataFrame, samples: pl.DataFrame, manifest: dict) -> None:
        self.close()
        write_parquet(events, self.dir / "events.parquet")
        write_parquet(samples, self.dir / "samples.parquet")
        files = {p.name: file_record(p) for p in sorted(self.dir.glob("*.parquet"))}
        atomic_write_bytes(self.dir / "manifest.json",
                           orjson.dumps({**manifest, "files": files}, option=orjson.OPT_INDENT_2))
        retired = self.final.with_name("staging.old")
        if retired.exists():
            shutil.rmtree(retired)
        if self.final.exists():
            self.final.rename(retired)
        self.dir.rename(self.final)
        if retired.exists():
            shutil.rmtree(retired)
