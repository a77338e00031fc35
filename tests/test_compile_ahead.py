"""Compiling ahead (simulator/_ahead.py): on a cold cache a second process compiles the kernels the
sample job needs after the simulation; what it compiles must be what the job uses."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from simulator import _ahead

ROOT = Path(__file__).resolve().parent.parent


def _python(code: str, **env) -> str:
    """stdout of `code` run in a fresh interpreter on this tree (a process of its own: the numba
    dispatchers start without signatures, and NUMBA_CACHE_DIR is read at import)."""
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **env}, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_the_kernels_compiled_ahead_are_the_ones_the_job_calls(tmp_path):
    # after the ahead calls, a small sample job and its JSON export add no specialisation to any
    # kernel of the sampling, context and JSON modules: the job loads what the second process cached
    out = _python(f"""
        import gc
        from numba.core.registry import CPUDispatcher
        from simulator import _ahead
        from simulator.api import generate_samples
        from simulator.export import write_metrics_dataset

        _ahead.main(list(_ahead.AFTER_SIMULATION))
        def signatures():
            return {{(k.py_func.__module__, k.py_func.__name__): set(k.signatures) for k in gc.get_objects()
                     if isinstance(k, CPUDispatcher)
                     and k.py_func.__module__ in ("simulator.samples", "simulator.context", "simulator.jsonfmt")}}
        before = signatures()
        result = generate_samples(300, seed=3)
        write_metrics_dataset(__import__("pathlib").Path({str(tmp_path / "m.json")!r}), result.metadata, result.samples)
        after = signatures()
        print("compiled ahead:", sorted(name for name, sigs in before.items() if sigs))
        print("added by the job:", sorted(name for name, sigs in after.items() if sigs - before.get(name, set())))
    """)
    assert "added by the job: []" in out, out
    for kernel in ("pick_event_points", "gather_context", "evidence_levels", "splice_rows"):
        assert kernel in out.splitlines()[-2]


def test_the_second_process_starts_only_on_a_cold_cache(tmp_path):
    check = "from simulator import _ahead; print(_ahead.cold(['evidence']))"
    assert _python(check, NUMBA_CACHE_DIR=str(tmp_path)).split()[-1] == "True"
    _python("from simulator import _ahead; _ahead.main(['evidence'])", NUMBA_CACHE_DIR=str(tmp_path))
    assert _python(check, NUMBA_CACHE_DIR=str(tmp_path)).split()[-1] == "False"


def _child(code: str) -> _ahead.CompileAhead:
    return _ahead.CompileAhead(subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE))


def test_the_job_waits_for_a_kernel_until_the_second_process_reports_it():
    with _child("import time; print('sampling', flush=True); time.sleep(0.3); print('json', flush=True)") as ahead:
        assert ahead.wait_for("json")
        assert ahead.done == {"sampling", "json"}


def test_a_second_process_that_fails_or_hangs_costs_only_the_wait():
    with _child("import sys; print('sampling', flush=True); sys.exit(3)") as ahead:
        assert ahead.wait_for("sampling")
        assert not ahead.wait_for("json")  # it ended without: the job compiles the kernel itself
        assert ahead.process is None  # seen to end, not waited for until the timeout
    hanging = _child("import time; time.sleep(60)")
    assert not hanging.wait_for("json", timeout=0.5)
    process = hanging.process
    assert process.poll() is None
    hanging.close()
    assert process.poll() is not None  # ended, not left running
    assert not _ahead.CompileAhead().wait_for("json")  # no second process (a warm cache): nothing to wait for


def test_the_job_calls_before_sampling_once_before_its_first_sampling_kernel(monkeypatch):
    # the CLI waits there for the second process: every sampling kernel must come after it
    from simulator import api

    calls = []
    select_points = api.select_points
    monkeypatch.setattr(api, "select_points", lambda *a, **k: calls.append("select") or select_points(*a, **k))
    api.generate_samples(300, seed=3, before_sampling=lambda: calls.append("ready"))
    assert calls[0] == "ready" and calls.count("ready") == 1 and "select" in calls
