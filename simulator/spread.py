"""A host's CPU spread (standard deviation) from its parameters and the kernel's own constants.

The one analytic account of how much the kernel's CPU varies on a host, at any interval: cpu_spike
sizes its events with it, and tests/test_host_model.py ties it to the kernel's measured spread.
"""

from __future__ import annotations

import numpy as np

from ._kernels import (
    AGENT_OFF_SCHEDULE, AGENT_SIZE, ALLOC_SIGMA_1S, CRON_RUN_S, CRON_SIZE, GC_CPU_PCT, MUTATOR_CPU_PER_ALLOC,
    PAUSE_SIGMA, PERIODIC_SIZE, PERIODS_MINUTES,
)
from .catalogue import P

SIGMA_HORIZON_DAYS = 14.0  # the span a host's spread is taken over by default (NAB's files: 14 days)


def _size_moments(size: tuple[float, float]) -> tuple[float, float]:
    """E[S] and E[S^2] of S uniform on [low, low + width)."""
    low, width = size
    mean = low + 0.5 * width
    return mean, mean * mean + width * width / 12.0


def _burst_var(p: np.ndarray, amplitude: np.ndarray, size: tuple[float, float],
               p_square: np.ndarray | float | None = None) -> np.ndarray:
    """Variance of a step's burst: amplitude times a uniform size times a share of the step whose mean
    is p and mean square p_square (p: a whole step with probability p)."""
    mean, square = _size_moments(size)
    p_square = p if p_square is None else p_square
    return amplitude ** 2 * (p_square * square - (p * mean) ** 2)


def seen_share(changes: np.ndarray) -> np.ndarray:
    """The share of a piecewise-constant level's variance a span with Poisson(`changes`) changes shows
    on average: 1 - 2 (n - 1 + e^-n) / n^2 (one minus the mean sum of squared segment shares)."""
    n = np.maximum(changes, 1e-9)
    return np.maximum(np.where(n > 1e-6, 1.0 - 2.0 * (n - 1.0 + np.exp(-n)) / (n * n), 0.0), 0.0)


def cpu_sigma(hp: np.ndarray, interval_s: float, horizon_days: float | None = SIGMA_HORIZON_DAYS) -> np.ndarray:
    """The standard deviation of each host's reported CPU, percent (hp: float64[hosts, N_PARAMS]).

    The background is the level times a lognormal workload (fast AR(1) with jumps, the collector's
    read jitter, slow AR(1), regime shifts); the workload's parameters are per step, so its spread
    does not depend on the interval.  Regime shifts count with the share of their variance a span of
    `horizon_days` shows on average (None: all of it, the spread over a long horizon).  An hourly cron
    burst covers CRON_RUN_S seconds of an hour (on the hosts that have one: expected over them), an
    agent run in its daily slot and now and then in between, each at a uniform share of its size;
    the reporting resolution adds its rounding; the periodic job (`periodic_var`); running jobs are
    Poisson with the queue's mean (arrivals per step over the share completed per step), each adding
    its own height (lognormal around job_cpu), less at its first and last points (partial intervals,
    the ramp).
    """
    dt = float(interval_s)
    steps_per_day = 86400.0 / dt
    fast_var = (hp[:, P["cpu_fast_sigma"]] ** 2
                * (1.0 + hp[:, P["cpu_jump_prob"]] * (hp[:, P["cpu_jump_scale"]] ** 2 - 1.0))
                / np.maximum(1.0 - hp[:, P["cpu_fast_phi"]] ** 2, 1e-6))
    read_var = 2.0 * hp[:, P["cpu_read_jitter"]] ** 2
    slow_var = hp[:, P["cpu_slow_sigma"]] ** 2 / np.maximum(1.0 - hp[:, P["cpu_slow_phi"]] ** 2, 1e-6)
    seen = 1.0 if horizon_days is None else seen_share(hp[:, P["cpu_shifts_per_day"]] * horizon_days)
    shift_var = seen * hp[:, P["cpu_shift_sigma"]] ** 2
    log_var = fast_var + read_var + slow_var + shift_var
    background = hp[:, P["cpu_level"]] * np.sqrt(np.expm1(log_var))
    cron_var = hp[:, P["cpu_cron_prob"]] * _burst_var(CRON_RUN_S / 3600.0, hp[:, P["cpu_cron_amplitude"]],
                                                      CRON_SIZE, cron_square_share(dt))
    rate = hp[:, P["cpu_agent_spikes_per_day"]]
    agent_p = (np.minimum(rate, 1.0) + (steps_per_day - 1.0) * AGENT_OFF_SCHEDULE * rate / steps_per_day) \
        / steps_per_day
    agent_var = _burst_var(agent_p, hp[:, P["cpu_agent_spike_pct"]], AGENT_SIZE)
    quant_var = hp[:, P["cpu_resolution"]] ** 2 / 12.0
    arrivals = hp[:, P["job_rate_per_hour"]] * dt / 3600.0
    completed = 1.0 - np.exp(-dt / (60.0 * hp[:, P["job_minutes"]]))
    running = np.minimum(arrivals / completed, hp[:, P["job_slots"]])  # the kernel runs at most job_slots jobs
    # a job's sum of squared points is E[height^2] (length - 1/3 - ramp) in steps: its first and last
    # points are uniform shares of the interval (E[f^2] = 1/3 where E[f] = 1/2), less its ramp
    length = 60.0 * hp[:, P["job_minutes"]] / dt
    partial = np.clip(1.0 - (1.0 / 3.0 + 60.0 * hp[:, P["job_ramp_minutes"]] / dt) / length, 0.1, 1.0)
    jobs_var = hp[:, P["job_cpu"]] ** 2 * running * np.exp(hp[:, P["job_cpu_spread"]] ** 2) * partial
    return np.sqrt(background ** 2 + cron_var + agent_var + quant_var + periodic_var(hp, dt) + jobs_var
                   + jvm_cpu_var(hp, dt))


