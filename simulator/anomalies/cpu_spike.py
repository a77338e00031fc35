"""A short burst of CPU demand (a runaway query, a stuck loop, a batch kick-off): 1-7 points at 5 min."""

from dataclasses import dataclass

import numpy as np

from ..catalogue import C_CPU
from .base import AnomalyKind, EventBatch, KindParams, param, register, rise_hold_fall


@dataclass(frozen=True)
class CpuSpikeParams(KindParams):
    max_extra_cpu_pct: float = param(95.0, 1.0, 100.0, "extra CPU demand at severity 1, percent of capacity")


def build(batch: EventBatch, p: CpuSpikeParams) -> np.ndarray:
    owner, t_rel, steps = batch.positions()
    profile = batch.empty_profile()
    amplitude = batch.severity[owner] * p.max_extra_cpu_pct
    # bursts drain over the last third of the window; some peak at once, some build for a step
    rise = np.where(batch.uniform[owner, 0] < 0.6, 1, np.minimum(2, steps))
    shape = rise_hold_fall(t_rel, steps, rise, np.maximum(1, steps // 3))
    profile[:, C_CPU] = amplitude * shape
    return profile


KIND = register(AnomalyKind(
    name="cpu_spike", params=CpuSpikeParams, primary="cpu_usage",
    affects=("cpu_usage", "load_average"), build=build,
    description="short CPU demand burst; load average follows",
))
