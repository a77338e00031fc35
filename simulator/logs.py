"""Log streams simulated with the metrics: syslog, EGO daemon log, scheduler events, JVM GC log.

`simulate_logs(traces, events, seed=...)` turns the traces and the event table of a run (as
`simulate` returns them) into one Polars frame of log lines, one row per line:

    host int32, timestamp datetime[us, UTC], source, severity, template_id (enums),
    message str (the text after the file's line header), event_id int64 (null when none)

Where lines come from (templates in `data_config/log_templates.yaml`):
- background chatter (Poisson) and periodic lines (cron, vemkd resource reports) carry no event id;
  periodic lines of a daemon fall silent while the metrics show it down;
- lines an anomaly event causes carry its id: they are placed at moments read off the metrics
  (the first step the disk is full, the step where vemkd's process count drops to 0, the OOM kill
  at the step where a leaking JVM's heap restarts, ...);
- GC pauses and scheduler job lines are derived from the metrics: the pauses of an interval add up
  to java_gc_time x interval (to the microsecond), their heap sizes follow java_heap_usage, job
  lines follow spectrum_active_jobs; each carries the event id labelling its metric point.

Lines of step i lie in the interval the step's values describe, (t_i - interval, t_i]; so the
lines of an event lie in (start - interval, end] (`EVENT_MARGIN_INTERVALS` before the start).
Every random draw is a pure function of (SeedSequence(seed, (LOG_STREAM, host)), template, line):
the same seed gives the same lines for any split of the hosts and any thread count.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from datasafe import atomic_path, atomic_write_bytes
from datasafe.yamlcheck import Validator, read_yaml

from ._log_kernels import excerpt_picks, format_lines, hash_uniforms, poisson_counts
from ._log_kernels import gc_pauses as gc_pause_kernel
from .anomalies import ANOMALY_KINDS
from .catalogue import METRICS
from .errors import ConfigError, SimulatorError

DEFAULT_TEMPLATES_PATH = Path(__file__).resolve().parent.parent / "data_config" / "log_templates.yaml"
MAX_TEMPLATES_BYTES = 1_000_000
LOG_STREAM = 17              # SeedSequence spawn key (LOG_STREAM, host) of a host's log draws
EVENT_MARGIN_INTERVALS = 1   # an event's lines start at most this many intervals before its start
MAX_DELAY_S = 60.0
PARQUET_ZSTD_LEVEL = 1       # log text: level 1 writes about twice as fast as the default for 5 % more bytes
EXCERPT_LINES = 8            # log lines at most in a sample's excerpt (the dataset's and the grounded prompts')

FORMATS = ("syslog", "ego", "scheduler", "jvm_unified")
SEVERITIES = ("debug", "info", "notice", "warning", "error", "critical")
MOMENTS = ("start", "labelled", "end", "oom_restart", "disk_full", "daemon_down", "daemon_up", "gc_storm")
DERIVED = {
    "gc_young": ("gc_n", "before", "after", "capacity", "pause_ms"),
    "gc_full": ("gc_n", "before", "after", "capacity", "pause_ms"),
    "job_submitted": ("job_id",),
    "job_started": ("job_id",),
    "job_finished": ("job_id",),
}
UP_STATES = ("vemkd", "jvm")
# placeholders every template may use: metric values at the line's step, with their decimals
METRIC_PLACEHOLDERS = {"cpu": ("cpu_usage", 1), "mem": ("memory_usage", 1), "disk": ("disk_usage", 1),
                       "load": ("load_average", 2), "heap": ("java_heap_usage", 1),
                       "jobs": ("spectrum_active_jobs", 0)}
BUILTINS = ("hostname", "cluster", "master", "java_rss_kb", "java_vm_kb", *METRIC_PLACEHOLDERS)
SYSLOG_LEVEL = {"debug": "7", "info": "6", "notice": "5", "warning": "4", "error": "3", "critical": "2"}
JVM_LEVEL = {"debug": "debug", "info": "info", "notice": "info", "warning": "warning", "error": "error",
             "critical": "error"}
PLACEHOLDER = re.compile(r"\{([a-z][a-z0-9_]*)\}")
NAME = re.compile(r"^[a-z][a-z0-9_]*$")

RESTART_HEAP_PCT = 10.05      # a JVM that restarted shows at most 10 % heap (simulator: 4-10 %)
RESTART_HEAP_DROP_PCT = 10.0  # ... after a drop of at least this much from the step before
DISK_FULL_PCT = 99.5          # the kernel's "disk full" (jobs fail on write errors)
STORM_HEAP_PCT = 95.0         # heap pinned at 95-99.9 % in a GC storm
STORM_GC_PCT = 5.0            # with at least this much GC time: the pauses are full collections
FLOOR_WINDOW = 12             # steps over which the old-generation floor is read off the heap gauge


# ------------------------------------------------------------------------------ config
@dataclass(frozen=True)
class FieldSpec:
    """A value drawn per line (or per host for host_fields): a whole number or a choice."""

    name: str
    lo: int = 0
    hi: int = 0
    choices: tuple[str, ...] = ()


@dataclass(frozen=True)
class SourceSpec:
    name: str
    format: str
    file: str


@dataclass(frozen=True)
class TemplateSpec:
    """One kind of log line and what makes it appear."""

    id: str
    source: str
    severity: str
    text: str
    placeholders: tuple[str, ...]
    trigger: str                  # background | periodic | event | derive
    fields: tuple[FieldSpec, ...] = ()
    per_hour: float = 0.0         # background, event (when not once)
    every_s: float = 0.0          # periodic
    jitter_s: float = 0.0         # periodic
    while_up: str | None = None   # background, periodic
    kinds: tuple[str, ...] = ()   # event
    moment: str = ""              # event
    once: bool = False            # event
    delay_s: float = 0.0          # event, once
    derive: str = ""              # derive


@dataclass(frozen=True)
class LogModel:
    cluster: str
    master: str
    ram_gb: tuple[int, ...]
    heap_max_mb: tuple[int, ...]
    young_pause_ms: tuple[float, float]
    full_pause_ms: tuple[float, float]
    young_at_pct: tuple[float, float]
    max_pauses_per_interval: int
    job_minutes: tuple[float, float]


@dataclass(frozen=True)
class LogTemplates:
    source: str
    model: LogModel
    sources: tuple[SourceSpec, ...]
    host_fields: tuple[FieldSpec, ...]
    templates: tuple[TemplateSpec, ...]

    def template(self, template_id: str) -> TemplateSpec:
        for t in self.templates:
            if t.id == template_id:
                return t
        raise KeyError(template_id)

    def source_spec(self, name: str) -> SourceSpec:
        for s in self.sources:
            if s.name == name:
                return s
        raise KeyError(name)

    @property
    def dtypes(self) -> dict[str, pl.DataType]:
        return {"source": pl.Enum([s.name for s in self.sources]), "severity": pl.Enum(list(SEVERITIES)),
                "template_id": pl.Enum([t.id for t in self.templates])}


def load_log_templates(path: str | Path | None = None) -> LogTemplates:
    """Read and validate the log templates; `None` means data_config/log_templates.yaml."""
    path = Path(path) if path is not None else DEFAULT_TEMPLATES_PATH
    source = path.name if path == DEFAULT_TEMPLATES_PATH else str(path)
    return parse_log_templates(read_yaml(path, source, ConfigError, MAX_TEMPLATES_BYTES), source)


def parse_log_templates(data: Any, source: str = "<log templates>") -> LogTemplates:
    """Validate an already-parsed YAML document into LogTemplates."""
    v = Validator(source, ConfigError)
    root = v.mapping(data, "", required=("model", "sources", "templates"), optional=("host_fields",))
    model = _parse_model(v, root["model"])
    sources = []
    for name, node in v.mapping(root["sources"], "sources").items():
        key = f"sources.{name}"
        _check_name(v, name, key)
        d = v.mapping(node, key, required=("format", "file"), optional=())
        fmt = v.string(d["format"], f"{key}.format")
        if fmt not in FORMATS:
            v.fail(f"{key}.format", f"{fmt!r} is not one of {', '.join(FORMATS)}")
        file = v.string(d["file"], f"{key}.file")
        if "/" in file or file.startswith("."):
            v.fail(f"{key}.file", f"a plain file name, got {file!r}")
        sources.append(SourceSpec(name, fmt, file))
    if not sources:
        v.fail("sources", "at least one source is needed")
    host_fields = tuple(_parse_field(v, name, node, f"host_fields.{name}")
                        for name, node in v.mapping(root.get("host_fields") or {}, "host_fields").items())
    overlap = set(BUILTINS) & {f.name for f in host_fields}
    if overlap:
        v.fail(f"host_fields.{sorted(overlap)[0]}", "is a built-in placeholder")
    names = {s.name for s in sources}
    templates = tuple(_parse_template(v, tid, node, sources=names, host_fields=host_fields)
                      for tid, node in v.mapping(root["templates"], "templates").items())
    if not templates:
        v.fail("templates", "at least one template is needed")
    return LogTemplates(source, model, tuple(sources), host_fields, templates)


def _check_name(v: Validator, name: str, key: str) -> None:
    if not NAME.match(name):
        v.fail(key, "names are lower-case letters, digits and _ (starting with a letter)")


def _parse_model(v: Validator, node: Any) -> LogModel:
    keys = ("cluster", "master", "ram_gb", "heap_max_mb", "young_pause_ms", "full_pause_ms", "young_at_pct",
            "max_pauses_per_interval", "job_minutes")
    d = v.mapping(node, "model", required=keys, optional=())

    def choices(key: str, lo: int, hi: int) -> tuple[int, ...]:
        values = d[key]
        if not isinstance(values, list) or not values:
            v.fail(f"model.{key}", "expected a non-empty list of whole numbers")
        return tuple(v.whole(x, f"model.{key}", lo, hi) for x in values)

    def positive_range(key: str, hi: float) -> tuple[float, float]:
        lo_v, hi_v = v.value_range(d[key], f"model.{key}", 0.0, hi)
        if lo_v <= 0:
            v.fail(f"model.{key}", "must be positive")
        return lo_v, hi_v

    return LogModel(
        cluster=v.string(d["cluster"], "model.cluster"), master=v.string(d["master"], "model.master"),
        ram_gb=choices("ram_gb", 1, 1 << 20), heap_max_mb=choices("heap_max_mb", 16, 1 << 24),
        young_pause_ms=positive_range("young_pause_ms", 1e5), full_pause_ms=positive_range("full_pause_ms", 1e6),
        young_at_pct=v.value_range(d["young_at_pct"], "model.young_at_pct", 1.0, 100.0),
        max_pauses_per_interval=v.whole(d["max_pauses_per_interval"], "model.max_pauses_per_interval", 1, 10**6),
        job_minutes=positive_range("job_minutes", 1e6),
    )


def _parse_field(v: Validator, name: str, node: Any, key: str) -> FieldSpec:
    _check_name(v, name, key)
    d = v.mapping(node, key, optional=("int", "choice"))
    if len(d) != 1:
        v.fail(key, "give exactly one of int: [lo, hi] or choice: [...]")
    if "int" in d:
        lo, hi = v.value_range(d["int"], f"{key}.int", -2**53, 2**53)
        if lo != int(lo) or hi != int(hi):
            v.fail(f"{key}.int", "bounds are whole numbers")
        return FieldSpec(name, int(lo), int(hi))
    values = d["choice"]
    if not isinstance(values, list) or not values:
        v.fail(f"{key}.choice", "expected a non-empty list")
    return FieldSpec(name, choices=tuple(v.string(str(x) if isinstance(x, (int, float)) and not isinstance(x, bool)
                                                  else x, f"{key}.choice") for x in values))


TRIGGERS = ("background", "periodic", "event", "derive")


def _parse_template(v: Validator, tid: str, node: Any, *, sources: set[str],
                    host_fields: tuple[FieldSpec, ...]) -> TemplateSpec:
    key = f"templates.{tid}"
    _check_name(v, tid, key)
    d = v.mapping(node, key, required=("source", "severity", "text"),
                  optional=(*TRIGGERS, "fields", "while_up"))
    src = v.string(d["source"], f"{key}.source")
    if src not in sources:
        v.fail(f"{key}.source", f"unknown source {src!r}; sources: {', '.join(sorted(sources))}")
    severity = v.string(d["severity"], f"{key}.severity")
    if severity not in SEVERITIES:
        v.fail(f"{key}.severity", f"{severity!r} is not one of {', '.join(SEVERITIES)}")
    text = v.string(d["text"], f"{key}.text")
    placeholders = tuple(PLACEHOLDER.findall(text))
    if "{" in PLACEHOLDER.sub("", text) or "}" in PLACEHOLDER.sub("", text):
        v.fail(f"{key}.text", "braces only around placeholder names such as {hostname}")
    triggers = [t for t in TRIGGERS if t in d]
    if len(triggers) != 1:
        v.fail(key, f"give exactly one trigger of {', '.join(TRIGGERS)}")
    trigger = triggers[0]
    fields = tuple(_parse_field(v, name, fnode, f"{key}.fields.{name}")
                   for name, fnode in v.mapping(d.get("fields") or {}, f"{key}.fields").items())
    args: dict[str, Any] = {}
    tkey = f"{key}.{trigger}"
    if trigger == "background":
        t = v.mapping(d[trigger], tkey, required=("per_hour",), optional=())
        args["per_hour"] = v.number(t["per_hour"], f"{tkey}.per_hour", 0, 1e6)
    elif trigger == "periodic":
        t = v.mapping(d[trigger], tkey, required=("every_s",), optional=("jitter_s",))
        args["every_s"] = v.number(t["every_s"], f"{tkey}.every_s", 0.001, 1e7)
        args["jitter_s"] = v.number(t.get("jitter_s", 0), f"{tkey}.jitter_s", 0, args["every_s"] / 2)
    elif trigger == "event":
        t = v.mapping(d[trigger], tkey, required=("kind", "moment"), optional=("once", "per_hour", "delay_s"))
        kinds = t["kind"] if isinstance(t["kind"], list) else [t["kind"]]
        for k in kinds:
            if not isinstance(k, str) or k not in ANOMALY_KINDS:
                v.fail(f"{tkey}.kind", f"unknown anomaly kind {k!r}; known: {', '.join(sorted(ANOMALY_KINDS))}")
        moment = v.string(t["moment"], f"{tkey}.moment")
        if moment not in MOMENTS:
            v.fail(f"{tkey}.moment", f"{moment!r} is not one of {', '.join(MOMENTS)}")
        once = v.boolean(t.get("once", False), f"{tkey}.once")
        if once == ("per_hour" in t):
            v.fail(tkey, "give either once: true or per_hour")
        if "delay_s" in t and not once:
            v.fail(f"{tkey}.delay_s", "only for once: true lines")
        args.update(kinds=tuple(kinds), moment=moment, once=once,
                    per_hour=0.0 if once else v.number(t["per_hour"], f"{tkey}.per_hour", 0, 1e6),
                    delay_s=v.number(t.get("delay_s", 0), f"{tkey}.delay_s", 0, MAX_DELAY_S))
    else:
        derive = v.string(d[trigger], tkey)
        if derive not in DERIVED:
            v.fail(tkey, f"{derive!r} is not one of {', '.join(DERIVED)}")
        args["derive"] = derive
    if "while_up" in d:
        if trigger not in ("background", "periodic"):
            v.fail(f"{key}.while_up", "only for background and periodic lines")
        up = v.string(d["while_up"], f"{key}.while_up")
        if up not in UP_STATES:
            v.fail(f"{key}.while_up", f"{up!r} is not one of {', '.join(UP_STATES)}")
        args["while_up"] = up
    known = set(BUILTINS) | {f.name for f in host_fields} | {f.name for f in fields} | set(
        DERIVED.get(args.get("derive", ""), ()))
    for name in placeholders:
        if name not in known:
            v.fail(f"{key}.text", f"unknown placeholder {{{name}}}; declare it under fields or host_fields")
    for f in fields:
        if f.name in set(BUILTINS) | {h.name for h in host_fields}:
            v.fail(f"{key}.fields.{f.name}", "shadows a built-in or host placeholder")
    return TemplateSpec(tid, src, severity, text, placeholders, trigger, fields, **args)


# ------------------------------------------------------------------------------ the trace grid
@dataclass(frozen=True)
class _Grid:
    """The traces of a host range as [host, step] arrays, and each host's log key and constants."""

    hosts: np.ndarray          # int64[H], global host indices
    t0: int                    # first step
    n_steps: int
    step0_ms: int              # timestamp of step t0, ms since the epoch
    dt_ms: int
    values: dict[str, np.ndarray]   # metric -> float64[H, T]
    labels: dict[str, np.ndarray]   # metric -> int64[H, T] (event id or -1)
    keys: np.ndarray           # uint64[H]

    def step_ms(self, step: np.ndarray) -> np.ndarray:
        return self.step0_ms + (step - self.t0) * self.dt_ms


