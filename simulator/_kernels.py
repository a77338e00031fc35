"""The host model: numba kernels only; arrays, and records (NamedTuples) of arrays and numbers, in and out.

Per host and step, the *background* (workload regime, noise, disk growth, traffic, daemon count) is
computed once; the few states an anomaly can disturb (job queue, JVM heap, load average) are run
twice, without and with the host's perturbation channels.  Observed metrics come from both, and a
metric point is labelled where the two differ, so labels are exact by construction.  Outside
anomaly windows the disturbed copy is re-synchronised to the undisturbed one (the incident is over).

The parts, in the order of a step: a host's model is a few records built once from its parameter
row (`host_model`: CPU demand, memory, disk, network, JVM, scheduler); the background advances one
subsystem at a time (`cpu_demand_step`, `memory_step`, `disk_step`, `network_step`, `daemons_step`)
into a `Step`; each copy of the disturbed states advances through the scheduler (`step_jobs`), the
JVM (`jvm_step`), the link (`link_step`), the CPU they all add to (`cpu_demand`) and the load
average, and the collector reports the result (`disturbed_step`).  The entry point, `simulate_hosts`,
takes its inputs and outputs as records too (`TimeGrid`, `Reporting`, `EventInputs`, `ChunkState`,
`TraceOutputs`, `EventOutputs`).  tests/host_reference.py is the same model in plain Python.

Metric semantics (see DESIGN.md): CPU, GC time and network are interval averages; memory, disk,
heap, jobs and process counts are gauges at the sampling instant; load average is Linux's damped
average of runnable tasks.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from ._numba import jit, jit_inline, jit_parallel, prange
from ._rng import extra_normal, extra_uniform, host_uniform, normal, uniform
from .catalogue import (
    C_CPU, C_DAEMON_DOWN, C_DISK, C_GC_STORM, C_HEAP_FLOOR, C_JOB_FLOOD, C_JVM_RESTART, C_MEM, C_NET,
    M_CPU, M_DISK, M_GC, M_HEAP, M_JOBS, M_LAT, M_LOAD, M_MEM, M_NET_IN, M_NET_OUT, M_VEMKD,
    N_CHANNELS, N_METRICS, P,
)

# parameter columns as compile-time constants
P_CORES = P["cores"]
P_CPU_LEVEL = P["cpu_level"]
P_CPU_FAST_PHI = P["cpu_fast_phi"]
P_CPU_FAST_SIGMA = P["cpu_fast_sigma"]
P_CPU_SLOW_PHI = P["cpu_slow_phi"]
P_CPU_SLOW_SIGMA = P["cpu_slow_sigma"]
P_CPU_JUMP_PROB = P["cpu_jump_prob"]
P_CPU_JUMP_SCALE = P["cpu_jump_scale"]
P_CPU_SHIFTS = P["cpu_shifts_per_day"]
P_CPU_SHIFT_SIGMA = P["cpu_shift_sigma"]
P_CRON_PROB = P["cpu_cron_prob"]
P_CRON_AMP = P["cpu_cron_amplitude"]
P_CPU_RES = P["cpu_resolution"]
P_CPU_JITTER = P["cpu_read_jitter"]
P_MEM_LEVEL = P["mem_level"]
P_MEM_PHI = P["mem_phi"]
P_MEM_SIGMA = P["mem_sigma"]
P_MEM_STEPS = P["mem_steps_per_day"]
P_MEM_STEP_SIGMA = P["mem_step_sigma"]
P_MEM_CREEP = P["mem_cache_creep_per_day"]
P_MEM_RECLAIM = P["mem_cache_reclaim_at"]
P_DISK_LEVEL = P["disk_level"]
P_DISK_GROWTH = P["disk_growth_per_day"]
P_DISK_ROT = P["disk_rotation_drop"]
P_LINK = P["link_mbps"]
P_NET_LEVEL = P["net_level_mbps"]
P_NET_SIGMA = P["net_sigma"]
P_NET_COUPLING = P["net_cpu_coupling"]
P_NET_OUT = P["net_out_ratio"]
P_AGENT_RATE = P["cpu_agent_spikes_per_day"]
P_AGENT_PCT = P["cpu_agent_spike_pct"]
P_NET_BURSTS = P["net_bursts_per_day"]
P_NET_BURST_SCALE = P["net_burst_scale"]
P_LAT_BASE = P["latency_base_ms"]
P_LAT_SIGMA = P["latency_sigma"]
P_LAT_QUEUE = P["latency_queue_ms"]
P_HEAP_ALLOC = P["heap_alloc_pct_per_s"]
P_HEAP_YOUNG = P["heap_young_threshold"]
P_HEAP_FLOOR = P["heap_floor"]
P_HEAP_CREEP = P["heap_floor_creep_per_hour"]
P_HEAP_FULL = P["heap_full_gc_at"]
P_GC_YOUNG_MS = P["gc_young_pause_ms"]
P_GC_FULL_MS = P["gc_full_pause_ms"]
P_JOB_RATE = P["job_rate_per_hour"]
P_JOB_MIN = P["job_minutes"]
P_JOB_SLOTS = P["job_slots"]
P_JOB_CPU = P["job_cpu"]
P_JOB_MEM = P["job_mem"]
P_JOB_CPU_SPREAD = P["job_cpu_spread"]
P_JOB_RAMP = P["job_ramp_minutes"]
P_JOB_SHAPE = P["job_length_shape"]
P_JOB_MEM_SPREAD = P["job_mem_spread"]
P_JOB_MEM_RAMP = P["job_mem_ramp_minutes"]
P_PERIODIC_SHARE = P["cpu_periodic_share"]
P_PERIODIC_S = P["cpu_periodic_seconds"]
P_VEMKD = P["vemkd_processes"]
P_VEMKD_STEPS = P["vemkd_steps_per_day"]

# draw slots within a step (each normal uses two consecutive slots)
D_SHIFT_U, D_SHIFT_N = 0, 1
D_SLOW_N = 3
D_FAST_N = 5
D_JUMP_U = 7
D_CRON_U = 8
D_MEM_N = 9
D_MEM_STEP_U, D_MEM_STEP_N = 11, 12
D_DISK_U = 14
D_NET_N = 15
D_NET_OUT_N = 17
D_LAT_N = 19
D_PLATEAU_U = 21
D_VEMKD_U, D_VEMKD_DIR_U = 22, 23
D_JOB_U = 24
D_JOB_N = 25
D_DONE_N = 27
D_GC_N = 29
D_STORM_U = 31
D_BURST_IN_U, D_BURST_OUT_U = 32, 33
D_AGENT_U, D_AGENT_SIZE_U = 34, 35
D_READ_U = 36
D_ALLOC_U = 37
D_YOUNG_U = 38
# extra draw slots within a step (_rng.extra_uniform: a stream of their own, drawn only when needed)
E_JOB_START_U, E_JOB_END_U, E_JOB_HEIGHT_N, E_JOB_WS_N, E_PERIODIC_U = 0, 1, 2, 4, 6
# per-host draw slots
H_CRON, H_CRON_MINUTE, H_ROTATION_HOUR, H_SHIFT0, H_SLOW0, H_AGENT_AT = 0, 1, 2, 3, 5, 7
H_PERIOD, H_PERIOD_AT = 9, 10
# the state a host carries from one time chunk to the next (the undisturbed copy: no event spans
# a chunk boundary in a sharded job, so the disturbed copy starts each chunk equal to it)
(S_SHIFT, S_SLOW, S_FAST, S_MEM_AR, S_MEM_STEP, S_MEM_CACHE, S_DISK, S_NET_AR, S_BURST_IN, S_BURST_OUT,
 S_VEMKD, S_RUNNING, S_PENDING, S_HEAP, S_FLOOR, S_LOAD, S_JOB_HEIGHT, S_JOB_CPU, S_JOB_WS, S_JOB_MEM,
 S_JOB_AGE) = range(21)
N_STATE = 21

MAX_HEAP_FLOOR = 97.0
# the periods of a host's periodic job, minutes (cron's */10 .. hourly: each divides the hour, so every
# one repeats at lag 1 hour); one per host
PERIODS_MINUTES = (10.0, 15.0, 20.0, 30.0, 60.0)
RECLAIM_KEEP = 0.1         # share of the page cache a reclaim leaves
# the JVM's variation at fine intervals (sources and targets in data_config/metrics.yaml, heap_*):
ALLOC_SIGMA_1S = 0.35  # allocation of one second beyond the workload's, relative std (request mix, batch
                       # deserialisation; uniform, one draw), averaging out as 1/sqrt(seconds) over longer steps
YOUNG_JITTER = 0.35    # the young space a collection empties varies +-35 % around its mean (G1 resizes eden
                       # after each collection to meet its pause goal; humongous and survivor regions vary)
MAX_YOUNG_AT = 90.0    # a young collection runs by this occupancy at the latest (G1ReservePercent 10)
PAUSE_SIGMA = 0.35     # relative std of one collection's pause around the host's typical pause
MUTATOR_CPU_PER_ALLOC = 1.0  # CPU percent the application threads burn per heap percent a second they
                             # allocate: a second with more requests allocates more and computes more
GC_CPU_PCT = 50.0          # CPU percent the GC threads burn while the JVM is in GC
SOFTIRQ_CPU_PCT = 8.0      # CPU percent of packet processing at a saturated link
IO_BLOCKED_PER_CORE = 0.6  # runnable (D-state) tasks per core while the disk is full


@jit
def quantize(x, resolution):
    """Round to the reported resolution (repeated identical values are real)."""
    if resolution <= 0.0:
        return x
    return np.floor(x / resolution + 0.5) * resolution


@jit
def clip(x, lo, hi):
    return min(max(x, lo), hi)


@jit
def wrap(x, period):
    """x modulo period, in [0, period), as Python's % gives it for whole seconds: by one division and
    a floor (fmod reduces epoch seconds bit by bit, several times slower)."""
    r = x - period * np.floor(x / period)
    if r < 0.0:
        r += period
    elif r >= period:
        r -= period
    return r


@jit
def poisson_from_uniform(lam, u, z):
    """Poisson(lam) by inverse CDF of one uniform (normal approximation above 30)."""
    if lam <= 0.0:
        return 0.0
    if lam > 30.0:
        return max(0.0, np.floor(lam + np.sqrt(lam) * z + 0.5))
    p = np.exp(-lam)
    cdf = p
    k = 0.0
    while u > cdf and k < 200.0:
        k += 1.0
        p *= lam / k
        cdf += p
    return k


BURST_TAIL_ALPHA = 2.5  # Pareto (Lomax) tail of transfer sizes: bulk traffic is heavy-tailed
BURST_DECAY = 0.6       # share of a transfer's traffic left in the next interval (fades over ~15 min)
BURST_MAX = 200.0       # cap, in multiples of the burst scale
NET_NOISE_PHI = 0.95    # traffic noise is persistent (sessions last longer than 5 minutes)
AGENT_OFF_SCHEDULE = 0.1  # agent runs outside the daily slot, relative to the daily rate
CRON_SIZE = (0.6, 0.8)    # an hourly cron burst is its host's amplitude times uniform [low, low + width)
CRON_RUN_S = 300.0        # an hourly cron burst runs this long at its amplitude (its 5-minute average)
AGENT_SIZE = (0.7, 0.6)   # an agent run is its host's size times uniform [low, low + width)
PERIODIC_SIZE = (0.6, 0.8)  # a run of the periodic job is its host's size times uniform [low, low + width)


@jit
def transfer_burst(u, p, scale):
    """Traffic a new bulk transfer adds this step (0 without one), from one uniform draw.

    A transfer starts when ``u < p``; then ``u / p`` is again uniform and sets a Lomax-distributed
    size, so that real traffic's heavy tails (skew 3-8, kurtosis of changes 4-260) appear.
    """
    if u >= p:
        return 0.0
    v = u / p
    return scale * min((1.0 - v) ** (-1.0 / BURST_TAIL_ALPHA) - 1.0, BURST_MAX)


@jit
def damped_load(load, runnable, decay):
    """Linux's load average: L <- L*e^(-dt/60) + n*(1 - e^(-dt/60))."""
    return load * decay + runnable * (1.0 - decay)


