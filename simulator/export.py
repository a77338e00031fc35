"""Export the training JSON the downstream pipeline reads: metadata plus one object per sample."""

from __future__ import annotations

import io
import os
from collections import deque
from dataclasses import dataclass
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import orjson
import polars as pl

from datasafe import atomic_path, backup_file

from .catalogue import METRICS
from .context import ANOMALOUS_PREFIX, CONTEXT_PREFIX, HISTORY_PREFIX
from .jsonfmt import splice_windows


def training_frame(samples: pl.DataFrame) -> pl.DataFrame:
    """Samples in the JSON schema's field order: the seed's keys (metrics nested in one object), then
    the host's facts, the training targets and, in a run with logs, the excerpt of the context
    window's log lines (`log_excerpt`); the windows (`context`, `history`) are appended by the writer
    (`window_arrays`, `jsonfmt`)."""
    seed_keys = [
        "id", "timestamp",
        pl.struct(list(METRICS)).alias("metrics"),
        "status", pl.col("kind").alias("anomaly_type"), "explanation", "session_id", "batch_id",
    ]
    if CONTEXT_PREFIX + METRICS[0] not in samples.columns:
        return samples.select(seed_keys)
    return samples.with_columns(anomalous_metrics(samples)).select(
        *seed_keys,
        pl.struct(pl.col("host_name").alias("name"), "profile", "cores").alias("host"),
        pl.struct(
            "severity", "anomalous_metrics",
            "minutes_since_onset", "minutes_until_end", "exhaustion_metric", "minutes_to_exhaustion",
            "visible", "evidence_spreads", "hard_negative",
        ).alias("targets"),
        *log_excerpt(samples))


def log_excerpt(samples: pl.DataFrame) -> list[pl.Expr]:
    """`logs`: {total, lines} of a run with logs (`log_total`, `log_lines`); nothing otherwise."""
    if "log_lines" not in samples.columns:
        return []
    return [pl.struct(pl.col("log_total").alias("total"), pl.col("log_lines").alias("lines")).alias("logs")]


def anomalous_metrics(samples: pl.DataFrame) -> pl.Series:
    """`anomalous_metrics`: the names of the metrics whose `anomalous_<metric>` flag is set, in METRICS
    order (empty for none). Each sample's flags as one number, its list taken from those of the few
    distinct numbers (a list built per sample costs ten times more)."""
    flags = samples.select(pl.sum_horizontal(pl.col(ANOMALOUS_PREFIX + m).cast(pl.Int32) * (1 << i)
                                             for i, m in enumerate(METRICS))).to_series().to_numpy()
    seen, index = np.unique(flags, return_inverse=True)
    names = pl.Series("anomalous_metrics", [[m for i, m in enumerate(METRICS) if f >> i & 1] for f in seen.tolist()],
                      dtype=pl.List(pl.Utf8))
    return names.gather(index)


@dataclass(frozen=True)
class WindowArrays:
    """Each sample's context [n, M, steps] and history [n, M, hours] (NaN: no data), for the kernel;
    views of metric-major arrays ([M, n, steps], the order the columns are read in, without a copy)."""

    fine: np.ndarray
    coarse: np.ndarray
    integer: np.ndarray

    def slice(self, lo: int, n: int) -> "WindowArrays":
        return WindowArrays(self.fine[lo:lo + n], self.coarse[lo:lo + n], self.integer)


def window_arrays(samples: pl.DataFrame) -> WindowArrays | None:
    if CONTEXT_PREFIX + METRICS[0] not in samples.columns:
        return None

    def stack(prefix: str) -> np.ndarray:
        if prefix + METRICS[0] not in samples.columns:
            return np.zeros((len(samples), len(METRICS), 0), dtype=np.float32)
        steps = samples.schema[prefix + METRICS[0]].size
        # one column per metric, [n * steps] each, read Fortran-ordered: the transpose is [M, n * steps]
        columns = samples.select(pl.col(prefix + m).arr.explode().cast(pl.Float32).fill_null(float("nan"))
                                 for m in METRICS).to_numpy(order="fortran")
        return columns.T.reshape(len(METRICS), len(samples), steps).transpose(1, 0, 2)

    integer = np.array([samples[CONTEXT_PREFIX + m].dtype.inner.is_integer() for m in METRICS])
    return WindowArrays(stack(CONTEXT_PREFIX), stack(HISTORY_PREFIX), integer)


