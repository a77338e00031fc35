"""One backend served by many endpoints: load follows measured speed, dead endpoints are avoided, and an
endpoint added between runs (or to models.yaml during a run) takes work, with exact resume.

Every server is a real loopback HTTP server on 127.0.0.1 (tests/loopback.py) with its own delay per
request; the call counts come from the servers' own request logs and the ledger's recorded attempts.
Nothing here asserts a duration: only counts and orderings with wide margins.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
from collections import Counter

import pytest
import yaml

from language.__main__ import main

from conftest import ROOT
from loopback import LoopbackServer

MODELS = ("alpha", "beta")


def _write_models(config_dir, endpoints, concurrency=1, max_attempts=4):
    """models.yaml with a single enabled backend `farm` (OpenAI wire format) on these endpoints."""
    models = yaml.safe_load((ROOT / "data_config" / "models.yaml").read_text())
    models["backends"] = {"farm": {"type": "openai", "enabled": True, "models": list(MODELS),
                                   "endpoints": list(endpoints), "concurrency": concurrency}}
    models["requests"].update(timeout_s=5, backoff_base_s=0.01, backoff_max_s=0.05, max_attempts=max_attempts)
    models["rotation"].update(cooldown_s=0.3, failures_before_cooldown=3, swap_interval=3)
    (config_dir / "models.yaml").write_text(yaml.safe_dump(models))


@pytest.fixture
def config_dir(tmp_path):
    d = tmp_path / "config"
    shutil.copytree(ROOT / "data_config", d)
    return d


def _generate(tmp_path, config_dir, *extra):
    return main(["generate", "--config-dir", str(config_dir), "--output-dir", str(tmp_path / "out"), "--quiet",
                 *extra])


def _db(tmp_path):
    return sqlite3.connect(tmp_path / "out" / "language_staging" / "ledger.sqlite")


def _results(tmp_path):
    db = _db(tmp_path)
    try:
        return db.execute("SELECT item_id, status, prompt, model FROM results").fetchall()
    finally:
        db.close()


def _attempts_per_endpoint(tmp_path, outcome="ok") -> Counter:
    db = _db(tmp_path)
    try:
        return Counter(e for (e,) in db.execute("SELECT endpoint FROM attempts WHERE outcome = ?", (outcome,)))
    finally:
        db.close()


def _generation_calls(server) -> int:
    return len(server.calls_for("/v1/chat"))


def _refused_url() -> str:
    """A 127.0.0.1 port nothing listens on (bound, then closed): connections to it are refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


# ------------------------------------------------------------------------------------ load by speed
def test_load_follows_measured_speed_and_every_endpoint_is_used(tmp_path, config_dir):
    # 30 prompts x 2 models = 60 items on three endpoints, 0 / 20 / 200 ms per request, one slot each
    with LoopbackServer(models=MODELS, delay_s=0.0) as fast, LoopbackServer(models=MODELS, delay_s=0.02) as mid, \
            LoopbackServer(models=MODELS, delay_s=0.2) as slow:
        _write_models(config_dir, [slow.url, mid.url, fast.url])  # the slow one first: order must not matter
        code = _generate(tmp_path, config_dir, "--types", "technical_explanation", "--count", "30")
        calls = {"fast": _generation_calls(fast), "mid": _generation_calls(mid), "slow": _generation_calls(slow)}
    assert code == 0
    rows = _results(tmp_path)
    assert len(rows) == 60 and {r[1] for r in rows} == {"accepted"}
    assert sum(calls.values()) == 60                      # no retries were needed: one call per item
    assert min(calls.values()) >= 1, calls                # every endpoint was tried (and measured)
    assert calls["fast"] >= 3 * calls["slow"], calls      # wide margins: 10x and 10x apart in speed
    assert calls["mid"] >= 2 * calls["slow"], calls
    assert calls["fast"] >= calls["mid"], calls
    recorded = _attempts_per_endpoint(tmp_path)           # the ledger saw the same split
    assert recorded == Counter({fast.url: calls["fast"], mid.url: calls["mid"], slow.url: calls["slow"]})
    print("calls per endpoint:", calls)


