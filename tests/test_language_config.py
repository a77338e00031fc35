"""Domain YAML and models.yaml: the shipped files load; broken ones give one-line errors naming file and key."""

from __future__ import annotations

import dataclasses
import shutil

import pytest
import yaml
from hypothesis import given, strategies as st

from language.domain import PLACEHOLDERS, SAMPLE_TYPES, load_domain
from language.errors import ConfigError, LanguageError
from language.items import build_items
from language.quality import DuplicateIndex, check, clean, repetition
from language.settings import load_settings

from conftest import ROOT

DATA = ROOT / "data_config"


@pytest.fixture(scope="module")
def domain():
    return load_domain()


@pytest.fixture(scope="module")
def settings():
    return load_settings()


@pytest.fixture
def data_dir(tmp_path):
    d = tmp_path / "data_config"
    shutil.copytree(DATA, d)
    return d


def test_shipped_domain_content_is_rich_enough(domain):
    assert len(domain.technical_terms) >= 300
    assert len({t.category for t in domain.technical_terms}) >= 5
    assert len(domain.error_patterns) >= 60
    assert all(len(domain.templates[t]) >= 3 for t in SAMPLE_TYPES)
    assert len(domain.project_management_terms) >= 30 and len(domain.banking_terms) >= 30
    assert {m.metric for m in domain.metrics_patterns} >= {"cpu_usage", "memory_usage", "java_gc_time"}


def _edit(d, name, change):
    data = yaml.safe_load((d / name).read_text())
    change(data)
    (d / name).write_text(yaml.safe_dump(data))


@pytest.mark.parametrize("name, change, expected", [
    ("technical_terms.yaml", lambda x: x["terms"][3].update(category="cooking"), "terms[3].category"),
    ("technical_terms.yaml", lambda x: x["terms"].append(dict(x["terms"][0])), "duplicate"),
    ("technical_terms.yaml", lambda x: x["terms"][0].update(colour="red"), "terms[0].colour: unknown key"),
    ("error_patterns.yaml", lambda x: x["errors"][1].pop("component"), "errors[1].component: missing"),
    ("conversation_prompts.yaml", lambda x: x["templates"]["conversation"].append("Say {nonsense} about {term}"),
     "unknown placeholder {nonsense}"),
    ("conversation_prompts.yaml", lambda x: x["templates"]["banking_scenario"].append("No placeholder here"),
     "must use {term}"),
    ("metrics_patterns.yaml", lambda x: x["patterns"][0].update(metric="cpu_temperature"), "patterns[0].metric"),
    ("personality_types.yaml", lambda x: x.update(personalities=[]), "non-empty list"),
])
def test_broken_domain_files_name_file_and_key(data_dir, name, change, expected):
    _edit(data_dir, name, change)
    with pytest.raises(ConfigError) as err:
        load_domain(data_dir)
    message = str(err.value)
    assert name in message and expected in message and "\n" not in message


@pytest.mark.parametrize("change, expected", [
    (lambda x: x["backends"]["embedded"].update(type="telepathy"), "backends.embedded.type"),
    (lambda x: x["backends"]["ollama_local"].update(endpoints=["ftp://x"]), "backends.ollama_local.endpoints[0]"),
    (lambda x: x["requests"].update(max_attempts=0), "requests.max_attempts"),
    (lambda x: x["generation"].update(temperature=float("nan")), "generation.temperature"),
    (lambda x: x["targets"].update(poetry=3), "targets.poetry: unknown key"),
    (lambda x: x["backends"]["anthropic"].update(api_key_env="sk-ant-123 secret"), "api_key_env"),
])
def test_broken_models_yaml_names_the_key(data_dir, change, expected):
    _edit(data_dir, "models.yaml", change)
    with pytest.raises(ConfigError) as err:
        load_settings(data_dir / "models.yaml")
    assert "models.yaml" in str(err.value) and expected in str(err.value)


