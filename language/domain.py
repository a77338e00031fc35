"""Domain content from data_config/*.yaml: terms, error patterns, personas, styles, prompt templates.

Every file is read safely (no aliases, bounded size, UTF-8) and validated strictly into frozen
dataclasses; an unknown key, a missing field, a duplicate term or a template using a placeholder its
sample type does not provide stops the run with `file: key.path: problem`.

What fills each placeholder of conversation_prompts.yaml, and in what form:
  {term} {component} {metric}   a name as written in its file (technical_terms, error_patterns, ...)
  {category}                    the category's label ("IBM Spectrum Conductor (EGO)"), no article
  {description} {observation}   a fact from the entry: a sentence, or a clause of numbers
  {error}                       the log line, best quoted
  {situation}                   healthy, warning or incident: a label, best quoted
  {audience}                    the reader WITH its indefinite article, chosen in code ("an operator")
  {personality_description}     personality_types.yaml description: a whole sentence "Answer as ...",
                                the voice of the answer (personality_response only)
  {style_instruction}           question_styles.yaml instruction: a whole sentence "Write the question
  {style_example}               ...", shaping the user's question; and an example question
                                (question_style_variation only: the one type that asks for a question)
  {pattern_instruction}         english_patterns.yaml instruction: a sentence about the answer's
  {pattern_example}             language; and a sentence in that pattern (english_pattern only)
The load enforces the forms a template relies on: no article or determiner before {audience} (it
brings its own) and none starting a sentence with it (it renders in lower case); no "a"/"an" before
any other placeholder (one article cannot agree with every value); personas begin "Answer as " and
question styles "Write the question ", so a persona can only shape the answer and a style only the
question. tests/test_language_prompts.py renders every prompt and checks the articles and that no
prompt stacks instructions that contradict each other.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

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
WITH_ARTICLE = ("audience",)  # placeholders whose value brings its own indefinite article
DETERMINERS = frozenset("a an the this that these those each every any another our your their its his her my "
                        "no some".split())
PERSONA_OPENING = "Answer as "          # a persona is the voice of the answer
QUESTION_STYLE_OPENING = "Write the question "  # a question style shapes the user's question


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
        question_styles=_styles(d, "question_styles.yaml", "styles", {"instruction": (
            QUESTION_STYLE_OPENING, "a question style shapes the user's question, not the answer")}),
        english_patterns=_styles(d, "english_patterns.yaml", "patterns"),
        project_management_terms=_terms(d, "project_management_terms.yaml", PM_CATEGORIES),
        banking_terms=_terms(d, "banking_terms.yaml", BANKING_CATEGORIES),
        metrics_patterns=_metric_patterns(d),
    )


def _read(d: Path, name: str) -> tuple[Any, Validator]:
    path = d / name
    source = name if d == DATA_DIR else str(path)
    return read_yaml(path, source, ConfigError, MAX_FILE_BYTES), Validator(source, ConfigError)


def _entries(d: Path, name: str, list_key: str, *, fields: tuple[str, ...], unique: str,
             choices: dict[str, tuple[str, ...]], build: Callable[..., Any],
             openings: dict[str, tuple[str, str]] | None = None) -> tuple:
    """Validate `list_key`'s entries of file `name`: exactly `fields`, all non-empty strings, the
    `choices` fields among their allowed values, the `openings` fields beginning with their
    (opening, reason), `unique` unique (case- and space-insensitive); each entry becomes build(**fields)."""
    data, v = _read(d, name)
    items = v.mapping(data, "", required=(list_key,))[list_key]
    if not isinstance(items, list) or not items:
        v.fail(list_key, "expected a non-empty list")
    out, seen = [], {}
    for i, node in enumerate(items):
        key = f"{list_key}[{i}]"
        m = v.mapping(node, key, required=fields, optional=())
        values = {f: v.string(m[f], f"{key}.{f}") for f in fields}
        for f, allowed in choices.items():
            if values[f] not in allowed:
                v.fail(f"{key}.{f}", f"{values[f]!r} is not one of {', '.join(allowed)}")
        for f, (opening, why) in (openings or {}).items():
            if not values[f].startswith(opening):
                v.fail(f"{key}.{f}", f"must begin {opening.strip()!r} ({why}); got {values[f][:40]!r}")
        norm = " ".join(values[unique].lower().split())
        if norm in seen:
            v.fail(f"{key}.{unique}", f"duplicate of item {seen[norm]} ({values[unique]!r})")
        seen[norm] = i
        out.append(build(**values))
    return tuple(out)


def _terms(d: Path, name: str, categories: tuple[str, ...]) -> tuple[Term, ...]:
    return _entries(d, name, "terms", fields=("term", "category", "description"), unique="term",
                    choices={"category": categories}, build=Term)


def _errors(d: Path) -> tuple[ErrorPattern, ...]:
    return _entries(d, "error_patterns.yaml", "errors", fields=("message", "component", "category", "severity"),
                    unique="message", choices={"category": TERM_CATEGORIES, "severity": SEVERITIES},
                    build=ErrorPattern)


def _personas(d: Path) -> tuple[Persona, ...]:
    return _entries(d, "personality_types.yaml", "personalities", fields=("name", "audience", "description"),
                    unique="name", choices={"audience": AUDIENCES}, build=Persona,
                    openings={"description": (PERSONA_OPENING, "a persona is the voice the answer is written in")})


def _styles(d: Path, name: str, key_name: str, openings: dict[str, tuple[str, str]] | None = None
            ) -> tuple[Style, ...]:
    return _entries(d, name, key_name, fields=("name", "instruction", "example"), unique="name", choices={},
                    build=Style, openings=openings)


def _metric_patterns(d: Path) -> tuple[MetricPattern, ...]:
    from simulator.catalogue import METRICS

    return _entries(d, "metrics_patterns.yaml", "patterns", fields=("metric", "situation", "observation"),
                    unique="observation", choices={"metric": METRICS, "situation": SITUATIONS},
                    build=MetricPattern)


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
        _check_placement(v, f"{key}[{i}]", text)
        out.append(text)
    return tuple(out)


def _check_placement(v: Validator, key: str, text: str) -> None:
    """Articles around placeholders: see the module docstring."""
    for literal, field, _, _ in string.Formatter().parse(text):
        if field is None:
            continue
        before = literal.rstrip(" \t\n'\"(")     # the text before, past spaces, quotes and brackets
        word = before.split()[-1].lstrip("'\"(") if before.strip() else ""
        if field in WITH_ARTICLE:
            if word.lower() in DETERMINERS:
                v.fail(key, f"'{word} {{{field}}}': {{{field}}} brings its own article ('an operator'); "
                            f"write '{{{field}}}' alone")
            if not word or word[-1] in ".!?":
                v.fail(key, f"{{{field}}} starts a sentence (or follows another placeholder) but renders in "
                            "lower case ('an operator'); rephrase so a word comes before it")
        elif word.lower() in ("a", "an"):
            v.fail(key, f"'{word} {{{field}}}': one article cannot agree with every value of {{{field}}}; "
                        "rephrase without an article before it")