JSON_CHUNK_ROWS = 2_048   # samples encoded at a time (about 7 MB of JSON): the JSON is never whole in
                          # memory, and the first chunks are written and flushed while the next are encoded
ENCODE_THREADS = 2        # Polars and the window kernel encode outside the GIL: two chunks at a time


def write_metrics_dataset(path: Path, metadata: dict, samples: pl.DataFrame,
                          before_commit: Callable[[], None] | None = None) -> Path | None:
    """Write `{"metadata": ..., "training_samples": [...]}` atomically; back up the previous file.
    `before_commit` runs once the file is written, before it replaces the previous one: what it
    raises leaves the previous file in place.

    The samples array is written in chunks of JSON_CHUNK_ROWS (Polars' encoder, brackets of each
    chunk dropped, each chunk's windows spliced in, chunks joined by commas), encoded ENCODE_THREADS
    at a time and written in order while what is already written goes to disk in the background:
    the same bytes as one `write_json` of the whole frame, without a second copy of the dataset in
    memory (about 3.4 KB a sample).
    """
    frame = training_frame(samples)
    head = orjson.dumps(metadata)
    backup = backup_file(path)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f, _Writeback(f) as writeback:
            f.write(b'{"metadata":')
            f.write(head)
            f.write(b',"training_samples":[')
            for i, chunk in enumerate(_encoded_chunks(frame, samples)):
                if i:
                    f.write(b",")
                f.write(chunk)
                del chunk
                writeback.start()
            f.write(b"]}\n")
        if before_commit is not None:
            before_commit()
    return backup


class _Writeback:
    """Flushes what is written so far to disk in a background thread while the next chunks are
    encoded and written, so the fsync that makes the file durable (in `atomic_path`) has little
    left to do.  At most one flush runs at a time."""

    def __init__(self, f):
        self.f, self.pool, self.pending = f, ThreadPoolExecutor(1, thread_name_prefix="writeback"), None

    def __enter__(self) -> "_Writeback":
        return self

    def start(self) -> None:
        if self.pending is None or self.pending.done():
            if self.pending is not None:
                self.pending.result()  # a failed flush is raised here, in the writer's thread
            self.f.flush()
            self.pending = self.pool.submit(os.fdatasync, self.f.fileno())

    def __exit__(self, *exc) -> None:
        try:
            if self.pending is not None and exc[0] is None:
                self.pending.result()
        finally:
            self.pool.shutdown(wait=True)


def _encode(frame: pl.DataFrame, windows: WindowArrays | None) -> memoryview:
    buf = io.BytesIO()
    if windows is None:
        frame.write_json(buf)
        return buf.getbuffer()[1:-1]  # the rows without the array's brackets
    frame.write_ndjson(buf)
    return splice_windows(buf.getvalue(), windows.fine, windows.coarse, integer=windows.integer, names=list(METRICS))


def _encode_rows(frame: pl.DataFrame, samples: pl.DataFrame | None, lo: int) -> memoryview:
    """JSON_CHUNK_ROWS rows of `frame` from `lo`, with their windows read from the same rows of `samples`."""
    rows = frame.slice(lo, JSON_CHUNK_ROWS)
    return _encode(rows, None if samples is None else window_arrays(samples.slice(lo, JSON_CHUNK_ROWS)))


def _encoded_chunks(frame: pl.DataFrame, samples: pl.DataFrame | None = None) -> Iterator[memoryview]:
    """Each chunk's rows as JSON (windows from `samples`, the frame `frame` was made of), in order; at
    most ENCODE_THREADS + 1 chunks in memory at once."""
    starts = range(0, len(frame), JSON_CHUNK_ROWS)
    if len(starts) <= 1:
        yield from (_encode_rows(frame, samples, lo) for lo in starts)
        return
    with ThreadPoolExecutor(ENCODE_THREADS) as pool:
        pending: deque = deque()
        for lo in starts:
            pending.append(pool.submit(_encode_rows, frame, samples, lo))
            if len(pending) > ENCODE_THREADS:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
