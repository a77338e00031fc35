"""SIGKILL at random points of a run: nothing done is lost, nothing is half-written.

The simulator is killed while it generates, stages, exports and backs up; afterwards the previous
dataset is intact or the new one complete, the staging is consistent with its manifest, and a rerun
gives the same bytes as an uninterrupted run.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from simulator.integrity import check_metrics_dataset, check_staging

ROOT = Path(__file__).resolve().parents[2]

SAMPLES = "6000"
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "SOURCE_DATE_EPOCH": "1767571200"}


def _run(out, seed, wait=True, samples=SAMPLES, env=None):
    """`python -m simulator` into `out`: to the end (asserting success), or started and returned (to kill).
    `env` adds variables (benchmarks/reliability.py sets the DATASAFE_KILL_AT hook)."""
    cmd = [sys.executable, "-m", "simulator", "--samples", str(samples), "--seed", str(seed), "--output-dir",
           str(out), "--quiet"]
    env = ENV | (env or {})
    if wait:
        proc = subprocess.run(cmd, env=env, capture_output=True, timeout=300)
        assert proc.returncode == 0, proc.stderr.decode()[-2000:]
        return None
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def references(tmp_path_factory):
    """Uninterrupted runs with seeds 1 and 2, and how long one run takes."""
    root = tmp_path_factory.mktemp("ref")
    _run(root / "one", 1)
    started = time.monotonic()
    _run(root / "two", 2)
    return ((root / "one" / "metrics_dataset.json").read_bytes(),
            (root / "two" / "metrics_dataset.json").read_bytes(), time.monotonic() - started)


@pytest.mark.slow
@pytest.mark.parametrize("fraction", [0.05, 0.2, 0.35, 0.5, 0.62, 0.75, 0.85, 0.95, 1.1])
def test_sigkill_leaves_old_or_new_dataset_and_rerun_is_identical(tmp_path, references, fraction):
    first, second, duration = references
    out = tmp_path / "out"
    _run(out, 1)
    proc = _run(out, 2, wait=False)
    time.sleep(duration * fraction)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    dataset = (out / "metrics_dataset.json").read_bytes()
    assert dataset in (first, second)                       # never half-written
    assert check_metrics_dataset(out / "metrics_dataset.json") is None
    if (out / "staging").exists():
        assert check_staging(out / "staging") == []
    _run(out, 2)                                             # the rerun completes ...
    assert (out / "metrics_dataset.json").read_bytes() == second   # ... with the same bytes
    assert check_staging(out / "staging") == []
