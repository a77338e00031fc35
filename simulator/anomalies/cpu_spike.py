"""A short burst of CPU demand (a runaway query, a stuck loop, a batch kick-off): 1-7 points at 5 min."""

from dataclasses import dataclass

import numpy as np

from ..catalogue import C_CPU, P
from .base import AnomalyKind, EventBatch, KindParams, param, register, rise_hold_fall


@dataclass(frozen=True)
class CpuSpikeParams(KindParams):
    max_extra_cpu_pct: float = param(95.0, 1.0, 100.0, "largest extra CPU demand, percent of capacity")
    min_extra_cpu_pct: float = param(5.0, 0.0, 100.0, "smallest extra CPU demand at severity 1, percent")
    host_sigmas: float = param(8.0, 0.0, 1000.0,
                               "extra CPU demand at severity 1 in standard deviations of the host's CPU "
                               "(NAB's labelled spikes peak near 6 global sigmas, not at a fixed percent)")


def build(batch: EventBatch, p: CpuSpikeParams) -> np.ndarray:
    owner, t_rel, steps = batch.positions()
    profile = batch.empty_profile()
    amplitude = batch.severity[owner] * usual_extra_cpu(batch, p)[owner]
    # bursts drain over the last third of the window; some peak at once, some build for a step
    rise = np.where(batch.uniform[owner, 0] < 0.6, 1, np.minimum(2, steps))
    shape = rise_hold_fall(t_rel, steps, rise, np.maximum(1, steps // 3))
    profile[:, C_CPU] = amplitude * shape
    return profile


def usual_extra_cpu(batch: EventBatch, p) -> np.ndarray:
    """Extra CPU at severity 1 per event: `host_sigmas` times the host's CPU standard deviation."""
    return np.clip(p.host_sigmas * cpu_sigma_estimate(batch.host_params), p.min_extra_cpu_pct, p.max_extra_cpu_pct)


def cpu_sigma_estimate(hp: np.ndarray) -> np.ndarray:
    """The standard deviation of a host's CPU, percent, from its parameters (background and jobs).

    The background is the level times a lognormal workload (fast AR(1) with jumps, slow AR(1),
    regime shifts); running jobs are about Poisson, each adding job_cpu percent.
    """
    fast_var = (hp[:, P["cpu_fast_sigma"]] ** 2
                * (1.0 + hp[:, P["cpu_jump_prob"]] * (hp[:, P["cpu_jump_scale"]] ** 2 - 1.0))
                / np.maximum(1.0 - hp[:, P["cpu_fast_phi"]] ** 2, 1e-6))
    slow_var = hp[:, P["cpu_slow_sigma"]] ** 2 / np.maximum(1.0 - hp[:, P["cpu_slow_phi"]] ** 2, 1e-6)
    shift_var = np.where(hp[:, P["cpu_shifts_per_day"]] > 0, hp[:, P["cpu_shift_sigma"]] ** 2, 0.0)
    log_var = fast_var + slow_var + shift_var
    background = hp[:, P["cpu_level"]] * np.sqrt(np.expm1(log_var))
    running = hp[:, P["job_rate_per_hour"]] * hp[:, P["job_minutes"]] / 60.0
    jobs = hp[:, P["job_cpu"]] * np.sqrt(running)
    return np.sqrt(background ** 2 + jobs ** 2)


KIND = register(AnomalyKind(
    name="cpu_spike", params=CpuSpikeParams, primary="cpu_usage",
    affects=("cpu_usage", "load_average"), build=build,
    description="short CPU demand burst; load average follows",
))
