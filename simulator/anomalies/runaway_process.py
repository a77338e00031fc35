"""A process that pins cores for hours (a hung job, an infinite loop): a CPU level shift."""

from dataclasses import dataclass

import numpy as np
from polars import Expr

from ..catalogue import C_CPU
from ..phrases import Phrases
from .base import AnomalyKind, EventBatch, KindParams, Shape, envelope, param, register


@dataclass(frozen=True)
class RunawayProcessParams(KindParams):
    max_extra_cpu_pct: float = param(70.0, 1.0, 100.0, "extra CPU demand at severity 1, percent of capacity")


# a pinned core is a level shift, not a ramp (NAB ec2_cpu_utilization_825cc2, ac20cd: one partial
# point, then flat for hours): the process starts and is killed at random moments within an
# interval, so the first and last points hold part of it; while it runs it competes with the host's
# own work, a small slow wobble
SHAPE = Shape(onset=(0.0, 0.0), recovery=(0.0, 0.01), tail=0.3, sigma=0.04, phi=0.8)


def build(batch: EventBatch, p: RunawayProcessParams) -> np.ndarray:
    owner, _, _ = batch.positions()
    profile = batch.empty_profile()
    profile[:, C_CPU] = batch.severity[owner] * p.max_extra_cpu_pct * envelope(batch, SHAPE)
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
