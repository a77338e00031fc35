"""The host model: numba kernels only, arrays in and arrays out.

Per host and step, the *background* (workload regime, noise, disk growth, traffic, daemon count) is
computed once; the few states an anomaly can disturb (job queue, JVM heap, load average) are run
twice, without and with the host's perturbation channels.  Observed metrics come from both, and a
metric point is labelled where the two differ, so labels are exact by construction.  Outside
anomaly windows the disturbed copy is re-synchronised to the undisturbed one (the incident is over).

Metric semantics (see DESIGN.md): CPU, GC time and network are interval averages; memory, disk,
heap, jobs and process counts are gauges at the sampling instant; load average is Linux's damped
average of runnable tasks.
"""

from __future__ import annotations

import numpy as np

from ._numba import jit, jit_parallel, prange
from ._rng import host_uniform, normal, uniform
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
# per-host draw slots
H_CRON, H_CRON_MINUTE, H_ROTATION_HOUR, H_SHIFT0, H_SLOW0, H_AGENT_AT = 0, 1, 2, 3, 5, 7
# the state a host carries from one time chunk to the next (the undisturbed copy: no event spans
# a chunk boundary in a sharded job, so the disturbed copy starts each chunk equal to it)
(S_SHIFT, S_SLOW, S_FAST, S_MEM_AR, S_MEM_STEP, S_MEM_CACHE, S_DISK, S_NET_AR, S_BURST_IN, S_BURST_OUT,
 S_VEMKD, S_RUNNING, S_PENDING, S_HEAP, S_FLOOR, S_LOAD) = range(16)
N_STATE = 16

MAX_HEAP_FLOOR = 97.0
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


@jit
def step_jobs(running, pending, arrivals, slots, done_frac, done_z, disk_full, stalled, daemon_down):
    """One step of the scheduler queue on a host; returns (running, pending)."""
    if daemon_down:
        # vemkd gone: running jobs are lost, new submissions wait at the master
        return 0.0, pending + arrivals
    mean_done = running * done_frac
    done = np.floor(mean_done + np.sqrt(max(mean_done * (1.0 - done_frac), 0.0)) * done_z + 0.5)
    done = clip(done, 0.0, running)
    if stalled:
        done = 0.0
    if disk_full:
        done = running - np.floor(running * 0.5)  # jobs fail on write errors
    running -= done
    queue = pending + arrivals
    dispatch = min(queue, max(slots - running, 0.0))
    if disk_full:
        dispatch = 0.0
    return running + dispatch, queue - dispatch


@jit
def step_heap(heap, floor, alloc, young_at, full_at, floor_base, creep, floor_add, restart,
              storm, young_ms, full_ms, dt, storm_u):
    """One step of the JVM heap sawtooth; returns (heap %, floor, GC share of the interval)."""
    if restart > 0.5:
        # a fresh JVM after an OOM kill: small heap, nothing collected yet
        return 4.0 + 6.0 * storm_u, floor_base, 0.0
    floor = floor + creep
    n_full = 0.0
    if floor >= full_at:
        floor = floor_base
        n_full = 1.0
    eff_floor = min(floor + floor_add, MAX_HEAP_FLOOR)
    space = max(young_at - eff_floor, 0.5)
    total = max(heap - eff_floor, 0.0) + alloc
    n_young = np.floor(total / space)
    heap = eff_floor + (total - n_young * space)
    if eff_floor > full_at:
        # live data above the full-GC threshold: full collections that reclaim little
        n_full += n_young * (eff_floor - full_at) / max(100.0 - full_at, 1.0)
    gc_share = (n_young * young_ms + n_full * full_ms) / (1000.0 * dt)
    if storm > 0.0:
        gc_share = max(gc_share, storm * (0.92 + 0.16 * storm_u))
        heap = 95.0 + 4.9 * storm_u
    return heap, floor, min(gc_share, 1.0)


