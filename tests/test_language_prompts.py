"""Every prompt the generator can build reads soundly: articles agree, nothing is left unfilled, and no
prompt stacks instructions that contradict each other.

The whole product is rendered (every template with every term, error, metric pattern, audience,
persona, question style and English pattern: about 110 000 prompts) through the same
PromptSpace.render that build_items uses, and checked by the rules below.

Articles: "a"/"an" agrees with the sound of the next word (`wants_an`: vowel letters, silent h,
"you"/"one" sounds, initialisms read letter by letter, numbers); no two determiners in a row ("a a",
"a an", "the a", "a the").
Placeholders: no `{name}` left in a prompt.
Contradictory stacked instructions, defined by what each sample type asks the model to write
(TASKS: an answer, a dialogue, or a user's question and its answer):
  - a question style (its "Write the question ..." instruction or its example) appears only in a
    prompt that asks for a question, at most one per prompt;
  - a persona (an "Answer as ..." voice) appears only in a prompt that asks for an answer in one
    voice, at most one per prompt; a dialogue or a question-and-answer pair has two speakers;
  - a prompt names at most one reader (audience), and with a persona it is the persona's own;
  - no sentence tells the model to "Ask ...": the model writes answers, dialogues or a user's
    question; an "Ask ..." instruction on top of a request for an answer is the contradiction.
"""

from __future__ import annotations

import json
import re
import shutil

import pytest
import yaml

from language.domain import SAMPLE_TYPES, DomainContent, Persona, Style, load_domain
from language.errors import ConfigError
from language.items import AUDIENCE_LABELS, build_items, prompt_space
from language.settings import load_settings

from conftest import ROOT

TASKS = {t: "answer" for t in SAMPLE_TYPES} | {"conversation": "dialogue",
                                                 "question_style_variation": "question_and_answer"}

# ------------------------------------------------------------------ the rules, as plain functions
ARTICLES = {q + w for q in ("", "'", '"', "(", "‘", "“") for w in ("a", "an", "the", "A", "An", "The")}
LEFTOVER = re.compile(r"\{[A-Za-z_]\w*\}")
ASK = re.compile(r"(?:^|[.!?:;]\s+|\(\s*)Ask\b", re.MULTILINE)
READERS = {label: re.compile(rf"\b{label}\b") for a in AUDIENCE_LABELS.values() for label in (a, a.capitalize())}
PERSONA_OPENING, STYLE_OPENING = "Answer as ", "Write the question "

VOWEL_LETTER_NAMES = set("AEFHILMNORSX")  # letters whose spoken name starts with a vowel sound: "an SRE"
SPOKEN_AS_WORDS = {"REST", "RHEL", "LAN", "WAN", "RAID", "RAM", "SAN", "SOX", "LUN", "NIC", "LIM", "SAML",
                   "RACI", "NASA", "MIFID", "UNIX"}  # acronyms read as words: "a REST call", "a RHEL host"
SILENT_H = ("hour", "honest", "honour", "honor", "heir")
YOU_OR_ONE = ("unic", "unif", "uniq", "unit", "univ", "unix", "union", "usa", "use", "usu", "uti", "ure", "uri",
              "uro", "eu", "ewe", "one", "once", "ubiq")  # vowel letters sounded "you" or "won": "a user"


def wants_an(word: str) -> bool | None:
    """Whether `word` takes "an"; None when its sound cannot be told from its spelling ("/var", "%")."""
    w = word.lstrip("'\"‘“([")
    if not w or not w[0].isalnum():
        return None
    if w[0].isdigit():
        digits = re.match(r"\d+", w).group()
        return digits.startswith("8") or digits in ("11", "18")
    head = re.match(r"[A-Za-z]+", w)
    if head is None:
        return None
    head = head.group()
    if head.isupper() and head not in SPOKEN_AS_WORDS and (len(head) > 1 or not w[1:2].isalpha()):
        return head[0] in VOWEL_LETTER_NAMES   # an initialism, read letter by letter: "an NFS", "a JVM"
    lower = head.lower()
    if lower.startswith(SILENT_H):
        return True
    if lower.startswith(YOU_OR_ONE):
        return False
    return lower[0] in "aeiou"