def test_a_long_endpoint_list_is_used_end_to_end(tmp_path, config_dir):
    # 16 endpoints x 2 slots: 32 workers; 48 prompts x 2 models = 96 items, about 6 per endpoint
    servers = [LoopbackServer(models=MODELS, delay_s=0.05).start() for _ in range(16)]
    try:
        _write_models(config_dir, [s.url for s in servers], concurrency=2)
        code = _generate(tmp_path, config_dir, "--types", "conversation", "--count", "48")
        calls = [_generation_calls(s) for s in servers]
    finally:
        for s in servers:
            s.stop()
    assert code == 0 and len(_results(tmp_path)) == 96
    assert sum(calls) == 96 and min(calls) >= 3, calls
    print("calls per endpoint:", calls)


def test_items_waiting_for_a_busy_backend_take_whichever_endpoint_frees_first(tmp_path, config_dir):
    # Two backends: `farm` (a slow and a fast endpoint, one slot each) and `side` (one endpoint, 6 slots).
    # 8 workers share the work, so several items of farm wait for a slot at once; they must not queue
    # behind the slow endpoint (listed first) while the fast one frees its slot again and again.
    with LoopbackServer(models=MODELS, delay_s=0.0) as fast, LoopbackServer(models=MODELS, delay_s=0.5) as slow, \
            LoopbackServer(models=MODELS, delay_s=0.0) as side:
        _write_models(config_dir, [slow.url, fast.url])
        models = yaml.safe_load((config_dir / "models.yaml").read_text())
        models["backends"]["farm"]["models"] = ["alpha"]
        models["backends"]["side"] = {"type": "openai", "enabled": True, "models": ["beta"],
                                      "endpoints": [side.url], "concurrency": 6}
        (config_dir / "models.yaml").write_text(yaml.safe_dump(models))
        code = _generate(tmp_path, config_dir, "--types", "technical_explanation", "--count", "30")
        calls = {"fast": _generation_calls(fast), "slow": _generation_calls(slow), "side": _generation_calls(side)}
    assert code == 0
    assert len(_results(tmp_path)) == 60
    assert calls["fast"] + calls["slow"] == 30 and calls["side"] == 30, calls
    assert calls["slow"] >= 1, calls
    assert calls["fast"] >= 8 * calls["slow"], calls  # queueing behind the first-listed one gave ~3x
    print("calls per endpoint:", calls)


# ------------------------------------------------------------------------------------- dead endpoint
def test_an_endpoint_that_refuses_connections_loses_its_items_to_the_others_within_budget(tmp_path, config_dir):
    dead = _refused_url()
    with LoopbackServer(models=MODELS, delay_s=0.02) as a, LoopbackServer(models=MODELS, delay_s=0.02) as b:
        # listed first and never measured: it is tried at once; max_attempts 2 leaves one retry per item
        _write_models(config_dir, [dead, a.url, b.url], concurrency=2, max_attempts=2)
        code = _generate(tmp_path, config_dir, "--types", "conversation", "--count", "30")
        calls = {"a": _generation_calls(a), "b": _generation_calls(b)}
    assert code == 0
    rows = _results(tmp_path)
    assert len(rows) == 60 and {r[1] for r in rows} == {"accepted"}
    assert calls["a"] + calls["b"] == 60 and min(calls.values()) >= 10, calls
    errors = _attempts_per_endpoint(tmp_path, "error")
    assert set(errors) == {dead} and errors[dead] >= 1           # it was tried, and only it failed
    assert errors[dead] <= 12, errors                             # then mostly set aside (re-tried now and then)
    assert dead not in _attempts_per_endpoint(tmp_path, "ok")
    db = _db(tmp_path)
    try:
        assert db.execute("SELECT max(attempts) FROM results").fetchone()[0] <= 2
    finally:
        db.close()
    print("calls per endpoint:", calls, "refused:", errors[dead])


