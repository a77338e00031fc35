"""Back-to-back full collections: heap pinned near its maximum, most of the time spent in GC."""

from dataclasses import dataclass

import numpy as np

from ..catalogue import C_GC_STORM, C_HEAP_FLOOR
from .base import AnomalyKind, EventBatch, KindParams, param, register, rise_hold_fall


@dataclass(frozen=True)
class JvmGcStormParams(KindParams):
    max_gc_share: float = param(0.9, 0.05, 1.0, "share of time in GC at severity 1")


def build(batch: EventBatch, p: JvmGcStormParams) -> np.ndarray:
    owner, t_rel, steps = batch.positions()
    profile = batch.empty_profile()
    shape = rise_hold_fall(t_rel, steps, np.minimum(2, steps), np.ones_like(steps))
    profile[:, C_GC_STORM] = batch.severity[owner] * p.max_gc_share * np.maximum(shape, 0.5)
    profile[:, C_HEAP_FLOOR] = 100.0  # the kernel pins the heap at 95-99.9 %
    return profile


KIND = register(AnomalyKind(
    name="jvm_gc_storm", params=JvmGcStormParams, primary="java_gc_time",
    affects=("java_gc_time", "java_heap_usage", "cpu_usage", "load_average", "spectrum_active_jobs",
             "memory_usage"),
    build=build,
    description="heap >= 95 %, GC time 30-90 %, CPU up, jobs stall and pile up",
))