def article_pairs(text: str) -> set[tuple[str, str]]:
    """Each distinct (article, next word) of `text`, the article possibly after a quote or bracket."""
    words = text.split()
    return {(a, b) for a, b in zip(words, words[1:]) if a in ARTICLES}


def article_problem(article: str, word: str) -> str | None:
    """What is wrong with `article` before `word`, if anything."""
    article = article.lstrip("'\"(‘“").lower()
    if word.rstrip(",;:.") in ("a", "an", "the") and word != "a.m.":
        return f"doubled article {article!r} {word!r}"
    an = wants_an(word)
    if article != "the" and an is not None and an != (article == "an"):
        return f"wrong article {article!r} {word!r}"
    return None


def article_problems(text: str) -> list[str]:
    """Each wrong or doubled article in `text`."""
    return [p for a, b in sorted(article_pairs(text)) if (p := article_problem(a, b))]


def stacking_problems(prompt: str, task: str, personas: tuple[Persona, ...],
                      styles: tuple[Style, ...]) -> list[str]:
    """Each pair of instructions in `prompt` that contradict each other or the prompt's task."""
    out = []
    voices = prompt.count(PERSONA_OPENING)
    if voices > (1 if task == "answer" else 0):
        out.append(f"{voices} answering voice(s) ('{PERSONA_OPENING}...') in a prompt asking for {task}")
    if task != "question_and_answer" and (STYLE_OPENING in prompt or any(s.example in prompt for s in styles)):
        out.append(f"a question style in a prompt asking for {task}, not a question")
    if prompt.count(STYLE_OPENING) > 1:
        out.append("more than one question style")
    ask = "Ask" in prompt and ASK.search(prompt)
    if ask:
        out.append(f"an instruction to ask ({ask.group(0).strip()!r}) in a prompt asking for {task}")
    readers = {label.lower() for label, pattern in READERS.items() if label in prompt and pattern.search(prompt)}
    if len(readers) > 1:
        out.append(f"readers {sorted(readers)} in one prompt")
    for p in personas if voices else ():
        if p.description in prompt and readers and readers != {AUDIENCE_LABELS[p.audience]}:
            out.append(f"persona {p.name} speaks to {AUDIENCE_LABELS[p.audience]}, "
                       f"but the prompt names {sorted(readers)}")
    return out


# ------------------------------------------------------------------ the rules can fail
@pytest.mark.parametrize("text", [
    "Write a chat between a a project manager and the assistant.",
    "Write a chat between a an operator and the assistant.",
    "The a project manager asks three questions.",
    "Explain what systemd is in a IBM Spectrum Conductor (EGO) context.",
    "Explain it to an project manager.",
    "An host is idle.", "It is a idle host.", "Raise a NFS ticket.", "He is a SRE.", "an JVM", "a 8-core host",
    "a hour", "an user", "Send a the report.",
])
def test_article_rule_catches_wrong_articles(text):
    assert article_problems(text), text


@pytest.mark.parametrize("text", [
    "an idle host, an operator, a project manager, an hour, a user, a unit, a one-line fix, an NFS mount, "
    "an SRE, a JVM, a REST call, a RHEL host, an 8-core host, a 16-core host, an 11-step plan, an X.509 "
    "certificate, an unhealthy host, a European bank, the A record, at 3 a.m. on a Monday, ls -a /var",
])
def test_article_rule_accepts_right_articles(text):
    assert article_problems(text) == []


def _domain_with(persona="Answer as a careful engineer.", audience="engineer",
                 style="Write the question as a pager message.", example="vemkd down, what now?"):
    return (Persona("p", audience, persona),), (Style("s", style, example),)