# ---------------------------------------------------------------------------- records of the entry point
class TimeGrid(NamedTuple):
    """The steps [t0, t0 + n_steps) of dt seconds; step t is at start_epoch + t * dt."""

    t0: int
    n_steps: int
    dt: float
    start_epoch: float


class Reporting(NamedTuple):
    """Per metric, as the collector reports it: the resolution and the bounds (float64[N_METRICS] each)."""

    resolution: np.ndarray
    lower: np.ndarray
    upper: np.ndarray


class EventInputs(NamedTuple):
    """The events of the hosts, by host (ptr[h]:ptr[h + 1]), with their rows of perturbation profiles."""

    ptr: np.ndarray       # int64[H + 1]
    start: np.ndarray     # int64[E]: first step
    length: np.ndarray    # int64[E]: steps
    row: np.ndarray       # int64[E]: first row in profiles
    event_id: np.ndarray  # int64[E]
    mask: np.ndarray      # int64[E]: bit m set when the event's kind declares metric m
    primary: np.ndarray   # int64[E]: the kind's primary metric
    profiles: np.ndarray  # float64[rows, N_CHANNELS]


class TraceOutputs(NamedTuple):
    values: np.ndarray    # float32[M, H, T] with the anomalies
    base: np.ndarray      # float32[M, H, T] without them (shape [M, 0, 0]: not kept)
    labels: np.ndarray    # int32[M, H, T]: the event a point is labelled with, else -1
    host_std: np.ndarray  # float64[M, H]: each metric's std on the host without anomalies


