"""Back-to-back full collections: heap pinned near its maximum, most of the time spent in GC."""

from dataclasses import dataclass

import numpy as np
from polars import Expr

from ..catalogue import C_GC_STORM, C_HEAP_FLOOR
from ..phrases import Phrases
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


# how an answer may name this kind (matched as whole words by the verifier of grounded answers)
NAMES = ("gc storm", "garbage collection storm", "gc thrashing", "full gc", "full gcs", "garbage collection",
         "gc overhead", "heap exhaustion", "gc pressure")


def explain(say: Phrases) -> tuple[Expr, ...]:
    """The phrasings of its explanation, from what a sample shows."""
    return (
        say.text("A GC storm: {}; the heap is at {}.", say.moved("java_gc_time"), say.now("java_heap_usage")),
        say.text("The JVM is collecting back to back: {}. CPU is {}.", say.moved("java_gc_time"), say.now("cpu_usage")),
        say.text("{}; {}.", say.moved("java_heap_usage"), say.moved("java_gc_time")),
    )


KIND = register(AnomalyKind(
    name="jvm_gc_storm", params=JvmGcStormParams, primary="java_gc_time",
    affects=("java_gc_time", "java_heap_usage", "cpu_usage", "load_average", "spectrum_active_jobs",
             "memory_usage"),
    build=build,
    description="heap >= 95 %, GC time 30-90 %, CPU up, jobs stall and pile up",
    names=NAMES, explain=explain,
))
