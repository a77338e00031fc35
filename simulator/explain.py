"""Write each sample's explanation from its realized values, as Polars column expressions.

An explanation states what the numbers say: the level of the metrics that moved, how far from the
same host's normal (the trace without the anomaly at the same instant), for how long and how fast.
Several phrasings per kind are picked by a per-sample variant so the text is not one fixed line.
"""

from __future__ import annotations

import polars as pl

N_VARIANTS = 3


def _v(name: str, digits: int = 1) -> pl.Expr:
    """A metric value as text with `digits` decimals."""
    return pl.col(name).cast(pl.Float64).round(digits).cast(pl.Utf8)


def _minutes(name: str) -> pl.Expr:
    """Minutes as '25 minutes' or '3.5 hours'."""
    x = pl.col(name)
    return (pl.when(x < 90).then(pl.format("{} minutes", x.round(0).cast(pl.Int64)))
            .otherwise(pl.format("{} hours", (x / 60).round(1).cast(pl.Utf8))))


def _pick(*variants: pl.Expr) -> pl.Expr:
    expr = pl.when(pl.col("variant") == 0).then(variants[0])
    for i, v in enumerate(variants[1:], start=1):
        expr = expr.when(pl.col("variant") == i).then(v)
    return expr.otherwise(variants[0])


def _rise(name: str) -> pl.Expr:
    return (pl.col(name).cast(pl.Float64) - pl.col(f"base_{name}").cast(pl.Float64)).round(1).cast(pl.Utf8)


def _per_hour(name: str) -> pl.Expr:
    rate = ((pl.col(name).cast(pl.Float64) - pl.col(f"base_{name}").cast(pl.Float64))
            / (pl.col("elapsed_min").clip(lower_bound=1) / 60.0))
    return rate.round(1).cast(pl.Utf8)