def _grid(traces: pl.DataFrame, seed: int, interval_s: float | None, with_labels: bool = True) -> _Grid:
    """The traces as [host, step] arrays (they must cover the same consecutive steps on every host)."""
    missing = [c for c in ("host", "step", "timestamp") if c not in traces.columns]
    if missing:
        raise SimulatorError(f"traces: missing column {missing[0]!r} (pass the traces `simulate` returns)")
    traces = traces.sort("host", "step")
    hosts = traces["host"].unique(maintain_order=True).to_numpy().astype(np.int64)
    steps = traces["step"].to_numpy().astype(np.int64)
    n_hosts = len(hosts)
    if n_hosts == 0:
        raise SimulatorError("traces: no rows")
    n_steps = len(traces) // n_hosts
    t0 = int(steps[0])
    if n_steps * n_hosts != len(traces) or not np.array_equal(
            steps, np.tile(np.arange(t0, t0 + n_steps), n_hosts)):
        raise SimulatorError("traces: every host needs the same consecutive steps")
    ts = traces["timestamp"].cast(pl.Datetime("ms", "UTC")).cast(pl.Int64).to_numpy()
    if interval_s is None:
        if n_steps < 2:
            raise SimulatorError("interval_s: needed for traces of a single step")
        interval_s = (ts[1] - ts[0]) / 1000.0
    dt_ms = int(round(interval_s * 1000))
    if dt_ms < 1:
        raise SimulatorError(f"interval_s: must be at least 0.001, got {interval_s}")
    values, labels = {}, {}
    for name in METRICS:
        if name not in traces.columns:
            raise SimulatorError(f"traces: missing metric column {name!r}")
        values[name] = traces[name].to_numpy().astype(np.float64).reshape(n_hosts, n_steps)
        lab = f"label_{name}"
        if not with_labels:
            continue
        if lab not in traces.columns:
            raise SimulatorError(f"traces: missing label column {lab!r} (simulate with with_labels=True)")
        labels[name] = traces[lab].to_numpy().astype(np.int64).reshape(n_hosts, n_steps)
    keys = np.array([np.random.SeedSequence(seed, spawn_key=(LOG_STREAM, int(h))).generate_state(1, np.uint64)[0]
                     for h in hosts], dtype=np.uint64)
    return _Grid(hosts, t0, n_steps, int(ts[0]), dt_ms, values, labels, keys)


