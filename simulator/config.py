"""Load `data_config/metrics.yaml` once, validate it, and freeze it into dataclasses.

Nothing past this module sees a raw dict.  Every error names the file and the key path
(`metrics.yaml: profiles.web_api.cpu_level: ...`), so a bad edit is found in one look.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

import orjson

from .anomalies import ANOMALY_KINDS
from .catalogue import HOST_PARAMETER_NAMES, HOST_PARAMETERS, METRIC_UNITS, METRICS
from datasafe.yamlcheck import Validator, read_yaml

from .errors import ConfigError

MAX_ANOMALY_SHARE = 0.5  # of a trace's points: above it anomalies are no longer the exception

DEFAULT_CONFIG_PATH = Path(__file__).resolve().parent.parent / "data_config" / "metrics.yaml"
MAX_CONFIG_BYTES = 1_000_000
METRIC_SEMANTICS = ("interval_average", "gauge", "damped_average")


@dataclass(frozen=True)
class MetricSpec:
    """How one metric is reported: unit, hard bounds, integrality and resolution."""

    name: str
    unit: str
    lower: float
    upper: float  # math.inf where the bound comes from the host (link capacity, load)
    integer: bool
    resolution: float
    semantics: str
    description: str


@dataclass(frozen=True)
class ProfileSpec:
    """A kind of host and its share of the population; one (lo, hi) range per host parameter."""

    name: str
    share: float
    description: str
    ranges: tuple[tuple[float, float], ...]  # in catalogue.HOST_PARAMETER_NAMES order


@dataclass(frozen=True)
class AnomalySpec:
    """An anomaly kind as configured: its share of events, duration and severity ranges."""

    kind: str
    share: float
    duration_minutes: tuple[float, float]
    severity: tuple[float, float]
    min_peak_deviation: float
    params: Any  # the kind's own frozen parameter dataclass
    profiles: tuple[str, ...] = ()  # the host profiles it can happen on (the config's `profiles:` list)
    sample_after_minutes: float = 0.0  # its samples are taken at least this long after its start


@dataclass(frozen=True)
class SimulationSpec:
    interval_s: float
    start_epoch_s: float
    trace_days: float
    samples_per_host: int
    anomaly_ratio: float
    seed: int
    context_steps: int = 12   # the last hour at 5 minutes: each sample's fine context
    history_hours: int = 24   # hourly means of the last day: each sample's coarse history
    hard_negative_share: float = 0.0  # share of normal samples drawn from the busiest healthy moments
    trace_anomaly_share: float = 0.02  # share of anomalous points in `traces` (the --anomaly-share default)


@dataclass(frozen=True)
class SimConfig:
    source: str
    simulation: SimulationSpec
    metrics: tuple[MetricSpec, ...]
    profiles: tuple[ProfileSpec, ...]
    anomalies: tuple[AnomalySpec, ...]
    config_hash: str

    def anomaly(self, kind: str) -> AnomalySpec:
        for spec in self.anomalies:
            if spec.kind == kind:
                return spec
        raise KeyError(kind)

    def metric(self, name: str) -> MetricSpec:
        for spec in self.metrics:
            if spec.name == name:
                return spec
        raise KeyError(name)


# ------------------------------------------------------------------------------ loading
def load_config(path: str | Path | None = None) -> SimConfig:
    """Read and validate a metrics config; `None` means the shipped defaults."""
    path = Path(path) if path is not None else DEFAULT_CONFIG_PATH
    source = path.name if path == DEFAULT_CONFIG_PATH else str(path)
    data = read_yaml(path, source, ConfigError, MAX_CONFIG_BYTES)
    return parse_config(data, source)


def parse_config(data: Any, source: str = "<config>") -> SimConfig:
    """Validate an already-parsed YAML document into a SimConfig."""
    v = Validator(source, ConfigError)
    root = v.mapping(data, "", required=("simulation", "metrics", "profiles", "anomalies"),
                     optional=("profile_defaults",))
    simulation = _parse_simulation(v, root["simulation"])
    metrics = _parse_metrics(v, root["metrics"])
    profiles = _parse_profiles(v, root.get("profile_defaults") or {}, root["profiles"])
    anomalies = _parse_anomalies(v, root["anomalies"], tuple(p.name for p in profiles))
    canonical = orjson.dumps(
        {"simulation": dataclasses.asdict(simulation),
         "metrics": [dataclasses.asdict(m) for m in metrics],
         "profiles": [dataclasses.asdict(p) for p in profiles],
         "anomalies": [{**dataclasses.asdict(a), "params": dataclasses.asdict(a.params)} for a in anomalies]},
        option=orjson.OPT_SORT_KEYS | orjson.OPT_SERIALIZE_NUMPY,
        default=_json_default,
    )
    config_hash = hashlib.sha256(canonical).hexdigest()[:16]
    return SimConfig(source, simulation, metrics, profiles, anomalies, config_hash)


def _kind_profiles(v: Validator, node: Any, key: str, *, kind: str, profile_names: tuple[str, ...]) -> tuple[str, ...]:
    """The host profiles an anomaly kind can happen on, in the config's profile order (none given: all)."""
    if node is None:
        return profile_names
    if not isinstance(node, list) or not node:
        v.fail(f"{key}.profiles", "expected a non-empty list of host profile names")
    names = [v.string(name, f"{key}.profiles") for name in node]
    for name in names:
        if name not in profile_names:
            v.fail(f"{key}.profiles", f"{kind} names the unknown host profile {name!r}; the profiles are "
                                      f"{', '.join(profile_names)}")
    return tuple(p for p in profile_names if p in names)


