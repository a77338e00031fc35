"""Grounded metrics explanations: prompts built from simulated samples, answers checked against labels.

The simulator knows the truth of every sample (kind, which metrics moved); the prompt shows the
snapshot the way operators see it (a table, a Splunk search result, a monitoring alert); the answer
must name the labelled kind and a metric that moved and no other kind, or, for a normal sample, say
it is healthy and name no incident.  Phrases come from data_config/anomaly_vocabulary.yaml; a phrase
preceded by a negation ("no sign of a memory leak") does not count as naming it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson

from datasafe.yamlcheck import Validator, read_yaml

from .domain import DATA_DIR, MAX_FILE_BYTES, DomainContent
from .errors import ConfigError, LanguageError
from .items import AUDIENCE_LABELS, WorkItem, _hash

VOCABULARY_FILE = "anomaly_vocabulary.yaml"
NEGATIONS = {"no", "not", "without", "nor", "never", "none", "rule", "ruled", "isn't", "aren't", "wasn't",
             "absence", "free"}
FORMS = ("table", "splunk", "alert")
SOURCE_STREAM = 12  # SeedSequence spawn key of the sample choice
UNITS = {"cpu_usage": "%", "memory_usage": "%", "disk_usage": "%", "load_average": "", "java_heap_usage": "%",
         "java_gc_time": "%", "spectrum_active_jobs": "", "vemkd_process_count": "", "network_in_mbps": " Mbit/s",
         "network_out_mbps": " Mbit/s", "network_latency_ms": " ms"}
QUESTIONS = (
    "What is going on with this host, and what should the on-call engineer check first?",
    "Is this host healthy? If not, name the problem, the metrics that show it and the first checks.",
    "Explain what these readings mean for the service and whether anyone needs to act.",
)


@dataclass(frozen=True)
class Vocabulary:
    kinds: dict[str, tuple[str, ...]]
    metrics: dict[str, tuple[str, ...]]
    healthy: tuple[str, ...]


def load_vocabulary(data_dir: Path | None = None) -> Vocabulary:
    from simulator.anomalies import ANOMALY_KINDS
    from simulator.catalogue import METRICS

    d = Path(data_dir) if data_dir is not None else DATA_DIR
    source = VOCABULARY_FILE if d == DATA_DIR else str(d / VOCABULARY_FILE)
    v = Validator(source, ConfigError)
    root = v.mapping(read_yaml(d / VOCABULARY_FILE, source, ConfigError, MAX_FILE_BYTES), "",
                     required=("kinds", "metrics", "healthy"))
    kinds = v.mapping(root["kinds"], "kinds", required=tuple(ANOMALY_KINDS), optional=())
    metrics = v.mapping(root["metrics"], "metrics", required=METRICS, optional=())

    def phrases(node, key):
        if not isinstance(node, list) or not node:
            v.fail(key, "expected a non-empty list of phrases")
        return tuple(v.string(p, f"{key}[{i}]").lower() for i, p in enumerate(node))

    return Vocabulary({k: phrases(kinds[k], f"kinds.{k}") for k in kinds},
                      {m: phrases(metrics[m], f"metrics.{m}") for m in metrics},
                      phrases(root["healthy"], "healthy"))


def _mentions(text: str, phrase: str) -> bool:
    """`phrase` occurs as whole words, not right after a negation."""
    for match in re.finditer(r"(?<![a-z0-9_])" + re.escape(phrase) + r"(?![a-z0-9_])", text):
        clause = re.split(r"[.;:!?\n]", text[max(0, match.start() - 80):match.start()])[-1]
        if not NEGATIONS & set(re.findall(r"[a-z']+", clause)[-8:]):
            return True
    return False


def grounding_check(text: str, label: str, moved: tuple[str, ...], vocab: Vocabulary) -> str | None:
    """None when the answer agrees with the label, else the reason."""
    low = text.lower()
    named = {k for k, ps in vocab.kinds.items() if any(_mentions(low, p) for p in ps)}
    if label == "normal":
        if named:
            return f"grounding: invents an incident ({sorted(named)[0]}) on a normal sample"
        if not any(p in low for p in vocab.healthy):
            return "grounding: does not say the normal sample is healthy"
        return None
    if label not in named:
        return f"grounding: does not name the labelled kind {label}"
    own = set(vocab.kinds[label])
    others = {k for k in named - {label} if not set(vocab.kinds[k]) <= own}
    if others:
        return f"grounding: claims another kind ({sorted(others)[0]}) for a {label}"
    if not any(_mentions(low, p) or p in low for m in moved for p in vocab.metrics.get(m, ())):
        return f"grounding: names no metric that moved ({', '.join(moved)})"
    return None


def _render(form: str, sample: dict, rng: np.random.Generator) -> str:
    metrics = sample["metrics"]
    host = f"cn{int(rng.integers(1, 400)):03d}"
    if form == "table":
        rows = "\n".join(f"| {m} | {v}{UNITS.get(m, '')} |" for m, v in metrics.items())
        return f"Host {host}, 5-minute sample at {sample['timestamp']}:\n\n| metric | value |\n|---|---|\n{rows}"
    if form == "splunk":
        fields = " ".join(f"{m}={v}" for m, v in metrics.items())
        return (f"Splunk search: index=os_metrics host={host} earliest=-5m | stats latest(*) by host\n"
                f"Result: _time=\"{sample['timestamp']}\" host={host} {fields}")
    worst = max(metrics, key=lambda m: float(metrics[m]) if m.endswith(("usage", "time")) else 0.0)
    lines = "\n".join(f"  {m}: {v}{UNITS.get(m, '')}" for m, v in metrics.items())
    return (f"[ALERT] monitoring: host {host} at {sample['timestamp']}: review {worst} "
            f"({metrics[worst]}{UNITS.get(worst, '')})\nCurrent readings:\n{lines}")


def read_metric_samples(path: Path) -> list[dict]:
    try:
        data = orjson.loads(Path(path).read_bytes())
        samples = data["training_samples"]
        assert isinstance(samples, list)
    except FileNotFoundError:
        raise LanguageError(f"--from-metrics: {path} not found") from None
    except (orjson.JSONDecodeError, KeyError, TypeError, AssertionError):
        raise LanguageError(f"--from-metrics: {path} is not a metrics dataset (training_samples missing "
                            "or not JSON)") from None
    for i, s in enumerate(samples):
        if not isinstance(s, dict) or not {"id", "metrics", "status"} <= set(s):
            raise LanguageError(f"--from-metrics: {path}: training_samples[{i}] lacks id, metrics or status")
    return samples


def metric_sample_items(path: Path, count: int, domain: DomainContent, models_per_prompt: int, n_models: int,
                        options: str, seed: int) -> list[WorkItem]:
    """`count` metrics_explanation items from the samples in `path`, anomalies and normal ones alike."""
    from simulator.anomalies import ANOMALY_KINDS

    samples = read_metric_samples(path)
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(SOURCE_STREAM,)))
    order = rng.permutation(len(samples))[:count]
    slots = max(1, min(models_per_prompt, n_models))
    items = []
    for p_index, i in enumerate(order.tolist()):
        sample = samples[i]
        label = (sample.get("anomaly_type") or "normal") if sample["status"] == "anomaly" else "normal"
        moved = ANOMALY_KINDS[label].affects if label in ANOMALY_KINDS else ()
        persona = domain.personalities[int(rng.integers(len(domain.personalities)))]
        style = domain.question_styles[int(rng.integers(len(domain.question_styles)))]
        prompt = (f"{_render(FORMS[int(rng.integers(len(FORMS)))], sample, rng)}\n\n"
                  f"{QUESTIONS[int(rng.integers(len(QUESTIONS)))]} Answer for {AUDIENCE_LABELS[persona.audience]}. "
                  f"{persona.description} The question comes in this style: {style.instruction}")
        prompt_id = _hash("metrics_explanation", domain.system_prompt, prompt, str(sample["id"]))[:16]
        for slot in range(slots):
            items.append(WorkItem(_hash(prompt_id, str(slot), options)[:20], prompt_id, "metrics_explanation",
                                  p_index, slot, domain.system_prompt, prompt, term=label, category="grounded",
                                  source_sample_id=str(sample["id"]), label=label, moved=tuple(moved)))
    return items