def _stream(name: str) -> np.uint64:
    """A stable 64-bit stream id for a name (a template, a field): adding names moves no others."""
    data = name.encode()
    return np.uint64((zlib.crc32(data) << 32) | zlib.crc32(data[::-1] + b"#"))


def _uniforms(keys: np.ndarray, stream: np.uint64, a: np.ndarray, b: np.ndarray | int) -> np.ndarray:
    a = np.ascontiguousarray(a, dtype=np.int64)
    b = np.broadcast_to(np.asarray(b, dtype=np.int64), a.shape).copy()
    out = np.empty(a.shape[0])
    hash_uniforms(np.ascontiguousarray(keys, dtype=np.uint64), stream, a, b, out)
    return out


def _poisson(lam: np.ndarray, u: np.ndarray) -> np.ndarray:
    out = np.empty(len(lam), np.int64)
    poisson_counts(np.ascontiguousarray(lam, dtype=np.float64), np.ascontiguousarray(u), out)
    return out


def _host_uniform(grid: _Grid, name: str) -> np.ndarray:
    return _uniforms(grid.keys, _stream("host:" + name), np.zeros(len(grid.hosts), np.int64), 0)


@dataclass
class _Lines:
    """Lines of one template before formatting: grid host index, step, ordinal, time, event, values."""

    hix: np.ndarray
    step: np.ndarray
    time_ms: np.ndarray
    event_id: np.ndarray
    draw_a: np.ndarray      # the (a, b) counters of the line's own draws (fields): b = base + slot
    draw_b: np.ndarray
    extra: dict[str, Any]

    @property
    def n(self) -> int:
        return len(self.hix)


def _place(grid: _Grid, step: np.ndarray, frac: np.ndarray) -> np.ndarray:
    """A time in (t_step - interval, t_step], ms, at fraction `frac` in [0, 1) of the interval."""
    return grid.step_ms(step) - grid.dt_ms + 1 + np.floor(frac * grid.dt_ms).astype(np.int64)


