"""The language generator end to end, against real HTTP servers on 127.0.0.1 started by the tests.

The loopback servers (tests/loopback.py) speak the OpenAI, Ollama, Anthropic and Gemini wire formats
with deterministic answers and injected faults; the generator talks to them through its real
backends, scheduler, ledger and exports.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from language.__main__ import EXIT_PARTIAL, main
from language.errors import LanguageError

from conftest import FAST_RETRIES, ROOT, language_config
from loopback import FaultPlan, LoopbackServer, Rule

PLANTED_KEY = "sk-test-PLANTED-9f8e7d6c5b4a"


@pytest.fixture
def config_dir(tmp_path):
    """The shipped data_config with fast retries and short timeouts for tests."""
    return language_config(tmp_path, requests={"timeout_s": 1.5, "max_attempts": 4, **FAST_RETRIES},
                           rotation={"cooldown_s": 0.3, "failures_before_cooldown": 3, "swap_interval": 3})


def _generate(tmp_path, config_dir, *extra, out="out"):
    return main(["generate", "--config-dir", str(config_dir), "--output-dir", str(tmp_path / out), "--quiet",
                 *extra])


def _dataset(tmp_path, out="out"):
    return json.loads((tmp_path / out / "language_dataset.json").read_text())


def _ledger(tmp_path, out="out"):
    db = sqlite3.connect(tmp_path / out / "language_staging" / "ledger.sqlite")
    try:
        return db.execute("SELECT item_id, status, reason, model, attempts FROM results").fetchall()
    finally:
        db.close()


@pytest.mark.parametrize("api", ["openai", "ollama"])
def test_generate_asks_two_distinct_models_per_prompt_and_exports(tmp_path, config_dir, api):
    with LoopbackServer(models=("alpha", "beta")) as server:
        code = _generate(tmp_path, config_dir, "--endpoint", f"{api}={server.url}", "--models", "alpha,beta",
                         "--types", "conversation,technical_explanation", "--count", "5")
        calls = server.calls_for({"openai": "/v1/chat", "ollama": "/api/chat"}[api])
    assert code == 0
    data = _dataset(tmp_path)
    samples = data["samples"]
    assert len(samples) == 20 and data["metadata"]["total_samples"] == 20
    assert data["metadata"]["sample_distribution"]["conversation"] == 10
    assert set(data["metadata"]["model_distribution"]) == {"alpha", "beta"}
    by_prompt: dict[str, set] = {}
    for s in samples:
        by_prompt.setdefault(s["prompt"], set()).add(s["model"])
        assert len(s["response"].split()) >= 20
        assert set(s) >= {"type", "prompt", "response", "model", "model_type", "session_id", "timestamp",
                          "generation_batch", "term", "category"}
    assert all(models == {"alpha", "beta"} for models in by_prompt.values())
    assert len(calls) == 20 and {c.api for c in calls} == {api}
    chat = (tmp_path / "out" / "language_dataset.chat.jsonl").read_text().splitlines()
    assert len(chat) == 20
    assert [m["role"] for m in json.loads(chat[0])["messages"]] == ["system", "user", "assistant"]


@pytest.mark.parametrize("api, header", [("anthropic", "x-api-key"), ("gemini", "x-goog-api-key"),
                                         ("openai", "authorization")])
def test_hosted_apis_get_the_key_in_headers_and_it_never_leaks(tmp_path, config_dir, api, header, monkeypatch):
    monkeypatch.setenv("TEST_PLANTED_KEY", PLANTED_KEY)
    with LoopbackServer(models=("alpha", "beta"), faults=FaultPlan([Rule("500", times=2)])) as server:
        code = _generate(tmp_path, config_dir, "--endpoint", f"{api}={server.url}", "--models", "alpha,beta",
                         "--types", "banking_scenario", "--count", "3", "--api-key-env", "TEST_PLANTED_KEY")
        calls = server.calls_for()
    assert code == 0
    assert all(PLANTED_KEY in c.headers.get(header, "") for c in calls)
    for path in (tmp_path / "out").rglob("*"):
        if path.is_file():
            assert PLANTED_KEY.encode() not in path.read_bytes(), path


def test_faults_are_retried_within_budget_and_every_failure_is_recorded(tmp_path, config_dir):
    models = yaml.safe_load((config_dir / "models.yaml").read_text())
    models["requests"]["max_attempts"] = 8  # the faults hit the first requests: room for all of them
    (config_dir / "models.yaml").write_text(yaml.safe_dump(models))
    faults = FaultPlan([Rule("429", times=2, retry_after=0.05), Rule("429", times=1), Rule("500", times=2),
                        Rule("503", times=1), Rule("garbage", times=2), Rule("cut", times=2),
                        Rule("reset", times=1), Rule("slow", times=1, seconds=3.0)])
    with LoopbackServer(models=("alpha", "beta"), faults=faults) as server:
        code = _generate(tmp_path, config_dir, "--endpoint", f"ollama={server.url}", "--models", "alpha,beta",
                         "--types", "error_troubleshooting", "--count", "8", "--concurrency", "2")
        calls = server.calls_for("/api/chat")   # generation calls (the model list is asked once besides)
    rows = _ledger(tmp_path)
    assert len(rows) == 16
    assert all(attempts <= 8 for *_, attempts in rows)
    assert len(calls) == 16 + 12  # every item answered once, plus one call per injected fault
    db = sqlite3.connect(tmp_path / "out" / "language_staging" / "ledger.sqlite")
    reasons = [r[0] for r in db.execute("SELECT reason FROM attempts WHERE outcome = 'error'")]
    db.close()
    assert len(reasons) == 12  # each injected fault was seen once and recorded
    assert any("429" in r for r in reasons) and any("500" in r for r in reasons)
    assert any("invalid JSON" in r for r in reasons) and any("timeout" in r for r in reasons)
    assert code == 0
    assert {r[1] for r in rows} == {"accepted"}


def test_a_server_that_always_fails_costs_max_attempts_per_item_then_retry_failed_completes(tmp_path, config_dir):
    with LoopbackServer(models=("alpha",), faults=FaultPlan([Rule("500", times=None)])) as broken:
        code = _generate(tmp_path, config_dir, "--endpoint", f"openai={broken.url}", "--models", "alpha",
                         "--types", "project_management", "--count", "3")
        assert len(broken.calls_for()) == 3 * 4
    assert code == EXIT_PARTIAL
    assert {r[1] for r in _ledger(tmp_path)} == {"failed"}
    with LoopbackServer(models=("alpha",)) as healthy:
        code = main(["retry-failed", "--config-dir", str(config_dir), "--output-dir", str(tmp_path / "out"),
                     "--quiet", "--endpoint", f"openai={healthy.url}", "--models", "alpha"])
        assert code == 0
        # only the failed items were asked again, once each
        assert len(healthy.calls_for()) == 3
    assert {r[1] for r in _ledger(tmp_path)} == {"accepted"}


def test_a_model_that_does_not_exist_leaves_the_pool_and_its_items_wait_for_retry_failed(tmp_path, config_dir):
    with LoopbackServer(models=("alpha", "beta")) as server:
        code = _generate(tmp_path, config_dir, "--endpoint", f"openai={server.url}", "--models", "alpha,ghost",
                         "--types", "conversation", "--count", "4", "--concurrency", "1")
        ghost_calls = [c for c in server.calls_for() if c.model == "ghost"]
        assert code == EXIT_PARTIAL
        assert len(ghost_calls) == 1
        rows = _ledger(tmp_path)
        # alpha answers its own slot of each prompt; the ghost's slot is not given to alpha a second time
        # (a duplicate), it fails with its reason and is not lost
        assert sorted(r[1] for r in rows) == ["accepted"] * 4 + ["failed"] * 4
        assert all(r[3] == "alpha" for r in rows if r[1] == "accepted")
        assert all("no distinct model left" in r[2] for r in rows if r[1] == "failed")
        code = main(["retry-failed", "--config-dir", str(config_dir), "--output-dir", str(tmp_path / "out"),
                     "--quiet", "--endpoint", f"openai={server.url}", "--models", "alpha,beta"])
    assert code == 0
    rows = _ledger(tmp_path)
    assert [r[1] for r in rows] == ["accepted"] * 8
    assert len(_dataset(tmp_path)["samples"]) == 8


def test_a_model_that_disappears_mid_run_is_survived(tmp_path, config_dir):
    with LoopbackServer(models=("alpha", "beta"), delay_s=0.01) as server:
        import threading
        threading.Timer(0.15, server.remove_model, args=("beta",)).start()
        code = _generate(tmp_path, config_dir, "--endpoint", f"openai={server.url}", "--models", "alpha,beta",
                         "--types", "technical_explanation", "--count", "20", "--concurrency", "1")
        rows = _ledger(tmp_path)
        # beta's slots after it vanished fail (alpha answers the other slot of the same prompt), none is lost
        assert code == EXIT_PARTIAL and len(rows) == 40
        failed = [r for r in rows if r[1] == "failed"]
        assert failed and all("no distinct model left" in r[2] for r in failed)
        assert all(r[1] in ("accepted", "failed") for r in rows)
        server.add_model("beta")
        code = main(["retry-failed", "--config-dir", str(config_dir), "--output-dir", str(tmp_path / "out"),
                     "--quiet", "--endpoint", f"openai={server.url}", "--models", "alpha,beta"])
    assert code == 0
    assert [r[1] for r in _ledger(tmp_path)] == ["accepted"] * 40


def test_a_config_change_is_detected_and_only_matching_items_are_kept(tmp_path, config_dir):
    with LoopbackServer(models=("alpha", "beta")) as server:
        args = ("--endpoint", f"openai={server.url}", "--models", "alpha,beta", "--types", "conversation",
                "--count", "3")
        assert _generate(tmp_path, config_dir, *args) == 0
        assert _generate(tmp_path, config_dir, *args) == 0
        assert len(server.calls_for()) == 6  # the second run had nothing to do
        models = yaml.safe_load((config_dir / "models.yaml").read_text())
        models["generation"]["temperature"] = 0.3
        (config_dir / "models.yaml").write_text(yaml.safe_dump(models))
        assert _generate(tmp_path, config_dir, *args) == 0
        assert len(server.calls_for()) == 12
    data = _dataset(tmp_path)
    assert len(data["samples"]) == 6  # the old answers are not exported with the new config


# ------------------------------------------------------------------------------------------ resume
def _spawn_generate(tmp_path, config_dir, url, count):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "language", "generate", "--config-dir", str(config_dir), "--output-dir",
         str(tmp_path / "out"), "--quiet", "--endpoint", f"openai={url}", "--models", "alpha,beta",
         "--types", "technical_explanation,error_troubleshooting", "--count", str(count), "--concurrency", "2"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


@pytest.mark.parametrize("kill_after", [5, 40])
def test_sigkill_then_rerun_finishes_the_rest_without_duplicates_gaps_or_repeated_calls(tmp_path, config_dir,
                                                                                       kill_after):
    count = 20  # 2 types x 20 prompts x 2 models = 80 items
    with LoopbackServer(models=("alpha", "beta"), delay_s=0.02) as server:
        proc = _spawn_generate(tmp_path, config_dir, server.url, count)
        deadline = time.monotonic() + 60
        while len(server.calls_for()) < kill_after and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
        first_calls = len(server.calls_for())
        finished = {r[0] for r in _ledger(tmp_path)}
        assert len(finished) < 80  # killed mid-run (early kills may have committed nothing yet)
        db = sqlite3.connect(tmp_path / "out" / "language_staging" / "ledger.sqlite")
        done_pairs = {(p, m) for p, m in db.execute("SELECT prompt, model FROM results")}
        db.close()
        proc = _spawn_generate(tmp_path, config_dir, server.url, count)
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()[-2000:]
        second = server.calls_for()[first_calls:]
    rows = _ledger(tmp_path)
    ids = [r[0] for r in rows]
    assert len(ids) == len(set(ids)) == 80                      # no gaps, no duplicates
    assert not {(c.prompt, c.model) for c in second} & done_pairs  # nothing finished was asked again
    samples = _dataset(tmp_path)["samples"]
    assert len(samples) == len({(s["prompt"], s["model"]) for s in samples})


def test_help_and_errors_never_show_a_key(tmp_path, config_dir, capsys, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", PLANTED_KEY)
    with pytest.raises(SystemExit):
        main(["generate", "--help"])
    code = _generate(tmp_path, config_dir, "--endpoint", "anthropic=http://127.0.0.1:9", "--models", "m",
                     "--api-key-env", "ANTHROPIC_API_KEY", "--types", "conversation", "--count", "1")
    captured = capsys.readouterr()
    assert code == EXIT_PARTIAL
    assert PLANTED_KEY not in captured.out + captured.err
    for path in (tmp_path / "out").rglob("*"):
        if path.is_file():
            assert PLANTED_KEY.encode() not in path.read_bytes()


@pytest.mark.parametrize("argv, expected", [
    (["generate", "--types", "poetry"], "--types: unknown sample type 'poetry'"),
    (["generate", "--count", "-1"], "--count: must be at least 0"),
    (["generate", "--endpoint", "ftp://x", "--models", "a"], "--endpoint"),
    (["generate", "--backend", "nope"], "--backend: 'nope' is not in"),
])
def test_bad_arguments_give_one_line_errors(tmp_path, config_dir, capsys, argv, expected):
    code = main([*argv, "--config-dir", str(config_dir), "--output-dir", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and expected in err and err.count("\n") == 1


def test_status_reports_a_corrupted_export(tmp_path, config_dir, capsys):
    with LoopbackServer(models=("alpha", "beta")) as server:
        assert _generate(tmp_path, config_dir, "--endpoint", f"openai={server.url}", "--models", "alpha,beta",
                         "--types", "conversation", "--count", "2") == 0
    target = tmp_path / "out" / "language_dataset.json"
    target.write_bytes(target.read_bytes()[:200])
    main(["status", "--output-dir", str(tmp_path / "out")])
    assert "CORRUPTED" in capsys.readouterr().out
    assert main(["export", "--config-dir", str(config_dir), "--output-dir", str(tmp_path / "out"), "--quiet"]) == 0
    assert len(_dataset(tmp_path)["samples"]) == 4
    assert len(list((tmp_path / "out").glob("language_dataset.*.bak.json"))) == 1


@pytest.mark.embedded
def test_embedded_model_is_the_default_backend(tmp_path):
    pytest.importorskip("xllamacpp")
    proc = subprocess.run([sys.executable, "-m", "language", "generate", "--types", "technical_explanation",
                           "--count", "1", "--output-dir", str(tmp_path / "out")],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode in (0, EXIT_PARTIAL), proc.stderr[-2000:]
    rows = _ledger(tmp_path)
    assert len(rows) == 1 and rows[0][3] == "smollm2-135m-instruct"
    assert rows[0][1] in ("accepted", "rejected")  # a 135M model may ramble; it answered either way


def test_a_damaged_shard_is_detected_and_rebuilt_from_the_ledger(tmp_path, config_dir, capsys):
    with LoopbackServer(models=("alpha", "beta")) as server:
        assert _generate(tmp_path, config_dir, "--endpoint", f"openai={server.url}", "--models", "alpha,beta",
                         "--types", "conversation", "--count", "3") == 0
    shard = next((tmp_path / "out" / "language_staging" / "shards").glob("part-*.parquet"))
    shard.write_bytes(shard.read_bytes()[:100])
    assert main(["status", "--output-dir", str(tmp_path / "out")]) == 1
    assert "DAMAGED shards" in capsys.readouterr().out
    assert main(["restore", "--output-dir", str(tmp_path / "out")]) == 0
    assert main(["status", "--output-dir", str(tmp_path / "out")]) == 0
    assert main(["export", "--config-dir", str(config_dir), "--output-dir", str(tmp_path / "out"), "--quiet"]) == 0
    assert len(_dataset(tmp_path)["samples"]) == 6


def test_the_pipeline_layer_runs_a_job_without_the_command_line(tmp_path, config_dir):
    """The functions the CLI and the benchmarks call: plan, open a session, run, export; a second
    session over the same staging has nothing left to do and exports every accepted sample again."""
    from language import pipeline
    from language.domain import load_domain
    from language.ledger import Ledger
    from language.settings import load_settings

    domain, settings = load_domain(config_dir), load_settings(config_dir / "models.yaml")
    with LoopbackServer(models=("alpha", "beta")) as server:
        specs = pipeline.backend_specs(settings, names=[], endpoints=[f"openai={server.url}"], models="alpha,beta",
                                       api_key_env=None, concurrency=2)
        targets = pipeline.choose_targets(settings, types="conversation", count=3)
        ledger = Ledger(tmp_path / "out" / pipeline.STAGING_NAME)
        try:
            for run in range(2):
                work = pipeline.plan_work(domain, settings, specs, targets=targets, seed=5, from_metrics=None,
                                          config_dir=config_dir)
                session = pipeline.open_session(ledger, domain, settings, work, retry=False)
                assert (len(session.todo), session.batch) == ((6, 1) if run == 0 else (0, 2))
                assert session.previous_hash == (None if run == 0 else session.config_hash)
                stats = asyncio.run(pipeline.run_session(ledger, work, session))
                n = pipeline.export(ledger, domain, session.settings, tmp_path / "out", config_hash=session.config_hash,
                                    session_id=session.session_id, new_samples=stats.accepted)
                assert n == 6 and _dataset(tmp_path)["metadata"]["total_samples"] == 6
        finally:
            ledger.close()
        assert len(server.calls_for()) == 6
    with pytest.raises(LanguageError, match="--count: must be at least 0"):
        pipeline.choose_targets(settings, types=None, count=-1)
