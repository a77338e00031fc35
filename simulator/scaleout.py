"""Run a sharded trace job on an engine and publish its output directory whole.

Engines: `local` computes the host ranges one after another in this process (numba threads inside
each); `dask` submits them to a dask.distributed cluster (`--scheduler ADDRESS`, or a LocalCluster of
`workers` processes on 127.0.0.1).  Both write the same files with the same bytes.

Output protocol (the same as the staging swap): parts go to `<output>.partial/` beside the output,
with a `job.json` naming the job; a rerun of the same job after a crash keeps the host ranges whose
files are all there.  When every range is done, stray temporary files of killed workers are removed,
`manifest.json` (the job and every file's size, rows and sha256; nothing that depends on where the job
ran) is written, and `<output>.partial/` replaces `<output>/`.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import orjson
import polars as pl

from datasafe import atomic_write_bytes, kill_point, swap_folder
from datasafe.integrity import file_record

from . import __version__
from .errors import SimulatorError
from .shards import JOB_FILE, TraceJob, job_marker, run_host_range
from .staging import trace_windows

ENGINES = ("local", "dask")
MANIFEST = "manifest.json"
FORMAT = "simulator-sharded-traces/1"

Progress = Callable[[int, int], None]


def run_job(job: TraceJob, output: Path, *, engine: str = "local", scheduler: str | None = None,
            workers: int | None = None, progress: Progress | None = None) -> dict:
    """Compute every host range of `job` into directory `output`; return the manifest written."""
    if engine not in ENGINES:
        raise SimulatorError(f"--engine: must be one of {', '.join(ENGINES)}, got {engine!r}")
    if scheduler is not None and engine != "dask":
        raise SimulatorError("--scheduler: only with --engine dask")
    output = Path(output)
    _check_output(output)
    partial = output.with_name(output.name + ".partial")
    done = _resume(job, partial)
    todo = [r for r in range(job.n_ranges) if r not in done]
    if progress and done:
        progress(len(done), job.n_ranges)
    records = dict(done)
    if engine == "local":
        from .api import worker_threads

        with worker_threads(workers):
            for r in todo:
                records[r] = run_host_range(job, r, partial)
                if progress:
                    progress(len(records), job.n_ranges)
    else:
        from .dask_engine import run_on_dask

        for r, files in run_on_dask(job, todo, partial, scheduler=scheduler, workers=workers):
            records[r] = files
            if progress:
                progress(len(records), job.n_ranges)
    return _publish(job, partial, output, records)


def _check_output(output: Path) -> None:
    """Refuse an output whose folders (<output>, .partial, .old) hold anything but this tool's work."""
    if output.suffix.lower() in (".parquet", ".csv"):
        raise SimulatorError(f"--output: {output} is a file name; a sharded job writes a directory")
    if output.exists():
        if not output.is_dir():
            raise SimulatorError(f"--output: {output} exists and is not a directory")
        if any(output.iterdir()) and not _is_sharded_output(output):
            raise SimulatorError(f"--output: {output} is not empty and holds no sharded traces (no "
                                 f"{MANIFEST} of format {FORMAT}); choose another directory")
    partial = output.with_name(output.name + ".partial")
    if partial.exists() and not (partial.is_dir() and ((partial / JOB_FILE).is_file() or _is_empty(partial))):
        raise SimulatorError(f"--output: {partial} exists and is not an unfinished job of this tool (no "
                             f"{JOB_FILE}); move it away")
    retired = output.with_name(output.name + ".old")
    if retired.exists() and not (retired.is_dir() and (_is_sharded_output(retired) or _is_empty(retired))):
        raise SimulatorError(f"--output: {retired} exists and holds no sharded traces; move it away")


def _is_empty(folder: Path) -> bool:
    """An empty real folder: what a run killed between making `.partial` and writing job.json leaves."""
    return not folder.is_symlink() and not any(folder.iterdir())


def _is_sharded_output(folder: Path) -> bool:
    try:
        return orjson.loads((folder / MANIFEST).read_bytes()).get("format") == FORMAT
    except (OSError, orjson.JSONDecodeError, AttributeError):
        return False


def _resume(job: TraceJob, partial: Path) -> dict[int, dict]:
    """Host ranges already complete in `partial` from an interrupted run of the same job and code."""
    marker = partial / JOB_FILE
    wanted = job_marker(job)
    if partial.is_dir():
        try:
            same = marker.read_bytes() == wanted
        except OSError:
            same = False
        if same:
            done = {}
            for r in range(job.n_ranges):
                names = job.range_files(r)
                if all((partial / n).is_file() for n in names):
                    done[r] = {n: _record(partial / n) for n in names}
            return done
        shutil.rmtree(partial)  # another job's (or older code's) parts, or empty: _check_output allowed it
    partial.mkdir(parents=True)
    atomic_write_bytes(marker, wanted)
    return {}


def _record(path: Path) -> dict:
    import pyarrow.parquet as pq

    return {**file_record(path), "rows": pq.ParquetFile(path).metadata.num_rows}


