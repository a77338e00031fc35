"""Simulated, labelled server metrics for training a monitoring assistant.

Public API:
  generate_samples(n, ...)  -> SampleSet: labelled snapshots (Polars), their events and metadata
  simulate(hosts, steps, ...) -> (traces, events): full labelled traces as Polars frames
  load_config(path)         -> SimConfig: the validated metrics config
"""

__version__ = "0.1.0"

from .api import SampleSet, generate_samples, simulate  # noqa: E402
from .catalogue import METRICS  # noqa: E402
from .config import SimConfig, load_config  # noqa: E402
from .errors import ConfigError, SimulatorError  # noqa: E402

__all__ = ["generate_samples", "simulate", "load_config", "SampleSet", "SimConfig", "METRICS",
           "ConfigError", "SimulatorError", "__version__"]