def test_each_backend_declares_what_its_entry_needs(data_dir, monkeypatch):
    """A remote backend without endpoints is named at load, a local one needs none; a hosted API
    without its key is named when the backend is built (what each backend class declares)."""
    from language.backends import BACKENDS, build_backend

    assert [t for t, c in BACKENDS.items() if not c.needs_endpoint] == ["embedded", "static"]
    assert [t for t, c in BACKENDS.items() if c.needs_key] == ["anthropic", "gemini"]
    for kind in BACKENDS:
        _edit(data_dir, "models.yaml", lambda x: x["backends"].update(
            extra={"type": kind, "enabled": False, "models": ["m"], "endpoints": []}))
        if BACKENDS[kind].needs_endpoint:
            with pytest.raises(ConfigError, match="backends.extra.endpoints: a .* backend needs at least one"):
                load_settings(data_dir / "models.yaml")
        else:
            load_settings(data_dir / "models.yaml")
    settings = load_settings(ROOT / "data_config" / "models.yaml")
    monkeypatch.delenv("NO_SUCH_KEY_FOR_TESTS", raising=False)
    for spec in settings.backends:
        spec = dataclasses.replace(spec, api_key_env="NO_SUCH_KEY_FOR_TESTS", endpoints=("http://127.0.0.1:9",))
        if BACKENDS[spec.type].needs_key:
            with pytest.raises(LanguageError, match="NO_SUCH_KEY_FOR_TESTS is not set"):
                build_backend(spec)
        elif spec.type != "embedded":
            build_backend(spec)


@given(st.binary(max_size=300))
def test_garbage_yaml_is_a_config_error_not_a_crash(tmp_path_factory, junk):
    d = tmp_path_factory.mktemp("junk")
    (d / "models.yaml").write_bytes(junk)
    try:
        load_settings(d / "models.yaml")
    except ConfigError as exc:
        assert "\n" not in str(exc)


def test_item_ids_are_stable_distinct_and_prefix_stable(domain, settings):
    a = build_items(domain, settings, {"conversation": 5, "technical_explanation": 4}, n_models=2, seed=7)
    b = build_items(domain, settings, {"conversation": 5, "technical_explanation": 4}, n_models=2, seed=7)
    assert [i.item_id for i in a] == [i.item_id for i in b]
    assert len({i.item_id for i in a}) == len(a) == 18
    assert all(len({i.slot for i in a if i.prompt_id == p}) == 2 for p in {i.prompt_id for i in a})
    more = build_items(domain, settings, {"conversation": 8, "technical_explanation": 4}, n_models=2, seed=7)
    assert {i.item_id for i in a} <= {i.item_id for i in more}   # raising a count keeps finished work
    for item in a:
        assert "{" not in item.prompt and item.term


def test_every_template_renders_for_every_type(domain, settings):
    for sample_type in SAMPLE_TYPES:
        items = build_items(domain, settings, {sample_type: 30}, n_models=1, seed=1)
        assert len(items) == 30
        assert all(PLACEHOLDERS[sample_type][0] not in it.prompt.split("{") for it in items)


GOOD = ("The vemkd daemon is the EGO master: it allocates resources to consumers, and when it stops no new "
        "workload can be placed. Check it with egosh service list and look at the vemkd log for the cause.")


@pytest.mark.parametrize("text, finish, reason", [
    ("", "stop", "empty"),
    ("<think>long reasoning</think>", "stop", "empty"),
    (GOOD + " <|im_end|>", "stop", "template token"),
    (GOOD, "length", "truncated"),
    ("Too short to teach anything.", "stop", "too short"),
    ("I'm sorry, but I cannot help with that request. " + GOOD, "stop", "refusal"),
    (" ".join(["the logs show a high percentage"] * 12), "stop", "repetitive"),
])
def test_quality_rejects_with_a_reason(text, finish, reason):
    assert reason in (check(clean(text), "Explain vemkd.", finish, 20) or "empty")


def test_quality_accepts_a_real_answer_and_strips_reasoning():
    text = clean("<think>the user wants vemkd</think>\n" + GOOD)
    assert text == GOOD and check(text, "Explain what vemkd is.", "stop", 20) is None
    assert repetition(GOOD) < 0.1


def test_prompt_echo_is_rejected():
    prompt = ("Explain what vemkd is in a Spectrum Conductor context and why it matters to the team running "
              "our cluster. Cover what it does and how to inspect it.")
    assert check(prompt + " It matters.", prompt, "stop", 20) == "echoes the prompt"


def test_duplicates_exact_and_near_are_found_but_different_answers_pass():
    index = DuplicateIndex(0.9)
    index.add("a", GOOD)
    assert "exact duplicate of a" == index.find(GOOD.upper())
    assert "near duplicate of a" == index.find(GOOD.replace("cause.", "cause now."))
    assert index.find("Splunk indexers roll buckets from hot to warm to cold; frozen buckets are deleted or "
                      "archived, so size the cold volume for the retention the auditors expect.") is None
