"""A plain-Python reference of one simulated host: the host model written out step by step, with no
numba and no NumPy in the loop, for tests to hold the kernel (simulator/_kernels.py) against on small
inputs.  Slow and meant to be obvious, one subsystem after the other; the draw slots and the
constants are the kernel's (they define the random stream and the model), the code is not.

Per step: the background (workload, memory, disk, traffic, daemons) once; then the states an anomaly
can disturb (job queue, JVM heap, load average) twice, without and with the perturbation channels.
Outside event windows the disturbed copy is reset to the undisturbed one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from simulator.catalogue import (
    C_CPU, C_DAEMON_DOWN, C_DISK, C_GC_STORM, C_HEAP_FLOOR, C_JOB_FLOOD, C_JVM_RESTART, C_MEM, C_NET, METRICS, P,
)

MASK64 = (1 << 64) - 1
GOLDEN, MIX1, MIX2 = 0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB
SLOTS_PER_STEP = 40
HOST_DOMAIN = 1 << 62
EXTRA_DOMAIN, EXTRA_SLOTS_PER_STEP = 1 << 61, 8

# draw slots of a step (a normal takes two) and of the host; the order of the kernel's random stream
D_SHIFT_U, D_SHIFT_N, D_SLOW_N, D_FAST_N, D_JUMP_U, D_CRON_U, D_MEM_N = 0, 1, 3, 5, 7, 8, 9
D_MEM_STEP_U, D_MEM_STEP_N, D_DISK_U, D_NET_N, D_NET_OUT_N, D_LAT_N = 11, 12, 14, 15, 17, 19
D_PLATEAU_U, D_VEMKD_U, D_VEMKD_DIR_U, D_JOB_U, D_JOB_N, D_DONE_N, D_GC_N = 21, 22, 23, 24, 25, 27, 29
D_STORM_U, D_BURST_IN_U, D_BURST_OUT_U, D_AGENT_U, D_AGENT_SIZE_U, D_READ_U = 31, 32, 33, 34, 35, 36
D_ALLOC_U, D_YOUNG_U = 37, 38
H_CRON, H_CRON_MINUTE, H_ROTATION_HOUR, H_SHIFT0, H_SLOW0, H_AGENT_AT = 0, 1, 2, 3, 5, 7
H_PERIOD, H_PERIOD_AT = 9, 10
# extra draw slots of a step (their own stream)
E_JOB_START_U, E_JOB_END_U, E_JOB_HEIGHT_N, E_JOB_WS_N, E_PERIODIC_U = 0, 1, 2, 4, 6

# the model's constants
MAX_HEAP_FLOOR = 97.0
MAX_YOUNG_AT = 90.0
GC_CPU_PCT = 50.0
# the JVM's variation (simulator/_kernels.py)
ALLOC_SIGMA_1S, YOUNG_JITTER, PAUSE_SIGMA, MUTATOR_CPU_PER_ALLOC = 0.35, 0.35, 0.35, 1.0
SOFTIRQ_CPU_PCT = 8.0
IO_BLOCKED_PER_CORE = 0.6
BURST_TAIL_ALPHA = 2.5
BURST_DECAY = 0.6
BURST_MAX = 200.0
NET_NOISE_PHI = 0.95
AGENT_OFF_SCHEDULE = 0.1
PERIODS_MINUTES = (10.0, 15.0, 20.0, 30.0, 60.0)
STATE_NAMES = ("shift", "slow", "fast", "mem_ar", "mem_step", "mem_cache", "disk", "net_ar", "burst_in",
               "burst_out", "vemkd_offset", "running", "pending", "heap", "floor", "load", "job_height", "job_cpu",
               "job_ws", "job_mem", "job_age")


# ---------------------------------------------------------------------------- random stream
def splitmix64(x: int) -> int:
    z = x & MASK64
    z = ((z ^ (z >> 30)) * MIX1) & MASK64
    z = ((z ^ (z >> 27)) * MIX2) & MASK64
    return z ^ (z >> 31)


def _unit(z: int) -> float:
    return ((z >> 11) + 0.5) * (1.0 / 9007199254740992.0)


def uniform(seed: int, t: int, k: int) -> float:
    return _unit(splitmix64(seed + ((t * SLOTS_PER_STEP + k + 1) & MASK64) * GOLDEN))


def normal(seed: int, t: int, k: int) -> float:
    u1, u2 = uniform(seed, t, k), uniform(seed, t, k + 1)
    return math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)


def extra_uniform(seed: int, t: int, k: int) -> float:
    return _unit(splitmix64(seed + ((EXTRA_DOMAIN + t * EXTRA_SLOTS_PER_STEP + k) & MASK64) * GOLDEN))


def extra_normal(seed: int, t: int, k: int) -> float:
    u1, u2 = extra_uniform(seed, t, k), extra_uniform(seed, t, k + 1)
    return math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)


def host_uniform(seed: int, k: int) -> float:
    return _unit(splitmix64(seed + (HOST_DOMAIN + k) * GOLDEN))


def host_normal(seed: int, k: int) -> float:
    u1, u2 = host_uniform(seed, k), host_uniform(seed, k + 1)
    return math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)


# ---------------------------------------------------------------------------- small pieces
def quantize(x: float, resolution: float) -> float:
    return x if resolution <= 0.0 else math.floor(x / resolution + 0.5) * resolution


def clip(x: float, lo: float, hi: float) -> float:
    return min(max(x, lo), hi)


def poisson(lam: float, u: float, z: float) -> float:
    """Poisson(lam) by inverse CDF of u; the normal approximation (from z) above 30."""
    if lam <= 0.0:
        return 0.0
    if lam > 30.0:
        return max(0.0, math.floor(lam + math.sqrt(lam) * z + 0.5))
    p = math.exp(-lam)
    cdf, k = p, 0.0
    while u > cdf and k < 200.0:
        k += 1.0
        p *= lam / k
        cdf += p
    return k


def transfer(u: float, p: float, scale: float) -> float:
    """Traffic of a bulk transfer starting this step (u < p), Lomax-sized from u / p."""
    if u >= p:
        return 0.0
    return scale * min((1.0 - u / p) ** (-1.0 / BURST_TAIL_ALPHA) - 1.0, BURST_MAX)


@dataclass
class Disturbed:
    """The states an anomaly can disturb: the job queue, the JVM heap and the load average."""

    running: float
    pending: float
    heap: float
    floor: float
    load: float
    job_height: float = 0.0  # CPU % the running jobs reach once ramped up
    job_cpu: float = 0.0     # CPU % they use at the end of the step
    job_ws: float = 0.0      # memory % of their working sets once loaded
    job_mem: float = 0.0     # memory % they hold at the end of the step
    job_age: float = 0.0     # their mean age, seconds


@dataclass
class Channels:
    """One step's perturbation inputs (all zero for the undisturbed copy)."""

    cpu: float = 0.0
    mem: float = 0.0
    disk: float = 0.0
    net: float = 0.0
    heap_floor: float = 0.0
    storm: float = 0.0
    down: bool = False
    starting: float = 0.0
    flood: float = 0.0
    restart: float = 0.0

    @classmethod
    def of(cls, row) -> Channels:
        return cls(row[C_CPU], row[C_MEM], row[C_DISK], row[C_NET], row[C_HEAP_FLOOR], row[C_GC_STORM],
                   row[C_DAEMON_DOWN] >= 1.0, row[C_DAEMON_DOWN], row[C_JOB_FLOOD], row[C_JVM_RESTART])