def periodic_var(hp: np.ndarray, dt: float) -> np.ndarray:
    """Variance of the periodic job's CPU in a step of dt seconds, over the periods a host may draw
    (PERIODS_MINUTES, alike): a run of `run` seconds every `period` adds its size (a uniform share of
    cpu_periodic_share times the level) times the share of the step it covers, whose mean is
    run / period and mean square `run_square_share` (a run split between steps counts less)."""
    pct = hp[:, P["cpu_periodic_share"]] * hp[:, P["cpu_level"]]
    total = np.zeros(len(hp))
    for minutes in PERIODS_MINUTES:
        period = 60.0 * minutes
        run = np.minimum(hp[:, P["cpu_periodic_seconds"]], 0.5 * period)
        on_mean = run / period
        if dt >= period:  # every step holds the same share of runs: only the size varies
            on_square = on_mean ** 2
        else:
            on_square = run_square_share(run, dt, period)
        total += _burst_var(on_mean, pct, PERIODIC_SIZE, on_square)
    return total / len(PERIODS_MINUTES)


def run_square_share(run: np.ndarray, dt: float, period: float, start_grid_s: float = 60.0) -> np.ndarray:
    """The mean over steps of dt seconds of the squared share of the step a periodic run covers, for
    runs of `run` seconds every `period` (dt < period) starting on a multiple of start_grid_s in the
    period, each alike (the kernel's offset), on a step grid that starts on a whole multiple of it.

    A run starting at phi seconds into a step covers min(dt - phi, run) of it, then whole steps, then
    the rest: its squared shares add up to less than run / dt when it is split.  Where a step can hold
    parts of two runs (dt > period - run), the bound run / dt * min(run / dt, 1) per run is used."""
    phi = (start_grid_s * np.arange(int(period // start_grid_s))) % dt   # a run's start in its step, per offset
    first = np.minimum(dt - phi[None, :], run[:, None])
    rest = run[:, None] - first
    whole = np.floor(rest / dt)
    last = rest - whole * dt
    per_run = np.mean(first ** 2 + whole * dt * dt + last ** 2, axis=1) / (dt * dt)
    bound = run / dt * np.minimum(run / dt, 1.0)
    return np.where(dt <= period - run, per_run, bound) * dt / period


def cron_square_share(dt: float) -> float:
    """The mean square share of a step the hourly cron's run covers (it starts on a 5-minute mark)."""
    if dt >= 3600.0:
        return (CRON_RUN_S / 3600.0) ** 2
    return float(run_square_share(np.array([CRON_RUN_S]), dt, 3600.0, start_grid_s=300.0)[0])


def jvm_cpu_var(hp: np.ndarray, dt: float) -> np.ndarray:
    """Variance of the CPU the JVM adds in a step of dt seconds: GC threads during collections (about
    Poisson: young ones as the allocation fills the young space above the old generation's mean
    level, full ones as promotion fills the old generation) and the application threads' allocation
    beyond the workload's (uniform, relative std ALLOC_SIGMA_1S at one second)."""
    alloc = hp[:, P["heap_alloc_pct_per_s"]]
    floor, full_at = hp[:, P["heap_floor"]], hp[:, P["heap_full_gc_at"]]
    young_space = np.maximum(hp[:, P["heap_young_threshold"]] - 0.5 * (floor + full_at), 0.5)
    young_per_step = alloc * dt / young_space
    young_cpu = GC_CPU_PCT * np.minimum(hp[:, P["gc_young_pause_ms"]] / (1000.0 * dt), 1.0)
    full_per_step = hp[:, P["heap_floor_creep_per_hour"]] * dt / 3600.0 / np.maximum(full_at - floor, 0.5)
    full_cpu = GC_CPU_PCT * np.minimum(hp[:, P["gc_full_pause_ms"]] / (1000.0 * dt), 1.0)
    gc_var = young_per_step * young_cpu ** 2 * (1.0 + PAUSE_SIGMA ** 2) + full_per_step * full_cpu ** 2
    mutator_var = (MUTATOR_CPU_PER_ALLOC * alloc) ** 2 * ALLOC_SIGMA_1S ** 2 / max(dt, 1.0)
    return gc_var + mutator_var
