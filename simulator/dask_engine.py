"""The dask.distributed engine: one task per host range, retried by the cluster if a worker fails.

Tasks are pure functions of (job, host range) writing files under fixed names, so a task the
scheduler re-runs after losing its worker rewrites the same bytes: the output has no duplicates
and does not depend on which worker computed what.  Dask is an optional extra:
`pip install -e ".[dask]"`.
"""

from __future__ import annotations

import hashlib
import logging
from contextlib import ExitStack
from pathlib import Path
from typing import Iterator

from .errors import SimulatorError, UserError
from .shards import TraceJob, run_host_range

TASK_RETRIES = 3        # attempts beyond the first for a task that raised on its worker
CONNECT_TIMEOUT = "30s"


def run_on_dask(job: TraceJob, ranges: list[int], partial: Path, *, scheduler: str | None = None,
                workers: int | None = None) -> Iterator[tuple[int, dict]]:
    """Yield (host range, file records) as the cluster finishes each range."""
    try:
        from distributed import Client, LocalCluster, as_completed
    except ImportError:
        raise SimulatorError('--engine dask: dask.distributed is not installed; pip install -e ".[dask]"') from None
    if workers is not None and workers < 1:
        raise SimulatorError(f"--workers: must be at least 1, got {workers}")
    with ExitStack() as stack:
        if scheduler is None:
            import os

            n = workers or os.cpu_count() or 1
            cluster = stack.enter_context(LocalCluster(  # dashboard on a free loopback port: never a clash
                n_workers=n, threads_per_worker=1, processes=True, host="127.0.0.1",
                dashboard_address="127.0.0.1:0", silence_logs=logging.ERROR))
            threads = 1
            client = stack.enter_context(Client(cluster))
        else:
            try:
                client = stack.enter_context(Client(scheduler, timeout=CONNECT_TIMEOUT))
            except (OSError, TimeoutError) as exc:
                raise SimulatorError(f"--scheduler: cannot reach {scheduler}: {exc}") from None
            threads = None
        if not ranges:
            return
        # the folder is part of the key: on a shared scheduler, the same job into another folder is other work
        where = hashlib.sha256(str(partial.resolve()).encode()).hexdigest()[:8]
        futures = {client.submit(run_host_range, job, r, str(partial), threads,
                                 key=f"simulator-{job.fingerprint}-{where}-h{r:05d}", retries=TASK_RETRIES,
                                 pure=False): r
                   for r in ranges}
        for future in as_completed(futures):
            r = futures[future]
            try:
                files = future.result()
            except UserError:
                raise
            except Exception as exc:  # KilledWorker, or the task's own error after its retries
                raise SimulatorError(f"--engine dask: host range {r} failed after {TASK_RETRIES} retries: "
                                     f"{type(exc).__name__}: {exc}") from None
            yield r, files
