"""A volume fills (runaway logs, a core dump, a stuck spool) until it is full, then stays full."""

from dataclasses import dataclass

import numpy as np
from polars import Expr

from ..catalogue import C_DISK
from ..phrases import Phrases
from .base import AnomalyKind, EventBatch, KindParams, growth, param, register


@dataclass(frozen=True)
class DiskFullParams(KindParams):
    fastest_fill_share: float = param(0.2, 0.01, 1.0, "share of the window spent filling at severity 1")


def build(batch: EventBatch, p: DiskFullParams) -> np.ndarray:
    owner, t_rel, steps = batch.positions()
    profile = batch.empty_profile()
    share = 1.0 - batch.severity[owner] * (1.0 - p.fastest_fill_share)
    fill_steps = np.maximum(1.0, np.floor(steps * share))
    # enough extra data to fill any volume: the kernel clips at 100 %, so the disk holds there; the
    # writer's rate varies (log bursts, a dump in chunks), so the fill is a climb with a varying slope.
    # It ends when an operator frees the space: at once (a delete), the window's end.
    fill = growth(batch, np.minimum(1.0, (t_rel + 1) / fill_steps), FILL_SIGMA, FILL_PHI)
    profile[:, C_DISK] = 100.0 * fill
    return profile


FILL_SIGMA, FILL_PHI = 0.3, 0.6  # the fill rate's variation (std of its log) and persistence


# how an answer may name this kind (matched as whole words by the verifier of grounded answers)
NAMES = ("disk full", "full disk", "disk filling", "disk fill", "filesystem full", "file system full",
         "no space left", "out of disk", "disk space", "disk is full", "disk is filling", "volume is filling",
         "volume is full", "running out of disk", "running out of space")


def explain(say: Phrases) -> tuple[Expr, ...]:
    """The phrasings of its explanation, from what a sample shows."""
    return (
        say.text("The data volume is filling: {}.", say.moved("disk_usage", 2)),
        say.text("Disk filling on {}: {}; it was {}. Once it is full, jobs fail on write errors.", say.host(),
                 say.now("disk_usage", 2), say.ago("disk_usage", 2)),
        say.text("{}; load average {} as writes block.", say.moved("disk_usage", 2), say.number("load_average", 2)),
    )


KIND = register(AnomalyKind(
    name="disk_full", params=DiskFullParams, primary="disk_usage",
    affects=("disk_usage", "spectrum_active_jobs", "load_average", "cpu_usage", "memory_usage"),
    build=build, gradual=True, exhausts=("disk_usage", 99.9),
    abrupt=("end",),  # the space comes back when an operator deletes the files
    description="disk fills to 100 % and holds; jobs fail, processes block on I/O",
    names=NAMES, explain=explain,
))
