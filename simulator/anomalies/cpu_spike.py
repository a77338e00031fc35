"""A short burst of CPU demand (a runaway query, a stuck loop, a batch kick-off): 1-7 points at 5 min."""

from dataclasses import dataclass

import numpy as np
from polars import Expr

from ..catalogue import C_CPU
from ..phrases import Phrases
from ..spread import cpu_sigma
from .base import AnomalyKind, EventBatch, KindParams, Shape, envelope, param, register


@dataclass(frozen=True)
class CpuSpikeParams(KindParams):
    max_extra_cpu_pct: float = param(95.0, 1.0, 100.0, "largest extra CPU demand, percent of capacity")
    min_extra_cpu_pct: float = param(5.0, 0.0, 100.0, "smallest extra CPU demand at severity 1, percent")
    host_sigmas: float = param(8.0, 0.0, 1000.0,
                               "extra CPU demand at severity 1 in standard deviations of the host's CPU "
                               "(NAB's labelled spikes peak near 6 global sigmas, not at a fixed percent)")


# NAB's labelled CPU spikes (rds_cpu_utilization_e47b3b, cc0c53, ec2 77c1ca): the burst reaches its
# peak within a point or two (the first point often partial), wobbles, and drains over the next 1-3
# points (10.6, 8.8, 0.9 sigmas; 5.2, 3.0, 2.3) rather than dropping back in one step
SHAPE = Shape(onset=(0.0, 0.3), recovery=(0.2, 0.5), tail=0.3, sigma=0.15, phi=0.3)


def build(batch: EventBatch, p: CpuSpikeParams) -> np.ndarray:
    owner, _, _ = batch.positions()
    profile = batch.empty_profile()
    profile[:, C_CPU] = batch.severity[owner] * usual_extra_cpu(batch, p)[owner] * envelope(batch, SHAPE)
    return profile


def usual_extra_cpu(batch: EventBatch, p) -> np.ndarray:
    """Extra CPU at severity 1 per event: `host_sigmas` times the host's CPU spread over a long horizon
    (with all of its regime shifts' variance, so that a spike stands out on a trace where the host's
    level shifted as well as on one where it stayed put)."""
    sigma = cpu_sigma(batch.host_params, batch.interval_s, horizon_days=None)
    return np.clip(p.host_sigmas * sigma, p.min_extra_cpu_pct, p.max_extra_cpu_pct)


# how an answer may name this kind (matched as whole words by the verifier of grounded answers)
NAMES = ("cpu spike", "spike in cpu", "cpu burst", "burst of cpu", "short spike", "brief spike", "cpu peak",
         "spiked", "spike")


def explain(say: Phrases) -> tuple[Expr, ...]:
    """The phrasings of its explanation, from what a sample shows."""
    return (
        say.text("CPU spike on {}: {}; load average {}.", say.host(), say.moved("cpu_usage"),
                 say.number("load_average", 2)),
        say.text("A burst of CPU: {}. It was {}.", say.moved("cpu_usage"), say.ago("cpu_usage", 1)),
        say.text("{}; the load average is {} on {} cores. A short CPU spike.", say.moved("cpu_usage"),
                 say.number("load_average", 2), say.value("cores")),
    )


KIND = register(AnomalyKind(
    name="cpu_spike", params=CpuSpikeParams, primary="cpu_usage",
    affects=("cpu_usage", "load_average"), build=build,
    description="short CPU demand burst; load average follows",
    names=NAMES, explain=explain,
))
