"""Export the training JSON the downstream pipeline reads: metadata plus one object per sample."""

from __future__ import annotations

import io
import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

import orjson
import polars as pl

from datasafe import atomic_path, backup_file

from .catalogue import METRICS


def training_frame(samples: pl.DataFrame) -> pl.DataFrame:
    """Samples in the JSON schema's field order, metrics nested in one object."""
    return samples.select(
        "id", "timestamp",
        pl.struct(list(METRICS)).alias("metrics"),
        "status", pl.col("kind").alias("anomaly_type"), "explanation", "session_id", "batch_id",
    )


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
    head = orjson.dumps(metadata)
    backup = backup_file(path)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f, _Writeback(f) as writeback:
            f.write(b'{"metadata":')
            f.write(head)
            f.write(b',"training_samples":[')
            for i, chunk in enumerate(_encoded_chunks(frame)):
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


def _encode(frame: pl.DataFrame) -> memoryview:
    buf = io.BytesIO()
    frame.write_json(buf)
    return buf.getbuffer()[1:-1]  # the rows without the array's brackets


def _encoded_chunks(frame: pl.DataFrame) -> Iterator[memoryview]:
    """Each chunk's rows as JSON, in order; at most ENCODE_THREADS + 1 chunks in memory at once."""
    starts = range(0, len(frame), JSON_CHUNK_ROWS)
    if len(starts) <= 1:
        yield from (_encode(frame.slice(lo, JSON_CHUNK_ROWS)) for lo in starts)
        return
    with ThreadPoolExecutor(ENCODE_THREADS) as pool:
        pending: deque = deque()
        for lo in starts:
            pending.append(pool.submit(_encode, frame.slice(lo, JSON_CHUNK_ROWS)))
            if len(pending) > ENCODE_THREADS:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