def _json_default(obj):
    if isinstance(obj, float) and math.isinf(obj):
        return "inf"
    raise TypeError


def _parse_simulation(v: Validator, node: Any) -> SimulationSpec:
    d = v.mapping(node, "simulation",
                  required=("interval_s", "start_time", "trace_days", "samples_per_host",
                            "anomaly_ratio", "seed"), optional=("context_steps", "history_hours", "hard_negative_share",
                                                      "trace_anomaly_share"))
    start = d["start_time"]
    if isinstance(start, datetime):
        start_dt = start if start.tzinfo else start.replace(tzinfo=timezone.utc)
    elif isinstance(start, str):
        try:
            start_dt = datetime.fromisoformat(start.replace("Z", "+00:00"))
        except ValueError:
            v.fail("simulation.start_time", f"not an ISO 8601 time: {start!r}")
        if start_dt.tzinfo is None:
            start_dt = start_dt.replace(tzinfo=timezone.utc)
    else:
        v.fail("simulation.start_time", f"expected an ISO 8601 time, got {type(start).__name__}")
    return SimulationSpec(
        interval_s=v.number(d["interval_s"], "simulation.interval_s", 1, 86400),
        start_epoch_s=start_dt.timestamp(),
        trace_days=v.number(d["trace_days"], "simulation.trace_days", 0.01, 3660),
        samples_per_host=v.whole(d["samples_per_host"], "simulation.samples_per_host", 1, 10**6),
        anomaly_ratio=v.number(d["anomaly_ratio"], "simulation.anomaly_ratio", 0, 1),
        seed=v.whole(d["seed"], "simulation.seed", 0, 2**63 - 1),
        context_steps=v.whole(d.get("context_steps", 12), "simulation.context_steps", 1, 2016),
        history_hours=v.whole(d.get("history_hours", 24), "simulation.history_hours", 0, 720),
        hard_negative_share=v.number(d.get("hard_negative_share", 0.0), "simulation.hard_negative_share", 0, 1),
        trace_anomaly_share=v.number(d.get("trace_anomaly_share", 0.02), "simulation.trace_anomaly_share",
                                     0, MAX_ANOMALY_SHARE),
    )


def _parse_metrics(v: Validator, node: Any) -> tuple[MetricSpec, ...]:
    d = v.mapping(node, "metrics")
    for name in d:
        if name not in METRICS:
            v.fail(f"metrics.{name}", f"unknown metric; the simulator produces {', '.join(METRICS)}")
    specs = []
    for name in METRICS:
        key = f"metrics.{name}"
        if name not in d:
            v.fail(key, "missing: every simulated metric needs an entry")
        m = v.mapping(d[name], key, required=("unit", "min", "max", "integer", "resolution", "semantics"),
                      optional=("description",))
        lower = v.number(m["min"], f"{key}.min", -1e12, 1e12)
        upper = math.inf if m["max"] is None else v.number(m["max"], f"{key}.max", -1e12, 1e12)
        if upper <= lower:
            v.fail(f"{key}.max", f"must be above min ({lower})")
        semantics = v.string(m["semantics"], f"{key}.semantics")
        if semantics not in METRIC_SEMANTICS:
            v.fail(f"{key}.semantics", f"{semantics!r} is not one of {', '.join(METRIC_SEMANTICS)}")
        unit = v.string(m["unit"], f"{key}.unit")
        if unit != METRIC_UNITS[name]:
            v.fail(f"{key}.unit", f"{unit!r}: the simulator produces {name} in {METRIC_UNITS[name]} (simulator/catalogue.py)")
        specs.append(MetricSpec(
            name=name, unit=unit, lower=lower, upper=upper,
            integer=v.boolean(m["integer"], f"{key}.integer"),
            resolution=v.number(m["resolution"], f"{key}.resolution", 0, 1e6),
            semantics=semantics, description=v.text(m.get("description", ""), f"{key}.description"),
        ))
    return tuple(specs)


