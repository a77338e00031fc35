"""A flood of submissions (a resubmit loop, a month-end batch): every slot busy, CPU and memory saturate."""

from dataclasses import dataclass

import numpy as np
from polars import Expr

from ..catalogue import C_JOB_FLOOD, P
from ..phrases import Phrases
from .base import U_ONSET, AnomalyKind, EventBatch, KindParams, Shape, envelope, param, ramp_steps, register


@dataclass(frozen=True)
class JobBacklogParams(KindParams):
    max_arrivals_per_slot: float = param(1.5, 0.05, 100.0, "extra job arrivals per slot per step at severity 1")


# the submissions build up over a few steps and arrive in uneven waves; then they stop, and the
# rest of the window is the recovery: the queue drains through the busy slots and the running jobs
# finish one by one (the queue's own dynamics in the kernel, so CPU and memory come down with them)
SHAPE = Shape(onset=(0.05, 0.2), recovery=(0.0, 0.0), tail=1.0, sigma=0.25, phi=0.5)
DRAINED_TO = 0.25  # the share of the slots still running at the window's end, in expectation


def build(batch: EventBatch, p: JobBacklogParams) -> np.ndarray:
    owner, t_rel, _ = batch.positions()
    profile = batch.empty_profile()
    slots = np.maximum(1.0, batch.host_params[owner, P["job_slots"]])
    # the flood lasts at least through its onset ramp
    lasts = np.maximum(flood_steps(batch, p), ramp_steps(batch, SHAPE.onset, U_ONSET, 1) + 1)
    flood = batch.severity[owner] * p.max_arrivals_per_slot * slots * envelope(batch, SHAPE)
    profile[:, C_JOB_FLOOD] = np.where(t_rel < lasts[owner], flood, 0.0)
    return profile


def flood_steps(batch: EventBatch, p: JobBacklogParams) -> np.ndarray:
    """Per event, the steps submissions keep arriving: as many as leave time, before the window ends,
    for the backlog to drain through the slots (completions: slots x the share of a job done per step)
    and for the running jobs to come down to DRAINED_TO of the slots; at least one."""
    slots = np.maximum(1.0, batch.host_params[:, P["job_slots"]])
    done = 1.0 - np.exp(-batch.interval_s / (60.0 * batch.host_params[:, P["job_minutes"]]))
    throughput = slots * done
    arrivals = 0.8 * batch.severity * p.max_arrivals_per_slot * slots  # the flood's mean rate
    settle = np.log(1.0 / DRAINED_TO) / np.maximum(done, 1e-9)
    room = (batch.steps - settle) * throughput / np.maximum(arrivals, 1e-9)
    return np.maximum(np.floor(room), 1).astype(np.int64)


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
    outlasts_inputs=True,  # the queue drains after the submissions stop
    names=NAMES, explain=explain,
))