class EventOutputs(NamedTuple):
    peak: np.ndarray         # float64[E]: the largest deviation in host sigmas
    peak_metric: np.ndarray  # int64[E]: where it is
    first: np.ndarray        # int64[E]: first labelled step (-1: none)
    last: np.ndarray         # int64[E]: last labelled step


class ChunkState(NamedTuple):
    """Each host's state before t0 (read with `resume`) and after its last step, float64[H, N_STATE]:
    a trace can be computed in consecutive time chunks."""

    before: np.ndarray
    resume: bool
    after: np.ndarray


# ---------------------------------------------------------------------------- a host's model, by subsystem
class CpuDemand(NamedTuple):
    """The workload: a lognormal around the CPU level (regime shifts, slow and fast AR(1) with
    jumps), hourly cron bursts, a periodic job every 10-60 minutes, daily agent runs; the collector's
    reading."""

    level: float
    fast_phi: float
    fast_sigma: float
    slow_phi: float
    slow_sigma: float
    jump_prob: float
    jump_scale: float
    shift_p: float
    shift_sigma: float
    has_cron: bool
    cron_offset: float
    cron_amplitude: float
    agent_at: float
    agent_daily_p: float
    agent_off_p: float
    agent_pct: float
    resolution: float
    read_scale: float
    periodic_pct: float   # CPU % the periodic job adds while it runs (0: none)
    period: float         # seconds between its runs
    periodic_at: float    # its first run's offset in the period, seconds
    periodic_run: float   # seconds one run lasts


class Memory(NamedTuple):
    level: float
    phi: float
    sigma: float
    step_p: float
    step_sigma: float
    creep: float       # page-cache growth per step
    reclaim_at: float  # page cache at which the kernel reclaims it


class Disk(NamedTuple):
    level: float
    growth: float
    growth_per_day: float
    rotation_at: float
    rotation_drop: float


class Network(NamedTuple):
    link: float
    level: float
    innovation: float
    cpu_coupling: float
    out_ratio: float
    burst_p: float
    burst_size: float
    out_burst_size: float
    latency_base: float
    latency_sigma: float
    latency_queue: float


class Jvm(NamedTuple):
    alloc: float       # heap percent allocated in a step at the median workload
    young_at: float
    full_at: float
    floor: float
    creep: float       # floor creep (promotion) per step at the median workload
    young_ms: float
    full_ms: float
    dt: float
    alloc_spread: float  # half-width of a step's relative allocation beyond the workload's (uniform)


class Scheduler(NamedTuple):
    """Job arrivals, completions and slots, what each job uses; the scheduler's daemon processes."""

    job_lambda: float
    done_frac: float      # the chance a job ends within a step at exponential run times (shape 1)
    slots: float
    daemons: float
    daemon_p: float
    dt: float
    length_scale: float   # Weibull scale of run times, seconds (mean job_minutes)
    length_shape: float
    per_job_cpu: float    # mean CPU height of a job, percent
    height_sigma: float   # its spread from job to job, log units
    ramp_s: float         # time constant of a job's CPU ramp, seconds
    ramp_decay: float     # exp(-dt / ramp_s): the share of the ramp's gap left after a step
    ramp_mean: float      # the gap's mean share over a step
    per_job_mem: float    # mean working set of a job, percent
    ws_sigma: float
    mem_ramp_s: float
    mem_decay: float


class HostModel(NamedTuple):
    cores: float
    load_decay: float
    cpu: CpuDemand
    memory: Memory
    disk: Disk
    network: Network
    jvm: Jvm
    scheduler: Scheduler


@jit_inline
def host_model(seed, pr, dt):
    """A host's model from its parameter row (P columns) and its per-host draws."""
    steps_per_day = 86400.0 / dt
    agent_p = pr[P_AGENT_RATE] / steps_per_day
    period = 60.0 * PERIODS_MINUTES[min(int(host_uniform(seed, H_PERIOD) * len(PERIODS_MINUTES)),
                                        len(PERIODS_MINUTES) - 1)]
    cpu = CpuDemand(
        pr[P_CPU_LEVEL], pr[P_CPU_FAST_PHI], pr[P_CPU_FAST_SIGMA], pr[P_CPU_SLOW_PHI], pr[P_CPU_SLOW_SIGMA],
        pr[P_CPU_JUMP_PROB], pr[P_CPU_JUMP_SCALE], pr[P_CPU_SHIFTS] / steps_per_day, pr[P_CPU_SHIFT_SIGMA],
        host_uniform(seed, H_CRON) < pr[P_CRON_PROB], np.floor(host_uniform(seed, H_CRON_MINUTE) * 12.0) * 300.0,
        pr[P_CRON_AMP], np.floor(host_uniform(seed, H_AGENT_AT) * 86400.0 / dt) * dt,
        min(agent_p * steps_per_day, 1.0), agent_p * AGENT_OFF_SCHEDULE, pr[P_AGENT_PCT], pr[P_CPU_RES],
        pr[P_CPU_JITTER] * np.sqrt(12.0), pr[P_PERIODIC_SHARE] * pr[P_CPU_LEVEL], period,
        np.floor(host_uniform(seed, H_PERIOD_AT) * period / 60.0) * 60.0, min(pr[P_PERIODIC_S], 0.5 * period))
    memory = Memory(pr[P_MEM_LEVEL], pr[P_MEM_PHI], pr[P_MEM_SIGMA], pr[P_MEM_STEPS] / steps_per_day,
                    pr[P_MEM_STEP_SIGMA], pr[P_MEM_CREEP] / steps_per_day, pr[P_MEM_RECLAIM])
    disk = Disk(pr[P_DISK_LEVEL], pr[P_DISK_GROWTH] / steps_per_day, pr[P_DISK_GROWTH],
                np.floor(host_uniform(seed, H_ROTATION_HOUR) * 24.0) * 3600.0, pr[P_DISK_ROT])
    burst_size = pr[P_NET_BURST_SCALE] * pr[P_NET_LEVEL]
    network = Network(pr[P_LINK], pr[P_NET_LEVEL], pr[P_NET_SIGMA] * np.sqrt(1.0 - NET_NOISE_PHI ** 2),
                      pr[P_NET_COUPLING], pr[P_NET_OUT], pr[P_NET_BURSTS] / steps_per_day, burst_size,
                      pr[P_NET_OUT] * burst_size, pr[P_LAT_BASE], pr[P_LAT_SIGMA], pr[P_LAT_QUEUE])
    jvm = Jvm(pr[P_HEAP_ALLOC] * dt, pr[P_HEAP_YOUNG], pr[P_HEAP_FULL], pr[P_HEAP_FLOOR],
              pr[P_HEAP_CREEP] * dt / 3600.0, pr[P_GC_YOUNG_MS], pr[P_GC_FULL_MS], dt,
              ALLOC_SIGMA_1S * np.sqrt(3.0) / np.sqrt(max(dt, 1.0)))
    ramp_s = 60.0 * pr[P_JOB_RAMP]
    ramp_decay = np.exp(-dt / ramp_s)
    mem_ramp_s = 60.0 * pr[P_JOB_MEM_RAMP]
    shape = pr[P_JOB_SHAPE]
    scheduler = Scheduler(pr[P_JOB_RATE] * dt / 3600.0, 1.0 - np.exp(-dt / (60.0 * pr[P_JOB_MIN])),
                          pr[P_JOB_SLOTS], pr[P_VEMKD], pr[P_VEMKD_STEPS] / steps_per_day, dt,
                          60.0 * pr[P_JOB_MIN] / math.gamma(1.0 + 1.0 / shape), shape, pr[P_JOB_CPU],
                          pr[P_JOB_CPU_SPREAD], ramp_s, ramp_decay, ramp_s / dt * (1.0 - ramp_decay), pr[P_JOB_MEM],
                          pr[P_JOB_MEM_SPREAD], mem_ramp_s, np.exp(-dt / mem_ramp_s))
    return HostModel(pr[P_CORES], np.exp(-dt / 60.0), cpu, memory, disk, network, jvm, scheduler)


