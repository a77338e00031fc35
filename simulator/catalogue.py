"""The fixed layouts the kernels index by position: metrics, perturbation channels, host parameters.

The YAML config describes each metric (unit, bounds, resolution) and gives each host parameter its
value range per profile, but the *set* and the *order* live here, because numba kernels address
them by integer index.  Adding a metric or a parameter means adding it here and in the kernel.
"""

from __future__ import annotations

# ----------------------------------------------------------------------------- metrics
# every metric: its unit (metrics.yaml must name the same) and the words an answer may use for it (the
# verifier of grounded answers), in the order the kernels index them
METRIC_TABLE: dict[str, tuple[str, tuple[str, ...]]] = {
    "cpu_usage": ("percent", ("cpu", "processor", "cpu_usage")),
    "memory_usage": ("percent", ("memory", "ram", "memory_usage")),
    "disk_usage": ("percent", ("disk", "filesystem", "file system", "disk_usage", "volume")),
    "load_average": ("tasks", ("load", "load average", "load_average", "run queue")),
    "java_heap_usage": ("percent", ("heap", "java_heap_usage", "old generation")),
    "java_gc_time": ("percent", ("gc", "garbage collection", "java_gc_time", "gc time")),
    "spectrum_active_jobs": ("jobs", ("jobs", "spectrum_active_jobs", "workload", "scheduler")),
    "vemkd_process_count": ("processes", ("vemkd", "vemkd_process_count", "ego", "daemon", "process count")),
    "network_in_mbps": ("Mbit/s", ("network", "inbound", "network_in_mbps", "traffic", "throughput")),
    "network_out_mbps": ("Mbit/s", ("network", "outbound", "network_out_mbps", "traffic", "throughput")),
    "network_latency_ms": ("ms", ("latency", "network_latency_ms", "round-trip", "rtt", "response time")),
}
METRIC_UNITS: dict[str, str] = {m: unit for m, (unit, _) in METRIC_TABLE.items()}
METRIC_WORDS: dict[str, tuple[str, ...]] = {m: words for m, (_, words) in METRIC_TABLE.items()}
METRICS: tuple[str, ...] = tuple(METRIC_TABLE)
_COUNT_UNITS = ("tasks", "jobs", "processes")
# what texts print after a metric's value: "%" for percentages, nothing for counts, else " <unit>"
UNIT_SUFFIX: dict[str, str] = {m: "%" if u == "percent" else "" if u in _COUNT_UNITS else f" {u}"
                               for m, u in METRIC_UNITS.items()}
N_METRICS = len(METRICS)
M = {name: i for i, name in enumerate(METRICS)}
M_CPU, M_MEM, M_DISK, M_LOAD, M_HEAP, M_GC, M_JOBS, M_VEMKD, M_NET_IN, M_NET_OUT, M_LAT = range(N_METRICS)

# ------------------------------------------------------------- perturbation channels
# What an anomaly does to a host, as per-step additive inputs to the host model.  Each anomaly kind
# writes a profile over its window into some of these; the kernel turns them into metric effects.
CHANNELS: tuple[str, ...] = (
    "cpu_demand",      # extra CPU demand, percent of the host's capacity
    "memory_add",      # extra resident memory, percent of RAM
    "disk_fill",       # extra disk used, percent of the volume (the kernel clips at 100)
    "net_offered",     # extra offered traffic, as a fraction of link capacity
    "heap_floor",      # old-generation floor raised, percent of max heap
    "gc_storm",        # 0..1: share of the interval the JVM spends in back-to-back full GCs
    "daemon_down",     # 1 while vemkd and its children are down; then the share of daemons still starting
    "job_flood",       # extra job arrivals per step
    "jvm_restart",     # 1 while the JVM restarts (heap reset, GC quiet)
)
N_CHANNELS = len(CHANNELS)
C = {name: i for i, name in enumerate(CHANNELS)}
(C_CPU, C_MEM, C_DISK, C_NET, C_HEAP_FLOOR, C_GC_STORM, C_DAEMON_DOWN, C_JOB_FLOOD,
 C_JVM_RESTART) = range(N_CHANNELS)