@dataclass
class Background:
    """The host's undisturbed processes, carried from step to step."""

    shift: float
    slow: float
    fast: float = 0.0
    mem_ar: float = 0.0
    mem_step: float = 0.0
    mem_cache: float = 0.0
    disk: float = 0.0
    net_ar: float = 0.0
    burst_in: float = 0.0
    burst_out: float = 0.0
    vemkd_offset: float = 0.0


# ---------------------------------------------------------------------------- one host
def simulate_host(seed: int, params, chan, covered, res, lower, upper, *, t0: int = 0, n_steps: int,
                  dt: float = 300.0, start_epoch: float = 0.0, state=None):
    """(values with the anomalies [metric][step], values without, the end state as a tuple in
    STATE_NAMES order) of one host; `chan` [step][channel] and `covered` [step] are the anomaly
    inputs; `state` a previous chunk's end state to continue from."""
    pr = {name: float(params[i]) for name, i in P.items()}
    seed = int(seed)
    cores = pr["cores"]
    steps_per_day = 86400.0 / dt
    decay = math.exp(-dt / 60.0)
    has_cron = host_uniform(seed, H_CRON) < pr["cpu_cron_prob"]
    cron_offset = math.floor(host_uniform(seed, H_CRON_MINUTE) * 12.0) * 300.0
    rotation_at = math.floor(host_uniform(seed, H_ROTATION_HOUR) * 24.0) * 3600.0
    agent_at = math.floor(host_uniform(seed, H_AGENT_AT) * 86400.0 / dt) * dt
    slow_sd = pr["cpu_slow_sigma"] / math.sqrt(max(1.0 - pr["cpu_slow_phi"] ** 2, 1e-6))
    bg = Background(shift=pr["cpu_shift_sigma"] * host_normal(seed, H_SHIFT0),
                    slow=slow_sd * host_normal(seed, H_SLOW0), disk=pr["disk_level"])
    done_frac = 1.0 - math.exp(-dt / (60.0 * pr["job_minutes"]))
    job_lambda = pr["job_rate_per_hour"] * dt / 3600.0
    running0 = min(math.floor(job_lambda / max(done_frac, 1e-9)), pr["job_slots"])
    length_scale = 60.0 * pr["job_minutes"] / math.gamma(1.0 + 1.0 / pr["job_length_shape"])
    start = Disturbed(running0, 0.0, pr["heap_floor"], pr["heap_floor"], cores * pr["cpu_level"] / 100.0,
                      running0 * pr["job_cpu"], running0 * pr["job_cpu"], running0 * pr["job_mem"],
                      running0 * pr["job_mem"], 0.5 * length_scale if running0 > 0.0 else 0.0)
    periodic = periodic_job(seed, pr)
    if state is not None:
        s = dict(zip(STATE_NAMES, state))
        for name in ("shift", "slow", "fast", "mem_ar", "mem_step", "mem_cache", "disk", "net_ar", "burst_in",
                     "burst_out", "vemkd_offset"):
            setattr(bg, name, s[name])
        start = Disturbed(*(s[name] for name in STATE_NAMES[11:]))
    copies = [start, Disturbed(**vars(start))]
    read_scale = pr["cpu_read_jitter"] * math.sqrt(12.0)
    read_prev = read_scale * (uniform(seed, t0 - 1, D_READ_U) - 0.5) if t0 > 0 else 0.0
    with_anomalies = [[0.0] * n_steps for _ in METRICS]
    without = [[0.0] * n_steps for _ in METRICS]
    for i in range(n_steps):
        t = t0 + i
        clock = start_epoch + t * dt
        step = background_step(bg, pr, seed, t, clock, dt, steps_per_day, has_cron, cron_offset, agent_at,
                               rotation_at, periodic)
        read_now = read_scale * (uniform(seed, t, D_READ_U) - 0.5)
        step["read_factor"] = max(1.0 + read_now - read_prev, 0.0)
        read_prev = read_now
        for c in range(2 if covered[i] else 1):
            ch = Channels.of(chan[i]) if c == 1 else Channels()
            values = disturbed_step(copies[c], ch, step, pr, seed, t, dt, decay, done_frac, job_lambda,
                                    length_scale, res, lower, upper)
            for m, v in enumerate(values):
                (with_anomalies if c == 1 else without)[m][i] = v
        if not covered[i]:
            copies[1] = Disturbed(**vars(copies[0]))
            for m in range(len(METRICS)):
                with_anomalies[m][i] = without[m][i]
    end = copies[0]
    end_state = (bg.shift, bg.slow, bg.fast, bg.mem_ar, bg.mem_step, bg.mem_cache, bg.disk, bg.net_ar, bg.burst_in,
                 bg.burst_out, bg.vemkd_offset, *vars(end).values())
    return with_anomalies, without, end_state


