"""A flood of submissions (a resubmit loop, a month-end batch): every slot busy, CPU and memory saturate."""

from dataclasses import dataclass

import numpy as np
from polars import Expr

from ..catalogue import C_JOB_FLOOD, P
from ..phrases import Phrases
from .base import AnomalyKind, EventBatch, KindParams, param, register, rise_hold_fall


@dataclass(frozen=True)
class JobBacklogParams(KindParams):
    max_arrivals_per_slot: float = param(1.5, 0.05, 100.0, "extra job arrivals per slot per step at severity 1")


def build(batch: EventBatch, p: JobBacklogParams) -> np.ndarray:
    owner, t_rel, steps = batch.positions()
    profile = batch.empty_profile()
    slots = np.maximum(1.0, batch.host_params[owner, P["job_slots"]])
    shape = rise_hold_fall(t_rel, steps, np.minimum(3, steps), np.maximum(1, steps // 5))
    profile[:, C_JOB_FLOOD] = batch.severity[owner] * p.max_arrivals_per_slot * slots * shape
    return profile


# how an answer may name this kind (matched as whole words by the verifier of grounded answers)
NAMES = ("job backlog", "backlog", "job flood", "queue build", "queued jobs", "pending jobs", "flood of jobs",
         "burst of jobs", "jobs piling")


def explain(say: Phrases) -> tuple[Expr, ...]:
    """The phrasings of its explanation, from what a sample shows."""
    return (
        say.text("A job backlog: {}.", say.moved("spectrum_active_jobs", 0)),
        say.text("Submissions flood in on {}: {}; CPU is {}.", say.host(), say.moved("spectrum_active_jobs", 0),
                 say.now("cpu_usage")),
        say.text("{}; memory is {}, as every slot fills.", say.moved("spectrum_active_jobs", 0), say.now("memory_usage")),
    )


KIND = register(AnomalyKind(
    name="job_backlog", params=JobBacklogParams, primary="spectrum_active_jobs",
    affects=("spectrum_active_jobs", "cpu_usage", "memory_usage", "load_average"),
    build=build,
    description="active jobs far above normal, CPU and memory saturate, load climbs",
    names=NAMES, explain=explain,
))
