"""A slow leak in a Java service: memory and the old generation climb, GC works harder, maybe an OOM kill."""

from dataclasses import dataclass

import numpy as np
from polars import Expr

from ..catalogue import C_HEAP_FLOOR, C_JVM_RESTART, C_MEM
from ..phrases import Phrases
from .base import AnomalyKind, EventBatch, KindParams, growth, param, register


@dataclass(frozen=True)
class MemoryLeakParams(KindParams):
    max_growth_pct: float = param(55.0, 1.0, 100.0, "memory growth over the window at severity 1, percent of RAM")
    heap_floor_growth_pct: float = param(60.0, 0.0, 100.0, "old-generation growth at severity 1, percent of heap")
    restart_probability: float = param(0.5, 0.0, 1.0, "chance the leak ends in an OOM kill and restart")
    memory_freed_pct: float = param(6.0, 0.0, 50.0, "memory below normal while the killed JVM restarts")


LEAK_SIGMA, LEAK_PHI = 0.3, 0.7  # the leak rate's variation (std of its log) and persistence


def build(batch: EventBatch, p: MemoryLeakParams) -> np.ndarray:
    owner, t_rel, steps = batch.positions()
    profile = batch.empty_profile()
    severity = batch.severity[owner]
    # leaks accelerate a little as caches of leaked objects grow: convex ramp, exponent 1..1.6
    # and the leak's rate follows the traffic that leaks (LEAK_SIGMA): a climb with a varying slope
    frac = growth(batch, ((t_rel + 1) / steps) ** (1.0 + 0.6 * batch.uniform[owner, 1]), LEAK_SIGMA, LEAK_PHI)
    restarts = (batch.uniform[owner, 0] < p.restart_probability) & (steps >= 3)
    restarting = restarts & (t_rel == steps - 1)
    profile[:, C_MEM] = np.where(restarting, -p.memory_freed_pct, severity * p.max_growth_pct * frac)
    profile[:, C_HEAP_FLOOR] = np.where(restarting, 0.0, severity * p.heap_floor_growth_pct * frac)
    profile[:, C_JVM_RESTART] = restarting
    return profile


# how an answer may name this kind (matched as whole words by the verifier of grounded answers)
NAMES = ("memory leak", "leak", "leaking", "growing memory", "memory growth", "memory keeps growing", "oom",
         "out of memory")


def explain(say: Phrases) -> tuple[Expr, ...]:
    """The phrasings of its explanation, from what a sample shows."""
    return (
        say.text("A memory leak: {}. The JVM heap is at {}.", say.moved("memory_usage"), say.now("java_heap_usage")),
        say.text("Memory keeps growing: {}; it was {}. GC takes {} of the time.", say.moved("memory_usage"),
                 say.ago("memory_usage", 1), say.now("java_gc_time", 2)),
        say.text("{}; {}. The pattern of a leak that may end in an OOM kill.", say.moved("java_heap_usage"),
                 say.moved("memory_usage")),
    )


KIND = register(AnomalyKind(
    name="memory_leak", params=MemoryLeakParams, primary="memory_usage",
    affects=("memory_usage", "java_heap_usage", "java_gc_time", "cpu_usage", "load_average"),
    build=build, gradual=True, exhausts=("java_heap_usage", 99.0),
    abrupt=("end",),  # an OOM kill, or an operator restarting the service, frees the memory at once
    description="memory climbs for hours; heap floor rises, GC runs more often; may end in an OOM kill",
    names=NAMES, explain=explain, consequences=("jvm_gc_storm",),
))