@jit
def simulate_host(h, seed, params, t0, n_steps, dt, start_epoch, chan, covered,
                  res, lower, upper, out, base, want_base, sums, delta, state_in, resume, state_out):
    """Fill out[:, h, :] (with anomalies) and base[:, h, :] (without) for one host.

    With `resume`, the host continues from `state_in` (the state after step t0 - 1 of an earlier
    chunk) instead of its start state; its state after the last step goes to `state_out`.
    """
    pr = params
    cores = pr[P_CORES]
    decay = np.exp(-dt / 60.0)
    steps_per_day = 86400.0 / dt
    # background state
    has_cron = host_uniform(seed, H_CRON) < pr[P_CRON_PROB]
    cron_offset = np.floor(host_uniform(seed, H_CRON_MINUTE) * 12.0) * 300.0
    rotation_at = np.floor(host_uniform(seed, H_ROTATION_HOUR) * 24.0) * 3600.0
    agent_at = np.floor(host_uniform(seed, H_AGENT_AT) * 86400.0 / dt) * dt  # the agent's daily run
    u_a = host_uniform(seed, H_SHIFT0)
    u_b = host_uniform(seed, H_SHIFT0 + 1)
    shift = pr[P_CPU_SHIFT_SIGMA] * np.sqrt(-2.0 * np.log(u_a)) * np.cos(2.0 * np.pi * u_b)
    slow_sd = pr[P_CPU_SLOW_SIGMA] / np.sqrt(max(1.0 - pr[P_CPU_SLOW_PHI] ** 2, 1e-6))
    u_a = host_uniform(seed, H_SLOW0)
    u_b = host_uniform(seed, H_SLOW0 + 1)
    slow = slow_sd * np.sqrt(-2.0 * np.log(u_a)) * np.cos(2.0 * np.pi * u_b)
    fast = 0.0
    mem_ar = 0.0
    mem_step = 0.0
    mem_cache = 0.0
    disk = pr[P_DISK_LEVEL]
    net_ar = 0.0
    net_innovation = pr[P_NET_SIGMA] * np.sqrt(1.0 - NET_NOISE_PHI ** 2)
    burst_in = 0.0
    burst_out = 0.0
    agent_p = pr[P_AGENT_RATE] / steps_per_day
    burst_p = pr[P_NET_BURSTS] / steps_per_day
    burst_size = pr[P_NET_BURST_SCALE] * pr[P_NET_LEVEL]
    vemkd_offset = 0.0
    shift_p = pr[P_CPU_SHIFTS] / steps_per_day
    mem_step_p = pr[P_MEM_STEPS] / steps_per_day
    vemkd_p = pr[P_VEMKD_STEPS] / steps_per_day
    creep_mem = pr[P_MEM_CREEP] / steps_per_day
    growth = pr[P_DISK_GROWTH] / steps_per_day
    heap_creep = pr[P_HEAP_CREEP] * dt / 3600.0
    done_frac = 1.0 - np.exp(-dt / (60.0 * pr[P_JOB_MIN]))
    job_lambda = pr[P_JOB_RATE] * dt / 3600.0
    slots = pr[P_JOB_SLOTS]
    link = pr[P_LINK]
    # disturbed states: index 0 = without anomalies, 1 = with
    running = np.zeros(2)
    pending = np.zeros(2)
    heap = np.full(2, pr[P_HEAP_FLOOR])
    floor = np.full(2, pr[P_HEAP_FLOOR])
    load = np.full(2, cores * pr[P_CPU_LEVEL] / 100.0)
    # equilibrium start for the job queue
    running[:] = min(np.floor(job_lambda / max(done_frac, 1e-9)), slots)
    if resume:
        shift, slow, fast = state_in[S_SHIFT], state_in[S_SLOW], state_in[S_FAST]
        mem_ar, mem_step, mem_cache = state_in[S_MEM_AR], state_in[S_MEM_STEP], state_in[S_MEM_CACHE]
        disk, net_ar, vemkd_offset = state_in[S_DISK], state_in[S_NET_AR], state_in[S_VEMKD]
        burst_in, burst_out = state_in[S_BURST_IN], state_in[S_BURST_OUT]
        running[:] = state_in[S_RUNNING]
        pending[:] = state_in[S_PENDING]
        heap[:] = state_in[S_HEAP]
        floor[:] = state_in[S_FLOOR]
        load[:] = state_in[S_LOAD]
    vals = np.zeros((2, N_METRICS))
    # the collector reads the CPU time counters at jittered instants and divides by the nominal
    # interval: the reported average is scaled by 1 + (jitter now - jitter at the previous read),
    # an MA(1) with lag-1 autocorrelation -0.5 (a pure function of t, so chunks need no state).
    # The jitter is uniform with std cpu_read_jitter (one hash a step, no log or cosine).
    read_scale = pr[P_CPU_JITTER] * np.sqrt(12.0)
    read_prev = read_scale * (uniform(seed, t0 - 1, D_READ_U) - 0.5) if t0 > 0 else 0.0
    for i in range(n_steps):
        t = t0 + i
        clock = start_epoch + t * dt
        # ---------------------------------------------------------------- background
        if uniform(seed, t, D_SHIFT_U) < shift_p:
            shift = pr[P_CPU_SHIFT_SIGMA] * normal(seed, t, D_SHIFT_N)
        slow = pr[P_CPU_SLOW_PHI] * slow + pr[P_CPU_SLOW_SIGMA] * normal(seed, t, D_SLOW_N)
        innovation = normal(seed, t, D_FAST_N)
        if uniform(seed, t, D_JUMP_U) < pr[P_CPU_JUMP_PROB]:
            innovation *= pr[P_CPU_JUMP_SCALE]
        fast = pr[P_CPU_FAST_PHI] * fast + pr[P_CPU_FAST_SIGMA] * innovation
        log_work = shift + slow + fast
        work = np.exp(log_work)  # workload relative to the host's median
        cpu_bg = pr[P_CPU_LEVEL] * work
        if has_cron and ((clock - cron_offset) % 3600.0) < dt:
            cpu_bg += pr[P_CRON_AMP] * (0.6 + 0.8 * uniform(seed, t, D_CRON_U))
        # agents (backup, inventory, AV scan) wake at their daily time, and now and then in between
        u_agent = uniform(seed, t, D_AGENT_U)
        daily_run = ((clock - agent_at) % 86400.0) < dt
        if u_agent < (min(agent_p * steps_per_day, 1.0) if daily_run else agent_p * AGENT_OFF_SCHEDULE):
            cpu_bg += pr[P_AGENT_PCT] * (0.7 + 0.6 * uniform(seed, t, D_AGENT_SIZE_U))
        mem_ar = pr[P_MEM_PHI] * mem_ar + pr[P_MEM_SIGMA] * normal(seed, t, D_MEM_N)
        if uniform(seed, t, D_MEM_STEP_U) < mem_step_p:
            mem_step = 0.5 * mem_step + pr[P_MEM_STEP_SIGMA] * normal(seed, t, D_MEM_STEP_N)
            mem_cache = 0.0
        mem_cache += creep_mem
        mem_bg = pr[P_MEM_LEVEL] + mem_step + mem_cache + mem_ar
        disk += growth * 2.0 * uniform(seed, t, D_DISK_U)
        if ((clock - rotation_at) % 86400.0) < dt:
            disk -= pr[P_DISK_ROT] * pr[P_DISK_GROWTH]
        if disk > 96.0:
            disk -= 25.0  # housekeeping by an operator
        disk = clip(disk, 0.0, 100.0)
        net_ar = NET_NOISE_PHI * net_ar + net_innovation * normal(seed, t, D_NET_N)
        net_in_bg = pr[P_NET_LEVEL] * np.exp(net_ar + pr[P_NET_COUPLING] * log_work)
        net_out_bg = pr[P_NET_OUT] * net_in_bg * np.exp(0.15 * normal(seed, t, D_NET_OUT_N))
        burst_in = BURST_DECAY * burst_in + transfer_burst(uniform(seed, t, D_BURST_IN_U), burst_p, burst_size)
        burst_out = (BURST_DECAY * burst_out
                     + transfer_burst(uniform(seed, t, D_BURST_OUT_U), burst_p, pr[P_NET_OUT] * burst_size))
        net_in_bg += burst_in
        net_out_bg += burst_out
        lat_bg = pr[P_LAT_BASE] * np.exp(pr[P_LAT_SIGMA] * normal(seed, t, D_LAT_N))
        if uniform(seed, t, D_VEMKD_U) < vemkd_p:
            if uniform(seed, t, D_VEMKD_DIR_U) < 0.5 - 0.2 * vemkd_offset:
                vemkd_offset += 1.0
            else:
                vemkd_offset -= 1.0
        # child processes (pem, pim, ELIMs) come and go; vemkd and lim stay, so the count never
        # wanders near 0 on its own: a crash (0) is always visible against it
        vemkd_offset = clip(vemkd_offset, -1.0, 1.0)
        vemkd_bg = max(pr[P_VEMKD] + vemkd_offset, 2.0)
        u_jobs = uniform(seed, t, D_JOB_U)
        z_jobs = normal(seed, t, D_JOB_N)
        z_done = normal(seed, t, D_DONE_N)
        z_gc = normal(seed, t, D_GC_N)
        u_storm = uniform(seed, t, D_STORM_U)
        u_plateau = uniform(seed, t, D_PLATEAU_U)
        alloc = pr[P_HEAP_ALLOC] * dt * work
        read_now = read_scale * (uniform(seed, t, D_READ_U) - 0.5)
        read_factor = max(1.0 + read_now - read_prev, 0.0)
        read_prev = read_now
        # ------------------------------------------------------- disturbed, twice
        n_copies = 2 if covered[i] else 1
        for c in range(n_copies):
            ch_cpu = chan[i, C_CPU] if c == 1 else 0.0
            ch_mem = chan[i, C_MEM] if c == 1 else 0.0
            ch_disk = chan[i, C_DISK] if c == 1 else 0.0
            ch_net = chan[i, C_NET] if c == 1 else 0.0
            ch_floor = chan[i, C_HEAP_FLOOR] if c == 1 else 0.0
            ch_storm = chan[i, C_GC_STORM] if c == 1 else 0.0
            ch_down = chan[i, C_DAEMON_DOWN] > 0.5 if c == 1 else False
            ch_flood = chan[i, C_JOB_FLOOD] if c == 1 else 0.0
            ch_restart = chan[i, C_JVM_RESTART] if c == 1 else 0.0
            disk_v = quantize(clip(disk + ch_disk, lower[M_DISK], upper[M_DISK]), res[M_DISK])
            disk_full = disk_v >= 99.5
            arrivals = poisson_from_uniform(job_lambda * work + ch_flood, u_jobs, z_jobs)
            running[c], pending[c] = step_jobs(running[c], pending[c], arrivals, slots, done_frac,
                                               z_done, disk_full, ch_storm > 0.0, ch_down)
            heap[c], floor[c], gc_share = step_heap(
                heap[c], floor[c], alloc, pr[P_HEAP_YOUNG], pr[P_HEAP_FULL], pr[P_HEAP_FLOOR],
                heap_creep, ch_floor, ch_restart, ch_storm, pr[P_GC_YOUNG_MS], pr[P_GC_FULL_MS],
                dt, u_storm)
            gc_share = clip(gc_share * (1.0 + 0.1 * z_gc), 0.0, 1.0)
            offered = net_in_bg + ch_net * link
            rho = offered / link
            capacity = link * (0.94 + 0.04 * u_plateau)
            net_in = min(offered, capacity)
            net_out = net_out_bg * (net_in / offered if offered > 0.0 else 1.0)
            rho_q = min(rho, 0.985)
            latency = lat_bg + pr[P_LAT_QUEUE] * rho_q / (1.0 - rho_q)
            if rho > 1.0:
                latency += pr[P_LAT_QUEUE] * 60.0 * (rho - 1.0)  # overflowing buffers
            cpu = (cpu_bg + running[c] * pr[P_JOB_CPU] + ch_cpu + gc_share * GC_CPU_PCT
                   + SOFTIRQ_CPU_PCT * max(min(rho, 1.5) - 0.8, 0.0))
            runnable = cores * max(cpu, 0.0) / 100.0  # demand beyond capacity waits in the run queue
            cpu = clip(cpu * read_factor, lower[M_CPU], upper[M_CPU])
            if disk_full:
                runnable += cores * IO_BLOCKED_PER_CORE
            load[c] = damped_load(load[c], runnable, decay)
            v = vals[c]
            v[M_CPU] = quantize(cpu, pr[P_CPU_RES])
            v[M_MEM] = quantize(clip(mem_bg + running[c] * pr[P_JOB_MEM] + ch_mem, lower[M_MEM],
                                     upper[M_MEM]), res[M_MEM])
            v[M_DISK] = disk_v
            v[M_LOAD] = quantize(clip(load[c], lower[M_LOAD], upper[M_LOAD]), res[M_LOAD])
            v[M_HEAP] = quantize(clip(heap[c], lower[M_HEAP], upper[M_HEAP]), res[M_HEAP])
            v[M_GC] = quantize(clip(100.0 * gc_share, lower[M_GC], upper[M_GC]), res[M_GC])
            v[M_JOBS] = running[c]
            v[M_VEMKD] = 0.0 if ch_down else vemkd_bg
            v[M_NET_IN] = quantize(clip(net_in, lower[M_NET_IN], upper[M_NET_IN]), res[M_NET_IN])
            v[M_NET_OUT] = quantize(clip(net_out, lower[M_NET_OUT], upper[M_NET_OUT]), res[M_NET_OUT])
            v[M_LAT] = quantize(clip(latency, lower[M_LAT], upper[M_LAT]), res[M_LAT])
        if not covered[i]:
            # no incident in progress: the disturbed copy follows the undisturbed one again
            running[1] = running[0]
            pending[1] = pending[0]
            heap[1] = heap[0]
            floor[1] = floor[0]
            load[1] = load[0]
        src = 1 if covered[i] else 0
        for m in range(N_METRICS):
            x = vals[0, m]
            out[m, h, i] = vals[src, m]
            sums[m, 0] += x
            sums[m, 1] += x * x
            if want_base:
                base[m, h, i] = x
            if covered[i]:
                delta[m, i] = np.float64(np.float32(vals[1, m])) - np.float64(np.float32(x))
    state_out[S_SHIFT], state_out[S_SLOW], state_out[S_FAST] = shift, slow, fast
    state_out[S_MEM_AR], state_out[S_MEM_STEP], state_out[S_MEM_CACHE] = mem_ar, mem_step, mem_cache
    state_out[S_DISK], state_out[S_NET_AR], state_out[S_VEMKD] = disk, net_ar, vemkd_offset
    state_out[S_BURST_IN], state_out[S_BURST_OUT] = burst_in, burst_out
    state_out[S_RUNNING], state_out[S_PENDING] = running[0], pending[0]
    state_out[S_HEAP], state_out[S_FLOOR], state_out[S_LOAD] = heap[0], floor[0], load[0]