# ---------------------------------------------------------------------------- states
class CpuState(NamedTuple):
    shift: float  # log level of the current regime
    slow: float   # slow AR(1) of the log workload
    fast: float   # fast AR(1) of the log workload


class MemoryState(NamedTuple):
    noise: float  # AR(1)
    step: float   # the level since the last step change
    cache: float  # page cache grown since then


class NetworkState(NamedTuple):
    noise: float      # AR(1) of the log traffic
    burst_in: float   # traffic of bulk transfers still under way
    burst_out: float


class Background(NamedTuple):
    """The undisturbed processes a host carries from step to step."""

    cpu: CpuState
    memory: MemoryState
    disk: float
    network: NetworkState
    daemon_offset: float  # child daemons above or below the host's count (-1, 0, 1)


class Jobs(NamedTuple):
    """The scheduler's queue on a host and what its running jobs use.  Each job has its own CPU height
    and working set, drawn when it starts; it ramps up to them (CPU faster than memory, which loads its
    data) and gives both back when it ends.  The running jobs are tracked together: their summed
    heights and working sets, what they use now, and their mean age (which sets the chance that a job
    ends, for Weibull run times); a job that ends takes its share of the sums."""

    running: float
    pending: float
    height: float       # CPU % the running jobs reach once ramped up
    cpu: float          # CPU % they use at the end of the step
    working_set: float  # memory % they reach once loaded
    memory: float       # memory % they hold at the end of the step
    age: float          # their mean age, seconds


class Disturbed(NamedTuple):
    """The states an anomaly can disturb; run twice, without and with the perturbation channels."""

    jobs: Jobs
    heap: float
    floor: float
    load: float


@jit_inline
def start_state(seed, model):
    """A host's state before its first step: the workload at a random point of its stationary law,
    the job queue at its equilibrium, the heap at its floor."""
    cpu = model.cpu
    u_a = host_uniform(seed, H_SHIFT0)
    u_b = host_uniform(seed, H_SHIFT0 + 1)
    shift = cpu.shift_sigma * np.sqrt(-2.0 * np.log(u_a)) * np.cos(2.0 * np.pi * u_b)
    slow_sd = cpu.slow_sigma / np.sqrt(max(1.0 - cpu.slow_phi ** 2, 1e-6))
    u_a = host_uniform(seed, H_SLOW0)
    u_b = host_uniform(seed, H_SLOW0 + 1)
    slow = slow_sd * np.sqrt(-2.0 * np.log(u_a)) * np.cos(2.0 * np.pi * u_b)
    background = Background(CpuState(shift, slow, 0.0), MemoryState(0.0, 0.0, 0.0), model.disk.level,
                            NetworkState(0.0, 0.0, 0.0), 0.0)
    sched = model.scheduler
    running = min(np.floor(sched.job_lambda / max(sched.done_frac, 1e-9)), sched.slots)
    height = running * sched.per_job_cpu
    working_set = running * sched.per_job_mem
    jobs = Jobs(running, 0.0, height, height, working_set, working_set,
                0.5 * sched.length_scale if running > 0.0 else 0.0)
    floor = model.jvm.floor
    return background, Disturbed(jobs, floor, floor, model.cores * cpu.level / 100.0)


@jit_inline
def load_state(s):
    """(Background, Disturbed) from a state row (S_ columns)."""
    background = Background(CpuState(s[S_SHIFT], s[S_SLOW], s[S_FAST]),
                            MemoryState(s[S_MEM_AR], s[S_MEM_STEP], s[S_MEM_CACHE]), s[S_DISK],
                            NetworkState(s[S_NET_AR], s[S_BURST_IN], s[S_BURST_OUT]), s[S_VEMKD])
    jobs = Jobs(s[S_RUNNING], s[S_PENDING], s[S_JOB_HEIGHT], s[S_JOB_CPU], s[S_JOB_WS], s[S_JOB_MEM], s[S_JOB_AGE])
    return background, Disturbed(jobs, s[S_HEAP], s[S_FLOOR], s[S_LOAD])


@jit_inline
def store_state(background, disturbed, s):
    """Write (Background, Disturbed) into a state row (S_ columns)."""
    s[S_SHIFT], s[S_SLOW], s[S_FAST] = background.cpu
    s[S_MEM_AR], s[S_MEM_STEP], s[S_MEM_CACHE] = background.memory
    s[S_DISK] = background.disk
    s[S_NET_AR], s[S_BURST_IN], s[S_BURST_OUT] = background.network
    s[S_VEMKD] = background.daemon_offset
    jobs = disturbed.jobs
    s[S_RUNNING], s[S_PENDING] = jobs.running, jobs.pending
    s[S_JOB_HEIGHT], s[S_JOB_CPU], s[S_JOB_WS], s[S_JOB_MEM], s[S_JOB_AGE] = jobs[2:]
    s[S_HEAP], s[S_FLOOR], s[S_LOAD] = disturbed.heap, disturbed.floor, disturbed.load


