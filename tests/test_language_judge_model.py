"""The optional judge model (issue 16 item 6): it scores every answer the filters accepted on a rubric
through the backend's structured output; a score below the threshold rejects the answer with its
scores, the others are exported with them; a judge failure keeps the answer unjudged unless required;
without a judge configured nothing changes.

The judge is a loopback server (tests/loopback.py) speaking the OpenAI wire format, scoring by rule:
an answer that says "maybe" is vague (correct 2), any other is good.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import sqlite3

import polars as pl
import pytest
import yaml

from conftest import ROOT
from language.__main__ import main
from language.backends.base import decoding_schema
from language.errors import ConfigError
from language.judge import below, judge_prompt, parse_scores, rubric_schema
from language.ledger import Ledger
from language.settings import load_settings
from loopback import LoopbackServer, deterministic_answer

RUBRIC = ("correct", "relevant", "specific")
VAGUE = {"correct": 2, "relevant": 4, "specific": 3}
GOOD = {"correct": 5, "relevant": 4, "specific": 3}   # specific == the threshold: kept
COUNT = 8


def _answer_in(prompt: str) -> str:
    """The answer a judge prompt quotes (between "Answer:" and what follows it)."""
    return prompt.split("\nAnswer:\n", 1)[1].split("\n\nScore the answer", 1)[0]


def _group(prompt: str) -> int:
    """A third of the questions (by their text) get a good answer (0), one a vague one (1), one a short one
    that the filters reject (2)."""
    return hashlib.sha256(prompt.encode()).digest()[0] % 3


def _vague(prompt: str) -> bool:
    return _group(prompt) == 1


def answer(model, messages, options):
    """alpha answers (vaguely for half of the questions); judge scores by rule, "flaky" answers get prose."""
    prompt = messages[-1]["content"]
    if model == "judge":
        text = _answer_in(prompt)
        if "flaky" in text:
            return "I think this answer is fine."
        return json.dumps(VAGUE if "maybe" in text.lower() else GOOD)
    text = deterministic_answer(model, messages, options)
    if _group(prompt) == 1:
        text = text.replace(". ", ". Maybe ", 1)
    if _group(prompt) == 2:
        text = "Maybe the disk."
    return text


def _config(tmp_path, judge: dict | None, judge_url: str | None = None, judge_type: str = "openai"):
    d = tmp_path / "config"
    shutil.copytree(ROOT / "data_config", d)
    models = yaml.safe_load((d / "models.yaml").read_text())
    models["requests"].update(timeout_s=5, backoff_base_s=0.01, backoff_max_s=0.05)
    if judge_url is not None:
        models["backends"]["judge_server"] = {"type": judge_type, "enabled": False, "endpoints": [judge_url],
                                              "models": ["judge"], "concurrency": 2}
    if judge is not None:
        models["judge"] = judge
    (d / "models.yaml").write_text(yaml.safe_dump(models))
    return d


def _generate(tmp_path, config_dir, url):
    assert main(["generate", "--config-dir", str(config_dir), "--output-dir", str(tmp_path / "out"), "--quiet",
                 "--endpoint", f"openai={url}", "--models", "alpha", "--types", "technical_explanation",
                 "--count", str(COUNT)]) == 0


def _ledger_rows(tmp_path) -> list[tuple]:
    db = sqlite3.connect(tmp_path / "out" / "language_staging" / "ledger.sqlite")
    rows = db.execute("SELECT prompt, status, reason, response, judge FROM results ORDER BY rowid").fetchall()
    db.close()
    return rows


def _samples(tmp_path) -> list[dict]:
    return json.loads((tmp_path / "out" / "language_dataset.json").read_text())["samples"]


@pytest.mark.parametrize("judge_type", ["openai", "ollama"])
def test_the_judge_rejects_low_scores_with_the_reason_and_exports_the_others_with_theirs(tmp_path, judge_type):
    with LoopbackServer(models=("alpha", "judge"), answer=answer) as server:
        config_dir = _config(tmp_path, {"backend": "judge_server", "model": "judge", "threshold": 3}, server.url,
                             judge_type)
        _generate(tmp_path, config_dir, server.url)
        judge_calls = [c for c in server.calls if c.model == "judge" and c.path != "/api/tags"]
    rows = _ledger_rows(tmp_path)
    vague = [r for r in rows if _group(r[0]) == 1]
    good = [r for r in rows if _group(r[0]) == 0]
    short = [r for r in rows if _group(r[0]) == 2]
    assert len(rows) == COUNT and vague and good and short
    assert all(r[1] == "rejected" and not r[2].startswith("judge") and r[4] is None for r in short)  # never judged
    assert all("Maybe" in r[3] for r in vague)                 # the filters let the vague answers through ...
    # ... the judge does not
    assert all(r[1] == "rejected" and r[2] == "judge: correct=2 relevant=4 specific=3" for r in vague)
    assert all(json.loads(r[4]) == {"model": "judge_server/judge", "scores": VAGUE} for r in vague)
    assert all(r[1] == "accepted" and r[2] is None for r in good)
    assert all(json.loads(r[4]) == {"model": "judge_server/judge", "scores": GOOD} for r in good)

    samples = _samples(tmp_path)
    assert sorted(s["prompt"] for s in samples) == sorted(r[0] for r in good)
    assert all(s["judge"] == {"model": "judge_server/judge", "scores": GOOD} for s in samples)

    # one judge call per answer the filters accepted, carrying the rubric schema in OpenAI's field
    assert sorted(_answer_in(c.body["messages"][-1]["content"]) for c in judge_calls) == \
        sorted(r[3] for r in vague + good)
    for call in judge_calls:
        if judge_type == "openai":
            assert call.body["response_format"] == {"type": "json_schema", "json_schema": {
                "name": "judgement", "schema": decoding_schema(rubric_schema(RUBRIC)), "strict": True}}
            assert call.body["temperature"] == 0.0
        else:
            assert call.body["format"] == decoding_schema(rubric_schema(RUBRIC))
            assert call.body["options"]["temperature"] == 0.0


def test_without_a_judge_nothing_changes(tmp_path):
    with LoopbackServer(models=("alpha", "judge"), answer=answer) as server:
        config_dir = _config(tmp_path, None, server.url)   # the judge's server is listed, but no judge configured
        _generate(tmp_path, config_dir, server.url)
        assert not [c for c in server.calls if c.model == "judge"]
        assert len(server.calls_for("/v1/chat")) == COUNT
    rows = _ledger_rows(tmp_path)
    kept = [r for r in rows if _group(r[0]) != 2]
    assert len(rows) == COUNT and all(r[1] == "accepted" and r[4] is None for r in kept)
    assert any(_vague(r[0]) for r in kept)   # what the judge would reject stays
    samples = _samples(tmp_path)
    assert len(samples) == len(kept) and all("judge" not in s for s in samples)


def flaky_answer(model, messages, options):
    """As `answer`, but every generated answer is "flaky": the judge replies with prose, not JSON."""
    if model != "judge":
        return deterministic_answer(model, messages, options) + " The flaky disk is the cause."
    return answer(model, messages, options)


@pytest.mark.parametrize("required", [False, True])
def test_a_judge_failure_keeps_the_answer_unjudged_unless_required(tmp_path, required):
    with LoopbackServer(models=("alpha", "judge"), answer=flaky_answer) as server:
        config_dir = _config(tmp_path, {"backend": "judge_server", "required": required}, server.url)
        _generate(tmp_path, config_dir, server.url)
        # an invalid judgement is the model's answer, not the endpoint's fault: asked once per answer
        assert len([c for c in server.calls if c.model == "judge"]) == COUNT
    rows = _ledger_rows(tmp_path)
    error = "invalid judgement: not JSON: 'I think this answer is fine.'"
    assert len(rows) == COUNT
    assert all(json.loads(r[4]) == {"model": "judge_server/judge", "error": error} for r in rows)
    if required:
        assert all(r[1] == "rejected" and r[2] == f"judge failed: {error}" for r in rows)
    else:
        assert all(r[1] == "accepted" and r[2] is None for r in rows)
        assert all(s["judge"] == {"model": "judge_server/judge", "error": error} for s in _samples(tmp_path))


def test_a_judge_server_that_is_down_is_recorded_and_the_answers_kept(tmp_path):
    with LoopbackServer(models=("alpha",), answer=answer) as server:
        config_dir = _config(tmp_path, {"backend": "judge_server"}, "http://127.0.0.1:9")  # nothing listens there
        _generate(tmp_path, config_dir, server.url)
    rows = [r for r in _ledger_rows(tmp_path) if _group(r[0]) != 2]   # the others the filters reject
    assert rows and all(r[1] == "accepted" for r in rows)
    assert all(json.loads(r[4])["error"].startswith("connection failed") for r in rows)


# ------------------------------------------------------------------------------ the parts
def test_scores_are_whole_numbers_1_to_5_for_every_criterion():
    assert parse_scores('{"correct": 4, "relevant": 5, "specific": 1}', RUBRIC) == (
        {"correct": 4, "relevant": 5, "specific": 1}, None)
    assert parse_scores('{"correct": 4, "relevant": 5}', RUBRIC) == (None, "no score for specific")
    assert parse_scores('{"correct": 6, "relevant": 5, "specific": 1}', RUBRIC)[1].startswith("correct: 6 is not")
    assert parse_scores('{"correct": true, "relevant": 5, "specific": 1}', RUBRIC)[1].startswith("correct: True")
    assert parse_scores('{"correct": 4.5, "relevant": 5, "specific": 1}', RUBRIC)[1].startswith("correct: 4.5")
    assert parse_scores("[4, 5, 1]", RUBRIC) == (None, "not a JSON object")


def test_an_answer_is_rejected_when_any_score_is_below_the_threshold():
    assert below({"correct": 2, "relevant": 5}, 3)
    assert not below({"correct": 3, "relevant": 5}, 3)
    assert not below({"correct": 5, "relevant": 5}, 5)
    assert below({"correct": 5, "relevant": 4}, 5)


def test_the_judge_prompt_holds_the_question_the_answer_the_rubric_and_a_label():
    prompt = judge_prompt("Why is it slow?", "The disk is full.", RUBRIC, "disk_full")
    assert "Why is it slow?" in prompt and _answer_in(prompt) == "The disk is full."
    assert "disk_full" in prompt and all(f"- {c}:" in prompt for c in RUBRIC)
    assert "disk_full" not in judge_prompt("Why is it slow?", "The disk is full.", RUBRIC)


def _settings_with(tmp_path, judge):
    return load_settings(_config(tmp_path, judge, "http://127.0.0.1:9") / "models.yaml")


def test_judge_settings_are_validated_with_the_key_named(tmp_path):
    j = _settings_with(tmp_path / "a", {"backend": "judge_server"}).judge
    assert (j.backend, j.model, j.threshold, j.rubric, j.required) == ("judge_server", "judge", 3, RUBRIC, False)
    assert _settings_with(tmp_path / "b", None).judge is None
    for i, (judge, match) in enumerate([
            ({"backend": "nowhere"}, r"judge\.backend.*'nowhere' is not one of the backends"),
            ({"backend": "judge_server", "threshold": 6}, r"judge\.threshold"),
            ({"backend": "judge_server", "rubric": []}, r"judge\.rubric"),
            ({"backend": "judge_server", "rubric": ["correct", "correct"]}, r"judge\.rubric\[1\]"),
            ({"backend": "judge_server", "thresold": 2}, r"judge.*thresold"),
            ({"backend": "judge_server", "required": "yes"}, r"judge\.required")]):
        with pytest.raises(ConfigError, match=match):
            _settings_with(tmp_path / f"c{i}", judge)


def test_an_older_ledger_gets_the_judge_column_on_open(tmp_path):
    staging = tmp_path / "staging"
    staging.mkdir()
    db = sqlite3.connect(staging / "ledger.sqlite")
    db.execute("CREATE TABLE results (item_id TEXT PRIMARY KEY, prompt_id TEXT NOT NULL, type TEXT NOT NULL, "
               "status TEXT NOT NULL, reason TEXT, prompt TEXT NOT NULL, response TEXT, model TEXT, model_type TEXT, "
               "backend TEXT, session_id TEXT, timestamp TEXT, generation_batch INTEGER, term TEXT, category TEXT, "
               "seed INTEGER, temperature REAL, max_tokens INTEGER, finish_reason TEXT, prompt_tokens INTEGER, "
               "completion_tokens INTEGER, attempts INTEGER NOT NULL, shard TEXT, source_sample_id TEXT, "
               "label TEXT, structured TEXT)")
    db.execute("INSERT INTO results (item_id, prompt_id, type, status, prompt, response, attempts) "
               "VALUES ('i1', 'p1', 'conversation', 'accepted', 'q', 'a', 1)")
    db.commit()
    db.close()
    ledger = Ledger(staging)
    try:
        frame = ledger.results_frame()
        assert "judge" in frame.columns and frame["judge"].to_list() == [None]
        assert ledger.samples()["judge"].to_list() == [None]
    finally:
        ledger.close()


def test_the_judge_calls_count_in_the_runs_tokens_and_cost(tmp_path):
    """The run's totals are the answers' calls (the ledger's attempts) plus the judge's: a judgement is 6
    words, so 6 completion tokens in the loopback, priced as models.yaml prices the judge's model."""
    from language import pipeline
    from language.domain import load_domain

    with LoopbackServer(models=("alpha", "judge"), answer=answer) as server:
        config_dir = _config(tmp_path, {"backend": "judge_server"}, server.url)
        models = yaml.safe_load((config_dir / "models.yaml").read_text())
        models["backends"]["judge_server"]["prices"] = {"judge": {"input": 0.0, "output": 1_000_000.0}}
        (config_dir / "models.yaml").write_text(yaml.safe_dump(models))
        domain, settings = load_domain(config_dir), load_settings(config_dir / "models.yaml")
        specs = pipeline.backend_specs(settings, names=[], endpoints=[f"openai={server.url}"], models="alpha",
                                       api_key_env=None, concurrency=2)
        targets = pipeline.choose_targets(settings, types="technical_explanation", count=COUNT)
        ledger = Ledger(tmp_path / "out" / pipeline.STAGING_NAME)
        try:
            work = pipeline.plan_work(domain, settings, specs, targets=targets, seed=5, from_metrics=None,
                                      config_dir=config_dir)
            session = pipeline.open_session(ledger, domain, settings, work, retry=False)
            stats = asyncio.run(pipeline.run_session(ledger, work, session))
            attempts = ledger.attempts_frame()
            judged = ledger.results_frame()["judge"].drop_nulls().len()
        finally:
            ledger.close()
        judge_calls = [c for c in server.calls if c.model == "judge"]
    assert judged == len(judge_calls) > 0
    # the judge's calls are in the attempts (purpose "judge"), beside the answers' calls
    by_purpose = attempts.group_by("purpose").agg(pl.len(), pl.col("completion_tokens").sum())
    assert dict(zip(by_purpose["purpose"], by_purpose["len"])) == {"answer": COUNT, "judge": judged}
    assert stats.judge_calls == judged
    judge_rows = attempts.filter(pl.col("purpose") == "judge")
    assert judge_rows["model"].to_list() == ["judge"] * judged and judge_rows["backend"].unique().to_list() == \
        ["judge_server"] and judge_rows["completion_tokens"].to_list() == [6] * judged
    assert stats.completion_tokens == attempts["completion_tokens"].sum()
    assert stats.prompt_tokens == attempts["prompt_tokens"].sum()
    assert stats.cost == pytest.approx(6 * judged)   # 1e6 per million output tokens: 1 per token


def test_status_and_the_export_count_the_judge_calls(tmp_path, capsys):
    with LoopbackServer(models=("alpha", "judge"), answer=answer) as server:
        config_dir = _config(tmp_path, {"backend": "judge_server"}, server.url)
        _generate(tmp_path, config_dir, server.url)
        judge_calls = len([c for c in server.calls if c.model == "judge"])
    judged = len([r for r in _ledger_rows(tmp_path) if r[4] is not None])
    assert judge_calls == judged > 0
    usage = json.loads((tmp_path / "out" / "language_dataset.json").read_text())["metadata"]["usage"]
    assert usage["models"]["judge"]["calls"] == judged
    assert usage["models"]["judge"]["completion_tokens"] == 6 * judged
    assert usage["total"]["calls"] == COUNT + judged
    capsys.readouterr()
    assert main(["status", "--output-dir", str(tmp_path / "out"), "--config-dir", str(config_dir)]) == 0
    out = capsys.readouterr().out
    assert f"{COUNT} items finished, {COUNT + judged} server calls" in out
    rows = {line.split()[0]: line.split()[1:4] for line in out.split("tokens and cost per model")[1].splitlines()[2:5]}
    assert rows["judge"][0] == str(judged) and rows["judge"][2] == str(6 * judged)
    assert rows["total"][0] == str(COUNT + judged)


def test_judge_calls_are_held_against_the_budget_before_they_are_made(tmp_path, capsys):
    """A judge call that could cross --max-tokens-total is not made: its answer is not recorded (the item
    stays unfinished) and a later run with room for it asks the item again and judges it."""
    judge = {"backend": "judge_server", "max_tokens": 50_000}   # a judge call may use 50,000 tokens
    with LoopbackServer(models=("alpha", "judge"), answer=answer) as server:
        config_dir = _config(tmp_path, judge, server.url)
        argv = ["generate", "--config-dir", str(config_dir), "--output-dir", str(tmp_path / "out"), "--quiet",
                "--endpoint", f"openai={server.url}", "--models", "alpha", "--types", "technical_explanation",
                "--count", str(COUNT), "--concurrency", "1"]
        assert main([*argv, "--max-tokens-total", "40000"]) == 4     # room for the answers, not one judgement
        assert not [c for c in server.calls if c.model == "judge"]
        rows = _ledger_rows(tmp_path)
        assert rows and all(_group(r[0]) == 2 and r[1] == "rejected" for r in rows)   # only the filters' rejections
        assert main([*argv, "--max-tokens-total", "10000000"]) == 0
        judge_calls = [c for c in server.calls if c.model == "judge"]
    rows = _ledger_rows(tmp_path)
    assert len(rows) == COUNT and len(judge_calls) == len([r for r in rows if r[4] is not None]) > 0


def test_judge_settings_are_part_of_the_resume_fingerprint(tmp_path):
    """Answers judged by one judge are not taken as finished under another (nor under none)."""
    with LoopbackServer(models=("alpha", "judge"), answer=answer) as server:
        for i, (judge, new_calls) in enumerate([({"backend": "judge_server"}, COUNT),
                                                ({"backend": "judge_server"}, 0),
                                                ({"backend": "judge_server", "threshold": 2}, COUNT),
                                                ({"backend": "judge_server", "rubric": ["correct"]}, COUNT),
                                                (None, COUNT)]):
            before = len(server.calls_for("/v1/chat"))
            answers_before = before - len([c for c in server.calls if c.model == "judge"])
            _generate(tmp_path, _config(tmp_path / f"c{i}", judge, server.url), server.url)
            answers = len(server.calls_for("/v1/chat")) - len([c for c in server.calls if c.model == "judge"])
            assert answers - answers_before == new_calls, (i, judge)


def test_the_judges_calls_take_and_give_back_its_backends_pool_slots_and_a_429_sets_the_endpoint_aside():
    """The judge calls through scheduler.EndpointPool (the run's own when it judges with a backend of the
    run): every call holds a slot while in flight, and a 429's Retry-After sets the endpoint aside for
    the answers' calls as well as the judge's."""
    import time

    import httpx

    from language.backends import build_backend
    from language.judge import JudgeModel
    from language.scheduler import EndpointPool
    from language.settings import BackendSpec, Judge
    from loopback import FaultPlan, Rule

    faults = FaultPlan([Rule("429", times=1, retry_after=30.0, model="judge")])
    with LoopbackServer(models=("judge",), answer=answer, faults=faults) as server:
        spec = BackendSpec("local", "openai", True, ("judge",), (server.url,), concurrency=1, stream=False)
        backend = build_backend(spec)
        pool = EndpointPool(spec.endpoints, spec.concurrency)
        judge = JudgeModel(Judge("local", "judge"), backend, pool=pool, max_attempts=1, backoff_base_s=0.0,
                           backoff_max_s=0.0, max_down_s=60.0, seed=1)

        async def judged():
            async with httpx.AsyncClient() as client:
                first = await judge.score(client, "Explain swap.", "Swap holds pages memory cannot.")
                endpoint = pool.endpoints[0]
                in_flight, aside_for = endpoint.in_flight, endpoint.down_until - time.monotonic()
                return first, in_flight, aside_for

        first, in_flight, aside_for = asyncio.run(judged())
    assert first["error"].startswith("HTTP 429") or "429" in first["error"], first
    assert in_flight == 0                 # the slot given back
    assert 15.0 < aside_for <= 30.0       # set aside for the Retry-After the 429 asked for (30 s)
