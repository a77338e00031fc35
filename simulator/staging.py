"""Columnar staging under `<output>/staging/`: one folder per table, numbered Parquet parts in each.

Layout (a finished run replaces the whole directory; see `Staging`):
  traces/traces-00000.parquet ...    host, step, timestamp, one column per metric (dense)
  labels/labels-00000.parquet ...    host, step, metric, event_id: one row per anomalous metric point
  events/events-00000.parquet        the event table
  samples/samples-00000.parquet      the training samples, flat columns
  logs/logs-00000.parquet ...        with `logs`: the hosts' log lines (simulator/logs.py) and the step
                                     whose interval holds each line; host ranges of LOG_PART_HOST_STEPS
  alerts/alerts-00000.parquet ...    with `logs`: the alerts of the rules (simulator/alerts.py), per block
  manifest.json                      what the run was (config hash, seed, counts), its tables and files

Each table has one schema in all its parts (`traces_table`, `labels_table`, `events_table`,
`samples_table`, `logs_table`, `alerts_table` below): host and step int32, event ids int64, timestamps UTC datetimes,
categorical
columns (metric, kind, status, profile) enums, `affected_metrics` a list of metrics, `kind` and
`event_id` null together (normal samples). Every
file carries the run's seed, config hash, interval and metric units in its Parquet key-value
metadata (`file_metadata`). `open_staging` is the reader: it checks the manifest and returns the
tables as Polars frames, the traces around points (`windows`) and the log lines of a host in a step
window (`logs`, `log_windows`) and their excerpts (`log_excerpts`, as the samples of a run with logs carry them).
"""

from __future__ import annotations

import dataclasses
import shutil
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numba
import numpy as np
import orjson
import polars as pl

from datasafe import atomic_path, atomic_write_bytes, recover_folder, swap_folder
from datasafe.integrity import file_record

from .anomalies import ANOMALY_KINDS
from .catalogue import METRICS
from .config import SimConfig
from .engine import Traces
from .errors import SimulatorError

COMPRESSION = "zstd"
STAGING_FORMAT = "simulator-staging/2"  # manifest "format": one folder per table
MANIFEST = "manifest.json"
REQUIRED_TABLES = ("traces", "labels", "events", "samples")
LOG_TABLES = ("logs", "alerts")  # staged only by a run with logs (`generate --logs`)
TABLES = REQUIRED_TABLES + LOG_TABLES
LOG_PART_HOST_STEPS = 16_384     # host-steps per logs part (8 hosts of 7 days at 5 minutes: ~0.8 M lines, ~1 GB peak)

METRIC = pl.Enum(list(METRICS))
KIND = pl.Enum(list(ANOMALY_KINDS))
STATUS = pl.Enum(["normal", "anomaly"])
OUTCOME = pl.Enum(["true_alert", "false_alarm"])
STEP_COLUMNS = ("step", "start_step", "end_step", "labelled_first_step", "labelled_last_step")
SAMPLE_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"  # the samples' timestamp text in the training JSON
CSV_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S%:z"   # timestamps in CSV exports: ISO 8601 with the zone (+00:00)


def part_name(table: str, index: int) -> str:
    """A part's path inside the staging folder, e.g. traces/traces-00003.parquet."""
    return f"{table}/{table}-{index:05d}.parquet"


def profile_enum(config: SimConfig) -> pl.Enum:
    return pl.Enum([p.name for p in config.profiles])


def file_metadata(config: SimConfig, seed: int, table: str, interval_s: float) -> dict[str, str]:
    """The Parquet key-value metadata of every file: which table, seed, config hash, interval, units."""
    return {"simulator.table": table, "simulator.seed": str(seed), "simulator.config_hash": config.config_hash,
            "simulator.interval_s": repr(float(interval_s)),
            "simulator.units": orjson.dumps({m.name: m.unit for m in config.metrics}).decode()}


