"""Full traces in one file, the layout anomaly detectors read, and its event table beside it.

`write_trace_file` streams `iter_traces` blocks into `x.parquet` (one row group per block, the
staging's metadata) or `x.csv` (`timestamp, host, <metrics...>, is_anomaly`, ISO 8601 timestamps
with their zone), then writes the events as `x.events.parquet` or `x.events.csv` (in CSV,
`affected_metrics` joined by ", ").  `read_trace_file` reads both back.  Both files are written
atomically: a crash or an error leaves any earlier file whole.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from datasafe import atomic_path

from .catalogue import N_METRICS
from .config import SimConfig
from .staging import CSV_TIME_FORMAT, events_csv, events_table, file_metadata

SUFFIXES = (".parquet", ".csv")
BYTES_PER_VALUE_ON_DISK = {".parquet": 1.5, ".csv": 9.0}  # measured: 1.2 B/value zstd Parquet; CSV text
DISK_HEADROOM = 0.9  # a job may fill at most this share of the free space


@dataclass(frozen=True)
class TraceFile:
    path: Path
    events_path: Path
    rows: int
    events: int
    anomalous_rows: int = 0  # rows where some metric is anomalous (is_anomaly)

    @property
    def anomaly_share(self) -> float:
        return self.anomalous_rows / max(self.rows, 1)


def events_path(output: Path) -> Path:
    """The event table written beside a single-file trace output."""
    output = Path(output)
    return output.with_name(output.stem + ".events" + (".csv" if output.suffix.lower() == ".csv" else ".parquet"))


def disk_problem(output: Path, hosts: int, steps: int, suffix: str) -> str | None:
    """Why `hosts` x `steps` traces in format `suffix` (".parquet" also for sharded parts) would not fit
    in the free space where `output` goes, or None."""
    values = hosts * steps * N_METRICS
    need = values * BYTES_PER_VALUE_ON_DISK[suffix]
    existing = output.parent if output.parent.exists() else Path(".")
    free = shutil.disk_usage(existing).free
    if need <= DISK_HEADROOM * free:
        return None
    return (f"{values:,} values need about {need / 1e9:.1f} GB on disk as {suffix[1:]}, "
            f"{free / 1e9:.1f} GB are free at {existing}")


def detector_rows(traces: pl.DataFrame) -> pl.DataFrame:
    """The detector CSV layout: timestamp, host, metrics..., is_anomaly (0/1)."""
    label_cols = [c for c in traces.columns if c.startswith("label_")]
    metrics = [c for c in traces.columns if c not in ("timestamp", "host", "step", "is_anomaly", *label_cols)]
    return traces.select("timestamp", "host", *metrics, pl.col("is_anomaly").cast(pl.Int8))


def write_trace_file(output: Path, hosts: int, steps: int, *, config: SimConfig, seed: int,
                     anomalies: int | None = None, anomaly_share: float | None = None,
                     interval_s: float | None = None, workers: int | None = None, progress=None) -> TraceFile:
    """Simulate `hosts` x `steps` and write them to `output` (.parquet or .csv) with the events beside it."""
    from .api import iter_traces, trace_interval

    output = Path(output)
    suffix = output.suffix.lower()
    if suffix not in SUFFIXES:
        raise ValueError(f"{output}: a trace file ends in .parquet or .csv")
    interval = trace_interval(config, interval_s)
    rows, anomalous, all_events = 0, [0], []
    with atomic_path(output) as tmp:
        blocks = _counting(iter_traces(hosts, steps, config=config, seed=seed, anomalies=anomalies,
                                       anomaly_share=anomaly_share, interval_s=interval_s, workers=workers,
                                       progress=progress), anomalous)
        if suffix == ".csv":
            with open(tmp, "wb") as f:
                for i, (df, ev) in enumerate(blocks):
                    detector_rows(df).write_csv(f, include_header=i == 0, datetime_format=CSV_TIME_FORMAT)
                    rows += len(df)
                    all_events.append(ev)
        else:
            rows = _write_parquet_blocks(tmp, blocks, file_metadata(config, seed, "traces", interval), all_events)
    events = events_table(pl.concat(all_events), config)
    beside = events_path(output)
    with atomic_path(beside) as tmp:
        if suffix == ".csv":
            events_csv(events).write_csv(tmp, datetime_format=CSV_TIME_FORMAT)
        else:
            events.write_parquet(tmp, metadata=file_metadata(config, seed, "events", interval))
    return TraceFile(output, beside, rows, len(events), anomalous[0])


def _counting(blocks, anomalous: list[int]):
    """The blocks, passed on; anomalous[0] counts their anomalous rows."""
    for df, ev in blocks:
        anomalous[0] += int(df["is_anomaly"].sum())
        yield df, ev


def _write_parquet_blocks(path: Path, blocks, metadata: dict[str, str], all_events: list) -> int:
    """One row group per block (memory stays bounded at any size); the events of each block kept."""
    import pyarrow.parquet as pq

    rows, writer = 0, None
    try:
        for df, ev in blocks:
            table = df.to_arrow()
            if writer is None:
                writer = pq.ParquetWriter(path, table.schema.with_metadata(metadata), compression="zstd")
            writer.write_table(table)
            rows += len(df)
            all_events.append(ev)
    finally:
        if writer is not None:
            writer.close()
    return rows


def read_trace_file(path: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    """A trace file and its event table, as `write_trace_file` wrote them; from CSV, the timestamps as UTC
    datetimes and `affected_metrics` as lists again."""
    path = Path(path)
    if path.suffix.lower() != ".csv":
        return pl.read_parquet(path), pl.read_parquet(events_path(path))
    utc = pl.Datetime("us", "UTC")
    traces = pl.read_csv(path).with_columns(pl.col("timestamp").str.to_datetime(time_zone="UTC").cast(utc))
    events = pl.read_csv(events_path(path)).with_columns(
        pl.col("start", "end").str.to_datetime(time_zone="UTC").cast(utc),
        pl.col("affected_metrics").str.split(", "))
    return traces, events
