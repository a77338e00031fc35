"""Work items: templates x terms x styles x personas, one item per (prompt, model slot), stable ids.

An item's id is a hash of everything that decides its answer (type, system prompt, user prompt,
model slot, generation options), so a rerun knows exactly which items are done, and a changed
config changes exactly the ids it affects.

Rendering: each sample type's prompts are the product templates x entities x variations (its
PromptSpace); a prompt is its template filled by str.format with the entity's and the variation's
fields. Which YAML field fills which placeholder, and in what form, is listed in language/domain.py
(the load checks that a template uses each placeholder the way its value is written); the one value
made here is {audience}, the reader's noun with the indefinite article chosen by `with_article`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from .domain import AUDIENCES, SAMPLE_TYPES, DomainContent
from .quality import token_limit
from .settings import Settings

ITEM_STREAM = 11  # SeedSequence spawn key of prompt sampling
CATEGORY_LABELS = {
    "linux": "Red Hat Linux", "spectrum_conductor": "IBM Spectrum Conductor (EGO)", "splunk": "Splunk",
    "jira_confluence": "Jira and Confluence", "java_jvm": "Java and the JVM", "networking": "networking",
    "storage": "storage", "monitoring": "monitoring", "agile": "agile delivery", "jira": "Jira",
    "itil": "ITIL service management", "planning": "project planning", "risk": "risk management",
    "reporting": "project reporting", "regulation": "banking regulation", "operations": "bank operations",
    "audit": "audit", "resilience": "operational resilience",
}
# the reader each audience stands for, without an article: the article is chosen by with_article
AUDIENCE_NOUNS = {"engineer": "engineer", "project_manager": "project manager", "executive": "bank executive",
                  "operator": "operator", "auditor": "auditor"}


def with_article(noun: str) -> str:
    """`noun` with its indefinite article, chosen by the first letter: "an operator", "a project manager"
    (right for AUDIENCE_NOUNS; tests/test_language_prompts.py checks the article of every prompt)."""
    return ("an " if noun[:1].lower() in "aeiou" else "a ") + noun


AUDIENCE_LABELS = {a: with_article(AUDIENCE_NOUNS[a]) for a in AUDIENCES}  # fills {audience}


@dataclass(frozen=True)
class WorkItem:
    item_id: str
    prompt_id: str
    sample_type: str
    prompt_index: int   # position of the prompt within its type (drives the model rotation)
    slot: int           # 0 .. models_per_prompt-1: which of the prompt's distinct models
    system: str
    prompt: str
    term: str
    category: str
    source_sample_id: str = ""   # grounded items: the metrics sample the prompt shows
    label: str = ""              # grounded items: its anomaly kind, or "normal"
    moved: tuple[str, ...] = ()  # grounded items: the metrics that moved in the sample's data
    structured: bool = False     # the answer is JSON against verify.ANSWER_SCHEMA (grounded items)
    max_tokens: int = 0          # the answer's token limit (from its requested length); 0: generation.max_tokens

    def token_limit(self, default: int) -> int:
        """The max_tokens of this item's calls: its own, else `default` (models.yaml generation.max_tokens)."""
        return self.max_tokens or default


@dataclass(frozen=True)
class PromptSpace:
    """The prompts of one sample type: prompt `i` fills template, entity and variation
    divmod(i, ...) of this product, so the numbering is fixed by the three lists' lengths."""

    templates: tuple[str, ...]
    entities: tuple[dict[str, str], ...]    # a term, error pattern or metric pattern: its fields
    variations: tuple[dict[str, str], ...]  # an audience, persona, question style or English pattern

    def __len__(self) -> int:
        return len(self.templates) * len(self.entities) * len(self.variations)

    def render(self, index: int) -> tuple[str, dict[str, str]]:
        """(prompt, fields) of prompt `index`; fields whose name starts with "_" are not placeholders."""
        tpl, rest = divmod(index, len(self.entities) * len(self.variations))
        ent, var = divmod(rest, len(self.variations))
        fields = {**self.entities[ent], **self.variations[var]}
        return self.templates[tpl].format(**{k: v for k, v in fields.items() if not k.startswith("_")}), fields


