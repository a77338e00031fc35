"""Tokens and money: token counts per call from each wire format (or estimated), prices from models.yaml,
usage in `status` and the export metadata, and the run budgets (--max-cost, --max-tokens-total), against
the loopback servers (tests/loopback.py), which report token counts as word counts."""

from __future__ import annotations

import json
import math
import shutil
import sqlite3

import polars as pl
import pytest
import yaml

from language.__main__ import EXIT_BUDGET, main
from language.domain import load_domain
from language.errors import ConfigError
from language.ledger import Ledger
from language.settings import load_settings
from language.quality import token_limit
from language.usage import most_tokens

from conftest import ROOT
from loopback import FaultPlan, LoopbackServer, Rule

APIS = ("openai", "ollama", "anthropic", "gemini")


@pytest.fixture
def config_dir(tmp_path):
    """The shipped data_config with fast retries; the openai_compatible backend serves alpha and beta."""
    d = tmp_path / "config"
    shutil.copytree(ROOT / "data_config", d)
    _edit_models(d, lambda m: (m["requests"].update(timeout_s=5, backoff_base_s=0.01, backoff_max_s=0.05),
                               m["rotation"].update(swap_interval=3),
                               m["backends"]["openai_compatible"].update(models=["alpha", "beta"])))
    return d


def _edit_models(config_dir, change) -> None:
    path = config_dir / "models.yaml"
    models = yaml.safe_load(path.read_text())
    change(models)
    path.write_text(yaml.safe_dump(models))


def _generate(tmp_path, config_dir, server, *extra, api="openai"):
    return main(["generate", "--config-dir", str(config_dir), "--output-dir", str(tmp_path / "out"), "--quiet",
                 "--endpoint", f"{api}={server.url}", "--models", "alpha,beta", *extra])


def _attempts(tmp_path) -> list[dict]:
    """Every call in the ledger with the prompt and answer of the item it was for."""
    db = sqlite3.connect(tmp_path / "out" / "language_staging" / "ledger.sqlite")
    db.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in db.execute(
            "SELECT a.*, r.prompt, r.response FROM attempts a LEFT JOIN results r USING (item_id) ORDER BY a.id")]
    finally:
        db.close()


def _results(tmp_path) -> list[tuple]:
    db = sqlite3.connect(tmp_path / "out" / "language_staging" / "ledger.sqlite")
    try:
        return db.execute("SELECT item_id, status FROM results").fetchall()
    finally:
        db.close()


@pytest.mark.parametrize("api", APIS)
def test_every_call_records_the_tokens_its_server_reported(tmp_path, config_dir, api, monkeypatch):
    monkeypatch.setenv("TEST_USAGE_KEY", "sk-test-usage")
    system = load_domain(config_dir).system_prompt
    with LoopbackServer(models=("alpha", "beta"), faults=FaultPlan([Rule("500", times=1)])) as server:
        code = _generate(tmp_path, config_dir, server, "--types", "conversation", "--count", "2",
                         "--api-key-env", "TEST_USAGE_KEY", api=api)
    assert code == 0
    calls = _attempts(tmp_path)
    answered = [c for c in calls if c["outcome"] == "ok"]
    assert len(answered) == 4 and len(calls) == 5
    for c in answered:  # the loopback counts words: the system prompt's and prompt's, and the answer's
        assert c["prompt_tokens"] == len(system.split()) + len(c["prompt"].split())
        assert c["completion_tokens"] == len(c["response"].split())
        assert c["tokens_estimated"] == 0
        # the estimate (4 characters per token) would give other figures: the counts came from the server
        assert c["completion_tokens"] != math.ceil(len(c["response"]) / 4)
    failed = [c for c in calls if c["outcome"] == "error"]
    assert [(c["prompt_tokens"], c["completion_tokens"]) for c in failed] == [(0, 0)]
    usage = json.loads((tmp_path / "out" / "language_dataset.json").read_text())["metadata"]["usage"]
    assert usage["total"]["calls"] == 5
    assert usage["total"]["prompt_tokens"] == sum(c["prompt_tokens"] for c in calls)
    assert usage["total"]["completion_tokens"] == sum(c["completion_tokens"] for c in calls)
    assert set(usage["models"]) == {"alpha", "beta"} and usage["total"]["cost"] == 0  # no prices: local


