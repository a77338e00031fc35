"""vemkd (the EGO master daemon) dies: its processes vanish, running jobs are lost, then it restarts."""

from dataclasses import dataclass

import numpy as np

from ..catalogue import C_DAEMON_DOWN
from .base import AnomalyKind, EventBatch, KindParams, param, register


@dataclass(frozen=True)
class DaemonCrashParams(KindParams):
    down_share: float = param(0.6, 0.05, 1.0, "share of the window the daemon is down (the rest is recovery)")


def build(batch: EventBatch, p: DaemonCrashParams) -> np.ndarray:
    owner, t_rel, steps = batch.positions()
    profile = batch.empty_profile()
    down_steps = np.maximum(1, np.round(steps * p.down_share * (0.5 + 0.5 * batch.severity[owner])))
    profile[:, C_DAEMON_DOWN] = t_rel < down_steps
    return profile


KIND = register(AnomalyKind(
    name="daemon_crash", params=DaemonCrashParams, primary="vemkd_process_count",
    affects=("vemkd_process_count", "spectrum_active_jobs", "cpu_usage", "memory_usage", "load_average"),
    build=build,
    description="vemkd processes drop to 0, active jobs fall to 0, CPU drops, then the daemon restarts",
))
