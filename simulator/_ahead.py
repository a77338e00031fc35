"""Compiling ahead: on a cold numba cache, a second process compiles the kernels the sample job needs
after the simulation while this one compiles the host model.

A first run after install (or after the package's sources changed: `_numba.package_stamp`) compiles
every kernel, one after the other, on one core.  `start` checks the disk cache of the kernels of
`AFTER_SIMULATION`; when one has no build, it starts `python -m simulator._ahead NAME...`, which
calls each named kernel once on empty inputs of the types the job passes (so it compiles the job's
own specialisations, which numba caches on disk) and prints the kernel's name once it is cached.
The job calls `wait_for(name)` before the kernel's first use and then loads it from the cache.
Nothing but those names passes between the processes.  A second process that fails or does not
answer in time costs only the wait: the job compiles what is missing itself, as without it.
"""

from __future__ import annotations

import logging
import os
import select
import subprocess
import sys
import time
from typing import Callable

import numpy as np

from ._numba import PACKAGE_DIR

log = logging.getLogger(__name__)

WAIT_S = 120.0  # longest wait for one kernel (a cold compile of all of them takes 10-20 s)


def _sampling() -> None:
    from .catalogue import N_METRICS
    from .samples import normal_mask, pick_event_points

    labels = np.zeros((N_METRICS, 0, 0), dtype=np.int32)
    none = np.zeros(0, dtype=np.int64)
    read_only = none.copy()
    read_only.setflags(write=False)  # columns Polars hands over without a copy
    pick_event_points(labels, none, read_only, read_only, read_only, read_only, read_only, np.zeros(0), 0)
    normal_mask(labels)


def _context() -> None:
    from .catalogue import N_METRICS
    from .context import gather_context, steps_until_at_least

    values = np.zeros((N_METRICS, 0, 0), dtype=np.float32)
    none = np.zeros(0, dtype=np.int64)
    metric, level = none.copy(), np.zeros(0)
    metric.setflags(write=False)
    level.setflags(write=False)
    gather_context(values, none, none, 1, 1, 1, np.zeros(N_METRICS))
    steps_until_at_least(values, metric, none, none, level, none)


def _evidence() -> None:
    from .catalogue import N_METRICS
    from .context import evidence_levels
    from .explain import MIN_HISTORY_HOURS, OFF_SPREADS

    # one sample: an empty slice would count as contiguous, the job's history (without the snapshot's
    # hour) is not
    fine = np.zeros((N_METRICS, 1, 2), dtype=np.float32)
    hist = np.zeros((N_METRICS, 1, 3), dtype=np.float32)[:, :, :-1]
    evidence_levels(fine, hist, np.zeros((N_METRICS, 1)), MIN_HISTORY_HOURS, 1.0, OFF_SPREADS)


def _json() -> None:
    from .catalogue import METRICS, N_METRICS
    from .jsonfmt import splice_windows

    window = np.zeros((0, N_METRICS, 1), dtype=np.float32)
    splice_windows(b"", window, window, integer=np.zeros(N_METRICS, dtype=bool), names=list(METRICS))


# what the sample job compiles after the host model, in the order it first needs it: name -> (the
# kernel's module and name, to check its cache; the call that compiles it and its callees)
AFTER_SIMULATION: dict[str, tuple[str, str, Callable[[], None]]] = {
    "sampling": ("samples", "pick_event_points", _sampling),
    "context": ("context", "gather_context", _context),
    "evidence": ("context", "evidence_levels", _evidence),
    "json": ("jsonfmt", "splice_rows", _json),
}


def cold(names: list[str]) -> bool:
    """True when the disk cache holds no build of one of these kernels for the package as it is."""
    import importlib

    for name in names:
        module, kernel, _ = AFTER_SIMULATION[name]
        dispatcher = getattr(importlib.import_module(f"{__package__}.{module}"), kernel)
        try:
            if not dispatcher._cache._cache_file._load_index():
                return True
        except (AttributeError, OSError):  # another numba layout: leave the compiling to the job
            return False
    return False


class CompileAhead:
    """The second process and the names it reported; `wait_for` returns at once when there is none."""

    def __init__(self, process: subprocess.Popen | None = None):
        self.process = process
        self.done: set[str] = set()
        self._pending = b""

    def wait_for(self, name: str, timeout: float = WAIT_S) -> bool:
        """Wait until the second process has cached `name`'s kernels; False if it ended or timed out
        without (the caller compiles them)."""
        if self.process is None or name in self.done:
            return name in self.done
        deadline = time.monotonic() + timeout
        fd = self.process.stdout.fileno()
        while name not in self.done:
            left = deadline - time.monotonic()
            try:  # (a pipe is not selectable on every platform: then the job compiles by itself)
                ready = left > 0 and select.select([fd], [], [], left)[0]
            except (OSError, ValueError):
                ready = False
            if not ready:
                log.debug("compile-ahead: no answer for %s within %.0f s", name, timeout)
                return False
            chunk = os.read(fd, 4096)
            if not chunk:
                log.debug("compile-ahead: ended with status %s before %s", self.process.wait(), name)
                self.close()
                return False
            *lines, self._pending = (self._pending + chunk).split(b"\n")
            self.done.update(line.decode() for line in lines)
        return True

    def close(self) -> None:
        """End the second process if it still runs (its cache writes are atomic: os.replace)."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self.process.stdout.close()
        self.process = None

    def __enter__(self) -> "CompileAhead":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def start(names: list[str]) -> CompileAhead:
    """A second process compiling `names` (keys of AFTER_SIMULATION) when the cache is cold, else none."""
    if not cold(names):
        return CompileAhead()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(  # this package, wherever it was imported from
        [str(PACKAGE_DIR.parent)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    try:
        process = subprocess.Popen([sys.executable, "-m", f"{__package__}._ahead", *names], env=env,
                                   stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    except OSError as exc:
        log.debug("compile-ahead: not started (%s)", exc)
        return CompileAhead()
    return CompileAhead(process)


def main(names: list[str]) -> None:
    for name in names:
        AFTER_SIMULATION[name][2]()
        print(name, flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