def prompt_space(domain: DomainContent, sample_type: str) -> PromptSpace:
    """Every prompt `sample_type` can have: build_items samples from it, the tests render all of it."""
    entities, variations = _choices(domain, sample_type)
    return PromptSpace(domain.templates[sample_type], tuple(entities), tuple(variations))


def _choices(domain: DomainContent, sample_type: str) -> tuple[list[dict], list[dict]]:
    """(entities, variations) whose product, with the templates, spans the prompts of a type."""
    terms = [{"term": t.term, "category": CATEGORY_LABELS.get(t.category, t.category),
              "description": t.description, "_category": t.category} for t in domain.technical_terms]
    one = [{}]
    if sample_type == "technical_explanation":
        return terms, one
    if sample_type == "error_troubleshooting":
        return [{"error": e.message, "component": e.component, "category": CATEGORY_LABELS.get(e.category, e.category),
                 "term": e.component, "_category": e.category} for e in domain.error_patterns], one
    if sample_type == "conversation":
        return terms, [{"audience": AUDIENCE_LABELS[a]} for a in AUDIENCES]
    if sample_type == "personality_response":
        return terms, [{"personality_description": p.description, "audience": AUDIENCE_LABELS[p.audience]}
                       for p in domain.personalities]
    if sample_type == "question_style_variation":
        return terms, [{"style_instruction": s.instruction, "style_example": s.example} for s in domain.question_styles]
    if sample_type == "english_pattern":
        return terms, [{"pattern_instruction": s.instruction, "pattern_example": s.example}
                       for s in domain.english_patterns]
    if sample_type in ("project_management", "banking_scenario"):
        source = domain.project_management_terms if sample_type == "project_management" else domain.banking_terms
        return [{"term": t.term, "category": CATEGORY_LABELS.get(t.category, t.category),
                 "description": t.description, "_category": t.category} for t in source], one
    if sample_type == "metrics_explanation":
        return [{"observation": m.observation, "metric": m.metric, "situation": m.situation,
                 "term": m.metric, "_category": m.situation} for m in domain.metrics_patterns], one
    raise ValueError(sample_type)


def build_items(domain: DomainContent, settings: Settings, targets: dict[str, int], *, n_models: int,
                seed: int) -> list[WorkItem]:
    """The items for `targets` prompts per type, each asked of min(models_per_prompt, n_models) slots."""
    slots = max(1, min(settings.rotation.models_per_prompt, n_models))
    options = settings.fingerprint()
    q = settings.quality
    items: list[WorkItem] = []
    for t_index, sample_type in enumerate(SAMPLE_TYPES):
        n = targets.get(sample_type, 0)
        if n <= 0:
            continue
        space = prompt_space(domain, sample_type)
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(ITEM_STREAM, t_index)))
        picks = rng.permutation(len(space))[:n]  # a prefix: raising a count keeps every earlier prompt
        for p_index, combo in enumerate(picks.tolist()):
            prompt, fields = space.render(combo)
            prompt_id = _hash(sample_type, domain.system_prompt, prompt)[:16]
            for slot in range(slots):
                items.append(WorkItem(
                    item_id=_hash(prompt_id, str(slot), options)[:20], prompt_id=prompt_id,
                    sample_type=sample_type, prompt_index=p_index, slot=slot, system=domain.system_prompt,
                    prompt=prompt, term=fields.get("term", ""), category=fields.get("_category", ""),
                    max_tokens=token_limit(prompt, q.length_tolerance, q.tokens_per_word, settings.generation.max_tokens)))
    return items


def _hash(*parts: str) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode("utf-8"))
        h.update(b"\x00")
    return h.hexdigest()