def periodic_job(seed: int, pr: dict) -> tuple[float, float, float]:
    """The host's periodic job: (period, first run's offset in it, run length), seconds."""
    index = min(int(host_uniform(seed, H_PERIOD) * len(PERIODS_MINUTES)), len(PERIODS_MINUTES) - 1)
    period = 60.0 * PERIODS_MINUTES[index]
    return (period, math.floor(host_uniform(seed, H_PERIOD_AT) * period / 60.0) * 60.0,
            min(pr["cpu_periodic_seconds"], 0.5 * period))


def periodic_on(clock: float, dt: float, period: float, at: float, run: float) -> float:
    """The share of [clock, clock + dt) covered by runs [at + k period, at + k period + run)."""
    if dt >= period:
        return run / period
    # run starts relative to the step's start (whole seconds: exact), the latest at or before it first;
    # adding a fractional run length to epoch seconds would round it to 2.4e-7 s
    covered, start = 0.0, -((clock - at) % period)
    while start < dt:
        covered += max(min(dt, start + run) - max(0.0, start), 0.0)
        start += period
    return covered / dt


def background_step(bg: Background, pr: dict, seed: int, t: int, clock: float, dt: float, steps_per_day: float,
                    has_cron: bool, cron_offset: float, agent_at: float, rotation_at: float,
                    periodic: tuple[float, float, float]) -> dict:
    """Advance the background one step; return what the disturbed part reads from it."""
    # CPU demand: a lognormal workload (regime shifts, slow and fast AR(1) with jumps) times the level
    if uniform(seed, t, D_SHIFT_U) < pr["cpu_shifts_per_day"] / steps_per_day:
        bg.shift = pr["cpu_shift_sigma"] * normal(seed, t, D_SHIFT_N)
    bg.slow = pr["cpu_slow_phi"] * bg.slow + pr["cpu_slow_sigma"] * normal(seed, t, D_SLOW_N)
    innovation = normal(seed, t, D_FAST_N)
    if uniform(seed, t, D_JUMP_U) < pr["cpu_jump_prob"]:
        innovation *= pr["cpu_jump_scale"]
    bg.fast = pr["cpu_fast_phi"] * bg.fast + pr["cpu_fast_sigma"] * innovation
    log_work = bg.shift + bg.slow + bg.fast
    work = math.exp(log_work)
    cpu = pr["cpu_level"] * work
    cron_on = periodic_on(clock, dt, 3600.0, cron_offset, 300.0) if has_cron else 0.0
    if cron_on > 0.0:  # the hourly cron: 5 minutes at its amplitude
        cpu += pr["cpu_cron_amplitude"] * cron_on * (0.6 + 0.8 * uniform(seed, t, D_CRON_U))
    on = periodic_on(clock, dt, *periodic) if pr["cpu_periodic_share"] > 0.0 else 0.0
    if on > 0.0:  # the periodic job, +-40 % a run
        cpu += pr["cpu_periodic_share"] * pr["cpu_level"] * on * (0.6 + 0.8 * extra_uniform(seed, t, E_PERIODIC_U))
    agent_p = pr["cpu_agent_spikes_per_day"] / steps_per_day
    daily_run = ((clock - agent_at) % 86400.0) < dt
    if uniform(seed, t, D_AGENT_U) < (min(agent_p * steps_per_day, 1.0) if daily_run else agent_p * AGENT_OFF_SCHEDULE):
        cpu += pr["cpu_agent_spike_pct"] * (0.7 + 0.6 * uniform(seed, t, D_AGENT_SIZE_U))
    # memory: AR(1) noise, occasional level steps that flush the page cache, the cache's growth and reclaim
    bg.mem_ar = pr["mem_phi"] * bg.mem_ar + pr["mem_sigma"] * normal(seed, t, D_MEM_N)
    bg.mem_cache += pr["mem_cache_creep_per_day"] / steps_per_day
    u = uniform(seed, t, D_MEM_STEP_U)
    if u < pr["mem_steps_per_day"] / steps_per_day:
        bg.mem_step = 0.5 * bg.mem_step + pr["mem_step_sigma"] * normal(seed, t, D_MEM_STEP_N)
        bg.mem_cache = 0.0
    elif bg.mem_cache >= pr["mem_cache_reclaim_at"] * (0.6 + 0.4 * u):  # the kernel reclaims the cache
        bg.mem_cache *= 0.1
    mem = pr["mem_level"] + bg.mem_step + bg.mem_cache + bg.mem_ar
    # disk: random growth, the daily log rotation, an operator's clean-up above 96 %
    bg.disk += pr["disk_growth_per_day"] / steps_per_day * 2.0 * uniform(seed, t, D_DISK_U)
    if ((clock - rotation_at) % 86400.0) < dt:
        bg.disk -= pr["disk_rotation_drop"] * pr["disk_growth_per_day"]
    if bg.disk > 96.0:
        bg.disk -= 25.0
    bg.disk = clip(bg.disk, 0.0, 100.0)
    # network: persistent noise coupled to the workload, plus heavy-tailed bulk transfers
    net_innovation = pr["net_sigma"] * math.sqrt(1.0 - NET_NOISE_PHI ** 2)
    bg.net_ar = NET_NOISE_PHI * bg.net_ar + net_innovation * normal(seed, t, D_NET_N)
    net_in = pr["net_level_mbps"] * math.exp(bg.net_ar + pr["net_cpu_coupling"] * log_work)
    net_out = pr["net_out_ratio"] * net_in * math.exp(0.15 * normal(seed, t, D_NET_OUT_N))
    burst_p = pr["net_bursts_per_day"] / steps_per_day
    burst_size = pr["net_burst_scale"] * pr["net_level_mbps"]
    bg.burst_in = BURST_DECAY * bg.burst_in + transfer(uniform(seed, t, D_BURST_IN_U), burst_p, burst_size)
    bg.burst_out = BURST_DECAY * bg.burst_out + transfer(uniform(seed, t, D_BURST_OUT_U), burst_p,
                                                         pr["net_out_ratio"] * burst_size)
    latency = pr["latency_base_ms"] * math.exp(pr["latency_sigma"] * normal(seed, t, D_LAT_N))
    # scheduler daemons: child processes come and go around the host's count, never below 2
    if uniform(seed, t, D_VEMKD_U) < pr["vemkd_steps_per_day"] / steps_per_day:
        bg.vemkd_offset += 1.0 if uniform(seed, t, D_VEMKD_DIR_U) < 0.5 - 0.2 * bg.vemkd_offset else -1.0
    bg.vemkd_offset = clip(bg.vemkd_offset, -1.0, 1.0)
    return {"work": work, "cpu": cpu, "mem": mem, "disk": bg.disk, "net_in": net_in + bg.burst_in,
            "net_out": net_out + bg.burst_out, "latency": latency,
            "vemkd": max(pr["vemkd_processes"] + bg.vemkd_offset, 2.0)}