@pytest.mark.parametrize("prompt, task", [
    # the prompt of the issue: an audience, a persona and a question style on top of a request for an answer
    ("Is this host healthy? Answer for an engineer. Answer as a careful engineer. "
     "The question comes in this style: Ask in a sceptical tone.", "answer"),
    ("Explain systemd. Write the question as a pager message.", "answer"),
    ("Explain systemd to an operator. For example: 'vemkd down, what now?'", "answer"),
    ("Answer as a careful engineer. Write a chat between an operator and the assistant.", "dialogue"),
    ("Answer as a careful engineer. Answer as a patient mentor.", "answer"),
    ("Write a question about lim. Their way of writing: Ask in a sceptical tone. Then answer it.",
     "question_and_answer"),
    ("Answer as a careful engineer. The reader is an operator.", "answer"),
    ("Explain DORA to a bank executive and to an auditor.", "answer"),
])
def test_stacking_rule_catches_contradictions(prompt, task):
    personas, styles = _domain_with()
    assert stacking_problems(prompt, task, personas, styles), prompt


def test_stacking_rule_accepts_sound_prompts():
    personas, styles = _domain_with()
    assert stacking_problems("Answer as a careful engineer. The reader is an engineer. Explain lim.", "answer",
                             personas, styles) == []
    assert stacking_problems("Write a question about lim. Write the question as a pager message. (For example: "
                             "'vemkd down, what now?') Then answer it.", "question_and_answer", personas, styles) == []


# ------------------------------------------------------------------ every shipped prompt
@pytest.fixture(scope="module")
def domain():
    return load_domain()


@pytest.mark.parametrize("sample_type", SAMPLE_TYPES)
def test_every_prompt_reads_soundly(domain, sample_type):
    space = prompt_space(domain, sample_type)
    per_template = len(space) // len(space.templates)
    prompts = [space.render(i)[0] for i in range(len(space))]
    assert len(set(prompts)) == len(prompts), "two combinations render the same prompt (the same item id)"
    text = "\n\n".join(prompts)

    def where(*words: str) -> str:
        """The template and the first prompt holding `words` in a row."""
        pattern = re.compile(r"(?<!\S)" + r"\s+".join(map(re.escape, words)) + r"(?!\S)")
        i = next(i for i, p in enumerate(prompts) if pattern.search(p))
        return f"templates.{sample_type}[{i // per_template}]: {prompts[i]!r}"

    found = [f"{problem} in {where(a, b)}" for a, b in article_pairs(text) if (problem := article_problem(a, b))]
    found += [f"placeholder {m.group(0)} left in {next(p for p in prompts if m.group(0) in p)!r}"
              for m in LEFTOVER.finditer(text)]
    task = TASKS[sample_type]
    for i, prompt in enumerate(prompts):
        found += [f"{problem} in templates.{sample_type}[{i // per_template}]: {prompt!r}"
                  for problem in stacking_problems(prompt, task, domain.personalities, domain.question_styles)]
    assert not found, f"{len(found)} problems, the first: " + " | ".join(found[:3])


def test_each_variation_shapes_its_own_slot(domain):
    """Personas reach only answers, question styles only questions, audiences only where a reader is named."""
    used = {t: prompt_space(domain, t).variations for t in SAMPLE_TYPES}
    assert {t for t, v in used.items() if any("personality_description" in f for f in v)} == {"personality_response"}
    assert {t for t, v in used.items() if any("style_instruction" in f for f in v)} == {"question_style_variation"}
    assert len(used["conversation"]) == len(set(AUDIENCE_LABELS.values()))  # each reader once
    assert all(p.description.startswith(PERSONA_OPENING) for p in domain.personalities)
    assert all(s.instruction.startswith(STYLE_OPENING) for s in domain.question_styles)


def test_grounded_prompts_read_soundly(domain, tmp_path):
    """The prompts built from simulated samples follow the same rules (every persona and style appears)."""
    from language.grounding import metric_sample_items

    samples = [{"id": f"s-{i}", "timestamp": f"2026-01-05T{i % 24:02d}:{i % 60:02d}:00Z",
                "status": "anomaly" if i % 2 else "normal", "anomaly_type": "memory_leak" if i % 2 else None,
                "metrics": {"cpu_usage": 10.5 + i % 50, "memory_usage": 40.0 + i % 40, "load_average": 1.25,
                            "spectrum_active_jobs": 3}} for i in range(200)]
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps({"metadata": {}, "training_samples": samples}))
    prompts = [it.prompt for it in metric_sample_items(path, 200, domain, models_per_prompt=1, n_models=1,
                                                       options="opts", seed=7)]
    assert all(any(p.description in q for q in prompts) for p in domain.personalities)
    found = [f"{problem} in {q!r}" for q in prompts
             for problem in article_problems(q) + stacking_problems(q, "answer", domain.personalities,
                                                                     domain.question_styles)]
    assert not found, f"{len(found)} problems, the first: " + " | ".join(found[:3])


