"""A process that pins cores for hours (a hung job, an infinite loop): a CPU level shift."""

from dataclasses import dataclass

import numpy as np

from ..catalogue import C_CPU
from .base import AnomalyKind, EventBatch, KindParams, param, register


@dataclass(frozen=True)
class RunawayProcessParams(KindParams):
    max_extra_cpu_pct: float = param(70.0, 1.0, 100.0, "extra CPU demand at severity 1, percent of capacity")


def build(batch: EventBatch, p: RunawayProcessParams) -> np.ndarray:
    owner, _, _ = batch.positions()
    profile = batch.empty_profile()
    # a pinned core is a step, not a ramp: level shift until someone kills the process
    profile[:, C_CPU] = batch.severity[owner] * p.max_extra_cpu_pct
    return profile


KIND = register(AnomalyKind(
    name="runaway_process", params=RunawayProcessParams, primary="cpu_usage",
    affects=("cpu_usage", "load_average"), build=build,
    description="CPU level shift lasting hours until the process is killed",
))