def disturbed_step(s: Disturbed, ch: Channels, bg: dict, pr: dict, seed: int, t: int, dt: float, decay: float,
                   done_frac: float, job_lambda: float, length_scale: float, res, lower, upper) -> list[float]:
    """Advance one copy of the disturbed states; return its observed metrics in catalogue order."""
    def observed(name: str, x: float, resolution: float | None = None) -> float:
        m = METRICS.index(name)
        return quantize(clip(x, lower[m], upper[m]), res[m] if resolution is None else resolution)

    disk = observed("disk_usage", bg["disk"] + ch.disk)
    disk_full = disk >= 99.5
    # scheduler: Poisson arrivals follow the workload; completions stop in a GC storm; a full disk
    # fails half the running jobs and blocks dispatch; a dead daemon loses every running job
    arrivals = poisson(job_lambda * bg["work"] + ch.flood, uniform(seed, t, D_JOB_U), normal(seed, t, D_JOB_N))
    jobs_cpu = 0.0
    if ch.down:
        s.running, s.pending = 0.0, s.pending + arrivals
        s.job_height = s.job_cpu = s.job_ws = s.job_mem = s.job_age = 0.0
    else:
        jobs_cpu = step_jobs(s, ch, pr, seed, t, dt, done_frac, length_scale, arrivals, disk_full)
    # JVM: a sawtooth of young collections above a creeping floor, full collections when the floor
    # reaches the threshold; a restart starts small; a storm pins the heap and the GC time
    storm_u = uniform(seed, t, D_STORM_U)
    z_gc = normal(seed, t, D_GC_N)
    # allocation follows the workload with the step's own (uniform) variation, and so does the
    # application threads' CPU; promotion (the floor's creep) follows the allocation; the young space
    # is jittered per step
    spread = ALLOC_SIGMA_1S * math.sqrt(3.0) / math.sqrt(max(dt, 1.0))
    median_alloc = pr["heap_alloc_pct_per_s"] * dt
    alloc = median_alloc * bg["work"] * (1.0 + spread * (2.0 * uniform(seed, t, D_ALLOC_U) - 1.0))
    mutator_cpu = MUTATOR_CPU_PER_ALLOC * (alloc - median_alloc * bg["work"]) / dt
    if ch.restart > 0.5:
        s.heap, s.floor, gc = 4.0 + 6.0 * storm_u, pr["heap_floor"], 0.0
        gc = clip(gc * (1.0 + 0.1 * z_gc), 0.0, 1.0)
    else:
        s.floor += pr["heap_floor_creep_per_hour"] * dt / 3600.0 * alloc / max(median_alloc, 1e-12)
        n_full, young = 0.0, s.heap
        if s.floor >= pr["heap_full_gc_at"]:
            s.floor, n_full, young = pr["heap_floor"], 1.0, 0.0  # the old generation and the young space collected
        live = min(s.floor + ch.heap_floor, MAX_HEAP_FLOOR)
        space = max(pr["heap_young_threshold"] - live, 0.5) * (1.0 + YOUNG_JITTER * (2.0 * uniform(seed, t, D_YOUNG_U)
                                                                                      - 1.0))
        space = min(space, max(MAX_YOUNG_AT - live, 0.5))
        total = max(young - live, 0.0) + alloc
        n_young = math.floor(total / space)
        s.heap = live + (min(total - n_young * space, alloc) if n_young > 0 else total)
        if live > pr["heap_full_gc_at"]:
            n_full += n_young * (live - pr["heap_full_gc_at"]) / max(100.0 - pr["heap_full_gc_at"], 1.0)
        gc = (n_young * pr["gc_young_pause_ms"] + n_full * pr["gc_full_pause_ms"]) / (1000.0 * dt)
        n = n_young + n_full
        if ch.storm > 0.0:
            gc = max(gc, ch.storm * (0.92 + 0.16 * storm_u))
            s.heap = 95.0 + 4.9 * storm_u
        gc = min(gc, 1.0)
        if ch.storm > 0.0 or n <= 0.0:
            gc = clip(gc * (1.0 + 0.1 * z_gc), 0.0, 1.0)
        else:
            gc = clip(gc * (1.0 + PAUSE_SIGMA / math.sqrt(max(n, 1.0)) * z_gc), 0.0, 1.0)
    # network: offered load capped at the link's plateau; M/M/1 queueing delay, overflow beyond it
    link = pr["link_mbps"]
    offered = bg["net_in"] + ch.net * link
    rho = offered / link
    net_in = min(offered, link * (0.94 + 0.04 * uniform(seed, t, D_PLATEAU_U)))
    net_out = bg["net_out"] * (net_in / offered if offered > 0.0 else 1.0)
    rho_q = min(rho, 0.985)
    latency = bg["latency"] + pr["latency_queue_ms"] * rho_q / (1.0 - rho_q)
    if rho > 1.0:
        latency += pr["latency_queue_ms"] * 60.0 * (rho - 1.0)
    # CPU: background + jobs + the anomaly's demand + GC threads + packet processing (softirq)
    cpu = (bg["cpu"] + jobs_cpu + ch.cpu + gc * GC_CPU_PCT + mutator_cpu
           + SOFTIRQ_CPU_PCT * max(min(rho, 1.5) - 0.8, 0.0))
    runnable = pr["cores"] * max(cpu, 0.0) / 100.0
    if disk_full:
        runnable += pr["cores"] * IO_BLOCKED_PER_CORE
    s.load = s.load * decay + runnable * (1.0 - decay)
    return [
        observed("cpu_usage", cpu * bg["read_factor"], pr["cpu_resolution"]),
        observed("memory_usage", bg["mem"] + s.job_mem + ch.mem),
        disk,
        observed("load_average", s.load),
        observed("java_heap_usage", s.heap),
        observed("java_gc_time", 100.0 * gc),
        s.running,
        0.0 if ch.down else math.floor(bg["vemkd"] * (1.0 - ch.starting) + 0.5),
        observed("network_in_mbps", net_in),
        observed("network_out_mbps", net_out),
        observed("network_latency_ms", latency),
    ]


