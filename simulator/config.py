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
import yaml

from .anomalies import ANOMALY_KINDS
from .catalogue import HOST_PARAMETER_NAMES, HOST_PARAMETERS, METRICS
from .errors import ConfigError

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


@dataclass(frozen=True)
class SimulationSpec:
    interval_s: float
    start_epoch_s: float
    trace_days: float
    samples_per_host: int
    anomaly_ratio: float
    seed: int


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
    try:
        raw_bytes = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(source, "", "file not found") from None
    except IsADirectoryError:
        raise ConfigError(source, "", "is a directory, not a YAML file") from None
    except OSError as exc:
        raise ConfigError(source, "", f"cannot read: {exc.strerror}") from None
    if len(raw_bytes) > MAX_CONFIG_BYTES:
        raise ConfigError(source, "", f"{len(raw_bytes)} bytes; a config is at most {MAX_CONFIG_BYTES}")
    try:
        text = raw_bytes.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(source, "", f"not UTF-8 text (byte {exc.start})") from None
    try:
        data = yaml.load(text, Loader=_NoAliasSafeLoader)  # safe: a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(source, "", f"malformed YAML: {where}{problem}") from None
    except RecursionError:
        raise ConfigError(source, "", "malformed YAML: nested too deeply") from None
    except (ValueError, TypeError, OverflowError) as exc:
        # PyYAML's constructors raise these for well-formed but impossible scalars:
        # a date like 2026-13-45, `!!int x`, an integer literal of more than 4300 digits.
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise ConfigError(source, "", f"malformed YAML: bad value: {first}") from None
    return parse_config(data, source)


class _NoAliasSafeLoader(yaml.SafeLoader):
    """SafeLoader that refuses aliases: a config never needs them, and they enable YAML bombs."""

    def compose_node(self, parent, index):  # noqa: D401 - PyYAML hook
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None, None, "aliases (*name) are not allowed in a config", event.start_mark
            )
        return super().compose_node(parent, index)


def parse_config(data: Any, source: str = "<config>") -> SimConfig:
    """Validate an already-parsed YAML document into a SimConfig."""
    v = _Validator(source)
    root = v.mapping(data, "", required=("simulation", "metrics", "profiles", "anomalies"),
                     optional=("profile_defaults",))
    simulation = _parse_simulation(v, root["simulation"])
    metrics = _parse_metrics(v, root["metrics"])
    profiles = _parse_profiles(v, root.get("profile_defaults") or {}, root["profiles"])
    anomalies = _parse_anomalies(v, root["anomalies"])
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


def _json_default(obj):
    if isinstance(obj, float) and math.isinf(obj):
        return "inf"
    raise TypeError


def _parse_simulation(v: "_Validator", node: Any) -> SimulationSpec:
    d = v.mapping(node, "simulation",
                  required=("interval_s", "start_time", "trace_days", "samples_per_host",
                            "anomaly_ratio", "seed"), optional=())
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
    )


def _parse_metrics(v: "_Validator", node: Any) -> tuple[MetricSpec, ...]:
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
        specs.append(MetricSpec(
            name=name, unit=v.string(m["unit"], f"{key}.unit"), lower=lower, upper=upper,
            integer=v.boolean(m["integer"], f"{key}.integer"),
            resolution=v.number(m["resolution"], f"{key}.resolution", 0, 1e6),
            semantics=semantics, description=v.text(m.get("description", ""), f"{key}.description"),
        ))
    return tuple(specs)


def _parse_profiles(v: "_Validator", defaults_node: Any, node: Any) -> tuple[ProfileSpec, ...]:
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


def _parse_anomalies(v: "_Validator", node: Any) -> tuple[AnomalySpec, ...]:
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
                      optional=("description", *param_fields))
        v.text(a.get("description", ""), f"{key}.description")
        duration = v.value_range(a["duration_minutes"], f"{key}.duration_minutes", 0.0, 1e6)
        if duration[0] <= 0:
            v.fail(f"{key}.duration_minutes", "must be positive")
        severity = v.value_range(a["severity"], f"{key}.severity", 0.0, 1.0)
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
        ))
    total = sum(s.share for s in specs)
    if total <= 0:
        v.fail("anomalies", "the shares add up to 0")
    return tuple(dataclasses.replace(s, share=s.share / total) for s in specs)