# --------------------------------------------------------------------------- endpoints added later
def _spawn(tmp_path, config_dir, count, types="technical_explanation"):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "language", "generate", "--config-dir", str(config_dir), "--output-dir",
         str(tmp_path / "out"), "--quiet", "--types", types, "--count", str(count)],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _wait_for(predicate, proc=None, timeout=60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline or (proc is not None and proc.poll() is not None):
            return
        time.sleep(0.005)


def _check_complete_without_repeats(tmp_path, n_items, done_before, later_calls):
    rows = _results(tmp_path)
    ids = [r[0] for r in rows]
    assert len(ids) == len(set(ids)) == n_items                      # no gaps, no duplicates
    assert {r[1] for r in rows} == {"accepted"}
    asked_again = {(c.prompt, c.model) for c in later_calls} & done_before
    assert not asked_again                                           # nothing finished was asked again
    assert len(later_calls) == len({(c.prompt, c.model) for c in later_calls})  # and nothing twice
    samples = json.loads((tmp_path / "out" / "language_dataset.json").read_text())["samples"]
    assert len(samples) == n_items == len({(s["prompt"], s["model"]) for s in samples})


def _committed(tmp_path) -> int:
    """Results a running generator has committed to its ledger so far (0 before the file exists)."""
    try:
        db = sqlite3.connect(f"file:{tmp_path / 'out' / 'language_staging' / 'ledger.sqlite'}?mode=ro", uri=True)
        try:
            return db.execute("SELECT count(*) FROM results").fetchone()[0]
        finally:
            db.close()
    except sqlite3.Error:
        return 0


def _done_pairs(tmp_path) -> set:
    db = _db(tmp_path)
    try:
        return {(p, m) for p, m in db.execute("SELECT prompt, model FROM results")}
    finally:
        db.close()


@pytest.mark.parametrize("first_run", ["stopped", "killed"])
def test_an_endpoint_added_between_runs_takes_work_and_resume_is_exact(tmp_path, config_dir, first_run):
    with LoopbackServer(models=MODELS, delay_s=0.05) as old, LoopbackServer(models=MODELS, delay_s=0.05) as new:
        _write_models(config_dir, [old.url], concurrency=2)
        if first_run == "stopped":  # a smaller count: the first 10 of the 30 prompts
            assert _generate(tmp_path, config_dir, "--types", "technical_explanation", "--count", "10") == 0
        else:                       # SIGKILL once 10 results are committed (about 1.5 s of work in all)
            proc = _spawn(tmp_path, config_dir, 30)
            _wait_for(lambda: _committed(tmp_path) >= 10, proc)
            proc.kill()
            proc.communicate(timeout=30)
        done_before = _done_pairs(tmp_path)
        first_calls = len(old.calls_for("/v1/chat"))
        assert 10 <= len(done_before) < 60
        _write_models(config_dir, [old.url, new.url], concurrency=2)  # the second endpoint joins
        proc = _spawn(tmp_path, config_dir, 30)
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()[-2000:]
        later = old.calls_for("/v1/chat")[first_calls:] + new.calls_for("/v1/chat")
        new_calls = _generation_calls(new)
    assert new_calls >= 5, new_calls                                  # the added endpoint took a share
    assert len(later) == 60 - len(done_before)                        # one call per item left
    _check_complete_without_repeats(tmp_path, 60, done_before, later)
    print(f"first run {len(done_before)} items; second run: old {len(later) - new_calls}, new {new_calls}")


def test_endpoints_added_to_and_removed_from_models_yaml_during_a_run_are_adopted(tmp_path, config_dir):
    # 60 prompts x 2 models = 120 items at 50 ms per call, one slot per endpoint: several seconds of work
    with LoopbackServer(models=MODELS, delay_s=0.05) as a, LoopbackServer(models=MODELS, delay_s=0.05) as b:
        _write_models(config_dir, [a.url])
        proc = _spawn(tmp_path, config_dir, 60)
        _wait_for(lambda: _generation_calls(a) >= 5, proc)
        _write_models(config_dir, [a.url, b.url])          # reload: b joins the running generator
        _wait_for(lambda: _generation_calls(b) >= 3, proc)
        b_joined = _generation_calls(b)
        _write_models(config_dir, [b.url])                 # reload: a leaves (its call in flight finishes)
        removed_at = _generation_calls(b)
        _wait_for(lambda: _generation_calls(b) >= removed_at + 20, proc)
        a_after_removal = _generation_calls(a)
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()[-2000:]
        calls = a.calls_for("/v1/chat") + b.calls_for("/v1/chat")
        final = {"a": _generation_calls(a), "b": _generation_calls(b)}
    assert b_joined >= 3, final                            # the added endpoint served calls mid-run
    assert final["a"] == a_after_removal, final            # the removed one got nothing more
    assert final["b"] >= removed_at + 20, final
    assert len(calls) == 120
    _check_complete_without_repeats(tmp_path, 120, set(), calls)
    print("calls per endpoint:", final)