# ---------------------------------------------------------------------------- the background, per subsystem
@jit_inline
def covered_share(clock, dt, period, at, run):
    """The share of the step [clock, clock + dt) covered by runs of `run` seconds every `period`, from `at`."""
    if dt >= period:
        return run / period
    phase = wrap(clock - at, period)
    end = phase + dt
    on = max(min(end, run) - phase, 0.0) + max(min(end, period + run) - max(phase, period), 0.0)
    return on / dt


@jit_inline
def periodic_share(clock, dt, cpu):
    """The share of the step [clock, clock + dt) in which the periodic job runs."""
    return covered_share(clock, dt, cpu.period, cpu.periodic_at, cpu.periodic_run)


@jit_inline
def cpu_demand_step(state, cpu, seed, t, clock, dt):
    """One step of the workload; returns (state, log workload, workload, background CPU %)."""
    shift = state.shift
    if uniform(seed, t, D_SHIFT_U) < cpu.shift_p:
        shift = cpu.shift_sigma * normal(seed, t, D_SHIFT_N)
    slow = cpu.slow_phi * state.slow + cpu.slow_sigma * normal(seed, t, D_SLOW_N)
    innovation = normal(seed, t, D_FAST_N)
    if uniform(seed, t, D_JUMP_U) < cpu.jump_prob:
        innovation *= cpu.jump_scale
    fast = cpu.fast_phi * state.fast + cpu.fast_sigma * innovation
    log_work = shift + slow + fast
    work = np.exp(log_work)  # workload relative to the host's median
    cpu_bg = cpu.level * work
    if cpu.has_cron:  # its 5-minute average over the steps its run covers, at any interval
        on = covered_share(clock, dt, 3600.0, cpu.cron_offset, CRON_RUN_S)
        if on > 0.0:
            cpu_bg += cpu.cron_amplitude * on * (CRON_SIZE[0] + CRON_SIZE[1] * uniform(seed, t, D_CRON_U))
    if cpu.periodic_pct > 0.0:
        on = periodic_share(clock, dt, cpu)
        if on > 0.0:
            size = PERIODIC_SIZE[0] + PERIODIC_SIZE[1] * extra_uniform(seed, t, E_PERIODIC_U)
            cpu_bg += cpu.periodic_pct * on * size
    # agents (backup, inventory, AV scan) wake at their daily time, and now and then in between
    u_agent = uniform(seed, t, D_AGENT_U)
    daily_run = wrap(clock - cpu.agent_at, 86400.0) < dt
    if u_agent < (cpu.agent_daily_p if daily_run else cpu.agent_off_p):
        cpu_bg += cpu.agent_pct * (AGENT_SIZE[0] + AGENT_SIZE[1] * uniform(seed, t, D_AGENT_SIZE_U))
    return CpuState(shift, slow, fast), log_work, work, cpu_bg


@jit_inline
def memory_step(state, memory, seed, t):
    """One step of used memory without jobs: AR(1) noise, level steps that drop the page cache, the
    cache's growth and its reclaim; returns (state, memory %).

    The page cache grows steadily and the kernel reclaims it under pressure: at a random point
    between 60 and 100 % of the host's reclaim level it drops back to a tenth, a sawtooth bounded
    by that level, so a normal host's memory does not climb like a leak over days or weeks.  The
    reclaim point reuses the step draw: a step (u below its small rate) flushes the cache anyway,
    and otherwise u is uniform on (step_p, 1)."""
    noise = memory.phi * state.noise + memory.sigma * normal(seed, t, D_MEM_N)
    step = state.step
    cache = state.cache + memory.creep
    u = uniform(seed, t, D_MEM_STEP_U)
    if u < memory.step_p:
        step = 0.5 * step + memory.step_sigma * normal(seed, t, D_MEM_STEP_N)
        cache = 0.0
    elif cache >= memory.reclaim_at * (0.6 + 0.4 * u):
        cache *= RECLAIM_KEEP
    return MemoryState(noise, step, cache), memory.level + step + cache + noise


@jit_inline
def disk_step(used, disk, seed, t, clock, dt):
    """One step of disk usage: random growth, the daily log rotation, an operator's clean-up."""
    used += disk.growth * 2.0 * uniform(seed, t, D_DISK_U)
    if ((clock - disk.rotation_at) % 86400.0) < dt:
        used -= disk.rotation_drop * disk.growth_per_day
    if used > 96.0:
        used -= 25.0  # housekeeping by an operator
    return clip(used, 0.0, 100.0)


@jit_inline
def network_step(state, network, seed, t, log_work):
    """One step of the traffic a host is offered and of its base latency: persistent noise coupled to
    the workload plus heavy-tailed bulk transfers; returns (state, in, out, latency)."""
    noise = NET_NOISE_PHI * state.noise + network.innovation * normal(seed, t, D_NET_N)
    net_in = network.level * np.exp(noise + network.cpu_coupling * log_work)
    net_out = network.out_ratio * net_in * np.exp(0.15 * normal(seed, t, D_NET_OUT_N))
    burst_in = BURST_DECAY * state.burst_in + transfer_burst(uniform(seed, t, D_BURST_IN_U), network.burst_p,
                                                             network.burst_size)
    burst_out = (BURST_DECAY * state.burst_out
                 + transfer_burst(uniform(seed, t, D_BURST_OUT_U), network.burst_p, network.out_burst_size))
    latency = network.latency_base * np.exp(network.latency_sigma * normal(seed, t, D_LAT_N))
    return NetworkState(noise, burst_in, burst_out), net_in + burst_in, net_out + burst_out, latency


@jit_inline
def daemons_step(offset, scheduler, seed, t):
    """One step of the scheduler's daemon processes; returns (offset, process count)."""
    if uniform(seed, t, D_VEMKD_U) < scheduler.daemon_p:
        if uniform(seed, t, D_VEMKD_DIR_U) < 0.5 - 0.2 * offset:
            offset += 1.0
        else:
            offset -= 1.0
    # child processes (pem, pim, ELIMs) come and go; vemkd and lim stay, so the count never
    # wanders near 0 on its own: a crash (0) is always visible against it
    offset = clip(offset, -1.0, 1.0)
    return offset, max(scheduler.daemons + offset, 2.0)


class Step(NamedTuple):
    """What the disturbed states read from a step's background and random stream."""

    work: float
    cpu: float       # background CPU %
    memory: float    # memory % without jobs
    disk: float
    net_in: float    # offered traffic
    net_out: float
    latency: float   # base latency
    daemons: float
    read_factor: float
    u_jobs: float
    u_storm: float
    u_plateau: float
    u_alloc: float
    u_young: float


@jit_inline
def read_jitter(seed, t, cpu):
    """The collector's read-instant jitter of step t (uniform, std cpu_read_jitter)."""
    return cpu.read_scale * (uniform(seed, t, D_READ_U) - 0.5)