# ------------------------------------------------------------------ host parameters
# name: (lower bound, upper bound, meaning).  Every profile gives each a value or a [lo, hi] range
# (drawn per host); the bounds reject values the model cannot use.
HOST_PARAMETERS: dict[str, tuple[float, float, str]] = {
    "cores": (1, 512, "CPU cores; load average is in runnable tasks, CPU in percent of all cores"),
    "cpu_level": (0.001, 100, "median CPU percent of the background workload (drawn log-uniform)"),
    "cpu_fast_phi": (0, 0.999, "AR(1) coefficient of the fast, multiplicative CPU noise"),
    "cpu_fast_sigma": (0, 3, "innovation std of the fast CPU noise, in log units"),
    "cpu_slow_phi": (0, 0.99999, "mean reversion of the slow CPU level (per step)"),
    "cpu_slow_sigma": (0, 1, "innovation std of the slow CPU level, in log units"),
    "cpu_jump_prob": (0, 0.5, "chance per step that a fast innovation is a heavy-tailed jump"),
    "cpu_jump_scale": (1, 50, "size of a jump relative to an ordinary innovation"),
    "cpu_shifts_per_day": (0, 48, "rate of regime changes (level shifts) per day"),
    "cpu_shift_sigma": (0, 3, "std of a regime change, in log units"),
    "cpu_cron_prob": (0, 1, "chance that a host runs an hourly cron burst"),
    "cpu_cron_amplitude": (0, 100, "CPU percent an hourly cron burst adds while it runs (5 minutes: also its 5-minute average)"),
    "cpu_agent_spikes_per_day": (0, 288, "chance per day (up to 1) that an agent (backup, inventory, AV scan) runs at its daily time; 0.1x that rate off schedule"),
    "cpu_agent_spike_pct": (0, 100, "CPU percent an agent wake-up adds (5-minute average, +-30 %)"),
    "cpu_read_jitter": (0, 0.2, "std of the instants at which the collector reads the CPU time counters, as a share of the reporting interval (an interval average is the counter difference over the nominal interval: each read's jitter moves work between neighbouring intervals)"),
    "cpu_resolution": (0.0001, 10, "resolution of reported CPU percent (repeated values are real)"),
    "mem_level": (0, 100, "median memory percent without jobs"),
    "mem_phi": (0, 0.99999, "AR(1) coefficient of memory around its level"),
    "mem_sigma": (0, 20, "innovation std of memory, percent"),
    "mem_steps_per_day": (0, 48, "rate of deploy/restart steps in memory per day"),
    "mem_step_sigma": (0, 50, "std of a memory step, percent"),
    "mem_cache_creep_per_day": (0, 50, "page-cache growth, percent per day (reclaimed near mem_cache_reclaim_at, flushed by a step)"),
    "mem_cache_reclaim_at": (0.01, 50, "page cache, percent above the level, at which the kernel reclaims it (drops back to a tenth); reclaim comes at a random point between 60 and 100 % of it"),
    "disk_level": (0, 99, "disk percent used at the start"),
    "disk_growth_per_day": (0, 20, "disk growth, percent per day"),
    "disk_rotation_drop": (0, 1, "share of the day's growth freed by the daily log rotation"),
    "link_mbps": (1, 400000, "network link capacity, Mbit/s"),
    "net_level_mbps": (0, 400000, "median inbound traffic, Mbit/s"),
    "net_sigma": (0, 3, "std of traffic noise, log units"),
    "net_cpu_coupling": (0, 1, "how strongly traffic follows the CPU workload"),
    "net_out_ratio": (0, 100, "outbound over inbound traffic"),
    "net_bursts_per_day": (0, 288, "rate of bulk transfers (copies, shuffles, backups) per day, each way"),
    "net_burst_scale": (0, 1000, "typical size of a transfer burst, in multiples of the median traffic"),
    "latency_base_ms": (0.001, 10000, "round-trip latency at an idle link, ms"),
    "latency_sigma": (0, 3, "std of latency noise, log units"),
    "latency_queue_ms": (0, 10000, "queueing delay scale k in k*rho/(1-rho), ms"),
    "heap_alloc_pct_per_s": (0, 1000, "heap allocation rate at the median workload, percent of max heap per second"),
    "heap_young_threshold": (1, 100, "heap percent at which a young collection runs"),
    "heap_floor": (0, 99, "old-generation floor after a collection, percent of max heap"),
    "heap_floor_creep_per_hour": (0, 50, "promotion: old-generation growth per hour at the median allocation, percent"),
    "heap_full_gc_at": (1, 100, "old-generation percent that triggers a full collection"),
    "gc_young_pause_ms": (0, 10000, "pause of a young collection, ms"),
    "gc_full_pause_ms": (0, 100000, "pause of a full collection, ms"),
    "job_rate_per_hour": (0, 100000, "scheduler job arrivals per hour at the median workload"),
    "job_minutes": (0.01, 100000, "mean job run time, minutes"),
    "job_slots": (0, 100000, "job slots on the host (running jobs are capped here)"),
    "job_cpu": (0, 100, "CPU percent one running job adds"),
    "job_mem": (0, 100, "memory percent one running job adds"),
    "vemkd_processes": (0, 1000, "usual count of vemkd and its child processes"),
    "vemkd_steps_per_day": (0, 48, "rate of +-1 changes of the process count per day"),
    "job_cpu_spread": (0, 2, "std of a job's CPU height around job_cpu, log units (drawn per job)"),
    "job_ramp_minutes": (0.01, 600, "time constant of a job's CPU ramp after its start, minutes"),
    "job_length_shape": (0.2, 20, "Weibull shape of job run times (1: exponential; larger: more regular lengths around job_minutes)"),
    "job_mem_spread": (0, 2, "std of a job's working set around job_mem, log units (drawn per job, apart from its CPU height)"),
    "job_mem_ramp_minutes": (0.01, 600, "time constant of a job's working set loading after its start, minutes"),
    "cpu_periodic_share": (0, 10, "CPU a host's periodic job (cron every 10-60 minutes: health checks, log shipping, incremental backups) adds while it runs, relative to the host's CPU level (+-40 % a run)"),
    "cpu_periodic_seconds": (1, 3600, "how long one run of the periodic job lasts, seconds"),
}
HOST_PARAMETER_NAMES: tuple[str, ...] = tuple(HOST_PARAMETERS)
P = {name: i for i, name in enumerate(HOST_PARAMETER_NAMES)}
N_PARAMS = len(HOST_PARAMETER_NAMES)
# parameters added after the population's first layout: each drawn from its own column of draws after all
# the others (whatever its place in HOST_PARAMETERS), so that adding one leaves every host's earlier draws
# (and so its CPU, network, ... behaviour for a seed) as they were
DRAWN_LATER: tuple[str, ...] = ("mem_cache_reclaim_at", "job_cpu_spread", "job_ramp_minutes", "job_length_shape",
                                 "job_mem_spread", "job_mem_ramp_minutes", "cpu_periodic_share",
                                 "cpu_periodic_seconds")
# parameters drawn log-uniformly within their range (scale parameters spanning decades)
LOG_UNIFORM = frozenset({"cpu_level", "net_level_mbps", "link_mbps", "job_rate_per_hour"})
# parameters rounded to whole numbers after drawing
INTEGER_PARAMS = frozenset({"cores", "job_slots", "vemkd_processes"})