# ---------------------------------------------------------------------------- validator
class _Validator:
    """Small typed accessors that raise ConfigError with the file and key path."""

    def __init__(self, source: str):
        self.source = source

    def fail(self, key: str, problem: str):
        raise ConfigError(self.source, key, problem)

    def mapping(self, node: Any, key: str, required: tuple[str, ...] = (),
                optional: tuple[str, ...] | None = None) -> Mapping[str, Any]:
        if not isinstance(node, dict):
            self.fail(key or "(top level)", f"expected a mapping, got {_type_name(node)}")
        for k in node:
            if not isinstance(k, str):
                self.fail(_join(key, str(k)), "keys must be strings")
        for k in required:
            if k not in node:
                self.fail(_join(key, k), "missing")
        if optional is not None:
            allowed = set(required) | set(optional)
            for k in node:
                if k not in allowed:
                    self.fail(_join(key, k), "unknown key")
        return node

    def number(self, value: Any, key: str, lo: float, hi: float) -> float:
        return float(self._checked_number(value, key, lo, hi))

    def whole(self, value: Any, key: str, lo: int, hi: int) -> int:
        """A whole number (`3` or `3.0`), returned as an exact int (seeds go up to 2^63 - 1)."""
        value = self._checked_number(value, key, lo, hi, integer=True)
        return value if isinstance(value, int) else int(value)

    def _checked_number(self, value: Any, key: str, lo: float, hi: float, integer: bool = False):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.fail(key, f"expected a number, got {_type_name(value)}")
        # an int may be too large for a float (math.isfinite(10**400) raises); compare it exactly
        if isinstance(value, float) and not math.isfinite(value):
            self.fail(key, f"must be finite, got {value}")
        if integer and isinstance(value, float) and value != int(value):
            self.fail(key, f"expected a whole number, got {value}")
        if not lo <= value <= hi:
            self.fail(key, f"{_show(value)} is outside [{_fmt(lo)}, {_fmt(hi)}]")
        return value

    def value_range(self, value: Any, key: str, lo: float, hi: float) -> tuple[float, float]:
        if isinstance(value, list):
            if len(value) != 2:
                self.fail(key, f"a range is [low, high], got {len(value)} items")
            a = self.number(value[0], key, lo, hi)
            b = self.number(value[1], key, lo, hi)
            if b < a:
                self.fail(key, f"range [{_fmt(a)}, {_fmt(b)}] is reversed")
            return (a, b)
        x = self.number(value, key, lo, hi)
        return (x, x)

    def string(self, value: Any, key: str) -> str:
        if not isinstance(value, str) or not value:
            self.fail(key, f"expected a non-empty string, got {_type_name(value)}")
        return value

    def text(self, value: Any, key: str) -> str:
        """Free text such as a description: any string, possibly empty."""
        if not isinstance(value, str):
            self.fail(key, f"expected text, got {_type_name(value)}")
        return value

    def boolean(self, value: Any, key: str) -> bool:
        if not isinstance(value, bool):
            self.fail(key, f"expected true or false, got {_type_name(value)}")
        return value


def _join(key: str, sub: str) -> str:
    return f"{key}.{sub}" if key else sub


def _type_name(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    return {dict: "a mapping", list: "a list", str: "text", bool: "true/false"}.get(
        type(value), type(value).__name__)


def _fmt(x: float) -> str:
    return f"{x:g}"


def _show(value: float) -> str:
    """A number for an error message; huge integers by their size, not their 400 digits."""
    if isinstance(value, int) and abs(value) >= 10**16:
        sign = "a negative" if value < 0 else "an"
        return f"{sign} integer of about {int(value.bit_length() * 0.30103) + 1} digits"
    return f"{value}"