@jit_parallel
def simulate_hosts(seeds, params, t0, n_steps, dt, start_epoch, res, lower, upper,
                   ev_ptr, ev_start, ev_len, ev_row, ev_id, ev_mask, ev_primary, profiles,
                   state_in, resume, out, base, labels, host_std, ev_peak, ev_peak_metric, ev_first, ev_last,
                   state_out):
    """Simulate hosts in parallel; each thread writes only its own hosts' slabs.

    state_in / state_out: float64[H, N_STATE], each host's state before t0 (read with `resume`)
    and after its last step, so that a trace can be computed in consecutive time chunks.
    """
    n_hosts = seeds.shape[0]
    want_base = base.shape[1] == n_hosts
    for h in prange(n_hosts):
        chan = np.zeros((n_steps, N_CHANNELS))
        covered = np.zeros(n_steps, dtype=np.bool_)
        latest = np.full(n_steps, -1, dtype=np.int64)
        for e in range(ev_ptr[h], ev_ptr[h + 1]):
            s = ev_start[e] - t0
            for j in range(ev_len[e]):
                i = s + j
                if 0 <= i < n_steps:
                    for c in range(N_CHANNELS):
                        chan[i, c] += profiles[ev_row[e] + j, c]
                    covered[i] = True
                    latest[i] = e
        sums = np.zeros((N_METRICS, 2))
        delta = np.zeros((N_METRICS, n_steps))
        simulate_host(np.int64(h), seeds[h], params[h], t0, n_steps, dt, start_epoch, chan, covered,
                      res, lower, upper, out, base, want_base, sums, delta, state_in[h], resume, state_out[h])
        for m in range(N_METRICS):
            mean = sums[m, 0] / n_steps
            host_std[m, h] = np.sqrt(max(sums[m, 1] / n_steps - mean * mean, 0.0))
            for i in range(n_steps):
                labels[m, h, i] = -1
        # attribute differing points: to the latest-started event that declares the metric,
        # else to the latest-started event covering the step
        for e in range(ev_ptr[h], ev_ptr[h + 1]):
            s = ev_start[e] - t0
            for j in range(ev_len[e]):
                i = s + j
                if 0 <= i < n_steps:
                    for m in range(N_METRICS):
                        if delta[m, i] != 0.0 and (ev_mask[e] >> m) & 1:
                            labels[m, h, i] = ev_id[e]
        for i in range(n_steps):
            if covered[i]:
                for m in range(N_METRICS):
                    if delta[m, i] != 0.0 and labels[m, h, i] < 0:
                        labels[m, h, i] = ev_id[latest[i]]
        # per event: labelled extent, and its largest deviation in host sigmas over the metrics it moved
        for e in range(ev_ptr[h], ev_ptr[h + 1]):
            s = ev_start[e] - t0
            first = -1
            last = -1
            peak = 0.0
            peak_metric = ev_primary[e]
            for j in range(ev_len[e]):
                i = s + j
                if 0 <= i < n_steps:
                    for m in range(N_METRICS):
                        if labels[m, h, i] == ev_id[e]:
                            if first < 0:
                                first = t0 + i
                            last = t0 + i
                            sd = host_std[m, h]
                            dev = abs(delta[m, i]) / sd if sd > 0.0 else np.inf
                            # the primary metric wins ties, then the first metric in catalogue order
                            if dev > peak or (dev == peak and m == ev_primary[e]):
                                peak = dev
                                peak_metric = m
            ev_peak[e] = peak
            ev_peak_metric[e] = peak_metric
            ev_first[e] = first
            ev_last[e] = last