KIND_TEXT: dict[str, pl.Expr] = {
    "cpu_spike": _pick(
        pl.format("CPU jumped to {}% on this {}-core {} host, against about {}% normally; "
                  "load average {} follows. The burst is {} old.",
                  _v("cpu_usage"), "cores", "profile", _v("base_cpu_usage"), _v("load_average", 2),
                  _minutes("elapsed_min")),
        pl.format("A short CPU spike: {}% busy where this host usually runs near {}%, {} into the "
                  "spike, with the 1-minute load at {} on {} cores.",
                  _v("cpu_usage"), _v("base_cpu_usage"), _minutes("elapsed_min"),
                  _v("load_average", 2), "cores"),
        pl.format("CPU is {} points above its usual {}% (now {}%), a burst that started {} ago; "
                  "memory {}% and the network are unchanged.",
                  _rise("cpu_usage"), _v("base_cpu_usage"), _v("cpu_usage"), _minutes("elapsed_min"),
                  _v("memory_usage")),
    ),
    "runaway_process": _pick(
        pl.format("CPU has sat at {}% for {} on this {} host, up from about {}%: a process is pinning "
                  "cores. Load average is {} on {} cores.",
                  _v("cpu_usage"), _minutes("elapsed_min"), "profile", _v("base_cpu_usage"),
                  _v("load_average", 2), "cores"),
        pl.format("A level shift in CPU: {} points more than normal ({}% instead of {}%) for {} "
                  "already, with no change in jobs ({} running) or traffic.",
                  _rise("cpu_usage"), _v("cpu_usage"), _v("base_cpu_usage"), _minutes("elapsed_min"),
                  "spectrum_active_jobs"),
        pl.format("Load average {} against a usual {}, driven by CPU at {}% for {}: something is "
                  "spinning, not a burst of work.",
                  _v("load_average", 2), _v("base_load_average", 2), _v("cpu_usage"),
                  _minutes("elapsed_min")),
    ),
    "memory_leak": _pick(
        pl.format("Memory has climbed to {}% ({} points above normal, about {} points per hour over {}); "
                  "the JVM heap is at {}% and GC takes {}% of the time.",
                  _v("memory_usage"), _rise("memory_usage"), _per_hour("memory_usage"),
                  _minutes("elapsed_min"), _v("java_heap_usage"), _v("java_gc_time", 2)),
        pl.format("A slow leak: memory {}% where this host normally holds {}%, rising for {}. "
                  "Garbage collection is working harder ({}% of time, usually {}%).",
                  _v("memory_usage"), _v("base_memory_usage"), _minutes("elapsed_min"),
                  _v("java_gc_time", 2), _v("base_java_gc_time", 2)),
        pl.format("Heap at {}% with GC time {}% and memory up to {}% after {} of steady growth "
                  "(+{} points per hour): the pattern of a leak that may end in an OOM kill.",
                  _v("java_heap_usage"), _v("java_gc_time", 2), _v("memory_usage"),
                  _minutes("elapsed_min"), _per_hour("memory_usage")),
    ),
    "disk_full": _pick(
        pl.format("The data volume is at {}% (normally {}%), filling for {}; {} jobs still running "
                  "and load average {} as writes block.",
                  _v("disk_usage", 2), _v("base_disk_usage", 2), _minutes("elapsed_min"),
                  "spectrum_active_jobs", _v("load_average", 2)),
        pl.format("Disk usage {}%, {} points above its usual level after {}; once it reaches 100% "
                  "jobs fail on write errors.",
                  _v("disk_usage", 2), _rise("disk_usage"), _minutes("elapsed_min")),
        pl.format("Disk filling fast: {}% used, growing about {} points per hour; load {} against "
                  "a usual {}.",
                  _v("disk_usage", 2), _per_hour("disk_usage"), _v("load_average", 2),
                  _v("base_load_average", 2)),
    ),
    "network_congestion": _pick(
        pl.format("Inbound traffic is flat at {} Mbit/s while latency reached {} ms (normally {} ms): "
                  "the link is saturated, for {} so far.",
                  _v("network_in_mbps"), _v("network_latency_ms", 2), _v("base_network_latency_ms", 2),
                  _minutes("elapsed_min")),
        pl.format("Network congestion: round-trip time {} ms against a usual {} ms, throughput capped "
                  "at {} Mbit/s in and {} out.",
                  _v("network_latency_ms", 2), _v("base_network_latency_ms", 2), _v("network_in_mbps"),
                  _v("network_out_mbps")),
        pl.format("Latency {} ms and inbound {} Mbit/s (usually {}): queues on the link are full, "
                  "{} into the episode.",
                  _v("network_latency_ms", 2), _v("network_in_mbps"), _v("base_network_in_mbps"),
                  _minutes("elapsed_min")),
    ),
    "jvm_gc_storm": _pick(
        pl.format("The JVM spends {}% of its time in GC with the heap at {}%; CPU is {}% (usually {}%) "
                  "and {} jobs are stalled.",
                  _v("java_gc_time"), _v("java_heap_usage"), _v("cpu_usage"), _v("base_cpu_usage"),
                  "spectrum_active_jobs"),
        pl.format("GC storm for {}: heap pinned at {}%, GC time {}% against a normal {}%.",
                  _minutes("elapsed_min"), _v("java_heap_usage"), _v("java_gc_time"),
                  _v("base_java_gc_time", 2)),
        pl.format("Back-to-back full collections: GC {}% of the time, heap {}%, CPU up to {}% and "
                  "load {}.",
                  _v("java_gc_time"), _v("java_heap_usage"), _v("cpu_usage"), _v("load_average", 2)),
    ),
    "daemon_crash": _pick(
        pl.format("vemkd processes: {} (normally {}); active jobs fell to {} from about {}, and CPU "
                  "dropped to {}%. The daemon went down {} ago.",
                  "vemkd_process_count", "base_vemkd_process_count", "spectrum_active_jobs",
                  "base_spectrum_active_jobs", _v("cpu_usage"), _minutes("elapsed_min")),
        pl.format("The EGO master daemon crashed {} ago: {} vemkd processes instead of {}, {} jobs "
                  "running where {} would be.",
                  _minutes("elapsed_min"), "vemkd_process_count", "base_vemkd_process_count",
                  "spectrum_active_jobs", "base_spectrum_active_jobs"),
        pl.format("Spectrum jobs at {} (usually {}) with vemkd count {}: the scheduler daemon is "
                  "down or restarting; memory {}%.",
                  "spectrum_active_jobs", "base_spectrum_active_jobs", "vemkd_process_count",
                  _v("memory_usage")),
    ),
    "job_backlog": _pick(
        pl.format("{} jobs running against about {} normally, for {}; CPU {}% and memory {}% as every "
                  "slot fills.",
                  "spectrum_active_jobs", "base_spectrum_active_jobs", _minutes("elapsed_min"),
                  _v("cpu_usage"), _v("memory_usage")),
        pl.format("A job backlog: the scheduler keeps {} jobs busy (usually {}), load average {} on {} "
                  "cores.",
                  "spectrum_active_jobs", "base_spectrum_active_jobs", _v("load_average", 2), "cores"),
        pl.format("Submissions flood in: active jobs {}, CPU {}% (normally {}%), memory {}%, {} into "
                  "the backlog.",
                  "spectrum_active_jobs", _v("cpu_usage"), _v("base_cpu_usage"), _v("memory_usage"),
                  _minutes("elapsed_min")),
    ),
}

NORMAL_TEXT = _pick(
    pl.format("Healthy: CPU {}%, memory {}%, load {} on {} cores, heap {}% with GC {}% of the time; "
              "nothing outside this {} host's usual range.",
              _v("cpu_usage"), _v("memory_usage"), _v("load_average", 2), "cores", _v("java_heap_usage"),
              _v("java_gc_time", 2), "profile"),
    pl.format("Normal operation on a {} host: {} jobs running, disk {}% used, network {} Mbit/s in "
              "at {} ms latency, vemkd processes {}.",
              "profile", "spectrum_active_jobs", _v("disk_usage", 2), _v("network_in_mbps"),
              _v("network_latency_ms", 2), "vemkd_process_count"),
    pl.format("No anomaly: CPU {}% and load {} match the workload, memory steady at {}%, "
              "GC {}% of the time.",
              _v("cpu_usage"), _v("load_average", 2), _v("memory_usage"), _v("java_gc_time", 2)),
)


def explanation_expr(kinds: list[str]) -> pl.Expr:
    """Expression over a sample frame (metrics, base_<metric>, kind, profile, cores, elapsed_min)."""
    expr = pl.when(pl.col("kind").is_null()).then(NORMAL_TEXT)
    for kind in kinds:
        expr = expr.when(pl.col("kind") == kind).then(KIND_TEXT[kind])
    return expr.otherwise(pl.format("Anomaly of kind {}.", pl.col("kind"))).alias("explanation")
