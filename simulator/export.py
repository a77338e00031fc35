"""Export the training JSON the downstream pipeline reads: metadata plus one object per sample."""

from __future__ import annotations

import io
import os
from collections import deque
from dataclasses import dataclass
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

import numpy as np
import orjson
import polars as pl

from datasafe import atomic_path, backup_file

from .catalogue import METRICS
from .context import ANOMALOUS_PREFIX, CONTEXT_PREFIX, HISTORY_PREFIX
from .jsonfmt import splice_windows


def training_frame(samples: pl.DataFrame) -> pl.DataFrame:
    """Samples in the JSON schema's field order: the seed's keys (metrics nested in one object), then
    the host's facts and the training targets; the windows (`context`, `history`) are appended by
    the writer (`window_arrays`, `jsonfmt`)."""
    seed_keys = [
        "id", "timestamp",
        pl.struct(list(METRICS)).alias("metrics"),
        "status", pl.col("kind").alias("anomaly_type"), "explanation", "session_id", "batch_id",
    ]
    if CONTEXT_PREFIX + METRICS[0] not in samples.columns:
        return samples.select(seed_keys)
    return samples.select(
        *seed_keys,
        pl.struct(pl.col("host_name").alias("name"), "profile", "cores").alias("host"),
        pl.struct(
            "severity",
            pl.concat_list([pl.when(pl.col(ANOMALOUS_PREFIX + m)).then(pl.lit(m)) for m in METRICS])
            .list.drop_nulls().alias("anomalous_metrics"),
            "minutes_since_onset", "minutes_until_end", "exhaustion_metric", "minutes_to_exhaustion",
            "visible", "evidence_spreads", "hard_negative",
        ).alias("targets"))


@dataclass(frozen=True)
class WindowArrays:
    """Each sample's context [n, M, steps] and history [n, M, hours] (NaN: no data), for the kernel."""

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
        return np.stack([samples[prefix + m].to_numpy().astype(np.float32) for m in METRICS], axis=1)

    integer = np.array([samples[CONTEXT_PREFIX + m].dtype.inner.is_integer() for m in METRICS])
    return WindowArrays(stack(CONTEXT_PREFIX), stack(HISTORY_PREFIX), integer)


JSON_CHUNK_ROWS = 50_000  # samples encoded at a time: the whole JSON is never held in memory
ENCODE_THREADS = 2        # Polars encodes outside the GIL: chunks are encoded two at a time


def write_metrics_dataset(path: Path, metadata: dict, samples: pl.DataFrame) -> Path | None:
    """Write `{"metadata": ..., "training_samples": [...]}` atomically; back up the previous file.

    The samples array is written in chunks of JSON_CHUNK_ROWS (Polars' encoder, brackets of each
    chunk dropped, chunks joined by commas), encoded ENCODE_THREADS at a time and written in order
    while what is already written goes to disk in the background:
    the same bytes as one `write_json` of the whole frame, without a second copy of the dataset in
    memory (about 570 bytes a sample).
    """
    frame = training_frame(samples)
    windows = window_arrays(samples)
    head = orjson.dumps(metadata)
    backup = backup_file(path)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f, _Writeback(f) as writeback:
            f.write(b'{"metadata":')
            f.write(head)
            f.write(b',"training_samples":[')
            for i, chunk in enumerate(_encoded_chunks(frame, windows)):
                if i:
                    f.write(b",")
                f.write(chunk)
                writeback.start()
            f.write(b"]}\n")
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
    return splice_windows(buf.getvalue(), windows.fine, windows.coarse, windows.integer, list(METRICS))


def _encoded_chunks(frame: pl.DataFrame, windows: WindowArrays | None = None) -> Iterator[memoryview]:
    """Each chunk's rows as JSON, in order; at most ENCODE_THREADS + 1 chunks in memory at once."""
    def chunk(lo: int) -> tuple:
        return frame.slice(lo, JSON_CHUNK_ROWS), None if windows is None else windows.slice(lo, JSON_CHUNK_ROWS)

    starts = range(0, len(frame), JSON_CHUNK_ROWS)
    if len(starts) <= 1:
        yield from (_encode(*chunk(lo)) for lo in starts)
        return
    with ThreadPoolExecutor(ENCODE_THREADS) as pool:
        pending: deque = deque()
        for lo in starts:
            pending.append(pool.submit(_encode, *chunk(lo)))
            if len(pending) > ENCODE_THREADS:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