@jit_inline
def background_step(background, model, seed, t, clock, dt, read_prev):
    """Advance the background one step; returns (background, Step, this step's read jitter).

    The collector reads the CPU time counters at jittered instants and divides by the nominal
    interval: the reported average is scaled by 1 + (jitter now - jitter at the previous read), an
    MA(1) with lag-1 autocorrelation -0.5 (a pure function of t, so chunks need no state)."""
    cpu_state, log_work, work, cpu_bg = cpu_demand_step(background.cpu, model.cpu, seed, t, clock, dt)
    mem_state, memory = memory_step(background.memory, model.memory, seed, t)
    disk = disk_step(background.disk, model.disk, seed, t, clock, dt)
    net_state, net_in, net_out, latency = network_step(background.network, model.network, seed, t, log_work)
    offset, daemons = daemons_step(background.daemon_offset, model.scheduler, seed, t)
    read_now = read_jitter(seed, t, model.cpu)
    step = Step(work, cpu_bg, memory, disk, net_in, net_out, latency, daemons,
                max(1.0 + read_now - read_prev, 0.0), uniform(seed, t, D_JOB_U), uniform(seed, t, D_STORM_U),
                uniform(seed, t, D_PLATEAU_U), uniform(seed, t, D_ALLOC_U), uniform(seed, t, D_YOUNG_U))
    return Background(cpu_state, mem_state, disk, net_state, offset), step, read_now


# ---------------------------------------------------------------------------- the disturbed part
class Channels(NamedTuple):
    """One step's perturbation inputs (catalogue.CHANNELS); all zero for the undisturbed copy."""

    cpu: float
    memory: float
    disk: float
    network: float
    heap_floor: float
    gc_storm: float
    daemon_down: bool      # vemkd is down (the channel at 1): its children with it, running jobs lost
    daemons_starting: float  # after its restart, the share of the daemons not yet up (the channel below 1)
    job_flood: float
    jvm_restart: float


NO_CHANNELS = Channels(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, False, 0.0, 0.0, 0.0)  # the undisturbed copy's inputs


@jit_inline
def channels_at(chan, i):
    """The perturbation inputs of step i (a row of chan)."""
    return Channels(chan[i, C_CPU], chan[i, C_MEM], chan[i, C_DISK], chan[i, C_NET], chan[i, C_HEAP_FLOOR],
                    chan[i, C_GC_STORM], chan[i, C_DAEMON_DOWN] >= 1.0, chan[i, C_DAEMON_DOWN], chan[i, C_JOB_FLOOD],
                    chan[i, C_JVM_RESTART])


@jit_inline
def reported(x, m, reporting):
    """Metric m as the collector reports it: clipped to its bounds, rounded to its resolution."""
    return quantize(clip(x, reporting.lower[m], reporting.upper[m]), reporting.resolution[m])


@jit_inline
def job_end_chance(age, scheduler):
    """The chance that a job of this age (seconds) ends within the next step: Weibull run times."""
    if scheduler.length_shape == 1.0:
        return scheduler.done_frac
    k = scheduler.length_shape
    return 1.0 - np.exp((age / scheduler.length_scale) ** k - ((age + scheduler.dt) / scheduler.length_scale) ** k)


@jit_inline
def new_jobs_use(n, mean, sigma, z):
    """What n jobs starting together reach (CPU height or working set): n lognormal draws around
    `mean` (log std sigma), summed as one lognormal of the same mean and a sqrt(n)-times smaller spread."""
    s = sigma / np.sqrt(n)
    return n * mean * np.exp(s * z - 0.5 * s * s)


@jit_inline
def step_jobs(jobs, arrivals, scheduler, seed, t, z_done, disk_full, ch):
    """One step of the scheduler queue on a host and of what its jobs use; returns (Jobs, the jobs'
    CPU % averaged over the step).

    Jobs that end ran for a uniform share of the step; jobs dispatched start at a uniform instant of
    it and ramp towards their height (CPU averaged over the interval, memory a gauge at its end), so
    a job's first and last points are partial as on real batch hosts."""
    if ch.daemon_down:
        # vemkd gone: running jobs are lost, new submissions wait at the master
        return Jobs(0.0, jobs.pending + arrivals, 0.0, 0.0, 0.0, 0.0, 0.0), 0.0
    running = jobs.running
    done = 0.0
    if running > 0.0:
        done_frac = job_end_chance(jobs.age, scheduler)
        mean_done = running * done_frac
        done = np.floor(mean_done + np.sqrt(max(mean_done * (1.0 - done_frac), 0.0)) * z_done + 0.5)
        done = clip(done, 0.0, running)
    if ch.gc_storm > 0.0:
        done = 0.0  # the jobs' JVMs make no progress while they collect back to back
    if disk_full:
        done = running - np.floor(running * 0.5)  # jobs fail on write errors
    cpu_avg = 0.0
    keep = 1.0
    if done > 0.0:
        keep = (running - done) / running
        cpu_avg += jobs.cpu * (1.0 - keep) * extra_uniform(seed, t, E_JOB_END_U)
    running -= done
    height = jobs.height * keep
    level = jobs.cpu * keep
    working_set = jobs.working_set * keep
    memory = jobs.memory * keep
    # the jobs still running approach their heights and working sets
    cpu_avg += height + (level - height) * scheduler.ramp_mean
    level = height + (level - height) * scheduler.ramp_decay
    memory = working_set + (memory - working_set) * scheduler.mem_decay
    age = jobs.age + scheduler.dt
    queue = jobs.pending + arrivals
    dispatch = min(queue, max(scheduler.slots - running, 0.0))
    if disk_full:
        dispatch = 0.0
    if dispatch > 0.0:
        late = extra_uniform(seed, t, E_JOB_START_U)  # the instant they start, as a share of the step
        ran = (1.0 - late) * scheduler.dt
        new_height = new_jobs_use(dispatch, scheduler.per_job_cpu, scheduler.height_sigma,
                                  extra_normal(seed, t, E_JOB_HEIGHT_N))
        new_ws = new_jobs_use(dispatch, scheduler.per_job_mem, scheduler.ws_sigma, extra_normal(seed, t, E_JOB_WS_N))
        reached = 1.0 - np.exp(-ran / scheduler.ramp_s)
        cpu_avg += new_height * ((1.0 - late) - scheduler.ramp_s / scheduler.dt * reached)
        level += new_height * reached
        height += new_height
        memory += new_ws * (1.0 - np.exp(-ran / scheduler.mem_ramp_s))
        working_set += new_ws
        age = (running * age + dispatch * ran) / (running + dispatch)
    running += dispatch
    if running <= 0.0:
        age = 0.0
    return Jobs(running, queue - dispatch, height, level, working_set, memory, age), cpu_avg