def _parse_profiles(v: Validator, defaults_node: Any, node: Any) -> tuple[ProfileSpec, ...]:
    defaults = v.mapping(defaults_node, "profile_defaults", optional=HOST_PARAMETER_NAMES)
    for param, value in defaults.items():  # checked even where every profile overrides it
        lo_b, hi_b, _ = HOST_PARAMETERS[param]
        v.value_range(value, f"profile_defaults.{param}", lo_b, hi_b)
    d = v.mapping(node, "profiles")
    if not d:
        v.fail("profiles", "at least one host profile is needed")
    profiles = []
    for name, pnode in d.items():
        key = f"profiles.{name}"
        p = v.mapping(pnode, key, required=("share",), optional=("description", *HOST_PARAMETER_NAMES))
        share = v.number(p["share"], f"{key}.share", 0, 1e9)
        ranges = []
        for param in HOST_PARAMETER_NAMES:
            if param in p:
                value, pkey = p[param], f"{key}.{param}"
            elif param in defaults:
                value, pkey = defaults[param], f"profile_defaults.{param}"
            else:
                v.fail(f"{key}.{param}", "missing, and no profile_defaults entry either")
            lo_b, hi_b, _ = HOST_PARAMETERS[param]
            ranges.append(v.value_range(value, pkey, lo_b, hi_b))
        profiles.append(ProfileSpec(name, share, v.text(p.get("description", ""), f"{key}.description"),
                                    tuple(ranges)))
    total = sum(p.share for p in profiles)
    if total <= 0:
        v.fail("profiles", "the shares add up to 0")
    return tuple(dataclasses.replace(p, share=p.share / total) for p in profiles)


def _parse_anomalies(v: Validator, node: Any, profile_names: tuple[str, ...]) -> tuple[AnomalySpec, ...]:
    d = v.mapping(node, "anomalies")
    if not d:
        v.fail("anomalies", "at least one anomaly kind is needed")
    specs = []
    for kind, anode in d.items():
        key = f"anomalies.{kind}"
        if kind not in ANOMALY_KINDS:
            v.fail(key, f"unknown anomaly kind; known kinds: {', '.join(sorted(ANOMALY_KINDS))}")
        unit = ANOMALY_KINDS[kind]
        param_fields = tuple(f.name for f in dataclasses.fields(unit.params))
        a = v.mapping(anode, key, required=("share", "duration_minutes", "severity", "min_peak_deviation"),
                      optional=("description", "profiles", "sample_after_minutes", *param_fields))
        v.text(a.get("description", ""), f"{key}.description")
        duration = v.value_range(a["duration_minutes"], f"{key}.duration_minutes", 0.0, 1e6)
        if duration[0] <= 0:
            v.fail(f"{key}.duration_minutes", "must be positive")
        severity = v.value_range(a["severity"], f"{key}.severity", 0.0, 1.0)
        sample_after = v.number(a.get("sample_after_minutes", 0), f"{key}.sample_after_minutes", 0, 1e6)
        if sample_after >= duration[1]:
            v.fail(f"{key}.sample_after_minutes", f"must be below the longest duration ({duration[1]:g})")
        params = {}
        for f in dataclasses.fields(unit.params):
            if f.name in a:
                lo_b, hi_b = unit.params.bounds()[f.name]
                params[f.name] = v.number(a[f.name], f"{key}.{f.name}", lo_b, hi_b)
        specs.append(AnomalySpec(
            kind=kind, share=v.number(a["share"], f"{key}.share", 0, 1e9),
            duration_minutes=duration, severity=severity,
            min_peak_deviation=v.number(a["min_peak_deviation"], f"{key}.min_peak_deviation", 0, 1e6),
            params=unit.params(**params),
            profiles=_kind_profiles(v, a.get("profiles"), key, kind=kind, profile_names=profile_names),
            sample_after_minutes=sample_after,
        ))
    total = sum(s.share for s in specs)
    if total <= 0:
        v.fail("anomalies", "the shares add up to 0")
    return tuple(dataclasses.replace(s, share=s.share / total) for s in specs)
