"""Simulated, labelled server metrics for training a monitoring assistant.

Public API:
  generate_samples(n, ...)  -> SampleSet: labelled snapshots (Polars), their events and metadata
  simulate(hosts, steps, ...) -> (traces, events): full labelled traces as Polars frames
  iter_traces(hosts, steps, ...) -> the same (traces, events) block by block, in bounded memory
  open_staging(folder)      -> StagedRun: a staging folder checked against its manifest; its tables
                               (traces, labels, events, samples; logs, alerts with --logs) as Polars
                               frames, windows of traces, a host's log lines in a step window
  load_config(path)         -> SimConfig: the validated metrics config

The names are imported on first use, so `python -m simulator --help` and the error paths of the
command line do not pay for numba and Polars.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_LAZY = {
    "SampleSet": ".api", "generate_samples": ".api", "simulate": ".api", "iter_traces": ".api",
    "open_staging": ".staging", "StagedRun": ".staging", "StagingError": ".staging",
    "METRICS": ".catalogue",
    "SimConfig": ".config", "load_config": ".config",
    "ConfigError": ".errors", "SimulatorError": ".errors",
}

__all__ = [*_LAZY, "__version__"]


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