def _expand(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row of each expanded line and its ordinal k within its row."""
    total = int(counts.sum())
    row = np.repeat(np.arange(len(counts)), counts)
    start = np.cumsum(counts) - counts
    return row, np.arange(total) - start[row]


SLOTS = 64  # draws reserved per line: b = k * SLOTS + slot


# ------------------------------------------------------------------------------ generators
def _background(grid: _Grid, t: TemplateSpec, up: dict[str, np.ndarray]) -> _Lines:
    H, T = len(grid.hosts), grid.n_steps
    stream = _stream(t.id)
    hix = np.repeat(np.arange(H), T)
    step = np.tile(np.arange(grid.t0, grid.t0 + T), H)
    lam = np.full(H * T, t.per_hour * grid.dt_ms / 3.6e6)
    counts = _poisson(lam, _uniforms(grid.keys[hix], stream, step, -1))
    if t.while_up:
        counts[~up[t.while_up].reshape(-1)] = 0
    row, k = _expand(counts)
    hix, step = hix[row], step[row]
    b = k * SLOTS
    frac = _uniforms(grid.keys[hix], stream, step, b)
    return _Lines(hix, step, _place(grid, step, frac), np.full(len(row), -1, np.int64), step, b, {})


def _periodic(grid: _Grid, t: TemplateSpec, up: dict[str, np.ndarray]) -> _Lines:
    H, T = len(grid.hosts), grid.n_steps
    stream = _stream(t.id)
    every = max(1, int(round(t.every_s * 1000)))
    jitter = int(round(t.jitter_s * 1000))
    phase = np.floor(_host_uniform(grid, t.id) * every).astype(np.int64)
    first = grid.step0_ms - grid.dt_ms + 1          # the grid covers [first, last] in ms
    last = grid.step_ms(np.int64(grid.t0 + T - 1))
    n_lo = -((-(first - jitter - phase)) // every)  # ceil
    n_hi = (last + jitter - phase) // every
    counts = np.maximum(n_hi - n_lo + 1, 0)
    row, k = _expand(counts)
    n = n_lo[row] + k
    hix = row
    keys = grid.keys[hix]
    wobble = np.rint((2.0 * _uniforms(keys, stream, n, 0) - 1.0) * jitter).astype(np.int64)
    time_ms = n * every + phase[hix] + wobble
    idx = -((-(time_ms - grid.step0_ms)) // grid.dt_ms)   # ceil: time in (t_i - dt, t_i]
    keep = (time_ms >= first) & (time_ms <= last) & (idx >= 0) & (idx < T)
    if t.while_up:
        keep[keep] &= up[t.while_up][hix[keep], idx[keep]]
    hix, n, time_ms, idx = hix[keep], n[keep], time_ms[keep], idx[keep]
    return _Lines(hix, idx + grid.t0, time_ms, np.full(len(hix), -1, np.int64), n, np.full(len(hix), SLOTS),
                  {})


@dataclass(frozen=True)
class _EventSteps:
    """Every (event, step) of the events on the grid's hosts, steps start..end inclusive, in order."""

    row: np.ndarray       # index of the event (0..E-1)
    event_id: np.ndarray
    kind: np.ndarray      # object array of kind names, per row
    hix: np.ndarray
    step: np.ndarray
    moments: dict[str, np.ndarray]  # moment -> bool per row


def _event_steps(grid: _Grid, events: pl.DataFrame) -> _EventSteps:
    pos = {int(h): i for i, h in enumerate(grid.hosts)}
    ev = events.filter(pl.col("host").is_in(list(pos))).sort("event_id")
    ev_host = np.array([pos[int(h)] for h in ev["host"].to_list()], np.int64)
    start = ev["start_step"].to_numpy().astype(np.int64)
    end = ev["end_step"].to_numpy().astype(np.int64)
    lo = np.clip(start, grid.t0, grid.t0 + grid.n_steps)
    hi = np.clip(end + 1, grid.t0, grid.t0 + grid.n_steps)
    row, k = _expand(np.maximum(hi - lo, 0))
    step = lo[row] + k
    hix = ev_host[row]
    eid = ev["event_id"].to_numpy().astype(np.int64)[row]
    kind = np.array(ev["kind"].to_list(), dtype=object)[row] if len(ev) else np.zeros(0, object)
    i = step - grid.t0
    val = lambda m: grid.values[m][hix, i]  # noqa: E731
    lab = lambda m: grid.labels[m][hix, i] == eid  # noqa: E731
    inside = step < end[row]
    prim = np.array([ANOMALY_KINDS[k_].primary for k_ in ev["kind"].to_list()], dtype=object)[row] \
        if len(ev) else np.zeros(0, object)
    labelled = np.zeros(len(row), bool)
    for metric in set(prim.tolist()):
        sel = prim == metric
        labelled[sel] = lab(metric)[sel]
    heap = val("java_heap_usage")
    prev_heap = grid.values["java_heap_usage"][hix, np.maximum(i - 1, 0)]
    vemkd_down = (val("vemkd_process_count") == 0) & lab("vemkd_process_count")
    prev_down = np.zeros(len(row), bool)
    same = np.zeros(len(row), bool)
    same[1:] = row[1:] == row[:-1]
    prev_down[1:] = vemkd_down[:-1]
    moments = {
        "start": step == start[row],
        "end": step == end[row] - 1,
        "labelled": labelled & inside,
        "oom_restart": ((step == end[row] - 1) & (heap <= RESTART_HEAP_PCT) & (i > 0)
                        & (prev_heap - heap >= RESTART_HEAP_DROP_PCT) & lab("java_heap_usage")),
        "disk_full": (val("disk_usage") >= DISK_FULL_PCT) & lab("disk_usage") & inside,
        "daemon_down": vemkd_down & inside,
        "daemon_up": same & prev_down & (val("vemkd_process_count") > 0),
        "gc_storm": (heap >= STORM_HEAP_PCT) & lab("java_gc_time") & inside,
    }
    return _EventSteps(row, eid, kind, hix, step, moments)


def _event_lines(grid: _Grid, es: _EventSteps, t: TemplateSpec, group_delay_s: float) -> _Lines:
    sel = es.moments[t.moment] & np.isin(es.kind, t.kinds)
    rows = np.flatnonzero(sel)
    if t.once:
        _, first = np.unique(es.row[rows], return_index=True)
        rows = rows[first]
        hix, step, eid = es.hix[rows], es.step[rows], es.event_id[rows]
        # the lines of one moment share a base time and follow in the order of their delays
        group = _stream("once:" + t.moment + ":" + ",".join(t.kinds))
        base = _uniforms(grid.keys[hix], group, eid, 0)
        room = max(grid.dt_ms - int(round(group_delay_s * 1000)) - 1, 1)
        time_ms = (grid.step_ms(step) - grid.dt_ms + 1 + np.floor(base * room).astype(np.int64)
                   + int(round(t.delay_s * 1000)))
        return _Lines(hix, step, time_ms, eid, eid, np.full(len(rows), SLOTS), {})
    stream = _stream(t.id)
    hix, step, eid = es.hix[rows], es.step[rows], es.event_id[rows]
    a = step + (eid << 33)
    counts = _poisson(np.full(len(rows), t.per_hour * grid.dt_ms / 3.6e6), _uniforms(grid.keys[hix], stream, a, -1))
    r, k = _expand(counts)
    hix, step, eid, a = hix[r], step[r], eid[r], a[r]
    b = k * SLOTS
    frac = _uniforms(grid.keys[hix], stream, a, b)
    return _Lines(hix, step, _place(grid, step, frac), eid, a, b, {})


def _restart_grid(grid: _Grid, es: _EventSteps) -> np.ndarray:
    """bool[H, T]: steps at which a JVM was OOM-killed and restarted."""
    out = np.zeros((len(grid.hosts), grid.n_steps), bool)
    sel = es.moments["oom_restart"] & (es.kind == "memory_leak")
    out[es.hix[sel], es.step[sel] - grid.t0] = True
    return out


def _gc_pauses(grid: _Grid, model: LogModel, restart: np.ndarray) -> dict[str, Any]:
    """Every GC pause of the grid, as columns; the pauses of an interval sum to its GC time exactly."""
    H, T = len(grid.hosts), grid.n_steps
    gc = grid.values["java_gc_time"]
    heap = grid.values["java_heap_usage"]
    total_us = np.rint(np.clip(gc, 0, 100) / 100.0 * grid.dt_ms * 1000).astype(np.int64)
    full = (heap >= STORM_HEAP_PCT) & (gc >= STORM_GC_PCT)
    young_ms = _log_uniform(_host_uniform(grid, "young_pause_ms"), model.young_pause_ms)
    full_ms = _log_uniform(_host_uniform(grid, "full_pause_ms"), model.full_pause_ms)
    typ_us = np.where(full, full_ms[:, None], young_ms[:, None]) * 1000.0
    n = np.where(total_us > 0, np.clip(np.rint(total_us / typ_us), 1, model.max_pauses_per_interval), 0)
    n = n.astype(np.int64).reshape(-1)
    offsets = np.zeros(len(n) + 1, np.int64)
    np.cumsum(n, out=offsets[1:])
    total = int(offsets[-1])
    cap = np.array(model.heap_max_mb, np.int64)[
        np.floor(_host_uniform(grid, "heap_max_mb") * len(model.heap_max_mb)).astype(np.int64)]
    lo, hi = model.young_at_pct
    young_at = lo + _host_uniform(grid, "young_at_pct") * (hi - lo)
    out = {"hix": np.empty(total, np.int64), "step": np.empty(total, np.int64), "time_ms": np.empty(total, np.int64),
           "pause_us": np.empty(total, np.int64), "before": np.empty(total, np.int64),
           "after": np.empty(total, np.int64), "full": np.empty(total, np.bool_)}
    gc_pause_kernel(n, offsets, total_us.reshape(-1), grid.keys, _stream("gc"), grid.t0, grid.step0_ms, grid.dt_ms,
                    np.ascontiguousarray(heap), _rolling_min(heap, FLOOR_WINDOW), full, young_at, cap, SLOTS,
                    out["hix"], out["step"], out["time_ms"], out["pause_us"], out["before"], out["after"], out["full"])
    hix, i = out["hix"], out["step"] - grid.t0
    # GC numbers count per JVM: from a per-host offset, and from 0 after a restart
    last_restart = np.maximum.accumulate(np.where(restart, np.arange(T)[None, :], -1), axis=1)[hix, i]
    seg = hix * (T + 1) + last_restart + 1
    first = np.searchsorted(seg, seg, side="left")
    offset = np.where(last_restart < 0, np.floor(_host_uniform(grid, "gc_offset") * 50000).astype(np.int64)[hix], 0)
    out["gc_n"] = np.arange(total) - first + offset
    out["event_id"] = grid.labels["java_gc_time"][hix, i]
    out["capacity"] = cap[hix]
    return out


def _log_uniform(u: np.ndarray, bounds: tuple[float, float]) -> np.ndarray:
    lo, hi = np.log(bounds[0]), np.log(bounds[1])
    return np.exp(lo + u * (hi - lo))


def _rolling_min(x: np.ndarray, window: int) -> np.ndarray:
    """Trailing minimum over `window` steps (fewer at the start), per row."""
    padded = np.concatenate([np.repeat(x[:, :1], window - 1, axis=1), x], axis=1)
    return np.lib.stride_tricks.sliding_window_view(padded, window, axis=1).min(axis=2)


def _gc_lines(grid: _Grid, gc: dict[str, Any], full: bool) -> _Lines:
    sel = gc["full"] == full
    pause = gc["pause_us"][sel]
    extra = {"gc_n": gc["gc_n"][sel], "before": gc["before"][sel], "after": gc["after"][sel],
             "capacity": gc["capacity"][sel], "pause_ms": pause}
    return _Lines(gc["hix"][sel], gc["step"][sel], gc["time_ms"][sel], gc["event_id"][sel],
                  gc["step"][sel], np.arange(int(sel.sum())) * SLOTS, extra)


def _job_flows(grid: _Grid, model: LogModel) -> dict[str, Any]:
    """Jobs started and finished per interval, consistent with the spectrum_active_jobs gauge."""
    H, T = len(grid.hosts), grid.n_steps
    jobs = np.rint(grid.values["spectrum_active_jobs"]).astype(np.int64)
    prev = np.concatenate([jobs[:, :1], jobs[:, :-1]], axis=1)
    minutes = model.job_minutes[0] + _host_uniform(grid, "job_minutes") * (model.job_minutes[1] - model.job_minutes[0])
    stay = np.minimum(prev, jobs)
    lam = stay * (grid.dt_ms / 60000.0) / minutes[:, None]
    hix = np.repeat(np.arange(H), T)
    step = np.tile(np.arange(grid.t0, grid.t0 + T), H)
    turnover = np.minimum(_poisson(lam.reshape(-1), _uniforms(grid.keys[hix], _stream("jobs"), step, -1)),
                          stay.reshape(-1)).reshape(H, T)
    delta = jobs - prev
    started = np.maximum(delta, 0) + turnover
    finished = np.maximum(-delta, 0) + turnover
    finished[grid.values["vemkd_process_count"] == 0] = 0  # lost with the daemon, not finished
    base = 100000 + np.floor(_host_uniform(grid, "job_ids") * 800000).astype(np.int64)
    return {"started": started, "finished": finished, "base": base, "running0": jobs[:, 0]}


def _job_lines(grid: _Grid, flows: dict[str, Any], what: str) -> _Lines:
    counts = flows["finished" if what == "job_finished" else "started"]
    T = grid.n_steps
    row, k = _expand(counts.reshape(-1))
    hix, i = row // T, row % T
    step = i + grid.t0
    # job ids count up per host: started jobs in order, finished ones first in, first out
    host_first = np.searchsorted(hix, hix, side="left")
    ordinal = np.arange(len(row)) - host_first
    job_id = flows["base"][hix] + ordinal - (flows["running0"][hix] if what == "job_finished" else 0)
    stream = _stream(what)
    b = k * SLOTS
    frac = _uniforms(grid.keys[hix], stream, step, b)
    if what == "job_submitted":
        frac = frac * 0.5           # submitted before it starts within the interval
    elif what == "job_started":
        frac = 0.5 + frac * 0.5
    return _Lines(hix, step, _place(grid, step, frac), grid.labels["spectrum_active_jobs"][hix, i],
                  step, b, {"job_id": job_id})


# ------------------------------------------------------------------------------ formatting
# how a placeholder is written: KIND_STRING (an index into the string table), 0 (an integer) or
# d > 0 (an integer scaled by 10^d, written with d decimals); see _log_kernels.format_lines
KIND_STRING = -1
DERIVED_KINDS = {"gc_n": 0, "before": 0, "after": 0, "capacity": 0, "pause_ms": 3, "job_id": 0}


class _Strings:
    """The string table the line kernel copies from: tables of choices, each at a base index."""

    def __init__(self):
        self.values: list[str] = []
        self.bases: dict[tuple, int] = {}

    def base(self, key: tuple, values) -> int:
        if key not in self.bases:
            self.bases[key] = len(self.values)
            self.values.extend(values)
        return self.bases[key]

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        encoded = [v.encode() for v in self.values] or [b""]
        offsets = np.zeros(len(encoded) + 1, np.int64)
        offsets[1:] = np.cumsum([len(e) for e in encoded])
        return np.frombuffer(b"".join(encoded), np.uint8).copy(), offsets


def _draw_field(field: FieldSpec, u: np.ndarray) -> np.ndarray:
    """A field's values from uniforms: whole numbers, or indices into its choices."""
    if field.choices:
        return np.minimum(np.floor(u * len(field.choices)).astype(np.int64), len(field.choices) - 1)
    return field.lo + np.floor(u * (field.hi - field.lo + 1)).astype(np.int64)


class _HostConstants:
    """Per-host values: host_fields, RAM and heap size, drawn once per host."""

    def __init__(self, grid: _Grid, templates: LogTemplates):
        self.fields = {f.name: _draw_field(f, _host_uniform(grid, "field:" + f.name))
                       for f in templates.host_fields}
        m = templates.model
        self.ram_kb = np.array(m.ram_gb, np.int64)[
            np.floor(_host_uniform(grid, "ram_gb") * len(m.ram_gb)).astype(np.int64)] * 1024 * 1024
        self.heap_kb = np.array(m.heap_max_mb, np.int64)[
            np.floor(_host_uniform(grid, "heap_max_mb") * len(m.heap_max_mb)).astype(np.int64)] * 1024
        self.hostnames = tuple(f"cn{int(h):05d}" for h in grid.hosts)


def _placeholder_kind(name: str, t: TemplateSpec, templates: LogTemplates) -> int:
    own = {f.name: f for f in t.fields}
    hosts = {f.name: f for f in templates.host_fields}
    field = own.get(name) or hosts.get(name)
    if field is not None:
        return KIND_STRING if field.choices else 0
    if name in DERIVED_KINDS:
        return DERIVED_KINDS[name]
    if name in ("hostname", "cluster", "master"):
        return KIND_STRING
    if name in METRIC_PLACEHOLDERS:
        return METRIC_PLACEHOLDERS[name][1]
    return 0  # java_rss_kb, java_vm_kb


def _values(grid: _Grid, t: TemplateSpec, lines: _Lines, *, consts: _HostConstants, templates: LogTemplates,
            strings: _Strings, width: int) -> np.ndarray:
    """int64[n, width]: each placeholder's value per line, as the line kernel writes it."""
    out = np.zeros((lines.n, width), np.int64)
    i = lines.step - grid.t0
    own = {f.name: (slot, f) for slot, f in enumerate(t.fields)}
    hosts = {f.name: f for f in templates.host_fields}
    for j, name in enumerate(t.placeholders):
        if name in lines.extra:
            value = lines.extra[name]
        elif name in own:
            slot, field = own[name]
            value = _draw_field(field, _uniforms(grid.keys[lines.hix], _stream(t.id), lines.draw_a,
                                                 lines.draw_b + 1 + slot))
            if field.choices:
                value = value + strings.base(("field", t.id, name), field.choices)
        elif name in hosts:
            value = consts.fields[name][lines.hix]
            if hosts[name].choices:
                value = value + strings.base(("host_field", name), hosts[name].choices)
        elif name == "hostname":
            value = lines.hix + strings.base(("hostname",), consts.hostnames)
        elif name in ("cluster", "master"):
            value = strings.base(("model", name), (getattr(templates.model, name),))
        elif name in METRIC_PLACEHOLDERS:
            metric, decimals = METRIC_PLACEHOLDERS[name]
            value = np.rint(np.maximum(grid.values[metric][lines.hix, i], 0) * 10 ** decimals)
        else:  # java_rss_kb, java_vm_kb: the JVM's share of the memory in use before this step
            mem = grid.values["memory_usage"][lines.hix, np.maximum(i - 1, 0)]
            value = np.rint(mem / 100.0 * consts.ram_kb[lines.hix] * 0.6).astype(np.int64)
            if name == "java_vm_kb":
                value = value + consts.heap_kb[lines.hix] // 2
        out[:, j] = value
    return out


def _literals(templates: LogTemplates) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The templates' literal parts for the line kernel: part0, n_fields, bytes, offsets, kinds."""
    parts, part0, n_fields = [], [], []
    width = max(1, max(len(t.placeholders) for t in templates.templates))
    kinds = np.zeros((len(templates.templates), width), np.int64)
    for ti, t in enumerate(templates.templates):
        part0.append(len(parts))
        n_fields.append(len(t.placeholders))
        parts.extend(p.encode() for p in PLACEHOLDER.split(t.text)[0::2])
        for j, name in enumerate(t.placeholders):
            kinds[ti, j] = _placeholder_kind(name, t, templates)
    offsets = np.zeros(len(parts) + 1, np.int64)
    offsets[1:] = np.cumsum([len(p) for p in parts])
    data = np.frombuffer(b"".join(parts) or b" ", np.uint8).copy()
    return np.array(part0, np.int64), np.array(n_fields, np.int64), data, offsets, kinds


def _messages(order: np.ndarray, tmpl: np.ndarray, vals: np.ndarray, *, templates: LogTemplates,
              strings: _Strings) -> pl.Series:
    """The rendered messages of rows `order` of (tmpl, vals), by the line kernel, as a Polars string column."""
    import pyarrow as pa

    part0, n_fields, lit_data, lit_off, kinds = _literals(templates)
    str_data, str_off = strings.arrays()
    offsets, data = format_lines(order, tmpl, part0, n_fields, lit_data, lit_off, kinds, vals, str_data, str_off)
    array = pa.LargeStringArray.from_buffers(len(order), pa.py_buffer(offsets), pa.py_buffer(data))
    return pl.Series("message", pl.from_arrow(array), dtype=pl.Utf8)


def empty_logs(templates: LogTemplates | None = None) -> pl.DataFrame:
    """A frame with the log schema and no rows."""
    dtypes = (templates or load_log_templates()).dtypes
    return pl.DataFrame(schema={"host": pl.Int32, "timestamp": pl.Datetime("us", "UTC"),
                                "source": dtypes["source"], "severity": dtypes["severity"],
                                "template_id": dtypes["template_id"], "message": pl.Utf8,
                                "event_id": pl.Int64})


# ------------------------------------------------------------------------------ public
def simulate_logs(traces: pl.DataFrame, events: pl.DataFrame, *, seed: int,
                  templates: LogTemplates | str | Path | None = None,
                  interval_s: float | None = None) -> pl.DataFrame:
    """The log lines of the hosts in `traces` (with label columns) and their `events`, host by host.

    `seed` is the run's seed (as given to `simulate`).  Rows are ordered by host, then time (lines
    at the same millisecond in template order).
    """
    tpl = templates if isinstance(templates, LogTemplates) else load_log_templates(templates)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**63:
        raise SimulatorError(f"seed: must be a whole number in [0, 2^63), got {seed!r}")
    grid = _grid(traces, int(seed), interval_s)
    es = _event_steps(grid, events)
    restart = _restart_grid(grid, es)
    up = {"vemkd": grid.values["vemkd_process_count"] > 0, "jvm": ~restart}
    consts = _HostConstants(grid, tpl)
    strings = _Strings()
    width = max(1, max(len(t.placeholders) for t in tpl.templates))
    gc = jobs = None
    delays: dict[tuple, float] = {}
    for t in tpl.templates:
        if t.trigger == "event" and t.once:
            g = (t.moment, t.kinds)
            delays[g] = max(delays.get(g, 0.0), t.delay_s)
    cols: dict[str, list[np.ndarray]] = {"hix": [], "time": [], "event": [], "tmpl": [], "vals": []}
    for ti, t in enumerate(tpl.templates):
        if t.trigger == "background":
            lines = _background(grid, t, up)
        elif t.trigger == "periodic":
            lines = _periodic(grid, t, up)
        elif t.trigger == "event":
            lines = _event_lines(grid, es, t, delays.get((t.moment, t.kinds), 0.0))
        elif t.derive.startswith("gc_"):
            gc = gc if gc is not None else _gc_pauses(grid, tpl.model, restart)
            lines = _gc_lines(grid, gc, full=t.derive == "gc_full")
        else:
            jobs = jobs if jobs is not None else _job_flows(grid, tpl.model)
            lines = _job_lines(grid, jobs, t.derive)
        cols["hix"].append(lines.hix)
        cols["time"].append(lines.time_ms)
        cols["event"].append(lines.event_id)
        cols["tmpl"].append(np.full(lines.n, ti, np.int64))
        cols["vals"].append(_values(grid, t, lines, consts=consts, templates=tpl, strings=strings, width=width))
    hix, time_ms, event, tmpl = (np.concatenate(cols[k]) for k in ("hix", "time", "event", "tmpl"))
    if not len(hix):
        return empty_logs(tpl)
    # by host, then time; stable, so lines at the same millisecond keep the template order
    order = np.argsort((hix << 42) + (time_ms - time_ms.min()), kind="stable")
    vals = np.concatenate(cols["vals"])
    message = _messages(order, tmpl, vals, templates=tpl, strings=strings)
    hix, time_ms, event, tmpl = hix[order], time_ms[order], event[order], tmpl[order]
    dtypes = tpl.dtypes
    source_of = pl.Series([t.source for t in tpl.templates], dtype=dtypes["source"])
    severity_of = pl.Series([t.severity for t in tpl.templates], dtype=dtypes["severity"])
    template_of = pl.Series([t.id for t in tpl.templates], dtype=dtypes["template_id"])
    return pl.DataFrame([
        pl.Series("host", grid.hosts[hix].astype(np.int32)),
        pl.Series("timestamp", time_ms * 1000).cast(pl.Datetime("us", "UTC")),
        source_of.gather(tmpl).alias("source"),
        severity_of.gather(tmpl).alias("severity"),
        template_of.gather(tmpl).alias("template_id"),
        message,
        pl.Series("event_id", event).set(pl.Series(event < 0), None),
    ])


def render_lines(logs: pl.DataFrame, templates: LogTemplates | None = None) -> pl.Series:
    """Each line as its file holds it: the source's header (time, host, level) and the message."""
    tpl = templates or load_log_templates()
    fmt_of = {s.name: s.format for s in tpl.sources}
    ts = pl.col("timestamp")
    hostname = pl.format("cn{}", pl.col("host").cast(pl.Utf8).str.zfill(5))
    sev = pl.col("severity").cast(pl.Utf8)
    by_format = {
        "syslog": pl.format("{} {} {}", ts.dt.strftime("%b %e %H:%M:%S"), hostname, pl.col("message")),
        "ego": pl.format("{} {} {} 3.9 {}", ts.dt.strftime("%b %e %H:%M:%S %Y"),
                         (pl.col("host") % 60000 + 2000).cast(pl.Utf8),
                         sev.replace_strict(SYSLOG_LEVEL, return_dtype=pl.Utf8), pl.col("message")),
        "scheduler": pl.format("{} {} {}", ts.dt.strftime("%Y-%m-%dT%H:%M:%S%.3fZ"), sev.str.to_uppercase(),
                               pl.col("message")),
        "jvm_unified": pl.format("[{}][{}][gc] {}", ts.dt.strftime("%Y-%m-%dT%H:%M:%S%.3f+0000"),
                                 sev.replace_strict(JVM_LEVEL, return_dtype=pl.Utf8), pl.col("message")),
    }
    fmt = pl.col("source").cast(pl.Utf8).replace_strict(fmt_of, return_dtype=pl.Utf8)
    expr = pl.lit(None, dtype=pl.Utf8)
    for name, e in by_format.items():
        expr = pl.when(fmt == name).then(e).otherwise(expr)
    return logs.select(expr.alias("line"))["line"]


def write_log_files(logs: pl.DataFrame, folder: str | Path,
                    templates: LogTemplates | None = None) -> list[Path]:
    """Plain log files, one per host and source: `<folder>/<hostname>/<file>` (messages, gc.log, ...).

    Each file is written atomically; lines in time order, as a log shipper or Drain reads them.
    """
    tpl = templates or load_log_templates()
    folder = Path(folder)
    files = {s.name: s.file for s in tpl.sources}
    framed = logs.select("host", "source").with_columns(line=render_lines(logs, tpl))
    written = []
    for (host, source), part in framed.group_by("host", "source", maintain_order=True):
        path = folder / f"cn{int(host):05d}" / files[str(source)]
        text = part.select(pl.col("line").str.join("\n"))["line"][0] + "\n"
        atomic_write_bytes(path, text.encode())
        written.append(path)
    return sorted(written)


def write_logs_parquet(logs: pl.DataFrame, path: str | Path) -> None:
    """The log frame as one Parquet file (zstd), written atomically."""
    with atomic_path(path) as tmp:
        logs.write_parquet(tmp, compression="zstd", compression_level=PARQUET_ZSTD_LEVEL)


def read_logs_parquet(path: str | Path) -> pl.DataFrame:
    """A log frame written by `write_logs_parquet`, or the parts `write_logs_parts` wrote in a folder."""
    path = Path(path)
    return pl.read_parquet(path / "logs-*.parquet" if path.is_dir() else path)


def write_logs_parts(traces: pl.DataFrame, events: pl.DataFrame, folder: str | Path, *, seed: int,
                     templates: LogTemplates | str | Path | None = None, interval_s: float | None = None,
                     hosts_per_part: int = 64) -> list[Path]:
    """`simulate_logs` host range by host range into numbered Parquet parts `<folder>/logs-NNNNN.parquet`.

    A background thread writes each part while the next range is simulated (the kernels and the
    Parquet writer release the GIL), so generation and compression overlap on two cores.  The parts
    concatenated are `simulate_logs`'s frame; their bytes depend on `hosts_per_part`, not on threads.
    """
    from concurrent.futures import ThreadPoolExecutor

    tpl = templates if isinstance(templates, LogTemplates) else load_log_templates(templates)
    if isinstance(hosts_per_part, bool) or not isinstance(hosts_per_part, int) or hosts_per_part < 1:
        raise SimulatorError(f"hosts_per_part: must be a whole number >= 1, got {hosts_per_part!r}")
    hosts = traces["host"].unique().sort().to_list()
    folder = Path(folder)
    paths = []
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = None
        for part, lo in enumerate(range(0, len(hosts), hosts_per_part)):
            chunk = hosts[lo:lo + hosts_per_part]
            logs = simulate_logs(traces.filter(pl.col("host").is_between(chunk[0], chunk[-1])), events,
                                 seed=seed, templates=tpl, interval_s=interval_s)
            if pending is not None:
                pending.result()
            paths.append(folder / f"logs-{part:05d}.parquet")
            pending = pool.submit(write_logs_parquet, logs, paths[-1])
        if pending is not None:
            pending.result()
    return paths


# ------------------------------------------------------------------------------ excerpts
def log_excerpts(lines: pl.DataFrame, points: pl.DataFrame, *, before: int,
                 limit: int = EXCERPT_LINES) -> pl.DataFrame:
    """The excerpt of each point's window: at most `limit` of the log lines of the point's host whose
    step lies from `before` steps before the point's step to it.

    The lines are ranked from what they show, alike for every point (never by their event ids): the
    latest line of each template before a second line of any, then the most severe, then the
    template's rarest in the window, then the latest; one kernel pass over each window
    (`_log_kernels.excerpt_picks`), whatever the count of points.

    `lines` holds host, step, template_id and severity (a staged logs table, or `logs_table` of
    `simulate_logs`' frame), sorted by host then time; `points` holds host and step.  Returns one row
    per chosen line: `point` (its row in `points`), `total` (the lines of that window), then the
    columns of `lines`; by point, then time.  A window without lines has no row."""
    if isinstance(before, bool) or not isinstance(before, (int, np.integer)) or before < 0:
        raise ValueError(f"log_excerpts: before must be a whole number >= 0, got {before!r}")
    if isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or limit < 1:
        raise ValueError(f"log_excerpts: limit must be a whole number >= 1, got {limit!r}")
    key = _host_step_key(lines["host"], lines["step"])
    if len(key) > 1 and not (key[1:] >= key[:-1]).all():
        raise ValueError("log_excerpts: the lines must be sorted by host, then time (as simulate_logs and the "
                         "staged logs table give them)")
    at = _host_step_key(points["host"], points["step"])
    starts = np.searchsorted(key, at - int(before), side="left")
    ends = np.searchsorted(key, at, side="right")
    picks = excerpt_picks(lines["template_id"].to_physical().to_numpy().astype(np.int64),
                          lines["severity"].to_physical().to_numpy().astype(np.int64),
                          starts.astype(np.int64), ends.astype(np.int64),
                          len(lines["template_id"].dtype.categories), int(limit))
    point, slot = np.nonzero(picks >= 0)
    return lines[picks[point, slot]].insert_column(0, pl.Series("point", point, pl.Int64)).insert_column(
        1, pl.Series("total", (ends - starts)[point], pl.Int64))


def _host_step_key(host: pl.Series, step: pl.Series) -> np.ndarray:
    """(host, step) as one sortable int64: host * 2^32 + step (steps below 2^31)."""
    return (host.cast(pl.Int64).to_numpy() << 32) + step.cast(pl.Int64).to_numpy()


def sample_log_excerpts(lines: pl.DataFrame, points: pl.DataFrame, *, before: int,
                        limit: int = EXCERPT_LINES) -> pl.DataFrame:
    """`points` (host, step: the samples) with their window's excerpt (`log_excerpts`) as the dataset
    carries it: `log_total` (the lines of the window) and `log_lines`, a list of {time (as the samples'
    timestamp), source, severity, message} in time order (empty without lines). Neither a line's event id
    (a label) nor its template id (the simulator's name for its kind; a log parser finds its own) is kept."""
    from .staging import SAMPLE_TIME_FORMAT

    picked = log_excerpts(lines, points, before=before, limit=limit)
    # the messages copied into their own buffer: a gathered string column keeps the whole text buffer of
    # `lines` alive (a staged run holds its samples' excerpts of every part: 4x the peak memory without)
    per_point = (picked.group_by("point", maintain_order=True)
                 .agg(pl.col("total").first().alias("log_total"),
                      pl.struct(pl.col("timestamp").dt.strftime(SAMPLE_TIME_FORMAT).alias("time"),
                                pl.col("source").cast(pl.Utf8), pl.col("severity").cast(pl.Utf8),
                                pl.format("{}", "message").alias("message")).alias("log_lines")))
    return (points.with_row_index("point").with_columns(pl.col("point").cast(pl.Int64))
            .join(per_point, on="point", how="left", maintain_order="left")
            .with_columns(pl.col("log_total").fill_null(0),
                          pl.col("log_lines").fill_null(pl.lit([], dtype=per_point.schema["log_lines"])))
            .drop("point"))


EXCERPT_LINE_FORMAT = "{} {} {}: {}"  # how the texts show an excerpt line: "time source severity: message"
EXCERPT_LINE_FIELDS = ("time", "source", "severity", "message")


def excerpt_line_text(line: dict) -> str:
    """One line of a sample's excerpt (a `log_lines` entry) as the texts show it."""
    return EXCERPT_LINE_FORMAT.format(*(line[f] for f in EXCERPT_LINE_FIELDS))


def excerpt_text_expr(lines: pl.Expr) -> pl.Expr:
    """`excerpt_line_text` over a `log_lines` column, the lines joined by newlines."""
    line = pl.element().struct
    return lines.list.eval(pl.format(EXCERPT_LINE_FORMAT, *(line.field(f) for f in EXCERPT_LINE_FIELDS))
                           ).list.join("\n")


__all__ = ["LogTemplates", "TemplateSpec", "load_log_templates", "parse_log_templates", "simulate_logs",
           "render_lines", "write_log_files", "write_logs_parquet", "write_logs_parts", "read_logs_parquet",
           "empty_logs", "log_excerpts", "sample_log_excerpts", "excerpt_line_text", "excerpt_text_expr",
           "EXCERPT_LINES",
           "LOG_STREAM", "EVENT_MARGIN_INTERVALS", "DEFAULT_TEMPLATES_PATH"]