# ------------------------------------------------------------------ the load refuses unsound templates
@pytest.fixture
def data_dir(tmp_path):
    d = tmp_path / "data_config"
    shutil.copytree(ROOT / "data_config", d)
    return d


def _edit(d, name, change):
    data = yaml.safe_load((d / name).read_text())
    change(data)
    (d / name).write_text(yaml.safe_dump(data))


def _add(sample_type, template):
    return lambda x: x["templates"][sample_type].append(template)


@pytest.mark.parametrize("name, change, expected", [
    ("conversation_prompts.yaml", _add("conversation", "Write a chat between a {audience} and us about {term}."),
     "templates.conversation[6]: 'a {audience}': {audience} brings its own article"),
    ("conversation_prompts.yaml", _add("conversation", "Chat about {term}. The {audience} asks."),
     "'The {audience}'"),
    ("conversation_prompts.yaml",
     _add("personality_response", "{personality_description} {audience} asks about {term}."),
     "templates.personality_response[6]: {audience} starts a sentence (or follows another placeholder)"),
    ("conversation_prompts.yaml", _add("banking_scenario", "Explain '{term}' as an '{category}' topic."),
     "templates.banking_scenario[6]: 'an {category}': one article cannot agree"),
    ("conversation_prompts.yaml", _add("technical_explanation", "Explain {term} in an {category} context."),
     "'an {category}': one article cannot agree"),
    ("personality_types.yaml", lambda x: x["personalities"][2].update(description="Ask in a sceptical tone."),
     "personalities[2].description: must begin 'Answer as'"),
    ("question_styles.yaml", lambda x: x["styles"][12].update(instruction="Ask in a sceptical tone."),
     "styles[12].instruction: must begin 'Write the question'"),
])
def test_unsound_templates_and_entries_are_refused_at_load(data_dir, name, change, expected):
    _edit(data_dir, name, change)
    with pytest.raises(ConfigError) as err:
        load_domain(data_dir)
    message = str(err.value)
    assert name in message and expected in message and "\n" not in message


# ------------------------------------------------------------------ ids follow the rendered prompt
def test_item_ids_are_a_hash_of_the_rendered_prompt():
    """Ids computed before the rendering moved into PromptSpace: an unchanged prompt keeps its id (the pins
    changed once since, with the settings' fingerprint: the free-text gates and max_tokens 600, issue 16)."""
    templates = {t: () for t in SAMPLE_TYPES} | {
        "technical_explanation": ("Explain {term} ({category}): {description}", "What is {term}?"),
        "english_pattern": ("Explain {term}. {pattern_instruction} Model: '{pattern_example}'.",)}
    from language.domain import Term
    domain = DomainContent("You are a monitoring assistant.", templates,
                           (Term("systemd", "linux", "The init system."), Term("vmstat", "linux", "Reports memory.")),
                           (), (), (), (Style("plain", "Use plain words.", "It stopped."),
                                        Style("hedged", "Hedge.", "It appears to.")), (), (), ())
    settings = load_settings()
    items = build_items(domain, settings, {"technical_explanation": 3, "english_pattern": 2}, n_models=2, seed=7)
    assert [(it.item_id, it.prompt) for it in items if it.slot == 0] == [
        ("93e8b866f9c10098ee4f", "What is systemd?"),
        ("dc31c4277ff6dd7d68e1", "Explain systemd (Red Hat Linux): The init system."),
        ("6141293f036504524bc9", "Explain vmstat (Red Hat Linux): Reports memory."),
        ("829de85c9fa41880847b", "Explain systemd. Use plain words. Model: 'It stopped.'."),
        ("0393d45c1cabb2af7f58", "Explain vmstat. Hedge. Model: 'It appears to.'.")]