@jit_inline
def step_heap(heap, floor, alloc, jvm, ch, storm_u, young_u):
    """One step of the JVM heap sawtooth (`alloc` percent allocated); returns (heap %, floor, GC share
    of the interval, collections in the step).

    Young collections run when the young space fills (its size jittered per step by YOUNG_JITTER, so
    they come at irregular times); what survives is promoted, so the old-generation floor creeps in
    proportion to the allocation until it reaches full_at, where a mixed/full collection resets it."""
    if ch.jvm_restart > 0.5:
        # a fresh JVM after an OOM kill: small heap, nothing collected yet
        return 4.0 + 6.0 * storm_u, jvm.floor, 0.0, 0.0
    full_at = jvm.full_at
    floor = floor + jvm.creep * alloc / max(jvm.alloc, 1e-12)
    n_full = 0.0
    young = heap
    if floor >= full_at:
        # the old generation is collected, and the young space with it
        floor = jvm.floor
        n_full = 1.0
        young = 0.0
    eff_floor = min(floor + ch.heap_floor, MAX_HEAP_FLOOR)
    space = max(jvm.young_at - eff_floor, 0.5) * (1.0 + YOUNG_JITTER * (2.0 * young_u - 1.0))
    space = min(space, max(MAX_YOUNG_AT - eff_floor, 0.5))
    total = max(young - eff_floor, 0.0) + alloc
    n_young = np.floor(total / space)
    # after a collection the heap holds what the step allocated since it
    heap = eff_floor + (min(total - n_young * space, alloc) if n_young > 0.0 else total)
    if eff_floor > full_at:
        # live data above the full-GC threshold: full collections that reclaim little
        n_full += n_young * (eff_floor - full_at) / max(100.0 - full_at, 1.0)
    gc_share = (n_young * jvm.young_ms + n_full * jvm.full_ms) / (1000.0 * jvm.dt)
    if ch.gc_storm > 0.0:
        gc_share = max(gc_share, ch.gc_storm * (0.92 + 0.16 * storm_u))
        heap = 95.0 + 4.9 * storm_u
    return heap, floor, min(gc_share, 1.0), n_young + n_full


@jit_inline
def jvm_step(heap, floor, ch, jvm, step, seed, t):
    """One step of the JVM; returns (heap %, floor, share of the interval in GC, CPU % the JVM adds).

    The allocation follows the workload, with the step's own variation (the request mix of the step);
    the application threads doing that extra work burn MUTATOR_CPU_PER_ALLOC CPU percent per heap
    percent a second allocated beyond the median, the GC threads GC_CPU_PCT while in GC.
    Each collection's pause varies around the host's typical one (PAUSE_SIGMA), averaging out over
    many."""
    median_alloc = jvm.alloc * step.work
    alloc = median_alloc * (1.0 + jvm.alloc_spread * (2.0 * step.u_alloc - 1.0))
    mutator_cpu = MUTATOR_CPU_PER_ALLOC * (alloc - median_alloc) / jvm.dt
    heap, floor, gc_share, n = step_heap(heap, floor, alloc, jvm, ch, step.u_storm, step.u_young)
    if gc_share != 0.0:  # the pauses' variation (its draw made only here) scales the GC time there is
        z_gc = normal(seed, t, D_GC_N)
        if ch.gc_storm > 0.0 or n <= 0.0:
            gc_share = clip(gc_share * (1.0 + 0.1 * z_gc), 0.0, 1.0)
        else:
            gc_share = clip(gc_share * (1.0 + PAUSE_SIGMA / np.sqrt(max(n, 1.0)) * z_gc), 0.0, 1.0)
    return heap, floor, gc_share, gc_share * GC_CPU_PCT + mutator_cpu


@jit_inline
def link_step(network, offered, step):
    """The link: throughput capped at its plateau (94-98 % of the link), M/M/1 queueing delay, and
    buffer overflow beyond capacity; returns (in, share passed, utilisation rho, latency)."""
    rho = offered / network.link
    capacity = network.link * (0.94 + 0.04 * step.u_plateau)
    net_in = min(offered, capacity)
    passed = net_in / offered if offered > 0.0 else 1.0
    rho_q = min(rho, 0.985)
    latency = step.latency + network.latency_queue * rho_q / (1.0 - rho_q)
    if rho > 1.0:
        latency += network.latency_queue * 60.0 * (rho - 1.0)  # overflowing buffers
    return net_in, passed, rho, latency


@jit_inline
def cpu_demand(step, jobs_cpu, ch, jvm_cpu, rho):
    """The host's CPU demand, percent: background, jobs, the anomaly's own demand, the JVM's (GC
    threads, allocation bursts) and packet processing (softirq), which grows once the link is 80 %
    busy."""
    return (step.cpu + jobs_cpu + ch.cpu + jvm_cpu
            + SOFTIRQ_CPU_PCT * max(min(rho, 1.5) - 0.8, 0.0))


@jit_inline
def disturbed_step(d, ch, step, model, reporting, seed, t, v):
    """Advance one copy of the disturbed states at step t; write its observed metrics to v (N_METRICS)."""
    disk = reported(step.disk + ch.disk, M_DISK, reporting)
    disk_full = disk >= 99.5
    sched = model.scheduler
    # the normal draws of the arrivals' and completions' normal approximations are made only where they
    # are read (above 30 arrivals a step; with jobs running): the same values, fewer logs and cosines
    lam = sched.job_lambda * step.work + ch.job_flood
    arrivals = poisson_from_uniform(lam, step.u_jobs, normal(seed, t, D_JOB_N) if lam > 30.0 else 0.0)
    z_done = normal(seed, t, D_DONE_N) if d.jobs.running > 0.0 else 0.0
    jobs, jobs_cpu = step_jobs(d.jobs, arrivals, sched, seed, t, z_done, disk_full, ch)
    heap, floor, gc_share, jvm_cpu = jvm_step(d.heap, d.floor, ch, model.jvm, step, seed, t)
    net_in, passed, rho, latency = link_step(model.network, step.net_in + ch.network * model.network.link, step)
    cpu = cpu_demand(step, jobs_cpu, ch, jvm_cpu, rho)
    runnable = model.cores * max(cpu, 0.0) / 100.0  # demand beyond capacity waits in the run queue
    if disk_full:
        runnable += model.cores * IO_BLOCKED_PER_CORE
    load = damped_load(d.load, runnable, model.load_decay)
    # the collector
    v[M_CPU] = quantize(clip(cpu * step.read_factor, reporting.lower[M_CPU], reporting.upper[M_CPU]),
                        model.cpu.resolution)
    v[M_MEM] = reported(step.memory + jobs.memory + ch.memory, M_MEM, reporting)
    v[M_DISK] = disk
    v[M_LOAD] = reported(load, M_LOAD, reporting)
    v[M_HEAP] = reported(heap, M_HEAP, reporting)
    v[M_GC] = reported(100.0 * gc_share, M_GC, reporting)
    v[M_JOBS] = jobs.running
    v[M_VEMKD] = 0.0 if ch.daemon_down else np.floor(step.daemons * (1.0 - ch.daemons_starting) + 0.5)
    v[M_NET_IN] = reported(net_in, M_NET_IN, reporting)
    v[M_NET_OUT] = reported(step.net_out * passed, M_NET_OUT, reporting)
    v[M_LAT] = reported(latency, M_LAT, reporting)
    return Disturbed(jobs, heap, floor, load)


