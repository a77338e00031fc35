"""Export the training JSON the downstream pipeline reads: metadata plus one object per sample."""

from __future__ import annotations

import io
from pathlib import Path

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


def write_metrics_dataset(path: Path, metadata: dict, samples: pl.DataFrame) -> Path | None:
    """Write `{"metadata": ..., "training_samples": [...]}` atomically; back up the previous file."""
    body = io.BytesIO()
    training_frame(samples).write_json(body)
    head = orjson.dumps(metadata)
    backup = backup_file(path)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(b'{"metadata":')
            f.write(head)
            f.write(b',"training_samples":')
            f.write(body.getbuffer())
            f.write(b"}\n")
    return backup
