"""A short burst of CPU demand (a runaway query, a stuck loop, a batch kick-off): 1-7 points at 5 min."""

from dataclasses import dataclass

import numpy as np
from polars import Expr

from ..catalogue import C_CPU, P
from ..phrases import Phrases
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


SIGMA_HORIZON_DAYS = 14.0  # the span a host's standard deviation is taken over (NAB's files: 14 days)
STEPS_PER_DAY = 288.0      # the parameters' per-step rates are at 5 minutes


def cpu_sigma_estimate(hp: np.ndarray) -> np.ndarray:
    """The standard deviation of a host's CPU, percent, from its parameters (background and jobs).

    The background is the level times a lognormal workload (fast AR(1) with jumps, the collector's
    read jitter, slow AR(1), regime shifts); regime shifts count with the share of their variance
    that a 14-day span shows on average (rare shifts: few distinct levels); hourly cron bursts,
    daily agent runs, the periodic job and the reporting resolution add to it; running jobs are about
    Poisson, each adding its own height (lognormal around job_cpu), less at its first and last points
    (partial intervals, the ramp).
    """
    fast_var = (hp[:, P["cpu_fast_sigma"]] ** 2
                * (1.0 + hp[:, P["cpu_jump_prob"]] * (hp[:, P["cpu_jump_scale"]] ** 2 - 1.0))
                / np.maximum(1.0 - hp[:, P["cpu_fast_phi"]] ** 2, 1e-6))
    read_var = 2.0 * hp[:, P["cpu_read_jitter"]] ** 2
    slow_var = hp[:, P["cpu_slow_sigma"]] ** 2 / np.maximum(1.0 - hp[:, P["cpu_slow_phi"]] ** 2, 1e-6)
    # a piecewise-constant level with Poisson(n) changes over the span keeps on average
    # 1 - 2 (n - 1 + e^-n) / n^2 of its variance (one minus the mean sum of squared segment shares)
    n = np.maximum(hp[:, P["cpu_shifts_per_day"]] * SIGMA_HORIZON_DAYS, 1e-9)
    seen = np.where(n > 1e-6, 1.0 - 2.0 * (n - 1.0 + np.exp(-n)) / (n * n), 0.0)
    shift_var = np.maximum(seen, 0.0) * hp[:, P["cpu_shift_sigma"]] ** 2
    log_var = fast_var + read_var + slow_var + shift_var
    background = hp[:, P["cpu_level"]] * np.sqrt(np.expm1(log_var))
    # one 5-minute point in 12 carries a cron burst (on the hosts that have one: expected over them),
    # about one a day an agent run; both drawn at 0.6-1.4 (cron) and 0.7-1.3 (agent) of their size
    cron_var = hp[:, P["cpu_cron_prob"]] * (1.0 / 12.0) * (11.0 / 12.0) * 1.03 * hp[:, P["cpu_cron_amplitude"]] ** 2
    agent_p = np.minimum(hp[:, P["cpu_agent_spikes_per_day"]], 1.0) * 1.1 / STEPS_PER_DAY
    agent_var = agent_p * 1.03 * hp[:, P["cpu_agent_spike_pct"]] ** 2
    quant_var = hp[:, P["cpu_resolution"]] ** 2 / 12.0
    # the periodic job: one point in P (P = 2, 3, 4, 6 or 12, one per host: averaged over them) carries
    # a run, drawn at 0.6-1.4 of its size: E[size^2] / P - 1 / P^2 = 0.189 on average
    run_share = np.minimum(hp[:, P["cpu_periodic_seconds"]], 300.0) / 300.0
    periodic = hp[:, P["cpu_periodic_share"]] * hp[:, P["cpu_level"]] * run_share
    periodic_var = 0.189 * periodic ** 2
    running = hp[:, P["job_rate_per_hour"]] * hp[:, P["job_minutes"]] / 60.0
    # shot noise: a job's sum of squared points is E[height^2] (length - 1/3 - ramp) in points (its
    # first and last points are uniform shares of the interval, E[f^2] = 1/3 where E[f] = 1/2)
    length = hp[:, P["job_minutes"]] / 5.0
    partial = np.clip(1.0 - (1.0 / 3.0 + hp[:, P["job_ramp_minutes"]] / 5.0) / length, 0.1, 1.0)
    jobs = hp[:, P["job_cpu"]] * np.sqrt(running * np.exp(hp[:, P["job_cpu_spread"]] ** 2) * partial)
    return np.sqrt(background ** 2 + cron_var + agent_var + quant_var + periodic_var + jobs ** 2)


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