@pytest.mark.parametrize("api", ["ollama", "openai"])
def test_a_server_that_reports_no_tokens_gets_them_estimated_and_flagged(tmp_path, config_dir, api):
    system = load_domain(config_dir).system_prompt
    with LoopbackServer(models=("alpha", "beta"), report_usage=False) as server:
        assert _generate(tmp_path, config_dir, server, "--types", "conversation", "--count", "1", api=api) == 0
    calls = _attempts(tmp_path)
    assert len(calls) == 2
    for c in calls:
        assert c["tokens_estimated"] == 1
        assert c["prompt_tokens"] == math.ceil(len(system) / 4) + math.ceil(len(c["prompt"]) / 4)
        assert c["completion_tokens"] == math.ceil(len(c["response"]) / 4)
    usage = json.loads((tmp_path / "out" / "language_dataset.json").read_text())["metadata"]["usage"]
    assert usage["total"]["estimated_calls"] == 2


def test_cost_comes_from_the_prices_in_models_yaml_and_status_shows_it(tmp_path, config_dir, capsys):
    _edit_models(config_dir, lambda m: m["backends"]["openai_compatible"].update(
        prices={"alpha": {"input": 3.0, "output": 15.0}}))
    with LoopbackServer(models=("alpha", "beta")) as server:
        # the --endpoint server has no prices of its own: alpha takes the price models.yaml gives it
        assert _generate(tmp_path, config_dir, server, "--types", "banking_scenario", "--count", "3") == 0
    calls = _attempts(tmp_path)
    alpha = [c for c in calls if c["model"] == "alpha"]
    assert len(alpha) == 3 and len(calls) == 6
    expected = sum(c["prompt_tokens"] * 3.0 + c["completion_tokens"] * 15.0 for c in alpha) / 1e6
    assert expected > 0
    usage = json.loads((tmp_path / "out" / "language_dataset.json").read_text())["metadata"]["usage"]
    assert usage["currency"] == "USD"
    assert usage["models"]["alpha"]["cost"] == pytest.approx(expected, abs=1e-6)
    assert usage["models"]["beta"]["cost"] == 0
    assert usage["total"]["cost"] == pytest.approx(expected, abs=1e-6)
    capsys.readouterr()
    assert main(["status", "--config-dir", str(config_dir), "--output-dir", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    table = out.split("tokens and cost per model")[1].splitlines()
    total = next(line for line in table if line.split()[:1] == ["total"]).split()
    assert total[1] == "6" and int(total[2]) == sum(c["prompt_tokens"] for c in calls)
    assert float(total[5]) == pytest.approx(expected, abs=1e-6)


def test_a_cost_budget_stops_issuing_calls_and_a_later_run_completes_the_rest(tmp_path, config_dir, capsys):
    # Answers are cut at max_tokens = 8 (every call then uses exactly the 8 output tokens the budget
    # holds for it) and only output is priced, at 125,000 per million: each call costs exactly 1.0.
    _edit_models(config_dir, lambda m: (
        m["generation"].update(max_tokens=8),
        m["backends"]["openai_compatible"].update(prices={"alpha": {"input": 0, "output": 125000},
                                                          "beta": {"input": 0, "output": 125000}})))
    args = ("--types", "conversation,english_pattern", "--count", "6", "--no-export")   # 24 items
    with LoopbackServer(models=("alpha", "beta"), delay_s=0.05) as server:
        code = _generate(tmp_path, config_dir, server, *args, "--max-cost", "5", "--concurrency", "3")
        first = len(server.calls_for("/v1/chat"))
        assert code == EXIT_BUDGET
        assert "budget reached" in capsys.readouterr().err
        # five calls fit the budget of 5.0, three of them at a time; the sixth could cross it
        assert first == 5
        calls = _attempts(tmp_path)
        assert sum(c["completion_tokens"] for c in calls) == 5 * 8
        results = _results(tmp_path)
        assert len(results) == 5 and "failed" not in {s for _, s in results}   # the rest is not failed
        # the budget is per run: the same budget again asks five more
        assert _generate(tmp_path, config_dir, server, *args, "--max-cost", "5") == EXIT_BUDGET
        assert len(server.calls_for("/v1/chat")) == 10 and len(_results(tmp_path)) == 10
        assert _generate(tmp_path, config_dir, server, *args) == 0   # no budget: the rest
        assert len(server.calls_for("/v1/chat")) == 24   # each item asked once over all runs
    assert len(_results(tmp_path)) == 24


def test_a_token_budget_issues_a_call_only_while_its_most_fits(tmp_path, config_dir, capsys):
    budget = 3000
    with LoopbackServer(models=("alpha", "beta")) as server:
        code = _generate(tmp_path, config_dir, server, "--types", "technical_explanation", "--count", "10",
                         "--max-tokens-total", str(budget), "--concurrency", "1", "--no-export")
        made = len(server.calls_for("/v1/chat"))
    assert code == EXIT_BUDGET
    system = load_domain(config_dir).system_prompt
    settings = load_settings(config_dir / "models.yaml")
    q = settings.quality
    calls = _attempts(tmp_path)
    assert 0 < len(calls) == made < 20
    used = 0
    for c in calls:  # one call at a time: each was issued only while the used tokens and its most fit
        limit = token_limit(c["prompt"], q.length_tolerance, q.tokens_per_word, settings.generation.max_tokens)
        assert used + sum(most_tokens(system, c["prompt"], limit)) <= budget
        used += c["prompt_tokens"] + c["completion_tokens"]
    assert used <= budget
    # and the run stopped because the next item's call could cross the budget
    db = sqlite3.connect(tmp_path / "out" / "language_staging" / "ledger.sqlite")
    stop = db.execute("SELECT value FROM meta WHERE key = 'budget_stop'").fetchone()[0]
    db.close()
    # the next item's call could cross it: the tokens used (all calls are over) and its most passed the budget
    assert f"{used:,} of the {budget:,} of --max-tokens-total" in stop
    nxt = int(stop.split("could use ")[1].split(" tokens")[0].replace(",", ""))
    assert used + nxt > budget
    capsys.readouterr()
    main(["status", "--config-dir", str(config_dir), "--output-dir", str(tmp_path / "out")])
    assert "stopped at its budget" in capsys.readouterr().out


def test_a_budget_below_one_call_makes_no_call_and_marks_nothing(tmp_path, config_dir):
    with LoopbackServer(models=("alpha", "beta")) as server:
        code = _generate(tmp_path, config_dir, server, "--types", "conversation", "--count", "2",
                         "--max-tokens-total", "10", "--no-export")
        assert server.calls_for("/v1/chat") == []
    assert code == EXIT_BUDGET and _results(tmp_path) == []


@pytest.mark.parametrize("option, value, problem", [
    ("--max-cost", "-1", "at least 0"), ("--max-cost", "nan", "finite"), ("--max-cost", "inf", "finite"),
    ("--max-tokens-total", "-5", "at least 0"),
    ("--max-cost", "5", "no model of this run has a price"),   # alpha has none: nothing would count
])
def test_a_bad_budget_is_a_one_line_error_before_anything_is_touched(tmp_path, config_dir, capsys, option, value,
                                                                     problem):
    code = main(["generate", "--config-dir", str(config_dir), "--output-dir", str(tmp_path / "out"),
                 "--endpoint", "openai=http://127.0.0.1:9", "--models", "alpha", option, value])
    err = capsys.readouterr().err
    assert code == 2 and option in err and problem in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out" / "language_staging").exists()


@pytest.mark.parametrize("prices, expected", [
    ({"gamma": {"input": 1, "output": 2}}, "backends.openai_compatible.prices.gamma"),
    ({"alpha": {"input": -1, "output": 2}}, "backends.openai_compatible.prices.alpha.input"),
    ({"alpha": {"input": 1}}, "backends.openai_compatible.prices.alpha.output: missing"),
    ({"alpha": {"input": 1, "output": 2, "cached": 0.5}}, "prices.alpha.cached: unknown key"),
    ({"alpha": "cheap"}, "backends.openai_compatible.prices.alpha"),
])
def test_bad_prices_name_the_file_and_key(config_dir, prices, expected):
    _edit_models(config_dir, lambda m: m["backends"]["openai_compatible"].update(prices=prices))
    with pytest.raises(ConfigError) as err:
        load_settings(config_dir / "models.yaml")
    assert "models.yaml" in str(err.value) and expected in str(err.value)


OLD_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE results (
    item_id TEXT PRIMARY KEY, prompt_id TEXT NOT NULL, type TEXT NOT NULL, status TEXT NOT NULL,
    reason TEXT, prompt TEXT NOT NULL, response TEXT, model TEXT, model_type TEXT, backend TEXT,
    session_id TEXT, timestamp TEXT, generation_batch INTEGER, term TEXT, category TEXT, seed INTEGER,
    temperature REAL, max_tokens INTEGER, finish_reason TEXT, prompt_tokens INTEGER,
    completion_tokens INTEGER, attempts INTEGER NOT NULL, shard TEXT);
CREATE TABLE attempts (
    id INTEGER PRIMARY KEY AUTOINCREMENT, item_id TEXT NOT NULL, attempt INTEGER NOT NULL,
    backend TEXT, endpoint TEXT, model TEXT, outcome TEXT NOT NULL, reason TEXT, http_status INTEGER,
    latency_s REAL, timestamp TEXT NOT NULL);
INSERT INTO meta VALUES ('config_hash', 'abc');
INSERT INTO results VALUES ('i1', 'p1', 'conversation', 'accepted', NULL, 'a prompt', 'an answer', 'alpha',
    'openai', 'openai-0', 's', '2026-01-01T00:00:00Z', 1, 'term', 'cat', 1, 0.7, 400, 'stop', 120, 80, 2, NULL);
INSERT INTO attempts (item_id, attempt, backend, endpoint, model, outcome, reason, http_status, latency_s,
    timestamp) VALUES ('i1', 1, 'openai-0', 'http://x', 'alpha', 'error', 'HTTP 500', 500, 0.1, 't'),
                      ('i1', 2, 'openai-0', 'http://x', 'alpha', 'ok', NULL, NULL, 0.2, 't');
"""


def test_a_ledger_from_before_the_token_columns_opens_with_its_calls_counted(tmp_path, config_dir, capsys):
    staging = tmp_path / "out" / "language_staging"
    staging.mkdir(parents=True)
    db = sqlite3.connect(staging / "ledger.sqlite")
    db.executescript(OLD_SCHEMA)
    db.close()
    ledger = Ledger(staging)
    try:
        totals = ledger.token_totals()
        frame = ledger.attempts_frame()
        assert ledger.results_frame()["item_id"].to_list() == ["i1"]   # the old rows are all there
    finally:
        ledger.close()
    # the answered call takes its result's counts; the failed one used none
    assert frame.select("outcome", "prompt_tokens", "completion_tokens").rows() == [("error", 0, 0), ("ok", 120, 80)]
    assert totals.select("model", "calls", "prompt_tokens", "completion_tokens").rows() == [("alpha", 2, 120, 80)]
    capsys.readouterr()
    assert main(["status", "--config-dir", str(config_dir), "--output-dir", str(tmp_path / "out")]) == 0
    assert "tokens and cost per model" in capsys.readouterr().out


def test_usage_is_zero_tokens_for_an_empty_staging(tmp_path):
    ledger = Ledger(tmp_path / "staging")
    try:
        totals = ledger.token_totals()
    finally:
        ledger.close()
    from language.usage import Prices, usage_summary
    assert len(totals) == 0 and isinstance(totals, pl.DataFrame)
    assert usage_summary(totals, Prices())["total"] == {"calls": 0, "prompt_tokens": 0, "completion_tokens": 0,
                                                        "total_tokens": 0, "estimated_calls": 0, "cost": 0.0}
