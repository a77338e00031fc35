"""Anomaly kinds: one module each, registered on import.  Add a kind by adding a module here."""

from .base import ANOMALY_KINDS, AnomalyKind, EventBatch, KindParams, param, register
from . import (cpu_spike, daemon_crash, disk_full, job_backlog, jvm_gc_storm,  # noqa: F401
               memory_leak, network_congestion, runaway_process)

__all__ = ["ANOMALY_KINDS", "AnomalyKind", "EventBatch", "KindParams", "param", "register"]
