"""vemkd (the EGO master daemon) dies: its processes vanish, running jobs are lost, then it restarts."""

from dataclasses import dataclass

import numpy as np
from polars import Expr

from ..catalogue import C_DAEMON_DOWN
from ..phrases import Phrases
from .base import AnomalyKind, EventBatch, KindParams, param, register


@dataclass(frozen=True)
class DaemonCrashParams(KindParams):
    down_share: float = param(0.6, 0.05, 1.0, "share of the window the daemon is down (the rest is recovery)")


RESTART_SECONDS = (20.0, 120.0)  # vemkd back up starts lim, pem, pim and the ELIMs one after another


def build(batch: EventBatch, p: DaemonCrashParams) -> np.ndarray:
    owner, t_rel, steps = batch.positions()
    profile = batch.empty_profile()
    down_steps = np.maximum(1, np.round(steps * p.down_share * (0.5 + 0.5 * batch.severity[owner])))
    # after the restart the daemons come back over RESTART_SECONDS (within half the rest of the window):
    # the channel is the share still starting, which a 5-minute sample never catches but a 1-second
    # trace shows as the count climbing back
    restart_s = np.minimum(RESTART_SECONDS[0] + (RESTART_SECONDS[1] - RESTART_SECONDS[0]) * batch.uniform[owner, 0],
                           0.5 * (steps - down_steps) * batch.interval_s)
    elapsed = (t_rel - down_steps + 1) * batch.interval_s
    starting = np.clip(1.0 - elapsed / np.maximum(restart_s, 1e-9), 0.0, 1.0)
    profile[:, C_DAEMON_DOWN] = np.where(t_rel < down_steps, 1.0, np.minimum(starting, 0.999))
    return profile


# how an answer may name this kind (matched as whole words by the verifier of grounded answers)
NAMES = ("daemon crash", "vemkd crash", "vemkd crashed", "vemkd down", "vemkd is down", "crashed",
         "daemon down", "daemon died", "vemkd died", "process died", "ego daemon")


def explain(say: Phrases) -> tuple[Expr, ...]:
    """The phrasings of its explanation, from what a sample shows."""
    return (
        say.text("The EGO daemon is down: {}.", say.moved("vemkd_process_count", 0)),
        say.text("vemkd crashed on {}: {}; active jobs {}.", say.host(), say.moved("vemkd_process_count", 0),
                 say.value("spectrum_active_jobs")),
        say.text("{}; {}. The scheduler daemon is down or restarting.", say.moved("vemkd_process_count", 0),
                 say.moved("spectrum_active_jobs", 0)),
    )


KIND = register(AnomalyKind(
    name="daemon_crash", params=DaemonCrashParams, primary="vemkd_process_count",
    affects=("vemkd_process_count", "spectrum_active_jobs", "cpu_usage", "memory_usage", "load_average"),
    build=build,
    # a crash takes the daemon and its children at once and the count stays at 0 until the restart;
    # the window's rest is the recovery (the queue dispatching what waited)
    abrupt=("onset",), steady=True,
    description="vemkd processes drop to 0, active jobs fall to 0, CPU drops, then the daemon restarts",
    names=NAMES, explain=explain, consequences=("job_backlog",),
))
