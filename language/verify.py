"""The verifier of grounded metrics explanations: answers checked against the sample's own data.

A grounded prompt shows one simulated sample (its snapshot, and from a staging folder the host's
recent window); the simulator knows its label (an anomaly kind, or "normal").  An answer is kept
only when what it claims agrees with that truth:

* **Movement** is measured on the sample, never taken from a fixed list per kind.  A metric MOVED
  when (a) the sample has a window for it (at least MIN_CONTEXT points before the snapshot) and the
  snapshot deviates from the median of those points by at least MOVED_Z robust units, a unit being
  the noise of the window (1.4826 * the median absolute deviation of its step-to-step changes,
  / sqrt(2)), at least 2 % of the median and at least the metric's reporting resolution; or (b) the
  snapshot lies outside the metric's NORMAL_RANGE, the range of the simulator's normal samples
  (rule (b) also catches an incident older than the window, whose window is already shifted).
* **Structured answers** (ANSWER_SCHEMA, JSON) are parsed and validated; the verdict is the label
  or one of its consequences (the kind module's `consequences`); every metric cited as anomalous or as
  evidence moved; every cited value lies within VALUE_TOLERANCE (relative) or half the metric's
  resolution (absolute), whichever is larger, of the data at the cited time (the snapshot when no
  time is given; a list of values must appear in the window in that order); the onset, when given,
  is not after the snapshot and, when the sample knows its onset, is within one step of it; a normal
  sample gets "healthy", severity "none", no onset and no anomalous metric.
* **Free text** is read clause by clause: phrases match whole words only; a negation ("not", "no",
  "n't", "without", "ruled out", ...) covers what follows it up to the end of its clause, and "no
  doubt", "not only" and the like are no negations; a hedge ("possibly", "maybe", "could be") in a
  clause, or a trailing "or maybe not", leaves its kind unasserted; questions are not claims, so an
  answer that only echoes the question commits to nothing.  A kind phrase ("memory leak", "vemkd
  crashed") names a kind and is not also read as naming a metric.  An anomalous sample's answer
  asserts the labelled kind, names at least one metric that moved and no metric as moving that did
  not (a metric in a clause that calls it steady, normal or unchanged is a contrast, not a claim),
  and mentions no other kind unless it is a consequence of the label.  A normal sample's answer says
  the host is healthy (fine, normal, nothing needs attention, ...), not "unhealthy" or "not
  healthy", and names no incident.

The result says accept or reject and every reason found.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Mapping, Protocol

import orjson

from datasafe.yamlcheck import Validator, read_yaml

from .domain import DATA_DIR, MAX_FILE_BYTES
from .errors import ConfigError

# robust units the snapshot must deviate from its window's median; benchmarks/bench_verifier.py
# compares the moved metrics with the simulator's truth (at 4, 16 % were not the incident's; at 6, 11 %)
MOVED_Z = 6.0
MIN_CONTEXT = 3        # window points before the snapshot needed to judge a metric by its window
VALUE_TOLERANCE = 0.02  # a cited value may differ from the data by 2 % (or half the resolution)
SEVERITIES = ("none", "low", "medium", "high", "critical")
# The range of each metric over the simulator's normal samples: the 0.5 % and 99.5 % quantiles of the
# 5,600 normal samples of three runs (`python -m simulator --samples N --seed S` for N, S = 4000, 11;
# 1500, 17; 1500, 23), rounded outwards.  Hosts differ (a compute host may run at 90 % CPU), so a
# range is wide and rule (b) catches only what no normal host shows; tests/test_verify.py holds the
# ranges against a fresh simulation. Idle and database hosts report a small quiet JVM (heap from 13.5 %).
NORMAL_RANGES: dict[str, tuple[float, float]] = {
    "cpu_usage": (0.0, 92.5), "memory_usage": (8.0, 83.0), "disk_usage": (20.0, 73.0),
    "load_average": (0.0, 24.5), "java_heap_usage": (13.5, 88.0), "java_gc_time": (0.0, 2.7),
    "spectrum_active_jobs": (0.0, 2.0), "vemkd_process_count": (3.0, 9.0),
    "network_in_mbps": (0.0, 425.0), "network_out_mbps": (0.0, 410.0), "network_latency_ms": (0.18, 2.0),
}


def _verdicts() -> list[str]:
    from simulator.anomalies import ANOMALY_KINDS
    return ["healthy", *ANOMALY_KINDS]


def _metric_names() -> list[str]:
    from simulator.catalogue import METRICS
    return list(METRICS)


def answer_schema() -> dict:
    """The JSON schema of a structured answer (draft 2020-12; the subset every backend's
    structured-output mode accepts)."""
    metric = {"type": "string", "enum": _metric_names()}
    time = {"type": ["string", "null"], "maxLength": 40}
    evidence = {
        "type": "object",
        "properties": {"metric": metric, "value": {"type": "number"},
                       "values": {"type": "array", "items": {"type": "number"}, "minItems": 1, "maxItems": 64},
                       "time": time},
        "required": ["metric"],
        "anyOf": [{"required": ["value"]}, {"required": ["values"]}],
        "additionalProperties": False,
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "grounded metrics explanation",
        "type": "object",
        "properties": {
            "verdict": {"type": "string", "enum": _verdicts()},
            "anomalous_metrics": {"type": "array", "items": metric, "maxItems": 11},
            "evidence": {"type": "array", "items": evidence, "maxItems": 32},
            "onset": time,
            "severity": {"type": "string", "enum": list(SEVERITIES)},
            "check_first": {"type": "string", "maxLength": 2000},
            "explanation": {"type": "string", "minLength": 1, "maxLength": 8000},
        },
        "required": ["verdict", "anomalous_metrics", "evidence", "onset", "severity", "check_first",
                     "explanation"],
        "additionalProperties": False,
    }


ANSWER_SCHEMA: dict = answer_schema()
ANSWER_SCHEMA_NAME = "grounded_answer"  # what a backend's structured-output request calls it (a tool name)


# ------------------------------------------------------------------------------------ results
@dataclass(frozen=True)
class Result:
    accepted: bool
    reasons: tuple[str, ...] = ()

    def reason(self) -> str | None:
        return None if self.accepted else "; ".join(self.reasons)


def _result(reasons: list[str]) -> Result:
    return Result(not reasons, tuple(dict.fromkeys(reasons)))


class Vocabulary(Protocol):
    kinds: Mapping[str, tuple[str, ...]]
    metrics: Mapping[str, tuple[str, ...]]
    healthy: tuple[str, ...]
    related: Mapping[str, tuple[str, ...]]


def related_kinds() -> dict[str, tuple[str, ...]]:
    """kind -> the kinds it may drive (each kind module's `consequences`)."""
    from simulator.anomalies import ANOMALY_KINDS

    return {name: kind.consequences for name, kind in ANOMALY_KINDS.items()}


# ------------------------------------------------------------------------------------ samples
@dataclass(frozen=True)
class Sample:
    """What the verifier knows of one sample: its label and the values the prompt showed."""

    label: str                                    # an anomaly kind, or "normal"
    snapshot: Mapping[str, float]
    time: str | None = None                       # the snapshot's time (HH:MM or ISO)
    window_times: tuple[str, ...] = ()            # oldest first, the last one the snapshot's
    window: Mapping[str, tuple[float, ...]] = field(default_factory=dict)
    interval_min: float = 5.0
    onset: str | None = None                      # the incident's first step, when the source knows it


def sample_from_dict(sample: Mapping[str, Any], label: str) -> Sample:
    """A Sample from a grounded-prompt sample (language/grounding.py: JSON or staged); the onset from
    the sample's targets (minutes since onset) when it carries them."""
    window = sample.get("window") or {}
    onset = sample.get("onset")
    since = (sample.get("targets") or {}).get("minutes_since_onset")
    if onset is None and since is not None and sample.get("timestamp"):
        at = datetime.fromisoformat(str(sample["timestamp"]).replace("Z", "+00:00"))
        onset = (at - timedelta(minutes=float(since))).strftime("%H:%M")
    return Sample(label, {m: _number(v) for m, v in sample["metrics"].items()}, sample.get("timestamp"),
                  tuple(window.get("time", ())),
                  {m: tuple(_number(x) for x in vs) for m, vs in window.get("metrics", {}).items()},
                  float(sample.get("interval_min", 5.0)), onset)


def _number(v: Any) -> float:
    """A value as the prompt printed it; a missing reading ("-" or None) is NaN."""
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


@functools.lru_cache(maxsize=1)
def _resolutions() -> dict[str, float]:
    from simulator.config import load_config
    return {m.name: float(m.resolution) for m in load_config().metrics}


def movement(sample: Sample) -> dict[str, float]:
    """Per metric of the snapshot: how far it moved, in robust units of its window (rule (a)), or
    inf when it lies outside the normal range (rule (b)), or 0."""
    res = _resolutions()
    out = {}
    for m, x in sample.snapshot.items():
        score = 0.0
        series = [v for v in sample.window.get(m, ())[:-1] if math.isfinite(v)] + [x]
        if not math.isfinite(x):
            out[m] = 0.0
            continue
        if len(series) > MIN_CONTEXT:
            ctx = sorted(series[:-1])
            med = _median(ctx)
            steps = [b - a for a, b in zip(series[:-2], series[1:-1])]
            noise = 1.4826 * _median([abs(s - _median(steps)) for s in steps]) / math.sqrt(2) if steps else 0.0
            score = abs(x - med) / max(noise, 0.02 * abs(med), res.get(m, 0.01))
        lo, hi = NORMAL_RANGES.get(m, (-math.inf, math.inf))
        out[m] = math.inf if not lo <= x <= hi else score
    return out


def moved_metrics(sample: Sample) -> tuple[str, ...]:
    """The metrics that moved in this sample (see the module's docstring), in the catalogue's order."""
    score = movement(sample)
    return tuple(m for m in _metric_names() if score.get(m, 0.0) >= MOVED_Z)


def _median(xs: list[float]) -> float:
    s = sorted(xs)
    n = len(s)
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2.0


def _minutes(t: str | None) -> int | None:
    """Minutes of the day of a time given as HH:MM, HH:MM:SS or an ISO timestamp; None when none."""
    if not t:
        return None
    found = re.search(r"(?:^|[T\s])(\d{1,2}):(\d{2})(?::\d{2}(?:\.\d+)?)?", str(t).strip())
    if not found or int(found[1]) > 23 or int(found[2]) > 59:
        return None
    return int(found[1]) * 60 + int(found[2])


# --------------------------------------------------------------------------- schema validation
def _check(node: Any, schema: Mapping, path: str) -> str | None:
    """The first way `node` breaks `schema` (the subset answer_schema uses), or None."""
    types = schema.get("type")
    if types is not None:
        names = types if isinstance(types, list) else [types]
        if not any(_is_type(node, t) for t in names):
            return f"{path or '(answer)'}: expected {' or '.join(names)}, got {_json_type(node)}"
    if "enum" in schema and node not in schema["enum"]:
        return f"{path}: {node!r} is not one of {', '.join(map(str, schema['enum']))}"
    if isinstance(node, str):
        if len(node) < schema.get("minLength", 0):
            return f"{path}: empty"
        if len(node) > schema.get("maxLength", math.inf):
            return f"{path}: longer than {schema['maxLength']} characters"
    if isinstance(node, list):
        if len(node) < schema.get("minItems", 0):
            return f"{path}: fewer than {schema['minItems']} items"
        if len(node) > schema.get("maxItems", math.inf):
            return f"{path}: more than {schema['maxItems']} items"
        for i, x in enumerate(node):
            problem = _check(x, schema.get("items", {}), f"{path}[{i}]")
            if problem:
                return problem
    if isinstance(node, dict):
        for k in schema.get("required", ()):
            if k not in node:
                return f"{path + '.' if path else ''}{k}: missing"
        props = schema.get("properties", {})
        if schema.get("additionalProperties") is False:
            extra = [k for k in node if k not in props]
            if extra:
                return f"{path + '.' if path else ''}{extra[0]}: unknown key"
        for k, sub in props.items():
            if k in node:
                problem = _check(node[k], sub, f"{path + '.' if path else ''}{k}")
                if problem:
                    return problem
        options = schema.get("anyOf")
        if options and all(_check(node, o, path) for o in options):
            return f"{path}: needs {' or '.join(o['required'][0] for o in options)}"
    return None


def _is_type(node: Any, name: str) -> bool:
    if name == "number":
        return isinstance(node, (int, float)) and not isinstance(node, bool) and math.isfinite(node)
    return {"string": str, "object": dict, "array": list, "null": type(None)}[name] is type(node)


def _json_type(node: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null",
            int: "number", float: "number"}.get(type(node), type(node).__name__)


def parse_answer(text: str) -> tuple[dict | None, str | None]:
    """(the structured answer, None) or (None, why it is not one): JSON, then the schema."""
    body = text.strip()
    fenced = re.fullmatch(r"```(?:json)?\s*(.*?)\s*```", body, re.S)
    if fenced:
        body = fenced[1]
    try:
        answer = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        return None, f"structured: not JSON ({str(exc).splitlines()[0]})"
    problem = _check(answer, ANSWER_SCHEMA, "")
    return (None, f"structured: schema: {problem}") if problem else (answer, None)


def looks_structured(text: str) -> bool:
    return text.lstrip().startswith(("{", "```"))


# ---------------------------------------------------------------------------- structured answers
def verify_structured(answer: str | Mapping, sample: Sample, vocab: Vocabulary,
                      moved: tuple[str, ...] | None = None) -> Result:
    """Accept a structured answer (JSON text or its parsed object) that agrees with the sample's data.

    `moved` replaces the movement measured on the sample when the caller has only the label and the
    moved metrics (a sample without a snapshot): the values are then not checked."""
    if isinstance(answer, str):
        answer, problem = parse_answer(answer)
        if problem:
            return Result(False, (problem,))
    else:
        problem = _check(answer, ANSWER_SCHEMA, "")
        if problem:
            return Result(False, (f"structured: schema: {problem}",))
    moved = moved_metrics(sample) if moved is None else tuple(moved)
    reasons: list[str] = []
    verdict, label = answer["verdict"], sample.label
    cited = list(dict.fromkeys([*answer["anomalous_metrics"], *(e["metric"] for e in answer["evidence"])]))
    if label == "normal":
        if verdict != "healthy":
            reasons.append(f"verdict {verdict} on a normal sample")
        if answer["anomalous_metrics"]:
            reasons.append(f"anomalous_metrics {answer['anomalous_metrics']} on a normal sample")
        if answer["onset"] is not None:
            reasons.append("an onset on a normal sample")
        if answer["severity"] != "none":
            reasons.append(f"severity {answer['severity']} on a normal sample")
    else:
        allowed = (label, *vocab.related.get(label, ()))
        if verdict != label and verdict not in allowed:
            reasons.append(f"verdict {verdict}, the sample is a {label}")
        if verdict != "healthy" and answer["severity"] == "none":
            reasons.append(f"severity none for a {verdict}")
        if not answer["anomalous_metrics"]:
            reasons.append("no anomalous metric named")
        for m in cited:
            if m not in moved:
                reasons.append(f"cites {m}, which did not move in this sample (moved: {', '.join(moved) or 'none'})")
        reasons += _onset_problems(answer["onset"], sample)
    for i, e in enumerate(answer["evidence"] if sample.snapshot else ()):
        reasons += _evidence_problems(i, e, sample)
    kinds = _kind_claims(_clauses(answer["explanation"]), vocab)
    own = {verdict, label, *vocab.related.get(verdict, ()), *vocab.related.get(label, ())}
    stray = sorted(k for k, state in kinds.items() if state in ("asserted", "hedged") and k not in own)
    if stray:
        reasons.append(f"the explanation claims {stray[0]}, the verdict is {verdict}")
    return _result([f"structured: {r}" if not r.startswith("structured:") else r for r in reasons])


def _onset_problems(onset: str | None, sample: Sample) -> list[str]:
    if onset is None:
        return []
    at = _minutes(onset)
    if at is None:
        return [f"onset {onset!r} is not a time"]
    snap = _minutes(sample.time or (sample.window_times[-1] if sample.window_times else None))
    step = sample.interval_min
    if snap is not None and (snap - at) % 1440 > 720:
        return [f"onset {onset} is after the sample ({sample.time})"]
    truth = _minutes(sample.onset)
    if truth is not None and min((at - truth) % 1440, (truth - at) % 1440) > step + 1e-9:
        return [f"onset {onset} is more than one step from the incident's onset {sample.onset}"]
    return []


def _evidence_problems(i: int, e: Mapping, sample: Sample) -> list[str]:
    m, res = e["metric"], _resolutions().get(e["metric"], 0.01)
    series = _series(sample, m)
    if not series:
        return [f"evidence[{i}]: no {m} value in the sample"]
    cited_at = _minutes(e.get("time"))
    if e.get("time") is not None and cited_at is None:
        return [f"evidence[{i}]: time {e['time']!r} is not a time"]

    def close(cited: float, actual: float) -> bool:
        return abs(cited - actual) <= max(VALUE_TOLERANCE * abs(actual), res / 2) + 1e-9

    if "value" in e:
        at = series[-1] if cited_at is None else next((p for p in series if p[0] == cited_at), None)
        if at is None:
            return [f"evidence[{i}]: no {m} value at {e['time']} in the sample"]
        if not close(e["value"], at[1]):
            return [f"evidence[{i}]: {m} = {e['value']:g}{' at ' + e['time'] if e.get('time') else ''}, "
                    f"the data says {at[1]:g}"]
    if "values" in e:
        end = len(series) if cited_at is None else next((j + 1 for j, p in enumerate(series) if p[0] == cited_at), 0)
        j = 0
        for x in e["values"]:  # each value found in the window, in order, up to the cited time
            while j < end and not close(x, series[j][1]):
                j += 1
            if j == end:
                return [f"evidence[{i}]: {m} values {e['values']} are not in the sample's data in that order"]
            j += 1
    return []


def _series(sample: Sample, metric: str) -> list[tuple[int | None, float]]:
    """(minutes of the day, value) of `metric` over what the sample shows, the snapshot last."""
    values = sample.window.get(metric)
    if values and len(values) == len(sample.window_times):
        return [(_minutes(t), float(v)) for t, v in zip(sample.window_times, values)]
    if metric in sample.snapshot:
        t = sample.time or (sample.window_times[-1] if sample.window_times else None)
        return [(_minutes(t), float(sample.snapshot[metric]))]
    return []


# --------------------------------------------------------------------------------- free text
NEGATORS = {"no", "not", "never", "none", "nor", "neither", "without", "nothing", "cannot", "ruled", "rule",
            "excluded", "exclude", "absence", "lack"}
NOT_NEGATIONS = ("no doubt", "without doubt", "without a doubt", "without any doubt", "no question",
                 "not only", "not just", "no wonder", "nothing but", "no mistake")
HEDGES = ("possibly", "maybe", "perhaps", "might", "could", "may", "unsure", "unclear", "uncertain",
          "not sure", "hard to say", "cannot tell", "can't tell", "cannot say", "can't say", "either", "whether")
BREAKERS = ("but", "however", "although", "though", "whereas", "while", "yet", "because", "since", "which",
            "so", "instead", "rather")
RESTARTS = ("this", "it", "there", "the", "we", "its", "i")  # "and <restart>": a new clause
# a clause that calls a metric steady mentions it as a contrast, not as a metric that moved
STEADY = re.compile(r"\b(unchanged|unaffected|steady|stable|flat)\b|\b(is|are|was|were|stays?|stayed|remains?|remained"
                    r"|looks?|seems?|holds?|held)\s+(\w+\s+)?(normal|fine|ok|okay|healthy|quiet|as expected"
                    r"|within (the )?normal( range)?|where it was|as usual)\b")
# a clause of advice ("check the heap", "look at the disk") names what to inspect, not what moved
ADVICE = re.compile(r"^(then |first |next |also |and )?(check|look|verify|confirm|inspect|review|restart|compare"
                    r"|watch|escalate|monitor|capture|take|collect|run|open|see|keep|make sure|consider|dump)\b"
                    r"|\b(check|inspect|look at|verify|review)\b")
HEALTHY_MORE = ("fine", "all good", "all clear", "nothing needs attention", "nothing to do", "no action needed",
                "nothing wrong", "nothing abnormal", "nothing to worry about", "ok", "okay", "in good shape",
                "running normally", "operating normally", "behaving normally")
UNHEALTHY = ("unhealthy", "abnormal", "anomalous", "anomaly", "incident", "degraded", "failing", "outage",
             "critical", "urgent", "needs attention", "need attention", "requires attention", "paging",
             "escalate", "problem", "issue", "wrong", "at risk", "investigate", "page on-call", "page the on-call",
             "wake the on-call", "act now")
NOT_NEGATIONS_RE = re.compile(r"\b(" + "|".join(re.escape(i) for i in NOT_NEGATIONS) + r")\b")
BREAKERS_RE = re.compile(r"\b(" + "|".join(BREAKERS) + r")\b")
RESTART_RE = re.compile(r"\band (?=(" + "|".join(RESTARTS) + r")\b)")
HEDGE_RE = re.compile(r"\b(" + "|".join(re.escape(h) for h in HEDGES) + r")\b")
COPULAS = ("is", "was", "are", "were", "seems", "appears", "looks", "be")
TOKEN = re.compile(r"[a-z0-9_]+(?:[-'][a-z0-9_]+)*")


@dataclass
class _Clause:
    text: str          # lower case, normalised
    question: bool     # part of a question: no claim
    advice: bool       # part of a sentence of advice ("Check the disk and the network"): names no movement
    carried_negation: bool  # a list item after a negated clause ("no leak, disk full or GC storm")


def _normalise(text: str) -> str:
    """Lower case, plain quotes, no markdown marks, and the idioms that look like negations replaced."""
    text = text.lower().replace("\u2019", "'").replace("\u2018", "'")
    text = NOT_NEGATIONS_RE.sub(" assuredly ", re.sub(r"[*`#>|]+", " ", text))
    return re.sub(r"[ \t]+", " ", text)


def _clauses(text: str) -> list[_Clause]:
    """Clauses of `text`: sentences split at semicolons, colons, dashes, commas and clause words.

    A comma segment of a few words right after a negated one (a list: "no leak, disk full or GC
    storm") stays under that negation."""
    out: list[_Clause] = []
    for sentence, end in re.findall(r"(.*?)([.!?]+(?=\s|$)|\n|$)", _normalise(text), re.S):
        if not sentence.strip():
            continue
        question = "?" in end
        advice = bool(ADVICE.match(sentence.strip()))
        for part in re.split(r"[;:()\[\]]|\s[-\u2013\u2014]+\s|\u2014", sentence):
            part = RESTART_RE.sub("|", BREAKERS_RE.sub(r"|\1", part))
            prev_negated = False
            for seg in re.split(r"\|", part):
                for j, piece in enumerate(seg.split(",")):
                    if not piece.strip():
                        continue
                    words = TOKEN.findall(piece)
                    carried = (j > 0 and prev_negated and len(words) <= 6
                               and not any(w in COPULAS or w in RESTARTS or "'" in w for w in words))
                    out.append(_Clause(piece.strip(), question, advice, carried))
                    prev_negated = _has_negator(words) or carried
                prev_negated = False
    return out


def _has_negator(words: list[str]) -> bool:
    return any(w in NEGATORS or w.endswith("n't") for w in words)


def _phrase_spans(text: str, phrase: str) -> list[tuple[int, int]]:
    """Where `phrase` occurs in `text` as whole words."""
    if phrase not in text:
        return []
    return [(m.start(), m.end()) for m in _phrase_pattern(phrase).finditer(text)]


@functools.lru_cache(maxsize=4096)
def _phrase_pattern(phrase: str) -> re.Pattern:
    return re.compile(r"(?<![a-z0-9_'-])" + re.escape(phrase) + r"(?![a-z0-9_]|-[a-z0-9])")


def _hedged(text: str) -> bool:
    return bool(HEDGE_RE.search(text))


def _state(clause: _Clause, start: int, end: int) -> str:
    """'negated', 'hedged' or 'asserted': what the clause does with the phrase at [start, end)."""
    before = TOKEN.findall(clause.text[:start])
    after = TOKEN.findall(clause.text[end:])
    if clause.question:
        return "hedged"
    if (_has_negator(before) or clause.carried_negation
            or (after[:1] and after[0] in COPULAS and _has_negator(after[1:4]))
            or (after[:1] == ["ruled"]) or "unlikely" in after[:3] or "excluded" in after[:3]):
        return "negated"
    if _hedged(clause.text):
        return "hedged"
    return "asserted"


def _kind_claims(clauses: list[_Clause], vocab: Vocabulary,
                 spans: dict[int, list[tuple[int, int]]] | None = None) -> dict[str, str]:
    """kind -> 'asserted' (some mention asserts it), else 'hedged', else 'negated'; longest phrases
    first, a text span counted once (its spans recorded in `spans` by clause index)."""
    rank = {"negated": 0, "hedged": 1, "asserted": 2}
    phrases = sorted(((p, k) for k, ps in vocab.kinds.items() for p in ps), key=lambda pk: -len(pk[0]))
    found: dict[str, str] = {}
    for ci, clause in enumerate(clauses):
        taken: list[tuple[int, int]] = []
        for phrase, kind in phrases:
            for s, e in _phrase_spans(clause.text, phrase):
                if any(s < te and ts < e for ts, te in taken):
                    continue
                taken.append((s, e))
                state = _state(clause, s, e)
                found[kind] = max(found.get(kind, state), state, key=rank.__getitem__)
        if spans is not None:
            spans[ci] = taken
    _retractions(clauses, vocab, found)
    return found


def _retractions(clauses: list[_Clause], vocab: Vocabulary, found: dict[str, str]) -> None:
    """"X, or maybe not": a clause that only takes back the one before leaves its kinds unasserted."""
    for prev, clause in zip(clauses, clauses[1:]):
        if re.fullmatch(r"(or )?(maybe |perhaps |possibly |probably )?(not|no)( really| at all)?", clause.text):
            for kind, phrases in vocab.kinds.items():
                if found.get(kind) == "asserted" and any(_phrase_spans(prev.text, p) for p in phrases):
                    found[kind] = "hedged"


def _metric_claims(clauses: list[_Clause], vocab: Vocabulary,
                   kind_spans: dict[int, list[tuple[int, int]]]) -> set[frozenset]:
    """The metrics the answer says moved: per mention outside a kind phrase, outside questions and
    advice, not called steady and not negated ("no vemkd processes" is a drop, so it counts), the set
    of metrics its phrase may name ("network" is in and out)."""
    by_phrase: dict[str, set[str]] = {}
    for m, ps in vocab.metrics.items():
        for p in ps:
            by_phrase.setdefault(p, set()).add(m)
    ordered = sorted(by_phrase, key=len, reverse=True)
    claimed = set()
    for ci, clause in enumerate(clauses):
        if clause.question or clause.advice or ADVICE.search(clause.text):
            continue
        taken = list(kind_spans.get(ci, []))
        steady = bool(STEADY.search(clause.text))
        for phrase in ordered:
            for s, e in _phrase_spans(clause.text, phrase):
                if any(s < te and ts < e for ts, te in taken):
                    continue
                taken.append((s, e))
                names = frozenset(by_phrase[phrase])
                state = _state(clause, s, e)
                dropped = TOKEN.findall(clause.text[:s])[-1:] in (["no"], ["zero"])  # "no vemkd processes"
                if not steady and (state != "negated" or dropped):
                    claimed.add(names)
    return claimed


def _health_claims(clauses: list[_Clause], vocab: Vocabulary) -> tuple[bool, bool, bool]:
    """(says healthy, says unhealthy, hedges on health)."""
    healthy = unhealthy = hedged = False
    phrases = sorted(set(vocab.healthy) | set(HEALTHY_MORE), key=len, reverse=True)
    for clause in clauses:
        if clause.question:
            continue
        taken: list[tuple[int, int]] = []
        for phrase in phrases:
            for s, e in _phrase_spans(clause.text, phrase):
                if any(s < te and ts < e for ts, te in taken):
                    continue
                taken.append((s, e))
                state = _state(clause, s, e) if not phrase.startswith(("no ", "nothing ")) else (
                    "hedged" if _hedged(clause.text) else "asserted")
                healthy |= state == "asserted"
                unhealthy |= state == "negated"
                hedged |= state == "hedged"
        for phrase in UNHEALTHY:
            for s, e in _phrase_spans(clause.text, phrase):
                if any(s < te and ts < e for ts, te in taken):
                    continue
                state = _state(clause, s, e)
                unhealthy |= state == "asserted"
                hedged |= state == "hedged"
    return healthy, unhealthy, hedged


def verify_text(text: str, label: str, moved: tuple[str, ...], vocab: Vocabulary) -> Result:
    """Accept a free-text answer that agrees with the label and the metrics that moved."""
    clauses = _clauses(text)
    claims = [c for c in clauses if not c.question and TOKEN.search(c.text)]
    if not claims:
        return Result(False, ("echoes the question without answering it" if clauses else "empty answer",))
    spans: dict[int, list[tuple[int, int]]] = {}
    kinds = _kind_claims(clauses, vocab, spans)
    asserted = {k for k, s in kinds.items() if s == "asserted"}
    hedged = {k for k, s in kinds.items() if s == "hedged"}
    reasons: list[str] = []
    if label == "normal":
        healthy, unhealthy, hedged_health = _health_claims(clauses, vocab)
        if asserted or hedged:
            reasons.append(f"invents an incident ({sorted(asserted or hedged)[0]}) on a normal sample")
        if unhealthy:
            reasons.append("calls the normal sample unhealthy")
        elif not healthy:
            reasons.append("hedges on whether the normal sample is healthy" if hedged_health
                           else "does not say the normal sample is healthy")
        return _result(reasons)
    related = set(vocab.related.get(label, ()))
    if label not in asserted:
        state = kinds.get(label)
        reasons.append({"hedged": f"hedges on {label} without committing to it",
                        "negated": f"denies the labelled kind {label}"}.get(state,
                                                                            f"does not name the labelled kind {label}"))
    others = sorted((asserted | hedged) - {label} - related)
    if others:
        reasons.append(f"claims another kind ({others[0]}) for a {label}")
    claimed = _metric_claims(clauses, vocab, spans)
    if not moved:
        reasons.append(f"no metric moved in this sample's data: the {label} label cannot be grounded")
    else:
        wrong = sorted(min(names) for names in claimed if not names & set(moved))
        if wrong:
            reasons.append(f"cites {wrong[0]}, which did not move in this sample (moved: {', '.join(moved)})")
        if not any(names & set(moved) for names in claimed):
            reasons.append(f"names no metric that moved ({', '.join(moved)})")
    return _result(reasons)


def verify_answer(text: str, sample: Sample, vocab: Vocabulary, structured: bool | None = None) -> Result:
    """A structured (JSON) or free-text answer about `sample`, verified against its data.

    `structured`: the answer was asked for as JSON (True: anything else is a rejection), as free
    text (False), or either (None: JSON when it looks like JSON)."""
    if structured or (structured is None and looks_structured(text)):
        return verify_structured(text, sample, vocab)
    return verify_text(text, sample.label, moved_metrics(sample), vocab)