# ---------------------------------------------------------------------------- one host
@jit
def simulate_host(h, seed, params, grid, reporting, chan, covered, carry, traces, delta):
    """Fill traces.values[:, h, :] (with anomalies), traces.base[:, h, :] (without, if kept) and
    traces.host_std[:, h] (each metric's std without anomalies) for one host, and delta [M, T] with
    the difference the anomalies make (as float32) at covered steps.

    With carry.resume, the host continues from carry.before[h] (its state after step t0 - 1 of an
    earlier chunk) instead of its start state; its state after the last step goes to carry.after[h]."""
    dt = grid.dt
    model = host_model(seed, params, dt)
    if carry.resume:
        background, undisturbed = load_state(carry.before[h])
    else:
        background, undisturbed = start_state(seed, model)
    disturbed = undisturbed
    want_base = traces.base.shape[1] == traces.values.shape[1]
    vals = np.zeros((2, N_METRICS))
    sums = np.zeros((N_METRICS, 2))
    t0 = grid.t0
    read_prev = read_jitter(seed, t0 - 1, model.cpu) if t0 > 0 else 0.0
    for i in range(grid.n_steps):
        t = t0 + i
        background, step, read_prev = background_step(background, model, seed, t, grid.start_epoch + t * dt, dt,
                                                      read_prev)
        undisturbed = disturbed_step(undisturbed, NO_CHANNELS, step, model, reporting, seed, t, vals[0])
        if covered[i]:
            disturbed = disturbed_step(disturbed, channels_at(chan, i), step, model, reporting, seed, t, vals[1])
        else:
            disturbed = undisturbed  # no incident in progress: the disturbed copy follows the undisturbed one
        src = 1 if covered[i] else 0
        for m in range(N_METRICS):
            x = vals[0, m]
            traces.values[m, h, i] = vals[src, m]
            sums[m, 0] += x
            sums[m, 1] += x * x
            if want_base:
                traces.base[m, h, i] = x
            if covered[i]:
                delta[m, i] = np.float64(np.float32(vals[1, m])) - np.float64(np.float32(x))
    for m in range(N_METRICS):
        mean = sums[m, 0] / grid.n_steps
        traces.host_std[m, h] = np.sqrt(max(sums[m, 1] / grid.n_steps - mean * mean, 0.0))
    store_state(background, undisturbed, carry.after[h])


# ---------------------------------------------------------------------------- the entry point
@jit
def host_channels(ev, h, grid):
    """The perturbation inputs of host h's events at each step: (chan [T, N_CHANNELS], covered [T],
    the latest-started event covering each step [T] or -1)."""
    n_steps = grid.n_steps
    chan = np.zeros((n_steps, N_CHANNELS))
    covered = np.zeros(n_steps, dtype=np.bool_)
    latest = np.full(n_steps, -1, dtype=np.int64)
    for e in range(ev.ptr[h], ev.ptr[h + 1]):
        s = ev.start[e] - grid.t0
        for j in range(ev.length[e]):
            i = s + j
            if 0 <= i < n_steps:
                for c in range(N_CHANNELS):
                    chan[i, c] += ev.profiles[ev.row[e] + j, c]
                covered[i] = True
                latest[i] = e
    return chan, covered, latest


@jit
def label_points(ev, h, grid, covered, latest, delta, labels):
    """Label host h's differing points: with the latest-started event that declares the metric, else
    with the latest-started event covering the step."""
    n_steps = grid.n_steps
    for m in range(N_METRICS):
        for i in range(n_steps):
            labels[m, h, i] = -1
    for e in range(ev.ptr[h], ev.ptr[h + 1]):
        s = ev.start[e] - grid.t0
        for j in range(ev.length[e]):
            i = s + j
            if 0 <= i < n_steps:
                for m in range(N_METRICS):
                    if delta[m, i] != 0.0 and (ev.mask[e] >> m) & 1:
                        labels[m, h, i] = ev.event_id[e]
    for i in range(n_steps):
        if covered[i]:
            for m in range(N_METRICS):
                if delta[m, i] != 0.0 and labels[m, h, i] < 0:
                    labels[m, h, i] = ev.event_id[latest[i]]


@jit
def measure_events(ev, h, grid, delta, traces, out):
    """Per event of host h: its labelled extent, and its largest deviation in host sigmas over the
    metrics it moved."""
    for e in range(ev.ptr[h], ev.ptr[h + 1]):
        s = ev.start[e] - grid.t0
        first = -1
        last = -1
        peak = 0.0
        peak_metric = ev.primary[e]
        for j in range(ev.length[e]):
            i = s + j
            if 0 <= i < grid.n_steps:
                for m in range(N_METRICS):
                    if traces.labels[m, h, i] == ev.event_id[e]:
                        if first < 0:
                            first = grid.t0 + i
                        last = grid.t0 + i
                        sd = traces.host_std[m, h]
                        dev = abs(delta[m, i]) / sd if sd > 0.0 else np.inf
                        # the primary metric wins ties, then the first metric in catalogue order
                        if dev > peak or (dev == peak and m == ev.primary[e]):
                            peak = dev
                            peak_metric = m
        out.peak[e] = peak
        out.peak_metric[e] = peak_metric
        out.first[e] = first
        out.last[e] = last


@jit_parallel
def simulate_hosts(seeds, params, grid, reporting, events, carry, traces, event_out):
    """Simulate hosts in parallel (seeds: uint64[H], params: float64[H, N_PARAMS]); each thread
    writes only its own hosts' slabs of traces (TraceOutputs), event_out (EventOutputs, for the
    hosts' events) and carry.after."""
    n_steps = grid.n_steps
    for i in prange(seeds.shape[0]):
        h = np.int64(i)  # prange's index is uint64 inside the parallel region: one type for each kernel it calls
        chan, covered, latest = host_channels(events, h, grid)
        delta = np.zeros((N_METRICS, n_steps))
        simulate_host(h, seeds[h], params[h], grid, reporting, chan, covered, carry, traces, delta)
        label_points(events, h, grid, covered, latest, delta, traces.labels)
        measure_events(events, h, grid, delta, traces, event_out)