def step_jobs(s: Disturbed, ch: Channels, pr: dict, seed: int, t: int, dt: float, done_frac: float,
              length_scale: float, arrivals: float, disk_full: bool) -> float:
    """Completions (Weibull run times by the jobs' mean age), dispatch, each job's own height and
    working set with their ramps; updates s and returns the jobs' CPU % averaged over the step."""
    shape = pr["job_length_shape"]
    if shape != 1.0:
        done_frac = 1.0 - math.exp((s.job_age / length_scale) ** shape - ((s.job_age + dt) / length_scale) ** shape)
    mean_done = s.running * done_frac
    done = math.floor(mean_done + math.sqrt(max(mean_done * (1.0 - done_frac), 0.0)) * normal(seed, t, D_DONE_N)
                      + 0.5)
    done = clip(done, 0.0, s.running)
    if ch.storm > 0.0:
        done = 0.0
    if disk_full:
        done = s.running - math.floor(s.running * 0.5)
    cpu_avg, keep = 0.0, 1.0
    if done > 0.0:  # the jobs that end ran for a uniform share of the step
        keep = (s.running - done) / s.running
        cpu_avg += s.job_cpu * (1.0 - keep) * extra_uniform(seed, t, E_JOB_END_U)
    s.running -= done
    s.job_height, s.job_cpu, s.job_ws, s.job_mem = (s.job_height * keep, s.job_cpu * keep, s.job_ws * keep,
                                                    s.job_mem * keep)
    # the jobs still running approach their heights (CPU) and working sets (memory) exponentially
    ramp_s, mem_ramp_s = 60.0 * pr["job_ramp_minutes"], 60.0 * pr["job_mem_ramp_minutes"]
    ramp_decay = math.exp(-dt / ramp_s)
    cpu_avg += s.job_height + (s.job_cpu - s.job_height) * (ramp_s / dt * (1.0 - ramp_decay))
    s.job_cpu = s.job_height + (s.job_cpu - s.job_height) * ramp_decay
    s.job_mem = s.job_ws + (s.job_mem - s.job_ws) * math.exp(-dt / mem_ramp_s)
    s.job_age += dt
    queue = s.pending + arrivals
    dispatch = 0.0 if disk_full else min(queue, max(pr["job_slots"] - s.running, 0.0))
    if dispatch > 0.0:  # they start at a uniform instant of the step, each with its own height and working set
        late = extra_uniform(seed, t, E_JOB_START_U)
        ran = (1.0 - late) * dt

        def drawn(mean: float, sigma: float, slot: int) -> float:
            sd = sigma / math.sqrt(dispatch)
            return dispatch * mean * math.exp(sd * extra_normal(seed, t, slot) - 0.5 * sd * sd)

        height = drawn(pr["job_cpu"], pr["job_cpu_spread"], E_JOB_HEIGHT_N)
        ws = drawn(pr["job_mem"], pr["job_mem_spread"], E_JOB_WS_N)
        reached = 1.0 - math.exp(-ran / ramp_s)
        cpu_avg += height * ((1.0 - late) - ramp_s / dt * reached)
        s.job_cpu += height * reached
        s.job_height += height
        s.job_mem += ws * (1.0 - math.exp(-ran / mem_ramp_s))
        s.job_ws += ws
        s.job_age = (s.running * s.job_age + dispatch * ran) / (s.running + dispatch)
    s.running, s.pending = s.running + dispatch, queue - dispatch
    if s.running <= 0.0:
        s.job_age = 0.0
    return cpu_avg