def events_table(events: pl.DataFrame, config: SimConfig) -> pl.DataFrame:
    """The event table in its published schema (kind and metrics as enums, affected_metrics a list)."""
    return events.with_columns(
        pl.col("host").cast(pl.Int32),
        pl.col("kind").cast(KIND),
        pl.col("primary_metric", "peak_metric").cast(METRIC),
        pl.col("affected_metrics").str.split(", ").cast(pl.List(METRIC)),
        *[pl.col(c).cast(pl.Int32) for c in STEP_COLUMNS if c in events.columns],
        *([pl.col("profile").cast(profile_enum(config))] if "profile" in events.columns else []),
    )


def events_csv(events: pl.DataFrame) -> pl.DataFrame:
    """The event table for a CSV file (no lists there): affected_metrics joined by ", "."""
    return events.with_columns(pl.col("affected_metrics").cast(pl.List(pl.Utf8)).list.join(", "))


def samples_table(samples: pl.DataFrame, config: SimConfig) -> pl.DataFrame:
    """The samples in their published schema: normal samples have a null event_id (and kind)."""
    return samples.with_columns(
        pl.col("host").cast(pl.Int32),
        *[pl.col(c).cast(pl.Int32) for c in STEP_COLUMNS if c in samples.columns],
        pl.when(pl.col("event_id") >= 0).then(pl.col("event_id")).cast(pl.Int64).alias("event_id"),
        pl.col("kind").cast(KIND),
        pl.col("status").cast(STATUS),
        pl.col("profile").cast(profile_enum(config)),
        pl.col("timestamp").str.to_datetime(SAMPLE_TIME_FORMAT, time_zone="UTC", time_unit="us"),
    )


def write_parquet(frame: pl.DataFrame, path: Path, metadata: dict[str, str] | None = None) -> None:
    with atomic_path(path) as tmp:
        frame.write_parquet(tmp, compression=COMPRESSION, metadata=metadata)


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
        pl.Series("metric", np.array(METRICS)[metric]).cast(METRIC),
        pl.Series("event_id", traces.labels[metric, h, i].astype(np.int64)),
    ])


