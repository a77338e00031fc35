"""A process that pins cores for hours (a hung job, an infinite loop): a CPU level shift."""

from dataclasses import dataclass

import numpy as np
from polars import Expr

from ..catalogue import C_CPU
from ..phrases import Phrases
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


# how an answer may name this kind (matched as whole words by the verifier of grounded answers)
NAMES = ("runaway process", "runaway", "hung process", "stuck process", "process pinning", "pinned core",
         "infinite loop", "level shift", "sustained cpu")


def explain(say: Phrases) -> tuple[Expr, ...]:
    """The phrasings of its explanation, from what a sample shows."""
    return (
        say.text("A runaway process on {}: {}; load average {}.", say.host(), say.moved("cpu_usage"),
                 say.number("load_average", 2)),
        say.text("CPU has shifted to a new level: {}, with active jobs at {}; something is spinning.",
                 say.moved("cpu_usage"), say.value("spectrum_active_jobs")),
        say.text("{}. {} A process is pinning cores.", say.moved("load_average", 2),
                 say.text("CPU is {}.", say.now("cpu_usage"))),
    )


KIND = register(AnomalyKind(
    name="runaway_process", params=RunawayProcessParams, primary="cpu_usage",
    affects=("cpu_usage", "load_average"), build=build,
    description="CPU level shift lasting hours until the process is killed",
    names=NAMES, explain=explain,
))
