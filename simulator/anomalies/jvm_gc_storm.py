"""Back-to-back full collections: heap pinned near its maximum, most of the time spent in GC."""

from dataclasses import dataclass

import numpy as np
from polars import Expr

from ..catalogue import C_GC_STORM, C_HEAP_FLOOR, P
from ..phrases import Phrases
from .base import (
    U_ONSET, AnomalyKind, EventBatch, KindParams, Shape, envelope, param, ramp_steps, recovery_steps, register,
)


@dataclass(frozen=True)
class JvmGcStormParams(KindParams):
    max_gc_share: float = param(0.9, 0.05, 1.0, "share of time in GC at severity 1")


# a storm builds as live data fills the old generation (the young space left shrinks, so young
# collections come ever faster), then the JVM collects back to back with the heap pinned, the share
# of time in GC varying from one interval to the next, and eases as collections reclaim the old
# generation step by step
SHAPE = Shape(onset=(0.05, 0.2), recovery=(0.05, 0.2), tail=0.3, sigma=0.1, phi=0.5)
STORM_FROM = 0.6  # the intensity at which the onset's old generation is at its fullest
OVERFILL = 1.2    # how far past the old-generation threshold the live data reaches before the storm, in its room


def build(batch: EventBatch, p: JvmGcStormParams) -> np.ndarray:
    owner, t_rel, steps = batch.positions()
    profile = batch.empty_profile()
    level = envelope(batch, SHAPE)
    onset = np.minimum(ramp_steps(batch, SHAPE.onset, U_ONSET, 1), batch.steps - 1)
    recovery = recovery_steps(batch, SHAPE, onset)
    onset, recovery = onset[owner], recovery[owner]
    # back-to-back collections between the onset and the recovery (at least one step)
    storm = (t_rel >= onset) & (t_rel < np.maximum(steps - recovery, onset + 1))
    # while the onset lasts the old generation is still filling: below the storm's intensity
    level = np.where(t_rel < onset, np.minimum(level, STORM_FROM * (t_rel + 1) / (onset + 1)), level)
    profile[:, C_GC_STORM] = np.where(storm, batch.severity[owner] * p.max_gc_share * level, 0.0)
    # live data in the old generation: on the onset it climbs past the level where old-generation
    # collections start (and eases back on the recovery), so the young space shrinks, young
    # collections come ever faster and full ones begin; while the storm lasts the kernel pins the
    # heap at 95-99.9 %
    room = batch.host_params[owner, P["heap_full_gc_at"]] - batch.host_params[owner, P["heap_floor"]]
    filling = OVERFILL * np.maximum(room, 0.0) * np.minimum(level / STORM_FROM, 1.0)
    profile[:, C_HEAP_FLOOR] = np.where(storm, 100.0, filling)
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
