"""Domain content from data_config/*.yaml: terms, error patterns, personas, styles, prompt templates.

Every file is read safely (no aliases, bounded size, UTF-8) and validated strictly into frozen
dataclasses; an unknown key, a missing field, a duplicate term or a template using a placeholder its
sample type does not provide stops the run with `file: key.path: problem`.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datasafe.yamlcheck import Validator, read_yaml

from .errors import ConfigError

DATA_DIR = Path(__file__).resolve().parent.parent / "data_config"
MAX_FILE_BYTES = 4 * 1024 * 1024

SAMPLE_TYPES = ("technical_explanation", "error_troubleshooting", "conversation", "personality_response",
                "question_style_variation", "english_pattern", "project_management", "banking_scenario",
                "metrics_explanation")
TERM_CATEGORIES = ("linux", "spectrum_conductor", "splunk", "jira_confluence", "java_jvm", "networking",
                   "storage", "monitoring")
PM_CATEGORIES = ("agile", "jira", "itil", "planning", "risk", "reporting")
BANKING_CATEGORIES = ("regulation", "risk", "operations", "audit", "resilience")
SEVERITIES = ("warning", "error", "critical")
AUDIENCES = ("engineer", "project_manager", "executive", "operator", "auditor")
SITUATIONS = ("healthy", "warning", "incident")
# placeholders each sample type's templates may use; the first is required
PLACEHOLDERS: dict[str, tuple[str, ...]] = {
    "technical_explanation": ("term", "category", "description"),
    "error_troubleshooting": ("error", "component", "category"),
    "conversation": ("term", "category", "audience"),
    "personality_response": ("term", "personality_description", "audience"),
    "question_style_variation": ("term", "style_instruction", "style_example"),
    "english_pattern": ("term", "pattern_instruction", "pattern_example"),
    "project_management": ("term", "category", "description"),
    "banking_scenario": ("term", "category", "description"),
    "metrics_explanation": ("observation", "metric", "situation"),
}


@dataclass(frozen=True)
class Term:
    term: str
    category: str
    description: str


@dataclass(frozen=True)
class ErrorPattern:
    message: str
    component: str
    category: str
    severity: str


@dataclass(frozen=True)
class Persona:
    name: str
    audience: str
    description: str


@dataclass(frozen=True)
class Style:
    """A question style or an English pattern: an instruction and an example."""

    name: str
    instruction: str
    example: str


@dataclass(frozen=True)
class MetricPattern:
    metric: str
    situation: str
    observation: str


@dataclass(frozen=True)
class DomainContent:
    system_prompt: str
    templates: dict[str, tuple[str, ...]]
    technical_terms: tuple[Term, ...]
    error_patterns: tuple[ErrorPattern, ...]
    personalities: tuple[Persona, ...]
    question_styles: tuple[Style, ...]
    english_patterns: tuple[Style, ...]
    project_management_terms: tuple[Term, ...]
    banking_terms: tuple[Term, ...]
    metrics_patterns: tuple[MetricPattern, ...]

    def __hash__(self) -> int:  # templates is a dict; identity is enough for caching
        return id(self)


def load_domain(data_dir: Path | None = None) -> DomainContent:
    """Read and validate every domain file under `data_dir` (default: the shipped data_config/)."""
    d = Path(data_dir) if data_dir is not None else DATA_DIR
    prompts, v = _read(d, "conversation_prompts.yaml")
    root = v.mapping(prompts, "", required=("system_prompt", "templates"))
    templates_node = v.mapping(root["templates"], "templates", required=SAMPLE_TYPES, optional=())
    templates = {t: _templates(v, templates_node[t], f"templates.{t}", PLACEHOLDERS[t]) for t in SAMPLE_TYPES}
    return DomainContent(
        system_prompt=v.string(root["system_prompt"], "system_prompt"),
        templates=templates,
        technical_terms=_terms(d, "technical_terms.yaml", TERM_CATEGORIES),
        error_patterns=_errors(d),
        personalities=_personas(d),
        question_styles=_styles(d, "question_styles.yaml", "styles"),
        english_patterns=_styles(d, "english_patterns.yaml", "patterns"),
        project_management_terms=_terms(d, "project_management_terms.yaml", PM_CATEGORIES),
        banking_terms=_terms(d, "banking_terms.yaml", BANKING_CATEGORIES),
        metrics_patterns=_metric_patterns(d),
    )


def _read(d: Path, name: str) -> tuple[Any, Validator]:
    path = d / name
    source = name if d == DATA_DIR else str(path)
    return read_yaml(path, source, ConfigError, MAX_FILE_BYTES), Validator(source, ConfigError)


def _list(v: Validator, data: Any, key: str) -> list:
    root = v.mapping(data, "", required=(key,))
    items = root[key]
    if not isinstance(items, list) or not items:
        v.fail(key, "expected a non-empty list")
    return items


def _choice(v: Validator, value: Any, key: str, allowed: tuple[str, ...]) -> str:
    value = v.string(value, key)
    if value not in allowed:
        v.fail(key, f"{value!r} is not one of {', '.join(allowed)}")
    return value


def _unique(v: Validator, seen: dict[str, int], value: str, key: str, i: int) -> None:
    norm = " ".join(value.lower().split())
    if norm in seen:
        v.fail(key, f"duplicate of item {seen[norm]} ({value!r})")
    seen[norm] = i


def _terms(d: Path, name: str, categories: tuple[str, ...]) -> tuple[Term, ...]:
    data, v = _read(d, name)
    out, seen = [], {}
    for i, node in enumerate(_list(v, data, "terms")):
        key = f"terms[{i}]"
        m = v.mapping(node, key, required=("term", "category", "description"), optional=())
        term = v.string(m["term"], f"{key}.term")
        _unique(v, seen, term, f"{key}.term", i)
        out.append(Term(term, _choice(v, m["category"], f"{key}.category", categories),
                        v.string(m["description"], f"{key}.description")))
    return tuple(out)


def _errors(d: Path) -> tuple[ErrorPattern, ...]:
    data, v = _read(d, "error_patterns.yaml")
    out, seen = [], {}
    for i, node in enumerate(_list(v, data, "errors")):
        key = f"errors[{i}]"
        m = v.mapping(node, key, required=("message", "component", "category", "severity"), optional=())
        message = v.string(m["message"], f"{key}.message")
        _unique(v, seen, message, f"{key}.message", i)
        out.append(ErrorPattern(message, v.string(m["component"], f"{key}.component"),
                                _choice(v, m["category"], f"{key}.category", TERM_CATEGORIES),
                                _choice(v, m["severity"], f"{key}.severity", SEVERITIES)))
    return tuple(out)


def _personas(d: Path) -> tuple[Persona, ...]:
    data, v = _read(d, "personality_types.yaml")
    out, seen = [], {}
    for i, node in enumerate(_list(v, data, "personalities")):
        key = f"personalities[{i}]"
        m = v.mapping(node, key, required=("name", "audience", "description"), optional=())
        name = v.string(m["name"], f"{key}.name")
        _unique(v, seen, name, f"{key}.name", i)
        out.append(Persona(name, _choice(v, m["audience"], f"{key}.audience", AUDIENCES),
                           v.string(m["description"], f"{key}.description")))
    return tuple(out)


def _styles(d: Path, name: str, key_name: str) -> tuple[Style, ...]:
    data, v = _read(d, name)
    out, seen = [], {}
    for i, node in enumerate(_list(v, data, key_name)):
        key = f"{key_name}[{i}]"
        m = v.mapping(node, key, required=("name", "instruction", "example"), optional=())
        style_name = v.string(m["name"], f"{key}.name")
        _unique(v, seen, style_name, f"{key}.name", i)
        out.append(Style(style_name, v.string(m["instruction"], f"{key}.instruction"),
                         v.string(m["example"], f"{key}.example")))
    return tuple(out)


def _metric_patterns(d: Path) -> tuple[MetricPattern, ...]:
    from simulator.catalogue import METRICS

    data, v = _read(d, "metrics_patterns.yaml")
    out, seen = [], {}
    for i, node in enumerate(_list(v, data, "patterns")):
        key = f"patterns[{i}]"
        m = v.mapping(node, key, required=("metric", "situation", "observation"), optional=())
        observation = v.string(m["observation"], f"{key}.observation")
        _unique(v, seen, observation, f"{key}.observation", i)
        out.append(MetricPattern(_choice(v, m["metric"], f"{key}.metric", METRICS),
                                 _choice(v, m["situation"], f"{key}.situation", SITUATIONS), observation))
    return tuple(out)


def _templates(v: Validator, node: Any, key: str, allowed: tuple[str, ...]) -> tuple[str, ...]:
    if not isinstance(node, list) or not node:
        v.fail(key, "expected a non-empty list of templates")
    out = []
    for i, text in enumerate(node):
        text = v.string(text, f"{key}[{i}]")
        try:
            fields = {f for _, f, _, _ in string.Formatter().parse(text) if f is not None}
        except ValueError as exc:
            v.fail(f"{key}[{i}]", f"bad template: {exc}")
        unknown = sorted(fields - set(allowed))
        if unknown:
            v.fail(f"{key}[{i}]", f"unknown placeholder {{{unknown[0]}}}; allowed: {', '.join(allowed)}")
        if allowed[0] not in fields:
            v.fail(f"{key}[{i}]", f"must use {{{allowed[0]}}}")
        out.append(text)
    return tuple(out)