def logs_table(logs: pl.DataFrame, traces: pl.DataFrame) -> pl.DataFrame:
    """The log lines of `simulate_logs` in their published schema: `step` after `host`, the step of
    `traces` (the frame the lines were simulated from) whose interval (t - interval, t] holds the line."""
    t0 = int(traces["step"][0])
    ts = traces["timestamp"].head(2).dt.epoch("ms")
    step0_ms = int(ts[0])
    dt_ms = int(ts[1] - ts[0])
    after = logs["timestamp"].dt.epoch("ms") - step0_ms
    step = (t0 - (-after // dt_ms)).cast(pl.Int32).alias("step")  # t0 + ceil(after / dt)
    return logs.clone().insert_column(1, step)  # insert_column works in place: the caller's frame stays as it was


def alerts_table(alerts: pl.DataFrame, rules: list[str]) -> pl.DataFrame:
    """The alerts of `evaluate_alerts` in their published schema: rule, severity, outcome and kind as
    enums (`rules` the rule names in their file's order), steps int32, `kind` and `event_id` null together
    (a false alarm)."""
    from .alerts import ALERT_SEVERITIES

    return alerts.with_columns(
        pl.col("rule").cast(pl.Enum(rules)),
        pl.col("severity").cast(pl.Enum(list(ALERT_SEVERITIES))),
        pl.col("host").cast(pl.Int32),
        pl.col("fired_step", "resolved_step").cast(pl.Int32),
        pl.col("outcome").cast(OUTCOME),
        pl.col("event_id").cast(pl.Int64),
        pl.col("kind").cast(KIND),
    )


def recover_staging(output_dir: Path) -> bool:
    """Finish a swap a crash interrupted: `staging/` gone but `staging.old/` whole: put it back."""
    return recover_folder(output_dir / "staging", complete=lambda retired: (retired / MANIFEST).exists())


class Staging:
    """Writes one run's staging files into `staging.partial/`; `finish` swaps it in for `staging/`.

    Until a run finishes, the previous run's staging stays whole, so a crash costs nothing done.
    A block's files are written by a background thread while the caller simulates the next block
    (Parquet encoding releases the GIL); at most one block waits, so memory stays bounded.

    With `logs`, the same thread also simulates each block's log lines (`simulate_logs`, from the
    block's traces and events and the run's seed) in host ranges of LOG_PART_HOST_STEPS host-steps,
    one `logs` part each, and evaluates the alert rules over them (one `alerts` part per block); the
    alert counts per rule are added up for the manifest (`alert_summary`), and the excerpt of each
    sample's context window is chosen from the lines in memory (`sample_excerpts`).
    """

    def __init__(self, output_dir: Path):
        self.final = Path(output_dir) / "staging"
        self.dir = Path(output_dir) / "staging.partial"
        self._writer: ThreadPoolExecutor | None = None
        self._pending: Future | None = None
        self._files: dict[str, dict] = {}  # each written part's size, checksum and rows, for the manifest
        self.config: SimConfig | None = None
        self.seed = 0
        self._logs = None   # (templates, alert rules) of a run with logs
        self._log_parts = 0
        self._alert_counts: dict[str, dict[str, int]] = {}
        self._excerpts: list[pl.DataFrame] = []
        recover_staging(Path(output_dir))

    def begin(self, config: SimConfig, seed: int, logs: bool = False) -> None:
        """Start a run of `config` and `seed` (both recorded in every file's metadata); with `logs`, the
        run also stages its log lines and alerts (templates and rules are read and checked first)."""
        self._logs = None
        if logs:
            from .alerts import load_alert_rules
            from .logs import load_log_templates

            templates = load_log_templates()
            self._logs = (templates, load_alert_rules(templates=templates))
        if self.dir.exists():
            shutil.rmtree(self.dir)  # leftovers of an interrupted run
        for table in REQUIRED_TABLES + (LOG_TABLES if logs else ()):
            (self.dir / table).mkdir(parents=True)
        self.config, self.seed, self._files = config, seed, {}
        self._log_parts, self._alert_counts, self._excerpts = 0, {}, []
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="staging")

    def write_block(self, index: int, traces: Traces, config: SimConfig, events: pl.DataFrame | None = None,
                    *, samples: pl.DataFrame | None = None) -> None:
        """Queue block `index` for writing (after the previous block's files are written); a run with
        logs needs the block's `events`, and takes the excerpts of its `samples` (host, step) windows."""
        self._wait()
        if self._logs is not None and events is None:
            raise ValueError("write_block: a run with logs needs the block's events")
        light = dataclasses.replace(traces, base=None)  # the staging needs values and labels only
        # numba's thread count is per thread: the writer's log kernels use the caller's (--workers)
        self._pending = self._writer.submit(self._write_block, index, light, config, events,
                                            threads=numba.get_num_threads(), samples=samples)

    def _write_block(self, index: int, traces: Traces, config: SimConfig, events: pl.DataFrame | None,
                     *, threads: int, samples: pl.DataFrame | None = None) -> None:
        if self._logs is None:
            self._write("traces", index, traces_table(traces, config))
            self._write("labels", index, labels_table(traces))
            return
        table = traces_table(traces, config, with_labels=True)
        self._write("traces", index, table.select(pl.exclude("^label_.*$")))
        self._write("labels", index, labels_table(traces))
        numba.set_num_threads(threads)
        self._write_logs(index, table, events, samples)

    def _write_logs(self, index: int, traces: pl.DataFrame, events: pl.DataFrame,
                    samples: pl.DataFrame | None = None) -> None:
        """The block's log lines, in host ranges, its alerts and its samples' excerpts."""
        from .alerts import evaluate_alerts
        from .logs import simulate_logs

        templates, rules = self._logs
        hosts = traces["host"].unique(maintain_order=True)
        n_steps = len(traces) // len(hosts)
        per_part = max(1, LOG_PART_HOST_STEPS // n_steps)
        alerts = []
        for lo in range(0, len(hosts), per_part):
            part = traces.filter(pl.col("host").is_between(hosts[lo], hosts[min(lo + per_part, len(hosts)) - 1]))
            logs = simulate_logs(part, events, seed=self.seed, templates=templates,
                                 interval_s=self.config.simulation.interval_s)
            logs = logs_table(logs, part)
            self._write("logs", self._log_parts, logs)
            self._log_parts += 1
            if samples is not None:
                self._excerpts.append(self._sample_excerpts(logs, samples, part))
            result = evaluate_alerts(part, logs, events, rules=rules, templates=templates,
                                     interval_s=self.config.simulation.interval_s)
            alerts.append(result.alerts)
            for row in result.summary.iter_rows(named=True):
                counts = self._alert_counts.setdefault(row["rule"], {"form": row["form"]})
                for key, value in row.items():
                    if key not in ("rule", "form"):
                        counts[key] = counts.get(key, 0) + value
        self._write("alerts", index, alerts_table(pl.concat(alerts), [r.name for r in rules.rules]))

    def _sample_excerpts(self, logs: pl.DataFrame, samples: pl.DataFrame, part: pl.DataFrame) -> pl.DataFrame:
        """The excerpts of the samples of `part`'s hosts: their context window (context_steps points, the
        sample's last) of `logs`, the part's lines (`sample_log_excerpts`)."""
        from .logs import sample_log_excerpts

        first, last = part["host"][0], part["host"][-1]
        return sample_log_excerpts(logs, samples.filter(pl.col("host").is_between(first, last)),
                                   before=self.config.simulation.context_steps - 1)

    @property
    def sample_excerpts(self) -> pl.DataFrame | None:
        """host, step, log_total, log_lines of every sample given to `write_block` in a run with logs (None
        otherwise), in the order written; complete once the writer is closed (`close`)."""
        if self._logs is None or not self._excerpts:
            return None
        return pl.concat(self._excerpts)

    @property
    def alert_summary(self) -> dict[str, dict]:
        """Per rule (in the rules' order) of a run with logs: alerts, true alerts, false alarms, incidents of
        the kinds it detects, detected, missed; counted over every block written so far."""
        return dict(self._alert_counts)

    def _write(self, table: str, index: int, frame: pl.DataFrame) -> None:
        name = part_name(table, index)
        write_parquet(frame, self.dir / name,
                      file_metadata(self.config, self.seed, table, self.config.simulation.interval_s))
        # checksummed by the thread that wrote it, while the file is in the page cache and before
        # `finish`, where the manifest waits for it
        self._files[name] = {**file_record(self.dir / name), "rows": len(frame)}

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
        self._write("events", 0, events_table(events, self.config))
        self._write("samples", 0, samples_table(samples, self.config))
        files = dict(sorted(self._files.items()))
        written = REQUIRED_TABLES + (LOG_TABLES if self._logs is not None else ())
        tables = {t: {"parts": sum(n.startswith(t + "/") for n in files),
                      "rows": sum(r["rows"] for n, r in files.items() if n.startswith(t + "/"))} for t in written}
        extra = {"alerts_per_rule": self.alert_summary} if self._logs is not None else {}
        atomic_write_bytes(self.dir / MANIFEST, orjson.dumps(
            {"format": STAGING_FORMAT, **manifest, **extra, "tables": tables, "files": files},
            option=orjson.OPT_INDENT_2))
        swap_folder(self.dir, self.final, step="staging")


# ------------------------------------------------------------------------------------ the reader
class StagingError(SimulatorError):
    """A staging folder that cannot be read: missing, damaged, or of an older layout."""


@dataclasses.dataclass(frozen=True)
class StagedRun:
    """A staging folder checked against its manifest: its tables as Polars frames.

    `scan("traces")` is a LazyFrame over the table's parts (filters prune row groups: hosts and steps
    are sorted within each part); `read` collects it; `window` and `windows` pick the traces around
    points; `logs` and `log_windows` the log lines of a host in a step window (a run with logs)."""

    folder: Path
    manifest: dict

    @property
    def interval_s(self) -> float:
        return float(self.manifest["interval_s"])

    @property
    def steps_per_host(self) -> int:
        return int(self.manifest["steps_per_host"])

    @property
    def metrics(self) -> list[str]:
        """The metric columns of the traces (and of the samples)."""
        return [m for m in METRICS if m in self.scan("traces").collect_schema()]

    def files(self, table: str) -> list[Path]:
        if table not in TABLES:
            raise ValueError(f"unknown staging table {table!r}; the tables are {', '.join(TABLES)}")
        return [self.folder / n for n in sorted(self.manifest["files"]) if n.startswith(table + "/")]

    @property
    def has_logs(self) -> bool:
        """Whether the run staged its log lines and alerts (`generate --logs`)."""
        return all(t in self.manifest.get("tables", {}) for t in LOG_TABLES)

    def scan(self, table: str) -> pl.LazyFrame:
        return pl.scan_parquet(self.files(table))

    def read(self, table: str) -> pl.DataFrame:
        return self.scan(table).collect()

    def window(self, host: int, step: int, before: int = 12, after: int = 0) -> pl.DataFrame:
        """The traces of `host` from `before` steps before `step` to `after` steps after it (within the trace)."""
        return self.windows(pl.DataFrame({"host": [host], "step": [step]}), before, after).drop("at")

    def windows(self, points: pl.DataFrame, before: int, after: int = 0) -> pl.DataFrame:
        """For each point (a frame with `host`, `step` and any key columns of the caller's), the traces rows of
        its host from `before` steps before to `after` steps after it, clipped to the trace, with `at` = the
        point's step; in the points' order, then by step. One filtered scan and a join, whatever the count.

        Raises StagingError when the traces lack a point of a window (traces and samples disagree)."""
        return trace_windows(self.scan("traces"), self.steps_per_host, points, before, after=after, where=self.folder)

    def logs(self, host: int, start: int, end: int) -> pl.DataFrame:
        """The log lines of `host` whose step lies in [start, end], in file order, with `line`: the line as
        its file holds it (the source's header, then the message)."""
        if end < start:
            raise ValueError(f"logs: end step {end} before start step {start}")
        return self.log_windows(pl.DataFrame({"host": [host], "step": [end]}), before=end - start).drop("at")

    def log_windows(self, points: pl.DataFrame, before: int, after: int = 0) -> pl.DataFrame:
        """For each point (a frame with `host`, `step` and any key columns of the caller's), the log lines
        of its host whose step lies from `before` steps before to `after` steps after it, with `at` = the
        point's step and `line` (as `logs`); in the points' order, then file order (host, time). One
        filtered scan and a join, whatever the count. Raises StagingError for a run staged without logs."""
        from .logs import render_lines

        wanted, lines = self._window_lines(points, before, after)
        window = (lines.join(wanted, on=["host", "step"], how="inner", maintain_order="left")
                  .sort("_point", maintain_order=True).drop("_point"))
        return window.with_columns(render_lines(window).alias("line"))

    def log_excerpts(self, points: pl.DataFrame, before: int, limit: int | None = None) -> pl.DataFrame:
        """For each point (a frame with `host` and `step`), the excerpt of its host's log lines whose step
        lies from `before` steps before to the point's step, chosen as the dataset's samples choose theirs
        (`logs.log_excerpts`, at most `limit` lines, EXCERPT_LINES by default): `point` (the point's row),
        `total` (the window's lines), the lines' columns and `line` (as `logs`); by point, then file order.
        One filtered scan, whatever the count. Raises StagingError for a run staged without logs."""
        from .logs import EXCERPT_LINES, log_excerpts, render_lines

        _, lines = self._window_lines(points, before, 0)
        picked = log_excerpts(lines, points, before=before, limit=EXCERPT_LINES if limit is None else limit)
        return picked.with_columns(render_lines(picked).alias("line"))

    def _window_lines(self, points: pl.DataFrame, before: int, after: int) -> tuple[pl.DataFrame, pl.DataFrame]:
        """(each point's window steps: `_point`, the caller's key columns, host, `at`, step; the log lines of
        those host-steps, each once, in file order)."""
        if not self.has_logs:
            raise StagingError(f"{self.folder}: this run staged no logs; rerun python -m simulator generate --logs")
        keys = [c for c in points.columns if c not in ("host", "step")]
        wanted = (points.with_row_index("_point")
                  .select("_point", *keys, pl.col("host").cast(pl.Int32), pl.col("step").cast(pl.Int32).alias("at"))
                  .with_columns(pl.int_ranges(pl.col("at") - before, pl.col("at") + after + 1, dtype=pl.Int32)
                                .alias("step"))
                  .explode("step").filter(pl.col("step") >= 0))
        # the (host, step) pairs as one key: the reader tests it on those two columns first and reads the
        # other columns of the matching rows only
        key = pl.col("host").cast(pl.Int64) * (1 << 32) + pl.col("step")
        pairs = wanted.select(key.unique())["host"]
        return wanted, self.scan("logs").filter(key.is_in(pairs.implode())).collect()


def trace_windows(traces: pl.LazyFrame, steps_per_host: int, points: pl.DataFrame, before: int, *, after: int,
                  where: Path) -> pl.DataFrame:
    """`StagedRun.windows` over any traces table (host, step, metrics) with `steps_per_host` steps a host;
    `where` names the folder in the error (a StagingError when the traces lack a point of a window)."""
    last = steps_per_host - 1
    keys = [c for c in points.columns if c not in ("host", "step")]
    wanted = (points.with_row_index("_point")
              .select("_point", *keys, pl.col("host").cast(pl.Int32), pl.col("step").cast(pl.Int32).alias("at"))
              .with_columns(pl.int_ranges((pl.col("at") - before).clip(lower_bound=0),
                                          (pl.col("at") + after).clip(upper_bound=last) + 1,
                                          dtype=pl.Int32).alias("step"))
              .explode("step").drop_nulls("step"))
    if wanted.is_empty():
        return traces.head(0).collect().join(wanted.drop("_point"), on=["host", "step"])
    window = (traces
              .filter(pl.col("host").is_in(wanted["host"].unique().implode())
                      & pl.col("step").is_between(wanted["step"].min(), wanted["step"].max()))
              .join(wanted.lazy(), on=["host", "step"], how="inner")
              .sort("_point", "step").collect())
    if len(window) != len(wanted):
        lacking = wanted.join(window.select("_point", "step"), on=["_point", "step"], how="anti").row(0, named=True)
        raise StagingError(f"{where}: the traces lack host {lacking['host']} step {lacking['step']} "
                           f"(the window of step {lacking['at']}); the staging's tables disagree")
    return window.drop("_point")


def locate_staging(path: str | Path) -> Path | None:
    """The staging folder `path` names: the folder itself, its manifest.json, or an output folder holding
    staging/; None when `path` is not a folder (a file such as the metrics JSON). Raises StagingError for a
    folder that is none of these."""
    p = Path(path)
    if p.name == MANIFEST and p.is_file():
        return p.parent
    if not p.is_dir():
        return None
    if (p / MANIFEST).exists() or p.name == "staging" or any(p.glob("*.parquet")):
        return p
    if (p / "staging").is_dir():
        return p / "staging"
    raise StagingError(f"{p} is a folder with neither a staging manifest nor a staging/ folder")


def open_staging(folder: str | Path, *, verify: bool = True) -> StagedRun:
    """The staging folder `folder` (`training/staging`), its manifest checked and, with `verify`, every
    file against its recorded size and sha256. Raises StagingError (one line naming the file) otherwise."""
    from .integrity import check_staging, read_staging_manifest

    folder = Path(folder)
    rebuild = "rerun python -m simulator generate to rebuild the staging"
    manifest, problem = read_staging_manifest(folder)
    if problem is not None:
        raise StagingError(f"{folder / problem}; {rebuild}")
    if manifest.get("format") != STAGING_FORMAT:
        raise StagingError(f"{folder / MANIFEST}: staging of an older layout (one flat folder); {rebuild}")
    problems = check_staging(folder) if verify else []
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise StagingError(f"{folder / problems[0]}{more}; {rebuild}")
    run = StagedRun(folder, manifest)
    absent = [t for t in REQUIRED_TABLES + (LOG_TABLES if run.has_logs else ()) if not run.files(t)]
    if absent:
        raise StagingError(f"{folder / MANIFEST}: lists no {absent[0]}/ parts; {rebuild}")
    return run