def _publish(job: TraceJob, partial: Path, output: Path, records: dict[int, dict]) -> dict:
    files = {name: rec for r in sorted(records) for name, rec in sorted(records[r].items())}
    expected = {n for r in range(job.n_ranges) for n in job.range_files(r)}
    # what the tasks reported must be on disk here (a worker may have written into another machine's folder)
    absent = sorted(n for n in expected if n not in files or not (partial / n).is_file()
                    or (partial / n).stat().st_size != files[n]["bytes"])
    if absent:
        raise SimulatorError(f"sharded job incomplete: {len(absent)} of {len(expected)} files missing or of the "
                             f"wrong size in {partial}, e.g. {absent[:3]}; the previous output is untouched")
    # temporary files of workers killed while writing; job.json stays until published, so a crash from
    # here on still resumes
    _prune(partial, keep=expected | {JOB_FILE})
    manifest = {"format": FORMAT, "generator": f"simulator {__version__}", **job.describe(),
                "values": job.values, "rows": sum(rec["rows"] for n, rec in files.items() if n.startswith("part-")),
                "events": sum(rec["rows"] for n, rec in files.items() if n.startswith("events-")),
                "files": files}
    atomic_write_bytes(partial / MANIFEST, orjson.dumps(manifest, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
    # once swapped in, job.json goes; so does a late copy's temporary file (dask may run a task twice) that
    # the rename carried along (after the rename its writes fail: the .partial path is gone, and a task
    # never makes it)
    swap_folder(partial, output, step="publish", remove=_remove_published,
                settle=lambda published: _prune(published, keep=expected | {MANIFEST}))
    return manifest


def _prune(folder: Path, keep: set[str], step: str | None = None) -> None:
    """Delete every entry of `folder` whose name is not in `keep` (links themselves, never their targets)."""
    for path in folder.iterdir():
        if path.name not in keep:
            path.unlink() if path.is_file() or path.is_symlink() else shutil.rmtree(path)
            if step:
                kill_point(step)


def _remove_published(folder: Path) -> None:
    """Delete a retired output, its manifest last: a crash midway leaves a folder still recognised as ours."""
    _prune(folder, keep={MANIFEST}, step="publish:removing-old")
    (folder / MANIFEST).unlink(missing_ok=True)
    folder.rmdir()


def check_sharded(output: Path) -> list[str]:
    """Problems of a published sharded output: manifest missing or unreadable, files damaged."""
    from datasafe.integrity import check_files

    try:
        manifest = orjson.loads((Path(output) / MANIFEST).read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        return [f"{MANIFEST}: {exc}"]
    return check_files(Path(output), {n: {k: v for k, v in rec.items() if k != "rows"}
                                      for n, rec in manifest.get("files", {}).items()})


# ------------------------------------------------------------------------------------ the reader
@dataclass(frozen=True)
class ShardedTraces:
    """A published sharded output checked against its manifest: the traces and events as Polars frames.

    `scan("traces")` is a LazyFrame over every part (host and step sorted within each, so filters prune);
    `windows` picks the traces around points, as the staging reader's does."""

    folder: Path
    manifest: dict

    @property
    def steps_per_host(self) -> int:
        return int(self.manifest["steps"])

    @property
    def interval_s(self) -> float:
        return float(self.manifest["interval_s"])

    def files(self, table: str) -> list[Path]:
        prefix = {"traces": "part-", "events": "events-"}.get(table)
        if prefix is None:
            raise ValueError(f"unknown table {table!r}; the tables are traces, events")
        return [self.folder / n for n in sorted(self.manifest["files"]) if n.startswith(prefix)]

    def scan(self, table: str) -> pl.LazyFrame:
        return pl.scan_parquet(self.files(table))

    def read(self, table: str) -> pl.DataFrame:
        return self.scan(table).collect()

    def windows(self, points: pl.DataFrame, before: int, after: int = 0) -> pl.DataFrame:
        return trace_windows(self.scan("traces"), self.steps_per_host, points, before, after=after, where=self.folder)


def open_traces(folder: str | Path, *, verify: bool = True) -> ShardedTraces:
    """The sharded output `folder` of `python -m simulator traces`, its manifest checked and, with `verify`,
    every file against its recorded size and sha256. Raises SimulatorError (one line naming the file)."""
    folder = Path(folder)
    if not _is_sharded_output(folder):
        raise SimulatorError(f"{folder / MANIFEST}: missing, unreadable or not of format {FORMAT}; "
                             "rerun python -m simulator traces")
    problems = check_sharded(folder) if verify else []
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise SimulatorError(f"{folder}: {problems[0]}{more}; rerun python -m simulator traces")
    return ShardedTraces(folder, orjson.loads((folder / MANIFEST).read_bytes()))


def anomalous_share(output: Path) -> float:
    """The share of rows of a published sharded output where some metric is anomalous."""
    parts = sorted(Path(output).glob("part-*.parquet"))
    if not parts:
        return 0.0
    return float(pl.scan_parquet(parts).select(pl.col("is_anomaly").mean()).collect().item())
